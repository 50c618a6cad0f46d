//! What a mount daemon answers on its control sockets (crate::control): the
//! guest's socket (the host's commands, which resolve names themselves) and,
//! for the root daemon started from the initrd, the root socket (the booted
//! guest's own commands, which cannot see the repository: the daemon
//! resolves checkpoints and images and checks what a checkpoint or rollback
//! needs, as the host's commands do before they ask).
//! Requests run one at a time (the guest handle's mutex).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use lvrepo_fs::fuse::Live;
use lvrepo_fs::guest::{CheckpointView, GuestHandle};
use lvrepo_fs::{ObjectStore, Repository, TreeId};
use serde_json::{json, Value};

use crate::control::{Request, RootRequest};

/// The live guest a daemon serves, shared by its sockets' handlers.
#[derive(Clone)]
pub struct Served {
    pub repo: PathBuf,
    pub guest: Arc<Mutex<GuestHandle>>,
    pub live: Arc<Live>,
    pub shared: Arc<dyn ObjectStore>,
}

impl Served {
    fn handle(&self) -> std::sync::MutexGuard<'_, GuestHandle> {
        self.guest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A checkpoint of the live state. gc waits until it is recorded, and
    /// what it skips storing is checked against the repository as it is now
    /// (not as at mount time). `check`: first refuse if what it reuses from
    /// the guest's store is damaged (the host's command checks before asking).
    fn checkpoint(&self, g: &mut GuestHandle, message: &str, check: bool) -> Result<Value> {
        let view = CheckpointView::open(&self.repo)?;
        if check {
            super::checkpoint::refuse_unsound(&Repository::open(&self.repo, false)?, g)?;
        }
        Ok(serde_json::to_value(g.checkpoint_live(&self.live.current(), &*g.store(view.confirm(self.shared.clone())), message)?)?)
    }

    fn diff(&self, g: &GuestHandle, against: TreeId) -> Result<Value> {
        Ok(serde_json::to_value(super::diff::rows(&g.diff_live(self.shared.clone(), Some(&self.live.current()), against)?))?)
    }

    /// The guest's socket: the host's `checkpoint`, `diff`, `rollback`.
    pub fn host(&self, req: Request) -> Result<Value> {
        let mut g = self.handle();
        match req {
            Request::Checkpoint { message } => self.checkpoint(&mut g, &message, false),
            Request::Diff { against } => self.diff(&g, against.parse()?),
            Request::Rollback { checkpoint, .. } => {
                let cp = g.checkpoint(&checkpoint)?;
                g.rollback_live(&self.live, self.shared.clone(), &cp)?;
                Ok(serde_json::to_value(cp)?)
            }
        }
    }

    /// The root socket: the booted guest's own commands.
    pub fn this_root(&self, req: RootRequest) -> Result<Value> {
        let mut g = self.handle();
        match req {
            RootRequest::Info => Ok(json!({ "guest": g.rec.name, "image": g.rec.image })),
            RootRequest::Log => Ok(json!({ "guest": g.rec.name, "base": g.state.base, "checkpoints": g.checkpoints()? })),
            RootRequest::Checkpoint { message } => self.checkpoint(&mut g, &message, true),
            RootRequest::Diff { against } => {
                let t = super::diff::against(&Repository::open(&self.repo, false)?, &g, against.as_deref())?;
                self.diff(&g, t)
            }
            RootRequest::Rollback { checkpoint } => {
                let cp = g.checkpoint(&checkpoint)?;
                super::rollback::refuse_unsound(&Repository::open(&self.repo, false)?, &g, &cp)?;
                g.rollback_live(&self.live, self.shared.clone(), &cp)?;
                Ok(serde_json::to_value(cp)?)
            }
        }
    }
}

/// The root socket of a root served as an image with a plain overlay: it
/// names itself, and says that the guest commands need a guest.
pub fn image_root(image: String, overlay: &Path) -> impl Fn(RootRequest) -> Result<Value> + Send + 'static {
    let overlay = overlay.display().to_string();
    move |req| match req {
        RootRequest::Info => Ok(json!({ "guest": null, "image": image, "overlay": overlay })),
        _ => Err(crate::control::not_a_guest(&image)),
    }
}

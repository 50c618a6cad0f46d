//! `lvrepo nbd serve` and `lvrepo nbd stop`: block volumes over NBD.
//!
//! A volume guest is served read-write (its daemon holds the guest's lock,
//! like a mount, and answers checkpoint, diff and rollback on the guest's
//! control socket); an image or a checkpoint is served read-only. Without
//! `--foreground` the command starts itself again in the background (logging
//! to the guest's `nbd.log`) and returns once the server accepts clients.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lvrepo_fs::fuse::block_termination_signals;
use lvrepo_fs::guest::{CheckpointView, GuestHandle};
use lvrepo_fs::nbd::handshake::Exports;
use lvrepo_fs::nbd::server::{Listen, Server};
use lvrepo_fs::nbd::volume::{OverlayVolume, TreeVolume};
use lvrepo_fs::nbd::Export;
use lvrepo_fs::object::Cached;
use lvrepo_fs::ObjectStore;

use crate::cli::{Cli, NbdCmd};
use crate::control::Request;

pub fn run(cli: &Cli, cmd: &NbdCmd) -> Result<()> {
    match cmd {
        NbdCmd::Serve { guest, checkpoint, image, socket, listen, read_only, foreground } => {
            let at = match (socket, listen) {
                (Some(p), _) => Listen::Unix(p.clone()),
                (None, Some(a)) => Listen::Tcp(a.clone()),
                (None, None) => bail!(crate::Exit(crate::exit::USAGE, "give --socket PATH or --listen ADDR:PORT".into())),
            };
            serve(cli, guest.as_deref(), checkpoint.as_deref(), image.as_deref(), at, *read_only, *foreground)
        }
        NbdCmd::Stop { guest } => stop(cli, guest),
    }
}

/// One export, reachable by its name and as the default ("").
struct One {
    name: String,
    export: Arc<dyn Export>,
}

impl Exports for One {
    fn find(&self, name: &[u8]) -> Option<(String, Arc<dyn Export>)> {
        (name.is_empty() || name == self.name.as_bytes()).then(|| (self.name.clone(), self.export.clone()))
    }
    fn names(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("nbd.pid")
}

#[allow(clippy::too_many_arguments)]
fn serve(cli: &Cli, guest: Option<&str>, checkpoint: Option<&str>, image: Option<&str>, at: Listen, read_only: bool, foreground: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let rec = guest.map(|g| lvrepo_fs::guest::find(&p, g)).transpose()?;
    if let Some(r) = &rec {
        if !r.volume {
            bail!(crate::Exit(crate::exit::USAGE, format!("guest {} is not a volume guest (mount it instead)", r.name)));
        }
        if checkpoint.is_none() {
            // Busy (mounted, served, or another command on it): say so now, exit 6.
            drop(lvrepo_fs::guest::lock(&r.dir, &r.name)?);
        }
    }
    if !foreground {
        return spawn(rec.as_ref().map(|r| r.dir.as_path()), &at);
    }
    let sigs = block_termination_signals()?;
    let repo = super::open(cli, false)?;
    let shared: Arc<dyn ObjectStore> = Arc::new(Cached::sized_to_memory(repo.shared_store(), None));
    let (name, export, handle, volume): (String, Arc<dyn Export>, Option<GuestHandle>, Option<Arc<OverlayVolume>>) = match (guest, checkpoint, image) {
        (Some(g), Some(cp), _) => {
            let h = GuestHandle::open(&p, g, false)?;
            let c = h.checkpoint(cp)?;
            (g.to_string(), Arc::new(TreeVolume::open(h.store(shared.clone()), &c.root_tree())?), None, None)
        }
        (Some(g), None, _) => {
            let h = GuestHandle::open(&p, g, true)?;
            // The cache over the guest's whole store (its own objects, then
            // the repository's): a read finds a chunk in one lookup whichever
            // store holds it, instead of first missing in the guest's index
            // (a lock and a database read per request, shared by every
            // connection), and checkpointed chunks are cached too.
            let ov = h.overlay(vol_store(&h, &repo)).with_context(|| format!("opening overlay of guest {g}"))?;
            let v = Arc::new(OverlayVolume::new(Arc::new(ov), read_only)?);
            (g.to_string(), v.clone(), Some(h), Some(v))
        }
        (None, _, Some(i)) => {
            let img = super::resolve(&repo, i)?;
            (img.name.clone(), Arc::new(TreeVolume::open(shared.clone(), &img.root_tree())?), None, None)
        }
        _ => bail!(crate::Exit(crate::exit::USAGE, "give --guest NAME or --image NAME[:VERSION]".into())),
    };
    let server = Arc::new(Server::bind(&at, Arc::new(One { name: name.clone(), export: export.clone() }))?);
    let dir = rec.as_ref().map(|r| r.dir.clone());
    if let (Some(dir), Some(h), Some(v)) = (&dir, handle, volume) {
        let store = vol_store(&h, &repo);
        control(&p, dir, h, v, server.clone(), shared.clone(), store)?;
        std::fs::write(pid_file(dir), format!("{}\n", std::process::id())).context("writing nbd.pid")?;
    }
    let s2 = server.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = sigs.wait() {
            tracing::info!(?sig, "stopping the NBD server");
            s2.stop(Duration::from_secs(5));
        }
    });
    tracing::info!(volume = %name, listen = ?at, "serving");
    server.run();
    let r = export.flush();
    if let Some(dir) = &dir {
        let _ = std::fs::remove_file(pid_file(dir));
        let _ = std::fs::remove_file(crate::control::socket_path(dir));
    }
    if let Listen::Unix(path) = &at {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!(volume = %name, "stopped");
    Ok(r?)
}

/// What a served guest's overlay reads through (see `serve`).
fn vol_store(h: &GuestHandle, repo: &lvrepo_fs::repo::Repository) -> Arc<dyn ObjectStore> {
    Arc::new(Cached::sized_to_memory(h.store(repo.shared_store()), None))
}

/// Answer checkpoint, diff and rollback for the served guest.
fn control(repo: &Path, dir: &Path, h: GuestHandle, vol: Arc<OverlayVolume>, server: Arc<Server>, shared: Arc<dyn ObjectStore>, store: Arc<dyn ObjectStore>) -> Result<()> {
    let g = Mutex::new(h);
    let repo = repo.to_path_buf();
    crate::control::serve(dir, move |req| {
        let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
        match req {
            Request::Checkpoint { message } => {
                // A cut between requests: the engine's lock orders it with
                // every write (those replied to are in it).
                let view = CheckpointView::open(&repo)?;
                Ok(serde_json::to_value(g.checkpoint_live(&vol.overlay(), &*g.store(view.confirm(shared.clone())), &message)?)?)
            }
            Request::Diff { against } => {
                let t: lvrepo_fs::TreeId = against.parse()?;
                Ok(serde_json::to_value(g.diff_ranges_live(shared.clone(), Some(&vol.overlay()), t)?)?)
            }
            Request::Rollback { checkpoint, disconnect } => {
                let cp = g.checkpoint(&checkpoint)?;
                if server.connections() > 0 {
                    if !disconnect {
                        return Err(lvrepo_fs::Error::GuestBusy(format!("{} ({} NBD clients connected; --disconnect to drop them)", g.rec.name, server.connections())).into());
                    }
                    server.disconnect_all();
                    let t = Instant::now();
                    while server.connections() > 0 && t.elapsed() < Duration::from_secs(10) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                g.rollback_served(store.clone(), &cp, |ov| vol.replace(ov))?;
                Ok(serde_json::to_value(cp)?)
            }
        }
    })
}

fn spawn(dir: Option<&Path>, at: &Listen) -> Result<()> {
    let log = match dir {
        Some(d) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(d.join("nbd.log")).context("opening nbd.log")?),
        None => Stdio::null(),
    };
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.push("--foreground".into());
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().context("starting the NBD server")?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let up = match at {
            Listen::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
            Listen::Tcp(a) => std::net::TcpStream::connect(a).is_ok(),
        };
        if up {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = dir.map(|d| std::fs::read_to_string(d.join("nbd.log")).unwrap_or_default()).unwrap_or_default();
            let last: Vec<&str> = tail.lines().rev().take(3).collect();
            bail!("NBD server exited with {status}: {}", last.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the NBD server did not start listening within 60 s")
}

fn stop(cli: &Cli, guest: &str) -> Result<()> {
    let p = super::repo_path(cli)?;
    let rec = lvrepo_fs::guest::find(&p, guest)?;
    let pid: i32 = match std::fs::read_to_string(pid_file(&rec.dir)) {
        Ok(s) => s.trim().parse().with_context(|| format!("reading {}", pid_file(&rec.dir).display()))?,
        Err(_) => bail!(crate::Exit(crate::exit::NOT_FOUND, format!("guest {guest} is not served"))),
    };
    // SAFETY: kill sends a signal to the pid the server wrote; no memory.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        let _ = std::fs::remove_file(pid_file(&rec.dir));
        bail!(crate::Exit(crate::exit::NOT_FOUND, format!("guest {guest} is not served (stale nbd.pid removed)")));
    }
    super::umount::wait_exit(pid)
}

//! Rebase: move an unmounted guest onto another version of its image,
//! keeping its own changes (a three-way merge, [`crate::merge`]: base = the
//! image the guest stands on, theirs = the new image, ours = its state).
//!
//! Order, so that a refusal or a crash leaves the old state or the new one:
//! 1. plan: fold the guest's state into a scratch store in memory and merge;
//!    conflicts without `prefer` refuse here, and `dry_run` stops here
//!    (nothing written);
//! 2. checkpoint the guest (the planned fold's objects copied into its
//!    store, recorded; a rollback target; the guest stays on its current
//!    generation until step 4);
//! 3. merge again over the checkpoint, writing trees to the guest's store;
//!    write the personalisation files into the merged tree; flush;
//! 4. switch the guest onto the result (a new overlay generation, unborn:
//!    its database is made at first use; the `STATE` rename is the commit
//!    point);
//! 5. rewrite the guest's record to name the new image. A crash between 4
//!    and 5 leaves a record naming the old image: a rebase run again finds
//!    the image's changes already made (same entries on both sides) and
//!    completes it.

use std::collections::HashSet;
use std::sync::Arc;

use crate::backup::copy_closure;
use crate::digest::TreeId;
use crate::error::{Error, Result};
use crate::merge::{merge3, Prefer};
use crate::object::{Layered, MemStore, ObjectStore};
use crate::repo::ImageRecord;
use crate::tree::file::ContentBuilder;
use crate::tree::{Entry, Kind, Timestamp};

use super::GuestHandle;

#[derive(Clone, Debug, serde::Serialize)]
pub struct RebaseReport {
    pub guest: String,
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// Paths both sides changed (resolved by `--prefer` when one was given).
    #[serde(skip)]
    pub conflicts: Vec<Vec<u8>>,
    /// Directories the merge read (both sides changed something below them).
    pub dirs_merged: u64,
    /// The checkpoint taken before the rebase (roll back to it to undo).
    pub checkpoint: Option<u32>,
    pub root: Option<crate::digest::ImageId>,
}

/// The files personalisation values put into a guest: `hostname` →
/// `/etc/hostname`, every pair → `/etc/lvrepo/guest.conf`, as
/// `(path, bytes, mode)`.
pub fn personal_files(pairs: &[(String, String)]) -> Vec<(Vec<u8>, Vec<u8>, u32)> {
    let mut put = Vec::new();
    if let Some((_, h)) = pairs.iter().rev().find(|(k, _)| k == "hostname") {
        put.push((b"/etc/hostname".to_vec(), format!("{h}\n").into_bytes(), 0o644));
    }
    if !pairs.is_empty() {
        let conf: String = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        put.push((b"/etc/lvrepo/guest.conf".to_vec(), conf.into_bytes(), 0o600));
    }
    put
}

impl GuestHandle {
    /// The roots a fold of this guest reuses objects of, labelled: its base,
    /// and its latest checkpoint (the fold memo's). A checkpoint or rebase
    /// refuses when their objects in the guest's store are unsound.
    pub fn fold_roots(&self) -> Result<Vec<(TreeId, String)>> {
        let name = &self.rec.name;
        let mut roots = vec![(self.state.base, format!("guest {name} base"))];
        if let Some(last) = self.checkpoints()?.into_iter().max_by_key(|c| c.version).filter(|c| c.root_tree() != self.state.base) {
            roots.push((last.root_tree(), format!("guest {name} checkpoint {}", last.version)));
        }
        Ok(roots)
    }

    /// Rebase this guest (opened writable, not mounted) from image `old`
    /// (the one it stands on) onto `new`; see the module doc for the steps.
    /// Conflicts without `prefer` are [`Error::RebaseConflict`], nothing
    /// changed.
    pub fn rebase(&mut self, repo: &std::path::Path, shared: Arc<dyn ObjectStore>, old: &ImageRecord, new: &ImageRecord, prefer: Option<Prefer>, dry_run: bool) -> Result<RebaseReport> {
        if self.rec.volume || new.volume || old.volume {
            return Err(Error::NotSupported { path: self.rec.name.clone(), why: "volume guests and images cannot be rebased" });
        }
        let files = personal_files(&self.rec.personal);
        let forced: HashSet<Vec<u8>> = files.iter().map(|f| f.0.clone()).collect();
        let (base, theirs) = (old.root_tree(), new.root_tree());
        let store = self.store(shared.clone());
        let scratch = Layered::new(MemStore::new(), store.clone());
        let ours = {
            let ov = self.overlay(store.clone())?;
            let mut st = ov.lock();
            super::fold::fold(&ov, &mut st, &scratch)?.0
        };
        let plan = merge3(&scratch, &scratch, &base, &theirs, &ours, prefer, &forced)?;
        let mut report = RebaseReport { guest: self.rec.name.clone(), from: old.label(), to: new.label(), dry_run, conflicts: plan.conflicts, dirs_merged: plan.dirs_merged, checkpoint: None, root: None };
        if !report.conflicts.is_empty() && prefer.is_none() {
            return Err(Error::RebaseConflict { guest: self.rec.name.clone(), image: new.label(), paths: report.conflicts });
        }
        if dry_run {
            return Ok(report);
        }
        // The checkpoint is the planned fold: its objects copied from the
        // scratch into the guest's store (the guest is not folded twice).
        copy_closure(&scratch, &*store, &ours, &mut Default::default())?;
        let cp = self.record_checkpoint(ours, &format!("before rebase onto {}", new.label()))?;
        report.checkpoint = Some(cp.version);
        let merged = merge3(&*store, &*store, &base, &theirs, &cp.root_tree(), prefer, &forced)?;
        let mut root = merged.root;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| Timestamp { sec: d.as_secs() as i64, nsec: d.subsec_nanos() }).unwrap_or_default();
        for (path, bytes, mode) in &files {
            root = put_file(&*store, root, path, bytes, *mode, now)?;
        }
        self.local().objects().flush()?;
        self.switch_base_unborn(root)?;
        let mut rec = self.rec.clone();
        rec.image = new.label();
        rec.rebases.push(super::Rebased { checkpoint: cp.version, from: old.label(), to: new.label(), time: now.sec });
        super::rewrite_record(repo, &rec)?;
        self.rec = rec;
        report.root = Some(crate::digest::ImageId(root));
        tracing::info!(guest = %self.rec.name, image = %new.label(), checkpoint = cp.version, "rebased guest");
        Ok(report)
    }
}

/// The image a guest stood on at its checkpoint `n`: the `from` of the
/// first rebase at or after it, else the image of its latest rebase (or the
/// one it was created from).
pub fn image_at(rec: &super::GuestRecord, n: u32) -> String {
    match rec.rebases.iter().find(|r| r.checkpoint >= n) {
        Some(r) => r.from.clone(),
        None => rec.rebases.last().map_or_else(|| rec.image.clone(), |r| r.to.clone()),
    }
}

/// After a rollback of guest `name` to checkpoint `n`: its record names the
/// image that checkpoint stands on (a rebase's three-way merge needs it).
pub fn record_rollback(repo: &std::path::Path, name: &str, n: u32) -> Result<()> {
    let mut rec = super::find(repo, name)?;
    let image = image_at(&rec, n);
    if image != rec.image {
        rec.image = image;
        super::rewrite_record(repo, &rec)?;
    }
    Ok(())
}

/// Root tree `root` with the file at `path` (absolute, `/`-separated bytes)
/// holding `bytes` (owner root, `mode`, mtime `now`), replacing what was
/// there; missing directories are made 0755. Stored in `store`. Only the
/// trees on the path are read and written.
fn put_file(store: &dyn ObjectStore, root: TreeId, path: &[u8], bytes: &[u8], mode: u32, now: Timestamp) -> Result<TreeId> {
    let at = super::paths::lookup(store, &root, path)?;
    if at.blocked {
        return Err(Error::NotSupported { path: crate::walk::escape_path(path), why: "a directory on the path of a personalisation file is not a directory" });
    }
    if at.entry.as_ref().is_some_and(|e| e.kind == Kind::Dir) {
        return Err(Error::NotSupported { path: crate::walk::escape_path(path), why: "a personalisation file is a directory here" });
    }
    let mut f = Entry::new(Vec::new(), Kind::File);
    (f.mode, f.mtime, f.size) = (mode, now, bytes.len() as u64);
    let mut b = ContentBuilder::new(store);
    b.push(0, bytes)?;
    f.content = b.finish(f.size)?;
    super::paths::set_path(store, root, path, Some(f), &[], now)
}

//! Propagate: copy chosen paths' state from a source guest (its state or a
//! checkpoint) to other, unmounted guests, by the three-way logic of
//! rebase ([`crate::merge`]).
//!
//! For each chosen path the source gives a before (its image's version) and
//! an after (its state's); either may be absent (a creation, a deletion). A
//! target is merged as a rebase is, with base = the target's state with the
//! chosen paths set to their before, theirs = the same with them set to
//! their after, ours = the target's state: everything else is the same on
//! all three sides and is taken whole unread, and at a chosen path a target
//! that kept the before gets the after, one that already has the after
//! keeps it, and any other version is a conflict (a directory changed on
//! all three sides is merged below, per path). A parent the source has
//! and the target lacks is created with the source's attributes.
//!
//! Order per target, as rebase's: plan in memory (a conflict without
//! `prefer` refuses here, `dry_run` stops here); checkpoint the target (the
//! planned fold, a rollback target); copy the source's objects the paths reach into the
//! target's store, merge over the checkpoint, flush; switch the target onto
//! the result (an unborn generation; the `STATE` rename is the commit point).

use std::collections::HashSet;
use std::sync::Arc;

use crate::digest::TreeId;
use crate::error::{Error, Result};
use crate::merge::{merge3, Prefer};
use crate::object::{Layered, MemStore, ObjectStore};
use crate::tree::{Entry, Timestamp};

use super::paths::{lookup, set_path};
use super::GuestHandle;

/// One chosen path in the source: its version in the source's image
/// (`before`) and in the source's state (`after`).
#[derive(Clone, Debug)]
pub struct Change {
    pub path: Vec<u8>,
    before: Option<Entry>,
    after: Option<Entry>,
    /// The source's directories on the way (templates for missing parents).
    dirs: Vec<Entry>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PropagateReport {
    pub guest: String,
    pub source: String,
    pub dry_run: bool,
    /// Paths where the guest had its own version (resolved by `prefer`).
    #[serde(skip)]
    pub conflicts: Vec<Vec<u8>>,
    /// The checkpoint taken before (roll back to it to undo).
    pub checkpoint: Option<u32>,
    pub root: Option<crate::digest::ImageId>,
}

/// The changes at `paths` between root trees `before` (the source's image)
/// and `after` (the source's state), both read through `store`. A path
/// below another chosen path is covered by it and dropped; a path in
/// neither tree is [`Error::PathNotFound`].
pub fn changes(store: &dyn ObjectStore, before: &TreeId, after: &TreeId, paths: &[Vec<u8>], source: &str) -> Result<Vec<Change>> {
    let mut norm: Vec<Vec<u8>> = Vec::new();
    for p in paths {
        let comps = super::paths::components(p)?;
        norm.push(comps.iter().flat_map(|c| [&b"/"[..], c].concat()).collect());
    }
    norm.sort();
    norm.dedup();
    let covered = |p: &[u8], q: &[u8]| p.len() > q.len() && p.starts_with(q) && p[q.len()] == b'/';
    let kept: Vec<&Vec<u8>> = norm.iter().filter(|p| !norm.iter().any(|q| covered(p, q))).collect();
    let mut out = Vec::new();
    for p in kept {
        let (b, a) = (lookup(store, before, p)?, lookup(store, after, p)?);
        if b.entry.is_none() && a.entry.is_none() {
            return Err(Error::PathNotFound { image: source.to_string(), path: crate::walk::escape_path(p) });
        }
        let dirs = if a.entry.is_some() { a.dirs } else { b.dirs };
        out.push(Change { path: p.clone(), before: b.entry, after: a.entry, dirs });
    }
    Ok(out)
}

/// The merge of `changes` into root `ours`: the base side is built in
/// `base_store` (a scratch reading through `store`), the source's side in
/// `store`, the result in `store`. Conflicts below a missing or blocked
/// parent are named by the chosen path.
fn merge_changes(base_store: &dyn ObjectStore, store: &dyn ObjectStore, ours: TreeId, changes: &[Change], prefer: Option<Prefer>) -> Result<(TreeId, Vec<Vec<u8>>)> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| Timestamp { sec: d.as_secs() as i64, nsec: d.subsec_nanos() }).unwrap_or_default();
    let (mut base, mut theirs) = (ours, ours);
    let mut blocked = Vec::new();
    for c in changes {
        if lookup(store, &ours, &c.path)?.blocked && c.before != c.after {
            // Something that is not a directory stands on the way: the
            // target changed a parent itself.
            blocked.push(c.path.clone());
            if prefer != Some(Prefer::Image) {
                continue;
            }
        }
        base = set_path(base_store, base, &c.path, c.before.clone(), &c.dirs, now)?;
        theirs = set_path(store, theirs, &c.path, c.after.clone(), &c.dirs, now)?;
    }
    let merged = merge3(base_store, store, &base, &theirs, &ours, prefer, &HashSet::new())?;
    let mut conflicts: Vec<Vec<u8>> = blocked;
    for p in merged.conflicts {
        // A conflict at a parent of chosen paths (the target lacks it, or
        // has something else there) is a conflict at those paths.
        let under: Vec<&Change> = changes.iter().filter(|c| c.path.len() > p.len() && c.path.starts_with(&p) && c.path[p.len()] == b'/').collect();
        if under.is_empty() {
            conflicts.push(p);
        } else {
            conflicts.extend(under.iter().map(|c| c.path.clone()));
        }
    }
    conflicts.sort();
    conflicts.dedup();
    Ok((merged.root, conflicts))
}

/// Copy what `e` reaches from `src` into `dst` (what `dst` holds is skipped).
fn copy_entry(src: Arc<dyn ObjectStore>, dst: &dyn ObjectStore, e: &Entry) -> Result<()> {
    // A one-entry tree in a scratch over `src`: its closure is the entry's,
    // plus that tree (a few bytes of garbage in `dst` for gc).
    let scratch = Layered::new(MemStore::new(), src);
    let id = crate::tree::Tree { entries: vec![e.clone()] }.store(&scratch)?;
    crate::backup::copy_closure(&scratch, dst, &id, &mut Default::default())
}

impl GuestHandle {
    /// Apply `changes` (read through `source`, labelled `label`) to this
    /// guest, opened writable and not mounted; see the module doc for the
    /// steps. Conflicts without `prefer` are [`Error::PropagateConflict`],
    /// nothing changed.
    pub fn propagate(&mut self, shared: Arc<dyn ObjectStore>, source: Arc<dyn ObjectStore>, label: &str, changes: &[Change], prefer: Option<Prefer>, dry_run: bool) -> Result<PropagateReport> {
        if self.rec.volume {
            return Err(Error::NotSupported { path: self.rec.name.clone(), why: "volume guests have no paths to propagate" });
        }
        let store = self.store(shared.clone());
        let scratch = Layered::new(MemStore::new(), Layered::new(store.clone(), source.clone()));
        let ours = {
            let ov = self.overlay(store.clone())?;
            let mut st = ov.lock();
            super::fold::fold(&ov, &mut st, &scratch)?.0
        };
        let (_, conflicts) = merge_changes(&scratch, &scratch, ours, changes, prefer)?;
        let mut report = PropagateReport { guest: self.rec.name.clone(), source: label.to_string(), dry_run, conflicts, checkpoint: None, root: None };
        if !report.conflicts.is_empty() && prefer.is_none() {
            return Err(Error::PropagateConflict { guest: self.rec.name.clone(), source_label: label.to_string(), paths: report.conflicts });
        }
        if dry_run {
            return Ok(report);
        }
        // The checkpoint is the planned fold (copied from the scratch).
        crate::backup::copy_closure(&scratch, &*store, &ours, &mut Default::default())?;
        let cp = self.record_checkpoint(ours, &format!("before propagate from {label}"))?;
        report.checkpoint = Some(cp.version);
        for e in changes.iter().filter_map(|c| c.after.as_ref()) {
            copy_entry(source.clone(), &*store, e)?;
        }
        let base_scratch = Layered::new(MemStore::new(), store.clone());
        let (root, _) = merge_changes(&base_scratch, &*store, cp.root_tree(), changes, prefer)?;
        self.local().objects().flush()?;
        self.switch_base_unborn(root)?;
        report.root = Some(crate::digest::ImageId(root));
        tracing::info!(guest = %self.rec.name, source = label, checkpoint = cp.version, "propagated paths");
        Ok(report)
    }
}

impl GuestHandle {
    /// This (unmounted) guest's current state as a root tree folded into a
    /// scratch store in memory over its own (nothing is written): `(store, root)`.
    pub fn fold_scratch(&self, shared: Arc<dyn ObjectStore>) -> Result<(Arc<dyn ObjectStore>, TreeId)> {
        let store = self.store(shared);
        let scratch: Arc<dyn ObjectStore> = Arc::new(Layered::new(MemStore::new(), store.clone()));
        let ov = self.overlay(store)?;
        let mut st = ov.lock();
        let root = super::fold::fold(&ov, &mut st, &*scratch)?.0;
        Ok((scratch, root))
    }
}

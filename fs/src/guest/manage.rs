//! Guest management beyond create/remove: rename, clone from a checkpoint,
//! delete one checkpoint.
//!
//! Invariants: a guest's registry file name is its name (a rename renames
//! that file first, atomically and without replacing, so at every instant
//! the guest has exactly one name); a clone is registered only after every
//! object its state needs is in its own store or the shared repository.

use std::path::Path;
use std::sync::Arc;

use super::{check_guest_name, lock, record_path, registry_dir, write_atomic, Checkpoint, GuestHandle, GuestRecord, CHECKPOINT_REF};
use crate::error::{Error, Result};
use crate::object::{Layered, ObjectStore};
use crate::repo::{ImageRecord, ImageRef, Repository};

/// Rename guest `old` to `new` (not mounted: its lock is taken, exit 6
/// otherwise). The guest's directory does not move.
pub fn rename(repo: &Path, old: &str, new: &str) -> Result<GuestRecord> {
    check_guest_name(new)?;
    let rec = super::find(repo, old)?;
    let _guard = lock(&rec.dir, old)?;
    let (from, to) = (record_path(repo, old), record_path(repo, new));
    rename_noreplace(&from, &to).map_err(|e| if e.raw_os_error() == Some(libc::EEXIST) { Error::GuestExists(new.to_string()) } else { Error::io("renaming", &from, e) })?;
    let rec = GuestRecord { name: new.to_string(), ..rec };
    // The record's `name` follows; readers take the file's name meanwhile.
    let json = serde_json::to_vec_pretty(&rec).map_err(|_| Error::Decode { what: "guest record", why: "unencodable" })?;
    write_atomic(&to, &json)?;
    let dir = registry_dir(repo);
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("syncing", &dir, e))?;
    tracing::info!(guest = new, was = old, "renamed guest");
    Ok(rec)
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL));
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Create guest `new` in `dir` whose state is checkpoint `cp` of guest `src`
/// (an empty overlay over the checkpoint's tree). The objects `src` holds
/// alone are copied into the new guest's store; what the shared repository
/// holds stays shared. `src` may be mounted (checkpoints never change).
pub fn clone_checkpoint(repo: &Repository, src: &GuestHandle, cp: &Checkpoint, new: &str, dir: &Path) -> Result<GuestHandle> {
    // The clone names its source's image (what `diff NEW` compares against);
    // its base is the checkpoint.
    let (name, version) = src.rec.image.rsplit_once(':').map_or((src.rec.image.as_str(), 0), |(n, v)| (n, v.parse().unwrap_or(0)));
    let base = ImageRecord { name: name.to_string(), version, root: cp.root, volume: src.rec.volume, ..cp.clone() };
    let from = src.store(repo.shared_store());
    let root = cp.root_tree();
    let g = GuestHandle::create_filled(repo, new, &base, dir, |local| {
        let to = Layered::new(local.shared_store(), repo.shared_store());
        let mut stats = crate::backup::CopyStats::default();
        crate::backup::copy_closure(&*from, &to, &root, &mut stats)?;
        local.objects().flush()?;
        tracing::info!(guest = new, objects = stats.objects, bytes = stats.bytes, "copied the source guest's own objects");
        Ok(())
    })?;
    tracing::info!(guest = new, from = %src.rec.name, checkpoint = cp.version, "cloned guest");
    Ok(g)
}

impl GuestHandle {
    /// Delete one checkpoint (a writable handle: the guest is not mounted)
    /// and collect the guest-local objects only it used. The newest is
    /// refused: the next checkpoint is numbered after it and reuses its
    /// objects. A checkpoint the guest's state sits on (after a rollback)
    /// may go: its tree stays stored as the guest's base until the state
    /// moves on.
    pub fn delete_checkpoint(&mut self, shared: Arc<dyn ObjectStore>, which: &str) -> Result<Checkpoint> {
        let cp = self.checkpoint(which)?;
        let all = self.checkpoints()?;
        if all.iter().all(|c| c.version <= cp.version) {
            return Err(Error::CheckpointInUse { guest: self.rec.name.clone(), checkpoint: cp.version, why: "it is the newest (the next checkpoint builds on it); `checkpoint prune --keep 0` removes every checkpoint" });
        }
        self.local().delete_image(&ImageRef { name: CHECKPOINT_REF.into(), version: Some(cp.version) })?;
        let mut roots = vec![self.state.base];
        roots.extend(all.iter().filter(|c| c.version != cp.version).map(|c| c.root_tree()));
        let store = self.store(shared);
        crate::gc::gc_marking(self.local(), &*store, &roots, &crate::import::NoProgress)?;
        tracing::info!(guest = %self.rec.name, checkpoint = cp.version, "checkpoint deleted");
        Ok(cp)
    }
}

/// The live states of two unmounted guests as root trees in one scratch
/// store in memory (nothing is stored), for comparing them: `(store, a, b)`.
pub fn fold_pair(a: &GuestHandle, b: &GuestHandle, shared: Arc<dyn ObjectStore>) -> Result<(Arc<dyn ObjectStore>, crate::TreeId, crate::TreeId)> {
    let both: Arc<dyn ObjectStore> = Arc::new(Layered::new(a.local().shared_store(), b.store(shared.clone())));
    let scratch: Arc<dyn ObjectStore> = Arc::new(Layered::new(crate::object::MemStore::new(), both));
    let mut roots = Vec::new();
    for g in [a, b] {
        let ov = g.overlay(g.store(shared.clone()))?;
        let mut st = ov.lock();
        roots.push(super::fold::fold(&ov, &mut st, &*scratch)?.0);
    }
    Ok((scratch, roots[0], roots[1]))
}

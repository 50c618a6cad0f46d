//! `restore`: rebuild a backed-up guest in the local repository.
//!
//! The guest's objects go to its own store (what the local repository lacks;
//! a site holding the golden image receives only the guest's bytes), its
//! checkpoints become its `checkpoint:N` refs again, and its state is the
//! chosen checkpoint on an empty overlay. The guest is registered last, so
//! an interrupted restore leaves no guest; the gc guard is held throughout,
//! so gc cannot remove a local object the restore decided not to copy.

use std::path::Path;

use super::{checkpoints, copy_closure, guest_meta, CopyStats};
use crate::error::{Error, Result};
use crate::guest::{CheckpointView, GuestHandle};
use crate::object::{Layered, ObjectStore};
use crate::repo::{ImageRecord, ImageRef, Repository};

/// Restore guest `guest` from `from` into the repository at `local` as guest
/// `as_name` with its directory at `dir`, in the state of checkpoint
/// `checkpoint` (default: the newest).
pub fn restore(local: &Path, from: &Repository, guest: &str, checkpoint: Option<u32>, as_name: &str, dir: &Path) -> Result<(GuestHandle, CopyStats)> {
    let meta = guest_meta(from, guest)?.ok_or_else(|| Error::GuestNotFound(format!("{guest} (no backup of it in {})", from.path().display())))?;
    let cps = checkpoints(from, guest)?;
    let chosen = match checkpoint {
        Some(n) => cps.iter().find(|c| c.version == n),
        None => cps.last(),
    }
    .ok_or_else(|| Error::CheckpointNotFound { guest: guest.to_string(), checkpoint: checkpoint.map_or("(any)".into(), |n| n.to_string()) })?;
    let image: ImageRef = meta.image.parse()?;
    // The guest record names the image it came from; its base is the checkpoint.
    let base = ImageRecord {
        name: image.name,
        version: image.version.unwrap_or(0),
        root: chosen.root,
        parent: None,
        created: 0,
        message: String::new(),
        files: 0,
        logical_bytes: 0,
        volume: meta.volume,
    };
    let view = CheckpointView::open(local)?;
    let repo = Repository::open(local, false)?;
    discard_unfinished(local, dir)?;
    let mut stats = CopyStats::default();
    let g = GuestHandle::create_filled(&repo, as_name, &base, dir, |store| {
        let dst = Layered::new(store.shared_store(), view.shared());
        for cp in &cps {
            copy_closure(from.objects(), &dst, &cp.root_tree(), &mut stats)?;
        }
        dst.flush()?;
        crate::gc::failpoint("restore-before-publish");
        for cp in &cps {
            store.publish(&ImageRecord { name: crate::guest::CHECKPOINT_REF.into(), ..cp.clone() })?;
        }
        Ok(())
    })?;
    tracing::info!(guest = as_name, checkpoint = chosen.version, objects = stats.objects, bytes = stats.bytes, "restored guest");
    Ok((g, stats))
}

/// A directory an interrupted restore left (killed before the guest was
/// registered): nothing but what guest creation writes before registering
/// (`lock`, `store/`, the first generation, `STATE`), and no registered
/// guest lives there. It never became visible; remove it so a rerun can go on. Its lock is taken
/// first, so a restore still running there is not disturbed (exit 6).
fn discard_unfinished(local: &Path, dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(()) };
    let names: Vec<std::ffi::OsString> = rd.flatten().map(|e| e.file_name()).collect();
    let ours = |n: &std::ffi::OsString| ["store", "lock", "STATE", "STATE.tmp", "gen-00000001"].iter().any(|o| n == o);
    if names.is_empty() || !names.iter().all(ours) {
        return Ok(());
    }
    let canon = std::fs::canonicalize(dir).map_err(|e| Error::io("resolving", dir, e))?;
    if crate::guest::list(local)?.iter().any(|g| g.dir == canon) {
        return Ok(());
    }
    let _held = crate::guest::lock(&canon, &canon.display().to_string())?;
    tracing::info!(path = %canon.display(), "removing what an interrupted restore left");
    std::fs::remove_dir_all(&canon).map_err(|e| Error::io("removing", &canon, e))
}

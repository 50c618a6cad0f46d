//! Garbage collection: remove what no image (and no extra root) references.
//!
//! Crash safety, step by step (each step is durable before the next starts):
//! 1. mark every reachable object;
//! 2. copy the live records of packs that hold garbage into a new pack, fsync
//!    it, then repoint their index entries (one synced batch);
//! 3. delete the index entries of unreachable objects (one synced batch);
//! 4. unlink pack files that no index entry references any more.
//! A crash after any step leaves every live object indexed at a place that is
//! on disk; the next gc finishes the job. `LVREPO_FAILPOINT=gc-after-copy` or
//! `gc-after-index` aborts the process at those points (crash tests use it).

use std::collections::{HashMap, HashSet};

use rocksdb::WriteBatch;

use crate::digest::{Digest, TreeId};
use crate::error::{Error, Result};
use crate::import::Progress;
use crate::object::{IndexEntry, ObjectStore, PACK_HEADER_LEN, RECORD_HEADER_LEN};
use crate::repo::Repository;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub live_objects: u64,
    /// Objects no image references, dropped from the index.
    pub removed_objects: u64,
    /// Their stored (compressed) size.
    pub removed_bytes: u64,
    pub packs_rewritten: u64,
    pub packs_deleted: u64,
    /// Unreferenced packs kept because readers had the repository open.
    pub packs_deferred: u64,
    /// Repository size on disk before and after: the space really reclaimed.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// A `--dry-run` report: nothing was removed; `bytes_after` is an estimate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Abort here if the named failpoint is set (crash tests).
pub fn failpoint(name: &str) {
    if std::env::var("LVREPO_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("lvrepo: failpoint {name} reached, aborting");
        std::process::abort();
    }
}

/// Collect the shared repository `repo` (opened writable), keeping what its
/// images reference and what every registered guest needs (its base and its
/// checkpoints, read through the guest's own store). Holds the gc guard
/// exclusively from before the guests' roots are read until the sweep is
/// done, so no checkpoint is in progress meanwhile (see
/// [`crate::guest::CheckpointView`]).
pub fn gc_repository(repo: &Repository, progress: &dyn Progress) -> Result<GcReport> {
    repo.writable()?;
    let _guard = crate::repo::GcGuard::take(repo.path(), true)?;
    let live = mark_repository(repo, progress)?;
    sweep(repo, live, progress)
}

/// What [`gc_repository`] would remove, removing nothing (no lock taken:
/// the report is of this moment).
pub fn gc_repository_dry_run(repo: &Repository, progress: &dyn Progress) -> Result<GcReport> {
    let live = mark_repository(repo, progress)?;
    let packs = repo.packs();
    let entries = packs.entries()?;
    let mut r = GcReport { bytes_before: repo.disk_usage()?, dry_run: true, ..Default::default() };
    for (id, e) in &entries {
        if live.contains(id) {
            r.live_objects += 1;
        } else {
            r.removed_objects += 1;
            r.removed_bytes += u64::from(e.stored_len);
        }
    }
    let (rewrite, live_bytes) = packs_to_rewrite(repo, &entries, &live)?;
    let mut freed = 0;
    for p in packs.packs()? {
        let len = std::fs::metadata(packs.pack_path(p)).map(|m| m.len()).unwrap_or(0);
        let kept = live_bytes.get(&p).copied().unwrap_or(0);
        if kept == 0 && Some(p) != packs.current_pack() {
            r.packs_deleted += 1;
            freed += len;
        } else if rewrite.contains(&p) {
            r.packs_rewritten += 1;
            freed += len.saturating_sub(PACK_HEADER_LEN + kept);
        }
    }
    r.bytes_after = r.bytes_before.saturating_sub(freed);
    Ok(r)
}

/// Every object the repository's images and its guests (base and
/// checkpoints, through each guest's store) reach.
fn mark_repository(repo: &Repository, progress: &dyn Progress) -> Result<HashSet<Digest>> {
    let mut guests = Vec::new();
    for g in crate::guest::list(repo.path())? {
        if !g.dir.exists() {
            // Its checkpoints (in its own store) may use any object here.
            return Err(Error::GuestAbsent { guest: g.name.clone(), dir: g.dir.clone() });
        }
        let h = crate::guest::GuestHandle::open(repo.path(), &g.name, false)?;
        let store = h.store(repo.shared_store());
        guests.push((h.roots()?, store));
    }
    let extra: Vec<(&dyn ObjectStore, TreeId)> = guests.iter().flat_map(|(roots, s)| roots.iter().map(move |r| (&**s as &dyn ObjectStore, *r))).collect();
    mark(repo, &extra, progress)
}

/// Collect `repo`, keeping everything its images reference plus everything
/// reachable from `extra` roots, each read through its own store (a guest's
/// checkpoints reference objects in the shared repository and in its own).
pub fn gc(repo: &Repository, extra: &[(&dyn ObjectStore, TreeId)], progress: &dyn Progress) -> Result<GcReport> {
    let live = mark(repo, extra, progress)?;
    sweep(repo, live, progress)
}

fn mark(repo: &Repository, extra: &[(&dyn ObjectStore, TreeId)], progress: &dyn Progress) -> Result<HashSet<Digest>> {
    let mut live: HashSet<Digest> = HashSet::new();
    for img in repo.images()? {
        progress.note(&format!("marking {}", img.label()));
        crate::reach::mark(repo.objects(), &img.root_tree(), &mut live)?;
    }
    for (store, r) in extra {
        crate::reach::mark(*store, r, &mut live)?;
    }
    Ok(live)
}

/// Collect `repo` (a guest-local store) keeping what `roots` reach when read
/// through `marking` (the guest's layered store).
pub fn gc_marking(repo: &Repository, marking: &dyn ObjectStore, roots: &[TreeId], progress: &dyn Progress) -> Result<GcReport> {
    let mut live: HashSet<Digest> = HashSet::new();
    for img in repo.images()? {
        crate::reach::mark(marking, &img.root_tree(), &mut live)?;
    }
    for r in roots {
        crate::reach::mark(marking, r, &mut live)?;
    }
    sweep(repo, live, progress)
}

/// The packs a sweep rewrites (garbage is at least a tenth of the pack),
/// and the live bytes of every pack.
fn packs_to_rewrite(repo: &Repository, entries: &[(Digest, IndexEntry)], live: &HashSet<Digest>) -> Result<(HashSet<u32>, HashMap<u32, u64>)> {
    let packs = repo.packs();
    // Garbage per pack is measured against the pack file's size, not the index:
    // bytes whose index entries an earlier gc dropped still count.
    let mut live_bytes: HashMap<u32, u64> = HashMap::new();
    for (id, e) in entries {
        if live.contains(id) {
            *live_bytes.entry(e.pack).or_default() += u64::from(e.stored_len) + RECORD_HEADER_LEN as u64;
        }
    }
    let current = packs.current_pack();
    let mut rewrite: HashSet<u32> = HashSet::new();
    for p in packs.packs()? {
        let len = std::fs::metadata(packs.pack_path(p)).map(|m| m.len()).unwrap_or(0);
        let live_b = live_bytes.get(&p).copied().unwrap_or(0);
        let dead = len.saturating_sub(PACK_HEADER_LEN + live_b);
        if live_b > 0 && dead * 10 >= len && Some(p) != current {
            rewrite.insert(p);
        }
    }
    Ok((rewrite, live_bytes))
}

fn sweep(repo: &Repository, live: HashSet<Digest>, progress: &dyn Progress) -> Result<GcReport> {
    repo.writable()?;
    repo.refuse_if_append_only()?;
    let mut report = GcReport { bytes_before: repo.disk_usage()?, ..Default::default() };
    let packs = repo.packs();
    let entries = packs.entries()?;
    let current = packs.current_pack();
    let (rewrite, per_pack) = packs_to_rewrite(repo, &entries, &live)?;
    progress.set_total(rewrite.iter().map(|p| per_pack.get(p).copied().unwrap_or(0)).sum());
    for (id, e) in &entries {
        if rewrite.contains(&e.pack) && live.contains(id) {
            let payload = packs.read_payload(id, e)?;
            // `append_raw` skips only pending ids, not indexed ones: a move.
            packs.append_raw(e.kind, id, e.codec, e.raw_len, &payload)?;
            progress.advance(u64::from(e.stored_len));
        }
    }
    crate::object::ObjectStore::flush(packs)?;
    failpoint("gc-after-copy");
    let cf = packs.cf_handle()?;
    let mut batch = WriteBatch::default();
    for (id, e) in &entries {
        if !live.contains(id) {
            batch.delete_cf(cf, id.as_bytes());
            report.removed_objects += 1;
            report.removed_bytes += u64::from(e.stored_len);
        }
    }
    packs.batch_write(batch)?;
    failpoint("gc-after-index");
    report.live_objects = entries.iter().filter(|(id, _)| live.contains(id)).count() as u64;
    report.packs_rewritten = rewrite.len() as u64;
    // Unlink packs nothing references (rewritten ones, and orphans of
    // interrupted imports), never the pack being written.
    let referenced: HashSet<u32> = packs.entries()?.iter().map(|(_, e): &(Digest, IndexEntry)| e.pack).collect();
    // Readers (mounted guests) hold index entries into old packs: unlink only
    // when none is open; otherwise the next gc finishes the job.
    let Some(_no_readers) = repo.exclude_readers() else {
        report.packs_deferred = packs.packs()?.iter().filter(|p| !referenced.contains(p) && Some(**p) != current).count() as u64;
        tracing::warn!(packs = report.packs_deferred, "readers have the repository open; unreferenced packs kept until the next gc");
        report.bytes_after = repo.disk_usage()?;
        return Ok(report);
    };
    for p in packs.packs()? {
        if !referenced.contains(&p) && Some(p) != current {
            packs.forget_pack(p);
            let path = packs.pack_path(p);
            std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
            report.packs_deleted += 1;
        }
    }
    std::fs::File::open(packs.dir()).and_then(|d| d.sync_all()).map_err(|e| Error::io("syncing", packs.dir(), e))?;
    report.bytes_after = repo.disk_usage()?;
    tracing::info!(removed = report.removed_objects, packs_deleted = report.packs_deleted, "gc finished");
    Ok(report)
}

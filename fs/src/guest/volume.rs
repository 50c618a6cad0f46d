//! What a volume guest changed: byte ranges of its disk, not paths.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::GuestHandle;
use crate::chunker::CHUNK_SIZE;
use crate::digest::{ChunkId, TreeId};
use crate::error::{Error, Result};
use crate::nbd::volume::VOLUME_FILE;
use crate::object::{Layered, MemStore, ObjectStore};
use crate::overlay::Overlay;
use crate::tree::file::leaf_extents;

/// A changed byte range of a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    pub offset: u64,
    pub length: u64,
}

impl GuestHandle {
    /// The byte ranges where the volume guest's live disk differs from the
    /// disk of root `against`. Nothing is stored (a scratch store takes the
    /// fold's new chunks).
    pub fn diff_ranges_live(&self, shared: Arc<dyn ObjectStore>, ov: Option<&Overlay>, against: TreeId) -> Result<Vec<Range>> {
        let store = self.store(shared);
        let scratch = Layered::new(MemStore::new(), store.clone());
        let root = match ov {
            Some(ov) => super::fold::fold(ov, &mut ov.lock(), &scratch)?.0,
            None => {
                let ov = self.overlay(store.clone())?;
                let mut st = ov.lock();
                super::fold::fold(&ov, &mut st, &scratch)?.0
            }
        };
        changed_ranges(&scratch, &against, &root)
    }
}

/// The disk of a volume root: its size and its chunk per 64 KiB window.
fn disk_windows(store: &dyn ObjectStore, root: &TreeId) -> Result<(u64, BTreeMap<u64, ChunkId>)> {
    let e = crate::tree::lookup(store, root, VOLUME_FILE)?.ok_or(Error::NotSupported { path: "/".into(), why: "not a volume (its root holds no disk file)" })?;
    let mut w = BTreeMap::new();
    for (off, len, id) in leaf_extents(store, &e.content, e.size)? {
        // A window of zeros is the same as a hole.
        if id != ChunkId::of(&vec![0u8; len as usize]) {
            w.insert(off / CHUNK_SIZE, id);
        }
    }
    Ok((e.size, w))
}

/// Byte ranges where the disks of two volume roots differ (window
/// granularity, clipped to the larger size), merged where adjacent.
pub fn changed_ranges(store: &dyn ObjectStore, a: &TreeId, b: &TreeId) -> Result<Vec<Range>> {
    let (sa, wa) = disk_windows(store, a)?;
    let (sb, wb) = disk_windows(store, b)?;
    let size = sa.max(sb);
    let mut windows: Vec<u64> = wa.keys().chain(wb.keys()).copied().filter(|w| wa.get(w) != wb.get(w)).collect();
    windows.sort_unstable();
    windows.dedup();
    let mut spans: Vec<(u64, u64)> = windows.into_iter().map(|w| (w * CHUNK_SIZE, ((w + 1) * CHUNK_SIZE).min(size))).collect();
    // A disk that grew or shrank: the bytes past the smaller size.
    spans.push((sa.min(sb), size));
    spans.sort_unstable();
    let mut out: Vec<Range> = Vec::new();
    for (offset, end) in spans.into_iter().filter(|(s, e)| s < e) {
        match out.last_mut() {
            Some(r) if r.offset + r.length >= offset => r.length = r.length.max(end - r.offset),
            _ => out.push(Range { offset, length: end - offset }),
        }
    }
    Ok(out)
}

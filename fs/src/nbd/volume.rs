//! The exports: a volume guest's disk through its overlay (copy-on-write by 4 KiB
//! block, read-write or read-only), and an image's or a
//! checkpoint's disk straight from the store (read-only).
//!
//! A volume is an image (or checkpoint) whose root tree holds one regular
//! file, [`VOLUME_FILE`]: the disk's bytes, cut into chunks like any file
//! (all-zero chunks are holes), so a golden disk shares chunks with
//! everything else in the repository.

use std::sync::{Arc, RwLock};

use super::{Export, Run};
use crate::digest::{ChunkId, TreeId};
use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::overlay::blockmap::Source;
use crate::overlay::{Overlay, ReadOut, ROOT_INO};
use crate::tree::file::leaf_extents;
use crate::tree::{load_root, Kind};

/// The name of the disk file in a volume's root tree.
pub const VOLUME_FILE: &[u8] = b"disk";


/// A volume guest's disk: reads and writes through its overlay. The overlay
/// is replaceable (a rollback while no client is connected).
pub struct OverlayVolume {
    ov: RwLock<Arc<Overlay>>,
    ino: u64,
    size: u64,
    read_only: bool,
}

impl OverlayVolume {
    pub fn new(ov: Arc<Overlay>, read_only: bool) -> Result<Self> {
        let (ino, inode) = ov.lookup(ROOT_INO, VOLUME_FILE).map_err(|_| not_a_volume())?;
        if inode.kind != Kind::File {
            return Err(not_a_volume());
        }
        Ok(OverlayVolume { ov: RwLock::new(ov), ino, size: inode.size, read_only })
    }

    pub fn overlay(&self) -> Arc<Overlay> {
        self.ov.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serve `ov` from now on (same volume, another state: a rollback).
    pub fn replace(&self, ov: Arc<Overlay>) -> Result<()> {
        let (ino, inode) = ov.lookup(ROOT_INO, VOLUME_FILE).map_err(|_| not_a_volume())?;
        if ino != self.ino || inode.size != self.size {
            return Err(Error::NotSupported { path: "volume".into(), why: "the new state is a volume of another size" });
        }
        *self.ov.write().unwrap_or_else(|e| e.into_inner()) = ov;
        Ok(())
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }
}

fn not_a_volume() -> Error {
    Error::NotSupported { path: "/".into(), why: "not a volume (its root holds no disk file)" }
}

impl Export for OverlayVolume {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_out(&self, off: u64, len: u32) -> Result<ReadOut> {
        let v = self.overlay().read_out_kept(self.ino, off, len)?;
        if v.len() != len as usize {
            return Err(Error::Posix(libc::EIO));
        }
        Ok(v)
    }
    fn write(&self, off: u64, data: &[u8], fua: bool) -> Result<()> {
        self.writable()?;
        let ov = self.overlay();
        let mut done = 0usize;
        while done < data.len() {
            let n = ov.write_block(self.ino, off + done as u64, &data[done..])? as usize;
            if n == 0 {
                return Err(Error::Posix(libc::EIO));
            }
            done += n;
        }
        if fua {
            ov.fsync(self.ino)?;
        }
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        self.overlay().fsync(self.ino)
    }
    fn trim(&self, off: u64, len: u64, fua: bool) -> Result<()> {
        // Trimmed ranges store nothing and read as zeros (as a punched hole).
        self.zero(off, len, false, false, fua)
    }
    fn zero(&self, off: u64, len: u64, fast: bool, no_hole: bool, fua: bool) -> Result<()> {
        self.writable()?;
        let ov = self.overlay();
        if no_hole {
            // Allocated zeros are written zeros: never fast.
            if fast {
                return Err(Error::Posix(libc::ENOTSUP));
            }
            ov.write_zeros(self.ino, off, off + len)?;
        } else {
            // Whole blocks are a metadata change (the partial blocks at
            // the ends, at most two, are written).
            ov.zero_range(self.ino, off, len)?;
        }
        if fua {
            ov.fsync(self.ino)?;
        }
        Ok(())
    }
    fn allocation(&self, off: u64, len: u64) -> Result<Vec<Run>> {
        let runs = self.overlay().block_map(self.ino, off, len, 4096)?;
        Ok(runs
            .into_iter()
            .map(|r| match r.source {
                Source::Overlay => Run { len: r.len, hole: false, zero: false, depth: 1 },
                Source::ZeroData => Run { len: r.len, hole: false, zero: true, depth: 1 },
                Source::Zero => Run { len: r.len, hole: true, zero: true, depth: 1 },
                Source::Image => Run { len: r.len, hole: false, zero: false, depth: 2 },
                Source::Hole => Run { len: r.len, hole: true, zero: true, depth: 0 },
            })
            .collect())
    }
}

/// An image's or a checkpoint's disk, read-only, straight from the store.
pub struct TreeVolume {
    store: Arc<dyn ObjectStore>,
    extents: Vec<(u64, u64, ChunkId)>,
    size: u64,
}

impl TreeVolume {
    /// The volume whose root tree is `root`.
    pub fn open(store: Arc<dyn ObjectStore>, root: &TreeId) -> Result<Self> {
        let entry = load_root(&*store, root)?;
        let crate::tree::Content::Tree(t) = entry.content else { return Err(not_a_volume()) };
        let tree = crate::tree::Tree::load(&*store, &t)?;
        let e = tree.entries.iter().find(|e| e.name == VOLUME_FILE && e.kind == Kind::File).ok_or_else(not_a_volume)?;
        let extents = leaf_extents(&*store, &e.content, e.size)?;
        Ok(TreeVolume { store, extents, size: e.size })
    }
}

impl Export for TreeVolume {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        true
    }
    fn read_out(&self, off: u64, len: u32) -> Result<ReadOut> {
        let mut out = ReadOut::default();
        out.push_extents(&*self.store, &self.extents, off, u64::from(len))?;
        Ok(out)
    }
    fn write(&self, _: u64, _: &[u8], _: bool) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn trim(&self, _: u64, _: u64, _: bool) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn zero(&self, _: u64, _: u64, _: bool, _: bool, _: bool) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn allocation(&self, off: u64, len: u64) -> Result<Vec<Run>> {
        let end = off.saturating_add(len).min(self.size);
        let mut out: Vec<Run> = Vec::new();
        let mut p = off;
        let mut i = self.extents.partition_point(|e| e.0 + e.1 <= off);
        while p < end && out.len() < 4096 {
            let (next, hole) = match self.extents.get(i) {
                Some(&(eo, el, _)) if eo <= p => {
                    i += 1;
                    ((eo + el).min(end), false)
                }
                Some(&(eo, _, _)) => (eo.min(end), true),
                None => (end, true),
            };
            out.push(Run { len: next - p, hole, zero: hole, depth: if hole { 0 } else { 1 } });
            p = next;
        }
        Ok(out)
    }
}

//! SEEK_DATA / SEEK_HOLE on overlay files: the image's chunks and the
//! overlay's summed blocks are data; the image's holes, what lies past a
//! truncated base, and local blocks without a sum (unwritten, trimmed or
//! zeroed) are holes.

use std::fs::File;
use std::sync::Arc;

use super::sums::{Mask, BLOCK, FULL};
use super::{posix, Base, Overlay};
use crate::chunker::{window_of, CHUNK_SIZE};
use crate::digest::ChunkId;
use crate::error::{Error, Result};
use crate::tree::Kind;

impl Overlay {
    /// lseek(2) with SEEK_DATA (`hole` false) or SEEK_HOLE from `off`. The
    /// image's chunks and the overlay's bytes are data; the image's sparse
    /// holes, what lies past a truncated base and unwritten ranges of the
    /// overlay data file are holes; the end of the file counts as a hole.
    pub fn seek_data_hole(&self, ino: u64, off: u64, hole: bool) -> Result<u64> {
        let (size, limit, wins, extents, file, inline_len) = {
            let mut st = self.lock();
            let node = self.node(&mut st, ino)?;
            if node.inode.kind != Kind::File {
                return Err(posix(libc::EINVAL));
            }
            let size = node.inode.size;
            // An inline file holds its stored bytes; past them, a hole.
            let inline_len = if node.inode.base == Base::Inline { Some((self.db.inline(ino)?.len() as u64).min(size)) } else { None };
            let limit = match node.inode.base {
                Base::File { limit, .. } => Some(limit),
                _ => None,
            };
            let file = self.data_file(&mut st, ino, false)?;
            let node = self.node(&mut st, ino)?;
            let extents = match limit {
                Some(l) if l > 0 => self.extents(node)?,
                _ => Arc::new(Vec::new()),
            };
            let wins = match limit {
                Some(_) => Some(self.windows(node, ino)?.clone()),
                None => None,
            };
            (size, limit.unwrap_or(0), wins, extents, file, inline_len)
        };
        if off >= size {
            return Err(posix(libc::ENXIO));
        }
        if let Some(have) = inline_len {
            return match (hole, off < have) {
                (true, true) => Ok(have),
                (true, false) | (false, true) => Ok(off),
                (false, false) => Err(posix(libc::ENXIO)),
            };
        }
        let not_found = || if hole { Ok(size) } else { Err(posix(libc::ENXIO)) };
        let Some(wins) = wins else {
            // A file the guest created: all its bytes are in the data file.
            return match &file {
                Some(f) => match self.file_seek(f, ino, off, hole)? {
                    Some(r) if r < size => Ok(r),
                    _ => not_found(),
                },
                None if hole => Ok(off),
                None => Err(posix(libc::ENXIO)),
            };
        };
        let mut p = off;
        while p < size {
            let w = window_of(p);
            let wend = ((w + 1) * CHUNK_SIZE).min(size);
            let found = match wins.get(&w).copied() {
                None => base_seek(&extents, limit, p, wend, hole),
                Some(FULL) => self.local_seek(file.as_deref(), ino, p, wend, hole)?,
                Some(mask) => self.mixed_seek(mask, file.as_deref(), &extents, limit, ino, p, wend, hole)?,
            };
            if let Some(r) = found {
                return Ok(r.max(p));
            }
            p = wend;
        }
        not_found()
    }

    /// SEEK_DATA / SEEK_HOLE within `[p, end)` of the data file `f`.
    fn local_seek(&self, f: Option<&File>, ino: u64, p: u64, end: u64, hole: bool) -> Result<Option<u64>> {
        Ok(match f {
            Some(f) => self.file_seek(f, ino, p, hole)?.filter(|&r| r < end),
            None => hole.then_some(p),
        })
    }

    /// SEEK_DATA / SEEK_HOLE within `[p, wend)` of a window whose blocks in
    /// `mask` are local and the others the image's, block by block.
    #[allow(clippy::too_many_arguments)]
    fn mixed_seek(&self, mask: Mask, f: Option<&File>, extents: &[(u64, u64, ChunkId)], limit: u64, ino: u64, p: u64, wend: u64, hole: bool) -> Result<Option<u64>> {
        let mut q = p;
        while q < wend {
            let qe = ((q / BLOCK + 1) * BLOCK).min(wend);
            let local = mask & (1 << ((q % CHUNK_SIZE) / BLOCK)) != 0;
            let found = if local { self.local_seek(f, ino, q, qe, hole)? } else { base_seek(extents, limit, q, qe, hole) };
            if found.is_some() {
                return Ok(found);
            }
            q = qe;
        }
        Ok(None)
    }

    /// SEEK_DATA / SEEK_HOLE in the overlay data file; `None` for "no data
    /// at or after `off`".
    fn file_seek(&self, f: &File, ino: u64, off: u64, hole: bool) -> Result<Option<u64>> {
        use std::os::unix::io::AsRawFd;
        let whence = if hole { nix::unistd::Whence::SeekHole } else { nix::unistd::Whence::SeekData };
        let at = i64::try_from(off).map_err(|_| posix(libc::EINVAL))?;
        match nix::unistd::lseek(f.as_raw_fd(), at, whence) {
            Ok(r) => Ok(Some(r as u64)),
            Err(nix::errno::Errno::ENXIO) if hole => Ok(Some(off)),
            Err(nix::errno::Errno::ENXIO) => Ok(None),
            Err(e) => Err(Error::io("seeking overlay data", self.data_path(ino), e.into())),
        }
    }
}

/// SEEK_DATA / SEEK_HOLE within `[p, wend)` of one window read from the
/// image: data where an extent lies below `limit`.
fn base_seek(extents: &[(u64, u64, ChunkId)], limit: u64, p: u64, wend: u64, hole: bool) -> Option<u64> {
    let end = wend.min(limit);
    let mut i = extents.partition_point(|e| e.0 + e.1 <= p);
    if !hole {
        return match extents.get(i) {
            Some(e) if p < end && e.0 < end => Some(e.0.max(p)),
            _ => None,
        };
    }
    let mut q = p;
    while q < end {
        match extents.get(i) {
            Some(e) if e.0 <= q => {
                q = e.0 + e.1;
                i += 1;
            }
            _ => return Some(q),
        }
    }
    (end < wend).then_some(end.max(p))
}

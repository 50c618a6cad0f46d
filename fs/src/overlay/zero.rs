//! Zeroing a range without writing it (hole punching, NBD TRIM and
//! WRITE_ZEROES): whole 4 KiB blocks become local blocks without a sum,
//! which read as zeros (see [`super::sums`]); nothing is copied from the
//! image and no zeros are written. Only the partial blocks at either end of
//! the range are written, with zeros, through the ordinary write.
//!
//! Crash safety: the blocks' new state (window masks and cleared sums) is
//! one batch; their bytes in the data file are punched out only after it
//! commits (a block without a sum reads as zeros whatever the file holds).
//! So a crash leaves each block reading as before or as zeros.

use std::os::unix::io::AsRawFd;

use super::sums::{covered, BLOCK, BLOCKS};
use super::{Base, Overlay};
use crate::chunker::window_of;
use crate::error::Result;

/// Zeros written per call for the parts that must be written.
const ZERO_STEP: u64 = 1 << 20;

impl Overlay {
    /// Make `[off, off + len)` of file `ino` (clipped to its size) read as
    /// zeros, storing nothing for the whole blocks in it.
    pub fn zero_range(&self, ino: u64, off: u64, len: u64) -> Result<()> {
        let (size, inline) = {
            let mut st = self.lock();
            let node = self.node(&mut st, ino)?;
            if node.inode.kind != crate::tree::Kind::File {
                return Err(super::posix(libc::EISDIR));
            }
            (node.inode.size, node.inode.base == Base::Inline)
        };
        let end = off.saturating_add(len).min(size);
        let (bs, be) = (off.div_ceil(BLOCK) * BLOCK, end / BLOCK * BLOCK);
        // A small file kept in the database has no blocks to drop.
        if inline || bs >= be {
            return self.write_zeros(ino, off, end);
        }
        self.write_zeros(ino, off, bs)?;
        self.write_zeros(ino, be, end)?;
        self.drop_blocks(ino, bs, be)
    }

    /// Write zeros over `[off, end)`.
    pub fn write_zeros(&self, ino: u64, off: u64, end: u64) -> Result<()> {
        let zeros = vec![0u8; ZERO_STEP.min(end.saturating_sub(off)) as usize];
        let mut p = off;
        while p < end {
            let n = (end - p).min(ZERO_STEP) as usize;
            let done = self.write(ino, p, &zeros[..n])?;
            if done == 0 {
                return Err(super::posix(libc::EIO));
            }
            p += u64::from(done);
        }
        Ok(())
    }

    /// The blocks of `[bs, be)` (block-aligned, within the file) hold
    /// nothing from now on: local (masking the image's bytes), no sum.
    fn drop_blocks(&self, ino: u64, bs: u64, be: u64) -> Result<()> {
        let mut st = self.lock();
        let node = self.node(&mut st, ino)?;
        let is_base = matches!(node.inode.base, Base::File { .. });
        let mut b = self.db.batch();
        let range = window_of(bs)..=window_of(be - 1);
        if is_base {
            let wins = self.windows(node, ino)?;
            for w in range.clone() {
                let have = wins.get(&w).copied();
                let mask = have.unwrap_or(0) | covered(w, bs, be);
                if have != Some(mask) {
                    wins.insert(w, mask);
                    self.db.put_window(&mut b, ino, w, mask)?;
                }
            }
        }
        let sums = self.sums_of(self.node(&mut st, ino)?, ino)?;
        for w in range {
            let Some(ws) = sums.get_mut(&w) else { continue };
            let gone = covered(w, bs, be);
            let mut changed = false;
            for i in 0..BLOCKS {
                if gone & (1 << i) != 0 && ws.cur[i].is_some() {
                    ws.clear(i);
                    changed = true;
                }
            }
            if changed {
                self.db.put_sums(&mut b, ino, w, ws)?;
            }
        }
        let file = self.data_file(&mut st, ino, false)?;
        if let Err(e) = self.commit_write(&mut st, b, ino, 0, super::data::WriteKind::File { kill_suidgid: false }, None) {
            self.forget_cached_sums(&mut st, ino);
            return Err(e);
        }
        drop(st);
        // The bytes are ignored now; give their space back. A file system
        // that cannot punch keeps them, harmlessly.
        if let Some(f) = file {
            // SAFETY: fallocate on a file descriptor we own, with plain integers.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, bs as libc::off_t, (be - bs) as libc::off_t) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                tracing::debug!(path = %self.data_path(ino).display(), offset = bs, error = %e, "punching zeroed blocks out of the data file");
            }
        }
        Ok(())
    }
}

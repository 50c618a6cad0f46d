//! File data: reads merge the image's chunks with the overlay's local blocks
//! (recorded per chunk-sized window, with a mask of the 4 KiB blocks that are
//! local); a write into an image file makes the blocks it touches local,
//! copying from the image only a block it covers in part, then writes there.
//!
//! A file the guest creates keeps its bytes in the database (`Base::Inline`,
//! the `inline` column family) while they fit in [`INLINE_MAX`]: creating it
//! costs no file on the overlay partition, and each write is one atomic
//! batch with the file's record. The write that outgrows it moves the bytes
//! to a data file.
//!
//! Ordering for crash safety: block bytes are written to the data file before
//! the batch that records them local commits, so a local block always has
//! its bytes; bytes moving out of the database are in the data file before
//! the batch that turns the file into a data-file one commits; `fsync` syncs
//! the data file, then the database WAL.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::ns::kill_privs;
use super::prefetch;
use super::readout::ReadOut;
use super::sums::{covered, sum, touched, Mask, Sum, BLOCK, BLOCKS, FULL};
use super::{now, posix, Base, Node, Overlay, State, OPEN_DATA_FILES};
use crate::chunker::{aligned_pieces, window_of, CHUNK_SIZE};
use crate::digest::ChunkId;
use crate::error::{Error, Result};
use crate::tree::file::leaf_extents;
use crate::tree::Kind;

/// The most bytes a file keeps inline (see the module documentation). Most
/// files a guest writes are smaller (the median file of the bench tree is
/// 3 KiB); a larger one would rewrite this many bytes per small write.
pub const INLINE_MAX: u64 = 16 << 10;

/// Who writes: a file's writer (its times change; `kill_suidgid` as in
/// [`Overlay::write_killpriv`]) or a block device's (see
/// [`Overlay::write_block`]).
#[derive(Clone, Copy)]
pub(super) enum WriteKind {
    File { kill_suidgid: bool },
    Block,
}

/// Where a piece of a read comes from.
enum Src {
    Local,
    Base,
    Zero,
}

impl Overlay {
    /// Note an open handle (unlinked-but-open files live until the last close).
    pub fn open_file(&self, ino: u64) -> Result<()> {
        let mut st = self.lock();
        self.node(&mut st, ino)?.opens += 1;
        Ok(())
    }

    /// Close a handle the daemon gave out (at OPEN, or at CREATE while the
    /// kernel still sends OPEN); purge the inode if it is unlinked and
    /// nothing holds it any more.
    pub fn release(&self, ino: u64) -> Result<()> {
        let mut st = self.lock();
        let node = self.node(&mut st, ino)?;
        node.opens = node.opens.saturating_sub(1);
        self.let_go(&mut st, ino)
    }

    /// The overlay data file of `ino`, opened (or created) on first use and
    /// kept in the node; only the [`OPEN_DATA_FILES`] most recently opened
    /// stay open. `Ok(None)`: there is none and `create` is false.
    pub(crate) fn data_file(&self, st: &mut State, ino: u64, create: bool) -> Result<Option<Arc<File>>> {
        let node = self.node(st, ino)?;
        if let Some(f) = &node.file {
            return Ok(Some(f.clone()));
        }
        let p = self.data_path(ino);
        match OpenOptions::new().read(true).write(true).create(create).truncate(false).open(&p) {
            Ok(f) => {
                let f = Arc::new(f);
                node.file = Some(f.clone());
                st.fds.push_back(ino);
                while st.fds.len() > OPEN_DATA_FILES {
                    if let Some(old) = st.fds.pop_front().and_then(|i| st.nodes.get_mut(&i)) {
                        old.file = None;
                    }
                }
                Ok(Some(f))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(Error::io("opening overlay data", p, e)),
        }
    }

    /// The recorded windows of `ino` and their local blocks, loaded into
    /// its node on first use.
    pub(super) fn windows<'a>(&self, node: &'a mut Node, ino: u64) -> Result<&'a mut std::collections::HashMap<u64, Mask>> {
        if node.windows.is_none() {
            node.windows = Some(self.db.windows(ino)?);
        }
        node.windows.as_mut().ok_or_else(|| posix(libc::EIO))
    }

    pub(super) fn extents(&self, node: &mut Node) -> Result<Arc<Vec<(u64, u64, ChunkId)>>> {
        if let Some(x) = &node.extents {
            return Ok(x.clone());
        }
        let x = match &node.inode.base {
            // Reads never pass `limit`, so it is a safe length for a one-chunk file.
            Base::File { content, limit } => Arc::new(leaf_extents(&*self.store, content, *limit)?),
            _ => Arc::new(Vec::new()),
        };
        node.extents = Some(x.clone());
        Ok(x)
    }

    /// Read up to `size` bytes at `off`.
    pub fn read(&self, ino: u64, off: u64, size: u32) -> Result<Vec<u8>> {
        Ok(self.read_out(ino, off, size)?.to_vec())
    }

    /// Read up to `size` bytes at `off`, as the pieces they are (image
    /// bytes stay in the chunk cache's buffers).
    pub fn read_out(&self, ino: u64, off: u64, size: u32) -> Result<ReadOut> {
        self.read_pieces(ino, off, size, false)
    }

    /// [`read_out`](Self::read_out) for a block device (the NBD front): the
    /// chunks read stay in the chunk cache however the client reads. No
    /// kernel page cache on the host keeps what an NBD client read, so the
    /// chunk cache is the only copy in memory: a stream letting its chunks
    /// go first (as a FUSE read may, its pages being in the kernel's cache)
    /// would make every later read of them load and verify them again.
    pub fn read_out_kept(&self, ino: u64, off: u64, size: u32) -> Result<ReadOut> {
        self.read_pieces(ino, off, size, true)
    }

    fn read_pieces(&self, ino: u64, off: u64, size: u32, keep: bool) -> Result<ReadOut> {
        let (plan, file, extents, limit, end, sequential, sums) = {
            let mut st = self.lock();
            let node = self.node(&mut st, ino)?;
            if node.inode.kind != Kind::File {
                return Err(posix(libc::EISDIR));
            }
            let end = (off + u64::from(size)).min(node.inode.size);
            if off >= end {
                return Ok(ReadOut::default());
            }
            let limit = match node.inode.base {
                Base::File { limit, .. } => limit,
                // Read under the lock: a write that moves the bytes to a
                // data file must not fall between the size and the bytes.
                Base::Inline => {
                    let mut out = ReadOut::default();
                    out.push_owned(inline_read(&self.db.inline(ino)?, off, end));
                    return Ok(out);
                }
                _ => 0,
            };
            let extents = if limit > 0 { Some(self.extents(node)?) } else { None };
            let mut plan = Vec::new();
            // Only the windows this read touches (not a copy of them all).
            let wins: Option<std::collections::HashMap<u64, Mask>> = if limit > 0 {
                let all = self.windows(node, ino)?;
                Some((window_of(off)..=window_of(end - 1)).filter_map(|w| all.get(&w).map(|m| (w, *m))).collect())
            } else {
                None
            };
            for (p, len) in aligned_pieces(off, end) {
                let mask = match &wins {
                    None => FULL,
                    Some(w) => w.get(&window_of(p)).copied().unwrap_or(0),
                };
                for (q, n, local) in mask_runs(mask, p, p + len) {
                    let src = if local {
                        Src::Local
                    } else if q < limit {
                        Src::Base
                    } else {
                        Src::Zero
                    };
                    plan.push((q, n, src));
                }
            }
            let mut sequential = false;
            if let (Some(x), true) = (&extents, plan.iter().any(|(_, _, s)| matches!(s, Src::Base))) {
                sequential = self.read_ahead(self.node(&mut st, ino)?, x, off, end.min(limit));
            }
            // An image file the guest never wrote has no data file to open.
            let local = plan.iter().any(|(_, _, s)| matches!(s, Src::Local));
            let file = if local { self.data_file(&mut st, ino, false)? } else { None };
            let sums = if local { self.sums_for(self.node(&mut st, ino)?, ino, off, end)? } else { Default::default() };
            (plan, file, extents, limit, end, sequential, sums)
        };
        let mut out = ReadOut::default();
        for (p, len, src) in plan {
            match src {
                Src::Zero => out.push_zeros(len as usize),
                Src::Local => out.push_owned(self.read_local(ino, file.as_deref(), &sums, p, len)?),
                Src::Base => {
                    let n = limit.saturating_sub(p).min(len);
                    self.read_base_out(extents.as_deref().map(Vec::as_slice).unwrap_or(&[]), p, n, &mut out)?;
                    out.push_zeros((len - n) as usize);
                }
            }
        }
        debug_assert_eq!(out.len() as u64, end - off);
        // Chunks this READ ends past (all of them, for a stream; those it
        // read whole, for any read: a stream's READs may come out of order)
        // are in the kernel's page cache now, so the chunk cache may let
        // them go first and reuse their memory, instead of growing by the
        // whole file. A 4 KiB random read lets nothing go.
        if keep {
            return Ok(out);
        }
        let x = extents.as_deref().map(Vec::as_slice).unwrap_or(&[]);
        let i = x.partition_point(|e| e.0 + e.1 <= off);
        for (_, _, id) in x[i..].iter().take_while(|e| e.0 + e.1 <= end).filter(|e| sequential || e.0 >= off) {
            self.store.read_through(&id.0);
        }
        Ok(out)
    }

    /// A read of `[off, end)` of the image's bytes: when it is part of a
    /// stream, queue the chunks up to [`prefetch::WINDOW`] past it that are
    /// not queued yet. Returns whether the read is part of a stream.
    ///
    /// The kernel's read-ahead sends a stream's READs (up to the mount's
    /// 1 MiB read-ahead each) at once, and the ring threads may take them
    /// out of order, so a READ may start up to a few READs past where the
    /// stream has reached (`NEAR`), or, once a stream is going, up to `LATE`
    /// behind it. Counting those as random reads (as a 256 KiB rule did)
    /// set off the whole-file job for every `cat` or fio stream of a 1 GiB
    /// file: 1 GiB loaded again in the background, competing with the
    /// reader for the CPU.
    fn read_ahead(&self, node: &mut Node, x: &Arc<Vec<(u64, u64, ChunkId)>>, off: u64, end: u64) -> bool {
        // Within a few chunks of the last end: the same place.
        const SLACK: u64 = 4 * CHUNK_SIZE;
        const NEAR: u64 = (1 << 20) + SLACK;
        const LATE: u64 = 4 << 20;
        let sequential = if off >= node.read_end {
            off - node.read_end <= NEAR
        } else {
            node.read_end - off <= if node.streaming { LATE } else { SLACK }
        };
        node.streaming = sequential;
        node.read_end = node.read_end.max(end);
        if !sequential {
            node.read_end = end;
            node.ahead_to = end;
            if let Some(r) = &node.reader {
                r.store(end, std::sync::atomic::Ordering::Relaxed);
            }
            // Read at random for long enough: load the whole file ahead
            // (once per inode), if it fits in one generation of the chunk
            // cache (half its budget).
            node.random_reads = node.random_reads.saturating_add(1);
            if !node.whole_ahead && node.random_reads as usize >= (prefetch::RANDOM_READS as usize).max(x.len() / 16) {
                node.whole_ahead = true;
                let bytes: u64 = x.iter().map(|e| e.1).sum();
                if self.store.cache_budget().is_some_and(|b| bytes <= b as u64 / 2) {
                    tracing::debug!(bytes, "random reads: loading the file's chunks ahead");
                    self.prefetch.want_file(x.clone());
                }
            }
            return false;
        }
        let reader = node.reader.get_or_insert_with(Default::default);
        reader.store(node.read_end, std::sync::atomic::Ordering::Relaxed);
        let from = node.ahead_to.max(end);
        let to = end + prefetch::WINDOW;
        if from < to {
            self.prefetch.want(x, from, to, reader);
            node.ahead_to = to;
        }
        true
    }

    /// Append the image's `n` bytes at `p` (within one window) to `out`:
    /// ranges of cached chunks, zeros where no extent covers them.
    fn read_base_out(&self, extents: &[(u64, u64, ChunkId)], p: u64, n: u64, out: &mut ReadOut) -> Result<()> {
        out.push_extents(&*self.store, extents, p, n)
    }

    /// Fill `dst` with the image's bytes at `p` (within one window).
    pub(super) fn read_base(&self, extents: &[(u64, u64, ChunkId)], p: u64, dst: &mut [u8]) -> Result<()> {
        let mut out = ReadOut::default();
        self.read_base_out(extents, p, dst.len() as u64, &mut out)?;
        out.copy_into(dst);
        Ok(())
    }

    /// Make the blocks of window `w` that the write `[off, end)` touches local (in
    /// batch `b`). Only a block the write covers in part needs its image
    /// bytes (not beyond the file's current size or the base limit; zeros
    /// to the end of the block): they are copied into the data file and
    /// summed. A block the write covers whole costs nothing here, and the
    /// window's other blocks keep reading from the image.
    pub(super) fn make_local(&self, st: &mut State, ino: u64, w: u64, (off, end): (u64, u64), f: &File, b: &mut super::db::Batch) -> Result<()> {
        let node = self.node(st, ino)?;
        let limit = match node.inode.base {
            Base::File { limit, .. } => limit.min(node.inode.size),
            _ => 0,
        };
        let have = self.windows(node, ino)?.get(&w).copied();
        let need = touched(w, off, end);
        let mask = have.unwrap_or(0);
        if have.is_some() && mask & need == need {
            return Ok(());
        }
        let copy = need & !mask & !covered(w, off, end);
        let ws = w * CHUNK_SIZE;
        for i in (0..BLOCKS).filter(|i| copy & (1 << i) != 0) {
            let bs = ws + i as u64 * BLOCK;
            if bs >= limit {
                continue;
            }
            let n = (limit - bs).min(BLOCK) as usize;
            let extents = self.extents(self.node(st, ino)?)?;
            let mut buf = vec![0u8; BLOCK as usize];
            self.read_base(&extents, bs, &mut buf[..n])?;
            f.write_all_at(&buf, bs).map_err(|e| Error::io("writing overlay data", self.data_path(ino), e))?;
            self.sum_fresh(st, ino, bs, &buf, b)?;
        }
        self.windows(self.node(st, ino)?, ino)?.insert(w, mask | need);
        self.db.put_window(b, ino, w, mask | need)
    }

    /// Write `data` at `off`; returns the bytes written. A write drops the
    /// file's capabilities (see [`kill_privs`]).
    pub fn write(&self, ino: u64, off: u64, data: &[u8]) -> Result<u32> {
        self.write_killpriv(ino, off, data, false)
    }

    /// [`write`](Self::write) by a caller without CAP_FSETID when
    /// `kill_suidgid` (the kernel's FUSE_WRITE_KILL_SUIDGID): setuid, and
    /// setgid when group-executable, are cleared too.
    pub fn write_killpriv(&self, ino: u64, off: u64, data: &[u8], kill_suidgid: bool) -> Result<u32> {
        self.write_as(ino, off, data, WriteKind::File { kill_suidgid })
    }

    /// A block device's write (the NBD front): as [`write`](Self::write),
    /// but the file's times stay: a disk has none its client sees, and a
    /// write that changes nothing else about the file then records no
    /// inode (one database record less per write; the block's sum and mask
    /// are what a crash must keep).
    pub fn write_block(&self, ino: u64, off: u64, data: &[u8]) -> Result<u32> {
        self.write_as(ino, off, data, WriteKind::Block)
    }

    fn write_as(&self, ino: u64, off: u64, data: &[u8], kind: WriteKind) -> Result<u32> {
        // File data may not eat the space the metadata database needs to
        // record it (and to reopen after a crash): ENOSPC below the reserve,
        // as ext4 keeps blocks for root.
        if self.low_on_space(data.len() as u64) {
            return Err(posix(libc::ENOSPC));
        }
        // A write of whole blocks is summed before the engine's lock is
        // taken: the sums depend on its bytes alone, and hashing a large
        // write under the lock would keep every other request waiting.
        let sums: Vec<Sum> = if off % BLOCK == 0 && data.len() as u64 % BLOCK == 0 { data.chunks(BLOCK as usize).map(sum).collect() } else { Vec::new() };
        let mut st = self.lock();
        let node = self.node(&mut st, ino)?;
        if node.inode.kind != Kind::File {
            return Err(posix(libc::EISDIR));
        }
        let (is_base, size) = (matches!(node.inode.base, Base::File { .. }), node.inode.size);
        let end = off + data.len() as u64;
        let mut b = self.db.batch();
        if node.inode.base == Base::Inline {
            let mut bytes = self.db.inline(ino)?;
            if end <= INLINE_MAX {
                // The new bytes and the record in one batch: no data file.
                if (bytes.len() as u64) < end {
                    bytes.resize(end as usize, 0);
                }
                bytes[off as usize..end as usize].copy_from_slice(data);
                self.db.put_inline(&mut b, ino, &bytes)?;
                return self.commit_write(&mut st, b, ino, end, kind, None).map(|_| data.len() as u32);
            }
            // Outgrown: the bytes move to a data file (written whole before
            // the batch that says so commits; a crash in between leaves the
            // file inline, and the next move starts the data file over).
            // Written whole, in whole blocks, and summed: every block is new.
            let f = self.data_file(&mut st, ino, true)?.ok_or_else(|| posix(libc::EIO))?;
            bytes.resize(bytes.len().max(end as usize).div_ceil(BLOCK as usize) * BLOCK as usize, 0);
            bytes[off as usize..end as usize].copy_from_slice(data);
            f.set_len(0)
                .and_then(|_| f.write_all_at(&bytes, 0))
                .map_err(|e| Error::io("writing overlay data", self.data_path(ino), e))?;
            self.db.delete_inline(&mut b, ino)?;
            self.sum_fresh(&mut st, ino, 0, &bytes, &mut b)?;
            return self.commit_write(&mut st, b, ino, end, kind, Some(Base::None)).map(|_| data.len() as u32);
        }
        let f = self.data_file(&mut st, ino, true)?.ok_or_else(|| posix(libc::EIO))?;
        if end > size {
            drop_stale_tail(&f, size).map_err(|e| Error::io("truncating overlay data", self.data_path(ino), e))?;
        }
        if is_base {
            for (p, _) in aligned_pieces(off, end) {
                if let Err(e) = self.make_local(&mut st, ino, window_of(p), (off, end), &f, &mut b) {
                    self.forget_cached_sums(&mut st, ino);
                    return Err(e);
                }
            }
        }
        // Blocks made local above are only in the node until the batch
        // commits: a write given up before that forgets them.
        let staged = match self.stage_write(&mut st, ino, &f, off, data, &sums, &mut b) {
            Ok(s) => s,
            Err(e) => {
                self.forget_cached_sums(&mut st, ino);
                return Err(e);
            }
        };
        if let Err(e) = self.commit_write(&mut st, b, ino, end, kind, None) {
            self.forget_cached_sums(&mut st, ino);
            return Err(e);
        }
        self.finish_write(&mut st, ino, &f, staged)?;
        Ok(data.len() as u32)
    }

    /// Record a write that ended at `end` (and a new base, when the bytes
    /// moved out of the database), in batch `b` with whatever it holds.
    pub(super) fn commit_write(&self, st: &mut State, mut b: super::db::Batch, ino: u64, end: u64, kind: WriteKind, base: Option<Base>) -> Result<()> {
        let old = &self.node(st, ino)?.inode;
        let mut i = old.clone();
        i.size = i.size.max(end);
        if let WriteKind::File { kill_suidgid } = kind {
            kill_privs(&mut i, kill_suidgid);
            let t = now();
            i.mtime = t;
            i.ctime = t;
        } else {
            kill_privs(&mut i, false);
        }
        if let Some(base) = base {
            i.base = base;
        }
        // Without a record the inode reads as the image's entry (to a fold,
        // say), whatever its blocks hold: the first write records it.
        let put = i != *old || !self.node(st, ino)?.recorded;
        self.mark_changed(st, &mut b, ino, false)?;
        if put {
            self.db.put_inode(&mut b, ino, &i)?;
            self.node(st, ino)?.inode = i;
        }
        self.db.commit(b)?;
        if put {
            self.node(st, ino)?.recorded = true;
        }
        Ok(())
    }

    /// Set the size of a regular file.
    pub(crate) fn truncate(&self, ino: u64, size: u64) -> Result<()> {
        let mut st = self.lock();
        let node = self.node(&mut st, ino)?;
        match node.inode.kind {
            Kind::File => {}
            Kind::Dir => return Err(posix(libc::EISDIR)),
            _ => return Err(posix(libc::EINVAL)),
        }
        let mut i = node.inode.clone();
        let mut b = self.db.batch();
        // The data file is cut after the new size is recorded (below); a
        // crash in between leaves bytes past the size, which every growth of
        // the file drops first (`drop_stale_tail`), so they never reappear.
        let data = if i.base == Base::Inline { None } else { self.data_file(&mut st, ino, false)? };
        if size > i.size {
            if let Some(f) = &data {
                drop_stale_tail(f, i.size).map_err(|e| Error::io("truncating overlay data", self.data_path(ino), e))?;
            }
        }
        if size < i.size && i.base == Base::Inline {
            let mut bytes = self.db.inline(ino)?;
            if (bytes.len() as u64) > size {
                bytes.truncate(size as usize);
                self.db.put_inline(&mut b, ino, &bytes)?;
            }
        }
        if size < i.size && i.base != Base::Inline {
            self.sums_truncate(&mut st, ino, size, &mut b)?;
        }
        let node = self.node(&mut st, ino)?;
        if size < i.size {
            if let Base::File { limit, .. } = &mut i.base {
                *limit = (*limit).min(size);
            }
            // Windows past the end keep no bytes; forget them so a later
            // extension reads zeros from the (lowered) base limit instead.
            let first_gone = size.div_ceil(CHUNK_SIZE);
            if let Some(w) = node.windows.as_mut() {
                w.retain(|&x, _| x < first_gone);
            }
            self.db.delete_windows_from(&mut b, ino, first_gone)?;
        }
        i.size = size;
        let t = now();
        i.mtime = t;
        i.ctime = t;
        self.mark_changed(&mut st, &mut b, ino, false)?;
        self.db.put_inode(&mut b, ino, &i)?;
        self.node(&mut st, ino)?.inode = i;
        if let Err(e) = self.db.commit(b) {
            self.forget_cached_sums(&mut st, ino);
            return Err(e);
        }
        if let Some(f) = data {
            drop_stale_tail(&f, size).map_err(|e| Error::io("truncating overlay data", self.data_path(ino), e))?;
        }
        Ok(())
    }

    /// fallocate(2): plain allocation (extending the size unless KEEP_SIZE)
    /// and hole punching; other modes are refused.
    pub fn fallocate(&self, ino: u64, off: u64, len: u64, mode: i32) -> Result<()> {
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        if mode & !(libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE) != 0 {
            return Err(posix(libc::EOPNOTSUPP));
        }
        if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
            if !keep {
                return Err(posix(libc::EOPNOTSUPP));
            }
            return self.zero_range(ino, off, len);
        }
        let size = self.getattr(ino)?.size;
        if !keep && off + len > size {
            self.truncate(ino, off + len)?;
        }
        Ok(())
    }

    /// fsync/fdatasync: the file's overlay data, then the metadata WAL.
    pub fn fsync(&self, ino: u64) -> Result<()> {
        let f = {
            let mut st = self.lock();
            // An inline file's bytes are in the database: the WAL is all.
            if self.node(&mut st, ino)?.inode.base == Base::Inline {
                None
            } else {
                self.data_file(&mut st, ino, false)?
            }
        };
        if let Some(f) = f {
            f.sync_data().map_err(|e| Error::io("syncing overlay data", self.data_path(ino), e))?;
        }
        self.db.sync()
    }
}

/// Cut the data file to the file's logical `size` if it is longer: bytes past
/// the size are left-overs (of a shrink interrupted by a crash) and must read
/// as zeros when the file grows again.
fn drop_stale_tail(f: &File, size: u64) -> std::io::Result<()> {
    if f.metadata()?.len() > size {
        f.set_len(size)?;
    }
    Ok(())
}

/// Bytes `off..end` of an inline file whose stored bytes are `bytes`
/// (zeros past them).
fn inline_read(bytes: &[u8], off: u64, end: u64) -> Vec<u8> {
    let mut out = vec![0u8; (end - off) as usize];
    let have = (bytes.len() as u64).min(end);
    if off < have {
        out[..(have - off) as usize].copy_from_slice(&bytes[off as usize..have as usize]);
    }
    out
}

/// The runs of `[p, end)` (within one window) whose blocks are all local
/// (`true`: in `mask`) or all not, in order.
pub(super) fn mask_runs(mask: Mask, p: u64, end: u64) -> Vec<(u64, u64, bool)> {
    let bit = |q: u64| mask & (1 << ((q % CHUNK_SIZE) / BLOCK)) != 0;
    if mask == FULL || mask == 0 {
        return vec![(p, end - p, mask == FULL)];
    }
    let mut out: Vec<(u64, u64, bool)> = Vec::new();
    let mut q = p;
    while q < end {
        let e = ((q / BLOCK + 1) * BLOCK).min(end);
        let local = bit(q);
        match out.last_mut() {
            Some((_, n, l)) if *l == local => *n += e - q,
            _ => out.push((q, e - q, local)),
        }
        q = e;
    }
    out
}

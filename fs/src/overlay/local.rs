//! Verified I/O on overlay data files: every read of local bytes reads whole
//! 4 KiB blocks and checks them against their sums (see [`super::sums`]);
//! every write records the sums of the blocks it changes. A block that fails
//! its check is EIO and an error log line naming the overlay, the data file
//! and the offset, never zeros or wrong bytes.
//!
//! Order of a write (crash safety): blocks that had no sum are written before
//! the batch recording their sums commits; blocks being overwritten after it
//! (the batch keeps their old sums acceptable), see [`Staged`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::sums::{block_of, block_span, sum, Check, Mask, Sum, WindowSums, BLOCK, FULL};
use super::{Node, Overlay, State};
use crate::chunker::CHUNK_SIZE;
use crate::digest::ChunkId;
use crate::error::{Error, Result};

pub(crate) type Sums = HashMap<u64, WindowSums>;

const DOES_NOT_MATCH: &str = "does not match its checksum (the data file is missing, short or changed)";

/// Bytes of a write to put in the data file once its batch has committed
/// (overwrites of blocks that had sums), and the sums to restore should
/// that fail. The write's whole blocks are `bytes`, from `at`: the caller's
/// own buffer when the write is block-aligned (no copy).
#[must_use]
pub(crate) struct Staged<'a> {
    bytes: Cow<'a, [u8]>,
    at: u64,
    /// Ranges of `bytes` to write after the commit.
    runs: Vec<(usize, usize)>,
    undo: Vec<(u64, WindowSums)>,
}

impl Overlay {
    /// The block sums of `ino`, loaded into its node on first use.
    pub(crate) fn sums_of<'a>(&self, node: &'a mut Node, ino: u64) -> Result<&'a mut Sums> {
        if node.sums.is_none() {
            node.sums = Some(self.db.sums(ino)?);
        }
        node.sums.as_mut().ok_or(Error::Posix(libc::EIO))
    }

    /// Bytes `[p, p + len)` of `ino`'s data file (`f`; `None`: there is
    /// none), checked block by block against `sums`; blocks without a sum
    /// read as zeros. `Err(offset)`: the block at `offset` failed.
    pub(crate) fn read_checked(f: Option<&File>, sums: &Sums, p: u64, len: u64) -> std::io::Result<std::result::Result<Vec<u8>, u64>> {
        let (bs, be) = block_span(p, p + len);
        let mut buf = vec![0u8; (be - bs) as usize];
        if let Some(f) = f {
            read_into(f, &mut buf, bs)?;
        }
        for (k, block) in buf.chunks_mut(BLOCK as usize).enumerate() {
            let at = bs + k as u64 * BLOCK;
            let (w, i) = block_of(at);
            match sums.get(&w).map_or(Check::Hole, |s| s.check(i, block)) {
                Check::Sound => {}
                Check::Hole => block.fill(0),
                Check::Damaged => return Ok(Err(at)),
            }
        }
        let s = (p - bs) as usize;
        buf.truncate(s + len as usize);
        buf.drain(..s);
        Ok(Ok(buf))
    }

    /// The error for a block that failed its check, logged.
    pub(crate) fn damaged_at(&self, ino: u64, offset: u64, why: &str) -> Error {
        let path = self.data_path(ino);
        tracing::error!(guest = %self.guest, overlay = %self.dir().display(), path = %path.display(), ino, offset, "overlay data block is damaged: it {why}");
        Error::OverlayDamaged { path, why: format!("the block at bytes {offset}..{} {why}", offset + BLOCK) }
    }

    /// Verified bytes `[p, p + len)` of the local data of `ino`, read under
    /// the engine's lock `st` (a fold, a write's partial block).
    pub(crate) fn read_local_locked(&self, st: &mut State, ino: u64, p: u64, len: u64) -> Result<Vec<u8>> {
        let f = self.data_file(st, ino, false)?;
        let node = self.node(st, ino)?;
        let sums = self.sums_of(node, ino)?;
        match Self::read_checked(f.as_deref(), sums, p, len).map_err(|e| Error::io("reading overlay data", self.data_path(ino), e))? {
            Ok(b) => Ok(b),
            Err(at) => Err(self.damaged_at(ino, at, DOES_NOT_MATCH)),
        }
    }

    /// A read outside the lock with sums taken under it: a write may have
    /// changed the block since, so a failed check is taken again under the
    /// lock (writes hold it until their bytes are written) before it counts.
    pub(crate) fn read_local(&self, ino: u64, f: Option<&File>, sums: &Sums, p: u64, len: u64) -> Result<Vec<u8>> {
        match Self::read_checked(f, sums, p, len).map_err(|e| Error::io("reading overlay data", self.data_path(ino), e))? {
            Ok(b) => Ok(b),
            Err(_) => {
                let mut st = self.lock();
                self.read_local_locked(&mut st, ino, p, len)
            }
        }
    }

    /// The sums of the windows a read of `[off, end)` touches.
    pub(crate) fn sums_for(&self, node: &mut Node, ino: u64, off: u64, end: u64) -> Result<Sums> {
        let all = self.sums_of(node, ino)?;
        Ok((off / CHUNK_SIZE..end.div_ceil(CHUNK_SIZE)).filter_map(|w| all.get(&w).map(|s| (w, s.clone()))).collect())
    }

    /// Stage a write of `data` at `off` into `ino`'s data file `f`: whole
    /// blocks (the rest of a partly written block read first, verified),
    /// their sums recorded in the node and in batch `b`. Blocks that had no
    /// sum are written now; the returned overwrites go in after `b` commits
    /// ([`Self::finish_write`]). `sums`: those of `data`'s blocks when the
    /// write is block-aligned and the caller has them, else empty.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage_write<'a>(&self, st: &mut State, ino: u64, f: &File, off: u64, data: &'a [u8], sums: &[Sum], b: &mut super::db::Batch) -> Result<Staged<'a>> {
        let end = off + data.len() as u64;
        let (bs, be) = block_span(off, end);
        // Past the file's end a block holds zeros (a shrink cut short by a
        // crash may have left old bytes there, accepted by the old sum).
        let keep = self.node(st, ino)?.inode.size.max(end);
        let bytes: Cow<'a, [u8]> = if off == bs && end == be {
            Cow::Borrowed(data)
        } else {
            let mut buf = vec![0u8; (be - bs) as usize];
            if off > bs {
                let head = self.read_local_locked(st, ino, bs, BLOCK)?;
                buf[..BLOCK as usize].copy_from_slice(&head);
            }
            // The last block, unless it is the first and was read just above.
            if end < be && (be - bs > BLOCK || off == bs) {
                let tail = self.read_local_locked(st, ino, be - BLOCK, BLOCK)?;
                let n = buf.len();
                buf[n - BLOCK as usize..].copy_from_slice(&tail);
            }
            buf[(off - bs) as usize..(end - bs) as usize].copy_from_slice(data);
            if keep < be {
                buf[(keep - bs) as usize..].fill(0);
            }
            Cow::Owned(buf)
        };
        let given = if matches!(bytes, Cow::Borrowed(_)) && sums.len() * BLOCK as usize == bytes.len() { sums } else { &[] };
        let node = self.node(st, ino)?;
        let sums = self.sums_of(node, ino)?;
        let mut undo: Vec<(u64, WindowSums)> = Vec::new();
        // (start, end, overwrite) ranges of `bytes`: runs of consecutive blocks.
        let mut runs: Vec<(usize, usize, bool)> = Vec::new();
        for (k, block) in bytes.chunks(BLOCK as usize).enumerate() {
            let at = bs + k as u64 * BLOCK;
            let (w, i) = block_of(at);
            let ws = sums.entry(w).or_default();
            if !undo.iter().any(|(x, _)| *x == w) {
                undo.push((w, ws.clone()));
            }
            let over = ws.cur[i].is_some();
            ws.set(i, given.get(k).copied().unwrap_or_else(|| sum(block)), over);
            let s = k * BLOCK as usize;
            match runs.last_mut() {
                Some((_, e, ov)) if *ov == over => *e = s + block.len(),
                _ => runs.push((s, s + block.len(), over)),
            }
        }
        for (w, _) in &undo {
            if let Some(s) = sums.get(w) {
                self.db.put_sums(b, ino, *w, s)?;
            }
        }
        let mut later = Vec::new();
        for (s, e, over) in runs {
            if over {
                later.push((s, e));
            } else if let Err(err) = f.write_all_at(&bytes[s..e], bs + s as u64) {
                self.restore_sums(st, ino, &undo);
                return Err(Error::io("writing overlay data", self.data_path(ino), err));
            }
        }
        Ok(Staged { bytes, at: bs, runs: later, undo })
    }

    /// Write the overwrites of a staged write whose batch committed. On a
    /// failure the old sums are committed again (the old bytes are still
    /// there, or part of the new ones: the block is then damaged, and said
    /// so on its next read).
    pub(crate) fn finish_write(&self, st: &mut State, ino: u64, f: &File, staged: Staged<'_>) -> Result<()> {
        for &(s, e) in &staged.runs {
            if let Err(err) = f.write_all_at(&staged.bytes[s..e], staged.at + s as u64) {
                self.restore_sums(st, ino, &staged.undo);
                let mut b = self.db.batch();
                for (w, s) in &staged.undo {
                    self.db.put_sums(&mut b, ino, *w, s)?;
                }
                self.db.commit(b)?;
                return Err(Error::io("writing overlay data", self.data_path(ino), err));
            }
        }
        Ok(())
    }

    /// A batch that changed `ino`'s sums (and maybe its window masks)
    /// failed or was abandoned: reload both when next needed.
    pub(crate) fn forget_cached_sums(&self, st: &mut State, ino: u64) {
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.sums = None;
            n.windows = None;
        }
    }

    /// A write was abandoned before its batch committed: the node's sums go
    /// back to what the database has.
    pub(crate) fn restore_sums(&self, st: &mut State, ino: u64, undo: &[(u64, WindowSums)]) {
        if let Some(sums) = st.nodes.get_mut(&ino).and_then(|n| n.sums.as_mut()) {
            for (w, s) in undo {
                sums.insert(*w, s.clone());
            }
        }
    }

    /// Record the sums of `bytes` just written at `at` (block-aligned) to a
    /// data file where those blocks had no data (a copy-up, a file's bytes
    /// moving out of the database).
    pub(crate) fn sum_fresh(&self, st: &mut State, ino: u64, at: u64, bytes: &[u8], b: &mut super::db::Batch) -> Result<()> {
        let node = self.node(st, ino)?;
        let sums = self.sums_of(node, ino)?;
        let mut touched = Vec::new();
        for (k, block) in bytes.chunks(BLOCK as usize).enumerate() {
            let (w, i) = block_of(at + k as u64 * BLOCK);
            sums.entry(w).or_default().set(i, sum(block), false);
            if touched.last() != Some(&w) {
                touched.push(w);
            }
        }
        for w in touched {
            if let Some(s) = sums.get(&w) {
                self.db.put_sums(b, ino, w, s)?;
            }
        }
        Ok(())
    }

    /// A file shrinks to `size`: blocks past it lose their sums, and the
    /// block the new end falls in is summed as it will be once the data
    /// file is cut (its old sum stays acceptable until then).
    pub(crate) fn sums_truncate(&self, st: &mut State, ino: u64, size: u64, b: &mut super::db::Batch) -> Result<()> {
        let first_gone = size.div_ceil(CHUNK_SIZE);
        self.db.delete_sums_from(b, ino, first_gone)?;
        let partial = if size % BLOCK != 0 { Some(self.read_local_locked(st, ino, size / BLOCK * BLOCK, BLOCK)?) } else { None };
        let node = self.node(st, ino)?;
        let sums = self.sums_of(node, ino)?;
        sums.retain(|&w, _| w < first_gone);
        if size % CHUNK_SIZE == 0 {
            return Ok(());
        }
        let (w, i) = block_of(size);
        let Some(ws) = sums.get_mut(&w) else { return Ok(()) };
        for j in i + 1..ws.cur.len() {
            ws.clear(j);
        }
        match partial {
            Some(mut p) if ws.cur[i].is_some() => {
                p[(size % BLOCK) as usize..].fill(0);
                ws.set(i, sum(&p), true);
            }
            Some(_) => {}
            None => ws.clear(i),
        }
        self.db.put_sums(b, ino, w, ws)
    }
}

/// pread that treats bytes past the end of the file as zeros.
pub(crate) fn read_into(f: &File, dst: &mut [u8], off: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < dst.len() {
        let n = f.read_at(&mut dst[done..], off + done as u64)?;
        if n == 0 {
            dst[done..].fill(0);
            break;
        }
        done += n;
    }
    Ok(())
}

/// The local bytes of one file, for a reader that holds the engine's lock
/// (a fold): which windows are local, and their bytes, verified.
pub struct LocalData<'a> {
    ov: &'a Overlay,
    ino: u64,
    file: Option<File>,
    sums: Sums,
    windows: Vec<u64>,
    masks: HashMap<u64, Mask>,
}

impl Overlay {
    /// The local data of file `ino` (record `i`), read under `st` without
    /// adding the inode to the node table.
    pub(crate) fn local_data(&self, st: &State, ino: u64, i: &super::Inode) -> Result<LocalData<'_>> {
        let node = st.nodes.get(&ino);
        let sums = match node.and_then(|n| n.sums.clone()) {
            Some(s) => s,
            None => self.db.sums(ino)?,
        };
        let masks: HashMap<u64, Mask> = match &i.base {
            super::Base::File { .. } => match node.and_then(|n| n.windows.as_ref()) {
                Some(w) => w.clone(),
                None => self.db.windows(ino)?,
            },
            _ => sums.iter().filter(|(_, s)| !s.is_empty()).map(|(w, _)| (*w, FULL)).collect(),
        };
        let mut windows: Vec<u64> = masks.keys().copied().collect();
        windows.retain(|&w| w * CHUNK_SIZE < i.size);
        windows.sort_unstable();
        let p = self.data_path(ino);
        let file = match File::open(&p) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("opening overlay data", p, e)),
        };
        Ok(LocalData { ov: self, ino, file, sums, windows, masks })
    }

    /// The bytes of a file kept inline in the database.
    pub(crate) fn inline_bytes(&self, ino: u64) -> Result<Vec<u8>> {
        self.db.inline(ino)
    }
}

impl LocalData<'_> {
    /// The windows held locally, ascending, below the file's size.
    pub fn windows(&self) -> &[u64] {
        &self.windows
    }

    /// Window `w`'s bytes below `size`: its local blocks from the data
    /// file (verified), the others the image's (extents `base`, zeros from
    /// `base_end` on).
    pub fn window_bytes(&self, w: u64, size: u64, base: &[(u64, u64, ChunkId)], base_end: u64) -> Result<Vec<u8>> {
        let ws = w * CHUNK_SIZE;
        let n = CHUNK_SIZE.min(size.saturating_sub(ws));
        let mask = self.masks.get(&w).copied().unwrap_or(0);
        let mut out = Vec::with_capacity(n as usize);
        for (q, len, local) in super::data::mask_runs(mask, ws, ws + n) {
            if local {
                out.extend_from_slice(&self.read(q, len)?);
                continue;
            }
            let mut buf = vec![0u8; len as usize];
            let k = base_end.saturating_sub(q).min(len) as usize;
            if k > 0 {
                self.ov.read_base(base, q, &mut buf[..k])?;
            }
            out.extend_from_slice(&buf);
        }
        Ok(out)
    }

    /// The byte ranges of window `w` whose blocks hold data (have sums),
    /// not past `size`: the rest are holes, and stay holes in a fold.
    pub fn data_runs(&self, w: u64, size: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let Some(s) = self.sums.get(&w) else { return out };
        for (i, c) in s.cur.iter().enumerate() {
            let start = w * CHUNK_SIZE + i as u64 * BLOCK;
            if c.is_none() || start >= size {
                continue;
            }
            let end = (start + BLOCK).min(size);
            match out.last_mut() {
                Some((_, e)) if *e == start => *e = end,
                _ => out.push((start, end)),
            }
        }
        out
    }

    /// Bytes `[p, p + len)`, verified (a damaged block is an error naming
    /// the data file and offset, logged).
    pub fn read(&self, p: u64, len: u64) -> Result<Vec<u8>> {
        match Overlay::read_checked(self.file.as_ref(), &self.sums, p, len).map_err(|e| Error::io("reading overlay data", self.ov.data_path(self.ino), e))? {
            Ok(b) => Ok(b),
            Err(at) => Err(self.ov.damaged_at(self.ino, at, DOES_NOT_MATCH)),
        }
    }
}

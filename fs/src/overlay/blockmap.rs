//! Where each byte of a file comes from, for a block front's allocation
//! map (NBD BLOCK_STATUS): the guest's overlay (a window it wrote), the
//! image (an extent of the file's chunks), or nowhere (a hole of the image
//! or past its truncated end). Block granularity (4 KiB) for overlay
//! bytes: a local block with a sum holds the guest's data, one without
//! reads as zeros (trimmed or zeroed); extent granularity for the image's.

use std::collections::HashMap;

use super::data::mask_runs;
use super::sums::{block_of, zero_sum, Mask, BLOCK};
use super::{Base, Overlay};
use crate::chunker::{window_of, CHUNK_SIZE};
use crate::digest::ChunkId;
use crate::error::Result;

/// A run of a file's bytes with one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceRun {
    pub len: u64,
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Overlay,
    /// The overlay's, reading as zeros (no data stored).
    Zero,
    /// The overlay's, zeros stored as data (written, or zeroed with NO_HOLE).
    ZeroData,
    Image,
    Hole,
}

impl Overlay {
    /// The sources of `[off, off + len)` of file `ino` (clipped to its size),
    /// in order; at most `max_runs` runs (the rest is left for the next call).
    pub fn block_map(&self, ino: u64, off: u64, len: u64, max_runs: usize) -> Result<Vec<SourceRun>> {
        let (inode, windows, sums, extents) = {
            let mut st = self.lock();
            let node = self.node(&mut st, ino)?;
            let inode = node.inode.clone();
            let end = off.saturating_add(len).min(inode.size);
            match inode.base {
                Base::File { .. } if off < end => {
                    let extents = self.extents(node)?;
                    let wins = self.windows(node, ino)?;
                    let windows: HashMap<u64, Mask> = (window_of(off)..=window_of(end - 1)).filter_map(|w| wins.get(&w).map(|m| (w, *m))).collect();
                    let sums = self.sums_for(node, ino, off, end)?;
                    (inode, windows, sums, extents)
                }
                _ => (inode, HashMap::new(), Default::default(), Default::default()),
            }
        };
        let end = off.saturating_add(len).min(inode.size);
        let mut out: Vec<SourceRun> = Vec::new();
        let limit = match &inode.base {
            Base::File { limit, .. } => *limit,
            // All its bytes are the guest's.
            _ => {
                if off < end {
                    push(&mut out, end - off, Source::Overlay);
                }
                return Ok(out);
            }
        };
        let mut p = off;
        while p < end && out.len() < max_runs {
            let w = window_of(p);
            let wend = ((w + 1) * CHUNK_SIZE).min(end);
            let mask = windows.get(&w).copied().unwrap_or(0);
            for (q, n, local) in mask_runs(mask, p, wend) {
                if !local {
                    image_runs(&mut out, &extents, limit, q, q + n);
                    continue;
                }
                // Block by block: summed blocks hold data, the others zeros.
                let mut b = q;
                while b < q + n {
                    let be = ((b / BLOCK + 1) * BLOCK).min(q + n);
                    let (w, i) = block_of(b);
                    let source = match sums.get(&w).and_then(|s| s.cur[i]) {
                        None => Source::Zero,
                        Some(s) if s == zero_sum() => Source::ZeroData,
                        Some(_) => Source::Overlay,
                    };
                    push(&mut out, be - b, source);
                    b = be;
                }
            }
            p = wend;
        }
        Ok(out)
    }
}

fn push(out: &mut Vec<SourceRun>, len: u64, source: Source) {
    match out.last_mut() {
        Some(r) if r.source == source => r.len += len,
        _ => out.push(SourceRun { len, source }),
    }
}

/// The image's bytes of `[p, end)`: extents below the limit, holes elsewhere.
fn image_runs(out: &mut Vec<SourceRun>, extents: &[(u64, u64, ChunkId)], limit: u64, mut p: u64, end: u64) {
    let stop = end.min(limit);
    let mut i = extents.partition_point(|e| e.0 + e.1 <= p);
    while p < stop {
        match extents.get(i) {
            Some(&(eo, el, _)) if eo <= p => {
                let e = (eo + el).min(stop);
                push(out, e - p, Source::Image);
                p = e;
                i += 1;
            }
            Some(&(eo, _, _)) => {
                let e = eo.min(stop);
                push(out, e - p, Source::Hole);
                p = e;
            }
            None => {
                push(out, stop - p, Source::Hole);
                p = stop;
            }
        }
    }
    if p < end {
        push(out, end - p, Source::Hole);
    }
}

//! Where each byte of a file comes from, for a block front's allocation
//! map (NBD BLOCK_STATUS): the guest's overlay (a window it wrote), the
//! image (an extent of the file's chunks), or nowhere (a hole of the image
//! or past its truncated end). Window granularity (64 KiB) for overlay
//! bytes, extent granularity for the image's.

use crate::chunker::{window_of, CHUNK_SIZE};
use crate::error::Result;
use crate::tree::file::leaf_extents;

use super::{Base, Overlay};

/// A run of a file's bytes with one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceRun {
    pub len: u64,
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Overlay,
    Image,
    Hole,
}

impl Overlay {
    /// The sources of `[off, off + len)` of file `ino` (clipped to its size),
    /// in order; at most `max_runs` runs (the rest is left for the next call).
    pub fn block_map(&self, ino: u64, off: u64, len: u64, max_runs: usize) -> Result<Vec<SourceRun>> {
        let inode = self.getattr(ino)?;
        let end = off.saturating_add(len).min(inode.size);
        let mut out: Vec<SourceRun> = Vec::new();
        fn push(out: &mut Vec<SourceRun>, len: u64, source: Source) {
            match out.last_mut() {
                Some(r) if r.source == source => r.len += len,
                _ => out.push(SourceRun { len, source }),
            }
        }
        let (content, limit) = match &inode.base {
            Base::File { content, limit } => (*content, *limit),
            // All its bytes are the guest's.
            _ => {
                if off < end {
                    push(&mut out, end - off, Source::Overlay);
                }
                return Ok(out);
            }
        };
        let windows = self.db.windows(ino)?;
        let extents = leaf_extents(&*self.store, &content, limit)?;
        let mut p = off;
        while p < end && out.len() < max_runs {
            let w = window_of(p);
            let wend = ((w + 1) * CHUNK_SIZE).min(end);
            if windows.contains(&w) {
                push(&mut out, wend - p, Source::Overlay);
                p = wend;
                continue;
            }
            // The image's bytes of this window: extents below the limit.
            let stop = wend.min(limit);
            let mut i = extents.partition_point(|e| e.0 + e.1 <= p);
            while p < stop {
                match extents.get(i) {
                    Some(&(eo, el, _)) if eo <= p => {
                        let e = (eo + el).min(stop);
                        push(&mut out, e - p, Source::Image);
                        p = e;
                        i += 1;
                    }
                    Some(&(eo, _, _)) => {
                        let e = eo.min(stop);
                        push(&mut out, e - p, Source::Hole);
                        p = e;
                    }
                    None => {
                        push(&mut out, stop - p, Source::Hole);
                        p = stop;
                    }
                }
            }
            if p < wend {
                push(&mut out, wend - p, Source::Hole);
                p = wend;
            }
        }
        Ok(out)
    }
}

//! `st_blocks` of overlay inodes: the bytes a file really holds, counted as
//! SEEK_DATA/SEEK_HOLE see them, so `du`, `cp --sparse` and `tar --sparse`
//! keep an image file's holes instead of filling them.
//!
//! A file holds the image extents below its `limit` outside the blocks it
//! has copied up, plus what its overlay data file allocates (copied-up
//! blocks and the bytes of files the guest made). An inline file holds its
//! stored bytes; the zeros past them, up to its size, are a hole.

use crate::tree::Kind;
use super::{Base, Overlay};
use super::sums::{BLOCK, BLOCKS};
use crate::chunker::CHUNK_SIZE;
use crate::error::{Error, Result};

impl Overlay {
    /// The image content of file `ino` if the guest has not changed its
    /// bytes (no window copied up, not truncated or extended): what the
    /// host file cache can serve for it.
    pub fn pristine_file(&self, ino: u64) -> Result<Option<(crate::tree::Content, u64)>> {
        let mut st = self.lock();
        let node = self.node(&mut st, ino)?;
        let (kind, size) = (node.inode.kind, node.inode.size);
        let Base::File { content, limit } = node.inode.base.clone() else { return Ok(None) };
        if kind != Kind::File || limit != size || !self.windows(node, ino)?.is_empty() {
            return Ok(None);
        }
        Ok(Some((content, size)))
    }

    /// `st_blocks` (512-byte units) of inode `ino`.
    pub fn blocks(&self, ino: u64) -> Result<u64> {
        let mut st = self.lock();
        let node = self.node(&mut st, ino)?;
        let (size, base) = (node.inode.size, node.inode.base.clone());
        if node.inode.kind != Kind::File {
            return Ok(size.div_ceil(512));
        }
        let image_bytes = match base {
            Base::Inline => return Ok((self.db.inline(ino)?.len() as u64).min(size).div_ceil(512)),
            Base::File { limit, .. } => {
                let end = limit.min(size);
                let extents = if end > 0 { self.extents(node)? } else { Default::default() };
                let wins = self.windows(node, ino)?;
                // Bytes of extents within [lo, hi).
                let within = |lo: u64, hi: u64| -> u64 {
                    let i = extents.partition_point(|e| e.0 + e.1 <= lo);
                    extents[i..].iter().take_while(|e| e.0 < hi).map(|e| (e.0 + e.1).min(hi).saturating_sub(e.0.max(lo))).sum()
                };
                // Image bytes of blocks copied up (local) are the data file's.
                let copied: u64 = wins
                    .iter()
                    .flat_map(|(&w, &mask)| (0..BLOCKS).filter(move |i| mask & (1 << i) != 0).map(move |i| w * CHUNK_SIZE + i as u64 * BLOCK))
                    .map(|b| within(b, (b + BLOCK).min(end)))
                    .sum();
                within(0, end).saturating_sub(copied)
            }
            Base::None | Base::Dir { .. } => 0,
        };
        let file_bytes = match self.data_file(&mut st, ino, false)? {
            Some(f) => {
                use std::os::unix::fs::MetadataExt;
                let m = f.metadata().map_err(|e| Error::io("reading overlay data size", self.data_path(ino), e))?;
                m.blocks() * 512
            }
            None => 0,
        };
        Ok((image_bytes + file_bytes).div_ceil(512))
    }
}

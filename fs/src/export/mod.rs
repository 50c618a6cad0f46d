//! Export: write an image (any root tree) back out as a directory or a tar
//! stream, byte- and metadata-identical to what was imported.

mod dir;
mod tar;

pub use self::dir::export_dir;
pub use self::tar::export_tar;

use std::io::Read;

use crate::chunker::CHUNK_SIZE;
use crate::digest::{ChunkId, ObjectKind};
use crate::error::Result;
use crate::object::{get_required, ObjectStore};
use crate::tree::file::leaf_extents;
use crate::tree::Entry;

/// Counters of an export.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExportStats {
    pub entries: u64,
    pub bytes: u64,
}

/// A `Read` over a file's bytes (holes read as zeros), fetching one verified
/// chunk at a time. Store errors surface as `io::Error` wrapping the typed error.
pub struct FileReader<'s> {
    store: &'s dyn ObjectStore,
    extents: Vec<(u64, u64, ChunkId)>,
    next: usize,
    size: u64,
    pos: u64,
    cur: Vec<u8>,
    cur_off: u64,
}

impl<'s> FileReader<'s> {
    pub fn new(store: &'s dyn ObjectStore, e: &Entry) -> Result<Self> {
        Ok(FileReader { store, extents: leaf_extents(store, &e.content, e.size)?, next: 0, size: e.size, pos: 0, cur: Vec::new(), cur_off: 0 })
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        // Inside the current chunk?
        let cur_end = self.cur_off + self.cur.len() as u64;
        if self.pos >= self.cur_off && self.pos < cur_end {
            let s = (self.pos - self.cur_off) as usize;
            let n = buf.len().min(self.cur.len() - s);
            buf[..n].copy_from_slice(&self.cur[s..s + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        match self.extents.get(self.next) {
            Some(&(off, _, id)) if off <= self.pos => {
                self.cur = get_required(self.store, ObjectKind::Chunk, &id.0).map_err(std::io::Error::other)?;
                self.cur_off = off;
                self.next += 1;
                self.read(buf)
            }
            next => {
                // A hole up to the next extent (or the end of the file).
                let hole_end = next.map_or(self.size, |e| e.0).min(self.size);
                let n = (buf.len() as u64).min(hole_end - self.pos).min(CHUNK_SIZE) as usize;
                buf[..n].fill(0);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

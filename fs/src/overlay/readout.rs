//! The bytes of one read, as the pieces they already are.
//!
//! A READ of an image file is mostly ranges of chunks that sit in the chunk
//! cache. Copying them into one buffer only to have the transport copy that
//! buffer again cost a zero-filled 1 MiB allocation (fresh pages, faulted in)
//! and a copy per request. [`ReadOut`] keeps each range as a shared handle on
//! its chunk and hands the transport a list of slices: over `/dev/fuse` the
//! kernel gathers them with one `writev`, over io_uring they are copied once,
//! into the ring's buffer.
//!
//! Invariant: the pieces, in order, are exactly the bytes of the read.

use std::io::IoSlice;
use std::sync::Arc;

use crate::chunker::CHUNK_SIZE;
use crate::digest::{ChunkId, ObjectKind};
use crate::error::{Error, Result};
use crate::object::{get_required_shared, ObjectStore};

/// Zeros to point at: holes and bytes past a file's stored data.
static ZEROS: [u8; CHUNK_SIZE as usize] = [0; CHUNK_SIZE as usize];

enum Piece {
    /// `bytes[start..end]` of a cached chunk.
    Shared(Arc<Vec<u8>>, usize, usize),
    Owned(Vec<u8>),
    Zero(usize),
}

/// What a read returns: see the module docs.
#[derive(Default)]
pub struct ReadOut {
    pieces: Vec<Piece>,
    len: usize,
}

impl ReadOut {
    /// Bytes `start..end` of `chunk`; a range outside it is a file index
    /// that does not match its chunk.
    pub(crate) fn push_shared(&mut self, chunk: Arc<Vec<u8>>, start: usize, end: usize) -> Result<()> {
        if start > end || end > chunk.len() {
            return Err(Error::Decode { what: "file index", why: "extent longer than its chunk" });
        }
        if start < end {
            self.len += end - start;
            self.pieces.push(Piece::Shared(chunk, start, end));
        }
        Ok(())
    }

    pub(crate) fn push_owned(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.pieces.push(Piece::Owned(bytes));
        }
    }

    pub(crate) fn push_zeros(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.len += n;
        if let Some(Piece::Zero(z)) = self.pieces.last_mut() {
            *z += n;
        } else {
            self.pieces.push(Piece::Zero(n));
        }
    }

    /// Append bytes `[p, p + n)` of a file whose chunks are `extents`
    /// (offset, length, chunk; in order): ranges of the chunks as `store`
    /// shares them, zeros where no extent covers the bytes.
    pub(crate) fn push_extents(&mut self, store: &dyn ObjectStore, extents: &[(u64, u64, ChunkId)], p: u64, n: u64) -> Result<()> {
        let end = p + n;
        let mut at = p;
        let i = extents.partition_point(|e| e.0 + e.1 <= p);
        for &(eo, el, id) in &extents[i..] {
            if eo >= end {
                break;
            }
            let chunk = get_required_shared(store, ObjectKind::Chunk, &id.0)?;
            let (s, e) = (p.max(eo), end.min(eo + el));
            if s < at {
                return Err(Error::Decode { what: "file index", why: "overlapping extents" });
            }
            self.push_zeros((s - at) as usize);
            self.push_shared(chunk, (s - eo) as usize, (e - eo) as usize)?;
            at = e;
        }
        self.push_zeros((end - at) as usize);
        Ok(())
    }

    /// How many bytes the read returns.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes as slices, in order (a long run of zeros as several).
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut out = Vec::with_capacity(self.pieces.len() + 1);
        for p in &self.pieces {
            match p {
                Piece::Shared(c, s, e) => out.push(IoSlice::new(&c[*s..*e])),
                Piece::Owned(v) => out.push(IoSlice::new(v)),
                Piece::Zero(n) => {
                    let mut left = *n;
                    while left > 0 {
                        let k = left.min(ZEROS.len());
                        out.push(IoSlice::new(&ZEROS[..k]));
                        left -= k;
                    }
                }
            }
        }
        out
    }

    /// The bytes in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        self.copy_into(&mut v);
        v
    }

    /// Copy the bytes into `dst`, which is [`len`](Self::len) bytes long.
    pub fn copy_into(&self, dst: &mut [u8]) {
        let mut at = 0;
        for s in self.io_slices() {
            dst[at..at + s.len()].copy_from_slice(&s);
            at += s.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_in_order() {
        let chunk = Arc::new((0..=255u8).collect::<Vec<u8>>());
        let mut r = ReadOut::default();
        r.push_zeros(3);
        r.push_shared(chunk.clone(), 10, 14).unwrap();
        r.push_owned(vec![7, 8]);
        r.push_shared(chunk.clone(), 5, 5).unwrap();
        assert!(r.push_shared(chunk, 250, 257).is_err());
        r.push_zeros(ZEROS.len() + 2);
        r.push_zeros(1);
        let v = r.to_vec();
        assert_eq!(v.len(), r.len());
        assert_eq!(&v[..9], &[0, 0, 0, 10, 11, 12, 13, 7, 8]);
        assert!(v[9..].iter().all(|&b| b == 0));
        assert_eq!(v.len(), 9 + ZEROS.len() + 3);
        // The zero run is one piece, served as two slices.
        assert_eq!(r.io_slices().len(), 5);
    }
}

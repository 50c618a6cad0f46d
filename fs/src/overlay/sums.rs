//! Block checksums of overlay data files (format 3).
//!
//! Every 4 KiB block of a data file that holds written bytes has a sum (the
//! first 8 bytes of its BLAKE3 hash, bytes past the end of the file counted
//! as zeros), kept per 64 KiB window in the `sums` column family. A block
//! with no sum holds no data: it reads as zeros whatever the file has there.
//!
//! Each block keeps its current sum and, once overwritten, the one before
//! (`prev`). An overwrite commits the new sums before it writes the bytes,
//! so a crash in between leaves bytes that match `prev`: a read accepts
//! either sum, and sees the old bytes or the new, never an error. A block
//! written for the first time is written before its sum commits (a crash in
//! between leaves no sum: the block reads as the hole it was). So a data
//! file that is missing, short or changed where a sum exists fails its check.

use crate::chunker::CHUNK_SIZE;
use crate::error::{Error, Result};

/// Bytes per checksummed block.
pub const BLOCK: u64 = 4096;
/// Blocks per window.
pub const BLOCKS: usize = (CHUNK_SIZE / BLOCK) as usize;

pub type Sum = u64;

/// Which blocks of a recorded window live in the data file (bit *i*: block
/// *i*); the others still read from the image (format 4). A local block
/// with no sum reads as zeros: that is how a trimmed or zeroed block is kept.
pub type Mask = u16;
/// Every block local: the whole window (every window before format 4).
pub const FULL: Mask = u16::MAX;

/// The blocks of window `w` that `[off, end)` touches.
pub fn touched(w: u64, off: u64, end: u64) -> Mask {
    let ws = w * CHUNK_SIZE;
    let (s, e) = (off.max(ws), end.min(ws + CHUNK_SIZE));
    if s >= e {
        return 0;
    }
    let (a, b) = (((s - ws) / BLOCK) as u32, ((e - ws).div_ceil(BLOCK)) as u32);
    (((1u32 << b) - 1) & !((1u32 << a) - 1)) as Mask
}

/// The blocks of window `w` that `[off, end)` covers whole.
pub fn covered(w: u64, off: u64, end: u64) -> Mask {
    let ws = w * CHUNK_SIZE;
    let (s, e) = (off.max(ws), end.min(ws + CHUNK_SIZE));
    let (a, b) = (((s - ws).div_ceil(BLOCK)) as u32, ((e.max(s) - ws) / BLOCK) as u32);
    if a >= b {
        return 0;
    }
    (((1u32 << b) - 1) & !((1u32 << a) - 1)) as Mask
}

/// The sum of one block: `bytes` is at most [`BLOCK`] long, zeros after.
pub fn sum(bytes: &[u8]) -> Sum {
    let mut h = blake3::Hasher::new();
    h.update(&bytes[..bytes.len().min(BLOCK as usize)]);
    if (bytes.len() as u64) < BLOCK {
        h.update(&ZEROS[..BLOCK as usize - bytes.len()]);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b)
}

static ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];

/// The sum of a block of zeros (a block with it reads as zeros).
pub fn zero_sum() -> Sum {
    static S: std::sync::OnceLock<Sum> = std::sync::OnceLock::new();
    *S.get_or_init(|| sum(&ZEROS))
}

/// The sums of one window's blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowSums {
    pub cur: [Option<Sum>; BLOCKS],
    pub prev: [Option<Sum>; BLOCKS],
}

/// What a block's bytes are, checked against its sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// No sum: a hole (reads as zeros).
    Hole,
    /// The bytes match the current or the previous sum.
    Sound,
    Damaged,
}

impl WindowSums {
    pub fn is_empty(&self) -> bool {
        self.cur.iter().all(Option::is_none)
    }

    /// Check block `i`'s `bytes` (a whole block).
    pub fn check(&self, i: usize, bytes: &[u8]) -> Check {
        let Some(c) = self.cur[i] else { return Check::Hole };
        let s = sum(bytes);
        if s == c || self.prev[i] == Some(s) {
            Check::Sound
        } else {
            Check::Damaged
        }
    }

    /// Block `i` now holds bytes with sum `s`; `keep_prev`: the bytes it
    /// held may still be on disk after a crash (an overwrite whose bytes are
    /// written after this commits), so its old sum stays acceptable.
    pub fn set(&mut self, i: usize, s: Sum, keep_prev: bool) {
        let old = self.cur[i];
        self.cur[i] = Some(s);
        if keep_prev && old.is_some() && old != Some(s) {
            self.prev[i] = old;
        } else if !keep_prev {
            self.prev[i] = None;
        }
    }

    /// Block `i` holds nothing any more (past the end of the file).
    pub fn clear(&mut self, i: usize) {
        self.cur[i] = None;
        self.prev[i] = None;
    }

    /// Layout: version 1, bitmap u16 LE of blocks with a current sum, bitmap
    /// u16 LE of blocks with a previous one, then for each block in order
    /// its current sum (u64 LE) and, if any, its previous sum.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(5 + 16 * BLOCKS);
        v.push(1);
        let bits = |a: &[Option<Sum>; BLOCKS]| a.iter().enumerate().filter(|(_, s)| s.is_some()).fold(0u16, |m, (i, _)| m | 1 << i);
        let (cur, prev) = (bits(&self.cur), bits(&self.prev) & bits(&self.cur));
        v.extend_from_slice(&cur.to_le_bytes());
        v.extend_from_slice(&prev.to_le_bytes());
        for i in 0..BLOCKS {
            if let Some(c) = self.cur[i] {
                v.extend_from_slice(&c.to_le_bytes());
                if let Some(p) = self.prev[i] {
                    v.extend_from_slice(&p.to_le_bytes());
                }
            }
        }
        v
    }

    pub fn decode(v: &[u8]) -> Result<Self> {
        let bad = |why| Error::Decode { what: "overlay block sums", why };
        let (&ver, rest) = v.split_first().ok_or(bad("empty"))?;
        if ver != 1 {
            return Err(bad("unknown version"));
        }
        let word = |b: &[u8], at: usize| b.get(at..at + 2).map(|x| u16::from_le_bytes([x[0], x[1]])).ok_or(bad("truncated"));
        let (cur, prev) = (word(rest, 0)?, word(rest, 2)?);
        if prev & !cur != 0 {
            return Err(bad("previous sum of a block without a sum"));
        }
        let mut at = 4;
        let mut next = || -> Result<Sum> {
            let b = rest.get(at..at + 8).ok_or(bad("truncated"))?;
            at += 8;
            Ok(u64::from_le_bytes(b.try_into().map_err(|_| bad("truncated"))?))
        };
        let mut s = WindowSums::default();
        for i in 0..BLOCKS {
            if cur & (1 << i) != 0 {
                s.cur[i] = Some(next()?);
                if prev & (1 << i) != 0 {
                    s.prev[i] = Some(next()?);
                }
            }
        }
        if at != rest.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(s)
    }
}

/// The block-aligned span `[start, end)` that covers `[off, end)`.
pub fn block_span(off: u64, end: u64) -> (u64, u64) {
    (off / BLOCK * BLOCK, end.div_ceil(BLOCK) * BLOCK)
}

/// Window and block index within it of the block at byte `p`.
pub fn block_of(p: u64) -> (u64, usize) {
    (p / CHUNK_SIZE, ((p % CHUNK_SIZE) / BLOCK) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_round_trips_and_rejects_damage() {
        let mut s = WindowSums::default();
        assert_eq!(WindowSums::decode(&s.encode()).unwrap(), s);
        s.set(0, 7, true);
        s.set(3, 9, false);
        s.set(3, 10, true);
        s.set(15, u64::MAX, true);
        assert_eq!(s.prev[3], Some(9));
        assert_eq!(s.prev[0], None, "a first write has no previous bytes");
        let v = s.encode();
        assert_eq!(v.len(), 5 + 8 * 4);
        assert_eq!(WindowSums::decode(&v).unwrap(), s);
        assert!(WindowSums::decode(&v[..v.len() - 1]).is_err());
        let mut longer = v.clone();
        longer.push(0);
        assert!(WindowSums::decode(&longer).is_err());
        let mut bad = v.clone();
        bad[0] = 2;
        assert!(WindowSums::decode(&bad).is_err());
        assert!(WindowSums::decode(&[]).is_err());
        // A previous sum for a block without a current one.
        assert!(WindowSums::decode(&[1, 0, 0, 1, 0]).is_err());
    }

    #[test]
    fn check_accepts_old_or_new_bytes_only() {
        let (a, b, c) = (vec![1u8; 4096], vec![2u8; 4096], vec![3u8; 4096]);
        let mut s = WindowSums::default();
        assert_eq!(s.check(0, &a), Check::Hole);
        s.set(0, sum(&a), true);
        s.set(0, sum(&b), true);
        assert_eq!(s.check(0, &a), Check::Sound);
        assert_eq!(s.check(0, &b), Check::Sound);
        assert_eq!(s.check(0, &c), Check::Damaged);
        assert_eq!(s.check(0, &[0u8; 4096]), Check::Damaged);
        s.set(0, sum(&c), false);
        assert_eq!(s.check(0, &a), Check::Damaged, "a settled write drops the old sum");
        s.clear(0);
        assert_eq!(s.check(0, &c), Check::Hole);
    }

    #[test]
    fn short_bytes_sum_as_zero_padded() {
        let mut x = vec![5u8; 100];
        assert_eq!(sum(&x), {
            x.resize(4096, 0);
            sum(&x)
        });
        assert_ne!(sum(&[]), sum(&[1]));
    }

    #[test]
    fn block_math() {
        assert_eq!(block_span(0, 1), (0, 4096));
        assert_eq!(block_span(4095, 4097), (0, 8192));
        assert_eq!(block_span(4096, 8192), (4096, 8192));
        assert_eq!(block_of(0), (0, 0));
        assert_eq!(block_of(CHUNK_SIZE - 1), (0, BLOCKS - 1));
        assert_eq!(block_of(CHUNK_SIZE + 4096), (1, 1));
        assert_eq!(BLOCKS, 16);
    }

    #[test]
    fn masks() {
        assert_eq!(touched(0, 0, 1), 1);
        assert_eq!(covered(0, 0, 1), 0);
        assert_eq!(touched(0, 4095, 4097), 0b11);
        assert_eq!(covered(0, 4096, 8192), 0b10);
        assert_eq!(touched(1, 0, 2 * CHUNK_SIZE), FULL);
        assert_eq!(covered(1, 0, 2 * CHUNK_SIZE), FULL);
        assert_eq!(touched(1, 0, CHUNK_SIZE), 0);
        assert_eq!(covered(1, CHUNK_SIZE + 100, CHUNK_SIZE + 200), 0);
        assert_eq!(touched(0, CHUNK_SIZE - 1, CHUNK_SIZE), 1 << 15);
    }
}

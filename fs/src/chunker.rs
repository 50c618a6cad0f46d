//! Fixed-size, offset-aligned chunking.
//!
//! A file's bytes are cut at multiples of [`CHUNK_SIZE`] of the file offset (and at
//! the edges of sparse holes). So the chunk that holds offset `o` is found by
//! arithmetic, a random read touches one chunk (two when it straddles a boundary),
//! and a write in place into a large file changes exactly the chunks it covers:
//! the overlay and checkpoints store only those. Content-defined chunking would
//! survive insertions better, but OS images change by replacing files and guests
//! by writing in place; docs/chunking.md gives the measurements.

/// Chunk size in bytes (64 KiB).
pub const CHUNK_SIZE: u64 = 64 * 1024;

/// Split `[start, end)` at multiples of [`CHUNK_SIZE`]: yields `(offset, len)`.
pub fn aligned_pieces(start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut pos = start;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let boundary = (pos / CHUNK_SIZE + 1) * CHUNK_SIZE;
        let stop = boundary.min(end);
        let piece = (pos, stop - pos);
        pos = stop;
        Some(piece)
    })
}

/// The index of the chunk-sized window holding `offset`.
pub fn window_of(offset: u64) -> u64 {
    offset / CHUNK_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pieces_cover_range_exactly_and_never_cross_a_boundary(start in 0u64..1_000_000, len in 0u64..1_000_000) {
            let end = start + len;
            let mut pos = start;
            for (off, n) in aligned_pieces(start, end) {
                prop_assert_eq!(off, pos);
                prop_assert!(n > 0 && n <= CHUNK_SIZE);
                prop_assert_eq!(window_of(off), window_of(off + n - 1));
                pos += n;
            }
            prop_assert_eq!(pos, end);
        }
    }
}

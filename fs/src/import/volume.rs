//! Import of a block volume (a raw disk image, a block device, or a raw
//! stream): the disk becomes one file, [`VOLUME_FILE`], in an otherwise
//! empty root, cut into chunks like any file; all-zero chunks and the
//! source's holes are not stored (they read as zeros). So a golden disk
//! deduplicates against every other image and volume in the repository.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::{precheck, publish_kind, ImportStats, ImportTarget, Progress};
use crate::chunker::CHUNK_SIZE;
use crate::digest::TreeId;
use crate::error::{Error, Result};
use crate::nbd::volume::VOLUME_FILE;
use crate::object::ObjectStore;
use crate::repo::{ImageRecord, Repository};
use crate::tree::file::ContentBuilder;
use crate::tree::{store_root, Content, Entry, Kind, Tree};

/// Import the raw disk at `path` (a file, a block device, or `-` for
/// stdin) as a volume image.
pub fn import_volume(repo: &Repository, path: &Path, target: &ImportTarget, progress: &dyn Progress) -> Result<(ImageRecord, ImportStats)> {
    precheck(repo, target)?;
    let (root, stats) = if path == Path::new("-") {
        store_volume(repo.objects(), &mut std::io::stdin().lock(), None, progress)?
    } else {
        let f = File::open(path).map_err(|e| crate::perms::open_error("opening", path, e))?;
        let md = f.metadata().map_err(|e| Error::io("reading", path, e))?;
        if md.file_type().is_block_device() || md.file_type().is_char_device() || md.file_type().is_fifo() {
            store_volume(repo.objects(), &mut &f, None, progress)?
        } else if md.is_file() {
            progress.set_total(md.len());
            let regions = super::dir::data_regions(&f, md.len()).map_err(|e| Error::io("seeking", path, e))?;
            store_regions(repo.objects(), &f, md.len(), &regions, progress).map_err(|e| match e {
                Error::Archive(io) => Error::io("reading", path, io),
                e => e,
            })?
        } else {
            return Err(Error::NotSupported { path: path.display().to_string(), why: "a volume is imported from a file, a block device or '-'" });
        }
    };
    let rec = publish_kind(repo, target, root, &stats, true)?;
    Ok((rec, stats))
}

/// Store a raw disk read from `input` to its end (`size`: its length, when
/// known beforehand; else what was read).
pub fn store_volume(store: &dyn ObjectStore, input: &mut dyn Read, size: Option<u64>, progress: &dyn Progress) -> Result<(TreeId, ImportStats)> {
    let mut b = ContentBuilder::new(store);
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    let mut pos = 0u64;
    loop {
        let n = super::tar::read_full(input, &mut buf).map_err(Error::Archive)?;
        if n == 0 {
            break;
        }
        push_unless_zero(&mut b, pos, &buf[..n])?;
        progress.advance(n as u64);
        pos += n as u64;
        if n < buf.len() {
            break;
        }
    }
    finish(store, b, size.unwrap_or(pos).max(pos))
}

/// Store the data `regions` of the file `f` of length `size`.
fn store_regions(store: &dyn ObjectStore, f: &File, size: u64, regions: &[(u64, u64)], progress: &dyn Progress) -> Result<(TreeId, ImportStats)> {
    use std::os::unix::fs::FileExt;
    let mut b = ContentBuilder::new(store);
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    // Two regions may share a chunk: each chunk is read once.
    let mut next = 0u64;
    for &(s, e) in regions {
        // Whole chunks, aligned to the disk's offsets.
        let mut p = (s - s % CHUNK_SIZE).max(next);
        while p < e {
            let n = (size - p).min(CHUNK_SIZE) as usize;
            f.read_exact_at(&mut buf[..n], p).map_err(Error::Archive)?;
            push_unless_zero(&mut b, p, &buf[..n])?;
            progress.advance(n as u64);
            p += n as u64;
        }
        next = next.max(p);
    }
    finish(store, b, size)
}

fn push_unless_zero(b: &mut ContentBuilder, at: u64, data: &[u8]) -> Result<()> {
    if data.iter().all(|&x| x == 0) {
        return Ok(());
    }
    b.push(at, data)
}

fn finish(store: &dyn ObjectStore, b: ContentBuilder, size: u64) -> Result<(TreeId, ImportStats)> {
    let new_bytes = b.new_bytes;
    let mut disk = Entry::new(VOLUME_FILE.to_vec(), Kind::File);
    disk.mode = 0o600;
    disk.size = size;
    disk.content = b.finish(size)?;
    let mut t = Tree { entries: vec![disk] };
    t.sort();
    let mut root = Entry::new(Vec::new(), Kind::Dir);
    root.mode = 0o700;
    root.content = Content::Tree(t.store(store)?);
    let stats = ImportStats { entries: 2, logical_bytes: size, new_bytes };
    Ok((store_root(store, root)?, stats))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::NoProgress;
    use crate::object::MemStore;
    use crate::tree::file::leaf_extents;

    #[test]
    fn zero_chunks_are_holes_and_the_size_is_kept() {
        let store = MemStore::new();
        let mut disk = vec![0u8; (5 * CHUNK_SIZE + 100) as usize];
        disk[(CHUNK_SIZE + 7) as usize] = 1;
        disk[(5 * CHUNK_SIZE + 99) as usize] = 2;
        let (root, stats) = store_volume(&store, &mut &disk[..], None, &NoProgress).unwrap();
        assert_eq!(stats.logical_bytes, disk.len() as u64);
        let e = crate::tree::lookup(&store, &root, VOLUME_FILE).unwrap().unwrap();
        assert_eq!(e.size, disk.len() as u64);
        let x = leaf_extents(&store, &e.content, e.size).unwrap();
        let offs: Vec<u64> = x.iter().map(|e| e.0).collect();
        assert_eq!(offs, vec![CHUNK_SIZE, 5 * CHUNK_SIZE], "only the two chunks with data are stored");
    }
}

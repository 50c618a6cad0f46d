//! Import from a directory on a local filesystem.
//!
//! Three phases: (1) walk and lstat everything, in name-byte order, into an
//! arena; (2) read, chunk, hash and compress regular files on every core; (3)
//! build trees bottom-up. Symlinks are recorded, never followed; the sparse
//! layout of files is kept via SEEK_DATA/SEEK_HOLE.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::filter::ImportFilter;
use super::walk::{rel_path, walk};
use super::{link_label, precheck, publish, ImportStats, ImportTarget, Progress};
use crate::chunker::CHUNK_SIZE;
use crate::error::{Error, Result};
use crate::repo::{ImageRecord, Repository};
use crate::tree::file::ContentBuilder;
use crate::tree::{store_root, Content, Entry, Kind, Timestamp, Tree};
use crate::object::ObjectStore;

/// Bytes read per `read` call; a multiple of the chunk size.
const READ_BLOCK: u64 = 16 * CHUNK_SIZE;

/// Import the directory `src` as a new image.
pub fn import_dir(repo: &Repository, src: &Path, target: &ImportTarget, progress: &dyn Progress) -> Result<(ImageRecord, ImportStats)> {
    import_dir_filtered(repo, src, target, &ImportFilter::default(), progress)
}

/// [`import_dir`], leaving out what `filter` excludes.
pub fn import_dir_filtered(repo: &Repository, src: &Path, target: &ImportTarget, filter: &ImportFilter, progress: &dyn Progress) -> Result<(ImageRecord, ImportStats)> {
    precheck(repo, target)?;
    let (root, stats) = store_dir_filtered(repo.objects(), src, filter, progress)?;
    let rec = publish(repo, target, root, &stats)?;
    Ok((rec, stats))
}

/// Store `src` as a root tree in `store` (no image is published).
pub fn store_dir(store: &dyn ObjectStore, src: &Path, progress: &dyn Progress) -> Result<(crate::digest::TreeId, ImportStats)> {
    store_dir_filtered(store, src, &ImportFilter::default(), progress)
}

fn store_dir_filtered(store: &dyn ObjectStore, src: &Path, filter: &ImportFilter, progress: &dyn Progress) -> Result<(crate::digest::TreeId, ImportStats)> {
    let mut nodes = walk(store, src, filter, progress)?;

    // Hardlink sets: inodes seen more than once inside the tree.
    let mut sets: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(ino) = n.inode {
            sets.entry(ino).or_default().push(i);
        }
    }
    let mut first_of: HashMap<usize, usize> = HashMap::new();
    for members in sets.values().filter(|m| m.len() > 1) {
        let smallest = members.iter().map(|&i| rel_path(&nodes, i)).min().unwrap_or_default();
        let label = link_label(&smallest);
        for &i in members {
            nodes[i].entry.link = label;
            nodes[i].entry.links = members.len() as u32;
            first_of.insert(i, members[0]);
        }
    }

    // Regular files: one per inode; those the walk did not store are read now.
    let inodes: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].entry.kind == Kind::File && first_of.get(&i).is_none_or(|&f| f == i))
        .collect();
    let mut stats = ImportStats { entries: nodes.len() as u64, ..Default::default() };
    stats.logical_bytes = inodes.iter().map(|&i| nodes[i].entry.size).sum();
    stats.new_bytes = nodes.iter().filter_map(|n| n.stored).sum();
    progress.set_total(stats.logical_bytes);
    let files: Vec<(usize, &Path)> = inodes.iter().filter_map(|&i| Some((i, nodes[i].path.as_deref().filter(|_| nodes[i].stored.is_none())?))).collect();

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Content, u64)>> = Mutex::new(Vec::with_capacity(files.len()));
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, path)) = files.get(k) else { break };
                if first_err.lock().map(|e| e.is_some()).unwrap_or(true) {
                    break;
                }
                match store_file(store, path, nodes[i].entry.size, progress) {
                    Ok((c, newb)) => results.lock().unwrap_or_else(|e| e.into_inner()).push((i, c, newb)),
                    Err(e) => {
                        let mut fe = first_err.lock().unwrap_or_else(|e| e.into_inner());
                        fe.get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    for (i, c, newb) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        nodes[i].entry.content = c;
        stats.new_bytes += newb;
    }
    for (&i, &f) in &first_of {
        if i != f {
            nodes[i].entry.content = nodes[f].entry.content;
        }
    }

    // Trees bottom-up: children always come after their parent in the arena.
    for i in (0..nodes.len()).rev() {
        if nodes[i].entry.kind != Kind::Dir {
            continue;
        }
        let mut t = Tree { entries: nodes[i].children.iter().map(|&c| nodes[c].entry.clone()).collect() };
        t.sort();
        nodes[i].entry.content = Content::Tree(t.store(store)?);
    }
    let mut root = nodes.swap_remove(0).entry;
    root.xattrs.sort();
    Ok((store_root(store, root)?, stats))
}

/// Metadata of one filesystem object (content is filled in later).
pub(crate) fn entry_from(name: Vec<u8>, meta: &std::fs::Metadata, path: &Path) -> Result<Entry> {
    let kind = Kind::from_mode(meta.mode()).ok_or_else(|| Error::NotSupported { path: path.display().to_string(), why: "unknown file type" })?;
    let mut e = Entry::new(name, kind);
    e.mode = meta.mode() & 0o7777;
    e.uid = meta.uid();
    e.gid = meta.gid();
    e.mtime = Timestamp { sec: meta.mtime(), nsec: meta.mtime_nsec() as u32 };
    match kind {
        Kind::File => e.size = meta.size(),
        Kind::CharDev | Kind::BlockDev => e.rdev = meta.rdev(),
        Kind::Symlink => {
            e.target = std::fs::read_link(path).map_err(|er| Error::io("readlink", path, er))?.as_os_str().as_bytes().to_vec();
        }
        _ => {}
    }
    e.xattrs = read_xattrs(path)?;
    Ok(e)
}

/// Every xattr of `path` (not following symlinks), sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing xattrs of", path, e)),
    };
    let mut out = Vec::new();
    for n in names {
        match xattr::get(path, &n) {
            Ok(Some(v)) => out.push((n.as_bytes().to_vec(), v)),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(Error::io("reading xattrs of", path, e)),
        }
    }
    out.sort();
    Ok(out)
}

/// Store one regular file's content, keeping holes.
pub(super) fn store_file(store: &dyn ObjectStore, path: &Path, size: u64, progress: &dyn Progress) -> Result<(Content, u64)> {
    let f = open_noatime(path)?;
    let regions = data_regions(&f, size).map_err(|e| Error::io("seeking", path, e))?;
    let mut b = ContentBuilder::new(store);
    let mut buf = vec![0u8; READ_BLOCK as usize];
    for (start, end) in regions {
        let mut pos = start;
        while pos < end {
            let stop = ((pos / READ_BLOCK + 1) * READ_BLOCK).min(end);
            let n = (stop - pos) as usize;
            read_exact_at(&f, &mut buf[..n], pos).map_err(|e| Error::io("reading", path, e))?;
            b.push(pos, &buf[..n])?;
            progress.advance(n as u64);
            pos = stop;
        }
    }
    let newb = b.new_bytes;
    Ok((b.finish(size)?, newb))
}

fn open_noatime(path: &Path) -> Result<File> {
    let open = |flags| std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path);
    match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW).map_err(|e| Error::io("opening", path, e)),
        Err(e) => Err(Error::io("opening", path, e)),
    }
}

fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::other("file shrank while it was being imported")
        } else {
            e
        }
    })
}

/// The data ranges of a file below `size` (SEEK_DATA/SEEK_HOLE); the whole file
/// when the filesystem does not report holes.
pub(crate) fn data_regions(f: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENXIO) => break,
                Some(libc::EINVAL) if out.is_empty() => return Ok(vec![(0, size)]),
                _ => return Err(err),
            }
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let end = (hole as u64).min(size);
        if (data as u64) < end {
            out.push((data as u64, end));
        }
        pos = hole;
    }
    Ok(out)
}

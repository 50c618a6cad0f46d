//! Phase 1 of a directory import: lstat everything below the source into an
//! arena (parents before children, names in byte order), at any depth.
//!
//! Each directory is reached relative to its parent's descriptor (`openat`,
//! never through a symlink, checked to be the inode its `lstat` saw), and its
//! entries are read through `/proc/self/fd/N/NAME`, a short path whatever
//! the depth (the final component is never followed: lstat, readlink and
//! the `l*xattr` calls). Descriptors of the innermost [`OPEN_DIRS`] levels
//! stay open; going back up past them reopens the parent through `..` and
//! checks it is the directory left. A file whose real path is longer than
//! PATH_MAX cannot be opened by path later, so its content is stored here;
//! every other file is read by the parallel phase 2.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::dir::{entry_from, store_file};
use super::filter::ImportFilter;
use super::Progress;
use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::tree::{Entry, Kind};

/// Directory descriptors kept open on the way down (the rest are reopened).
const OPEN_DIRS: usize = 64;

pub(super) struct Node {
    pub entry: Entry,
    /// Its real path, when shorter than PATH_MAX (phase 2 opens it by path).
    pub path: Option<PathBuf>,
    /// The parent's arena index (the root's is 0).
    pub parent: usize,
    pub children: Vec<usize>,
    /// `(dev, ino)` of a non-directory with more than one link.
    pub inode: Option<(u64, u64)>,
    /// New chunk bytes, when its content was stored during the walk.
    pub stored: Option<u64>,
}

/// A directory on the way down: its descriptor, identity, arena index, and
/// the subdirectories still to walk (arena index, name, `(dev, ino)`).
struct Level {
    fd: Option<OwnedFd>,
    id: (u64, u64),
    node: usize,
    subdirs: std::vec::IntoIter<(usize, Vec<u8>, (u64, u64))>,
}

/// The arena of everything below `src` (the root first; `src` itself is
/// followed if it is a symlink, nothing below it is).
pub(super) fn walk(store: &dyn ObjectStore, src: &Path, filter: &ImportFilter, progress: &dyn Progress) -> Result<Vec<Node>> {
    let meta = std::fs::metadata(src).map_err(|e| Error::io("reading", src, e))?;
    if !meta.is_dir() {
        return Err(Error::NotSupported { path: src.display().to_string(), why: "not a directory" });
    }
    if !Path::new("/proc/self/fd").is_dir() {
        return Err(Error::NotSupported { path: src.display().to_string(), why: "import from a directory needs /proc mounted" });
    }
    let root = Node { entry: entry_from(Vec::new(), &meta, src)?, path: Some(src.to_path_buf()), parent: 0, children: Vec::new(), inode: None, stored: None };
    let mut nodes = vec![root];
    let fd = open_dir(None, src.as_os_str().as_bytes()).map_err(|e| Error::io("opening", src, e))?;
    check_same(&fd, (meta.dev(), meta.ino())).map_err(|e| Error::io("opening", src, e))?;
    let scope = Scope { filter, dev: meta.dev() };
    let subdirs = list(store, &mut nodes, 0, &fd, src, &scope, progress)?;
    let mut stack = vec![Level { fd: Some(fd), id: (meta.dev(), meta.ino()), node: 0, subdirs: subdirs.into_iter() }];
    while let Some(level) = stack.last_mut() {
        let Some(fd) = level.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return Err(Error::io("walking", shown(&nodes, src, level.node), std::io::Error::other("lost a directory descriptor")));
        };
        let Some((idx, name, id)) = level.subdirs.next() else {
            let Some(done) = stack.pop() else { break };
            if let (Some(parent), Some(dfd)) = (stack.last_mut(), done.fd) {
                if parent.fd.is_none() {
                    let err = |e| Error::io("reopening", shown(&nodes, src, parent.node), e);
                    let up = open_dir(Some(dfd.as_raw_fd()), b"..").map_err(err)?;
                    check_same(&up, parent.id).map_err(err)?;
                    parent.fd = Some(up);
                }
            }
            continue;
        };
        let err = |e| Error::io("opening", shown(&nodes, src, idx), e);
        let sub = open_dir(Some(fd), &name).map_err(err)?;
        check_same(&sub, id).map_err(err)?;
        let subdirs = list(store, &mut nodes, idx, &sub, src, &scope, progress)?;
        stack.push(Level { fd: Some(sub), id, node: idx, subdirs: subdirs.into_iter() });
        if stack.len() > OPEN_DIRS {
            let far = stack.len() - OPEN_DIRS - 1;
            if far > 0 {
                stack[far].fd = None;
            }
        }
    }
    Ok(nodes)
}

/// What the walk leaves out: the filter, and the source's device (for
/// `one_file_system`).
struct Scope<'a> {
    filter: &'a ImportFilter,
    dev: u64,
}

/// Add the entries of directory `dir` (arena index, open as `fd`) that the
/// filter keeps; return the subdirectories to walk, in name order.
fn list(store: &dyn ObjectStore, nodes: &mut Vec<Node>, dir: usize, fd: &OwnedFd, src: &Path, scope: &Scope, progress: &dyn Progress) -> Result<Vec<(usize, Vec<u8>, (u64, u64))>> {
    let here = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let rd = std::fs::read_dir(&here).map_err(|e| Error::io("listing", shown(nodes, src, dir), e))?;
    let mut names: Vec<Vec<u8>> = Vec::new();
    for ent in rd {
        names.push(ent.map_err(|e| Error::io("listing", shown(nodes, src, dir), e))?.file_name().as_bytes().to_vec());
    }
    names.sort();
    let mut subdirs = Vec::new();
    // The directory's path from the source, for anchored patterns.
    let prefix = if scope.filter.exclude.is_empty() { Vec::new() } else { rel_path(nodes, dir) };
    for name in names {
        if !scope.filter.exclude.is_empty() {
            let rel = if prefix.is_empty() { name.clone() } else { [&prefix[..], b"/", &name[..]].concat() };
            if scope.filter.excludes(&rel) {
                continue;
            }
        }
        let p = here.join(OsStr::from_bytes(&name));
        // Errors name the real path, not the /proc one.
        let real = || shown(nodes, src, dir).join(OsStr::from_bytes(&name));
        let fix = |e: Error| match e {
            Error::Io { op, source, .. } => Error::io(op, real(), source),
            Error::NotSupported { why, .. } => Error::NotSupported { path: real().display().to_string(), why },
            e => e,
        };
        let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io("lstat", real(), e))?;
        let mut entry = entry_from(name.clone(), &meta, &p).map_err(fix)?;
        let path = nodes[dir].path.as_ref().map(|d| d.join(OsStr::from_bytes(&name))).filter(|c| c.as_os_str().len() < libc::PATH_MAX as usize);
        let inode = (entry.kind != Kind::Dir && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
        let mut stored = None;
        if entry.kind == Kind::File && path.is_none() {
            // Too deep to be opened by path in phase 2: stored now.
            let (c, newb) = store_file(store, &p, meta.size(), progress).map_err(fix)?;
            entry.content = c;
            stored = Some(newb);
        }
        let idx = nodes.len();
        // Another filesystem's directory (with --one-file-system) is kept
        // as an empty directory, as tar keeps mount points.
        if entry.kind == Kind::Dir && !(scope.filter.one_file_system && meta.dev() != scope.dev) {
            subdirs.push((idx, name, (meta.dev(), meta.ino())));
        }
        nodes.push(Node { entry, path, parent: dir, children: Vec::new(), inode, stored });
        nodes[dir].children.push(idx);
    }
    Ok(subdirs)
}

/// A directory `name` in `dir` (never through a symlink), or the source
/// itself (`dir` `None`: the path the user gave).
fn open_dir(dir: Option<RawFd>, name: &[u8]) -> std::io::Result<OwnedFd> {
    let nofollow = if dir.is_some() { OFlag::O_NOFOLLOW } else { OFlag::empty() };
    let fd = nix::fcntl::openat(dir, OsStr::from_bytes(name), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | nofollow, Mode::empty())?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory opened is the one lstat saw (not replaced in between).
fn check_same(fd: &OwnedFd, id: (u64, u64)) -> std::io::Result<()> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    if (st.st_dev, st.st_ino) != id {
        return Err(std::io::Error::other("directory replaced while it was being imported"));
    }
    Ok(())
}

/// The real path of node `i`, for messages (built from the parent links).
fn shown(nodes: &[Node], src: &Path, mut i: usize) -> PathBuf {
    let mut names = Vec::new();
    while i != 0 && i < nodes.len() {
        names.push(OsStr::from_bytes(&nodes[i].entry.name));
        i = nodes[i].parent;
    }
    let mut p = src.to_path_buf();
    p.extend(names.iter().rev());
    p
}

/// The path of node `i` relative to the source, without a leading `/` (as
/// hardlink labels are made).
pub(super) fn rel_path(nodes: &[Node], i: usize) -> Vec<u8> {
    crate::walk::path_up(i, |i| (&nodes[i].entry.name, nodes[i].parent))
}

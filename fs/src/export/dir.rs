//! Export to a local directory: create every entry, then apply metadata in the
//! order the kernel requires (owner before mode, because chown clears setuid
//! and capabilities; xattrs after both; times last, directories after their
//! children).
//!
//! Everything below the destination is made relative to its directory's
//! descriptor (`mkdirat`, `openat`, `fchownat`, ...), never by path, so a
//! tree of any depth exports (paths far past PATH_MAX). Descriptors of the
//! innermost [`OPEN_DIRS`] levels stay open; going back up past them
//! reopens the parent through `..` and checks it is the directory left
//! (same device and inode), so a tree moved away mid-export is an error,
//! not a write elsewhere.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use xattr::FileExt as _;

use super::ExportStats;
use crate::digest::{ObjectKind, TreeId};
use crate::error::{Error, Result};
use crate::import::Progress;
use crate::object::{get_required, ObjectStore};
use crate::tree::file::leaf_extents;
use crate::tree::{load_root, Content, Entry, Kind, Tree};

/// Directory descriptors kept open on the way down (the rest are reopened).
const OPEN_DIRS: usize = 64;

/// Export the root tree `root` into `dest`, which must be absent or empty.
pub fn export_dir(store: &dyn ObjectStore, root: &TreeId, dest: &Path, progress: &dyn Progress) -> Result<ExportStats> {
    match std::fs::read_dir(dest) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::DestinationNotEmpty(dest.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|e| Error::io("creating", dest, e))?;
        }
        Err(e) => return Err(Error::io("listing", dest, e)),
    }
    let root_entry = load_root(store, root)?;
    let top = open_at(None, dest.as_os_str().as_bytes(), OFlag::O_DIRECTORY).map_err(|e| Error::io("opening", dest, e))?;
    let id = dev_ino(&top).map_err(|e| Error::io("stat", dest, e))?;
    let mut x = Exporter { store, dest, names: Vec::new(), links: HashMap::new(), stats: ExportStats::default(), progress };
    // Depth-first with the open listings on an explicit stack (no recursion:
    // depth is whatever the image has).
    let mut stack = vec![Level { entries: listing(store, &root_entry)?.into_iter(), dir: root_entry, fd: Some(top), id }];
    while let Some(level) = stack.last_mut() {
        let Some(fd) = level.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return Err(Error::io("exporting to", x.path(None), std::io::Error::other("lost a directory descriptor")));
        };
        let Some(child) = level.entries.next() else {
            // Its children are done: reopen the parent if its descriptor was
            // let go (before this directory's mode may forbid the way up),
            // then the directory's own metadata, last.
            let Some(Level { dir, fd: Some(dfd), .. }) = stack.pop() else {
                return Err(Error::io("exporting to", x.path(None), std::io::Error::other("lost a directory descriptor")));
            };
            if let Some(parent) = stack.last_mut() {
                if parent.fd.is_none() {
                    parent.fd = Some(x.reopen_parent(&dfd, parent.id)?);
                }
            }
            apply_meta_fd(&dir, &File::from(dfd)).map_err(|(op, e)| Error::io(op, x.path(None), e))?;
            x.names.pop();
            continue;
        };
        x.stats.entries += 1;
        if child.kind != Kind::Dir {
            x.entry(fd, &child)?;
            continue;
        }
        let sub = x.mkdir(fd, &child.name)?;
        let id = dev_ino(&sub).map_err(|e| Error::io("stat", x.path(Some(&child.name)), e))?;
        x.names.push(child.name.clone());
        stack.push(Level { entries: listing(store, &child)?.into_iter(), dir: child, fd: Some(sub), id });
        if stack.len() > OPEN_DIRS {
            let far = stack.len() - OPEN_DIRS - 1;
            // The destination's own descriptor stays: it is the way back in.
            if far > 0 {
                stack[far].fd = None;
            }
        }
    }
    x.stats.entries += 1;
    Ok(x.stats)
}

/// One directory on the way down.
struct Level {
    entries: std::vec::IntoIter<Entry>,
    dir: Entry,
    /// `None` once let go (see [`OPEN_DIRS`]).
    fd: Option<OwnedFd>,
    /// Device and inode, to recognise it when reopened through `..`.
    id: (u64, u64),
}

/// A directory's entries.
fn listing(store: &dyn ObjectStore, e: &Entry) -> Result<Vec<Entry>> {
    let Content::Tree(tid) = e.content else {
        return Err(Error::Decode { what: "tree", why: "directory without a listing" });
    };
    Ok(Tree::load(store, &tid)?.entries)
}

/// `name` in `dir` (never through a symlink), or the destination itself
/// (`dir` `None`: the path the user gave, symlinks followed).
fn open_at(dir: Option<RawFd>, name: &[u8], flags: OFlag) -> std::io::Result<OwnedFd> {
    let nofollow = if dir.is_some() { OFlag::O_NOFOLLOW } else { OFlag::empty() };
    let fd = nix::fcntl::openat(dir, OsStr::from_bytes(name), flags | OFlag::O_CLOEXEC | nofollow, Mode::from_bits_truncate(0o600))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn dev_ino(fd: &OwnedFd) -> std::io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    Ok((st.st_dev, st.st_ino))
}

struct Exporter<'a> {
    store: &'a dyn ObjectStore,
    dest: &'a Path,
    /// Names from `dest` down to the directory being filled.
    names: Vec<Vec<u8>>,
    /// First member of each hardlink set: its names from `dest`.
    links: HashMap<u64, Vec<Vec<u8>>>,
    stats: ExportStats,
    progress: &'a dyn Progress,
}

impl Exporter<'_> {
    /// The path shown in errors: the directory being filled, or `name` in it.
    fn path(&self, name: Option<&[u8]>) -> PathBuf {
        let mut p = self.dest.to_path_buf();
        for n in self.names.iter().map(Vec::as_slice).chain(name) {
            p.push(OsStr::from_bytes(n));
        }
        p
    }

    fn fail(&self, op: &'static str, name: &[u8], e: std::io::Error) -> Error {
        Error::io(op, self.path(Some(name)), e)
    }

    /// Directory `name` in `dir`, mode 0700 until its children are in, opened.
    fn mkdir(&self, dir: RawFd, name: &[u8]) -> Result<OwnedFd> {
        let err = |op, e: std::io::Error| Error::io(op, self.path(Some(name)), e);
        nix::sys::stat::mkdirat(Some(dir), OsStr::from_bytes(name), Mode::from_bits_truncate(0o700)).map_err(|e| err("creating", e.into()))?;
        let fd = open_at(Some(dir), name, OFlag::O_DIRECTORY).map_err(|e| err("opening", e))?;
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o700)).map_err(|e| err("chmod", e.into()))?;
        Ok(fd)
    }

    /// The parent of directory `fd`, which must be the directory `id`.
    fn reopen_parent(&self, fd: &OwnedFd, id: (u64, u64)) -> Result<OwnedFd> {
        let err = |e: std::io::Error| Error::io("reopening", self.path(None), e);
        let up = open_at(Some(fd.as_raw_fd()), b"..", OFlag::O_DIRECTORY).map_err(err)?;
        if dev_ino(&up).map_err(err)? != id {
            return Err(err(std::io::Error::other("the destination was moved while being exported")));
        }
        Ok(up)
    }

    /// A non-directory entry in `dir`, with its metadata.
    fn entry(&mut self, dir: RawFd, e: &Entry) -> Result<()> {
        let name = OsStr::from_bytes(&e.name);
        if e.link != 0 {
            if let Some(first) = self.links.get(&e.link) {
                return self.hard_link(first, dir, &e.name);
            }
            let mut names = self.names.clone();
            names.push(e.name.clone());
            self.links.insert(e.link, names);
        }
        match e.kind {
            Kind::Dir => return Err(Error::Decode { what: "tree", why: "directory exported as a file" }),
            Kind::File => {
                let fd = open_at(Some(dir), &e.name, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL).map_err(|er| self.fail("creating", &e.name, er))?;
                let f = File::from(fd);
                self.file(e, &f)?;
                return apply_meta_fd(e, &f).map_err(|(op, er)| self.fail(op, &e.name, er));
            }
            Kind::Symlink => nix::unistd::symlinkat(OsStr::from_bytes(&e.target), Some(dir), name).map_err(|er| self.fail("creating symlink", &e.name, er.into()))?,
            Kind::CharDev | Kind::BlockDev | Kind::Fifo | Kind::Socket => {
                let kind = SFlag::from_bits_truncate(e.kind.mode_bits());
                nix::sys::stat::mknodat(Some(dir), name, kind, Mode::from_bits_truncate(0o600), e.rdev as libc::dev_t).map_err(|er| self.fail("mknod", &e.name, er.into()))?;
            }
        }
        apply_meta_at(e, dir).map_err(|(op, er)| self.fail(op, &e.name, er))
    }

    /// Link `name` in `dir` to the first member of its set (at `first`, names
    /// from `dest`), whose directory is found again from `dest`.
    fn hard_link(&self, first: &[Vec<u8>], dir: RawFd, name: &[u8]) -> Result<()> {
        let err = |op, e: std::io::Error| Error::io(op, self.path(Some(name)), e);
        let Some((target, parents)) = first.split_last() else { return Err(err("linking", std::io::Error::other("empty link target"))) };
        let mut src = open_at(None, self.dest.as_os_str().as_bytes(), OFlag::O_DIRECTORY).map_err(|e| err("opening", e))?;
        for p in parents {
            src = open_at(Some(src.as_raw_fd()), p, OFlag::O_DIRECTORY).map_err(|e| err("opening", e))?;
        }
        nix::unistd::linkat(Some(src.as_raw_fd()), OsStr::from_bytes(target), Some(dir), OsStr::from_bytes(name), AtFlags::empty())
            .map_err(|e| err("linking", e.into()))
    }

    fn file(&mut self, e: &Entry, f: &File) -> Result<()> {
        for (off, len, chunk) in leaf_extents(self.store, &e.content, e.size)? {
            let data = get_required(self.store, ObjectKind::Chunk, &chunk.0)?;
            if data.len() as u64 != len {
                return Err(Error::Decode { what: "file index", why: "extent length differs from its chunk" });
            }
            f.write_all_at(&data, off).map_err(|er| Error::io("writing", self.path(Some(&e.name)), er))?;
            self.stats.bytes += len;
            self.progress.advance(len);
        }
        f.set_len(e.size).map_err(|er| Error::io("truncating", self.path(Some(&e.name)), er))
    }
}

/// A failed metadata step: what it was and why.
type MetaResult = std::result::Result<(), (&'static str, std::io::Error)>;

/// Owner, mode, xattrs, then times, on an open file or directory.
fn apply_meta_fd(e: &Entry, f: &File) -> MetaResult {
    let fd = f.as_raw_fd();
    nix::unistd::fchown(fd, Some(e.uid.into()), Some(e.gid.into())).map_err(|er| ("chown", er.into()))?;
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(e.mode)).map_err(|er| ("chmod", er.into()))?;
    for (k, v) in &e.xattrs {
        f.set_xattr(OsStr::from_bytes(k), v).map_err(|er| ("setting xattr on", er))?;
    }
    let t = TimeSpec::new(e.mtime.sec, e.mtime.nsec.into());
    nix::sys::stat::futimens(fd, &t, &t).map_err(|er| ("setting times on", er.into()))
}

/// Owner, mode (not on symlinks), xattrs, then times, of entry `e` in
/// directory `dir`, without following symlinks. Linux has no `setxattrat`
/// before 6.13, and opening a device to reach it is not safe, so xattrs go
/// through the directory's descriptor in /proc (a short path at any depth).
fn apply_meta_at(e: &Entry, dir: RawFd) -> MetaResult {
    let name = OsStr::from_bytes(&e.name);
    nix::unistd::fchownat(Some(dir), name, Some(e.uid.into()), Some(e.gid.into()), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|er| ("chown", er.into()))?;
    if e.kind != Kind::Symlink {
        nix::sys::stat::fchmodat(Some(dir), name, Mode::from_bits_truncate(e.mode), FchmodatFlags::FollowSymlink).map_err(|er| ("chmod", er.into()))?;
    }
    if !e.xattrs.is_empty() {
        let p = Path::new("/proc/self/fd").join(dir.to_string()).join(name);
        for (k, v) in &e.xattrs {
            xattr::set(&p, OsStr::from_bytes(k), v).map_err(|er| ("setting xattr on", er))?;
        }
    }
    let t = TimeSpec::new(e.mtime.sec, e.mtime.nsec.into());
    nix::sys::stat::utimensat(Some(dir), name, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(|er| ("setting times on", er.into()))
}

//! Export to a local directory: create every entry, then apply metadata in the
//! order the kernel requires (owner before mode, because chown clears setuid
//! and capabilities; xattrs after both; times last, directories after their
//! children).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::ExportStats;
use crate::digest::{ObjectKind, TreeId};
use crate::error::{Error, Result};
use crate::import::Progress;
use crate::object::{get_required, ObjectStore};
use crate::tree::file::leaf_extents;
use crate::import::dir::check_path_len;
use crate::tree::{load_root, Content, Entry, Kind, Tree};

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
    let mut x = Exporter { store, links: HashMap::new(), stats: ExportStats::default(), progress };
    // Depth-first with the open listings on an explicit stack (no recursion:
    // depth is whatever the image has); one path, a component per level.
    let mut path = dest.to_path_buf();
    let mut stack = vec![(listing(store, &root_entry)?.into_iter(), root_entry)];
    while let Some((entries, _)) = stack.last_mut() {
        let Some(child) = entries.next() else {
            // Its children are done: the directory's own metadata, last.
            if let Some((_, dir)) = stack.pop() {
                apply_meta(&dir, &path)?;
            }
            if !stack.is_empty() {
                path.pop();
            }
            continue;
        };
        path.push(OsStr::from_bytes(&child.name));
        check_path_len(&path, TOO_LONG)?;
        x.stats.entries += 1;
        if child.kind == Kind::Dir {
            x.mkdir(&path)?;
            stack.push((listing(store, &child)?.into_iter(), child));
        } else {
            x.entry(&child, &path)?;
            path.pop();
        }
    }
    x.stats.entries += 1;
    Ok(x.stats)
}

const TOO_LONG: &str = "path longer than PATH_MAX (4096 bytes): export a tree this deep as a tar stream (lvrepo export IMAGE - | tar -C DIR -xf -)";

/// A directory's entries.
fn listing(store: &dyn ObjectStore, e: &Entry) -> Result<Vec<Entry>> {
    let Content::Tree(tid) = e.content else {
        return Err(Error::Decode { what: "tree", why: "directory without a listing" });
    };
    Ok(Tree::load(store, &tid)?.entries)
}

struct Exporter<'a> {
    store: &'a dyn ObjectStore,
    links: HashMap<u64, PathBuf>,
    stats: ExportStats,
    progress: &'a dyn Progress,
}

impl Exporter<'_> {
    /// A directory, mode 0700 until its children are in (then `apply_meta`).
    fn mkdir(&mut self, p: &Path) -> Result<()> {
        std::fs::create_dir(p).map_err(|er| Error::io("creating", p, er))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).map_err(|er| Error::io("chmod", p, er))
    }

    /// A non-directory entry, with its metadata.
    fn entry(&mut self, e: &Entry, p: &Path) -> Result<()> {
        if e.kind != Kind::Dir && e.link != 0 {
            if let Some(first) = self.links.get(&e.link) {
                return std::fs::hard_link(first, p).map_err(|er| Error::io("linking", p, er));
            }
            self.links.insert(e.link, p.to_path_buf());
        }
        match e.kind {
            Kind::Dir => return Err(Error::Decode { what: "tree", why: "directory exported as a file" }),
            Kind::File => self.file(e, p)?,
            Kind::Symlink => std::os::unix::fs::symlink(OsStr::from_bytes(&e.target), p).map_err(|er| Error::io("creating symlink", p, er))?,
            Kind::CharDev | Kind::BlockDev | Kind::Fifo | Kind::Socket => {
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::NotSupported { path: p.display().to_string(), why: "NUL in path" })?;
                // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
                let rc = unsafe { libc::mknod(c.as_ptr(), e.kind.mode_bits() | 0o600, e.rdev as libc::dev_t) };
                if rc != 0 {
                    return Err(Error::io("mknod", p, std::io::Error::last_os_error()));
                }
            }
        }
        apply_meta(e, p)
    }

    fn file(&mut self, e: &Entry, p: &Path) -> Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)
            .map_err(|er| Error::io("creating", p, er))?;
        for (off, len, chunk) in leaf_extents(self.store, &e.content, e.size)? {
            let data = get_required(self.store, ObjectKind::Chunk, &chunk.0)?;
            if data.len() as u64 != len {
                return Err(Error::Decode { what: "file index", why: "extent length differs from its chunk" });
            }
            f.write_all_at(&data, off).map_err(|er| Error::io("writing", p, er))?;
            self.stats.bytes += len;
            self.progress.advance(len);
        }
        f.set_len(e.size).map_err(|er| Error::io("truncating", p, er))
    }
}

/// Owner, mode, xattrs, then times, without following symlinks.
pub(crate) fn apply_meta(e: &Entry, p: &Path) -> Result<()> {
    nix::unistd::fchownat(None, p, Some(e.uid.into()), Some(e.gid.into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|er| Error::io("chown", p, er.into()))?;
    if e.kind != Kind::Symlink {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(e.mode)).map_err(|er| Error::io("chmod", p, er))?;
    }
    for (k, v) in &e.xattrs {
        xattr::set(p, OsStr::from_bytes(k), v).map_err(|er| Error::io("setting xattr on", p, er))?;
    }
    let t = TimeSpec::new(e.mtime.sec, e.mtime.nsec.into());
    utimensat(None, p, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(|er| Error::io("setting times on", p, er.into()))?;
    Ok(())
}

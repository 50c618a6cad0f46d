//! Export to a tar stream: PAX headers carry nanosecond mtimes and every xattr
//! (`SCHILY.xattr.NAME`, the form GNU tar and bsdtar read). Hardlink sets become
//! link entries to the first member. Sockets cannot be represented in tar and
//! are skipped with a warning (as GNU tar does).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{ExportStats, FileReader};
use crate::digest::TreeId;
use crate::error::{Error, Result};
use crate::import::Progress;
use crate::object::ObjectStore;
use crate::tree::{load_root, Content, Entry, Kind, Tree};

pub fn export_tar(store: &dyn ObjectStore, root: &TreeId, out: impl Write, progress: &dyn Progress) -> Result<ExportStats> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let root_entry = load_root(store, root)?;
    let mut x = TarX { store, b, links: HashMap::new(), stats: ExportStats::default(), progress };
    x.entry(&root_entry, b"./")?;
    // Depth-first with the open listings on an explicit stack (no recursion:
    // depth is whatever the image has). A directory's path ends in '/', so a
    // child's path is its parent's plus its name.
    let mut path = Vec::new();
    let mut stack = vec![(listing(store, &root_entry)?.into_iter(), 0)];
    while let Some((entries, base)) = stack.last_mut() {
        let base = *base;
        let Some(child) = entries.next() else {
            stack.pop();
            continue;
        };
        path.truncate(base);
        path.extend_from_slice(&child.name);
        if child.kind == Kind::Dir {
            path.push(b'/');
        }
        x.entry(&child, &path)?;
        if child.kind == Kind::Dir {
            stack.push((listing(store, &child)?.into_iter(), path.len()));
        }
    }
    x.b.finish().map_err(Error::Archive)?;
    Ok(x.stats)
}

struct TarX<'a, W: Write> {
    store: &'a dyn ObjectStore,
    b: tar::Builder<W>,
    links: HashMap<u64, Vec<u8>>,
    stats: ExportStats,
    progress: &'a dyn Progress,
}

impl<W: Write> TarX<'_, W> {
    /// Append entry `e` (a directory's header only; its children follow).
    fn entry(&mut self, e: &Entry, path: &[u8]) -> Result<()> {
        let p = Path::new(OsStr::from_bytes(path));
        if e.kind == Kind::Socket {
            tracing::warn!(path = %p.display(), "tar cannot hold sockets; skipped");
            return Ok(());
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid.into());
        h.set_gid(e.gid.into());
        h.set_mtime(e.mtime.sec.max(0) as u64);
        h.set_size(0);
        let mut pax: Vec<(String, Vec<u8>)> = vec![("mtime".into(), pax_time(e.mtime).into_bytes())];
        for (k, v) in &e.xattrs {
            pax.push((format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)), v.clone()));
        }
        if e.xattrs.iter().any(|(k, _)| std::str::from_utf8(k).is_err()) {
            tracing::warn!(path = %p.display(), "xattr name is not UTF-8; tar cannot carry it exactly");
        }
        self.b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(Error::Archive)?;
        self.stats.entries += 1;
        let io = Error::Archive;
        match e.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                self.b.append_data(&mut h, p, std::io::empty()).map_err(io)?;
            }
            _ if e.link != 0 && self.links.contains_key(&e.link) => {
                let first = self.links[&e.link].clone();
                h.set_entry_type(tar::EntryType::Link);
                self.b.append_link(&mut h, p, Path::new(OsStr::from_bytes(&first))).map_err(io)?;
            }
            Kind::File => {
                if e.link != 0 {
                    self.links.insert(e.link, path.to_vec());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(e.size);
                let r = FileReader::new(self.store, e)?;
                self.b.append_data(&mut h, p, r).map_err(unwrap_store_error)?;
                self.stats.bytes += e.size;
                self.progress.advance(e.size);
            }
            Kind::Symlink => {
                if e.link != 0 {
                    self.links.insert(e.link, path.to_vec());
                }
                h.set_entry_type(tar::EntryType::Symlink);
                self.b.append_link(&mut h, p, Path::new(OsStr::from_bytes(&e.target))).map_err(io)?;
            }
            Kind::CharDev | Kind::BlockDev | Kind::Fifo => {
                if e.link != 0 {
                    self.links.insert(e.link, path.to_vec());
                }
                h.set_entry_type(match e.kind {
                    Kind::CharDev => tar::EntryType::Char,
                    Kind::BlockDev => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if e.kind != Kind::Fifo {
                    h.set_device_major(libc::major(e.rdev as libc::dev_t)).map_err(io)?;
                    h.set_device_minor(libc::minor(e.rdev as libc::dev_t)).map_err(io)?;
                }
                self.b.append_data(&mut h, p, std::io::empty()).map_err(io)?;
            }
            Kind::Socket => {}
        }
        Ok(())
    }
}

/// A directory's entries.
fn listing(store: &dyn ObjectStore, e: &Entry) -> Result<Vec<Entry>> {
    let Content::Tree(tid) = e.content else {
        return Err(Error::Decode { what: "tree", why: "directory without a listing" });
    };
    Ok(Tree::load(store, &tid)?.entries)
}

/// PAX time text for a timestamp: `-1.25` for 1.25 s before the epoch.
fn pax_time(t: crate::tree::Timestamp) -> String {
    if t.sec < 0 && t.nsec > 0 {
        format!("-{}.{:09}", -(t.sec + 1), 1_000_000_000 - t.nsec)
    } else {
        format!("{}.{:09}", t.sec, t.nsec)
    }
}

/// A store error raised inside `Read` comes back wrapped in an `io::Error`;
/// unwrap it so damage keeps its class (and exit code).
fn unwrap_store_error(e: std::io::Error) -> Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::Damaged { kind, id, why }) => Error::Damaged { kind: *kind, id: *id, why: *why },
        Some(Error::Missing { kind, id }) => Error::Missing { kind: *kind, id: *id },
        _ => Error::Archive(e),
    }
}

//! The overlay engine: an image tree (read-only, shared) merged with the
//! guest's changes (its overlay directory). FUSE and NBD fronts sit on top.
//!
//! Invariants:
//! - Nothing is copied up. A metadata change writes an [`Inode`] record; a write
//!   into an image file copies only the chunk-sized windows it touches into the
//!   overlay data file (`data/<ino>`), recorded in `windows`.
//! - Inode numbers are stable across remounts: the root is 1; an image entry's
//!   number is a hash of its image path (of its hardlink label for hardlinked
//!   files) with bit 62 set; inodes the guest creates count up from 2 below
//!   bit 62.
//! - Each namespace operation is a single atomic database batch.
//! - Local bytes are never served unverified: every 4 KiB block of a data
//!   file that holds data has a checksum (`sums`), checked on every read
//!   (see [`local`]); damage is EIO, never zeros.
//!
//! Layout of an overlay directory (format 3): `FORMAT`, `meta/` (RocksDB, see
//! [`db`]), `data/<ino as 16 hex digits>` (sparse files mirroring file
//! offsets; a small file the guest created has none, its bytes are inline in
//! the database).

pub(crate) mod acl;
mod adopt;
pub mod blockmap;
pub mod check;
mod blocks;
mod data;
mod local;
mod memo;
mod open;
mod prefetch;
mod readout;
mod seek;
mod zero;
mod space;
pub mod db;
pub mod ns;
pub mod path;
pub mod record;
pub mod sums;
mod trees;
mod upgrade;

pub use adopt::Adopted;
pub use path::ImagePath;
pub use readout::ReadOut;
pub use space::make_room;
pub use record::{Base, Dirent, Inode};

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::digest::{ChunkId, TreeId};
use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::tree::{Content, Entry, Kind, Timestamp, Tree};
use db::MetaDb;

pub const ROOT_INO: u64 = 1;
/// Free space kept on the overlay partition for metadata: data writes fail
/// with ENOSPC below it, so the database can always record what was written
/// and reopen after a crash.
pub const SPACE_RESERVE: u64 = 8 << 20;
/// Metadata changes that grow the overlay (a new name, an attribute, an
/// xattr) are refused with ENOSPC below this much free space: a part of
/// [`SPACE_RESERVE`], so they go on after data is refused, and the database
/// keeps the room it needs to flush, and to reopen after a failed write.
pub const META_RESERVE: u64 = db::REOPEN_ROOM;
const BASE_BIT: u64 = 1 << 62;
/// 2: small files the guest creates keep their bytes in the database
/// (`inline`); 3: data files carry block checksums (`sums`). Older
/// overlays are upgraded when opened. 4: a window record may hold only
/// some of its blocks (a mask; the rest read from the image).
pub const OVERLAY_FORMAT: u32 = 4;
/// Longest name accepted (as on ext4).
pub const NAME_MAX: usize = 255;

fn posix(e: i32) -> Error {
    Error::Posix(e)
}

pub(crate) use crate::error::chain as error_chain;

/// The inode number of an image entry at `path` (stable across mounts).
pub fn base_ino(path: &[u8], e: &Entry) -> u64 {
    // Hashed in two updates (the same digest as of the concatenation,
    // without allocating it: this runs for every entry listed).
    let mut h = blake3::Hasher::new();
    if e.link != 0 {
        h.update(b"link:").update(&e.link.to_le_bytes());
    } else {
        h.update(b"path:").update(path);
    }
    ino_of(h.finalize())
}

/// The inode number for a hash of an image entry's path or hardlink label.
fn ino_of(h: blake3::Hash) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) & (BASE_BIT - 1)) | BASE_BIT
}

pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp { sec: d.as_secs() as i64, nsec: d.subsec_nanos() }
}

/// In-memory state of an inode the kernel knows about.
pub(crate) struct Node {
    pub inode: Inode,
    /// The directory the kernel last reached this inode through (0: unknown).
    pub parent: u64,
    pub lookups: u64,
    pub opens: u32,
    pub file: Option<Arc<File>>,
    /// Recorded windows and the mask of their local blocks (see [`sums::Mask`]).
    pub windows: Option<HashMap<u64, sums::Mask>>,
    /// Block sums of the data file by window (see [`sums`]), loaded on first use.
    pub sums: Option<local::Sums>,
    pub extents: Option<Arc<Vec<(u64, u64, ChunkId)>>>,
    /// Where the last read of the image's bytes ended, and how far chunk
    /// read-ahead has queued (see `overlay::prefetch`); `reader` shares
    /// `read_end` with the read-ahead thread once reads are sequential.
    pub read_end: u64,
    pub ahead_to: u64,
    pub reader: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The last read was part of a stream (see `Overlay::read_ahead`).
    pub streaming: bool,
    /// Reads that were not part of a stream, and whether the whole file
    /// was queued for read-ahead because of them.
    pub random_reads: u32,
    pub whole_ahead: bool,
    /// A write of this engine committed the inode's record: it is in the
    /// database (a block write that changes nothing else need not write it
    /// again; see `Overlay::write_block`). False: not known.
    pub recorded: bool,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: Kind,
    /// The image's entry, unchanged by any dirent: while the directory
    /// generation the listing was taken at holds, `ino` is its number and the
    /// overlay has no entry of this name (see [`Overlay::lookup_listed`]).
    pub base: bool,
    /// Where a `base` entry is in its directory's image tree.
    pub pos: u32,
}

/// Hashes inode numbers for the node table: image entries' numbers are
/// BLAKE3-derived and the overlay's are sequential, and one multiply spreads
/// both (SipHash was measurable on a cold `ls -lR`).
#[derive(Clone, Copy, Default)]
pub(crate) struct InoHasher(u64);

impl std::hash::Hasher for InoHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) struct State {
    /// Boxed: a node is a few hundred bytes, and the table of a large image
    /// holds 100k+ of them; growing it then moves pointers, not nodes.
    pub nodes: HashMap<u64, Box<Node>, std::hash::BuildHasherDefault<InoHasher>>,
    pub next_ino: u64,
    /// Directories whose subtree differs from the base tree (persisted as
    /// `meta` keys `dirty/<ino>`); every ancestor of a dirty directory is dirty.
    /// A checkpoint's fold walks only these and reuses the rest of the base.
    pub dirty: HashSet<u64>,
    /// Set when a change could not be attributed to its directories (a
    /// hardlinked file has several parents): the fold then walks everything.
    pub dirty_all: bool,
    /// What the last mounted checkpoint folded, by inode (persisted as `meta`
    /// keys `memo/<ino>`), so the next fold redoes only what changed since:
    /// a directory's listing tree (valid while the directory is not dirty:
    /// a checkpoint clears `dirty`), a file's content and hardlink label
    /// (dropped by any change to the file; a change to a hardlinked file's
    /// links also sets `dirty_all`, so the next fold sees every link). The objects are in the guest's store, reachable from
    /// its newest checkpoint.
    pub memo: HashMap<u64, db::Folded>,
    /// Bumped by every change to any directory's entries: a listing taken at
    /// one generation is current while the generation is unchanged.
    pub dir_gen: u64,
    /// Inodes whose overlay data file the node table holds open, oldest
    /// first (entries may be stale); see [`OPEN_DATA_FILES`].
    pub fds: VecDeque<u64>,
}

/// At most this many overlay data files stay open between requests. Files
/// are not opened through the daemon (see `fuse::LvFs::open`), so it cannot
/// tell which ones a process holds; it keeps the descriptors it used last.
pub(crate) const OPEN_DATA_FILES: usize = 256;

pub struct Overlay {
    dir: PathBuf,
    /// The guest this overlay belongs to (empty for a plain overlay), for logs.
    guest: String,
    pub(crate) db: MetaDb,
    pub(crate) store: Arc<dyn ObjectStore>,
    root: TreeId,
    pub(crate) state: Mutex<State>,
    trees: trees::Trees,
    prefetch: prefetch::Prefetch,
    /// Free bytes on the overlay partition at the last statfs, less what was
    /// written since: statfs runs again only when this nears the reserve.
    free: Mutex<u64>,
}

impl Overlay {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Name the guest this overlay belongs to (in its log lines).
    pub fn for_guest(mut self, name: &str) -> Self {
        self.guest = name.to_string();
        self
    }

    pub fn root(&self) -> TreeId {
        self.root
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn data_path(&self, ino: u64) -> PathBuf {
        self.dir.join("data").join(format!("{ino:016x}"))
    }

    /// Purge every inode that was unlinked while the kernel held it: at
    /// mount (after a crash) and at unmount (FORGETs still in flight when
    /// the kernel ends the session never arrive).
    pub fn purge_orphans(&self) -> Result<()> {
        for ino in self.db.orphans()? {
            self.purge(ino)?;
            tracing::info!(ino, "purged an inode unlinked while the kernel held it");
        }
        Ok(())
    }

    /// A decoded image tree, cached (trees are immutable).
    pub(crate) fn tree(&self, id: &TreeId) -> Result<Arc<Tree>> {
        self.trees.get(id)
    }

    /// An inode as the image describes it (no overlay changes).
    pub(crate) fn from_entry(&self, e: &Entry, path: ImagePath) -> Result<Inode> {
        let (nlink, base) = match (&e.kind, &e.content) {
            (Kind::Dir, Content::Tree(tid)) => {
                let t = self.tree(tid)?;
                // A walk that reached this directory goes on into its
                // subdirectories: have their trees ready.
                self.trees.read_ahead(&t);
                let subdirs = t.entries.iter().filter(|c| c.kind == Kind::Dir).count() as u32;
                (2 + subdirs, Base::Dir { tree: *tid, path })
            }
            (Kind::File, c) => (e.links.max(1), Base::File { content: *c, limit: e.size }),
            _ => (1, Base::None),
        };
        Ok(Inode {
            kind: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            atime: e.mtime,
            mtime: e.mtime,
            ctime: e.mtime,
            size: if e.kind == Kind::Symlink { e.target.len() as u64 } else { e.size },
            rdev: e.rdev,
            nlink,
            xattrs: e.xattrs.clone(),
            target: e.target.clone(),
            base,
        })
    }

    /// The current inode `ino` (which the kernel has looked up).
    pub fn getattr(&self, ino: u64) -> Result<Inode> {
        let mut st = self.lock();
        self.node(&mut st, ino).map(|n| n.inode.clone())
    }

    pub(crate) fn node<'a>(&self, st: &'a mut State, ino: u64) -> Result<&'a mut Node> {
        // One probe of the table (every request starts here).
        match st.nodes.entry(ino) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(&mut **e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                // Not an inode of this generation: the kernel holds it from
                // before a rollback of the mounted guest (see `adopt`).
                let inode = self.db.inode(ino)?.ok_or_else(|| posix(libc::ESTALE))?;
                Ok(&mut **v.insert(Box::new(Node::new(inode, 0))))
            }
        }
    }

    /// Resolve `name` in directory `parent` without touching lookup counts.
    pub(crate) fn resolve(&self, st: &mut State, parent: u64, name: &[u8]) -> Result<Option<(u64, Inode)>> {
        if name.len() > NAME_MAX {
            return Err(posix(libc::ENAMETOOLONG));
        }
        // Only the parent's tree and path are needed (the path is shared,
        // not copied: see `path`).
        let (tree, ppath) = {
            let p = &self.node(st, parent)?.inode;
            if p.kind != Kind::Dir {
                return Err(posix(libc::ENOTDIR));
            }
            match &p.base {
                Base::Dir { tree, path } => (Some(*tree), Some(path.clone())),
                _ => (None, None),
            }
        };
        match self.db.dirent(parent, name)? {
            Some(Dirent::Whiteout) => return Ok(None),
            Some(Dirent::Child { ino, .. }) => {
                let n = self.node(st, ino)?;
                n.parent = parent;
                return Ok(Some((ino, n.inode.clone())));
            }
            None => {}
        }
        let (Some(tree), Some(ppath)) = (tree, ppath) else { return Ok(None) };
        let t = self.tree(&tree)?;
        let Some(e) = t.get(name) else { return Ok(None) };
        let ino = ppath.child_ino(name, e);
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.parent = parent;
            return Ok(Some((ino, n.inode.clone())));
        }
        let inode = match self.db.inode(ino)? {
            Some(i) => i,
            None => self.from_entry(e, ppath.child(name))?,
        };
        let mut n = Box::new(Node::new(inode.clone(), 0));
        n.parent = parent;
        st.nodes.insert(ino, n);
        Ok(Some((ino, inode)))
    }

    /// Look up `name` in `parent`, counting a kernel reference.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<(u64, Inode)> {
        let mut st = self.lock();
        let (ino, inode) = self.resolve(&mut st, parent, name)?.ok_or_else(|| posix(libc::ENOENT))?;
        self.node(&mut st, ino)?.lookups += 1;
        Ok((ino, inode))
    }

    /// Look up entry `l` of a listing of `parent` taken at directory
    /// generation `gen`, counting a kernel reference, and read its inode
    /// in place with `f` (no copy of its xattrs, target or path). While the
    /// generation holds, an image entry needs neither the overlay's dirent
    /// table nor its number derived again: the listing has both answers.
    /// Otherwise (or for an overlay entry) it is an ordinary lookup.
    pub fn lookup_listed<R>(&self, parent: u64, l: &Listed, gen: u64, f: impl FnOnce(u64, &Inode) -> R) -> Result<(u64, R)> {
        let mut st = self.lock();
        if !l.base || st.dir_gen != gen {
            let (ino, _) = self.resolve(&mut st, parent, &l.name)?.ok_or_else(|| posix(libc::ENOENT))?;
            let n = self.node(&mut st, ino)?;
            n.lookups += 1;
            return Ok((ino, f(ino, &n.inode)));
        }
        if let Some(n) = st.nodes.get_mut(&l.ino) {
            n.parent = parent;
            n.lookups += 1;
            return Ok((l.ino, f(l.ino, &n.inode)));
        }
        let inode = match self.db.inode(l.ino)? {
            Some(i) => i,
            None => {
                let (tree, cpath) = match &self.node(&mut st, parent)?.inode.base {
                    Base::Dir { tree, path } => (*tree, path.child(&l.name)),
                    // A listing of image entries came from an image directory.
                    _ => return Err(posix(libc::ESTALE)),
                };
                let t = self.tree(&tree)?;
                let e = match t.entries.get(l.pos as usize) {
                    Some(e) if e.name == l.name => e,
                    _ => t.get(&l.name).ok_or_else(|| posix(libc::ESTALE))?,
                };
                self.from_entry(e, cpath)?
            }
        };
        let r = f(l.ino, &inode);
        let mut n = Box::new(Node::new(inode, 1));
        n.parent = parent;
        st.nodes.insert(l.ino, n);
        Ok((l.ino, r))
    }

    /// The kernel dropped `n` references to `ino`. The last reference to an
    /// unlinked inode is its last close: the inode goes then.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut st = self.lock();
        if let Some(node) = st.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        if let Err(e) = self.let_go(&mut st, ino) {
            // Still marked an orphan: the next mount purges it.
            tracing::error!(ino, error = %e, "purging an unlinked inode failed");
        }
    }

    /// After a lookup or open count of `ino` went down: once the kernel
    /// holds it no more, drop its node, and purge it if it was unlinked
    /// (an unlinked directory was deleted at once, see `drop_link`).
    pub(crate) fn let_go(&self, st: &mut State, ino: u64) -> Result<()> {
        let Some(node) = st.nodes.get(&ino) else { return Ok(()) };
        if node.held() || ino == ROOT_INO {
            return Ok(());
        }
        let orphan = node.inode.nlink == 0 && node.inode.kind != Kind::Dir;
        st.nodes.remove(&ino);
        if orphan {
            self.purge(ino)?;
        }
        Ok(())
    }

    /// Delete an unlinked inode nobody holds: its records, then its data.
    pub(crate) fn purge(&self, ino: u64) -> Result<()> {
        let mut b = self.db.batch();
        self.db.delete_inode(&mut b, ino)?;
        self.db.commit(b)?;
        self.drop_data(ino);
        Ok(())
    }

    /// After the batch that deleted inode `ino` committed: its data goes.
    pub(crate) fn drop_data(&self, ino: u64) {
        if let Err(e) = std::fs::remove_file(self.data_path(ino)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(ino, error = %e, "removing an overlay data file failed");
            }
        }
    }

    /// The merged listing of directory `ino`, sorted by name, with the
    /// directory generation it was taken at (see [`dir_gen`](Self::dir_gen)).
    pub fn list_gen(&self, ino: u64) -> Result<(u64, Vec<Listed>)> {
        let mut st = self.lock();
        let list = self.list_locked(&mut st, ino)?;
        Ok((st.dir_gen, list))
    }

    /// The directory generation: unchanged as long as no entry of any
    /// directory was added, removed or replaced.
    pub fn dir_gen(&self) -> u64 {
        self.lock().dir_gen
    }

    /// The image's entries of directory `ino` merged with the overlay's
    /// dirents (which replace or hide image entries of the same name). Both
    /// come sorted by name, so one pass merges them.
    pub(crate) fn list_locked(&self, st: &mut State, ino: u64) -> Result<Vec<Listed>> {
        let (tree, dpath) = {
            let d = &self.node(st, ino)?.inode;
            if d.kind != Kind::Dir {
                return Err(posix(libc::ENOTDIR));
            }
            match &d.base {
                Base::Dir { tree, path } => (Some(*tree), Some(path.clone())),
                _ => (None, None),
            }
        };
        let t = tree.map(|t| self.tree(&t)).transpose()?;
        let base: &[Entry] = t.as_ref().map_or(&[], |t| &t.entries);
        let dirents = self.db.dirents(ino)?;
        let mut out = Vec::with_capacity(base.len() + dirents.len());
        let dpath = dpath.unwrap_or_else(|| ImagePath::new(b""));
        let listed_base = |(pos, e): (usize, &Entry)| Listed { name: e.name.clone(), ino: dpath.child_ino(&e.name, e), kind: e.kind, base: true, pos: pos as u32 };
        let mut bi = base.iter().enumerate().peekable();
        for (name, de) in dirents {
            while let Some(e) = bi.next_if(|(_, e)| e.name < name) {
                out.push(listed_base(e));
            }
            // An overlay record of the same name replaces the image entry.
            bi.next_if(|(_, e)| e.name == name);
            if let Dirent::Child { ino, kind } = de {
                out.push(Listed { name, ino, kind, base: false, pos: 0 });
            }
        }
        out.extend(bi.map(listed_base));
        Ok(out)
    }

    /// Make everything written so far durable: syncfs of the overlay's
    /// partition (every data file, open or not), then the metadata WAL.
    pub fn sync_all(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        let d = File::open(&self.dir).map_err(|e| Error::io("opening", &self.dir, e))?;
        // SAFETY: syncfs on a descriptor we own; no memory is passed.
        if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
            return Err(Error::io("syncing", &self.dir, std::io::Error::last_os_error()));
        }
        self.db.sync()
    }
}

impl Node {
    pub(crate) fn new(inode: Inode, lookups: u64) -> Self {
        Node { inode, parent: 0, lookups, opens: 0, file: None, windows: None, sums: None, extents: None, read_end: 0, ahead_to: 0, reader: None, streaming: false, random_reads: 0, whole_ahead: false, recorded: false }
    }

    /// Whether the kernel holds this inode: looked up, or open through a
    /// handle the daemon gave out. An open file is always looked up (its
    /// dentry pins the kernel's inode), so an unlinked file is closed for
    /// good when this turns false.
    pub(crate) fn held(&self) -> bool {
        self.lookups > 0 || self.opens > 0
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod sums_tests;

//! Trees: the canonical, content-addressed encoding of a directory listing with
//! full POSIX metadata.
//!
//! A directory's own attributes live in its parent's entry (as in git); an
//! image's root directory is described by a *root tree*, a tree with exactly one
//! entry whose name is empty. So one [`TreeId`] names a whole filesystem,
//! including the root's mode, owner, times and xattrs.
//!
//! Invariants checked on decode, so every tree has exactly one encoding: entries
//! strictly sorted by name bytes; names non-empty (except a root tree's one
//! entry), without `/` or NUL, not `.` or `..`; xattrs strictly sorted by name;
//! content consistent with kind; canonical varints.
//!
//! Hardlinks: files of one hardlink set carry the same non-zero `link` value, a
//! stable hash of the smallest path of the set, so adding an unrelated hardlink
//! elsewhere does not renumber (and re-hash) every other set.

pub mod codec;
pub mod file;

use codec::{put_bytes, put_iv, put_uv, Reader};

use crate::digest::{ChunkId, Digest, FileId, ObjectKind, TreeId};
use crate::error::{Error, Result};
use crate::object::{get_required, put_object, ObjectStore};

const TREE_MAGIC: &[u8; 4] = b"LVT1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Dir = 1,
    File = 2,
    Symlink = 3,
    CharDev = 4,
    BlockDev = 5,
    Fifo = 6,
    Socket = 7,
}

impl Kind {
    /// The kind with this on-disk tag (`Kind as u8`).
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Kind::Dir,
            2 => Kind::File,
            3 => Kind::Symlink,
            4 => Kind::CharDev,
            5 => Kind::BlockDev,
            6 => Kind::Fifo,
            7 => Kind::Socket,
            _ => return None,
        })
    }

    /// The kind named by an `st_mode`'s file-type bits.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => return None,
        })
    }

    /// The `S_IF*` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            Kind::Dir => libc::S_IFDIR,
            Kind::File => libc::S_IFREG,
            Kind::Symlink => libc::S_IFLNK,
            Kind::CharDev => libc::S_IFCHR,
            Kind::BlockDev => libc::S_IFBLK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
        }
    }

    /// The `ls -l` type letter.
    pub fn letter(self) -> char {
        match self {
            Kind::Dir => 'd',
            Kind::File => '-',
            Kind::Symlink => 'l',
            Kind::CharDev => 'c',
            Kind::BlockDev => 'b',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
        }
    }
}

/// Where an entry's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Content {
    /// No data: empty or all-hole files, and every non-file, non-directory kind.
    None,
    /// A directory's listing.
    Tree(TreeId),
    /// A file that is exactly one chunk from offset 0 with no holes.
    Chunk(ChunkId),
    /// Any other file: an extent index.
    File(FileId),
}

/// A timestamp with nanoseconds, exactly as the kernel keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    /// Logical size of a regular file (holes included); 0 for other kinds.
    pub size: u64,
    /// Device number of character and block devices.
    pub rdev: u64,
    /// Hardlink set label; 0 when the file is not part of a set.
    pub link: u64,
    /// Number of names in the hardlink set (0 when `link` is 0).
    pub links: u32,
    /// Every extended attribute, sorted by name (POSIX ACLs are
    /// `system.posix_acl_*`, capabilities `security.capability`).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Symlink target bytes.
    pub target: Vec<u8>,
    pub content: Content,
}

impl Entry {
    /// A new entry with empty metadata of `kind`.
    pub fn new(name: Vec<u8>, kind: Kind) -> Self {
        Entry {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: Timestamp::default(),
            size: 0,
            rdev: 0,
            link: 0,
            links: 0,
            xattrs: Vec::new(),
            target: Vec::new(),
            content: Content::None,
        }
    }

    /// Same bytes (or, for directories, the same listing) and same kind.
    pub fn same_data(&self, o: &Entry) -> bool {
        self.kind == o.kind && self.content == o.content && self.size == o.size && self.target == o.target && self.rdev == o.rdev
    }

    /// Same attributes (mode, owner, time, xattrs, hardlink set).
    pub fn same_meta(&self, o: &Entry) -> bool {
        self.mode == o.mode && self.uid == o.uid && self.gid == o.gid && self.mtime == o.mtime && self.xattrs == o.xattrs && self.link == o.link && self.links == o.links
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.name);
        out.push(self.kind as u8);
        put_uv(out, self.mode.into());
        put_uv(out, self.uid.into());
        put_uv(out, self.gid.into());
        put_iv(out, self.mtime.sec);
        put_uv(out, self.mtime.nsec.into());
        put_uv(out, self.size);
        put_uv(out, self.rdev);
        put_uv(out, self.link);
        put_uv(out, self.links.into());
        put_uv(out, self.xattrs.len() as u64);
        for (k, v) in &self.xattrs {
            put_bytes(out, k);
            put_bytes(out, v);
        }
        put_bytes(out, &self.target);
        match &self.content {
            Content::None => out.push(0),
            Content::Tree(id) => {
                out.push(1);
                out.extend_from_slice(id.0.as_bytes());
            }
            Content::Chunk(id) => {
                out.push(2);
                out.extend_from_slice(id.0.as_bytes());
            }
            Content::File(id) => {
                out.push(3);
                out.extend_from_slice(id.0.as_bytes());
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let name = r.bytes()?.to_vec();
        let kind = Kind::from_u8(r.u8()?).ok_or_else(|| r.err("unknown kind"))?;
        let mode = r.u32v()?;
        if mode > 0o7777 {
            return Err(r.err("mode has file-type bits"));
        }
        let uid = r.u32v()?;
        let gid = r.u32v()?;
        let sec = r.iv()?;
        let nsec = r.u32v()?;
        if nsec >= 1_000_000_000 {
            return Err(r.err("nanoseconds out of range"));
        }
        let size = r.uv()?;
        let rdev = r.uv()?;
        let link = r.uv()?;
        let links = r.u32v()?;
        if (link == 0) != (links == 0) {
            return Err(r.err("hardlink label and count disagree"));
        }
        let nx = r.uv()?;
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for _ in 0..nx {
            let k = r.bytes()?.to_vec();
            let v = r.bytes()?.to_vec();
            if xattrs.last().is_some_and(|(p, _)| *p >= k) {
                return Err(r.err("xattrs not strictly sorted"));
            }
            xattrs.push((k, v));
        }
        let target = r.bytes()?.to_vec();
        let digest = |r: &mut Reader<'_>| -> Result<Digest> {
            Digest::from_slice(r.take(32)?).map_err(|_| r.err("bad digest"))
        };
        let content = match r.u8()? {
            0 => Content::None,
            1 => Content::Tree(TreeId(digest(r)?)),
            2 => Content::Chunk(ChunkId(digest(r)?)),
            3 => Content::File(FileId(digest(r)?)),
            _ => return Err(r.err("unknown content tag")),
        };
        let ok = match kind {
            Kind::Dir => matches!(content, Content::Tree(_)),
            Kind::File => !matches!(content, Content::Tree(_)),
            _ => content == Content::None,
        };
        if !ok {
            return Err(r.err("content does not match kind"));
        }
        Ok(Entry { name, kind, mode, uid, gid, mtime: Timestamp { sec, nsec }, size, rdev, link, links, xattrs, target, content })
    }
}

/// Whether `name` may appear in a directory (not empty, `.`, `..`, no `/` or NUL).
pub fn valid_name(name: &[u8]) -> bool {
    // `contains` on bytes is a memchr: a tree load checks every name.
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// A decoded directory listing.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tree {
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Canonical bytes. Entries must already be sorted (see [`Tree::sort`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 96);
        out.extend_from_slice(TREE_MAGIC);
        put_uv(&mut out, self.entries.len() as u64);
        for e in &self.entries {
            e.encode(&mut out);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "tree");
        if r.take(4)? != TREE_MAGIC {
            return Err(r.err("bad magic"));
        }
        let n = r.uv()?;
        let mut entries: Vec<Entry> = Vec::with_capacity(n.min(1 << 16) as usize);
        for _ in 0..n {
            let e = Entry::decode(&mut r)?;
            let root = n == 1 && e.name.is_empty() && e.kind == Kind::Dir;
            if !root && !valid_name(&e.name) {
                return Err(r.err("invalid entry name"));
            }
            if entries.last().is_some_and(|p| p.name >= e.name) {
                return Err(r.err("entries not strictly sorted"));
            }
            entries.push(e);
        }
        if !r.done() {
            return Err(r.err("trailing bytes"));
        }
        Ok(Tree { entries })
    }

    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in &mut self.entries {
            e.xattrs.sort();
        }
    }

    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.name.as_slice().cmp(name)).ok().map(|i| &self.entries[i])
    }

    /// Store this tree; returns its id.
    pub fn store(&self, store: &dyn ObjectStore) -> Result<TreeId> {
        Ok(TreeId(put_object(store, ObjectKind::Tree, &self.encode())?))
    }

    pub fn load(store: &dyn ObjectStore, id: &TreeId) -> Result<Self> {
        Tree::decode(&get_required(store, ObjectKind::Tree, &id.0)?)
    }
}

/// Store a root tree describing directory `root` (whose name is ignored).
pub fn store_root(store: &dyn ObjectStore, mut root: Entry) -> Result<TreeId> {
    root.name.clear();
    Tree { entries: vec![root] }.store(store)
}

/// Load a root tree's single directory entry.
pub fn load_root(store: &dyn ObjectStore, id: &TreeId) -> Result<Entry> {
    let mut t = Tree::load(store, id)?;
    match (t.entries.len(), t.entries.first()) {
        (1, Some(e)) if e.name.is_empty() && e.kind == Kind::Dir => Ok(t.entries.remove(0)),
        _ => Err(Error::Decode { what: "root tree", why: "not a single unnamed directory" }),
    }
}

/// Look up a `/`-separated path (bytes) below a root tree. `Ok(None)` when a
/// component does not exist or a non-directory is traversed.
pub fn lookup(store: &dyn ObjectStore, root: &TreeId, path: &[u8]) -> Result<Option<Entry>> {
    let mut cur = load_root(store, root)?;
    for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".") {
        let Content::Tree(tid) = cur.content else { return Ok(None) };
        let tree = Tree::load(store, &tid)?;
        match tree.get(comp) {
            Some(e) => cur = e.clone(),
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

#[cfg(test)]
mod tests;

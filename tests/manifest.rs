//! A full-metadata manifest of a directory tree, used to prove that an
//! import → export round trip loses nothing.
//!
//! Why our own walker: `diff -r` and friends ignore exactly the things a
//! golden-image store gets wrong (xattrs, ACLs, capabilities, hardlinks,
//! device numbers, holes, nanosecond mtimes of dirs and symlinks). Paths are
//! raw bytes because Linux names are bytes, not UTF-8.
//!
//! Deliberately excluded: atime, ctime, inode and device numbers (they can
//! never survive a copy). Hardlinks are instead expressed as a *group label*
//! that does survive: the smallest path of the group.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The kind of a filesystem node (lstat's file type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

/// Everything about one path that a faithful copy must preserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    /// Size in bytes, regular files only.
    pub size: Option<u64>,
    /// (major, minor), char and block devices only.
    pub rdev: Option<(u32, u32)>,
    /// Raw symlink target, symlinks only.
    pub target: Option<Vec<u8>>,
    /// BLAKE3 of the content, regular files only.
    pub hash: Option<blake3::Hash>,
    /// Every extended attribute in every namespace, name → raw value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Data ranges `(start, end)` from SEEK_DATA/SEEK_HOLE, regular files only.
    pub data_map: Option<Vec<(u64, u64)>>,
    /// For non-directories with nlink > 1: the smallest path (within this
    /// manifest) sharing the same inode. `None` when nlink == 1.
    pub link_group: Option<Vec<u8>>,
}

/// All entries of a tree keyed by relative path bytes; the root is `b""`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: BTreeMap<Vec<u8>, Entry>,
}

impl Manifest {
    /// Entry at a relative path (bytes, no leading slash).
    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<&Entry> {
        self.entries.get(path.as_ref())
    }

    /// Sum of regular file sizes, counting each hardlinked inode once.
    pub fn logical_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|(p, e)| e.link_group.as_ref().is_none_or(|g| g == *p))
            .filter_map(|(_, e)| e.size)
            .sum()
    }
}

/// Fields [`compare`] may be told to skip.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompareOpts {
    /// Ignore the sparse data map (e.g. tar export cannot always carry holes).
    pub ignore_sparse: bool,
    /// Ignore the mtime of the root entry (`""`).
    pub ignore_root_mtime: bool,
    /// Ignore the mode/uid/gid of the root entry (a pre-existing DEST dir).
    pub ignore_root_owner_mode: bool,
}

/// Walk `root` without following symlinks and record every path's metadata.
pub fn manifest(root: &Path) -> io::Result<Manifest> {
    let mut entries = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut linked: Vec<(Vec<u8>, (u64, u64))> = Vec::new();
    walk(root, Vec::new(), &mut entries, &mut inodes, &mut linked)?;
    for (path, key) in linked {
        let group = inodes[&key].clone();
        if let Some(e) = entries.get_mut(&path) {
            e.link_group = Some(group);
        }
    }
    Ok(Manifest { entries })
}

fn walk(
    abs: &Path,
    rel: Vec<u8>,
    out: &mut BTreeMap<Vec<u8>, Entry>,
    inodes: &mut HashMap<(u64, u64), Vec<u8>>,
    linked: &mut Vec<(Vec<u8>, (u64, u64))>,
) -> io::Result<()> {
    let md = fs::symlink_metadata(abs)?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDev
    } else if ft.is_block_device() {
        Kind::BlockDev
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        return Err(io::Error::other(format!("unknown file type at {}", abs.display())));
    };
    let mut e = Entry {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime_sec: md.mtime(),
        mtime_nsec: md.mtime_nsec(),
        size: None,
        rdev: None,
        target: None,
        hash: None,
        xattrs: read_xattrs(abs)?,
        data_map: None,
        link_group: None,
    };
    match kind {
        Kind::File => {
            e.size = Some(md.len());
            let (hash, map) = hash_and_map(abs, md.len())?;
            e.hash = Some(hash);
            e.data_map = Some(map);
        }
        Kind::Symlink => e.target = Some(fs::read_link(abs)?.as_os_str().as_bytes().to_vec()),
        Kind::CharDev | Kind::BlockDev => {
            let r = md.rdev();
            e.rdev = Some((libc::major(r), libc::minor(r)));
        }
        _ => {}
    }
    if kind != Kind::Dir && md.nlink() > 1 {
        let key = (md.dev(), md.ino());
        let g = inodes.entry(key).or_insert_with(|| rel.clone());
        if rel < *g {
            *g = rel.clone();
        }
        linked.push((rel.clone(), key));
    }
    out.insert(rel.clone(), e);
    if kind == Kind::Dir {
        let mut names: Vec<Vec<u8>> = fs::read_dir(abs)?
            .map(|d| d.map(|d| d.file_name().as_bytes().to_vec()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let child = abs.join(std::ffi::OsStr::from_bytes(&name));
            let mut crel = rel.clone();
            if !crel.is_empty() {
                crel.push(b'/');
            }
            crel.extend_from_slice(&name);
            walk(&child, crel, out, inodes, linked)?;
        }
    }
    Ok(())
}

/// BLAKE3 of the file content plus its data ranges via SEEK_DATA/SEEK_HOLE.
fn hash_and_map(path: &Path, size: u64) -> io::Result<(blake3::Hash, Vec<(u64, u64)>)> {
    let mut f = File::open(path)?;
    let map = data_map(&f, size)?;
    f.seek(SeekFrom::Start(0))?; // data_map moved the offset
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok((h.finalize(), map))
}

/// Data ranges of an open file; a fully dense file yields `[(0, size)]`.
pub fn data_map(f: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = f.as_raw_fd();
    let mut ranges = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: fd is a valid open descriptor owned by `f` for this call.
        let start = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if start < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(err);
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        if end < 0 {
            return Err(io::Error::last_os_error());
        }
        ranges.push((start as u64, end as u64));
        pos = end;
    }
    Ok(ranges)
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// All xattrs of `path` (not following symlinks), every namespace.
pub fn read_xattrs(path: &Path) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let c = cpath(path)?;
    let mut out = BTreeMap::new();
    // SAFETY: c is a valid NUL-terminated path; a null buffer with size 0 asks for the length.
    let len = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(out);
        }
        return Err(err);
    }
    let mut names = vec![0u8; len as usize];
    // SAFETY: names has exactly `len` writable bytes.
    let len = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(len as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: valid C strings; null buffer with size 0 asks for the length.
        let vlen = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        if vlen < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut val = vec![0u8; vlen as usize];
        // SAFETY: val has exactly `vlen` writable bytes.
        let vlen = unsafe {
            libc::lgetxattr(c.as_ptr(), cname.as_ptr(), val.as_mut_ptr().cast(), val.len())
        };
        if vlen < 0 {
            return Err(io::Error::last_os_error());
        }
        val.truncate(vlen as usize);
        out.insert(name.to_vec(), val);
    }
    Ok(out)
}

/// Path bytes shown with non-UTF-8 and control bytes escaped.
pub fn show(path: &[u8]) -> String {
    if path.is_empty() {
        return "<root>".into();
    }
    path.escape_ascii().to_string()
}

/// Compare two manifests; `Err` lists every difference, one per line.
pub fn compare(a: &Manifest, b: &Manifest) -> Result<(), String> {
    compare_with(a, b, CompareOpts::default())
}

/// [`compare`] with some fields ignored.
pub fn compare_with(a: &Manifest, b: &Manifest, opts: CompareOpts) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (p, ea) in &a.entries {
        let Some(eb) = b.entries.get(p) else {
            diffs.push(format!("{}: only in left ({:?})", show(p), ea.kind));
            continue;
        };
        entry_diffs(p, ea, eb, opts, &mut diffs);
    }
    for (p, eb) in &b.entries {
        if !a.entries.contains_key(p) {
            diffs.push(format!("{}: only in right ({:?})", show(p), eb.kind));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        let n = diffs.len();
        let mut s = format!("{n} difference(s) between manifests (left → right):\n");
        for d in diffs.iter().take(200) {
            let _ = writeln!(s, "  {d}");
        }
        if n > 200 {
            let _ = writeln!(s, "  … and {} more", n - 200);
        }
        Err(s)
    }
}

fn entry_diffs(p: &[u8], a: &Entry, b: &Entry, o: CompareOpts, d: &mut Vec<String>) {
    let root = p.is_empty();
    let sp = show(p);
    let mut field = |name: &str, l: String, r: String| {
        if l != r {
            d.push(format!("{sp}: {name} {l} → {r}"));
        }
    };
    field("kind", format!("{:?}", a.kind), format!("{:?}", b.kind));
    if !(root && o.ignore_root_owner_mode) {
        field("mode", format!("{:04o}", a.mode), format!("{:04o}", b.mode));
        field("uid", a.uid.to_string(), b.uid.to_string());
        field("gid", a.gid.to_string(), b.gid.to_string());
    }
    if !(root && o.ignore_root_mtime) {
        field(
            "mtime",
            format!("{}.{:09}", a.mtime_sec, a.mtime_nsec),
            format!("{}.{:09}", b.mtime_sec, b.mtime_nsec),
        );
    }
    field("size", format!("{:?}", a.size), format!("{:?}", b.size));
    field("rdev", format!("{:?}", a.rdev), format!("{:?}", b.rdev));
    let tgt = |t: &Option<Vec<u8>>| t.as_deref().map(show).unwrap_or_else(|| "-".into());
    field("symlink target", tgt(&a.target), tgt(&b.target));
    let hash = |h: &Option<blake3::Hash>| h.map(|h| h.to_hex()[..16].to_string());
    field("content", format!("{:?}", hash(&a.hash)), format!("{:?}", hash(&b.hash)));
    if !o.ignore_sparse {
        field("data map", format!("{:?}", a.data_map), format!("{:?}", b.data_map));
    }
    let grp = |g: &Option<Vec<u8>>| g.as_deref().map(show).unwrap_or_else(|| "none".into());
    field("hardlink group", grp(&a.link_group), grp(&b.link_group));
    for (k, va) in &a.xattrs {
        match b.xattrs.get(k) {
            None => d.push(format!("{sp}: xattr {} missing on right", show(k))),
            Some(vb) if vb != va => d.push(format!(
                "{sp}: xattr {} value {} → {}",
                show(k),
                va.escape_ascii(),
                vb.escape_ascii()
            )),
            _ => {}
        }
    }
    for k in b.xattrs.keys().filter(|k| !a.xattrs.contains_key(*k)) {
        d.push(format!("{sp}: xattr {} only on right", show(k)));
    }
}

/// Convenience: absolute path of a manifest-relative byte path.
pub fn abs_path(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

//! A synthetic "hostile" tree holding every kind of node and metadata a
//! golden OS image may contain, so a round trip through lvrepo is checked
//! against all of it at once. Must run as root (mknod, chown, trusted.*,
//! security.capability).
//!
//! Everything is written with raw syscalls (no setcap/setfacl needed) so the
//! fixture is identical on every machine. Paths worth spot-checking are the
//! `pub const`s below (plus sockets `special/socket` and `special/a-socket`,
//! fifo `special/fifo`, symlinks under `links/`, dirs `empty`, `perm/sticky`); mtimes of every node (dirs, symlinks, root included)
//! are set last, with non-zero nanoseconds.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Regular files of assorted sizes: (relative path, size, compressible?).
pub const SIZED_FILES: &[(&str, usize, bool)] = &[
    ("files/empty", 0, false),
    ("files/one", 1, false),
    ("files/r4095", 4095, false),
    ("files/r65536", 65536, false),
    ("files/c65537", 65537, true),
    ("files/r1m3", (1 << 20) + 3, false),
    ("files/c1m3", (1 << 20) + 3, true),
];
/// 10 MiB sparse file: data at [0,64K), [4M,4M+64K), [10M-4K,10M), holes between.
pub const SPARSE: &str = "sparse/ten-mib";
/// 1 MiB file that is one hole (no data at all).
pub const ALL_HOLE: &str = "sparse/all-hole";
/// Three names of one inode, in different directories.
pub const HARDLINKS: [&str; 3] = ["hard/a/first", "hard/b/second", "hard/third"];
/// Setuid 04755 owned by 1234:5678 with user.comment xattr.
pub const SETUID: &str = "perm/setuid";
/// File with security.capability = cap_net_raw+ep (v2).
pub const CAPS: &str = "perm/ping-like";
/// File with system.posix_acl_access; dir with system.posix_acl_default.
pub const ACL_FILE: &str = "acl/file";
pub const ACL_DIR: &str = "acl/dir";
/// Device nodes: char 1:3, block 7:0, char 0:0 (an overlayfs whiteout look-alike),
/// char 254:70000 (minor > 255).
pub const DEVICES: &[(&str, bool, u32, u32)] = &[
    ("dev/null-like", true, 1, 3),
    ("dev/loop0-like", false, 7, 0),
    ("dev/whiteout-like", true, 0, 0),
    ("dev/big-minor", true, 254, 70000),
];
/// Names that are not plain UTF-8 words (raw bytes under `names/`).
pub const ODD_NAMES: &[&[u8]] = &[
    b"with\nnewline",
    b"bad\xff\xfe",
    b"with space  and\ttab",
    b"with:colon",
    b"-leading-dash",
    b"...",
    b"back\\slash",
    "\u{fc}n\u{ef}c\u{f8}d\u{e9}".as_bytes(),
];
/// The xattr every file under `names/` carries, value = its own name.
pub const NAME_XATTR: &str = "user.name";
/// 20 levels of nesting ending in a file.
pub const DEEP_FILE: &str =
    "deep/d01/d02/d03/d04/d05/d06/d07/d08/d09/d10/d11/d12/d13/d14/d15/d16/d17/d18/d19/d20/leaf";

/// Deterministic pseudo-random bytes (xorshift64*), so contents are stable.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Highly compressible but not constant text.
pub fn compressible(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("line {i:08} the quick brown fox jumps\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Content of one of [`SIZED_FILES`].
pub fn sized_content(idx: usize) -> Vec<u8> {
    let (_, len, comp) = SIZED_FILES[idx];
    if comp {
        compressible(len)
    } else {
        pseudo_random(idx as u64 + 1, len)
    }
}

fn c(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn check(ret: libc::c_int, what: &str, path: &Path) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what} {}: {e}", path.display())))
    }
}

/// lchown (does not follow symlinks).
pub fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let p = c(path)?;
    // SAFETY: p is a valid NUL-terminated path.
    check(unsafe { libc::lchown(p.as_ptr(), uid, gid) }, "lchown", path)
}

/// mknod with an explicit type (S_IFCHR, S_IFBLK, S_IFIFO) and device number.
pub fn mknod(path: &Path, kind: libc::mode_t, perm: u32, major: u32, minor: u32) -> io::Result<()> {
    let p = c(path)?;
    // SAFETY: p is a valid NUL-terminated path.
    let r = unsafe { libc::mknod(p.as_ptr(), kind | perm, libc::makedev(major, minor)) };
    check(r, "mknod", path)?;
    chmod(path, perm) // umask-proof
}

/// lsetxattr (does not follow symlinks).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = c(path)?;
    let n = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: valid C strings; value pointer/len describe a live slice.
    let r = unsafe {
        libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0)
    };
    check(r, &format!("lsetxattr {name}"), path)
}

/// Set mtime (and atime) with nanoseconds, not following symlinks.
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) -> io::Result<()> {
    let p = c(path)?;
    let ts = [
        libc::timespec { tv_sec: sec, tv_nsec: nsec },
        libc::timespec { tv_sec: sec, tv_nsec: nsec },
    ];
    // SAFETY: valid path and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    };
    check(r, "utimensat", path)
}

fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    drop(f);
    chmod(path, mode)
}

/// Raw `vfs_cap_data` v2 for cap_net_raw+ep (what `setcap cap_net_raw+ep` writes).
pub fn cap_net_raw_ep() -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes()); // VFS_CAP_REVISION_2 | EFFECTIVE
    v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: CAP_NET_RAW
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&[0u8; 8]); // caps 32..63
    v
}

/// Binary POSIX ACL xattr (version 2): entries (tag, perm, id), sorted as the kernel wants.
pub fn posix_acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}
const ACL_USER_OBJ: u16 = 1;
const ACL_USER: u16 = 2;
const ACL_GROUP_OBJ: u16 = 4;
const ACL_GROUP: u16 = 8;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const NOID: u32 = u32::MAX;

/// Build the hostile tree inside `dir` (which must exist). See the module doc.
pub fn build_hostile_tree(dir: &Path) -> io::Result<()> {
    let d = |rel: &str| dir.join(rel);
    for sub in [
        "files", "sparse", "hard/a", "hard/b", "perm", "acl/dir", "links", "dev", "special",
        "names", "empty", "owned",
    ] {
        fs::create_dir_all(d(sub))?;
    }

    // Regular files, random and compressible.
    for (i, (rel, _, _)) in SIZED_FILES.iter().enumerate() {
        write_file(&d(rel), &sized_content(i), 0o644)?;
    }

    // Sparse files: set_len then pwrite block-aligned data regions.
    let f = File::create(d(SPARSE))?;
    f.set_len(10 << 20)?;
    f.write_all_at(&pseudo_random(100, 65536), 0)?;
    f.write_all_at(&pseudo_random(101, 65536), 4 << 20)?;
    f.write_all_at(&pseudo_random(102, 4096), (10 << 20) - 4096)?;
    drop(f);
    File::create(d(ALL_HOLE))?.set_len(1 << 20)?;

    // Hardlinks across directories.
    write_file(&d(HARDLINKS[0]), b"one inode, three names\n", 0o640)?;
    set_xattr(&d(HARDLINKS[0]), "user.linked", b"yes")?;
    fs::hard_link(d(HARDLINKS[0]), d(HARDLINKS[1]))?;
    fs::hard_link(d(HARDLINKS[0]), d(HARDLINKS[2]))?;

    // Modes and owners; chown before chmod (chown clears setuid/setgid).
    write_file(&d(SETUID), b"#!/bin/sh\necho setuid\n", 0o644)?;
    lchown(&d(SETUID), 1234, 5678)?;
    chmod(&d(SETUID), 0o4755)?;
    set_xattr(&d(SETUID), "user.comment", b"setuid test file")?;
    write_file(&d("perm/setgid"), b"setgid\n", 0o644)?;
    lchown(&d("perm/setgid"), 0, 5678)?;
    chmod(&d("perm/setgid"), 0o2711)?;
    write_file(&d("perm/zero"), b"mode 0000\n", 0o000)?;
    fs::create_dir(d("perm/sticky"))?;
    chmod(&d("perm/sticky"), 0o1777)?;
    fs::create_dir(d("perm/setgid-dir"))?;
    write_file(&d("perm/setgid-dir/inside"), b"x", 0o600)?;
    chmod(&d("perm/setgid-dir"), 0o2775)?;
    fs::create_dir(d("perm/zero-dir"))?;
    write_file(&d("perm/zero-dir/hidden"), b"behind a 000 dir\n", 0o644)?;
    chmod(&d("perm/zero-dir"), 0o000)?;
    write_file(&d("perm/all-bits"), b"7777\n", 0o644)?;
    chmod(&d("perm/all-bits"), 0o7777)?;
    write_file(&d(CAPS), &pseudo_random(7, 3000), 0o755)?;
    set_xattr(&d(CAPS), "security.capability", &cap_net_raw_ep())?;
    write_file(&d("perm/trusted"), b"trusted xattr\n", 0o644)?;
    set_xattr(&d("perm/trusted"), "trusted.overlay.opaque", b"y")?;
    set_xattr(&d("perm/trusted"), "trusted.lvrepo-test", &[0, 1, 2, 255])?;
    lchown(&d("owned"), 1234, 5678)?;
    chmod(&d("owned"), 0o750)?;
    write_file(&d("owned/file"), b"owned\n", 0o600)?;
    lchown(&d("owned/file"), 4_000_000, 65534)?;

    // xattrs: user.* on a file and dir, empty and binary values.
    write_file(&d("files/xattrs"), b"xattrs\n", 0o644)?;
    set_xattr(&d("files/xattrs"), "user.comment", b"a comment")?;
    set_xattr(&d("files/xattrs"), "user.empty", b"")?;
    set_xattr(&d("files/xattrs"), "user.binary", &[0, 0xff, 0xfe, b'\n', 0])?;
    set_xattr(&d("files/xattrs"), "user.big", &pseudo_random(9, 3000))?;
    set_xattr(&d("files"), "user.dir-attr", b"on a directory")?;

    // POSIX ACLs (binary xattr format; the kernel validates it).
    write_file(&d(ACL_FILE), b"acl\n", 0o640)?;
    let access = posix_acl(&[
        (ACL_USER_OBJ, 6, NOID),
        (ACL_USER, 7, 1234),
        (ACL_GROUP_OBJ, 4, NOID),
        (ACL_GROUP, 4, 5678),
        (ACL_MASK, 7, NOID),
        (ACL_OTHER, 0, NOID),
    ]);
    set_xattr(&d(ACL_FILE), "system.posix_acl_access", &access)?;
    let default = posix_acl(&[
        (ACL_USER_OBJ, 7, NOID),
        (ACL_USER, 5, 1234),
        (ACL_GROUP_OBJ, 5, NOID),
        (ACL_MASK, 5, NOID),
        (ACL_OTHER, 0, NOID),
    ]);
    set_xattr(&d(ACL_DIR), "system.posix_acl_default", &default)?;
    set_xattr(&d(ACL_DIR), "system.posix_acl_access", &access)?;

    // Symlinks: relative, absolute, dangling, escaping, to a dir, odd bytes, long.
    symlink("../files/one", d("links/relative"))?;
    symlink("/etc/passwd", d("links/absolute"))?;
    symlink("no/such/target", d("links/dangling"))?;
    symlink("../../etc/passwd", d("links/escape"))?;
    symlink("../files", d("links/to-dir"))?;
    symlink(OsStr::from_bytes(b"odd\xff\ntarget"), d("links/odd-target"))?;
    symlink("x/".repeat(500), d("links/long-target"))?;
    symlink("relative", d("links/chain"))?;
    lchown(&d("links/relative"), 1234, 5678)?;

    // Devices, fifo, socket.
    for &(rel, chr, ma, mi) in DEVICES {
        let kind = if chr { libc::S_IFCHR } else { libc::S_IFBLK };
        mknod(&d(rel), kind, 0o660, ma, mi)?;
    }
    lchown(&d(DEVICES[1].0), 0, 6)?;
    mknod(&d("special/fifo"), libc::S_IFIFO, 0o620, 0, 0)?;
    make_socket(&d("special/socket"))?;
    make_socket(&d("special/a-socket"))?; // sorts before the fifo: not the last entry

    // Odd names, plus a 255-byte name.
    let names = d("names");
    for n in ODD_NAMES {
        let p = names.join(OsStr::from_bytes(n));
        write_file(&p, n, 0o644)?;
        set_xattr(&p, NAME_XATTR, n)?;
    }
    write_file(&names.join("n".repeat(255)), b"255-byte name\n", 0o644)?;
    fs::create_dir(names.join(OsStr::from_bytes(b"dir\xff\nname")))?;
    symlink("with space  and\ttab", names.join(OsStr::from_bytes(b"link\xfe")))?;

    // Deep nesting.
    let deep = d(DEEP_FILE);
    fs::create_dir_all(deep.parent().expect("deep has a parent"))?;
    write_file(&deep, b"twenty levels down\n", 0o644)?;

    // Root dir metadata; then every mtime, children before parents.
    chmod(dir, 0o755)?;
    set_all_mtimes(dir)
}

/// Bind a unix socket at `path` and keep the node (drop does not unlink).
fn make_socket(path: &Path) -> io::Result<()> {
    if path.as_os_str().len() < 100 {
        drop(UnixListener::bind(path)?);
        return Ok(());
    }
    // sun_path is 108 bytes: bind somewhere short on the same fs, then rename.
    let short = tempfile::Builder::new().prefix("s").tempdir_in("/tmp")?;
    let tmp = short.path().join("s");
    drop(UnixListener::bind(&tmp)?);
    fs::rename(&tmp, path)
}

/// Give every node a distinct mtime with non-zero nanoseconds, post-order.
fn set_all_mtimes(dir: &Path) -> io::Result<()> {
    let mut n = 0u64;
    post_order(dir, &mut |p| {
        n += 1;
        let sec = 1_600_000_000 + (n as i64) * 3_601;
        let nsec = ((n * 123_456_789) % 999_999_999 + 1) as i64;
        set_mtime(p, sec, nsec)
    })
}

fn post_order(p: &Path, f: &mut dyn FnMut(&Path) -> io::Result<()>) -> io::Result<()> {
    if fs::symlink_metadata(p)?.is_dir() {
        let mut kids: Vec<_> = fs::read_dir(p)?.map(|e| e.map(|e| e.path())).collect::<io::Result<_>>()?;
        kids.sort();
        for k in kids {
            post_order(&k, f)?;
        }
    }
    f(p)
}

/// Append to a file without changing its other metadata except mtime.
pub fn append(path: &Path, data: &[u8]) -> io::Result<()> {
    OpenOptions::new().append(true).open(path)?.write_all(data)
}

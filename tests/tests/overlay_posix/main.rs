//! The POSIX behaviours a guest relies on, each asserted on a real lvrepo
//! mount (image + overlay), most of them again after an unmount and a fresh
//! mount of the same overlay.

#[path = "../common/mod.rs"]
mod common;
mod attrs;
mod damage;
mod io;
mod names;
mod sparse;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cpath, errno, get_xattr, in_child, is_mounted, set_xattr_flags, Guest, Mount};
use lvrepo_tests::fixture::{self, build_hostile_tree, pseudo_random};
use lvrepo_tests::manifest::{compare, manifest};

// ---------------------------------------------------------------- helpers

fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn lstat(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

fn enoent(p: &Path) -> bool {
    matches!(fs::symlink_metadata(p), Err(e) if e.raw_os_error() == Some(libc::ENOENT))
}

fn names(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    v.sort();
    v
}

fn major_minor(rdev: u64) -> (u64, u64) {
    (((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff), (rdev & 0xff) | ((rdev >> 12) & !0xff))
}

fn renameat2(a: &Path, b: &Path, flags: libc::c_uint) -> Result<(), i32> {
    let (ca, cb) = (cpath(a), cpath(b));
    // SAFETY: two valid NUL-terminated paths; AT_FDCWD dirfds.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

fn utimens(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let c = cpath(p);
    let ts = [
        libc::timespec { tv_sec: atime.0, tv_nsec: atime.1 },
        libc::timespec { tv_sec: mtime.0, tv_nsec: mtime.1 },
    ];
    // SAFETY: valid path and a two-element timespec array.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}: {}", p.display(), std::io::Error::last_os_error());
}

/// A simple golden tree: /etc, /usr/bin, a dir with image content, files of
/// several windows.
fn small_tree(src: &Path) {
    for d in ["etc", "usr/bin", "var/lib/app/sub", "a/inner", "b", "d/dir"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    write(&src.join("etc/hostname"), b"golden\n");
    write(&src.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/bash\n");
    write(&src.join("usr/bin/tool"), &pseudo_random(1, 300_000));
    write(&src.join("var/lib/app/state"), &pseudo_random(2, 70_000));
    write(&src.join("var/lib/app/sub/deeper"), b"deeper\n");
    write(&src.join("a/x"), b"ax\n");
    write(&src.join("a/inner/y"), b"ay\n");
    write(&src.join("b/z"), b"bz\n");
    write(&src.join("d/dir/w"), b"dw\n");
    write(&src.join("f1"), b"f1\n");
    write(&src.join("f2"), b"f2\n");
    write(&src.join("big"), &pseudo_random(3, (1 << 20) + 100));
    symlink("etc/hostname", src.join("hostname-link")).unwrap();
    fs::hard_link(src.join("etc/passwd"), src.join("etc/passwd-hardlink")).unwrap();
}

fn hostile() -> Guest {
    Guest::new(|src| build_hostile_tree(src).unwrap())
}

/// Allocated bytes of every file under OVERLAY/data.
fn data_bytes(g: &Guest) -> Vec<(PathBuf, u64, u64)> {
    g.data_files().into_iter().map(|p| {
        let md = lstat(&p);
        (p, md.len(), md.blocks() * 512)
    }).collect()
}

// ---------------------------------------------------------------- tests

/// The mount shows the image exactly as imported (full-metadata manifest),
/// before and after a remount, and writes nothing into the overlay's data.
#[test]
fn mounted_image_matches_its_source() {
    let g = hostile();
    let want = manifest(&g.src).unwrap();
    let m = g.mount();
    let got = manifest(&g.mp).unwrap();
    if let Err(e) = compare(&want, &got) {
        panic!("mounted image differs from its source:\n{e}");
    }
    m.umount();
    let m = g.mount();
    if let Err(e) = compare(&want, &manifest(&g.mp).unwrap()) {
        panic!("mounted image differs from its source after a remount:\n{e}");
    }
    m.umount();
    assert!(g.data_files().is_empty(), "reading copied data: {:?}", g.data_files());
}

#[test]
fn changes_persist_across_umount_and_mount() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    write(&m.p("etc/hostname"), b"guest-1\n");
    fixture::append(&m.p("etc/passwd"), b"app:x:1000:1000::/home/app:/bin/sh\n").unwrap();
    fs::create_dir_all(m.p("new/dir")).unwrap();
    write(&m.p("new/dir/file"), &pseudo_random(9, 200_000));
    symlink("dir/file", m.p("new/link")).unwrap();
    fs::set_permissions(m.p("usr/bin/tool"), fs::Permissions::from_mode(0o4711)).unwrap();
    fixture::lchown(&m.p("var/lib/app/state"), 1000, 1001).unwrap();
    utimens(&m.p("new/dir/file"), (1_000_000_000, 5), (1_234_567_890, 123_456_789));
    fs::remove_file(m.p("f1")).unwrap();
    fs::rename(m.p("f2"), m.p("new/f2-moved")).unwrap();
    xattr::set(m.p("etc/hostname"), "user.origin", b"guest").unwrap();
    let before = manifest(&g.mp).unwrap();
    m.umount();

    let m = g.mount();
    let after = manifest(&g.mp).unwrap();
    if let Err(e) = compare(&before, &after) {
        panic!("the tree changed across umount + mount:\n{e}");
    }
    assert_eq!(read(&m.p("etc/hostname")), b"guest-1\n");
    assert!(read(&m.p("etc/passwd")).ends_with(b"app:x:1000:1000::/home/app:/bin/sh\n"));
    assert_eq!(read(&m.p("new/dir/file")), pseudo_random(9, 200_000));
    assert_eq!(read(&m.p("new/link")), pseudo_random(9, 200_000));
    let tool = lstat(&m.p("usr/bin/tool"));
    assert_eq!(tool.mode() & 0o7777, 0o4711);
    assert_eq!(read(&m.p("usr/bin/tool")), pseudo_random(1, 300_000));
    let st = lstat(&m.p("var/lib/app/state"));
    assert_eq!((st.uid(), st.gid()), (1000, 1001));
    let f = lstat(&m.p("new/dir/file"));
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_234_567_890, 123_456_789));
    assert!(enoent(&m.p("f1")) && enoent(&m.p("f2")));
    assert_eq!(read(&m.p("new/f2-moved")), b"f2\n");
    assert_eq!(get_xattr(&m.p("etc/hostname"), "user.origin"), Ok(b"guest".to_vec()));
    m.umount();
}

#[test]
fn inode_numbers_are_stable_across_remounts() {
    fn inos(root: &Path) -> std::collections::BTreeMap<Vec<u8>, u64> {
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![(root.to_path_buf(), Vec::new())];
        while let Some((abs, rel)) = stack.pop() {
            let md = lstat(&abs);
            out.insert(rel.clone(), md.ino());
            if md.is_dir() {
                for e in fs::read_dir(&abs).unwrap() {
                    let e = e.unwrap();
                    let mut r = rel.clone();
                    r.push(b'/');
                    r.extend_from_slice(e.file_name().as_bytes());
                    stack.push((e.path(), r));
                }
            }
        }
        out
    }
    let g = hostile();
    let m = g.mount();
    let image_inos = inos(&g.mp);
    assert_eq!(image_inos[&Vec::new()], 1, "the root is inode 1");
    fs::create_dir(m.p("newdir")).unwrap();
    write(&m.p("newdir/new-file"), b"new");
    write(&m.p("new-top"), b"top");
    fs::hard_link(m.p("files/one"), m.p("newdir/link-to-image-file")).unwrap();
    fs::rename(m.p("files/r4095"), m.p("newdir/renamed-image-file")).unwrap();
    write(&m.p("files/c65537"), b"rewritten"); // data change: same inode
    let first = inos(&g.mp);
    let hl: Vec<u64> = fixture::HARDLINKS.iter().map(|h| first[&format!("/{h}").into_bytes()]).collect();
    assert!(hl.iter().all(|&i| i == hl[0]), "image hardlinks do not share an inode: {hl:?}");
    assert_eq!(first[&b"/newdir/link-to-image-file".to_vec()], image_inos[&b"/files/one".to_vec()]);
    assert_eq!(first[&b"/newdir/renamed-image-file".to_vec()], image_inos[&b"/files/r4095".to_vec()]);
    assert_eq!(first[&b"/files/c65537".to_vec()], image_inos[&b"/files/c65537".to_vec()]);
    // Distinct inodes for distinct files (hardlinks aside).
    let mut seen = std::collections::HashMap::new();
    for (p, i) in &first {
        if let Some(other) = seen.insert(*i, p.clone()) {
            let linked = |p: &[u8]| {
                fixture::HARDLINKS.iter().any(|h| p == format!("/{h}").as_bytes())
                    || p == b"/files/one"
                    || p == b"/newdir/link-to-image-file"
            };
            assert!(linked(p) && linked(&other), "inode {i} shared by {} and {}", p.escape_ascii(), other.escape_ascii());
        }
    }
    m.umount();
    for round in 0..2 {
        let m = g.mount();
        let again = inos(&g.mp);
        assert!(again == first, "inode numbers changed after remount {round}:\n{:?}",
            first.iter().filter(|(p, i)| again.get(*p) != Some(i)).map(|(p, _)| p.escape_ascii().to_string()).collect::<Vec<_>>());
        m.umount();
    }
}

#[test]
fn metadata_changes_of_image_files_copy_nothing() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let big = m.p("big");
    fs::set_permissions(&big, fs::Permissions::from_mode(0o600)).unwrap();
    fixture::lchown(&big, 1234, 5678).unwrap();
    utimens(&big, (1_500_000_000, 1), (1_400_000_000, 999_999_999));
    fixture::lchown(&m.p("usr/bin/tool"), 7, 7).unwrap();
    fs::set_permissions(m.p("usr/bin/tool"), fs::Permissions::from_mode(0o750)).unwrap();
    utimens(&m.p("var/lib/app"), (1, 0), (2, 0));
    // `touch` (UTIME_NOW)
    assert!(Command::new("touch").arg(m.p("etc/passwd")).status().unwrap().success());
    xattr::set(&big, "user.tag", b"v").unwrap();
    assert_eq!(g.data_files(), Vec::<PathBuf>::new(), "a metadata change copied file data");
    let st = lstat(&big);
    assert_eq!((st.mode() & 0o7777, st.uid(), st.gid()), (0o600, 1234, 5678));
    assert_eq!((st.mtime(), st.mtime_nsec(), st.atime(), st.atime_nsec()), (1_400_000_000, 999_999_999, 1_500_000_000, 1));
    assert_eq!(read(&big), pseudo_random(3, (1 << 20) + 100));
    m.umount();
    assert_eq!(g.data_files(), Vec::<PathBuf>::new(), "unmounting copied file data");
    let m = g.mount();
    let st = lstat(&m.p("big"));
    assert_eq!((st.mode() & 0o7777, st.uid(), st.gid(), st.mtime(), st.mtime_nsec()), (0o600, 1234, 5678, 1_400_000_000, 999_999_999));
    let t = lstat(&m.p("usr/bin/tool"));
    assert_eq!((t.mode() & 0o7777, t.uid(), t.gid()), (0o750, 7, 7));
    assert_eq!(lstat(&m.p("var/lib/app")).mtime(), 2);
    assert_eq!(read(&m.p("big")), pseudo_random(3, (1 << 20) + 100));
    assert_eq!(read(&m.p("usr/bin/tool")), pseudo_random(1, 300_000));
    m.umount();
    assert_eq!(g.data_files(), Vec::<PathBuf>::new());
}

#[test]
fn small_writes_into_a_large_image_file_store_about_one_chunk() {
    const LEN: usize = 64 << 20;
    let g = Guest::new(|src| write(&src.join("disk.img"), &pseudo_random(64, LEN)));
    let mut want = pseudo_random(64, LEN);
    let m = g.mount();
    let p = m.p("disk.img");
    let t = Instant::now();
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"!").unwrap();
    drop(f);
    let append_time = t.elapsed();
    want.push(b'!');
    let d = data_bytes(&g);
    assert_eq!(d.len(), 1, "one data file expected: {d:?}");
    assert!(d[0].2 <= 128 << 10, "appending 1 byte to a 64 MiB image file stored {} bytes: {d:?}", d[0].2);
    eprintln!("append 1 byte to a 64 MiB image file: {append_time:?}, overlay data {} bytes allocated", d[0].2);
    assert_eq!(lstat(&p).len(), LEN as u64 + 1);
    let mut tail = vec![0u8; 70_000];
    File::open(&p).unwrap().read_exact_at(&mut tail, (LEN + 1 - 70_000) as u64).unwrap();
    assert_eq!(tail, want[LEN + 1 - 70_000..]);

    // A 1-byte write in the middle copies one chunk window (64 KiB), no more.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(b"#", 40_000_000).unwrap();
    drop(f);
    want[40_000_000] = b'#';
    let d = data_bytes(&g);
    assert!(d[0].2 <= 128 << 10, "two small writes stored {} bytes: {d:?}", d[0].2);
    assert!(blake3::hash(&read(&p)) == blake3::hash(&want), "content after the writes is wrong");
    m.umount();
    let d = data_bytes(&g);
    assert!(d.len() == 1 && d[0].2 <= 128 << 10, "after umount: {d:?}");
    let m = g.mount();
    assert!(blake3::hash(&read(&m.p("disk.img"))) == blake3::hash(&want), "content after remount is wrong");
    m.umount();
}

#[test]
fn truncate_shrink_then_extend_reads_zeros() {
    const LEN: usize = 300_000; // 5 windows, the last one partial
    let g = Guest::new(|src| {
        write(&src.join("f"), &pseudo_random(4, LEN));
        write(&src.join("g"), &pseudo_random(5, LEN));
    });
    let orig = pseudo_random(4, LEN);
    let m = g.mount();
    let f = OpenOptions::new().read(true).write(true).open(m.p("f")).unwrap();
    f.write_all_at(b"0123456789", 70_000).unwrap(); // window 1 becomes local
    let mut want = orig.clone();
    want[70_000..70_010].copy_from_slice(b"0123456789");
    // Shrink inside a window that is still the image's (window 3) and extend.
    f.set_len(250_000).unwrap();
    f.set_len(260_000).unwrap();
    want.truncate(250_000);
    want.resize(260_000, 0);
    // Shrink inside the local window (window 1), then extend by truncate and
    // by a write far past the end.
    f.set_len(100_000).unwrap();
    want.truncate(100_000);
    let mut buf = Vec::new();
    (&f).read_to_end(&mut buf).unwrap();
    assert_eq!(buf, want, "after shrinking to 100000");
    f.set_len(400_000).unwrap();
    f.write_all_at(b"end", 500_000).unwrap();
    want.resize(500_000, 0);
    want.extend_from_slice(b"end");
    let check = |p: &Path, what: &str| {
        let got = read(p);
        assert_eq!(got.len(), want.len(), "{what}: size");
        if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
            panic!("{what}: byte {i} is {:#x}, want {:#x} (extension must read zeros)", got[i], want[i]);
        }
    };
    check(&m.p("f"), "after extending");
    // An image file shrunk to 0 and re-extended reads only zeros.
    let g2 = OpenOptions::new().write(true).open(m.p("g")).unwrap();
    g2.set_len(0).unwrap();
    g2.set_len(LEN as u64).unwrap();
    drop(g2);
    assert!(read(&m.p("g")).iter().all(|&b| b == 0), "image bytes resurfaced after truncate to 0 + extend");
    drop(f);
    m.umount();
    let m = g.mount();
    check(&m.p("f"), "after remount");
    assert!(read(&m.p("g")).iter().all(|&b| b == 0), "image bytes resurfaced after remount");
    m.umount();
}

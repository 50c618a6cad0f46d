//! The POSIX behaviours a guest relies on, each asserted on a real lvrepo
//! mount (image + overlay), most of them again after an unmount and a fresh
//! mount of the same overlay.

mod common;

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

#[test]
fn rename_noreplace_and_exchange() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let ino = |p: &str| lstat(&m.p(p)).ino();
    let nlink = |p: &str| lstat(&m.p(p)).nlink();
    let subdirs = |p: &str| fs::read_dir(m.p(p)).unwrap().filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir()).count() as u64;

    // RENAME_NOREPLACE: EEXIST on an existing target (file and dir), nothing moves.
    assert_eq!(renameat2(&m.p("f1"), &m.p("f2"), libc::RENAME_NOREPLACE), Err(libc::EEXIST));
    assert_eq!(renameat2(&m.p("a"), &m.p("b"), libc::RENAME_NOREPLACE), Err(libc::EEXIST));
    assert_eq!((read(&m.p("f1")), read(&m.p("f2"))), (b"f1\n".to_vec(), b"f2\n".to_vec()));
    assert_eq!(read(&m.p("a/x")), b"ax\n");
    let f1 = ino("f1");
    renameat2(&m.p("f1"), &m.p("f3"), libc::RENAME_NOREPLACE).unwrap();
    assert!(enoent(&m.p("f1")));
    assert_eq!((read(&m.p("f3")), ino("f3")), (b"f1\n".to_vec(), f1));
    // RENAME_NOREPLACE and RENAME_EXCHANGE together are invalid.
    assert_eq!(renameat2(&m.p("f2"), &m.p("f3"), libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE), Err(libc::EINVAL));

    // RENAME_EXCHANGE of two image directories holding image content.
    let (ia, ib) = (ino("a"), ino("b"));
    renameat2(&m.p("a"), &m.p("b"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!((ino("a"), ino("b")), (ib, ia));
    assert_eq!(names(&m.p("a")), vec![b"z".to_vec()]);
    assert_eq!(read(&m.p("a/z")), b"bz\n");
    assert_eq!((read(&m.p("b/x")), read(&m.p("b/inner/y"))), (b"ax\n".to_vec(), b"ay\n".to_vec()));
    // Exchange a file with an image directory in another parent.
    let (if2, idir) = (ino("f2"), ino("d/dir"));
    renameat2(&m.p("f2"), &m.p("d/dir"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!((ino("f2"), ino("d/dir")), (idir, if2));
    assert!(lstat(&m.p("f2")).is_dir() && lstat(&m.p("d/dir")).is_file());
    assert_eq!((read(&m.p("f2/w")), read(&m.p("d/dir"))), (b"dw\n".to_vec(), b"f2\n".to_vec()));
    for d in ["", "d", "b"] {
        assert_eq!(nlink(d), 2 + subdirs(d), "nlink of /{d} after exchanges");
    }
    // Exchange needs both names.
    assert_eq!(renameat2(&m.p("f3"), &m.p("nope"), libc::RENAME_EXCHANGE), Err(libc::ENOENT));
    // Plain rename of an image dir over an empty new dir, and into a new dir.
    fs::create_dir(m.p("empty-new")).unwrap();
    fs::rename(m.p("b"), m.p("empty-new")).unwrap();
    fs::create_dir(m.p("holder")).unwrap();
    fs::rename(m.p("empty-new"), m.p("holder/moved")).unwrap();
    assert_eq!(read(&m.p("holder/moved/inner/y")), b"ay\n");
    let snapshot = manifest(&g.mp).unwrap();
    m.umount();

    let m = g.mount();
    if let Err(e) = compare(&snapshot, &manifest(&g.mp).unwrap()) {
        panic!("renames did not survive a remount:\n{e}");
    }
    assert_eq!(lstat(&m.p("a")).ino(), ib);
    assert_eq!(lstat(&m.p("f2")).ino(), idir);
    assert_eq!(read(&m.p("holder/moved/x")), b"ax\n");
    m.umount();
}

#[test]
fn rmdir_of_an_image_dir_after_emptying_it() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let app = m.p("var/lib/app");
    let lib_nlink = lstat(&m.p("var/lib")).nlink();
    assert_eq!(fs::remove_dir(&app).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    fs::remove_file(app.join("state")).unwrap();
    assert_eq!(fs::remove_dir(app.join("sub")).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    fs::remove_file(app.join("sub/deeper")).unwrap();
    fs::remove_dir(app.join("sub")).unwrap();
    assert!(names(&app).is_empty());
    fs::remove_dir(&app).unwrap();
    assert!(enoent(&app));
    assert_eq!(names(&m.p("var/lib")), Vec::<Vec<u8>>::new());
    assert_eq!(lstat(&m.p("var/lib")).nlink(), lib_nlink - 1);
    // A renamed image dir, emptied and removed under its new name.
    fs::rename(m.p("a"), m.p("a-moved")).unwrap();
    fs::remove_dir_all(m.p("a-moved")).unwrap();
    assert!(enoent(&m.p("a")) && enoent(&m.p("a-moved")));
    // The same name again: a new, empty directory (no image entries resurface).
    fs::create_dir(&app).unwrap();
    assert!(names(&app).is_empty(), "image entries resurfaced in a re-created dir: {:?}", names(&app));
    write(&app.join("fresh"), b"fresh");
    m.umount();

    let m = g.mount();
    let app = m.p("var/lib/app");
    assert_eq!(names(&app), vec![b"fresh".to_vec()]);
    assert!(enoent(&app.join("state")) && enoent(&app.join("sub")));
    assert!(enoent(&m.p("a")) && enoent(&m.p("a-moved")));
    assert_eq!(fs::remove_dir(&app).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    m.umount();
}

#[test]
fn deleted_image_entries_stay_deleted_and_real_0_0_char_devices_work() {
    let g = hostile();
    let m = g.mount();
    // The image's own 0:0 char device is a device, not a deletion.
    let wl = lstat(&m.p("dev/whiteout-like"));
    assert!(wl.file_type().is_char_device() && major_minor(wl.rdev()) == (0, 0));
    let gone = ["files/one", "links/escape", "special/fifo", "hard/third", "dev/whiteout-like", "perm/setuid"];
    for p in gone {
        fs::remove_file(m.p(p)).unwrap();
    }
    fs::remove_dir_all(m.p("deep")).unwrap();
    // New 0:0 char devices: one at a fresh name, one at a deleted image name.
    fixture::mknod(&m.p("dev/new-0-0"), libc::S_IFCHR, 0o600, 0, 0).unwrap();
    fixture::mknod(&m.p("files/one"), libc::S_IFCHR, 0o640, 0, 0).unwrap();
    // A new file at a deleted image name shows the new content.
    write(&m.p("perm/setuid"), b"new file");
    let check = |m: &Mount<'_>, when: &str| {
        for p in ["links/escape", "special/fifo", "hard/third", "dev/whiteout-like", "deep"] {
            assert!(enoent(&m.p(p)), "{p} reappeared {when}");
        }
        let root = names(&g.mp);
        assert!(!root.contains(&b"deep".to_vec()), "deep listed {when}");
        assert!(!names(&m.p("special")).contains(&b"fifo".to_vec()), "fifo listed {when}");
        for (p, perm) in [("dev/new-0-0", 0o600), ("files/one", 0o640)] {
            let st = lstat(&m.p(p));
            assert!(st.file_type().is_char_device(), "{p} is not a char device {when}");
            assert_eq!((major_minor(st.rdev()), st.mode() & 0o7777), ((0, 0), perm), "{p} {when}");
        }
        assert!(names(&m.p("dev")).contains(&b"new-0-0".to_vec()), "new 0:0 device not listed {when}");
        assert!(names(&m.p("files")).contains(&b"one".to_vec()), "0:0 device at a deleted name not listed {when}");
        let s = lstat(&m.p("perm/setuid"));
        assert_eq!((s.mode() & 0o6000, s.uid(), s.gid()), (0, 0, 0), "a new file, not the image's setuid one {when}");
        assert_eq!(read(&m.p("perm/setuid")), b"new file", "{when}");
        assert_eq!(lstat(&m.p("hard/a/first")).nlink(), 2, "hardlink count after deleting one name {when}");
    };
    check(&m, "before remount");
    let snapshot = manifest(&g.mp).unwrap();
    m.umount();
    let m = g.mount();
    check(&m, "after remount");
    if let Err(e) = compare(&snapshot, &manifest(&g.mp).unwrap()) {
        panic!("tree changed across remount:\n{e}");
    }
    m.umount();
}

#[test]
fn hardlinks_and_open_unlinked_files() {
    let g = hostile();
    let m = g.mount();
    let [h0, h1, h2] = fixture::HARDLINKS.map(|h| m.p(h));
    let ino = lstat(&h0).ino();
    for h in [&h0, &h1, &h2] {
        let st = lstat(h);
        assert_eq!((st.ino(), st.nlink()), (ino, 3), "{}", h.display());
    }
    fs::hard_link(&h2, m.p("new-link")).unwrap();
    for h in [&h0, &h1, &h2, &m.p("new-link")] {
        assert_eq!(lstat(h).nlink(), 4, "{} after link", h.display());
    }
    fs::remove_file(&h1).unwrap();
    for h in [&h0, &h2, &m.p("new-link")] {
        assert_eq!(lstat(h).nlink(), 3, "{} after unlink", h.display());
    }
    // Writing through one name changes them all (copy-on-write keeps one inode).
    fixture::append(&m.p("new-link"), b"appended\n").unwrap();
    assert_eq!(read(&h0), b"one inode, three names\nappended\n");
    // New files: link, unlink.
    write(&m.p("n1"), b"new");
    fs::hard_link(m.p("n1"), m.p("n2")).unwrap();
    assert_eq!((lstat(&m.p("n1")).nlink(), lstat(&m.p("n2")).nlink()), (2, 2));
    fs::remove_file(m.p("n1")).unwrap();
    assert_eq!(lstat(&m.p("n2")).nlink(), 1);

    // Open, then unlink every name: the data stays readable (and writable)
    // through the descriptor, fstat says nlink 0.
    let new_data = pseudo_random(77, 200_000);
    write(&m.p("tmpfile"), &new_data);
    let tmp_ino = lstat(&m.p("tmpfile")).ino();
    let mut tf = OpenOptions::new().read(true).write(true).open(m.p("tmpfile")).unwrap();
    let img_data = fixture::sized_content(5); // files/r1m3
    let mut imf = File::open(m.p("files/r1m3")).unwrap();
    fs::remove_file(m.p("tmpfile")).unwrap();
    fs::remove_file(m.p("files/r1m3")).unwrap();
    assert!(enoent(&m.p("tmpfile")) && enoent(&m.p("files/r1m3")));
    assert_eq!(tf.metadata().unwrap().nlink(), 0, "fstat of an open unlinked new file");
    assert_eq!(imf.metadata().unwrap().nlink(), 0, "fstat of an open unlinked image file");
    let mut buf = Vec::new();
    tf.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, new_data);
    buf.clear();
    imf.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, img_data);
    tf.write_all_at(b"still writable", 10).unwrap();
    let mut b = [0u8; 14];
    tf.read_exact_at(&mut b, 10).unwrap();
    assert_eq!(&b, b"still writable");
    let tmp_data = g.overlay.join("data").join(format!("{tmp_ino:016x}"));
    drop(imf);
    assert!(tmp_data.exists(), "the data of an open unlinked file is gone");
    drop(tf);
    // The space comes back at the last close, while mounted, as on ext4.
    assert!(gone_soon(&tmp_data), "the data of a closed unlinked file was kept: {}", tmp_data.display());

    // A file the creating handle still holds, opened again, unlinked: closing
    // either descriptor alone keeps it.
    // (Larger than what a file keeps inline in the database, so that it
    // has a data file whose removal can be watched.)
    let mut created = File::create(m.p("twice")).unwrap();
    created.write_all(b"held twice").unwrap();
    created.write_all(&pseudo_random(78, 40_000)).unwrap();
    let twice_data = g.overlay.join("data").join(format!("{:016x}", lstat(&m.p("twice")).ino()));
    let again = File::open(m.p("twice")).unwrap();
    fs::remove_file(m.p("twice")).unwrap();
    drop(created);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut b = [0u8; 10];
    again.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"held twice", "an open unlinked file lost its data when another descriptor closed");
    drop(again);
    assert!(gone_soon(&twice_data), "the data of a closed unlinked file was kept: {}", twice_data.display());
    m.umount();

    let m = g.mount();
    let [h0, h1, h2] = fixture::HARDLINKS.map(|h| m.p(h));
    assert!(enoent(&h1));
    for h in [&h0, &h2, &m.p("new-link")] {
        let st = lstat(h);
        assert_eq!((st.ino(), st.nlink()), (ino, 3), "{} after remount", h.display());
        assert_eq!(read(h), b"one inode, three names\nappended\n");
    }
    assert_eq!(lstat(&m.p("n2")).nlink(), 1);
    assert!(enoent(&m.p("tmpfile")) && enoent(&m.p("files/r1m3")) && enoent(&m.p("n1")));
    m.umount();
}

/// Whether `p` disappears within 5 s (the daemon hears of a last close
/// asynchronously).
fn gone_soon(p: &Path) -> bool {
    for _ in 0..100 {
        if !p.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// The daemon keeps only some overlay data files open; more open files than
/// that, written and read in turn, still each see their own bytes.
#[test]
fn more_open_files_than_the_daemon_keeps_descriptors_for() {
    let g = hostile();
    let m = g.mount();
    fs::create_dir(m.p("many")).unwrap();
    let n = 600;
    let mut files: Vec<File> = (0..n)
        .map(|i| {
            let p = m.p(&format!("many/f{i}"));
            // Past the inline limit: each file has a data file to keep open.
            let mut body = format!("file {i}\n").into_bytes();
            body.resize(20_000, b'.');
            write(&p, &body);
            OpenOptions::new().read(true).write(true).open(p).unwrap()
        })
        .collect();
    for round in 0..3u64 {
        for (i, f) in files.iter_mut().enumerate() {
            let line = format!("round {round} of file {i}\n");
            f.write_all_at(line.as_bytes(), 100 * round).unwrap();
        }
        for (i, f) in files.iter().enumerate().rev() {
            let line = format!("round {round} of file {i}\n");
            let mut b = vec![0u8; line.len()];
            f.read_exact_at(&mut b, 100 * round).unwrap();
            assert_eq!(b, line.as_bytes(), "file {i} in round {round}");
        }
    }
    for f in &files {
        f.sync_all().unwrap();
    }
    drop(files);
    m.umount();
    let m = g.mount();
    for i in [0, 299, 599] {
        let got = read(&m.p(&format!("many/f{i}")));
        for round in 0..3 {
            let line = format!("round {round} of file {i}\n");
            let at = 100 * round;
            assert_eq!(got.get(at..at + line.len()), Some(line.as_bytes()), "file {i} after a remount");
        }
    }
    m.umount();
}

#[test]
fn symlinks() {
    let g = hostile();
    let m = g.mount();
    let rl = |p: &str| fs::read_link(m.p(p)).unwrap().into_os_string().into_vec();
    use std::os::unix::ffi::OsStringExt;
    assert_eq!(rl("links/relative"), b"../files/one");
    assert_eq!(rl("links/odd-target"), b"odd\xff\ntarget");
    assert_eq!(rl("links/long-target"), "x/".repeat(500).into_bytes());
    let st = lstat(&m.p("links/relative"));
    assert!(st.file_type().is_symlink());
    assert_eq!((st.len(), st.uid(), st.gid()), (12, 1234, 5678));
    assert_eq!(read(&m.p("links/relative")), fixture::sized_content(1), "following an image symlink");
    assert_eq!(names(&m.p("links/to-dir")), names(&m.p("files")));
    assert_eq!(fs::metadata(m.p("links/dangling")).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    // New symlinks: long and odd targets, a chain, owner and times of the link itself.
    let long = "y/".repeat(2000);
    symlink(&long, m.p("links/new-long")).unwrap();
    symlink(OsStr::from_bytes(b"\x01\xfe weird"), m.p("links/new-odd")).unwrap();
    symlink("new-chain-2", m.p("links/new-chain-1")).unwrap();
    symlink("../files/one", m.p("links/new-chain-2")).unwrap();
    fixture::lchown(&m.p("links/new-odd"), 42, 43).unwrap();
    utimens(&m.p("links/new-odd"), (5, 6), (7, 8));
    // Replace an image symlink.
    fs::remove_file(m.p("links/absolute")).unwrap();
    symlink("/etc/hostname", m.p("links/absolute")).unwrap();
    let check = |m: &Mount<'_>, when: &str| {
        let rl = |p: &str| fs::read_link(m.p(p)).unwrap().into_os_string().into_vec();
        assert_eq!(rl("links/new-long"), long.as_bytes(), "{when}");
        assert_eq!(lstat(&m.p("links/new-long")).len(), 4000, "{when}");
        assert_eq!(rl("links/new-odd"), b"\x01\xfe weird", "{when}");
        let st = lstat(&m.p("links/new-odd"));
        assert_eq!((st.uid(), st.gid(), st.mtime(), st.mtime_nsec()), (42, 43, 7, 8), "{when}");
        assert_eq!(read(&m.p("links/new-chain-1")), fixture::sized_content(1), "{when}");
        assert_eq!(rl("links/absolute"), b"/etc/hostname", "{when}");
    };
    check(&m, "before remount");
    m.umount();
    let m = g.mount();
    check(&m, "after remount");
    m.umount();
}

#[test]
fn fifos_and_sockets() {
    let g = hostile();
    let m = g.mount();
    let c = cpath(&m.p("new-fifo"));
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0, "mkfifo: {}", std::io::Error::last_os_error());
    fixture::mknod(&m.p("new-sock-node"), libc::S_IFSOCK, 0o755, 0, 0).unwrap();
    let listener = UnixListener::bind(m.p("live.sock")).unwrap();
    // A live socket bound on the mount works.
    let mut client = UnixStream::connect(m.p("live.sock")).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    server.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    // FIFOs (new and from the image) carry data.
    for p in ["new-fifo", "special/fifo"] {
        let mut f = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(m.p(p)).unwrap();
        f.write_all(b"through the fifo").unwrap();
        let mut b = [0u8; 16];
        f.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"through the fifo", "{p}");
    }
    drop((client, server, listener));
    let check = |m: &Mount<'_>, when: &str| {
        let f = lstat(&m.p("new-fifo"));
        assert!(f.file_type().is_fifo() && f.mode() & 0o7777 == 0o640, "new-fifo {when}");
        assert!(lstat(&m.p("new-sock-node")).file_type().is_socket(), "{when}");
        assert!(lstat(&m.p("live.sock")).file_type().is_socket(), "{when}");
        assert!(lstat(&m.p("special/fifo")).file_type().is_fifo(), "{when}");
        assert!(lstat(&m.p("special/socket")).file_type().is_socket(), "{when}");
    };
    check(&m, "before remount");
    m.umount();
    let m = g.mount();
    check(&m, "after remount");
    m.umount();
}

fn getfacl(p: &Path, default: bool) -> String {
    let mut cmd = Command::new("getfacl");
    cmd.arg("-n").arg("--omit-header");
    if default {
        cmd.arg("-d");
    }
    let out = cmd.arg(p).output().expect("getfacl");
    assert!(out.status.success(), "getfacl {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn setfacl(args: &[&str], p: &Path) {
    let out = Command::new("setfacl").args(args).arg(p).output().expect("setfacl");
    assert!(out.status.success(), "setfacl {args:?} {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
}

/// Run `cat FILE` as user `tests` (no supplementary groups); Ok(content) or Err(stderr).
fn cat_as_tests(p: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("setpriv")
        .args(["--reuid=tests", "--regid=tests", "--clear-groups", "cat"])
        .arg(p)
        .output()
        .expect("setpriv");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn xattrs_capabilities_and_acls() {
    let g = hostile();
    let m = g.mount();
    // Image values come through.
    let x = m.p("files/xattrs");
    assert_eq!(get_xattr(&x, "user.comment"), Ok(b"a comment".to_vec()));
    assert_eq!(get_xattr(&x, "user.binary"), Ok(vec![0, 0xff, 0xfe, b'\n', 0]));
    assert_eq!(get_xattr(&x, "user.big"), Ok(pseudo_random(9, 3000)));
    assert_eq!(get_xattr(&m.p("perm/trusted"), "trusted.lvrepo-test"), Ok(vec![0, 1, 2, 255]));
    assert_eq!(get_xattr(&m.p(fixture::CAPS), "security.capability"), Ok(fixture::cap_net_raw_ep()));
    assert_eq!(getfacl(&m.p(fixture::ACL_FILE), false), getfacl(&g.src(fixture::ACL_FILE), false));
    assert_eq!(getfacl(&m.p(fixture::ACL_DIR), true), getfacl(&g.src(fixture::ACL_DIR), true));
    let mut listed: Vec<String> = xattr::list(&x).unwrap().map(|n| n.to_string_lossy().into_owned()).collect();
    listed.sort();
    assert_eq!(listed, ["user.big", "user.binary", "user.comment", "user.empty"]);

    // Changes: set, replace, remove; CREATE/REPLACE flags.
    assert_eq!(set_xattr_flags(&x, "user.comment", b"dup", libc::XATTR_CREATE), Err(libc::EEXIST));
    assert_eq!(set_xattr_flags(&x, "user.missing", b"v", libc::XATTR_REPLACE), Err(libc::ENODATA));
    set_xattr_flags(&x, "user.comment", b"replaced", libc::XATTR_REPLACE).unwrap();
    xattr::remove(&x, "user.binary").unwrap();
    assert_eq!(get_xattr(&x, "user.binary"), Err(libc::ENODATA));
    xattr::set(m.p("perm/trusted"), "trusted.new", &[0, 0, 7]).unwrap();
    assert_eq!(g.data_files(), Vec::<PathBuf>::new(), "an xattr change copied file data");
    // security.capability on a new file; a write by root strips it (as on ext4).
    write(&m.p("capfile"), b"#!/bin/true\n");
    xattr::set(m.p("capfile"), "security.capability", &fixture::cap_net_raw_ep()).unwrap();
    assert_eq!(get_xattr(&m.p("capfile"), "security.capability"), Ok(fixture::cap_net_raw_ep()));
    write(&m.p("capfile2"), b"#!/bin/true\n");
    xattr::set(m.p("capfile2"), "security.capability", &fixture::cap_net_raw_ep()).unwrap();
    fixture::append(&m.p("capfile2"), b"# modified\n").unwrap();
    assert_eq!(get_xattr(&m.p("capfile2"), "security.capability"), Err(libc::ENODATA), "a write must drop file capabilities");
    // ACLs with setfacl/getfacl: on a new file, an image file, a new dir (default ACL).
    write(&m.p("aclfile"), b"secret\n");
    fs::set_permissions(m.p("aclfile"), fs::Permissions::from_mode(0o600)).unwrap();
    setfacl(&["-m", "u:1234:rw,g:5678:r"], &m.p("aclfile"));
    setfacl(&["-m", "u:4321:r"], &m.p("files/one"));
    fs::create_dir(m.p("acldir")).unwrap();
    setfacl(&["-d", "-m", "u:1234:rx"], &m.p("acldir"));
    let check = |m: &Mount<'_>, when: &str| {
        let x = m.p("files/xattrs");
        assert_eq!(get_xattr(&x, "user.comment"), Ok(b"replaced".to_vec()), "{when}");
        assert_eq!(get_xattr(&x, "user.binary"), Err(libc::ENODATA), "{when}");
        assert_eq!(get_xattr(&m.p("perm/trusted"), "trusted.new"), Ok(vec![0, 0, 7]), "{when}");
        assert_eq!(get_xattr(&m.p("capfile"), "security.capability"), Ok(fixture::cap_net_raw_ep()), "{when}");
        let acl = getfacl(&m.p("aclfile"), false);
        assert!(acl.contains("user:1234:rw-") && acl.contains("group:5678:r--"), "{when}: {acl}");
        assert!(getfacl(&m.p("files/one"), false).contains("user:4321:r--"), "{when}");
        assert!(getfacl(&m.p("acldir"), true).contains("user:1234:r-x"), "{when}");
        assert_eq!(read(&m.p("files/one")), fixture::sized_content(1), "{when}");
    };
    check(&m, "before remount");
    m.umount();
    let m = g.mount();
    check(&m, "after remount");
    m.umount();
}

/// ACLs are not only stored but enforced, as on ext4: a named-user entry
/// grants access the mode bits deny, and a default ACL is inherited.
#[test]
fn acls_are_enforced_and_inherited() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let f = m.p("etc/secret");
    write(&f, b"for tests only\n");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(cat_as_tests(&f).is_err(), "mode 0600 root file readable by `tests`");
    setfacl(&["-m", "u:tests:r"], &f);
    assert_eq!(cat_as_tests(&f), Ok(b"for tests only\n".to_vec()), "a user ACL entry must grant read access");
    // The mask limits named entries; chmod g-r changes the mask.
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(cat_as_tests(&f).is_err(), "chmod 600 must mask the ACL entry out");
    // Default ACL inheritance.
    let d = m.p("shared");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
    setfacl(&["-m", "u:tests:rx", "-d", "-m", "u:tests:r"], &d);
    setfacl(&["-m", "u:tests:rx"], &d);
    let inner = d.join("inner");
    write(&inner, b"inherited\n");
    fs::set_permissions(&inner, fs::Permissions::from_mode(0o640)).unwrap();
    let uid = String::from_utf8(Command::new("id").args(["-u", "tests"]).output().unwrap().stdout).unwrap();
    let want = format!("user:{}:r--", uid.trim());
    assert!(getfacl(&inner, false).contains(&want), "default ACL not inherited ({want}): {}", getfacl(&inner, false));
    assert_eq!(cat_as_tests(&inner), Ok(b"inherited\n".to_vec()));
    m.umount();
    let m = g.mount();
    assert_eq!(cat_as_tests(&m.p("shared/inner")), Ok(b"inherited\n".to_vec()), "after remount");
    m.umount();
}

#[test]
fn statfs_reports_the_overlay_partition() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let s = nix::sys::statvfs::statvfs(&g.mp).unwrap();
    let o = nix::sys::statvfs::statvfs(&g.overlay).unwrap();
    assert!(s.block_size() > 0 && s.fragment_size() > 0 && s.blocks() > 0);
    assert!(s.blocks_available() <= s.blocks_free() && s.blocks_free() <= s.blocks());
    assert_eq!(s.name_max(), 255);
    let total = |v: &nix::sys::statvfs::Statvfs| v.blocks() as u128 * v.fragment_size() as u128;
    assert_eq!(total(&s), total(&o), "size of the mount vs the overlay's partition");
    let out = Command::new("df").arg("-P").arg(&g.mp).output().unwrap();
    assert!(out.status.success(), "df: {}", String::from_utf8_lossy(&out.stderr));
    let nfs = nix::sys::statfs::statfs(&g.mp).unwrap();
    assert_eq!(nfs.filesystem_type().0 as u64, 0x6573_5546, "FUSE_SUPER_MAGIC");
    m.umount();
}

#[test]
fn o_append_and_o_trunc() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    // O_APPEND on an image file and a new file: the seek position is ignored.
    for (p, mut want) in [("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n".to_vec()), ("new-log", Vec::new())] {
        let mut a = OpenOptions::new().append(true).create(true).open(m.p(p)).unwrap();
        let mut b = OpenOptions::new().append(true).open(m.p(p)).unwrap();
        a.seek(SeekFrom::Start(0)).unwrap();
        a.write_all(b"one\n").unwrap();
        b.write_all(b"two\n").unwrap();
        a.write_all(b"three\n").unwrap();
        want.extend_from_slice(b"one\ntwo\nthree\n");
        assert_eq!(read(&m.p(p)), want, "{p}");
    }
    // O_TRUNC on an image file: empty, new content, extension reads zeros.
    let mut t = OpenOptions::new().write(true).truncate(true).open(m.p("usr/bin/tool")).unwrap();
    assert_eq!(t.metadata().unwrap().len(), 0);
    assert_eq!(read(&m.p("usr/bin/tool")), b"");
    t.write_all(b"new").unwrap();
    t.set_len(100_000).unwrap();
    drop(t);
    let mut want_tool = b"new".to_vec();
    want_tool.resize(100_000, 0);
    assert_eq!(read(&m.p("usr/bin/tool")), want_tool);
    // O_TRUNC on a new file.
    write(&m.p("scratch"), &pseudo_random(1, 10_000));
    drop(OpenOptions::new().write(true).truncate(true).open(m.p("scratch")).unwrap());
    assert_eq!(lstat(&m.p("scratch")).len(), 0);
    m.umount();
    let m = g.mount();
    assert_eq!(read(&m.p("usr/bin/tool")), want_tool);
    assert_eq!(read(&m.p("etc/passwd")), b"root:x:0:0:root:/root:/bin/bash\none\ntwo\nthree\n");
    assert_eq!(read(&m.p("new-log")), b"one\ntwo\nthree\n");
    assert_eq!(read(&m.p("scratch")), b"");
    m.umount();
}

/// open(2) with O_CREAT makes and opens a file in one call. The daemon has
/// the kernel make new files with MKNOD and open them without a request
/// (no RELEASE per file); what the caller sees must be what ext4 gives.
#[test]
fn open_o_creat_creates_and_opens_in_one_call() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let dir = m.p("drop");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
    let (ro, excl, trunc) = (cpath(&dir.join("ro")), cpath(&dir.join("excl")), cpath(&dir.join("trunc")));
    // As an unprivileged user, with umask 027: a file created read-only is
    // still writable through the descriptor that created it; O_EXCL refuses
    // an existing name; O_TRUNC of a file just created writes normally.
    let code = in_child(|| {
        // SAFETY: raw syscalls on paths prepared before the fork.
        unsafe {
            libc::umask(0o027);
            if libc::setgid(1234) != 0 || libc::setuid(1234) != 0 {
                return 10;
            }
            let fd = libc::open(ro.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o444);
            if fd < 0 {
                return 11;
            }
            if libc::write(fd, b"read-only\n".as_ptr().cast(), 10) != 10 || libc::close(fd) != 0 {
                return 12;
            }
            // Now that it exists, its mode applies: no write access.
            if libc::open(ro.as_ptr(), libc::O_WRONLY) >= 0 || errno() != libc::EACCES {
                return 13;
            }
            let fd = libc::open(excl.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o666);
            if fd < 0 || libc::close(fd) != 0 {
                return 14;
            }
            if libc::open(excl.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o666) >= 0 || errno() != libc::EEXIST {
                return 15;
            }
            let fd = libc::open(trunc.as_ptr(), libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY, 0o666);
            if fd < 0 || libc::write(fd, b"abc".as_ptr().cast(), 3) != 3 || libc::close(fd) != 0 {
                return 16;
            }
            0
        }
    });
    assert_eq!(code, 0, "child step {code} failed");
    for _ in 0..2 {
        let (r, e, t) = (lstat(&dir.join("ro")), lstat(&dir.join("excl")), lstat(&dir.join("trunc")));
        assert_eq!((r.mode() & 0o7777, r.uid(), r.gid()), (0o440, 1234, 1234), "mode 0444 less umask 027, creator's ids");
        assert_eq!(e.mode() & 0o7777, 0o640);
        assert_eq!(t.mode() & 0o7777, 0o640);
        assert_eq!(read(&dir.join("ro")), b"read-only\n");
        assert_eq!(read(&dir.join("excl")), b"");
        assert_eq!(read(&dir.join("trunc")), b"abc");
    }
    m.umount();
    let m = g.mount();
    let dir = m.p("drop");
    assert_eq!(lstat(&dir.join("ro")).mode() & 0o7777, 0o440);
    assert_eq!(read(&dir.join("ro")), b"read-only\n");
    assert_eq!(read(&dir.join("trunc")), b"abc");
    m.umount();
}

/// A page-aligned buffer (O_DIRECT needs aligned memory).
struct Aligned {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let buf = vec![0u8; len + 4096];
        let off = (4096 - (buf.as_ptr() as usize % 4096)) % 4096;
        Aligned { buf, off, len }
    }
    fn get(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

#[test]
fn o_direct_reads_and_writes_aligned_blocks() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let img = pseudo_random(3, (1 << 20) + 100);
    let f = match OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(m.p("big")) {
        Ok(f) => f,
        Err(e) => panic!("open(O_DIRECT) refused with {e} (errno {:?})", e.raw_os_error()),
    };
    let mut a = Aligned::new(8192);
    let n = f.read_at(a.get(), 3 * 65536 - 4096).unwrap();
    assert_eq!(n, 8192);
    assert_eq!(a.get(), &img[3 * 65536 - 4096..3 * 65536 + 4096], "O_DIRECT read of an image file");
    drop(f);
    let w = OpenOptions::new().read(true).write(true).create(true).custom_flags(libc::O_DIRECT).open(m.p("direct")).unwrap();
    let mut b = Aligned::new(4096);
    b.get().copy_from_slice(&img[..4096]);
    assert_eq!(w.write_at(b.get(), 8192).unwrap(), 4096);
    let mut c = Aligned::new(4096);
    assert_eq!(w.read_at(c.get(), 8192).unwrap(), 4096);
    assert_eq!(c.get(), &img[..4096]);
    // O_DIRECT write into the image file (copy-on-write of one window).
    let bw = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(m.p("big")).unwrap();
    assert_eq!(bw.write_at(b.get(), 65536).unwrap(), 4096);
    drop((w, bw));
    m.umount();
    let m = g.mount();
    let mut want = img.clone();
    want[65536..65536 + 4096].copy_from_slice(&img[..4096]);
    assert_eq!(read(&m.p("big")), want);
    let d = read(&m.p("direct"));
    assert_eq!(d.len(), 12288);
    assert!(d[..8192].iter().all(|&x| x == 0) && d[8192..] == img[..4096]);
    m.umount();
}

fn mmap_write(p: &Path, len: usize, edits: &[(usize, &[u8])]) {
    let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
    // SAFETY: mapping `len` bytes of a file we hold open; the pointer is only
    // used through the slice below until munmap.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, f.as_raw_fd(), 0)
    };
    assert_ne!(ptr, libc::MAP_FAILED, "mmap {}: {}", p.display(), std::io::Error::last_os_error());
    // SAFETY: ptr maps len bytes, readable and writable, shared with the file.
    let map = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
    for (off, data) in edits {
        map[*off..*off + data.len()].copy_from_slice(data);
    }
    // SAFETY: ptr/len are the mapping created above.
    assert_eq!(unsafe { libc::msync(ptr, len, libc::MS_SYNC) }, 0, "msync: {}", std::io::Error::last_os_error());
    // SAFETY: as above; `map` is not used after this.
    assert_eq!(unsafe { libc::munmap(ptr, len) }, 0);
}

#[test]
fn shared_writable_mmap() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let len = (1 << 20) + 100;
    let mut want = pseudo_random(3, len);
    let edits: [(usize, &[u8]); 3] = [(70_000, b"mapped write one"), (1_000_000, b"two"), (len - 5, b"TAIL!")];
    mmap_write(&m.p("big"), len, &edits);
    for (off, d) in edits {
        want[off..off + d.len()].copy_from_slice(d);
    }
    assert_eq!(read(&m.p("big")), want, "read after msync/munmap");
    let d = data_bytes(&g);
    assert!(d.len() == 1 && d[0].2 <= 4 * 65536, "mmap writes to 3 windows stored {d:?}");
    // A new file.
    let f = File::create(m.p("mapped-new")).unwrap();
    f.set_len(200_000).unwrap();
    drop(f);
    mmap_write(&m.p("mapped-new"), 200_000, &[(0, b"start"), (131_070, b"across a window")]);
    let mut want_new = vec![0u8; 200_000];
    want_new[..5].copy_from_slice(b"start");
    want_new[131_070..131_085].copy_from_slice(b"across a window");
    assert_eq!(read(&m.p("mapped-new")), want_new);
    m.umount();
    let m = g.mount();
    assert_eq!(read(&m.p("big")), want, "after remount");
    assert_eq!(read(&m.p("mapped-new")), want_new, "after remount");
    m.umount();
}

#[test]
fn flock_and_fcntl_locks_between_processes() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    write(&m.p("new-lockfile"), b"lock me");
    for name in ["etc/passwd", "new-lockfile"] {
        let path = cpath(&m.p(name));
        let f = OpenOptions::new().read(true).write(true).open(m.p(name)).unwrap();
        // flock: the parent holds LOCK_EX; a second process gets EWOULDBLOCK.
        // SAFETY: flock on an fd we own.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        let try_flock = || {
            // SAFETY (child): raw syscalls on a path prepared before fork.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
            if fd < 0 {
                return 3;
            }
            // SAFETY: as above.
            let r = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                0
            } else if errno() == libc::EWOULDBLOCK {
                1
            } else {
                2
            }
        };
        assert_eq!(in_child(try_flock), 1, "{name}: second flock(LOCK_EX|LOCK_NB) must fail with EWOULDBLOCK");
        // SAFETY: flock on an fd we own.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) }, 0);
        assert_eq!(in_child(try_flock), 0, "{name}: flock after unlock");

        // fcntl (POSIX) record locks.
        // SAFETY: a plain C struct; all-zero is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        fl.l_start = 0;
        fl.l_len = 100;
        // SAFETY: F_SETLK with a valid flock struct.
        assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) }, 0, "{}", std::io::Error::last_os_error());
        let parent = std::process::id() as i32;
        let path = &path;
        let try_fcntl = |start: i64, len: i64| {
            move || {
                // SAFETY (child): raw syscalls only.
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
                if fd < 0 {
                    return 3;
                }
                // SAFETY: zeroed C struct.
                let mut l: libc::flock = unsafe { std::mem::zeroed() };
                l.l_type = libc::F_WRLCK as i16;
                l.l_whence = libc::SEEK_SET as i16;
                l.l_start = start;
                l.l_len = len;
                // SAFETY: F_SETLK with a valid flock struct.
                if unsafe { libc::fcntl(fd, libc::F_SETLK, &l) } == 0 {
                    return 0;
                }
                let e = errno();
                if e != libc::EAGAIN && e != libc::EACCES {
                    return 2;
                }
                // F_GETLK names the holder.
                // SAFETY: F_GETLK with a valid flock struct.
                if unsafe { libc::fcntl(fd, libc::F_GETLK, &mut l) } != 0 || l.l_pid != parent || l.l_type != libc::F_WRLCK as i16 {
                    return 4;
                }
                1
            }
        };
        assert_eq!(in_child(try_fcntl(50, 10)), 1, "{name}: overlapping F_SETLK must fail with EAGAIN (EWOULDBLOCK)");
        assert_eq!(in_child(try_fcntl(200, 10)), 0, "{name}: a disjoint range must lock");
        fl.l_type = libc::F_UNLCK as i16;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) }, 0);
        assert_eq!(in_child(try_fcntl(50, 10)), 0, "{name}: F_SETLK after unlock");
    }
    m.umount();
}

#[test]
fn fsync_then_remount_keeps_the_data() {
    let g = Guest::new(small_tree);
    let new_data = pseudo_random(21, 333_333);
    let mut tool = pseudo_random(1, 300_000);
    tool[100_000..100_005].copy_from_slice(b"PATCH");
    let m = g.mount();
    let mut f = File::create(m.p("synced")).unwrap();
    f.write_all(&new_data).unwrap();
    f.sync_all().unwrap();
    let t = OpenOptions::new().write(true).open(m.p("usr/bin/tool")).unwrap();
    t.write_all_at(b"PATCH", 100_000).unwrap();
    t.sync_data().unwrap();
    let d = File::open(&g.mp).unwrap();
    d.sync_all().unwrap();
    drop((f, t, d));
    m.umount();
    let m = g.mount();
    assert_eq!(read(&m.p("synced")), new_data);
    assert_eq!(read(&m.p("usr/bin/tool")), tool);
    // fsync, then the daemon dies (kill -9): the data is still there.
    let mut f = OpenOptions::new().append(true).open(m.p("synced")).unwrap();
    f.write_all(b"after remount").unwrap();
    f.sync_all().unwrap();
    drop(f);
    m.kill9();
    let m = g.mount();
    let mut want = new_data.clone();
    want.extend_from_slice(b"after remount");
    assert_eq!(read(&m.p("synced")), want);
    m.umount();
}

/// Find `needle` in the repository's packs; returns (pack, offset).
fn find_in_packs(repo: &Path, needle: &[u8]) -> Vec<(PathBuf, usize)> {
    let mut hits = Vec::new();
    for e in fs::read_dir(repo.join("packs")).unwrap() {
        let p = e.unwrap().path();
        if !p.is_file() {
            continue;
        }
        let data = fs::read(&p).unwrap();
        let mut from = 0;
        while let Some(i) = data[from..].windows(needle.len()).position(|w| w == needle) {
            hits.push((p.clone(), from + i));
            from += i + 1;
        }
    }
    hits
}

#[test]
fn damaged_chunk_gives_eio_for_its_file_only_and_is_logged() {
    let victim = pseudo_random(31, 1 << 20);
    let others = [("ok/one", pseudo_random(32, 300_000)), ("ok/two", b"plain text\n".to_vec()), ("ok/three", pseudo_random(33, 1 << 20))];
    let g = Guest::new(|src| {
        fs::create_dir(src.join("ok")).unwrap();
        write(&src.join("victim"), &victim);
        for (p, d) in &others {
            write(&src.join(p), d);
        }
    });
    // Chunk 5 of the victim: flip a byte of its stored (raw: random data does
    // not compress) bytes in the pack.
    let chunk = &victim[5 * 65536..6 * 65536];
    let chunk_id = blake3::hash(chunk).to_hex().to_string();
    let hits = find_in_packs(&g.r.repo, &chunk[1000..1064]);
    assert_eq!(hits.len(), 1, "the chunk's bytes should be in exactly one pack: {hits:?}");
    let (pack, at) = &hits[0];
    let f = OpenOptions::new().read(true).write(true).open(pack).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, *at as u64 + 10).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], *at as u64 + 10).unwrap();
    drop(f);

    let m = g.mount();
    assert_eq!(lstat(&m.p("victim")).len(), 1 << 20, "metadata of the damaged file still reads");
    let err = fs::read(m.p("victim")).expect_err("reading a file with a damaged chunk must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "damaged chunk: {err}");
    // The chunks before the damage are fine (no readahead across it).
    let mut head = vec![0u8; 4096];
    File::open(m.p("victim")).unwrap().read_exact_at(&mut head, 0).unwrap();
    assert_eq!(head, victim[..4096]);
    for (p, d) in &others {
        assert_eq!(&read(&m.p(p)), d, "{p} must read fine next to a damaged file");
    }
    m.umount();
    let log = g.log();
    let line = log.lines().find(|l| l.contains(&chunk_id));
    assert!(line.is_some(), "daemon.log does not name chunk b3:{chunk_id}:\n{log}");
    eprintln!("daemon.log: {}", line.unwrap_or_default());
}

#[test]
fn corrupt_overlay_database_gives_a_clear_mount_error() {
    let g = Guest::new(small_tree);
    // Two sessions, so RocksDB has recovered its log into table files.
    for round in 0..2 {
        let m = g.mount();
        for i in 0..50 {
            write(&m.p(&format!("file-{round}-{i}")), format!("{round} {i}").as_bytes());
        }
        m.umount();
    }
    let meta = g.overlay.join("meta");
    let ssts: Vec<PathBuf> = fs::read_dir(&meta).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "sst")).collect();
    assert!(!ssts.is_empty(), "no .sst in {}: {:?}", meta.display(), names(&meta));
    let backup = g.r.scratch("meta-backup");
    assert!(Command::new("cp").arg("-a").arg(&meta).arg(&backup).status().unwrap().success());
    let restore = || {
        fs::remove_dir_all(&meta).unwrap();
        assert!(Command::new("cp").arg("-a").arg(&backup).arg(&meta).status().unwrap().success());
    };

    // `needle`: what the last line of the error must say about the cause.
    let expect_clear_failure = |what: &str, needle: &str| {
        let t = Instant::now();
        let out = g.try_mount();
        let took = t.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "mount with {what} succeeded");
        assert!(!is_mounted(&g.mp), "mounted despite {what}");
        assert!(took < Duration::from_secs(30), "mount with {what} took {took:?}");
        assert!(common::daemon_pid(&g.mp).is_none(), "a daemon is left running after {what}");
        let log = g.log();
        assert!(!stderr.contains("panicked") && !log.contains("panicked"), "panic with {what}:\n{stderr}\n{log}");
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        assert!(
            last.contains("overlay database") && last.contains(needle),
            "unclear error for {what} (want \"overlay database\" and {needle:?} in the last line):\n{stderr}"
        );
        eprintln!("{what}: {last}");
    };
    // Truncated table files.
    for p in &ssts {
        let len = fs::metadata(p).unwrap().len();
        OpenOptions::new().write(true).open(p).unwrap().set_len(len / 2).unwrap();
    }
    expect_clear_failure("truncated .sst files", "Corruption");
    // Garbage in table files (same size).
    restore();
    for p in &ssts {
        let len = fs::metadata(p).unwrap().len() as usize;
        fs::write(p, pseudo_random(99, len)).unwrap();
    }
    expect_clear_failure("garbage .sst files", "Corruption");
    // Garbage CURRENT.
    restore();
    fs::write(meta.join("CURRENT"), b"\x00garbage\xff").unwrap();
    expect_clear_failure("a garbage CURRENT", "CURRENT");
    // Missing CURRENT.
    restore();
    fs::remove_file(meta.join("CURRENT")).unwrap();
    expect_clear_failure("a missing CURRENT", "CURRENT");
    // The backup itself is fine: the failures above came from the damage.
    restore();
    let m = g.mount();
    assert_eq!(read(&m.p("file-1-49")), b"1 49");
    m.umount();
}

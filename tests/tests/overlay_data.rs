//! Where a guest's file bytes live, and what writing them changes besides
//! the bytes, asserted on a real lvrepo mount:
//! - a small file the guest creates keeps its bytes in the overlay database
//!   (no data file on the overlay partition) until it outgrows the inline
//!   limit, and reads the same before and after the move and a remount;
//! - a write or truncate by a caller without CAP_FSETID clears setuid (and
//!   setgid of a group-executable file), on every write, as on ext4; root's
//!   do not. The daemon does this for the kernel (FUSE_HANDLE_KILLPRIV_V2),
//!   so the kernel does not ask for `security.capability` before each write.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use common::{cpath, errno, get_xattr, in_child, Guest, Mount};
use lvrepo_tests::fixture::{self, build_hostile_tree, pseudo_random};

/// What a file keeps inline at most (`overlay::data::INLINE_MAX`).
const INLINE_MAX: usize = 16 << 10;
/// The user the unprivileged writes run as.
const NOBODY: libc::uid_t = 65534;

fn hostile() -> Guest {
    Guest::new(|src| build_hostile_tree(src).expect("build the hostile tree"))
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn data_file(g: &Guest, m: &Mount<'_>, rel: &str) -> PathBuf {
    let ino = fs::symlink_metadata(m.p(rel)).unwrap_or_else(|e| panic!("lstat {rel}: {e}")).ino();
    g.overlay.join("data").join(format!("{ino:016x}"))
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display())).mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

#[test]
fn small_new_files_live_in_the_database_until_they_outgrow_it() {
    let g = hostile();
    let m = g.mount();
    // A small file: no data file, and its bytes read back.
    let small = pseudo_random(1, 3000);
    fs::write(m.p("small"), &small).expect("write small");
    assert!(!data_file(&g, &m, "small").exists(), "a 3000-byte file got a data file");
    assert_eq!(read(&m.p("small")), small);

    // Grown in 4 KiB writes: inline up to the limit, then a data file with
    // every byte written so far.
    let mut model = Vec::new();
    let f = OpenOptions::new().create(true).truncate(true).write(true).open(m.p("growing")).expect("create growing");
    for i in 0..6u64 {
        let piece = pseudo_random(10 + i, 4096);
        f.write_all_at(&piece, i * 4096).expect("write piece");
        model.extend_from_slice(&piece);
        assert_eq!(read(&m.p("growing")), model, "after {} bytes", model.len());
        let expect_file = model.len() > INLINE_MAX;
        assert_eq!(data_file(&g, &m, "growing").exists(), expect_file, "data file after {} bytes", model.len());
    }
    drop(f);

    // Shrink and extend an inline file: the cut bytes read as zeros.
    let s = m.p("shrunk");
    fs::write(&s, pseudo_random(2, 10_000)).expect("write shrunk");
    let f = OpenOptions::new().write(true).open(&s).expect("open shrunk");
    f.set_len(100).expect("truncate to 100");
    f.set_len(5000).expect("extend to 5000");
    f.write_all_at(b"tail", 8000).expect("write past the end");
    drop(f);
    let mut want = pseudo_random(2, 100);
    want.resize(8000, 0);
    want.extend_from_slice(b"tail");
    assert_eq!(read(&s), want);
    assert!(!data_file(&g, &m, "shrunk").exists(), "an 8 KiB file got a data file");

    // SEEK_DATA / SEEK_HOLE: an inline file is all data.
    let mut f = fs::File::open(&s).expect("open shrunk");
    // SAFETY: lseek on a descriptor we own.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
    assert_eq!(hole, want.len() as i64, "SEEK_HOLE of an inline file");
    assert_eq!(f.seek(SeekFrom::End(0)).expect("seek end"), want.len() as u64);
    drop(f);

    // Hardlinked and renamed over: still one set of bytes, the replaced
    // file's gone.
    fs::hard_link(m.p("small"), m.p("small-link")).expect("link");
    fs::write(m.p("victim"), b"to be replaced").expect("write victim");
    fs::rename(m.p("small-link"), m.p("victim")).expect("rename over");
    assert_eq!(read(&m.p("victim")), small);

    let check = |m: &Mount<'_>, when: &str| {
        assert_eq!(read(&m.p("small")), small, "{when}");
        assert_eq!(read(&m.p("victim")), small, "{when}");
        assert_eq!(read(&m.p("growing")), model, "{when}");
        assert_eq!(read(&m.p("shrunk")), want, "{when}");
    };
    check(&m, "mounted");
    m.umount();
    let m = g.mount();
    check(&m, "after a remount");
    // Removed: nothing is left on the partition for them.
    for f in ["small", "victim", "growing", "shrunk"] {
        fs::remove_file(m.p(f)).expect("rm");
    }
    m.umount();
    assert_eq!(g.data_files(), Vec::<PathBuf>::new(), "data files left after the files were removed");
}

/// Write `text` at the end of `path` as user nobody; 0 or the errno.
fn append_as_nobody(path: &Path, text: &'static [u8]) -> i32 {
    let c = cpath(path);
    in_child(move || {
        // SAFETY: raw syscalls in the forked child, on a path prepared
        // before the fork.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                return 100;
            }
            let fd = libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_APPEND);
            if fd < 0 {
                return errno();
            }
            let ok = libc::write(fd, text.as_ptr().cast(), text.len()) == text.len() as isize;
            libc::close(fd);
            if ok {
                0
            } else {
                errno()
            }
        }
    })
}

/// Truncate `path` to `len` as user nobody; 0 or the errno.
fn truncate_as_nobody(path: &Path, len: i64) -> i32 {
    let c = cpath(path);
    in_child(move || {
        // SAFETY: as in `append_as_nobody`.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                return 100;
            }
            if libc::truncate(c.as_ptr(), len) == 0 {
                0
            } else {
                errno()
            }
        }
    })
}

#[test]
fn writes_and_truncates_by_others_clear_setuid_and_setgid() {
    let g = hostile();
    let m = g.mount();
    let f = m.p("suid-prog");
    fs::write(&f, b"#!/bin/true\n").expect("write");

    // Root has CAP_FSETID: its writes keep both bits.
    chmod(&f, 0o6777);
    for _ in 0..3 {
        fixture::append(&f, b"# root\n").expect("append as root");
    }
    assert_eq!(mode(&f), 0o6777, "a write by root cleared setuid/setgid");

    // Another user's write clears both (the file is group-executable) ...
    assert_eq!(append_as_nobody(&f, b"# nobody\n"), 0);
    assert_eq!(mode(&f), 0o0777, "a write by nobody kept setuid/setgid");
    // ... on every write, not only the first the kernel sees of the file.
    chmod(&f, 0o6777);
    assert_eq!(append_as_nobody(&f, b"# nobody again\n"), 0);
    assert_eq!(mode(&f), 0o0777, "a second write by nobody kept setuid/setgid");
    // setgid without group-execute is mandatory locking, not set-group-ID:
    // it stays.
    chmod(&f, 0o6766);
    assert_eq!(append_as_nobody(&f, b"# nobody, g-x\n"), 0);
    assert_eq!(mode(&f), 0o2766, "setgid of a file that is not group-executable");

    // A truncate by another user clears setuid too.
    chmod(&f, 0o4777);
    assert_eq!(truncate_as_nobody(&f, 5), 0);
    assert_eq!(mode(&f), 0o0777, "a truncate by nobody kept setuid");
    assert_eq!(read(&f), b"#!/bi");

    // An image file, a big (data file) one.
    let img = m.p("files/r1m3");
    chmod(&img, 0o4777);
    assert_eq!(append_as_nobody(&img, b"appended"), 0);
    assert_eq!(mode(&img), 0o0777, "a write by nobody into an image file kept setuid");

    // A truncate drops file capabilities, whoever does it.
    let caps = m.p("capfile");
    fs::write(&caps, b"#!/bin/true\n").expect("write capfile");
    xattr::set(&caps, "security.capability", &fixture::cap_net_raw_ep()).expect("set caps");
    OpenOptions::new().write(true).open(&caps).expect("open capfile").set_len(3).expect("truncate");
    assert_eq!(get_xattr(&caps, "security.capability"), Err(libc::ENODATA), "a truncate kept file capabilities");

    m.umount();
    let m = g.mount();
    assert_eq!(mode(&m.p("suid-prog")), 0o0777, "after a remount");
    assert_eq!(mode(&m.p("files/r1m3")), 0o0777, "after a remount");
    m.umount();
}

/// ioctls the filesystem does not implement fail as on ext4, with ENOTTY
/// (Python asks this of every file it opens).
#[test]
fn unknown_ioctls_are_enotty() {
    let g = hostile();
    let m = g.mount();
    fs::write(m.p("plain"), b"x").expect("write");
    let f = fs::File::open(m.p("plain")).expect("open");
    let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: TCGETS fills a termios on success; the buffer is large enough.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TCGETS, t.as_mut_ptr()) };
    assert_eq!((r, errno()), (-1, libc::ENOTTY));
    drop(f);
    m.umount();
}

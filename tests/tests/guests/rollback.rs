//! Checkpoint → rollback restores every detail, mounted or not, also with a
//! writer running; a fresh guest shows exactly its image.

use super::*;
use super::cuts::record_file_body;

// ─────────────────── 1. checkpoint → rollback is exact ───────────────────

/// Image for the exactness tests: the hostile fixture (every node kind, odd
/// names, sparse files, ACLs, caps, devices, hardlinks) plus a small "system".
pub(super) fn build_system(src: &Path) {
    let d = |r: &str| src.join(r);
    for dir in ["etc/conf.d", "data", "hl", "opt/app/bin", "opt/app/lib", "opt/app/share/doc", "opt/app/etc", "var/cache/sub", "usr"] {
        mkdir(&d(dir));
    }
    put(&d("etc/passwd"), b"root:x:0:0:root:/root:/bin/bash\n");
    put(&d("etc/hosts"), b"127.0.0.1 localhost\n");
    put(&d("etc/motd"), b"welcome\n");
    symlink("passwd", &d("etc/link"));
    put(&d("etc/conf.d/a.conf"), b"a=1\n");
    put(&d("etc/conf.d/b.conf"), b"b=2\n");
    put(&d("data/big"), &pseudo_random(7, 300_000));
    put(&d("data/trunc"), &pseudo_random(8, 200_000));
    put(&d("data/grow"), &pseudo_random(9, 100_000));
    put(&d("hl/a"), b"pair\n");
    ln(&d("hl/a"), &d("hl/b"));
    put(&d("hl/c"), b"single\n");
    put(&d("opt/app/bin/tool"), &pseudo_random(10, 50_000));
    chmod(&d("opt/app/bin/tool"), 0o755);
    put(&d("opt/app/lib/libx.so"), &pseudo_random(11, 70_000));
    put(&d("opt/app/share/doc/README"), b"the app\n");
    symlink("../bin/tool", &d("opt/app/etc/tool-link"));
    put(&d("var/cache/x"), b"x\n");
    put(&d("var/cache/y"), &pseudo_random(12, 90_000));
    put(&d("var/cache/sub/z"), b"z\n");
    put(&d("usr/attrs"), b"with xattrs\n");
    xattr_set(&d("usr/attrs"), "user.orig", b"1");
    xattr_set(&d("usr/attrs"), "user.keep", b"2");
    put(&d("usr/owned"), b"owned by 100\n");
    lchown(&d("usr/owned"), 100, 100);
    // The hostile tree adds its own dirs and then sets every mtime (ours too).
    fixture::build_hostile_tree(src).expect("hostile tree");
}

/// Changes of every kind, part A.
pub(super) fn change_a(m: &Mounted) {
    let p = |r: &str| m.p(r);
    // Content: a write inside a window of an image file, append, truncate, extend.
    write_at(&p("data/big"), 70_000, &[0xAB; 1000]);
    append(&p("etc/motd"), b"today\n");
    set_len(&p("data/trunc"), 100_000);
    set_len(&p("data/grow"), 250_000);
    // chmod / chown / utimes (on an image file, an image dir, and the root).
    chmod(&p("etc/passwd"), 0o600);
    lchown(&p("etc/hosts"), 1000, 1001);
    mtime(&p("usr/owned"), 1_700_000_000, 123);
    mtime(&p("etc/conf.d"), 1_700_000_001, 5);
    chmod(&p(""), 0o750);
    // Deletes: an image file, an image dir with content, one of three hardlinks.
    rm(&p("files/one"));
    rm_rf(&p("var/cache"));
    rm(&p("hard/third"));
    // Renames: a dir holding image content, a file across dirs.
    mv(&p("opt/app"), &p("opt/application"));
    mv(&p("etc/conf.d/a.conf"), &p("etc/a.conf"));
    // Hardlinks: new ones to image files; unlink one of an image pair.
    ln(&p("etc/passwd"), &p("etc/passwd.bak"));
    ln(&p("data/big"), &p("data/big.link"));
    rm(&p("hl/a"));
    // xattrs and a POSIX ACL (access on a file, default on a dir).
    xattr_set(&p("opt/application/bin/tool"), "user.new", b"value");
    xattr_rm(&p("usr/attrs"), "user.orig");
    xattr_set(&p("usr/attrs"), "user.keep", b"changed");
    xattr_set(&p("etc/hosts"), "system.posix_acl_access", &acl_user_1234_r());
    xattr_set(&p("opt/application/share"), "system.posix_acl_default", &acl_user_1234_r());
    // Symlinks: new (dangling, chowned), retargeted.
    symlink("/does/not/exist", &p("etc/newlink"));
    lchown(&p("etc/newlink"), 5, 5);
    rm(&p("etc/link"));
    symlink("hosts", &p("etc/link"));
    // A fifo in a new dir.
    mkdir(&p("run"));
    chmod(&p("run"), 0o700);
    mknod(&p("run/ctl.fifo"), libc::S_IFIFO, 0o620, 0, 0).expect("mkfifo");
    // New files: random, sparse, setuid + owned, a device.
    mkdir(&p("srv"));
    put(&p("srv/new.bin"), &pseudo_random(20, 100_000));
    put(&p("srv/sparse"), b"");
    set_len(&p("srv/sparse"), 3 << 20);
    write_at(&p("srv/sparse"), 2 << 20, &pseudo_random(21, 4096));
    put(&p("srv/suid"), b"#!/bin/sh\n");
    lchown(&p("srv/suid"), 7, 7);
    chmod(&p("srv/suid"), 0o4755);
    mknod(&p("srv/null"), libc::S_IFCHR, 0o666, 1, 3).expect("mknod");
}

/// Different changes, part B (on top of A).
fn change_b(m: &Mounted) {
    let p = |r: &str| m.p(r);
    write_at(&p("srv/new.bin"), 10, b"rewritten");
    set_len(&p("srv/sparse"), 1 << 20);
    rm(&p("etc/passwd.bak"));
    mv(&p("opt/application"), &p("srv/app"));
    xattr_rm(&p("etc/hosts"), "system.posix_acl_access");
    rm(&p("usr/owned"));
    mkdir(&p("usr/owned"));
    put(&p("usr/owned/inner"), b"a dir now\n");
    chmod(&p("etc"), 0o700);
    append(&p("files/r1m3"), b"appended to an image file of 1 MiB + 3\n");
    rm(&p("sparse/ten-mib"));
    rm(&p("run/ctl.fifo"));
    drop(std::os::unix::net::UnixListener::bind(p("srv/sock")).expect("bind a socket"));
    mkdir(&p("many"));
    for i in 0..50 {
        put(&p(&format!("many/f{i:02}")), format!("file {i}\n").as_bytes());
    }
    mtime(&p(""), 1_750_000_000, 999);
}

/// `pread` of `n` bytes at 0 through an open handle.
fn pread_all(f: &fs::File, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let got = f.read_at(&mut buf, 0)?;
    buf.truncate(got);
    Ok(buf)
}

#[test]
fn rollback_to_a_mounted_checkpoint_restores_every_detail() {
    let w = World::new(false, build_system);
    let g = w.guest("g");
    let m = g.mount();
    change_a(&m);
    let m1 = m.manifest();
    let motd_a = fs::read(m.p("etc/motd")).expect("read motd");
    let newbin_a = fs::read(m.p("srv/new.bin")).expect("read new.bin");
    assert_eq!(g.checkpoint("after A"), 1);
    // The checkpoint itself changes nothing visible.
    assert_same("mount right after a mounted checkpoint vs before", &m1, &m.manifest());
    change_b(&m);
    let m2 = m.manifest();
    assert_differs("state A vs state B", &m1, &m2);
    assert_eq!(g.checkpoint("after B"), 2);

    // More changes (never checkpointed), and handles held across the
    // rollback: an image file, a file the guest created before checkpoint
    // 1, a file created after it, and a working directory.
    append(&m.p("etc/motd"), b"state C\n");
    put(&m.p("srv/c-only"), b"C\n");
    let motd = fs::File::open(m.p("etc/motd")).expect("open motd");
    let newbin = fs::File::open(m.p("srv/new.bin")).expect("open new.bin");
    let newbin_ino = newbin.metadata().expect("fstat").ino();
    let inner = fs::File::open(m.p("usr/owned/inner")).expect("open usr/owned/inner");
    let srv = fs::File::open(m.p("srv")).expect("open srv");
    let kept_warm = m.manifest(); // every inode and dentry now in the kernel's caches
    assert_differs("state C vs state B", &m2, &kept_warm);

    // Roll back WHILE MOUNTED: through the same mount, without remounting,
    // every path, content and attribute is checkpoint 1's.
    g.rollback(1);
    assert_same("mounted guest right after a live rollback to checkpoint 1 (state A)", &m1, &m.manifest());
    assert_eq!(pread_all(&motd, 1 << 20).expect("read motd through the old handle"), motd_a, "an image file's open handle reads the checkpoint's content");
    assert_eq!(pread_all(&newbin, 1 << 20).expect("read new.bin through the old handle"), newbin_a, "a created file's open handle reads the checkpoint's content");
    assert_eq!(newbin.metadata().expect("fstat new.bin").ino(), newbin_ino, "a created file keeps its inode number across a live rollback");
    let e = pread_all(&inner, 100).expect_err("a file that is not in the checkpoint must not be readable through an old handle");
    assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "handle to a file absent from the checkpoint: {e}");
    assert!(srv.metadata().is_ok(), "a directory present in the checkpoint stays usable through its handle");
    drop((motd, newbin, inner, srv));
    // The guest keeps working after the switch (the next rollback undoes it).
    put(&m.p("srv/after-rollback"), b"written after the rollback\n");
    assert_eq!(fs::read(m.p("srv/after-rollback")).expect("read back"), b"written after the rollback\n");

    g.rollback(2);
    assert_same("mounted guest after a live rollback to checkpoint 2 (state B)", &m2, &m.manifest());
    m.umount();
    let m = g.mount();
    assert_same("remount after live rollbacks", &m2, &m.manifest());
    m.umount();
    assert_eq!(g.checkpoints(), vec![1, 2], "rollback must not add or drop checkpoints");
    assert_eq!(g.gen_dirs().len(), 1, "old overlay generations left behind: {:?}", g.gen_dirs());
    assert!(!g.log().contains("ERROR"), "the daemon logged errors:\n{}", g.log());
}

/// Writes files `dir/NNNNNNNN` (each one `write(2)` of `record_file_body`)
/// until `stop` is set, opening each anew; returns (files written, errnos
/// seen). A live rollback makes some fail (documented: ENOENT, ESTALE).
fn file_writer(dir: PathBuf, stop: std::sync::Arc<std::sync::atomic::AtomicBool>, done: std::sync::Arc<std::sync::atomic::AtomicU64>) -> std::thread::JoinHandle<BTreeSet<i32>> {
    std::thread::spawn(move || {
        let mut errs = BTreeSet::new();
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match fs::write(dir.join(format!("{i:08}")), record_file_body(i)) {
                Ok(()) => {
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    errs.insert(e.raw_os_error().unwrap_or(-1));
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            i += 1;
        }
        errs
    })
}

/// Image for the writer tests: just `/etc/hostname`.
pub(super) fn build_hostname_only(src: &Path) {
    mkdir(&src.join("etc"));
    put(&src.join("etc/hostname"), b"image\n");
}

#[test]
fn live_rollback_with_a_writer_running() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let w = World::new(true, build_hostname_only);
    let g = w.guest("busy");
    let m = g.mount();
    put(&m.p("etc/state"), b"one\n");
    let s1 = m.manifest();
    assert_eq!(g.checkpoint("before the writer"), 1);
    mkdir(&m.p("wlog"));
    let wait_for = |done: &AtomicU64, n: u64| {
        let start = Instant::now();
        while done.load(Ordering::Relaxed) < n {
            assert!(start.elapsed() < Duration::from_secs(120), "writer made no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
    };

    // 1. The writer writes into a directory the checkpoint lacks: after the
    // live rollback the guest is exactly checkpoint 1, and the writer saw
    // only the documented errors.
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let h = file_writer(m.p("wlog"), stop.clone(), done.clone());
    wait_for(&done, 200);
    g.rollback(1);
    let after = done.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let errs = h.join().expect("writer thread");
    assert!(errs.iter().all(|e| [libc::ENOENT, libc::ESTALE].contains(e)), "writer saw errors other than ENOENT/ESTALE: {errs:?}");
    assert!(errs.contains(&libc::ENOENT), "the writer's directory must be gone after the rollback");
    assert_eq!(done.load(Ordering::Relaxed), after, "no write may succeed into the rolled-back directory");
    assert_same("live rollback with a writer running", &s1, &m.manifest());

    // 2. Checkpoint while the writer runs, roll back to it while it still
    // runs: every file is whole (its full body, or empty if the cut fell
    // between its creation and its one write), never a mix.
    mkdir(&m.p("wlog"));
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let h = file_writer(m.p("wlog"), stop.clone(), done.clone());
    wait_for(&done, 200);
    assert_eq!(g.checkpoint("during writes"), 2);
    wait_for(&done, 400);
    g.rollback(2);
    wait_for(&done, 500);
    stop.store(true, Ordering::Relaxed);
    let errs = h.join().expect("writer thread");
    assert!(errs.iter().all(|e| [libc::ENOENT, libc::ESTALE].contains(e)), "writer saw errors other than ENOENT/ESTALE: {errs:?}");
    let mut empty = 0;
    for e in fs::read_dir(m.p("wlog")).expect("readdir wlog") {
        let e = e.expect("readdir");
        let i: u64 = e.file_name().to_string_lossy().parse().expect("numeric name");
        let body = fs::read(e.path()).expect("read a writer file");
        if body.is_empty() {
            empty += 1;
        } else {
            assert_eq!(body, record_file_body(i), "writer file {i} is torn or mixed after the live rollback");
        }
    }
    assert!(empty <= 2, "{empty} empty writer files: only the ones cut between create and write may be empty");
    let live = m.manifest();
    m.umount();
    let m = g.mount();
    assert_same("remount after live rollbacks with a writer", &live, &m.manifest());
    m.umount();
}

#[test]
fn rollback_to_an_unmounted_checkpoint_restores_every_detail() {
    let w = World::new(false, build_system);
    let g = w.guest("g");
    let m = g.mount();
    change_a(&m);
    let m1 = m.manifest();
    m.umount();
    let gen0 = g.generation();
    assert_eq!(g.checkpoint("after A"), 1);
    assert_eq!(g.generation(), gen0 + 1, "an unmounted checkpoint rebases the guest on a new overlay generation");
    // The rebase is invisible: the guest looks exactly as before.
    let m = g.mount();
    assert_same("mount after the unmounted checkpoint (rebased) vs before", &m1, &m.manifest());
    change_b(&m);
    let m2 = m.manifest();
    assert_differs("state A vs state B", &m1, &m2);
    m.umount();

    g.rollback(1);
    let m = g.mount();
    assert_same("rollback to unmounted checkpoint 1 (state A)", &m1, &m.manifest());
    // And the rolled-back guest keeps working: change it again (new mtimes,
    // so a new state B'), checkpoint, roll back and forth.
    change_b(&m);
    let m2b = m.manifest();
    m.umount();
    assert_eq!(g.checkpoint("B again"), 2);
    g.rollback(1);
    let m = g.mount();
    assert_same("rollback to 1 after checkpoint 2", &m1, &m.manifest());
    m.umount();
    g.rollback(2);
    let m = g.mount();
    assert_same("rollback to checkpoint 2 (state B')", &m2b, &m.manifest());
    m.umount();
    assert_eq!(g.gen_dirs().len(), 1, "old overlay generations left behind: {:?}", g.gen_dirs());
}

#[test]
fn fresh_guest_shows_exactly_its_image() {
    let w = World::new(false, build_system);
    let g = w.guest("g");
    let m = g.mount();
    assert_same("image source vs fresh guest mount", &manifest(&w.src).expect("manifest src"), &m.manifest());
    m.umount();
    assert_eq!(diff_set(&g.diff_json(None)), BTreeSet::new(), "a fresh guest differs from nothing");
}

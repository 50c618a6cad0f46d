//! Names: rename (RENAME_NOREPLACE, RENAME_EXCHANGE), rmdir and unlink of image
//! entries, hardlinks and open unlinked files, symlinks, FIFOs and sockets.

use super::*;

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

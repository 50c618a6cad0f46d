//! File I/O: O_APPEND, O_TRUNC, O_CREAT, O_DIRECT, shared writable mmap,
//! flock and fcntl locks, fsync across a remount.

use super::*;

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

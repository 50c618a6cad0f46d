//! Crash safety of the overlay: the mount daemon is killed with SIGKILL at
//! random points while a writer process appends fsync'ed records (or runs a
//! burst of metadata operations with fsync on the directories); the dead mount
//! is detached, the same overlay mounted again, and everything acknowledged
//! (fsync returned, then the writer reported it on a pipe) must be there and
//! intact, with nothing else changed.
//!
//! The writer is a forked child of the test process that only makes raw
//! system calls (no allocation between fork and _exit). Seeds are printed;
//! rerun with LVREPO_CRASH_SEED=... to replay the same kill points.

mod common;

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{cpath, Guest, Mount, Rng};
use lvrepo_tests::fixture::pseudo_random;

/// Record size: records straddle pages and 64 KiB chunk windows.
const REC: usize = 4219;
/// Records per iteration written into the image file (2 MiB region).
const IMG_RECS: u64 = 490;
const IMG_LEN: usize = 8 << 20;
const ITERATIONS: u64 = 12;

/// The record `seq` of writer `tag`: a header then pseudo-random bytes.
/// Allocation-free (it runs in the forked child).
fn fill_record(buf: &mut [u8; REC], tag: u64, seq: u64) {
    buf[..8].copy_from_slice(&tag.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    let mut x = (tag << 32 ^ seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf[16..].iter_mut() {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *b = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
    }
}

fn record(tag: u64, seq: u64) -> Vec<u8> {
    let mut b = [0u8; REC];
    fill_record(&mut b, tag, seq);
    b.to_vec()
}

/// Offset in the image file where iteration `tag` writes its records.
fn img_base(tag: u64) -> usize {
    (tag as usize * 700_001) % (IMG_LEN - IMG_RECS as usize * REC)
}

/// Fork a child that runs `body(ack_fd)`; returns (pid, read end of the ack pipe).
fn spawn_writer(body: impl FnOnce(i32) -> i32) -> (i32, File) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child runs only `body`, which makes raw syscalls on data
    // prepared before the fork (no allocation, no locks), then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: closing the read end in the child.
        unsafe { libc::close(fds[0]) };
        let code = body(fds[1]);
        // SAFETY: _exit ends the child without destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the parent keeps only the read end; fds[0] is ours to own.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is an open fd nobody else owns.
    (pid, unsafe { File::from_raw_fd(fds[0]) })
}

/// Kill the daemon at the right moment, collect the writer's acks, and
/// detach the dead mount. Returns the last acknowledged sequence number.
fn crash(m: Mount<'_>, writer: i32, acks: File, delay: Duration) -> Option<u64> {
    // Read acks on a thread so the writer never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut acks = acks;
        let mut all = Vec::new();
        let _ = acks.read_to_end(&mut all);
        all.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<u64>>()
    });
    std::thread::sleep(delay);
    let pid = m.daemon();
    let by_file: i32 = fs::read_to_string(m.g.overlay.join("daemon.pid")).unwrap().trim().parse().unwrap();
    assert_eq!(pid, by_file, "daemon found by its command line vs OVERLAY/daemon.pid");
    m.kill9();
    // The writer now fails on the dead mount and exits; never wait forever.
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: polling our own child.
        let r = unsafe { libc::waitpid(writer, &mut status, libc::WNOHANG) };
        if r == writer {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(writer, libc::SIGKILL);
                libc::waitpid(writer, &mut status, 0);
            }
            panic!("the writer did not exit within 30 s of the daemon's death");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let acks = reader.join().unwrap();
    for w in acks.windows(2) {
        assert_eq!(w[1], w[0] + 1, "acks out of order: {acks:?}");
    }
    if let Some(&first) = acks.first() {
        assert_eq!(first, 0);
    }
    acks.last().copied()
}

/// Check the log file of iteration `tag`: records 0..=acked intact, at most
/// one more record (possibly torn), nothing else.
fn check_log(p: &Path, tag: u64, acked: Option<u64>) {
    let data = match fs::read(p) {
        Ok(d) => d,
        Err(e) if acked.is_none() && e.raw_os_error() == Some(libc::ENOENT) => return,
        Err(e) => panic!("log {tag}: {e}"),
    };
    let n = acked.map_or(0, |a| a + 1) as usize;
    assert!(data.len() >= n * REC, "log {tag}: {} bytes, but {n} records were acknowledged", data.len());
    assert!(data.len() <= (n + 1) * REC, "log {tag}: {} bytes, more than {n}+1 records", data.len());
    for s in 0..n {
        assert!(data[s * REC..(s + 1) * REC] == record(tag, s as u64)[..], "log {tag}: acknowledged record {s} damaged");
    }
    let next = record(tag, n as u64);
    for (i, &b) in data[n * REC..].iter().enumerate() {
        assert!(b == 0 || b == next[i], "log {tag}: byte {i} of the unacknowledged record is neither zero nor its own");
    }
}

/// Check the image file against the model after iteration `tag`, then
/// adopt what is there (the unacknowledged record may or may not be in).
fn check_image(p: &Path, model: &mut Vec<u8>, tag: u64, acked: Option<u64>) {
    let data = fs::read(p).unwrap();
    assert_eq!(data.len(), IMG_LEN, "image file size");
    let base = img_base(tag);
    let n = acked.map_or(0, |a| a + 1).min(IMG_RECS) as usize;
    for s in 0..n {
        let at = base + s * REC;
        assert!(data[at..at + REC] == record(tag, s as u64)[..], "image file: acknowledged record {s} of iteration {tag} damaged");
    }
    let torn = (base + n * REC)..(base + (n + 1).min(IMG_RECS as usize) * REC);
    let next = record(tag, n as u64);
    for i in 0..IMG_LEN {
        if i >= base && i < base + n * REC {
            continue;
        }
        if torn.contains(&i) {
            let b = data[i];
            assert!(b == model[i] || b == next[i - torn.start], "image file: byte {i} is neither old nor the new record's");
        } else if data[i] != model[i] {
            panic!("image file: byte {i} (window {}) changed outside the records written (iteration {tag})", i / 65536);
        }
    }
    *model = data;
}

/// Everything under `root` stats, lists and reads without error.
fn fsck(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        n += 1;
        if md.is_dir() {
            for e in fs::read_dir(&p).unwrap_or_else(|e| panic!("readdir {}: {e}", p.display())) {
                stack.push(e.unwrap().path());
            }
        } else if md.is_file() {
            fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        }
    }
    n
}

#[test]
fn fsynced_records_survive_kill_9_of_the_daemon() {
    let seed = common::seed("LVREPO_CRASH_SEED");
    let mut rng = Rng::new(seed);
    let g = Guest::new(|src| {
        fs::create_dir(src.join("var")).unwrap();
        fs::write(src.join("var/image.bin"), pseudo_random(8, IMG_LEN)).unwrap();
        fs::write(src.join("var/untouched"), pseudo_random(9, 100_000)).unwrap();
    });
    let mut model = pseudo_random(8, IMG_LEN);
    let mut acked_by_iter: Vec<Option<u64>> = Vec::new();
    let mut total_acked = 0u64;
    for tag in 0..ITERATIONS {
        let m = g.mount();
        // Everything from earlier iterations is intact.
        for (t, a) in acked_by_iter.iter().enumerate() {
            check_log(&m.p(&format!("log-{t}")), t as u64, *a);
        }
        let log = cpath(&m.p(&format!("log-{tag}")));
        let img = cpath(&m.p("var/image.bin"));
        let base = img_base(tag) as i64;
        let delay = Duration::from_millis(20 + rng.below(900));
        let (pid, acks) = spawn_writer(|ack| {
            // SAFETY (whole body): raw syscalls on buffers owned by this frame.
            unsafe {
                let lf = libc::open(log.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC, 0o644);
                let imf = libc::open(img.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if lf < 0 || imf < 0 {
                    return 2;
                }
                let mut buf = [0u8; REC];
                let mut seq = 0u64;
                loop {
                    fill_record(&mut buf, tag, seq);
                    let at = (seq as usize * REC) as i64;
                    if libc::pwrite(lf, buf.as_ptr().cast(), REC, at) != REC as isize {
                        return 1;
                    }
                    if seq < IMG_RECS && libc::pwrite(imf, buf.as_ptr().cast(), REC, base + at) != REC as isize {
                        return 1;
                    }
                    if libc::fsync(lf) != 0 || (seq < IMG_RECS && libc::fdatasync(imf) != 0) {
                        return 1;
                    }
                    let b = seq.to_le_bytes();
                    if libc::write(ack, b.as_ptr().cast(), 8) != 8 {
                        return 3;
                    }
                    seq += 1;
                }
            }
        });
        let acked = crash(m, pid, acks, delay);
        eprintln!("iteration {tag}: killed after {delay:?}, last acknowledged record {acked:?}");
        total_acked += acked.map_or(0, |a| a + 1);
        acked_by_iter.push(acked);

        let m = g.mount();
        check_log(&m.p(&format!("log-{tag}")), tag, acked);
        check_image(&m.p("var/image.bin"), &mut model, tag, acked);
        assert_eq!(fs::read(m.p("var/untouched")).unwrap(), pseudo_random(9, 100_000));
        fsck(&g.mp);
        m.umount();
    }
    assert!(total_acked >= ITERATIONS, "only {total_acked} records acknowledged in {ITERATIONS} iterations: the kills came too early to test anything");
    // A clean final session sees the same.
    let m = g.mount();
    for (t, a) in acked_by_iter.iter().enumerate() {
        check_log(&m.p(&format!("log-{t}")), t as u64, *a);
    }
    assert!(fs::read(m.p("var/image.bin")).unwrap() == model, "image file after the last clean mount");
    m.umount();
    assert!(!g.log().contains("panicked"), "a daemon panicked:\n{}", g.log());
}

/// Names used by the metadata burst, formatted without allocation.
struct NameBuf([u8; 64]);

impl NameBuf {
    fn new() -> Self {
        NameBuf([0; 64])
    }
    /// `prefix` + decimal `n` + `suffix` + NUL; returns a C string pointer.
    fn fmt(&mut self, prefix: &[u8], n: u64, suffix: &[u8]) -> *const libc::c_char {
        let mut i = 0;
        for &b in prefix {
            self.0[i] = b;
            i += 1;
        }
        let mut digits = [0u8; 20];
        let mut k = 0;
        let mut v = n;
        loop {
            digits[k] = b'0' + (v % 10) as u8;
            k += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while k > 0 {
            k -= 1;
            self.0[i] = digits[k];
            i += 1;
        }
        for &b in suffix {
            self.0[i] = b;
            i += 1;
        }
        self.0[i] = 0;
        self.0.as_ptr().cast()
    }
}

/// Image files the burst deletes, one per step (the burst stops there).
const IMAGE_FILES: u64 = 3000;

/// Step `i` of the burst, in the directory `meta` (new) and `img` (from the
/// image): mkdir d<i>; create d<i>/f holding "<i>"; rename d<i> → e<i>; for odd
/// i, unlink e<i-1>/f and rmdir e<i-1>; unlink the image file img/files/f<i>;
/// exchange the image dirs img/a and img/b; fsync both directories.
fn burst_step(meta: i32, img: i32, files: i32, i: u64) -> bool {
    if i >= IMAGE_FILES {
        return false;
    }
    let (mut n1, mut n2) = (NameBuf::new(), NameBuf::new());
    let mut content = NameBuf::new();
    // SAFETY: raw syscalls with NUL-terminated names from NameBuf.
    unsafe {
        if libc::mkdirat(meta, n1.fmt(b"d", i, b""), 0o755) != 0 {
            return false;
        }
        let fd = libc::openat(meta, n1.fmt(b"d", i, b"/f"), libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC, 0o644);
        if fd < 0 {
            return false;
        }
        let text = content.fmt(b"", i, b"");
        let len = libc::strlen(text);
        let ok = libc::write(fd, text.cast(), len) == len as isize;
        libc::close(fd);
        if !ok || libc::renameat(meta, n1.fmt(b"d", i, b""), meta, n2.fmt(b"e", i, b"")) != 0 {
            return false;
        }
        if i % 2 == 1 {
            if libc::unlinkat(meta, n1.fmt(b"e", i - 1, b"/f"), 0) != 0 {
                return false;
            }
            if libc::unlinkat(meta, n1.fmt(b"e", i - 1, b""), libc::AT_REMOVEDIR) != 0 {
                return false;
            }
        }
        if libc::unlinkat(files, n1.fmt(b"f", i, b""), 0) != 0 {
            return false;
        }
        let (a, b) = (c"a".as_ptr(), c"b".as_ptr());
        if libc::renameat2(img, a, img, b, libc::RENAME_EXCHANGE) != 0 {
            return false;
        }
        libc::fsync(meta) == 0 && libc::fsync(files) == 0 && libc::fsync(img) == 0
    }
}

/// What the namespace must look like after steps 0..=acked, plus possibly
/// a part of step acked+1 (the one under way when the daemon died). Returns
/// the number of exchanges of img/a and img/b done so far.
fn check_burst(m: &Mount<'_>, acked: Option<u64>, exchanges_before: u64) -> u64 {
    let done = acked.map_or(0, |a| a + 1); // steps 0..done are acknowledged
    let partial = done; // the step that may have been under way
    let meta = m.p("meta");
    let mut listed: Vec<String> =
        fs::read_dir(&meta).unwrap().map(|e| String::from_utf8(e.unwrap().file_name().as_bytes().to_vec()).unwrap()).collect();
    listed.sort();
    for name in &listed {
        let (kind, num) = name.split_at(1);
        let j: u64 = num.parse().unwrap_or_else(|_| panic!("unexpected entry meta/{name}"));
        let f = meta.join(name).join("f");
        let content = fs::read(&f);
        match kind {
            // mkdir of the partial step done, its rename not yet.
            "d" => {
                assert_eq!(j, partial, "meta/{name}: only the unacknowledged step may leave a d<i>");
                if let Ok(data) = content {
                    assert!(data.is_empty() || data == j.to_string().as_bytes(), "meta/{name}/f holds {data:?}");
                }
            }
            "e" => {
                assert!(j <= partial, "meta/{name} is from the future (acknowledged up to {acked:?})");
                assert!(!(j.is_multiple_of(2) && j + 1 < done), "meta/{name} should have been removed by acknowledged step {}", j + 1);
                let being_removed = j.is_multiple_of(2) && j + 1 == partial;
                match content {
                    Ok(data) => assert_eq!(data, j.to_string().as_bytes(), "meta/{name}/f"),
                    Err(e) => assert!(being_removed && e.raw_os_error() == Some(libc::ENOENT), "meta/{name}/f: {e}"),
                }
            }
            _ => panic!("unexpected entry meta/{name}"),
        }
    }
    for j in (0..done).filter(|j| j % 2 == 1) {
        assert!(listed.contains(&format!("e{j}")), "meta/e{j} (acknowledged) is missing; have {listed:?}");
    }
    // Image files f<j> for j < done are gone; f<partial> may be; the rest remain.
    let mut partial_unlinked = false;
    for j in 0..IMAGE_FILES {
        let p = m.p(&format!("img/files/f{j}"));
        let exists = fs::symlink_metadata(&p).is_ok();
        if j < done {
            assert!(!exists, "img/files/f{j} was deleted by an acknowledged step and is back");
        } else if j == partial {
            partial_unlinked = !exists;
        } else {
            assert!(exists, "img/files/f{j} vanished");
            assert_eq!(fs::read(&p).unwrap(), format!("image file {j}\n").as_bytes());
        }
    }
    // One exchange per step; the partial step exchanges only after its unlink.
    let a = fs::read(m.p("img/a/which")).unwrap();
    let swapped = a == b"b\n";
    assert!(swapped || a == b"a\n", "img/a/which holds {a:?}");
    let n = exchanges_before + done;
    let extra = swapped != (n % 2 == 1);
    assert!(!extra || partial_unlinked, "img/a holds {a:?} after {n} acknowledged exchanges");
    assert_eq!(fs::read(m.p("img/b/which")).unwrap(), if swapped { b"a\n" } else { b"b\n" });
    n + u64::from(extra)
}

#[test]
fn metadata_burst_survives_kill_9_of_the_daemon() {
    let seed = common::seed("LVREPO_CRASH_SEED");
    let mut rng = Rng::new(seed);
    let g = Guest::new(|src| {
        for d in ["img/files", "img/a", "img/b"] {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        for j in 0..IMAGE_FILES {
            fs::write(src.join(format!("img/files/f{j}")), format!("image file {j}\n")).unwrap();
        }
        fs::write(src.join("img/a/which"), b"a\n").unwrap();
        fs::write(src.join("img/b/which"), b"b\n").unwrap();
    });
    let mut exchanges = 0u64;
    for round in 0..3 {
        let m = g.mount();
        // Each round starts from a clean slate in meta/ and restores img/files.
        let meta = m.p("meta");
        if meta.exists() {
            fs::remove_dir_all(&meta).unwrap();
        }
        fs::create_dir(&meta).unwrap();
        for j in 0..IMAGE_FILES {
            let p = m.p(&format!("img/files/f{j}"));
            if !p.exists() {
                fs::write(p, format!("image file {j}\n")).unwrap();
            }
        }
        File::open(&g.mp).unwrap().sync_all().unwrap();
        let dirs = [meta.clone(), m.p("img"), m.p("img/files")].map(|p| File::open(p).unwrap());
        let fds = [dirs[0].as_raw_fd(), dirs[1].as_raw_fd(), dirs[2].as_raw_fd()];
        let delay = Duration::from_millis(50 + rng.below(700));
        let (pid, acks) = spawn_writer(|ack| {
            let mut i = 0u64;
            while burst_step(fds[0], fds[1], fds[2], i) {
                let b = i.to_le_bytes();
                // SAFETY: writing 8 bytes from a live buffer to our pipe.
                if unsafe { libc::write(ack, b.as_ptr().cast(), 8) } != 8 {
                    return 3;
                }
                i += 1;
            }
            1
        });
        drop(dirs);
        let acked = crash(m, pid, acks, delay);
        eprintln!("burst round {round}: killed after {delay:?}, last acknowledged step {acked:?}");
        assert!(acked.is_some(), "no step acknowledged before the kill: nothing was tested");
        let m = g.mount();
        exchanges = check_burst(&m, acked, exchanges);
        let n = fsck(&g.mp);
        assert!(n > IMAGE_FILES as usize / 2);
        m.umount();
    }
    assert!(!g.log().contains("panicked"), "a daemon panicked:\n{}", g.log());
}

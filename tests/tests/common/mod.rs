//! Shared support for the tests that mount for real: a guest (repository +
//! imported image + overlay dir + mountpoint, all in one temp dir) and a
//! [`Mount`] guard that always unmounts, even when the test panics.
//!
//! Mounts within one test binary are serialised (one guest alive at a time):
//! the machines have 2 cores and a FUSE daemon per test would only add noise
//! to timings and make failures harder to read.
#![allow(dead_code)] // each test binary uses a different subset

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lvrepo_tests::{lvrepo_bin, report, require_root, Lvrepo};

static SLOT: Mutex<()> = Mutex::new(());

/// A repository holding one image, plus an overlay dir and a mountpoint.
pub struct Guest {
    pub r: Lvrepo,
    pub image: String,
    /// The source tree the image was imported from (kept for comparisons).
    pub src: PathBuf,
    pub overlay: PathBuf,
    pub mp: PathBuf,
    // Last: released after the temp dir is gone.
    _slot: MutexGuard<'static, ()>,
}

impl Guest {
    /// Build the image's tree with `build`, import it as `img:1`.
    pub fn new(build: impl FnOnce(&Path)) -> Guest {
        require_root();
        let slot = SLOT.lock().unwrap_or_else(|e| e.into_inner());
        let r = Lvrepo::init();
        let src = r.scratch("src");
        std::fs::create_dir(&src).expect("mkdir src");
        build(&src);
        r.import(&src, "img:1");
        let overlay = r.scratch("overlay");
        let mp = r.scratch("mnt");
        std::fs::create_dir(&mp).expect("mkdir mountpoint");
        Guest { r, image: "img:1".into(), src, overlay, mp, _slot: slot }
    }

    /// Mount (daemonised) and assert it worked.
    pub fn mount(&self) -> Mount<'_> {
        self.mount_with(&[])
    }

    /// Mount with extra `lvrepo mount` options and assert it worked.
    pub fn mount_with(&self, extra: &[&str]) -> Mount<'_> {
        self.mounted("lvrepo mount", self.try_mount_with(extra))
    }

    /// Assert that the mount command `what` succeeded and left a mount.
    fn mounted(&self, what: &str, out: Output) -> Mount<'_> {
        assert!(out.status.success(), "{}\ndaemon.log:\n{}", report(what, &out), self.log());
        assert!(is_mounted(&self.mp), "{what} returned 0 but {} is not a mount", self.mp.display());
        Mount { g: self, live: true }
    }

    /// Run `lvrepo mount` without asserting (it has its own 60 s start limit;
    /// this adds a hard 90 s limit so a hang fails instead of blocking).
    pub fn try_mount(&self) -> Output {
        self.try_mount_with(&[])
    }

    fn try_mount_with(&self, extra: &[&str]) -> Output {
        let mut cmd = Command::new(lvrepo_bin());
        cmd.arg("--repo").arg(&self.r.repo).arg("mount").arg(&self.image).arg("--overlay").arg(&self.overlay).args(extra).arg(&self.mp);
        run_with_timeout(cmd, Duration::from_secs(90), "lvrepo mount")
    }

    /// Mount as mount(8) does, through the helper (`mount.fuse.lvrepo`, a
    /// symlink to lvrepo) with `-o repo=…,overlay=…,EXTRA`; assert it worked.
    pub fn mount_by_helper(&self, extra: &str) -> Mount<'_> {
        self.mounted("mount.fuse.lvrepo", self.try_mount_by_helper(extra))
    }

    /// Run the mount helper (see [`Guest::mount_by_helper`]) without asserting.
    pub fn try_mount_by_helper(&self, extra: &str) -> Output {
        let helper = self.r.scratch("mount.fuse.lvrepo");
        if !helper.exists() {
            std::os::unix::fs::symlink(lvrepo_bin(), &helper).expect("symlink the mount helper");
        }
        let mut o = std::ffi::OsString::from("repo=");
        o.push(&self.r.repo);
        o.push(",overlay=");
        o.push(&self.overlay);
        if !extra.is_empty() {
            o.push(",");
            o.push(extra);
        }
        let mut cmd = Command::new(&helper);
        cmd.arg(&self.image).arg(&self.mp).arg("-o").arg(o);
        run_with_timeout(cmd, Duration::from_secs(90), "mount.fuse.lvrepo")
    }

    /// `OVERLAY/daemon.log` (empty if absent).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.overlay.join("daemon.log")).unwrap_or_default()
    }

    /// Files under `OVERLAY/data`.
    pub fn data_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match std::fs::read_dir(self.overlay.join("data")) {
            Ok(rd) => rd.map(|e| e.expect("readdir data").path()).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("reading OVERLAY/data: {e}"),
        };
        v.sort();
        v
    }

    /// Path of `rel` inside the source tree.
    pub fn src(&self, rel: &str) -> PathBuf {
        self.src.join(rel)
    }
}

/// A live mount; unmounts on drop (best effort, never panics while unwinding).
pub struct Mount<'a> {
    pub g: &'a Guest,
    live: bool,
}

impl Mount<'_> {
    /// Path of `rel` inside the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.g.mp.join(rel)
    }

    /// `lvrepo umount` and assert that it succeeded and the daemon is gone.
    pub fn umount(mut self) {
        self.live = false;
        let pid = daemon_pid(&self.g.mp);
        let out = self.g.r.run([OsStr::new("umount"), self.g.mp.as_os_str()]);
        assert!(out.status.success(), "{}\ndaemon.log:\n{}", report("lvrepo umount", &out), self.g.log());
        assert!(!is_mounted(&self.g.mp), "still mounted after lvrepo umount");
        if let Some(pid) = pid {
            assert!(!alive(pid), "daemon {pid} still alive after lvrepo umount");
        }
        let log = self.g.log();
        assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    }

    /// The pid of the `lvrepo mount ... --foreground` daemon serving this mount.
    pub fn daemon(&self) -> i32 {
        daemon_pid(&self.g.mp).unwrap_or_else(|| panic!("no daemon found for {}", self.g.mp.display()))
    }

    /// Simulate a crash: SIGKILL the daemon, then lazily detach the dead mount.
    pub fn kill9(mut self) {
        self.live = false;
        let pid = self.daemon();
        // SAFETY: kill only sends a signal to a pid we found serving our mount.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9 {pid}");
        wait_gone(pid, Duration::from_secs(30));
        lazy_umount(&self.g.mp);
        assert!(!is_mounted(&self.g.mp), "dead mount still attached");
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        if self.live {
            umount_or_kill(&self.g.r, &self.g.mp);
        }
    }
}

/// What a mount guard does when dropped live (a test failed or returned
/// early): `lvrepo umount`, and if that fails, detach `mp` lazily and stop
/// the daemon serving it (TERM, then KILL), so no mount outlives its test.
pub fn umount_or_kill(r: &Lvrepo, mp: &Path) {
    let pid = daemon_pid(mp);
    let out = r.run([OsStr::new("umount"), mp.as_os_str()]);
    if out.status.success() && !is_mounted(mp) {
        return;
    }
    eprintln!("{}", report("lvrepo umount (in drop) failed; detaching lazily", &out));
    lazy_umount(mp);
    if let Some(pid) = pid {
        // SAFETY: signals to the daemon serving the guard's mount.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if !wait_gone(pid, Duration::from_secs(20)) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_gone(pid, Duration::from_secs(10));
        }
    }
}

/// `umount -l`, falling back to `fusermount3 -u -z`.
pub fn lazy_umount(mp: &Path) {
    if !is_mounted(mp) {
        return;
    }
    let c = CString::new(mp.as_os_str().as_bytes()).expect("NUL in mountpoint");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(mp).status();
    }
}

/// Whether `mp` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(mp: &Path) -> bool {
    let Ok(mp) = std::fs::canonicalize(mp) else { return false };
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == mp.as_os_str().as_bytes()))
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The `lvrepo mount ... --foreground` process whose arguments name `mp`.
pub fn daemon_pid(mp: &Path) -> Option<i32> {
    let want = std::fs::canonicalize(mp).ok()?;
    for ent in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(ent.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_daemon = args.contains(&&b"mount"[..]) && args.contains(&&b"--foreground"[..]);
        if is_daemon && args.iter().any(|a| std::fs::canonicalize(OsStr::from_bytes(a)).ok().as_deref() == Some(&want)) {
            return Some(pid);
        }
    }
    None
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Wait until `pid` is gone; false on timeout.
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Run `cmd` (stdout/stderr captured) and kill it after `limit`.
pub fn run_with_timeout(mut cmd: Command, limit: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = io::Read::read_to_end(&mut so, &mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = io::Read::read_to_end(&mut se, &mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: to.join().expect("stdout"), stderr: te.join().expect("stderr") }
}

/// An xattr's value, or the errno (ENODATA when absent).
pub fn get_xattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    match xattr::get(p, name) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(libc::ENODATA),
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
    }
}

/// `lsetxattr` with `flags` (XATTR_CREATE / XATTR_REPLACE), or the errno.
pub fn set_xattr_flags(p: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    let (c, n) = (cpath(p), CString::new(name).expect("NUL in xattr name"));
    // SAFETY: valid C strings; value pointer/len describe a live slice.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// The errno of the last failed libc call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("NUL in path")
}

/// Find an executable in PATH or ~/.cargo/bin.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    dirs.push("/root/.cargo/bin".into());
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Deterministic pseudo-random generator for tests (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, n)`; `n = 0` is taken as 1.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A seed: `$name` if set, else from the clock. Printed so a failure can be
/// replayed.
pub fn seed(name: &str) -> u64 {
    let s = std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("seed: {name}={s}");
    s
}

/// Run `f` in a forked child and return its exit status. `f` runs between
/// fork and `_exit` in a copy of a multi-threaded process, so it must only
/// make raw system calls (no allocation, no locks, no panics).
pub fn in_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `f` (raw syscalls on data prepared before
    // the fork) and then _exit, so no lock held by another thread is needed.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = f();
        // SAFETY: _exit ends the child without running destructors or atexit.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked; status is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid");
    assert!(libc::WIFEXITED(status), "child did not exit normally: status {status:#x}");
    libc::WEXITSTATUS(status)
}

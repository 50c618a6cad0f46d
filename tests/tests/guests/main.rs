//! Guests end to end, through the real `lvrepo` binary and real FUSE mounts:
//! checkpoint and rollback restore a guest's full metadata exactly (mounted
//! and unmounted checkpoints), a checkpoint taken while a process writes is a
//! consistent cut, crashes (failpoints and kill -9 at random instants) leave
//! the old state or the new one, `diff GUEST` names exactly what changed,
//! clones cost the shared disk nothing, prune + gc keep what guests use, and
//! a mounted guest cannot be removed.
//!
//! Every mount is held by a [`Mounted`] guard that unmounts on drop, also
//! while a failed assertion unwinds. Tests in this binary run one at a time
//! (2-core machines; several FUSE daemons at once would only add noise).
//!
//! On the comparison of manifests: `compare` with default options checks the
//! root entry's mode, owner and mtime too. That is right for guests: a
//! checkpoint is a root tree whose single entry *is* the root directory
//! (`store_root` keeps its mode, owner, mtime and xattrs), and the overlay
//! serves the root from that entry, so nothing about the root may change
//! across checkpoint → rollback. atime and ctime are not in manifests (no
//! copy can keep them), so they cannot cause false failures.

#[path = "../common/mod.rs"]
mod common;
mod browse;
mod crashes;
mod cuts;
mod damage;
mod dr;
mod dr_stream;
mod dr_retention;
mod dr_crash;
mod fleet;
mod lifecycle;
mod logs;
mod manage;
mod propagate;
mod rollback;
mod safety;
mod signed_stream;
mod systemd;
mod unborn;

use common::{daemon_pid, is_mounted, lazy_umount, seed, wait_gone, Rng};
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lvrepo_tests::fixture::{self, mknod, pseudo_random, set_mtime, set_xattr};
use lvrepo_tests::{compare, lvrepo_bin, manifest, report, require_root, Lvrepo, Manifest};
use serde_json::Value;

// ───────────────────────────── support ─────────────────────────────

static SERIAL: Mutex<()> = Mutex::new(());

/// A repository with image `img:1` built by the test. Fields drop in order:
/// the repository (temp dir) first, the serialisation slot last.
struct World {
    r: Lvrepo,
    src: PathBuf,
    _slot: MutexGuard<'static, ()>,
}

impl World {
    /// `build` fills the source tree; when `freeze` is set every mtime is
    /// then set to a fixed past instant (so no change can land on the same
    /// nanosecond as the image).
    fn new(freeze: bool, build: impl FnOnce(&Path)) -> World {
        require_root();
        let slot = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let r = Lvrepo::init();
        let src = r.scratch("src");
        fs::create_dir(&src).expect("mkdir src");
        build(&src);
        if freeze {
            freeze_mtimes(&src);
        }
        r.import(&src, "img:1");
        fs::create_dir_all(r.scratch("guests")).expect("mkdir guests");
        fs::create_dir_all(r.scratch("mnt")).expect("mkdir mnt");
        World { r, src, _slot: slot }
    }

    /// `guest create NAME --image img:1 --overlay SCRATCH/guests/NAME`.
    fn guest(&self, name: &str) -> Guest<'_> {
        self.guest_with(name, &[])
    }

    fn guest_with(&self, name: &str, extra: &[&OsStr]) -> Guest<'_> {
        let dir = self.r.scratch("guests").join(name);
        let mut args: Vec<&OsStr> = vec![OsStr::new("guest"), OsStr::new("create"), OsStr::new(name), OsStr::new("--image"), OsStr::new("img:1"), OsStr::new("--overlay"), dir.as_os_str()];
        args.extend_from_slice(extra);
        self.r.ok(&args);
        let mp = self.r.scratch("mnt").join(name);
        fs::create_dir_all(&mp).expect("mkdir mountpoint");
        Guest { w: self, name: name.to_string(), dir, mp }
    }

    fn stored_bytes(&self) -> u64 {
        let s = self.r.json(["stats", "--json"]);
        s["disk_bytes"].as_u64().unwrap_or_else(|| panic!("stats --json without disk_bytes: {s}"))
    }
}

struct Guest<'w> {
    w: &'w World,
    name: String,
    dir: PathBuf,
    mp: PathBuf,
}

impl Guest<'_> {
    fn r(&self) -> &Lvrepo {
        &self.w.r
    }

    fn mount(&self) -> Mounted<'_> {
        let out = self.try_mount();
        assert!(out.status.success(), "{}\ndaemon.log:\n{}", report(&format!("lvrepo mount --guest {}", self.name), &out), self.log());
        assert!(is_mounted(&self.mp), "lvrepo mount --guest {} returned 0 but {} is not a mount", self.name, self.mp.display());
        // Found now, so a kill -9 later is immediate (finding it scans /proc).
        let pid = daemon_pid(&self.mp).unwrap_or_else(|| panic!("no daemon found serving {}", self.mp.display()));
        Mounted { g: self, live: true, pid }
    }

    fn try_mount(&self) -> Output {
        self.r().run([OsStr::new("mount"), OsStr::new("--guest"), OsStr::new(&self.name), self.mp.as_os_str()])
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// `checkpoint NAME --json`; returns the checkpoint's number.
    fn checkpoint(&self, msg: &str) -> u64 {
        let v = self.r().json(["checkpoint", &self.name, "-m", msg, "--json"]);
        v["checkpoint"]["number"].as_u64().unwrap_or_else(|| panic!("checkpoint --json without checkpoint.number: {v}"))
    }

    fn rollback(&self, n: u64) {
        self.r().ok(["rollback", &self.name, &n.to_string()]);
    }

    /// Checkpoint numbers from `log NAME --json`, in the order listed.
    fn checkpoints(&self) -> Vec<u64> {
        let v = self.r().json(["log", &self.name, "--json"]);
        let arr = v["checkpoints"].as_array().unwrap_or_else(|| panic!("log --json has no checkpoints array: {v}"));
        arr.iter().map(|c| c["number"].as_u64().unwrap_or_else(|| panic!("log entry without number: {c}"))).collect()
    }

    fn show(&self) -> Value {
        self.r().json(["guest", "show", &self.name, "--json"])
    }

    fn local_bytes(&self) -> u64 {
        let v = self.show();
        v["guest"]["local_bytes"].as_u64().unwrap_or_else(|| panic!("guest show --json without guest.local_bytes: {v}"))
    }

    fn generation(&self) -> u64 {
        let v = self.show();
        v["guest"]["generation"].as_u64().unwrap_or_else(|| panic!("guest show --json without guest.generation: {v}"))
    }

    /// `diff NAME [AGAINST] --json`, raw.
    fn diff_json(&self, against: Option<&str>) -> Value {
        let mut args = vec!["diff", self.name.as_str()];
        args.extend(against);
        args.push("--json");
        self.r().json(&args)
    }

    /// Overlay generation directories present in the guest dir.
    fn gen_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.dir)
            .expect("read guest dir")
            .map(|e| e.expect("readdir").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("gen-"))
            .collect();
        v.sort();
        v
    }
}

/// A live guest mount; unmounts on drop (never panics while unwinding).
struct Mounted<'a> {
    g: &'a Guest<'a>,
    live: bool,
    pid: i32,
}

impl Mounted<'_> {
    fn p(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.g.mp.clone()
        } else {
            self.g.mp.join(rel)
        }
    }

    fn manifest(&self) -> Manifest {
        manifest(&self.g.mp).unwrap_or_else(|e| panic!("manifest of guest {} mount: {e}", self.g.name))
    }


    /// `lvrepo umount` and assert it worked and the daemon is gone, clean.
    fn umount(mut self) {
        self.live = false;
        let pid = daemon_pid(&self.g.mp);
        let out = self.g.r().run([OsStr::new("umount"), self.g.mp.as_os_str()]);
        assert!(out.status.success(), "{}\ndaemon.log:\n{}", report("lvrepo umount", &out), self.g.log());
        assert!(!is_mounted(&self.g.mp), "{} still mounted after lvrepo umount", self.g.mp.display());
        if let Some(pid) = pid {
            assert!(wait_gone(pid, Duration::from_secs(30)), "daemon {pid} still alive after lvrepo umount");
        }
        let log = self.g.log();
        assert!(!log.contains("panicked"), "the daemon of guest {} panicked:\n{log}", self.g.name);
    }

    /// Simulate a crash of the daemon: SIGKILL, then detach the dead mount.
    fn kill9(mut self) {
        self.live = false;
        let pid = self.pid;
        // SAFETY: kill sends a signal to the daemon serving our mount; no memory.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9 {pid}");
        assert!(wait_gone(pid, Duration::from_secs(30)), "daemon {pid} survived SIGKILL");
        lazy_umount(&self.g.mp);
        assert!(!is_mounted(&self.g.mp), "dead mount still attached");
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if self.live {
            common::umount_or_kill(self.g.r(), &self.g.mp);
        }
    }
}

/// Every mtime under `dir` (post-order, root included) set to a distinct
/// instant in 2020 with non-zero nanoseconds.
fn freeze_mtimes(dir: &Path) {
    fn walk(p: &Path, n: &mut i64) {
        if fs::symlink_metadata(p).expect("lstat").is_dir() {
            let mut kids: Vec<PathBuf> = fs::read_dir(p).expect("readdir").map(|e| e.expect("readdir").path()).collect();
            kids.sort();
            for k in kids {
                walk(&k, n);
            }
        }
        *n += 1;
        set_mtime(p, 1_600_000_000 + *n * 7, 1000 + *n).expect("set mtime");
    }
    walk(dir, &mut 0);
}

/// Assert two manifests are identical, with a readable failure.
#[track_caller]
fn assert_same(what: &str, expected: &Manifest, got: &Manifest) {
    if let Err(d) = compare(expected, got) {
        panic!("{what}: {d}");
    }
}

#[track_caller]
fn assert_differs(what: &str, a: &Manifest, b: &Manifest) {
    assert!(compare(a, b).is_err(), "{what}: the two states are identical, so this check could not fail");
}

fn write_at(p: &Path, off: u64, data: &[u8]) {
    OpenOptions::new().write(true).open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display())).write_all_at(data, off).unwrap_or_else(|e| panic!("pwrite {}: {e}", p.display()));
}

fn append(p: &Path, data: &[u8]) {
    OpenOptions::new().append(true).open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display())).write_all(data).unwrap_or_else(|e| panic!("append {}: {e}", p.display()));
}

fn set_len(p: &Path, len: u64) {
    OpenOptions::new().write(true).open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display())).set_len(len).unwrap_or_else(|e| panic!("truncate {}: {e}", p.display()));
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("lchown {}: {e}", p.display()));
}

fn put(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn mkdir(p: &Path) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
}

fn rm(p: &Path) {
    fs::remove_file(p).unwrap_or_else(|e| panic!("unlink {}: {e}", p.display()));
}

fn rm_rf(p: &Path) {
    fs::remove_dir_all(p).unwrap_or_else(|e| panic!("rm -r {}: {e}", p.display()));
}

fn mv(a: &Path, b: &Path) {
    fs::rename(a, b).unwrap_or_else(|e| panic!("rename {} -> {}: {e}", a.display(), b.display()));
}

fn ln(a: &Path, b: &Path) {
    fs::hard_link(a, b).unwrap_or_else(|e| panic!("link {} -> {}: {e}", a.display(), b.display()));
}

fn symlink(target: &str, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap_or_else(|e| panic!("symlink {}: {e}", at.display()));
}

fn xattr_set(p: &Path, name: &str, value: &[u8]) {
    set_xattr(p, name, value).unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", p.display()));
}

fn xattr_rm(p: &Path, name: &str) {
    xattr::remove(p, name).unwrap_or_else(|e| panic!("removexattr {name} on {}: {e}", p.display()));
}

fn mtime(p: &Path, sec: i64, nsec: i64) {
    set_mtime(p, sec, nsec).unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

// POSIX ACL xattr (version 2) tags.
const ACL_USER_OBJ: u16 = 1;
const ACL_USER: u16 = 2;
const ACL_GROUP_OBJ: u16 = 4;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const NOID: u32 = u32::MAX;

fn acl_user_1234_r() -> Vec<u8> {
    fixture::posix_acl(&[(ACL_USER_OBJ, 6, NOID), (ACL_USER, 4, 1234), (ACL_GROUP_OBJ, 4, NOID), (ACL_MASK, 4, NOID), (ACL_OTHER, 4, NOID)])
}

/// The numbers of a `--json` array of checkpoints.
fn numbers(v: &Value) -> Vec<u64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|c| c["number"].as_u64().expect("checkpoint number")).collect()
}

/// `diff --json` rows as a set of (path without leading '/', change).
fn diff_set(v: &Value) -> BTreeSet<(String, String)> {
    let arr = v["changes"].as_array().unwrap_or_else(|| panic!("diff --json has no changes array: {v}"));
    arr.iter()
        .map(|d| {
            let p = d["path"].as_str().unwrap_or_else(|| panic!("diff row without path: {d}"));
            let c = d["change"].as_str().unwrap_or_else(|| panic!("diff row without change: {d}"));
            (p.trim_start_matches('/').to_string(), c.to_string())
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect()
}

#[track_caller]
fn assert_diff(what: &str, expected: &BTreeSet<(String, String)>, got: &BTreeSet<(String, String)>) {
    if expected != got {
        let missing: Vec<_> = expected.difference(got).collect();
        let extra: Vec<_> = got.difference(expected).collect();
        panic!("{what}: diff is not exactly the changes made\n  missing: {missing:?}\n  unexpected: {extra:?}");
    }
}

/// An `lvrepo` command with `--repo` set, not yet started.
fn lvrepo_cmd(r: &Lvrepo, args: &[&str]) -> Command {
    let mut c = Command::new(lvrepo_bin());
    c.arg("--repo").arg(r.repo()).args(args).env_remove("LVREPO_REPO").env_remove("LVREPO_FAILPOINT");
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Run `args` with `LVREPO_FAILPOINT=fp`; assert it aborted there.
fn run_to_failpoint(r: &Lvrepo, args: &[&str], fp: &str) {
    let out = lvrepo_cmd(r, args).env("LVREPO_FAILPOINT", fp).output().expect("spawn lvrepo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("failpoint {fp} reached")),
        "{}",
        report(&format!("lvrepo {} with LVREPO_FAILPOINT={fp} should abort at the failpoint", args.join(" ")), &out)
    );
}

/// Start `args`, SIGKILL it after `delay` (if still running). Returns
/// whether it had already finished (and then its status must be success).
fn kill9_after(r: &Lvrepo, args: &[&str], delay: Duration) -> bool {
    let mut child = lvrepo_cmd(r, args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn lvrepo");
    std::thread::sleep(delay);
    match child.try_wait().expect("try_wait") {
        Some(st) => {
            assert!(st.success(), "lvrepo {} failed on its own ({st}) before the kill", args.join(" "));
            true
        }
        None => {
            child.kill().expect("kill -9");
            let st = child.wait().expect("wait");
            if st.success() {
                return true; // finished between try_wait and kill
            }
            false
        }
    }
}

fn timed(r: &Lvrepo, args: &[&str]) -> Duration {
    let t = Instant::now();
    r.ok(args);
    t.elapsed()
}

/// Disk blocks used by everything under `p` (st_blocks × 512).
fn disk_usage(p: &Path) -> u64 {
    let md = fs::symlink_metadata(p).expect("lstat");
    let mut n = md.blocks() * 512;
    if md.is_dir() {
        for e in fs::read_dir(p).expect("readdir") {
            n += disk_usage(&e.expect("readdir").path());
        }
    }
    n
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

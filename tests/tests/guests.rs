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

mod common;

use common::{daemon_pid, is_mounted, lazy_umount, wait_gone};
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
        s["stored_bytes"].as_u64().unwrap_or_else(|| panic!("stats --json without stored_bytes: {s}"))
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
        v["version"].as_u64().unwrap_or_else(|| panic!("checkpoint --json without version: {v}"))
    }

    fn rollback(&self, n: u64) {
        self.r().ok(["rollback", &self.name, &n.to_string()]);
    }

    /// Checkpoint numbers from `log NAME --json`, in the order listed.
    fn checkpoints(&self) -> Vec<u64> {
        let v = self.r().json(["log", &self.name, "--json"]);
        let arr = v.as_array().unwrap_or_else(|| panic!("log --json is not an array: {v}"));
        arr.iter().map(|c| c["version"].as_u64().unwrap_or_else(|| panic!("log entry without version: {c}"))).collect()
    }

    fn show(&self) -> Value {
        self.r().json(["guest", "show", &self.name, "--json"])
    }

    fn local_bytes(&self) -> u64 {
        let v = self.show();
        v["local_bytes"].as_u64().unwrap_or_else(|| panic!("guest show --json without local_bytes: {v}"))
    }

    fn generation(&self) -> u64 {
        let v = self.show();
        v["state"]["generation"].as_u64().unwrap_or_else(|| panic!("guest show --json without state.generation: {v}"))
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

/// `diff --json` rows as a set of (path without leading '/', change).
fn diff_set(v: &Value) -> BTreeSet<(String, String)> {
    let arr = v.as_array().unwrap_or_else(|| panic!("diff --json is not an array: {v}"));
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

/// Deterministic generator (xorshift64*), seed printed for replay.
struct Rng(u64);

impl Rng {
    fn from_env(var: &str) -> Rng {
        let s = std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        eprintln!("seed: {var}={s}");
        Rng(s.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
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

// ─────────────────── 1. checkpoint → rollback is exact ───────────────────

/// Image for the exactness tests: the hostile fixture (every node kind, odd
/// names, sparse files, ACLs, caps, devices, hardlinks) plus a small "system".
fn build_system(src: &Path) {
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
fn change_a(m: &Mounted) {
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
fn build_hostname_only(src: &Path) {
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

// ─────────── 2. a checkpoint during writes is a consistent cut ───────────

const WRITER_DIR: &str = "LVREPO_GUESTS_WRITER_DIR";
const WRITER_STOP: &str = "LVREPO_GUESTS_WRITER_STOP";
const REC: usize = 64;

/// Record `i` of the writer's log: exactly [`REC`] bytes.
fn record(i: u64) -> Vec<u8> {
    let mut r = format!("R{i:08} ").into_bytes();
    let fill = b'a' + (i % 26) as u8;
    r.resize(REC - 1, fill);
    r.push(b'\n');
    r
}

fn record_file_body(i: u64) -> Vec<u8> {
    format!("file of record {i}\n").repeat(1 + (i % 7) as usize).into_bytes()
}

/// Not a test on its own: the writer process of
/// `checkpoints_during_writes_are_consistent_cuts` (this test binary started
/// again with `LVREPO_GUESTS_WRITER_DIR` set). Without it, it does nothing.
#[test]
fn writer_process() {
    let (Some(dir), Some(stop)) = (std::env::var_os(WRITER_DIR), std::env::var_os(WRITER_STOP)) else { return };
    let (dir, stop) = (PathBuf::from(dir), PathBuf::from(stop));
    let mut log = OpenOptions::new().create(true).append(true).open(dir.join("log")).expect("open log");
    let mut i = 0u64;
    while !stop.exists() {
        // The record's file first, then the record: a record implies its file.
        fs::write(dir.join("files").join(format!("{i:08}")), record_file_body(i)).expect("write record file");
        let n = log.write(&record(i)).expect("append record");
        assert_eq!(n, REC, "short append");
        i += 1;
    }
    println!("WRITER-RECORDS {i}");
}

/// What a mounted guest's writer log looks like: complete records
/// 0..n, each with its file; returns n.
fn check_cut(m: &Mounted, what: &str) -> u64 {
    let log = fs::read(m.p("wlog/log")).unwrap_or_else(|e| panic!("{what}: read log: {e}"));
    assert_eq!(log.len() % REC, 0, "{what}: torn record: log is {} bytes, not a multiple of {REC}", log.len());
    let n = (log.len() / REC) as u64;
    for (i, rec) in log.chunks(REC).enumerate() {
        assert_eq!(rec, &record(i as u64)[..], "{what}: record {i} is wrong: {:?}", String::from_utf8_lossy(rec));
    }
    let mut files: Vec<u64> = fs::read_dir(m.p("wlog/files"))
        .expect("readdir files")
        .map(|e| e.expect("readdir").file_name().to_string_lossy().parse().expect("numeric file name"))
        .collect();
    files.sort_unstable();
    // Files 0..n, plus at most file n (created, its record not yet appended).
    let expect: Vec<u64> = (0..n).collect();
    let ok = files == expect || (files.len() as u64 == n + 1 && files[..n as usize] == expect[..] && files[n as usize] == n);
    assert!(ok, "{what}: log has {n} records but files are {:?}…{:?} ({} files)", &files[..files.len().min(3)], &files[files.len().saturating_sub(3)..], files.len());
    for &i in &files {
        let body = fs::read(m.p(&format!("wlog/files/{i:08}"))).expect("read record file");
        // File n may be caught between its creation and its one write(2).
        let ok = body == record_file_body(i) || (i == n && body.is_empty());
        assert!(ok, "{what}: file of record {i} (log holds {n}) has wrong content: {:?}", String::from_utf8_lossy(&body));
    }
    n
}

#[test]
fn checkpoints_during_writes_are_consistent_cuts() {
    let w = World::new(true, build_hostname_only);
    let g = w.guest("busy");
    let m = g.mount();
    mkdir(&m.p("wlog/files"));
    let stop = w.r.scratch("writer.stop");
    let mut writer = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["writer_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_DIR, m.p("wlog"))
        .env(WRITER_STOP, &stop)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start writer");
    // Stops the writer even if an assertion below fails.
    struct StopWriter<'a>(&'a Path, &'a mut std::process::Child);
    impl Drop for StopWriter<'_> {
        fn drop(&mut self) {
            let _ = fs::write(self.0, b"stop");
            let start = Instant::now();
            while matches!(self.1.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.1.kill();
            let _ = self.1.wait();
        }
    }
    let records_now = |m: &Mounted| fs::metadata(m.p("wlog/log")).map(|md| md.len() / REC as u64).unwrap_or(0);
    let mut cps = Vec::new();
    {
        let guard = StopWriter(&stop, &mut writer);
        let mut want = 0;
        for k in 0..3 {
            // Wait (a real signal: the log's length) for 150 more records.
            want += 150;
            let start = Instant::now();
            while records_now(&m) < want {
                if let Ok(Some(st)) = guard.1.try_wait() {
                    panic!("writer exited early ({st})");
                }
                assert!(start.elapsed() < Duration::from_secs(300), "writer made no progress: {} records", records_now(&m));
                std::thread::sleep(Duration::from_millis(5));
            }
            cps.push(g.checkpoint(&format!("during writes {k}")));
        }
        fs::write(&stop, b"stop").expect("write stop file");
        let start = Instant::now();
        while matches!(guard.1.try_wait(), Ok(None)) {
            assert!(start.elapsed() < Duration::from_secs(60), "writer did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let out = writer.wait_with_output().expect("writer output");
    assert!(out.status.success(), "{}", report("writer process", &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // (The harness prints the test's name on the same line.)
    let total: u64 = stdout
        .split("WRITER-RECORDS ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("writer printed no count:\n{stdout}"))
        .parse()
        .expect("count");
    assert_eq!(check_cut(&m, "live state after the writer stopped"), total);
    m.umount();
    assert_eq!(cps, vec![1, 2, 3]);

    let mut prev = 0;
    for &cp in &cps {
        g.rollback(cp);
        let m = g.mount();
        let n = check_cut(&m, &format!("checkpoint {cp}"));
        m.umount();
        eprintln!("checkpoint {cp}: {n} complete records of {total}");
        assert!(n >= 150 * cp && n > prev && n <= total, "checkpoint {cp} holds {n} records (previous {prev}, total {total})");
        prev = n;
    }
}

// ───────────────────────── 3. crash safety ─────────────────────────

const CRASH_DIRS: usize = 20;
const CRASH_FILES: usize = 100;

fn build_many(src: &Path) {
    for d in 0..CRASH_DIRS {
        mkdir(&src.join(format!("d{d:02}")));
        for f in 0..CRASH_FILES {
            let body = format!("dir {d} file {f}\n").repeat(40 + (d * f) % 60);
            put(&src.join(format!("d{d:02}/f{f:03}")), body.as_bytes());
        }
    }
    put(&src.join("big"), &pseudo_random(5, 3 << 20));
}

/// Round `r` of changes: every one of the 2,000 image files appended to,
/// 50 new files, 20 deletions, a rename, a chmod, a write into `big`.
fn mutate(m: &Mounted, r: usize) {
    for d in 0..CRASH_DIRS {
        for f in 0..CRASH_FILES {
            let p = m.p(&format!("d{d:02}/f{f:03}"));
            if p.exists() {
                append(&p, format!("round {r}\n").as_bytes());
            }
        }
    }
    mkdir(&m.p(&format!("new{r}")));
    for i in 0..50 {
        put(&m.p(&format!("new{r}/n{i:02}")), &pseudo_random((r * 100 + i) as u64, 5000));
    }
    let dd = r % CRASH_DIRS;
    for f in 0..20 {
        let p = m.p(&format!("d{dd:02}/f{:03}", 50 + f));
        if p.exists() {
            rm(&p);
        }
    }
    mv(&m.p(&format!("d{dd:02}/f000")), &m.p(&format!("new{r}/moved")));
    chmod(&m.p(&format!("d{:02}", (r + 1) % CRASH_DIRS)), 0o700 + (r as u32 % 0o100));
    write_at(&m.p("big"), (r as u64 * 200_000) % (3 << 20), &pseudo_random(900 + r as u64, 100_000));
}

/// Mount, apply round `r`, return the manifest, unmount.
fn changed_state(g: &Guest, r: usize) -> Manifest {
    let m = g.mount();
    mutate(&m, r);
    let s = m.manifest();
    m.umount();
    s
}

fn mounted_state(g: &Guest) -> Manifest {
    let m = g.mount();
    let s = m.manifest();
    m.umount();
    s
}

/// After a crash: the guest must look exactly like `old` or `new`; returns
/// which (true = new).
#[track_caller]
fn old_or_new(g: &Guest, what: &str, old: &Manifest, new: &Manifest) -> bool {
    let got = mounted_state(g);
    match (compare(old, &got), compare(new, &got)) {
        (Ok(()), _) => false,
        (_, Ok(())) => true,
        (Err(a), Err(b)) => panic!("{what}: the guest is neither the old state nor the new one\nvs old: {a}\nvs new: {b}"),
    }
}

#[test]
fn crashes_during_checkpoint_and_rollback_leave_old_or_new_state() {
    let w = World::new(true, build_many);
    let g = w.guest("c");
    let mut rng = Rng::from_env("LVREPO_GUESTS_CRASH_SEED");
    let mut round = 0;
    // Every checkpoint taken, with the state it must restore.
    let mut known: Vec<(u64, Manifest)> = Vec::new();

    // Calibrate: one uninterrupted checkpoint of a full round of changes.
    let s = changed_state(&g, round);
    round += 1;
    let d_cp = timed(&w.r, &["checkpoint", "c"]);
    eprintln!("checkpoint of ~2,000 changed files: {d_cp:?}");
    assert_same("after an uninterrupted checkpoint", &s, &mounted_state(&g));
    known.push((1, s.clone()));
    let mut cur = s;

    // Failpoints of checkpoint: the rebase never commits / commits but the old
    // generation is not removed. Either way the guest looks unchanged, and the
    // recorded checkpoint is complete.
    for fp in ["checkpoint-before-rebase", "switch-after-commit"] {
        let old = changed_state(&g, round);
        round += 1;
        let before = g.checkpoints();
        run_to_failpoint(&w.r, &["checkpoint", "c"], fp);
        assert_same(&format!("guest after checkpoint crashed at {fp}"), &old, &mounted_state(&g));
        let after = g.checkpoints();
        assert_eq!(after.len(), before.len() + 1, "{fp}: the checkpoint was recorded before the crash: {after:?}");
        let n = *after.last().expect("a checkpoint");
        known.push((n, old.clone()));
        // Successful repeat: a new checkpoint of the same state.
        let n2 = g.checkpoint("repeat");
        assert_same(&format!("after repeating the checkpoint crashed at {fp}"), &old, &mounted_state(&g));
        known.push((n2, old.clone()));
        cur = old;
    }

    // Failpoint of rollback after the commit: the new state, already.
    let (target, target_state) = known.iter().find(|(_, s)| compare(s, &cur).is_err()).cloned().expect("a checkpoint that differs from now");
    run_to_failpoint(&w.r, &["rollback", "c", &target.to_string()], "switch-after-commit");
    assert_same("guest after rollback crashed after its commit", &target_state, &mounted_state(&g));
    cur = target_state;

    // Every recorded checkpoint is complete: roll back to each (a rollback
    // timed here calibrates the random kills below).
    let mut d_rb = Duration::ZERO;
    for (n, s) in known.clone() {
        d_rb = d_rb.max(timed(&w.r, &["rollback", "c", &n.to_string()]));
        assert_same(&format!("rollback to checkpoint {n}"), &s, &mounted_state(&g));
        cur = s;
    }

    // kill -9 of `lvrepo checkpoint` at random instants.
    let mut hits = 0;
    for i in 0..6 {
        let old = changed_state(&g, round);
        round += 1;
        let before = g.checkpoints();
        let delay = Duration::from_micros(rng.below(d_cp.as_micros() as u64 * 6 / 5));
        let finished = kill9_after(&w.r, &["checkpoint", "c"], delay);
        hits += usize::from(!finished);
        assert_same(&format!("kill -9 of checkpoint #{i} after {delay:?} (finished: {finished})"), &old, &mounted_state(&g));
        let after = g.checkpoints();
        eprintln!("kill -9 of checkpoint after {delay:?}: finished {finished}, checkpoint listed {}", after.len() > before.len());
        assert!(after.starts_with(&before) && after.len() <= before.len() + 1, "checkpoints before {before:?}, after the kill {after:?}");
        if finished {
            assert_eq!(after.len(), before.len() + 1, "a checkpoint that finished must be listed");
        }
        if after.len() > before.len() {
            let n = *after.last().expect("a checkpoint");
            // A listed checkpoint must be complete: roll back to it.
            g.rollback(n);
            assert_same(&format!("checkpoint {n} listed after a kill -9"), &old, &mounted_state(&g));
            known.push((n, old.clone()));
        }
        cur = old;
    }
    eprintln!("checkpoint killed mid-way {hits} times of 6");

    // kill -9 of `lvrepo rollback` at random instants, between two different states.
    for i in 0..6 {
        let candidates: Vec<&(u64, Manifest)> = known.iter().filter(|(_, s)| compare(s, &cur).is_err()).collect();
        assert!(!candidates.is_empty(), "no checkpoint differs from the current state");
        let (n, target) = candidates[rng.below(candidates.len() as u64) as usize].clone();
        let delay = Duration::from_micros(rng.below(d_rb.as_micros() as u64 * 3 / 2));
        let finished = kill9_after(&w.r, &["rollback", "c", &n.to_string()], delay);
        let is_new = old_or_new(&g, &format!("kill -9 of rollback #{i} to {n} after {delay:?}"), &cur, &target);
        eprintln!("kill -9 of rollback after {delay:?}: finished {finished}, switched {is_new}");
        if finished {
            assert!(is_new, "a rollback that finished must have switched");
        }
        if is_new {
            cur = target;
        }
    }

    // kill -9 of the daemon while it takes a mounted checkpoint.
    for i in 0..3 {
        let m = g.mount();
        mutate(&m, round);
        round += 1;
        let old = m.manifest();
        let before = g.checkpoints();
        let mut client = lvrepo_cmd(&w.r, &["checkpoint", "c"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn checkpoint");
        std::thread::sleep(Duration::from_micros(rng.below(d_cp.as_micros() as u64)));
        m.kill9();
        let _ = client.wait();
        assert_same(&format!("guest after its daemon was killed during a mounted checkpoint #{i}"), &old, &mounted_state(&g));
        let after = g.checkpoints();
        assert!(after.starts_with(&before) && after.len() <= before.len() + 1, "checkpoints before {before:?}, after {after:?}");
        if after.len() > before.len() {
            let n = *after.last().expect("a checkpoint");
            g.rollback(n);
            assert_same(&format!("mounted checkpoint {n} listed after the daemon's kill -9"), &old, &mounted_state(&g));
        }
    }

    // A rollback of the mounted guest: the daemon aborts right after the
    // commit point (failpoint), or is killed at random instants. The guest
    // is then the old state or the checkpoint's, never a mix.
    let mut cur = mounted_state(&g);
    let pick = |rng: &mut Rng, cur: &Manifest| {
        let candidates: Vec<&(u64, Manifest)> = known.iter().filter(|(_, s)| compare(s, cur).is_err()).collect();
        assert!(!candidates.is_empty(), "no checkpoint differs from the current state");
        candidates[rng.below(candidates.len() as u64) as usize].clone()
    };
    // Calibrate: one uninterrupted live rollback.
    let d_live = {
        let (n, target) = pick(&mut rng, &cur);
        let m = g.mount();
        let d = timed(&w.r, &["rollback", "c", &n.to_string()]);
        assert_same("live rollback", &target, &m.manifest());
        m.umount();
        cur = target;
        eprintln!("live rollback: {d:?}");
        d
    };
    {
        let (n, target) = pick(&mut rng, &cur);
        let out = lvrepo_cmd(&w.r, &["mount", "--guest", "c", &g.mp.to_string_lossy()]).env("LVREPO_FAILPOINT", "switch-after-commit").output().expect("spawn mount");
        assert!(out.status.success(), "{}", report("mount with a failpoint armed", &out));
        let pid = daemon_pid(&g.mp).expect("daemon of the failpoint mount");
        let out = lvrepo_cmd(&w.r, &["rollback", "c", &n.to_string()]).output().expect("spawn rollback");
        assert!(!out.status.success(), "{}", report("live rollback whose daemon aborts", &out));
        assert!(wait_gone(pid, Duration::from_secs(30)), "daemon {pid} should have aborted at the failpoint");
        lazy_umount(&g.mp);
        assert!(g.log().contains("failpoint switch-after-commit reached"), "daemon did not reach the failpoint:\n{}", g.log());
        assert_same("daemon aborted after the commit point of a live rollback", &target, &mounted_state(&g));
        cur = target;
    }
    for i in 0..4 {
        let (n, target) = pick(&mut rng, &cur);
        let m = g.mount();
        let mut client = lvrepo_cmd(&w.r, &["rollback", "c", &n.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn rollback");
        let delay = Duration::from_micros(rng.below(d_live.as_micros() as u64 * 6 / 5));
        std::thread::sleep(delay);
        m.kill9();
        let finished = client.wait().expect("wait rollback").success();
        let is_new = old_or_new(&g, &format!("kill -9 of the daemon during live rollback #{i} to {n} after {delay:?}"), &cur, &target);
        eprintln!("kill -9 of the daemon during a live rollback after {delay:?}: client finished {finished}, switched {is_new}");
        if finished {
            assert!(is_new, "a live rollback that reported success must have switched");
        }
        if is_new {
            cur = target;
        }
    }

    // Crashes must not leak: once a later checkpoint or rollback has
    // completed, only the current overlay generation is left on disk.
    g.checkpoint("final");
    assert_eq!(g.gen_dirs().len(), 1, "overlay generations left behind by crashes: {:?}", g.gen_dirs());
}

// ─────────────────────────── 4. diff ───────────────────────────

fn build_diff_image(src: &Path) {
    for d in ["etc", "var/old", "opt/app", "opt/other", "usr"] {
        mkdir(&src.join(d));
    }
    for (p, c) in [("etc/a", "alpha\n"), ("etc/b", "beta\n"), ("etc/c", "gamma\n"), ("var/old/x", "x\n"), ("var/old/y", "y\n"), ("var/keep", "keep\n"), ("opt/app/f", "app\n"), ("opt/other/g", "g\n"), ("usr/x", "x\n"), ("usr/y", "y\n")] {
        put(&src.join(p), c.as_bytes());
    }
    put(&src.join("usr/z"), &[b'z'; 1000]);
}

#[test]
fn diff_lists_exactly_the_changes_mounted_or_not() {
    let w = World::new(true, build_diff_image);
    let g = w.guest("d");
    assert_diff("fresh guest vs its image", &BTreeSet::new(), &diff_set(&g.diff_json(None)));

    let m = g.mount();
    write_at(&m.p("etc/a"), 0, b"ALPHA");
    chmod(&m.p("etc/b"), 0o600);
    rm(&m.p("etc/c"));
    put(&m.p("etc/new"), b"new\n");
    rm_rf(&m.p("var/old"));
    mv(&m.p("opt/app"), &m.p("opt/app2"));
    rm(&m.p("usr/x"));
    mkdir(&m.p("usr/x"));
    xattr_set(&m.p("usr/y"), "user.tag", b"t");
    set_len(&m.p("usr/z"), 10);
    put(&m.p("newtop"), b"top\n");
    let e1 = set(&[
        ("", "metadata"),
        ("etc", "metadata"),
        ("etc/a", "content"),
        ("etc/b", "metadata"),
        ("etc/c", "removed"),
        ("etc/new", "added"),
        ("var", "metadata"),
        ("var/old", "removed"),
        ("var/old/x", "removed"),
        ("var/old/y", "removed"),
        ("opt", "metadata"),
        ("opt/app", "removed"),
        ("opt/app/f", "removed"),
        ("opt/app2", "added"),
        ("opt/app2/f", "added"),
        ("usr", "metadata"),
        ("usr/x", "removed"),
        ("usr/x", "added"),
        ("usr/y", "metadata"),
        ("usr/z", "content"),
        ("newtop", "added"),
    ]);
    let live = g.diff_json(None);
    assert_diff("mounted guest vs its image (daemon)", &e1, &diff_set(&live));
    assert_eq!(g.diff_json(Some("img:1")), live, "diff NAME img:1 must equal diff NAME");
    let text = g.r().ok(["diff", "d"]);
    for line in ["A /newtop", "D /etc/c", "C /etc/a", "M /etc/b"] {
        assert!(text.lines().any(|l| l == line), "text diff lacks {line:?}:\n{text}");
    }
    m.umount();
    assert_eq!(g.diff_json(None), live, "unmounted diff must equal the mounted (daemon) one");

    // Against a checkpoint.
    assert_eq!(g.checkpoint("one"), 1);
    assert_diff("right after checkpoint 1, vs 1", &BTreeSet::new(), &diff_set(&g.diff_json(Some("1"))));
    assert_diff("after the checkpoint, vs image", &e1, &diff_set(&g.diff_json(None)));
    let m = g.mount();
    append(&m.p("etc/new"), b"more\n");
    rm(&m.p("opt/app2/f"));
    put(&m.p("var/n2"), b"n2\n");
    let e2 = set(&[("etc/new", "content"), ("opt/app2", "metadata"), ("opt/app2/f", "removed"), ("var", "metadata"), ("var/n2", "added")]);
    let live_cp = g.diff_json(Some("1"));
    assert_diff("mounted guest vs checkpoint 1", &e2, &diff_set(&live_cp));
    let mut e12 = e1.clone();
    e12.remove(&("opt/app2/f".to_string(), "added".to_string()));
    e12.insert(("var/n2".to_string(), "added".to_string()));
    let live_img = g.diff_json(None);
    assert_diff("mounted guest vs image after both rounds", &e12, &diff_set(&live_img));
    g.r().fails(["diff", "d", "7", "--json"], 3);
    m.umount();
    assert_eq!(g.diff_json(Some("1")), live_cp, "unmounted diff vs checkpoint 1 must equal the mounted one");
    assert_eq!(g.diff_json(None), live_img, "unmounted diff vs image must equal the mounted one");
}

// ───────────────────── 5. clones cost the shared disk nothing ─────────────────────

#[test]
fn hundred_guests_cost_nothing_shared_and_only_their_own_changes() {
    let w = World::new(true, |src| {
        mkdir(&src.join("usr/lib"));
        put(&src.join("usr/lib/big"), &pseudo_random(1, 4 << 20));
        put(&src.join("usr/lib/small"), b"small\n");
    });
    let stats0 = w.r.json(["stats", "--json"]);
    let stored = w.stored_bytes();
    let guests: Vec<Guest> = (0..100).map(|i| w.guest(&format!("clone{i:03}"))).collect();
    let stats1 = w.r.json(["stats", "--json"]);
    for k in ["objects", "object_bytes"] {
        assert_eq!(stats1[k], stats0[k], "creating guests must not add objects to the shared repository ({k})");
    }
    // Asserted last, so the rest is checked whatever this shows.
    let stored_after_create = w.stored_bytes();
    let listed = w.r.json(["guest", "list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(100), "guest list --json: {listed}");
    for g in &guests {
        let du = disk_usage(&g.dir);
        assert!(du < 1 << 20, "guest {} takes {du} bytes on disk right after creation", g.name);
    }
    let before: Vec<u64> = guests.iter().map(Guest::local_bytes).collect();

    // 1 MiB of unique data into 3 guests, mounted at the same time; checkpoint live.
    let busy = [7usize, 42, 99];
    {
        let mounts: Vec<Mounted> = busy.iter().map(|&i| guests[i].mount()).collect();
        for (k, m) in mounts.iter().enumerate() {
            put(&m.p("unique.bin"), &pseudo_random(5000 + k as u64, 1 << 20));
        }
        for &i in &busy {
            assert_eq!(guests[i].checkpoint("1 MiB"), 1);
        }
        for m in mounts {
            m.umount();
        }
    }
    let stats2 = w.r.json(["stats", "--json"]);
    for k in ["objects", "object_bytes"] {
        assert_eq!(stats2[k], stats0[k], "guests' checkpoints must not add objects to the shared repository ({k})");
    }
    let stored_after_checkpoints = w.stored_bytes();
    for (i, g) in guests.iter().enumerate() {
        let now = g.local_bytes();
        if busy.contains(&i) {
            assert!(now >= before[i] + (1 << 20), "guest {}: local_bytes {} → {now}, expected ≥ 1 MiB more", g.name, before[i]);
        } else {
            assert_eq!(now, before[i], "guest {} changed nothing but its local_bytes moved", g.name);
        }
    }
    let registry = disk_usage(&w.r.repo().join("guests"));
    assert_eq!(stored_after_create, stored, "creating 100 guests changed the shared repository's stored_bytes ({registry} bytes under REPO/guests)");
    assert_eq!(stored_after_checkpoints, stored, "guests' checkpoints changed the shared repository's stored_bytes");
}

// ───────────────────────── 6. prune, gc, verify ─────────────────────────

#[test]
fn prune_keeps_the_newest_and_gc_keeps_what_guests_use() {
    const BLOB: usize = 256 << 10;
    let w = World::new(true, |src| {
        mkdir(&src.join("etc"));
        put(&src.join("etc/os-release"), b"NAME=golden\n");
        put(&src.join("lib.so"), &pseudo_random(3, 400_000));
    });
    // img:2 holds a payload the guest will copy; img:3 is unique and unused.
    let payload = pseudo_random(77, 300_000);
    let src2 = w.r.scratch("src2");
    mkdir(&src2);
    put(&src2.join("payload"), &payload);
    w.r.import(&src2, "img:2");
    let src3 = w.r.scratch("src3");
    mkdir(&src3);
    put(&src3.join("unused"), &pseudo_random(88, 600_000));
    w.r.import(&src3, "img:3");

    let g = w.guest("p");
    let mut states = Vec::new();
    for i in 1..=5u64 {
        let m = g.mount();
        if i > 1 {
            rm(&m.p("blob"));
        }
        put(&m.p("blob"), &pseudo_random(1000 + i, BLOB));
        put(&m.p("state"), format!("{i}\n").as_bytes());
        append(&m.p("etc/os-release"), format!("CP={i}\n").as_bytes());
        if i == 2 {
            put(&m.p("copied"), &payload);
        }
        states.push(m.manifest());
        if i % 2 == 1 {
            assert_eq!(g.checkpoint(&format!("cp {i}")), i);
            m.umount();
        } else {
            m.umount();
            let l0 = g.local_bytes();
            assert_eq!(g.checkpoint(&format!("cp {i}")), i);
            if i == 2 {
                let grew = g.local_bytes() - l0;
                assert!(grew >= BLOB as u64, "checkpoint 2 stored {grew} bytes, less than its unique blob");
                assert!(grew < (BLOB + 200_000) as u64, "checkpoint 2 stored {grew} bytes: the copy of img:2's payload must come from the shared repository");
            }
        }
    }
    assert_eq!(g.checkpoints(), vec![1, 2, 3, 4, 5]);
    let local_before = g.local_bytes();
    g.r().ok(["checkpoint", "prune", "p", "--keep", "2"]);
    assert_eq!(g.checkpoints(), vec![4, 5], "prune --keep 2");
    let local_after = g.local_bytes();
    assert!(local_after + 2 * BLOB as u64 <= local_before, "prune must reclaim the blobs only checkpoints 1-3 used: {local_before} → {local_after}");
    for gone in [1, 2, 3] {
        g.r().fails(["rollback", "p", &gone.to_string()], 3);
    }
    g.rollback(4);
    let m = g.mount();
    assert_same("rollback to kept checkpoint 4", &states[3], &m.manifest());
    m.umount();

    // Delete every image, the guest's own included: gc must keep all the guest uses.
    let stored = w.stored_bytes();
    for img in ["img:1", "img:2", "img:3"] {
        w.r.ok(["delete", img]);
    }
    w.r.ok(["gc"]);
    let after_gc = w.stored_bytes();
    assert!(after_gc + 500_000 <= stored, "gc should reclaim img:3's 600 kB: {stored} → {after_gc}");
    w.r.ok(["verify"]);
    let m = g.mount();
    assert_same("guest at checkpoint 4 after gc", &states[3], &m.manifest());
    assert_eq!(fs::read(m.p("copied")).expect("read copied"), payload);
    m.umount();
    g.rollback(5);
    let m = g.mount();
    assert_same("rollback to checkpoint 5 after gc", &states[4], &m.manifest());
    m.umount();
    w.r.ok(["verify"]);
    // A second gc keeps everything too.
    w.r.ok(["gc"]);
    let m = g.mount();
    assert_same("guest after a second gc", &states[4], &m.manifest());
    m.umount();
}

// ─────────────────────────── 7. guest rm ───────────────────────────

#[test]
fn a_mounted_guest_cannot_be_removed() {
    let w = World::new(true, |src| put(&src.join("file"), b"f\n"));
    let g = w.guest("victim");
    let other = w.guest("bystander");
    let m = g.mount();
    put(&m.p("mine"), b"mine\n");
    g.r().fails(["guest", "rm", "victim"], 6);
    g.r().fails(["checkpoint", "prune", "victim", "--keep", "0"], 6);
    // A second mount of the same guest is refused; the first keeps working.
    let mp2 = w.r.scratch("mnt/victim-2");
    mkdir(&mp2);
    let out = g.r().run([os("mount"), os("--guest"), os("victim"), mp2.as_os_str()]);
    if out.status.success() {
        lazy_umount(&mp2);
        panic!("{}", report("a second mount of a mounted guest must be refused", &out));
    }
    assert!(!is_mounted(&mp2));
    assert_eq!(fs::read(m.p("mine")).expect("the guest still works"), b"mine\n");
    let list = w.r.json(["guest", "list", "--json"]);
    let row = list.as_array().and_then(|a| a.iter().find(|g| g["name"] == "victim")).cloned().unwrap_or_else(|| panic!("victim not listed: {list}"));
    assert_eq!(row["mounted"], Value::Bool(true), "{row}");
    m.umount();

    g.r().ok(["guest", "rm", "victim"]);
    let list = w.r.json(["guest", "list", "--json"]);
    let names: Vec<&str> = list.as_array().expect("array").iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, vec!["bystander"], "guest list after rm");
    assert!(!g.dir.exists(), "guest dir {} left behind", g.dir.display());
    g.r().fails(["guest", "show", "victim"], 3);
    g.r().fails(["mount", "--guest", "victim", g.mp.to_str().expect("utf-8")], 3);
    g.r().fails(["guest", "rm", "victim"], 3);
    // The name can be reused, and the other guest is untouched.
    let again = w.guest("victim");
    let m = again.mount();
    assert!(!m.p("mine").exists(), "a new guest of a reused name must start clean");
    m.umount();
    let m = other.mount();
    assert_eq!(fs::read(m.p("file")).expect("read"), b"f\n");
    m.umount();
}

// ───────────────────────── personalisation ─────────────────────────

#[test]
fn create_personalises_the_guest() {
    let w = World::new(true, |src| {
        mkdir(&src.join("etc"));
        put(&src.join("etc/hostname"), b"golden\n");
    });
    let values = w.r.scratch("values.conf");
    put(&values, b"# site defaults\nip=10.0.0.5\n\nhostname=from-values\n");
    let motd = w.r.scratch("motd");
    put(&motd, b"managed by lvrepo\n");
    chmod(&motd, 0o640);
    let file_arg: OsString = format!("/etc/motd={}", motd.display()).into();
    let g = w.guest_with("web01", &[os("--values"), values.as_os_str(), os("--set"), os("hostname=web01"), os("--set"), os("role=db"), os("--file"), &file_arg]);
    let m = g.mount();
    assert_eq!(fs::read(m.p("etc/hostname")).expect("hostname"), b"web01\n", "--set overrides --values");
    let conf = fs::read_to_string(m.p("etc/lvrepo/guest.conf")).expect("guest.conf");
    assert_eq!(conf, "ip=10.0.0.5\nhostname=from-values\nhostname=web01\nrole=db\n");
    assert_eq!(fs::metadata(m.p("etc/lvrepo/guest.conf")).expect("stat").mode() & 0o7777, 0o600);
    assert_eq!(fs::read(m.p("etc/motd")).expect("motd"), b"managed by lvrepo\n");
    assert_eq!(fs::metadata(m.p("etc/motd")).expect("stat").mode() & 0o7777, 0o640);
    m.umount();
    let d = diff_set(&g.diff_json(None));
    for want in [("etc/hostname", "content"), ("etc/lvrepo", "added"), ("etc/lvrepo/guest.conf", "added"), ("etc/motd", "added")] {
        assert!(d.contains(&(want.0.to_string(), want.1.to_string())), "diff lacks {want:?}: {d:?}");
    }
    // The image itself is untouched.
    assert_eq!(w.r.ok(["cat", "img:1:/etc/hostname"]), "golden\n");
    // Bad input creates nothing.
    let out = w.r.run(["guest", "create", "bad", "--image", "img:1", "--overlay", w.r.scratch("guests/bad").to_str().expect("utf-8"), "--set", "no-equals"]);
    assert!(!out.status.success(), "{}", report("guest create with a bad --set must fail", &out));
    assert!(w.r.json(["guest", "list", "--json"]).as_array().expect("array").iter().all(|g| g["name"] != "bad"));
}

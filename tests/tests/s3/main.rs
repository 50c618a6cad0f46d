//! The repository on an S3-compatible object store (issue 30), through the
//! real binary against real servers that the tests start on loopback.
//!
//! A *host* is a cache directory: every host of a test has its own
//! (`LVREPO_CACHE`), so "publish on one host, read on another" is two
//! caches over one bucket, with nothing shared but the bucket. The same
//! suite runs on s3s-fs and on the local-filesystem store (`file://`), the
//! publishing races on moto (atomic conditional writes; s3s-fs has none) and
//! on `file://`, and what needs a server to stop and restart on s3s-fs only.
//!
//! Tests in this binary run one at a time (FUSE mounts, 2-core machines).

#[path = "../common/mod.rs"]
mod common;
mod failures;
mod races;
mod servers;
mod suite;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lvrepo_tests::{compare, manifest, report, require_root, Lvrepo, Manifest};
use servers::Server;

static SERIAL: Mutex<()> = Mutex::new(());

/// Where the repository lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Store {
    S3sFs,
    Moto,
    File,
}

/// One test's object store (a server, or a directory of `file://` buckets)
/// with buckets `main` and `backup`, and scratch space for its hosts.
pub struct World {
    pub store: Store,
    pub server: Option<Server>,
    tmp: tempfile::TempDir,
    _slot: MutexGuard<'static, ()>,
}

impl World {
    pub fn new(store: Store) -> World {
        require_root();
        let slot = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::Builder::new().prefix("lvrepo-s3").tempdir_in("/var/tmp").expect("tempdir");
        let server = match store {
            Store::S3sFs => Some(Server::s3s_fs(&tmp.path().join("s3root"), &tmp.path().join("server.log"))),
            Store::Moto => Some(Server::moto(&tmp.path().join("server.log"))),
            Store::File => None,
        };
        let w = World { store, server, tmp, _slot: slot };
        for b in ["main", "backup"] {
            match &w.server {
                Some(s) => s.create_bucket(b),
                None => fs::create_dir_all(w.tmp.path().join("buckets").join(b)).expect("mkdir bucket"),
            }
        }
        w
    }

    /// The repository URL of `PREFIX` in `BUCKET`.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        match self.store {
            Store::File => format!("file://{}/buckets/{bucket}/{prefix}", self.tmp.path().display()),
            _ => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The directory holding `bucket`'s objects (s3s-fs and `file://`).
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        match (&self.server, self.store) {
            (Some(s), Store::S3sFs) => s.root.as_ref().expect("root").join(bucket),
            (None, Store::File) => self.tmp.path().join("buckets").join(bucket),
            _ => panic!("a {:?} bucket has no directory", self.store),
        }
    }

    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Host `name` (cache `hosts/NAME/cache`) on the main repository.
    pub fn host(&self, name: &str) -> Host {
        self.host_on(&self.url("main", "repo"), name)
    }

    /// Host `name` with `--repo url`.
    pub fn host_on(&self, url: &str, name: &str) -> Host {
        let dir = self.scratch("hosts").join(name);
        fs::create_dir_all(&dir).expect("mkdir host dir");
        let cache = dir.join("cache");
        let mut r = Lvrepo::at(url).with_env("LVREPO_CACHE", &cache).with_env("RUST_BACKTRACE", "1");
        if let Some(s) = &self.server {
            for (k, v) in [
                ("AWS_ENDPOINT_URL", s.endpoint()),
                ("AWS_ACCESS_KEY_ID", servers::KEY.to_string()),
                ("AWS_SECRET_ACCESS_KEY", servers::SECRET.to_string()),
                ("AWS_REGION", "us-east-1".to_string()),
                ("AWS_ALLOW_HTTP", "true".to_string()),
            ] {
                r = r.with_env(k, v);
            }
        }
        Host { r, cache, dir }
    }

    /// `init` on `h`, whose repository is `BUCKET/PREFIX`, and proof that it
    /// landed in the store (its `FORMAT` object), not in a local directory
    /// named like the URL (what a binary without object stores would do).
    pub fn init(&self, h: &Host, bucket: &str, prefix: &str) {
        h.ok(["init"]);
        let key = format!("{prefix}/FORMAT");
        let there = match (&self.server, self.store) {
            (Some(s), Store::Moto) => s.has_object(bucket, &key),
            _ => self.bucket_dir(bucket).join(&key).is_file(),
        };
        assert!(there, "lvrepo init on {} left no {key} in bucket {bucket} of the {:?} store", h.repo().display(), self.store);
    }

    /// The server's log (for failure messages).
    pub fn server_log(&self) -> String {
        self.server.as_ref().map(|s| s.log_text()).unwrap_or_default()
    }
}

/// An `lvrepo` run on one host: `Lvrepo` with `--repo` and the host's env.
pub struct Host {
    pub r: Lvrepo,
    pub cache: PathBuf,
    /// Scratch space of this host (overlays, mountpoints, exports).
    pub dir: PathBuf,
}

impl std::ops::Deref for Host {
    type Target = Lvrepo;
    fn deref(&self) -> &Lvrepo {
        &self.r
    }
}

impl Host {
    /// Bytes this host fetched: the allocated size of its cache's packs.
    pub fn fetched(&self) -> u64 {
        disk_usage(&self.cache.join("packs"))
    }

    /// `guest create NAME --image IMAGE --overlay DIR/guests/NAME`.
    pub fn guest(&self, name: &str, image: &str) -> PathBuf {
        let ov = self.dir.join("guests").join(name);
        self.ok([os("guest"), os("create"), os(name), os("--image"), os(image), os("--overlay"), ov.as_os_str()]);
        ov
    }

    /// Mount guest `name` at `DIR/mnt/NAME`; unmounted when the guard drops.
    pub fn mount(&self, name: &str) -> Mounted<'_> {
        let mp = self.dir.join("mnt").join(name);
        fs::create_dir_all(&mp).expect("mkdir mountpoint");
        let out = self.run([os("mount"), os("--guest"), os(name), mp.as_os_str()]);
        let log = fs::read_to_string(self.dir.join("guests").join(name).join("daemon.log")).unwrap_or_default();
        assert!(out.status.success(), "{}\ndaemon.log:\n{log}", report(&format!("mount --guest {name}"), &out));
        assert!(common::is_mounted(&mp), "mount --guest {name} returned 0 but {} is not a mount", mp.display());
        Mounted { h: self, name: name.to_string(), mp, live: true }
    }

    /// Export `image` into a fresh directory under this host's scratch.
    pub fn export_manifest(&self, image: &str) -> Manifest {
        let out = self.dir.join(format!("export-{}", image.replace(':', "-")));
        self.export(image, &out);
        manifest(&out).unwrap_or_else(|e| panic!("manifest of {}: {e}", out.display()))
    }
}

/// A mounted guest; `lvrepo umount` (or a forced detach) on drop.
pub struct Mounted<'a> {
    h: &'a Host,
    pub name: String,
    pub mp: PathBuf,
    live: bool,
}

impl Mounted<'_> {
    pub fn manifest(&self) -> Manifest {
        manifest(&self.mp).unwrap_or_else(|e| panic!("manifest of guest {} mount: {e}\ndaemon.log:\n{}", self.name, self.log()))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.h.dir.join("guests").join(&self.name).join("daemon.log")).unwrap_or_default()
    }

    pub fn umount(mut self) {
        self.live = false;
        let out = self.h.run([os("umount"), self.mp.as_os_str()]);
        assert!(out.status.success(), "{}\ndaemon.log:\n{}", report("lvrepo umount", &out), self.log());
        assert!(!common::is_mounted(&self.mp), "{} still mounted after lvrepo umount", self.mp.display());
        let log = self.log();
        assert!(!log.contains("panicked"), "the daemon of guest {} panicked:\n{log}", self.name);
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if self.live {
            common::umount_or_kill(&self.h.r, &self.mp);
        }
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Assert two manifests are identical, with a readable failure.
#[track_caller]
fn assert_same(what: &str, expected: &Manifest, got: &Manifest) {
    assert!(expected.entries.len() > 1, "{what}: the expected tree is empty, so this check could not fail");
    if let Err(d) = compare(expected, got) {
        panic!("{what}: {d}");
    }
}

/// Allocated bytes of the regular files under `p` (st_blocks × 512); 0 when absent.
fn disk_usage(p: &Path) -> u64 {
    files_under(p).iter().filter_map(|(f, _)| fs::symlink_metadata(f).ok()).map(|m| m.blocks() * 512).sum()
}

/// Every regular file under `p` with its size (iterative walk).
fn files_under(p: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![p.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else { continue };
            if md.is_dir() {
                todo.push(e.path());
            } else if md.is_file() {
                out.push((e.path(), md.len()));
            }
        }
    }
    out.sort();
    out
}

fn mk(p: &Path) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
}

fn put(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// A small image tree of its own: `seed` makes its contents unique.
fn small_tree(dir: &Path, seed: u64) {
    mk(&dir.join("etc"));
    put(&dir.join("etc/hostname"), format!("host-{seed}\n").as_bytes());
    put(&dir.join("etc/data.bin"), &lvrepo_tests::fixture::pseudo_random(seed, 300_000));
    mk(&dir.join("usr/lib"));
    put(&dir.join("usr/lib/lib.so"), &lvrepo_tests::fixture::pseudo_random(seed + 1_000_000, 1_100_000));
}

/// Host `a` creates the repository and imports what `build` puts in
/// `SCRATCH/src` as `img:1`.
fn published(w: &World, build: impl FnOnce(&Path)) -> (Host, PathBuf) {
    let a = w.host("a");
    w.init(&a, "main", "repo");
    let src = w.scratch("src");
    mk(&src);
    build(&src);
    a.import(&src, "img:1");
    (a, src)
}

/// `h` imports a [`small_tree`] of `seed`, built in `SCRATCH/DIR`, as `image`.
fn small_image(w: &World, h: &Host, dir: &str, seed: u64, image: &str) -> PathBuf {
    let src = w.scratch(dir);
    mk(&src);
    small_tree(&src, seed);
    h.import(&src, image);
    src
}

fn image_list(h: &Host) -> Vec<String> {
    let mut v = h.image_names();
    v.sort();
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `lvrepo ARGS` on host `h`, spawned (not waited for).
fn spawn(h: &Host, args: &[&OsStr]) -> std::process::Child {
    h.command(args).spawn().expect("spawn lvrepo")
}

/// One `#[test]` per store and test function:
/// `tests_on!(SRC [FN, ...] on MODULE = STORE, ...)`.
macro_rules! tests_on {
    ($src:ident $list:tt on $($m:ident = $store:path),+ $(,)?) => {
        $( tests_on!(@one $m, $store, $src $list); )+
    };
    (@one $m:ident, $store:path, $src:ident [$($t:ident),* $(,)?]) => {
        mod $m {
            $( #[test] fn $t() { crate::$src::$t($store) } )*
        }
    };
}

tests_on!(suite [
    publish_on_one_host_mount_and_export_on_another,
    backup_to_a_second_bucket_and_restore_on_a_third_host,
    large_file_round_trips,
    kill9_of_an_import_leaves_no_image_and_a_retry_completes,
    kill9_of_a_backup_leaves_no_backup_and_a_retry_completes,
    damaged_object_is_detected_by_verify_and_on_read,
    gc_marks_then_sweeps_and_other_hosts_keep_reading,
    a_deleted_image_under_another_hosts_guest_survives_gc_until_the_guest_goes,
] on s3s_fs = crate::Store::S3sFs, file = crate::Store::File);
tests_on!(races [
    sixteen_hosts_publish_at_once_and_no_ref_is_lost,
    two_hosts_race_on_one_name_version_and_exactly_one_wins,
] on moto = crate::Store::Moto, file_races = crate::Store::File);
tests_on!(failures [
    a_restarted_server_is_picked_up,
    a_server_down_is_a_clear_error_never_wrong_bytes,
] on s3s_fs_failures = crate::Store::S3sFs);

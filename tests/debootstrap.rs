//! A real Debian root filesystem (bookworm, minbase) for tests that need
//! realistic content: thousands of files, setuid binaries, hardlinks,
//! symlink farms, device-free /dev.
//!
//! Built once and cached under `/var/cache/lvrepo-tests` (override with
//! `LVREPO_TEST_CACHE`). The tree is built in a temp dir next to the cache and
//! renamed into place, and the `.ok` marker lives OUTSIDE the tree, so a killed
//! run never leaves a half tree that looks complete, and importing the tree
//! never picks up the marker. `tests/fetch-debootstrap.sh` does the same from
//! the shell so CI can build the cache up front; both take the same flock.
//!
//! A failing debootstrap PANICS: a test that silently skips would count as a
//! pass and hide that the real-world case was never exercised.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

/// Cache directory holding the tree, its marker and its lock.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("LVREPO_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/lvrepo-tests"))
}

/// Path of the cached bookworm minbase tree, building it first if needed.
pub fn bookworm_minbase() -> PathBuf {
    let cache = cache_dir();
    let dest = cache.join("bookworm-minbase");
    let mark = cache.join("bookworm-minbase.ok");
    if mark.is_file() && dest.is_dir() {
        return dest;
    }
    fs::create_dir_all(&cache)
        .unwrap_or_else(|e| panic!("cannot create test cache {}: {e}", cache.display()));
    let lock = File::create(cache.join("bookworm-minbase.lock")).expect("create lock file");
    // SAFETY: the fd is valid for the life of `lock`; flock releases on close.
    let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
    if mark.is_file() && dest.is_dir() {
        return dest; // another process built it while we waited
    }
    let _ = fs::remove_file(&mark);
    let _ = fs::remove_dir_all(&dest);
    if let Ok(rd) = fs::read_dir(&cache) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("bookworm-minbase.tmp.") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = cache.join(format!("bookworm-minbase.tmp.{}", std::process::id()));
    let mirror = std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    eprintln!("building debootstrap cache at {} (takes a few minutes)", dest.display());
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&tmp)
        .arg(&mirror)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run debootstrap ({e}); install it: apt-get install debootstrap")
        });
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        panic!(
            "debootstrap --variant=minbase bookworm failed ({}); this test needs the real tree.\n\
             stdout tail:\n{}\nstderr:\n{}",
            out.status,
            tail(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::rename(&tmp, &dest).expect("rename debootstrap tree into place");
    fs::write(&mark, b"ok\n").expect("write debootstrap marker");
    dest
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The minbase tree with systemd-sysv and udev (the boot test's tier 2),
/// cached beside it and built once by `tests/fetch-debootstrap.sh --systemd`
/// (a copy of the minbase tree; apt-get in a chroot, network needed once).
/// Read-only for tests: copy it before changing anything.
pub fn bookworm_systemd() -> PathBuf {
    let dest = cache_dir().join("bookworm-systemd");
    if cache_dir().join("bookworm-systemd.ok").is_file() && dest.is_dir() {
        return dest;
    }
    bookworm_minbase();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fetch-debootstrap.sh");
    let out = Command::new("sh").arg(&script).arg("--systemd").output().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(out.status.success(), "{} --systemd failed; this test needs the tree:\n{}\n{}", script.display(), tail(&out.stdout), String::from_utf8_lossy(&out.stderr));
    dest
}

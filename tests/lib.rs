//! Test support for lvrepo's integration tests: a full-metadata tree
//! manifest, a hostile fixture tree, a cached Debian rootfs, and helpers that
//! drive the real `lvrepo` binary. The tests themselves live in `tests/`.

pub mod bin;
pub mod debootstrap;
pub mod fixture;
pub mod manifest;
pub mod tar;

pub use bin::{changes, image_path, lvrepo_bin, report, Lvrepo};
pub use debootstrap::{bookworm_minbase, bookworm_systemd};
pub use fixture::build_hostile_tree;
pub use manifest::{compare, compare_with, manifest, CompareOpts, Manifest};

/// The newest kernel under /boot (for QEMU boot tests) and its version.
pub fn newest_kernel() -> (std::path::PathBuf, String) {
    let mut kernels: Vec<std::path::PathBuf> = std::fs::read_dir("/boot")
        .expect("/boot")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .collect();
    kernels.sort();
    let k = kernels.pop().expect("no kernel in /boot: scripts/setup.sh installs linux-image-amd64");
    let ver = k.file_name().map(|n| n.to_string_lossy().trim_start_matches("vmlinuz-").to_string()).unwrap_or_default();
    (k, ver)
}

/// Fail fast (instead of producing confusing errors) when not root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "lvrepo integration tests must run as root (mknod, chown, xattrs)");
}

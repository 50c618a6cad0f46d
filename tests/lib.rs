//! Test support for lvrepo's integration tests: a full-metadata tree
//! manifest, a hostile fixture tree, a cached Debian rootfs, and helpers that
//! drive the real `lvrepo` binary. The tests themselves live in `tests/`.

pub mod bin;
pub mod debootstrap;
pub mod fixture;
pub mod manifest;
pub mod tar;

pub use bin::{changes, image_path, lvrepo_bin, report, Lvrepo};
pub use debootstrap::bookworm_minbase;
pub use fixture::build_hostile_tree;
pub use manifest::{compare, compare_with, manifest, CompareOpts, Manifest};

/// Fail fast (instead of producing confusing errors) when not root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "lvrepo integration tests must run as root (mknod, chown, xattrs)");
}

//! import → export must give back the tree bit for bit, metadata included.
//!
//! Tar export decision: lvrepo's tar is PAX, which carries xattrs (ACLs,
//! capabilities), nanosecond mtimes, devices, fifos, hardlinks and any
//! name bytes. Sockets have no tar representation and lvrepo's tar members are
//! dense, so a tar round trip loses exactly the sockets and the holes (the
//! latter at most a "metadata" change), nothing else.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use lvrepo_tests::fixture::{self, *};
use lvrepo_tests::manifest::{compare, compare_with, manifest, CompareOpts};
use lvrepo_tests::{bookworm_minbase, changes, image_path, require_root, Lvrepo};

fn hostile_repo() -> (Lvrepo, std::path::PathBuf) {
    require_root();
    let r = Lvrepo::init();
    let src = r.scratch("src");
    std::fs::create_dir(&src).unwrap();
    build_hostile_tree(&src).unwrap();
    r.import(&src, "hostile");
    (r, src)
}

fn assert_same_tree(src: &Path, out: &Path) {
    let a = manifest(src).unwrap();
    let b = manifest(out).unwrap();
    assert!(a.entries.len() > 50, "manifest suspiciously small");
    if let Err(e) = compare(&a, &b) {
        panic!("exported tree {} differs from source {}:\n{e}", out.display(), src.display());
    }
}

#[test]
fn hostile_tree_roundtrips_exactly_through_directory_export() {
    let (r, src) = hostile_repo();
    assert_eq!(r.image_names(), vec!["hostile:1".to_string()], "no VERSION → version 1");
    let out = r.scratch("out");
    r.export("hostile:1", &out);
    assert_same_tree(&src, &out);

    // Content read back through `cat`, including odd names and holes.
    for (i, (p, _, _)) in SIZED_FILES.iter().enumerate() {
        let got = r.ok_bytes([OsString::from("cat"), image_path("hostile:1", p.as_bytes())]);
        assert!(got == sized_content(i), "cat {p}: wrong bytes ({} bytes)", got.len());
    }
    let sparse = r.ok_bytes([OsString::from("cat"), image_path("hostile", SPARSE.as_bytes())]);
    assert_eq!(blake3::hash(&sparse), blake3::hash(&std::fs::read(src.join(SPARSE)).unwrap()));
    let third = r.ok_bytes([OsString::from("cat"), image_path("hostile:1", HARDLINKS[2].as_bytes())]);
    assert_eq!(third, b"one inode, three names\n");
    // Names are bytes: `cat` must accept non-UTF-8 and newline paths too.
    for n in ODD_NAMES {
        let mut p = b"names/".to_vec();
        p.extend_from_slice(n);
        let got = r.ok_bytes([OsString::from("cat"), image_path("hostile:1", &p)]);
        assert_eq!(got, n.to_vec(), "cat of {}", p.escape_ascii());
    }
}

#[test]
fn export_into_existing_empty_dir_applies_root_metadata() {
    let (r, src) = hostile_repo();
    let out = r.scratch("out");
    std::fs::create_dir(&out).unwrap();
    r.export("hostile", &out);
    assert_same_tree(&src, &out);
}

#[test]
fn debootstrap_tree_roundtrips_exactly() {
    require_root();
    let deb = bookworm_minbase();
    let r = Lvrepo::init();
    r.import(&deb, "bookworm:1");
    let out = r.scratch("out");
    r.export("bookworm:1", &out);
    assert_same_tree(&deb, &out);
    let bash = std::fs::read(deb.join("usr/bin/bash")).unwrap();
    assert!(r.ok_bytes(["cat", "bookworm:1:usr/bin/bash"]) == bash, "cat usr/bin/bash differs");
}

/// What a tar round trip may change: sockets are dropped (no tar type), and
/// holes are not carried (lvrepo writes dense tar members), which is at most a
/// metadata change: the bytes are identical, so never "content".
fn assert_tar_diff(r: &Lvrepo, a: &str, b: &str) {
    let got = r.diff_set(a, b);
    let mut want = changes(&[("special/a-socket", "removed"), ("special/socket", "removed")]);
    for s in [SPARSE, ALL_HOLE] {
        if got.contains(&(s.to_string(), "metadata".to_string())) {
            want.insert((s.to_string(), "metadata".to_string()));
        }
    }
    assert_eq!(got, want, "diff {a} {b} after a tar round trip");
}

#[test]
fn tar_export_reimports_losing_only_sockets() {
    let (r, src) = hostile_repo();
    let tar = r.scratch("hostile.tar");
    r.export("hostile:1", &tar);
    // GNU tar must be able to read it (it is meant for other tools too).
    let out = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    assert!(out.status.success(), "GNU tar cannot read export: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&"n".repeat(255)));

    r.import(&tar, "fromtar:1");
    assert_tar_diff(&r, "hostile:1", "fromtar:1");

    // The re-imported image must export to the source minus the sockets.
    let back = r.scratch("back");
    r.export("fromtar:1", &back);
    let mut a = manifest(&src).unwrap();
    for s in [&b"special/socket"[..], b"special/a-socket"] {
        a.entries.remove(s).expect("fixture has the socket");
    }
    let b = manifest(&back).unwrap();
    let opts = CompareOpts { ignore_sparse: true, ..Default::default() };
    if let Err(e) = compare_with(&a, &b, opts) {
        panic!("tar round trip changed more than sockets and holes:\n{e}");
    }
    // The tar as shipped, extracted by GNU tar, has the same bytes and file
    // capabilities (SCHILY.xattr). ACLs are not checked: GNU tar only restores
    // them from SCHILY.acl.*, not from SCHILY.xattr.system.posix_acl_*.
    let gx = r.scratch("gnu");
    std::fs::create_dir(&gx).unwrap();
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&tar)
        .arg("-C")
        .arg(&gx)
        .status()
        .unwrap();
    assert!(st.success());
    let g = manifest(&gx).unwrap();
    for (i, (p, _, _)) in SIZED_FILES.iter().enumerate() {
        assert_eq!(g.get(p).and_then(|e| e.hash), Some(blake3::hash(&sized_content(i))), "GNU tar sees {p}");
    }
    let caps = g.get(CAPS).expect("caps file in GNU extraction");
    assert_eq!(caps.xattrs.get(&b"security.capability"[..]), Some(&fixture::cap_net_raw_ep()));
}

#[test]
fn tar_on_stdout_reimports_from_stdin() {
    let (r, _src) = hostile_repo();
    let tar = r.ok_bytes(["export", "hostile:1", "-"]);
    assert!(tar.len() > 2 << 20, "tar on stdout too small: {}", tar.len());
    let out = r.run_stdin(["import", "-", "--image", "stdin:1"], Some(&tar));
    assert!(out.status.success(), "{}", lvrepo_tests::report("import - from stdin", &out));
    assert_tar_diff(&r, "hostile:1", "stdin:1");
}

//! Self-tests of the test support code (no lvrepo binary needed): if the
//! fixture or manifest were silently weak, every round-trip test would pass
//! vacuously.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use lvrepo_tests::fixture::{self, *};
use lvrepo_tests::manifest::{compare, compare_with, manifest, CompareOpts, Kind};
use lvrepo_tests::require_root;
use lvrepo_tests::tar::RawTar;

#[test]
fn fixture_has_everything_and_manifest_sees_it() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("t");
    std::fs::create_dir(&root).unwrap();
    build_hostile_tree(&root).unwrap();
    let m = manifest(&root).unwrap();

    let r = m.get("").unwrap();
    assert_eq!(r.kind, Kind::Dir);
    assert_ne!(r.mtime_nsec, 0, "root mtime has nanoseconds");
    for (i, (p, len, _)) in SIZED_FILES.iter().enumerate() {
        let e = m.get(p).unwrap();
        assert_eq!(e.size, Some(*len as u64));
        assert_eq!(e.hash, Some(blake3::hash(&sized_content(i))));
    }
    let s = m.get(SPARSE).unwrap();
    assert_eq!(
        s.data_map.as_deref(),
        Some(&[(0, 65536), (4 << 20, (4 << 20) + 65536), ((10 << 20) - 4096, 10 << 20)][..])
    );
    assert_eq!(m.get(ALL_HOLE).unwrap().data_map.as_deref(), Some(&[][..]));
    for h in HARDLINKS {
        assert_eq!(m.get(h).unwrap().link_group.as_deref(), Some(HARDLINKS[0].as_bytes()));
    }
    assert_eq!(m.get("files/one").unwrap().link_group, None);
    let su = m.get(SETUID).unwrap();
    assert_eq!((su.mode, su.uid, su.gid), (0o4755, 1234, 5678));
    assert_eq!(m.get("perm/sticky").unwrap().mode, 0o1777);
    assert_eq!(m.get("perm/zero").unwrap().mode, 0);
    assert_eq!(m.get("perm/all-bits").unwrap().mode, 0o7777);
    assert_eq!(
        m.get(CAPS).unwrap().xattrs.get(&b"security.capability"[..]),
        Some(&fixture::cap_net_raw_ep())
    );
    assert!(m.get(ACL_FILE).unwrap().xattrs.contains_key(&b"system.posix_acl_access"[..]));
    assert!(m.get(ACL_DIR).unwrap().xattrs.contains_key(&b"system.posix_acl_default"[..]));
    assert!(m.get("perm/trusted").unwrap().xattrs.contains_key(&b"trusted.lvrepo-test"[..]));
    for &(p, chr, ma, mi) in DEVICES {
        let e = m.get(p).unwrap();
        assert_eq!(e.kind, if chr { Kind::CharDev } else { Kind::BlockDev });
        assert_eq!(e.rdev, Some((ma, mi)));
    }
    assert_eq!(m.get("special/fifo").unwrap().kind, Kind::Fifo);
    assert_eq!(m.get("special/socket").unwrap().kind, Kind::Socket);
    let l = m.get("links/escape").unwrap();
    assert_eq!((l.kind, l.target.as_deref()), (Kind::Symlink, Some(&b"../../etc/passwd"[..])));
    assert_ne!(l.mtime_nsec, 0);
    assert_eq!(m.get("links/relative").unwrap().uid, 1234);
    for n in ODD_NAMES {
        let mut p = b"names/".to_vec();
        p.extend_from_slice(n);
        let e = m.get(&p).unwrap_or_else(|| panic!("missing {}", p.escape_ascii()));
        assert_eq!(e.xattrs.get(NAME_XATTR.as_bytes()), Some(&n.to_vec()));
    }
    assert!(m.get(format!("names/{}", "n".repeat(255))).is_some());
    assert!(m.get(DEEP_FILE).is_some());
    assert_eq!(m.get("empty").unwrap().kind, Kind::Dir);
    let mut nsecs: Vec<i64> = m.entries.values().map(|e| e.mtime_nsec).collect();
    nsecs.dedup();
    assert!(nsecs.iter().all(|n| *n != 0));
}

/// `cp -a` is a faithful copy, so compare must accept it; then one change of
/// each kind must be reported.
#[test]
fn compare_accepts_faithful_copy_and_reports_changes() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir(&a).unwrap();
    build_hostile_tree(&a).unwrap();
    let st = Command::new("cp").args(["-a"]).arg(&a).arg(&b).status().unwrap();
    assert!(st.success());
    let ma = manifest(&a).unwrap();
    let mb = manifest(&b).unwrap();
    if let Err(e) = compare(&ma, &mb) {
        panic!("cp -a copy differs:\n{e}");
    }

    fixture::lchown(&b.join("files/one"), 1, 1).unwrap();
    fixture::set_xattr(&b.join(OsStr::from_bytes(b"names/bad\xff\xfe")), "user.x", b"1").unwrap();
    std::fs::remove_file(b.join(HARDLINKS[2])).unwrap();
    fixture::set_mtime(&b, 1, 2).unwrap();
    let err = compare(&ma, &manifest(&b).unwrap()).unwrap_err();
    for needle in ["files/one: uid", "names/bad\\xff\\xfe: xattr user.x", "hard/third: only in left", "<root>: mtime"] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let opts = CompareOpts { ignore_root_mtime: true, ..Default::default() };
    assert!(!compare_with(&ma, &manifest(&b).unwrap(), opts).unwrap_err().contains("<root>"));
}

/// GNU tar must read our hand-made streams as intended.
#[test]
fn raw_tar_is_readable_by_gnu_tar() {
    let mut t = RawTar::new();
    t.dir(b"d/").file(b"d/f", b"hello").symlink(b"d/l", b"f").hardlink(b"d/h", b"d/f");
    let long = format!("d/{}", "x".repeat(150));
    t.file(long.as_bytes(), b"long").device(b"d/null", true, 1, 3).fifo(b"d/p");
    let tmp = tempfile::tempdir().unwrap();
    let tf = tmp.path().join("t.tar");
    std::fs::write(&tf, t.finish()).unwrap();
    let out = Command::new("tar").arg("-tvf").arg(&tf).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    for needle in ["d/f", "d/l -> f", "d/h link to d/f", &long, "1,3", "d/p"] {
        assert!(s.contains(needle), "{needle} not in:\n{s}");
    }
}

/// The cached Debian tree is complete and has the features tests rely on.
#[test]
fn debootstrap_cache_is_complete() {
    require_root();
    let deb = lvrepo_tests::bookworm_minbase();
    let m = manifest(&deb).unwrap();
    assert!(m.entries.len() > 5000, "only {} entries in {}", m.entries.len(), deb.display());
    assert!(m.get("usr/bin/bash").and_then(|e| e.size).unwrap_or(0) > 1 << 20);
    assert!(m.get("etc/issue.net").is_some());
    assert!(m.entries.values().any(|e| e.link_group.is_some()), "no hardlinks in debootstrap tree");
    assert!(m.entries.values().any(|e| e.mode & 0o4000 != 0), "no setuid binary");
    assert!(m.get("bookworm-minbase.ok").is_none(), "marker must live outside the tree");
}

//! Attributes: xattrs in every namespace, security.capability, POSIX ACLs
//! (enforced and inherited), statfs.

use super::*;

fn getfacl(p: &Path, default: bool) -> String {
    let mut cmd = Command::new("getfacl");
    cmd.arg("-n").arg("--omit-header");
    if default {
        cmd.arg("-d");
    }
    let out = cmd.arg(p).output().expect("getfacl");
    assert!(out.status.success(), "getfacl {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn setfacl(args: &[&str], p: &Path) {
    let out = Command::new("setfacl").args(args).arg(p).output().expect("setfacl");
    assert!(out.status.success(), "setfacl {args:?} {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
}

/// Run `cat FILE` as user `tests` (no supplementary groups); Ok(content) or Err(stderr).
fn cat_as_tests(p: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("setpriv")
        .args(["--reuid=tests", "--regid=tests", "--clear-groups", "cat"])
        .arg(p)
        .output()
        .expect("setpriv");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn xattrs_capabilities_and_acls() {
    let g = hostile();
    let m = g.mount();
    // Image values come through.
    let x = m.p("files/xattrs");
    assert_eq!(get_xattr(&x, "user.comment"), Ok(b"a comment".to_vec()));
    assert_eq!(get_xattr(&x, "user.binary"), Ok(vec![0, 0xff, 0xfe, b'\n', 0]));
    assert_eq!(get_xattr(&x, "user.big"), Ok(pseudo_random(9, 3000)));
    assert_eq!(get_xattr(&m.p("perm/trusted"), "trusted.lvrepo-test"), Ok(vec![0, 1, 2, 255]));
    assert_eq!(get_xattr(&m.p(fixture::CAPS), "security.capability"), Ok(fixture::cap_net_raw_ep()));
    assert_eq!(getfacl(&m.p(fixture::ACL_FILE), false), getfacl(&g.src(fixture::ACL_FILE), false));
    assert_eq!(getfacl(&m.p(fixture::ACL_DIR), true), getfacl(&g.src(fixture::ACL_DIR), true));
    let mut listed: Vec<String> = xattr::list(&x).unwrap().map(|n| n.to_string_lossy().into_owned()).collect();
    listed.sort();
    assert_eq!(listed, ["user.big", "user.binary", "user.comment", "user.empty"]);

    // Changes: set, replace, remove; CREATE/REPLACE flags.
    assert_eq!(set_xattr_flags(&x, "user.comment", b"dup", libc::XATTR_CREATE), Err(libc::EEXIST));
    assert_eq!(set_xattr_flags(&x, "user.missing", b"v", libc::XATTR_REPLACE), Err(libc::ENODATA));
    set_xattr_flags(&x, "user.comment", b"replaced", libc::XATTR_REPLACE).unwrap();
    xattr::remove(&x, "user.binary").unwrap();
    assert_eq!(get_xattr(&x, "user.binary"), Err(libc::ENODATA));
    xattr::set(m.p("perm/trusted"), "trusted.new", &[0, 0, 7]).unwrap();
    assert_eq!(g.data_files(), Vec::<PathBuf>::new(), "an xattr change copied file data");
    // security.capability on a new file; a write by root strips it (as on ext4).
    write(&m.p("capfile"), b"#!/bin/true\n");
    xattr::set(m.p("capfile"), "security.capability", &fixture::cap_net_raw_ep()).unwrap();
    assert_eq!(get_xattr(&m.p("capfile"), "security.capability"), Ok(fixture::cap_net_raw_ep()));
    write(&m.p("capfile2"), b"#!/bin/true\n");
    xattr::set(m.p("capfile2"), "security.capability", &fixture::cap_net_raw_ep()).unwrap();
    fixture::append(&m.p("capfile2"), b"# modified\n").unwrap();
    assert_eq!(get_xattr(&m.p("capfile2"), "security.capability"), Err(libc::ENODATA), "a write must drop file capabilities");
    // ACLs with setfacl/getfacl: on a new file, an image file, a new dir (default ACL).
    write(&m.p("aclfile"), b"secret\n");
    fs::set_permissions(m.p("aclfile"), fs::Permissions::from_mode(0o600)).unwrap();
    setfacl(&["-m", "u:1234:rw,g:5678:r"], &m.p("aclfile"));
    setfacl(&["-m", "u:4321:r"], &m.p("files/one"));
    fs::create_dir(m.p("acldir")).unwrap();
    setfacl(&["-d", "-m", "u:1234:rx"], &m.p("acldir"));
    let check = |m: &Mount<'_>, when: &str| {
        let x = m.p("files/xattrs");
        assert_eq!(get_xattr(&x, "user.comment"), Ok(b"replaced".to_vec()), "{when}");
        assert_eq!(get_xattr(&x, "user.binary"), Err(libc::ENODATA), "{when}");
        assert_eq!(get_xattr(&m.p("perm/trusted"), "trusted.new"), Ok(vec![0, 0, 7]), "{when}");
        assert_eq!(get_xattr(&m.p("capfile"), "security.capability"), Ok(fixture::cap_net_raw_ep()), "{when}");
        let acl = getfacl(&m.p("aclfile"), false);
        assert!(acl.contains("user:1234:rw-") && acl.contains("group:5678:r--"), "{when}: {acl}");
        assert!(getfacl(&m.p("files/one"), false).contains("user:4321:r--"), "{when}");
        assert!(getfacl(&m.p("acldir"), true).contains("user:1234:r-x"), "{when}");
        assert_eq!(read(&m.p("files/one")), fixture::sized_content(1), "{when}");
    };
    check(&m, "before remount");
    m.umount();
    let m = g.mount();
    check(&m, "after remount");
    m.umount();
}

/// ACLs are not only stored but enforced, as on ext4: a named-user entry
/// grants access the mode bits deny, and a default ACL is inherited.
#[test]
fn acls_are_enforced_and_inherited() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let f = m.p("etc/secret");
    write(&f, b"for tests only\n");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(cat_as_tests(&f).is_err(), "mode 0600 root file readable by `tests`");
    setfacl(&["-m", "u:tests:r"], &f);
    assert_eq!(cat_as_tests(&f), Ok(b"for tests only\n".to_vec()), "a user ACL entry must grant read access");
    // The mask limits named entries; chmod g-r changes the mask.
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(cat_as_tests(&f).is_err(), "chmod 600 must mask the ACL entry out");
    // Default ACL inheritance.
    let d = m.p("shared");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
    setfacl(&["-m", "u:tests:rx", "-d", "-m", "u:tests:r"], &d);
    setfacl(&["-m", "u:tests:rx"], &d);
    let inner = d.join("inner");
    write(&inner, b"inherited\n");
    fs::set_permissions(&inner, fs::Permissions::from_mode(0o640)).unwrap();
    let uid = String::from_utf8(Command::new("id").args(["-u", "tests"]).output().unwrap().stdout).unwrap();
    let want = format!("user:{}:r--", uid.trim());
    assert!(getfacl(&inner, false).contains(&want), "default ACL not inherited ({want}): {}", getfacl(&inner, false));
    assert_eq!(cat_as_tests(&inner), Ok(b"inherited\n".to_vec()));
    m.umount();
    let m = g.mount();
    assert_eq!(cat_as_tests(&m.p("shared/inner")), Ok(b"inherited\n".to_vec()), "after remount");
    m.umount();
}

#[test]
fn statfs_reports_the_overlay_partition() {
    let g = Guest::new(small_tree);
    let m = g.mount();
    let s = nix::sys::statvfs::statvfs(&g.mp).unwrap();
    let o = nix::sys::statvfs::statvfs(&g.overlay).unwrap();
    assert!(s.block_size() > 0 && s.fragment_size() > 0 && s.blocks() > 0);
    assert!(s.blocks_available() <= s.blocks_free() && s.blocks_free() <= s.blocks());
    assert_eq!(s.name_max(), 255);
    let total = |v: &nix::sys::statvfs::Statvfs| v.blocks() as u128 * v.fragment_size() as u128;
    assert_eq!(total(&s), total(&o), "size of the mount vs the overlay's partition");
    let out = Command::new("df").arg("-P").arg(&g.mp).output().unwrap();
    assert!(out.status.success(), "df: {}", String::from_utf8_lossy(&out.stderr));
    let nfs = nix::sys::statfs::statfs(&g.mp).unwrap();
    assert_eq!(nfs.filesystem_type().0 as u64, 0x6573_5546, "FUSE_SUPER_MAGIC");
    m.umount();
}

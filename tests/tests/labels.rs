//! SELinux labels (`security.selinux`) are served only by `--seclabel`
//! mounts. Elsewhere the name is unsupported (EOPNOTSUPP, as on NFS without
//! labels), so `ls -l` stops asking for it after the first file; the labels
//! the image and overlay hold are kept and come back with `--seclabel`.
//! Also the mount(8) helper, which passes such options on.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use common::{get_xattr, is_mounted, set_xattr_flags, Guest};

const LABEL: &[u8] = b"system_u:object_r:etc_t:s0\0";

fn set(p: &Path, name: &str, v: &[u8]) -> Result<(), i32> {
    set_xattr_flags(p, name, v, 0)
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = xattr::list(p).expect("listxattr").map(|n| n.to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// How often `ls -l DIR` asked for a `security.selinux` label.
fn label_requests(dir: &Path, scratch: &Path) -> usize {
    let log = scratch.join("ls.strace");
    let st = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=lgetxattr,getxattr", "-o"])
        .arg(&log)
        .args(["ls", "-l"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("strace (scripts/setup.sh installs it)");
    assert!(st.success(), "strace ls -l failed");
    fs::read_to_string(&log).expect("strace log").lines().filter(|l| l.contains("security.selinux")).count()
}

/// An image with one labelled file and a directory of 40 unlabelled ones.
fn image() -> Guest {
    Guest::new(|src| {
        fs::write(src.join("labelled"), b"l").expect("write");
        xattr::set(src.join("labelled"), "security.selinux", LABEL).expect("label the source file");
        xattr::set(src.join("labelled"), "security.lvrepo-test", b"kept").expect("set security.lvrepo-test");
        fs::create_dir(src.join("many")).expect("mkdir");
        for i in 0..40 {
            fs::write(src.join(format!("many/f{i:02}")), b"x").expect("write");
        }
    })
}

#[test]
fn labels_are_served_only_by_seclabel_mounts_and_kept_either_way() {
    let g = image();
    let scratch = g.r.scratch("work");
    fs::create_dir(&scratch).expect("mkdir");

    let m = g.mount();
    let l = m.p("labelled");
    assert_eq!(get_xattr(&l, "security.selinux"), Err(libc::EOPNOTSUPP), "a label on a mount without --seclabel");
    assert_eq!(get_xattr(&m.p("many/f00"), "security.selinux"), Err(libc::EOPNOTSUPP));
    assert_eq!(set(&m.p("many/f00"), "security.selinux", LABEL), Err(libc::EOPNOTSUPP));
    let c = CString::new(l.as_os_str().as_bytes()).expect("path");
    // SAFETY: a NUL-terminated path and name, both live for the call.
    let rc = unsafe { libc::removexattr(c.as_ptr(), c"security.selinux".as_ptr()) };
    assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EOPNOTSUPP)));
    // Other security.* attributes are unaffected, and the label is not listed.
    assert_eq!(get_xattr(&l, "security.lvrepo-test"), Ok(b"kept".to_vec()));
    assert_eq!(names(&l), ["security.lvrepo-test"]);
    assert_eq!(label_requests(&m.p("many"), &scratch), 1, "ls -l must stop asking for labels after the first file");
    m.umount();

    let m = g.mount_with(&["--seclabel"]);
    let l = m.p("labelled");
    assert_eq!(get_xattr(&l, "security.selinux"), Ok(LABEL.to_vec()), "the image's label, untouched");
    assert_eq!(names(&l), ["security.lvrepo-test", "security.selinux"]);
    assert_eq!(get_xattr(&m.p("many/f00"), "security.selinux"), Err(libc::ENODATA));
    set(&m.p("many/f00"), "security.selinux", LABEL).expect("label a file on a --seclabel mount");
    assert!(label_requests(&m.p("many"), &scratch) >= 40, "ls -l asks per file where labels are served");
    m.umount();

    // The overlay's label is hidden, not dropped, by a mount without labels.
    let m = g.mount();
    assert_eq!(get_xattr(&m.p("many/f00"), "security.selinux"), Err(libc::EOPNOTSUPP));
    assert!(names(&m.p("many/f00")).is_empty());
    m.umount();
    let m = g.mount_with(&["--seclabel"]);
    assert_eq!(get_xattr(&m.p("many/f00"), "security.selinux"), Ok(LABEL.to_vec()));
    m.umount();
}

/// mount(8)'s way in (`mount -t fuse.lvrepo`, /etc/fstab): the helper passes
/// lvrepo's options on, ignores the generic ones, and refuses what it does
/// not know with mount(8)'s failure code, mounting nothing.
#[test]
fn the_mount_helper_passes_options_on_and_refuses_unknown_ones() {
    let g = image();
    let out = g.try_mount_by_helper("bogus");
    assert_eq!(out.status.code(), Some(32), "{}", lvrepo_tests::report("mount.fuse.lvrepo -o bogus", &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option bogus"), "{}", lvrepo_tests::report("mount.fuse.lvrepo", &out));
    assert!(!is_mounted(&g.mp), "a refused mount left a mount behind");

    let m = g.mount_by_helper("seclabel,cache_mib=64,noatime,nofail,x-systemd.automount");
    assert_eq!(get_xattr(&m.p("labelled"), "security.selinux"), Ok(LABEL.to_vec()), "seclabel passed on");
    fs::write(m.p("new"), b"written through the helper's mount").expect("write");
    m.umount();
    let m = g.mount_by_helper("");
    assert_eq!(get_xattr(&m.p("labelled"), "security.selinux"), Err(libc::EOPNOTSUPP));
    assert_eq!(fs::read(m.p("new")).expect("read"), b"written through the helper's mount");
    m.umount();
}

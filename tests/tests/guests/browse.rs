//! Browsing mounts: `mount IMAGE --read-only MNT` and `mount --guest
//! NAME:CHECKPOINT --read-only MNT` serve exactly the image or checkpoint
//! (full manifest), refuse writes with EROFS, take no guest lock (the guest
//! stays mounted read-write meanwhile), and leave nothing behind: their
//! scratch overlay under $TMPDIR is gone after umount.

use super::rollback::build_system;
use super::*;

/// A browsing mount; unmounted on drop if a failed assertion unwinds.
struct Browse<'w> {
    w: &'w World,
    mp: PathBuf,
}

impl Drop for Browse<'_> {
    fn drop(&mut self) {
        if is_mounted(&self.mp) {
            common::umount_or_kill(&self.w.r, &self.mp);
        }
    }
}

/// `lvrepo mount ARGS` with TMPDIR set to `tmp`; asserts it worked.
fn browse<'w>(w: &'w World, tmp: &Path, args: &[&str], mp: &Path) -> Browse<'w> {
    let out = lvrepo_cmd(&w.r, &[&["mount"], args, &[mp.to_str().expect("utf-8 mountpoint")]].concat()).env("TMPDIR", tmp).output().expect("spawn lvrepo");
    assert!(out.status.success(), "{}", report(&format!("lvrepo mount {args:?} {}", mp.display()), &out));
    assert!(is_mounted(mp), "{} is not a mount", mp.display());
    Browse { w, mp: mp.to_path_buf() }
}

fn umount(b: Browse) {
    let pid = daemon_pid(&b.mp).expect("the browsing mount's daemon");
    b.w.r.ok([OsStr::new("umount"), b.mp.as_os_str()]);
    assert!(wait_gone(pid, Duration::from_secs(30)), "daemon {pid} still alive after umount");
}

/// Every way of writing is refused with EROFS, and nothing changed.
fn assert_read_only(mp: &Path) {
    let erofs = |what: &str, r: std::io::Result<()>| {
        let e = r.err().unwrap_or_else(|| panic!("{what} succeeded on a read-only mount"));
        // raw_os_error, or the kind of an error that wraps it with the path.
        assert_eq!(e.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{what}: {e}");
    };
    erofs("create", fs::write(mp.join("etc/new"), b"x"));
    erofs("open for writing", OpenOptions::new().write(true).open(mp.join("etc/passwd")).map(drop));
    erofs("mkdir", fs::create_dir(mp.join("newdir")));
    erofs("unlink", fs::remove_file(mp.join("etc/motd")));
    erofs("rename", fs::rename(mp.join("etc/hosts"), mp.join("etc/hosts2")));
    erofs("chmod", fs::set_permissions(mp.join("etc/passwd"), fs::Permissions::from_mode(0o600)));
    erofs("setxattr", fixture::set_xattr(&mp.join("usr/attrs"), "user.new", b"1"));
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir).expect("read tmp").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "left behind in {}: {left:?}", dir.display());
}

#[test]
fn an_image_browses_read_only_and_leaves_nothing() {
    let w = World::new(true, build_system);
    let (tmp, mp) = (w.r.scratch("tmp"), w.r.scratch("mnt").join("browse"));
    fs::create_dir_all(&tmp).expect("mkdir tmp");
    fs::create_dir_all(&mp).expect("mkdir mnt");
    // Without --read-only and without an overlay there is nothing to write to.
    let err = w.r.fails([OsStr::new("mount"), OsStr::new("img:1"), mp.as_os_str()], 2);
    assert!(err.contains("--read-only"), "{err}");
    // Any reader of the repository registers under readers/: one has, first.
    w.r.ok(["ls", "img:1"]);
    let before = manifest(w.r.repo()).expect("manifest of the repository");
    let b = browse(&w, &tmp, &["img:1", "--read-only"], &mp);
    assert_same("image source vs its read-only mount", &manifest(&w.src).expect("manifest src"), &manifest(&mp).expect("manifest mnt"));
    assert_read_only(&mp);
    umount(b);
    assert_empty(&tmp);
    assert_eq!(fs::read_dir(&mp).expect("read mountpoint").count(), 0, "the mountpoint gained entries");
    // A missing image: exit 3, and still nothing left behind.
    let out = lvrepo_cmd(&w.r, &["mount", "nosuch:1", "--read-only", mp.to_str().unwrap()]).env("TMPDIR", &tmp).output().expect("spawn");
    assert_eq!(out.status.code(), Some(3), "{}", report("mount nosuch:1", &out));
    assert_empty(&tmp);
    // The repository itself is untouched by a browse (no overlay, lock or log in it).
    let after = manifest(w.r.repo()).expect("manifest of the repository");
    let names = |m: &Manifest| m.entries.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&before), names(&after), "the browse added or removed files in the repository");
}

#[test]
fn a_checkpoint_browses_while_the_guest_is_mounted() {
    let w = World::new(true, build_system);
    let g = w.guest("web");
    let (tmp, mp) = (w.r.scratch("tmp"), w.r.scratch("mnt").join("cp"));
    fs::create_dir_all(&tmp).expect("mkdir tmp");
    fs::create_dir_all(&mp).expect("mkdir mnt");
    let m = g.mount();
    put(&m.p("etc/motd"), b"changed before checkpoint 1\n");
    rm(&m.p("data/trunc"));
    xattr_set(&m.p("usr/attrs"), "user.added", b"3");
    mkdir(&m.p("srv"));
    put(&m.p("srv/new"), &pseudo_random(3, 100_000));
    let at_one = m.manifest();
    let one = g.checkpoint("one");
    put(&m.p("etc/motd"), b"changed after checkpoint 1\n");
    rm(&m.p("hl/c"));
    let now = m.manifest();
    assert_differs("guest now vs at checkpoint 1", &at_one, &now);

    let err = w.r.fails([OsStr::new("mount"), OsStr::new("--guest"), OsStr::new(&format!("web:{one}")), mp.as_os_str()], 2);
    assert!(err.contains("--read-only"), "{err}");
    w.r.fails([OsStr::new("mount"), OsStr::new("--guest"), OsStr::new("web:99"), OsStr::new("--read-only"), mp.as_os_str()], 3);
    let b = browse(&w, &tmp, &["--guest", &format!("web:{one}"), "--read-only"], &mp);
    assert_same("checkpoint 1 mounted read-only", &at_one, &manifest(&mp).expect("manifest of the checkpoint mount"));
    assert_read_only(&mp);
    // The guest's own mount goes on writing meanwhile, unaffected.
    put(&m.p("etc/hosts"), b"written while browsing\n");
    assert_eq!(fs::read(mp.join("etc/hosts")).expect("read"), b"127.0.0.1 localhost\n");
    umount(b);
    assert_empty(&tmp);
    assert_eq!(fs::read(m.p("etc/hosts")).expect("read"), b"written while browsing\n");
    m.umount();
    assert!(!g.log().contains("scratch"), "the guest's log mentions the browse");
}

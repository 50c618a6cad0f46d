//! Deep trees never crash: 100,000 nested directories through a tar stream
//! and through a mounted guest (checkpoint, diff, remount, rollback), and the
//! repository commands over them (ls, stats, gc, diff, export to a
//! directory and import of it, verify). Paths this
//! deep are far past PATH_MAX, so the mounted test works the way deep-tree
//! tools do: each level is made and opened relative to the previous level's
//! descriptor, and the parent's is closed.
//!
//! Tar holds every entry's whole path, so a tar of a tree D levels deep is
//! about D² bytes (100,000 one-letter levels: 10 GB); the export → re-import
//! round trip runs at 10,000 levels (100 MB) for that reason alone.

#[path = "common/mod.rs"]
mod common;

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use common::{alive, daemon_pid, is_mounted, umount_or_kill};
use lvrepo_tests::tar::{Header, RawTar};
use lvrepo_tests::{report, require_root, Lvrepo};

const DEPTH: usize = 100_000;

/// `d/d/.../d/` (`depth` levels) then `leaf`.
fn deep_path(depth: usize, leaf: &str) -> Vec<u8> {
    let mut p = b"d/".repeat(depth);
    p.extend_from_slice(leaf.as_bytes());
    p
}

/// A tar stream of one file `depth` directories down (the directories are
/// implied by the path, as tar allows).
fn deep_tar(depth: usize, data: &[u8]) -> Vec<u8> {
    let mut t = RawTar::new();
    t.entry(Header::new(b'0', &deep_path(depth, "file"), 0o644), data);
    t.finish()
}

fn import_stdin(r: &Lvrepo, image: &str, stream: &[u8]) -> String {
    let out = r.run_stdin(["import", "-", "--image", image], Some(stream));
    assert!(out.status.success(), "{}", report(&format!("lvrepo import - --image {image}"), &out));
    // The root id is the last word of the summary line.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().last().unwrap_or_default().to_string()
}

fn root_of(r: &Lvrepo, image: &str) -> String {
    let v = r.json(["images", "--json"]);
    let list = v["images"].as_array().cloned().unwrap_or_default();
    let rec = list.iter().find(|i| i["label"] == image);
    rec.and_then(|i| i["id"].as_str()).unwrap_or_else(|| panic!("no image {image} in {v}")).to_string()
}

#[test]
fn a_tar_100000_levels_deep_imports_lists_diffs_collects_and_counts() {
    let t0 = Instant::now();
    let r = Lvrepo::init();
    import_stdin(&r, "deep:1", &deep_tar(DEPTH, b"bottom\n"));
    import_stdin(&r, "deep:2", &deep_tar(DEPTH, b"changed\n"));
    eprintln!("imported two images {DEPTH} levels deep in {:?}", t0.elapsed());

    // A bounded listing: the root holds the top of the chain.
    let ls = r.ok(["ls", "deep:1"]);
    assert_eq!(ls.lines().count(), 1, "{ls}");
    assert!(ls.trim_end().ends_with(" d"), "{ls}");

    // The two images differ only at the bottom: exactly that path.
    let t = Instant::now();
    let diff = r.ok(["diff", "deep:1", "deep:2"]);
    let mut want = b"C /".to_vec();
    want.extend_from_slice(&deep_path(DEPTH, "file"));
    assert_eq!(diff.lines().count(), 1, "diff lists more than the bottom file");
    assert_eq!(diff.trim_end().as_bytes(), &want[..], "diff names another path");
    eprintln!("diff: {:?}", t.elapsed());

    // stats counts every level; gc keeps everything both images reach.
    let t = Instant::now();
    let stats = r.json(["stats", "--json"]);
    let images = stats["image_usage"].as_array().cloned().unwrap_or_default();
    assert_eq!(images.len(), 2, "{stats}");
    for i in &images {
        assert_eq!(i["image"]["entry_count"].as_u64(), Some(DEPTH as u64 + 2), "{stats}");
    }
    let gc = r.json(["gc", "--json"]);
    assert!(gc.is_object(), "{gc}");
    eprintln!("stats + gc: {:?}", t.elapsed());
    let diff_after_gc = r.ok(["diff", "deep:1", "deep:2"]);
    assert_eq!(diff_after_gc, diff, "gc lost something an image reaches");

    // Export to a directory and import it back: paths far past PATH_MAX.
    // On tmpfs when there is one: deleting 100,000 directories from a disk
    // mounted with `discard` takes minutes, and no disk is what this tests.
    let t = Instant::now();
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir_in(r.scratch("")) }.expect("temp dir");
    let dest = tmp.path().join("out");
    r.ok([OsStr::new("export"), OsStr::new("deep:1"), dest.as_os_str()]);
    eprintln!("export to a directory: {:?}", t.elapsed());
    assert_eq!(read_at(&descend(&dest, DEPTH), c"file"), b"bottom\n");
    let back = r.ok([OsStr::new("import"), dest.as_os_str(), OsStr::new("--image"), OsStr::new("deep:3")]);
    assert!(back.contains(&root_of(&r, "deep:1")), "export to a directory and re-import changed the tree: {back}");
    eprintln!("and its import: {:?}", t.elapsed());
    remove_chain(&dest, DEPTH);
    eprintln!("export to a directory and import back: {:?}", t.elapsed());
    eprintln!("whole test: {:?}", t0.elapsed());
}

#[test]
fn verify_passes_on_an_image_100000_levels_deep() {
    let r = Lvrepo::init();
    import_stdin(&r, "deep:1", &deep_tar(DEPTH, b"bottom\n"));
    let t = Instant::now();
    let out = r.run(["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", report("lvrepo verify", &out));
    eprintln!("verify: {:?}", t.elapsed());
}

#[test]
fn ls_recursive_and_a_tar_export_reimport_of_a_deep_tree() {
    // 10,000 levels: a tar of them is 100 MB (every entry holds its path).
    const D: usize = 10_000;
    let t0 = Instant::now();
    let r = Lvrepo::init();
    let root = import_stdin(&r, "deep:1", &deep_tar(D, b"bottom\n"));
    assert_eq!(root, root_of(&r, "deep:1"));

    let ls = r.ok_bytes(["ls", "-R", "deep:1"]);
    let lines: Vec<&[u8]> = ls.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), D + 1, "ls -R lists every level and the file");
    let mut bottom = b" /".to_vec();
    bottom.extend_from_slice(&deep_path(D, "file"));
    assert!(lines[D].ends_with(&bottom), "ls -R's last line is not the bottom file");

    let stream = r.ok_bytes(["export", "deep:1", "-"]);
    let again = import_stdin(&r, "deep:2", &stream);
    assert_eq!(again, root, "export to tar and re-import changed the tree");
    drop(stream);

    eprintln!("round trips: {:?}", t0.elapsed());
}

// ─────────────────────────── mounted guest ───────────────────────────

/// The opened directory `name` in `dir` (O_DIRECTORY, no symlink followed).
fn open_dir(dir: &OwnedFd, name: &CStr) -> OwnedFd {
    // SAFETY: `name` is NUL-terminated and `dir` a descriptor we own.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    assert!(fd >= 0, "openat {name:?}: {}", std::io::Error::last_os_error());
    // SAFETY: openat returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The errno of opening `name` in `dir` read-only (0 when it opens).
fn open_errno(dir: &OwnedFd, name: &CStr) -> i32 {
    // SAFETY: `name` is NUL-terminated and `dir` a descriptor we own.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
    }
    // SAFETY: a new descriptor nothing else owns, closed here.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    0
}

fn open_path(p: &Path) -> OwnedFd {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).expect("NUL in path");
    // SAFETY: `c` is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {}: {}", p.display(), std::io::Error::last_os_error());
    // SAFETY: a new descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Descend `depth` levels of `d` from `top`, holding one descriptor at a time.
fn descend(top: &Path, depth: usize) -> OwnedFd {
    let mut fd = open_path(top);
    for _ in 0..depth {
        fd = open_dir(&fd, c"d");
    }
    fd
}

/// Make `depth` nested directories `d` below `top`, each made and opened
/// relative to the previous level's descriptor.
fn make_chain(top: &Path, depth: usize) {
    let mut fd = open_path(top);
    for i in 0..depth {
        // SAFETY: a NUL-terminated literal name and a descriptor we own.
        let rc = unsafe { libc::mkdirat(fd.as_raw_fd(), c"d".as_ptr(), 0o755) };
        assert_eq!(rc, 0, "mkdirat at level {i}: {}", std::io::Error::last_os_error());
        fd = open_dir(&fd, c"d");
    }
}

fn write_at(dir: &OwnedFd, name: &CStr, data: &[u8]) {
    // SAFETY: `name` is NUL-terminated, `dir` a descriptor we own.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o644) };
    assert!(fd >= 0, "create {name:?}: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor nothing else owns.
    let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::Write::write_all(&mut &f, data).expect("write the bottom file");
}

fn read_at(dir: &OwnedFd, name: &CStr) -> Vec<u8> {
    // SAFETY: as in `write_at`.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {name:?}: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor nothing else owns.
    let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut v).expect("read the bottom file");
    v
}

/// Remove `top/d/.../d/file` (`depth` levels) bottom-up through `..`: the
/// temp dir's own removal (`std::fs::remove_dir_all`) holds a descriptor per
/// level and fails on a tree this deep, and `rm -rf` takes minutes.
fn remove_chain(top: &Path, depth: usize) {
    let mut fd = descend(top, depth);
    // SAFETY: NUL-terminated literal names and descriptors we own.
    assert_eq!(unsafe { libc::unlinkat(fd.as_raw_fd(), c"file".as_ptr(), 0) }, 0, "unlink the bottom file");
    for _ in 0..depth {
        let up = open_dir(&fd, c"..");
        // SAFETY: as above.
        let rc = unsafe { libc::unlinkat(up.as_raw_fd(), c"d".as_ptr(), libc::AT_REMOVEDIR) };
        assert_eq!(rc, 0, "rmdir on the way up: {}", std::io::Error::last_os_error());
        fd = up;
    }
    drop(fd);
    std::fs::remove_dir(top).expect("rmdir the export's top");
}

/// A mounted guest; unmounted (or detached and its daemon stopped) on drop.
struct Mounted<'a> {
    r: &'a Lvrepo,
    mp: &'a Path,
    pid: i32,
    live: bool,
}

impl<'a> Mounted<'a> {
    fn new(r: &'a Lvrepo, guest: &str, mp: &'a Path) -> Self {
        r.ok([OsStr::new("mount"), OsStr::new("--guest"), OsStr::new(guest), mp.as_os_str()]);
        assert!(is_mounted(mp), "lvrepo mount returned 0 but nothing is mounted");
        let pid = daemon_pid(mp).unwrap_or_else(|| panic!("no daemon serves {}", mp.display()));
        Mounted { r, mp, pid, live: true }
    }

    /// The daemon still runs and the mount is still there.
    fn assert_alive(&self, after: &str) {
        assert!(alive(self.pid) && is_mounted(self.mp), "the daemon died or the mount is gone after {after}");
    }

    fn umount(mut self) {
        self.live = false;
        self.r.ok([OsStr::new("umount"), self.mp.as_os_str()]);
        assert!(!is_mounted(self.mp), "still mounted after lvrepo umount");
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if self.live {
            umount_or_kill(self.r, self.mp);
        }
    }
}

#[test]
fn a_guest_100000_levels_deep_checkpoints_diffs_remounts_and_rolls_back() {
    require_root();
    let t0 = Instant::now();
    let r = Lvrepo::init();
    let src = r.scratch("src");
    std::fs::create_dir(&src).expect("mkdir src");
    std::fs::write(src.join("top"), b"image\n").expect("write src/top");
    r.import(&src, "img:1");
    let gdir = r.scratch("guest");
    r.ok([OsStr::new("guest"), OsStr::new("create"), OsStr::new("g"), OsStr::new("--image"), OsStr::new("img:1"), OsStr::new("--overlay"), gdir.as_os_str()]);
    let mp = r.scratch("mnt");
    std::fs::create_dir(&mp).expect("mkdir mnt");

    let m = Mounted::new(&r, "g", &mp);
    r.ok(["checkpoint", "g", "-m", "before"]);
    let t = Instant::now();
    make_chain(&mp, DEPTH);
    eprintln!("mkdir of {DEPTH} levels through FUSE: {:?}", t.elapsed());
    m.assert_alive("making the chain");

    let t = Instant::now();
    r.ok(["checkpoint", "g", "-m", "chain"]);
    eprintln!("checkpoint of the chain (mounted): {:?}", t.elapsed());
    m.assert_alive("checkpoint");

    write_at(&descend(&mp, DEPTH), c"file", b"at the bottom\n");
    let t = Instant::now();
    r.ok(["checkpoint", "g", "-m", "file"]);
    eprintln!("checkpoint of the bottom file (mounted): {:?}", t.elapsed());

    // Against the checkpoint that has the chain: the file, and the mtime of
    // the directory it was made in.
    let diff = r.ok(["diff", "g", "2"]);
    let mut added = b"A /".to_vec();
    added.extend_from_slice(&deep_path(DEPTH, "file"));
    let mut dir = b"M /".to_vec();
    dir.extend_from_slice(&deep_path(DEPTH - 1, "d"));
    let lines: Vec<&[u8]> = diff.lines().map(str::as_bytes).collect();
    assert_eq!(lines, vec![&dir[..], &added[..]], "diff g 2 names other paths");
    m.assert_alive("diff");
    m.umount();

    // A fresh daemon finds the file at the bottom.
    let m = Mounted::new(&r, "g", &mp);
    let t = Instant::now();
    assert_eq!(read_at(&descend(&mp, DEPTH), c"file"), b"at the bottom\n");
    eprintln!("read at the bottom after a remount: {:?}", t.elapsed());

    // Rollback while mounted to the state the guest is in, holding a
    // directory at the top and one at the bottom of the chain: every level
    // becomes an image directory, numbered by path. The top one keeps its
    // number; the bottom one's path is too long to renumber (it would store
    // depth² bytes of paths), so its handle goes stale, and the path works
    // anew.
    let (top, bottom) = (descend(&mp, 1), descend(&mp, DEPTH));
    let t = Instant::now();
    r.ok(["rollback", "g", "3"]);
    eprintln!("rollback holding the chain: {:?}", t.elapsed());
    m.assert_alive("rollback holding the chain");
    drop(open_dir(&top, c"d"));
    assert_eq!(open_errno(&bottom, c"file"), libc::ESTALE, "a handle at the bottom of the chain survived its renumbering");
    assert_eq!(read_at(&descend(&mp, DEPTH), c"file"), b"at the bottom\n");
    drop((top, bottom));

    // Rollback while mounted: to before the chain, then to the checkpoint
    // with the file (now every level is an image directory).
    r.ok(["rollback", "g", "1"]);
    m.assert_alive("rollback to 1");
    assert!(!mp.join("d").exists(), "the chain survived a rollback to before it");
    assert_eq!(std::fs::read(mp.join("top")).expect("read top"), b"image\n");
    let t = Instant::now();
    r.ok(["rollback", "g", "3"]);
    assert_eq!(read_at(&descend(&mp, DEPTH), c"file"), b"at the bottom\n");
    eprintln!("rollback to the deep checkpoint and read at the bottom: {:?}", t.elapsed());
    m.assert_alive("rollback to 3");
    m.umount();
    eprintln!("whole test: {:?}", t0.elapsed());
}

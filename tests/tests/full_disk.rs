//! A full partition, for real: the overlay, the guest directory or the
//! repository on a small loop-mounted ext4 (or a tmpfs with `size=`), filled
//! through the mount and then to its last block by ballast files beside it.
//! Every operation that needs room then fails with ENOSPC (never EIO, never
//! a dead daemon); removing the ballast makes them work again without a
//! remount; nothing written before is lost; a checkpoint, import or guest
//! create that fails for want of room says so (exit 1, naming the
//! partition) and leaves no partial pack behind; a daemon killed while the
//! partition is full mounts again.
//!
//! Every small filesystem is a [`SmallFs`] guard, unmounted on drop (after
//! the mounts on it: guards drop in reverse order), also when a test fails.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{daemon_pid, get_xattr, is_mounted, lazy_umount, set_xattr_flags, wait_gone, Guest};
use lvrepo_tests::fixture::pseudo_random;
use lvrepo_tests::{require_root, Lvrepo};

#[derive(Clone, Copy, Debug)]
enum FsKind {
    Ext4,
    Tmpfs,
}

/// A small filesystem mounted at `DIR/part` (ext4 on a loop device backed by
/// `DIR/part.img`, or a tmpfs); unmounted on drop, lazily if a process still
/// holds it (`mount -o loop` frees the loop device with the last user).
struct SmallFs {
    mp: PathBuf,
}

impl SmallFs {
    fn new(kind: FsKind, dir: &Path, mib: u64) -> SmallFs {
        let mp = dir.join("part");
        fs::create_dir_all(&mp).expect("mkdir part");
        match kind {
            FsKind::Ext4 => {
                let img = dir.join("part.img");
                File::create(&img).and_then(|f| f.set_len(mib << 20)).expect("create the image file");
                run(Command::new("mkfs.ext4").arg("-q").arg("-F").arg(&img));
                run(Command::new("mount").arg("-o").arg("loop").arg(&img).arg(&mp));
            }
            FsKind::Tmpfs => run(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(&mp)),
        }
        SmallFs { mp: fs::canonicalize(&mp).expect("canonicalize part") }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.mp).status().is_ok_and(|s| s.success());
        if !ok && is_mounted(&self.mp) {
            eprintln!("umount {} failed; detaching lazily", self.mp.display());
            lazy_umount(&self.mp);
        }
    }
}

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed: {st}");
}

fn errno_of(r: std::io::Result<()>) -> Result<(), i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// Append zeros to `path` until its partition has no block left; synced.
fn fill(path: &Path) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open ballast");
    for chunk in [1usize << 20, 4096, 1024] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("writing ballast {}: {e}", path.display()),
            }
        }
    }
    // Nothing left to allocate: the sync itself needs no room.
    f.sync_all().expect("sync ballast");
}

/// Write `len` bytes of ballast to `path`, synced.
fn ballast(path: &Path, len: usize) {
    let mut f = File::create(path).expect("create ballast");
    f.write_all(&vec![0u8; len]).and_then(|_| f.sync_all()).expect("write ballast");
}

fn content(i: u64) -> Vec<u8> {
    pseudo_random(i + 101, 256 << 10)
}

const BIG_XATTR: usize = 60_000;

/// What must survive everything: fsynced files, a directory, an xattr and a
/// file with eight large xattrs (whose record is large to rewrite).
fn write_keep(m: &Path) {
    fs::create_dir(m.join("keep")).expect("mkdir keep");
    for i in 0..3 {
        let mut f = File::create(m.join(format!("keep/data{i}"))).expect("create data");
        f.write_all(&content(i)).and_then(|_| f.sync_all()).expect("write data");
    }
    for n in ["b", "r", "log", "xa"] {
        File::create(m.join("keep").join(n)).expect("create keep file");
    }
    xattr::set(m.join("keep/b"), "user.kept", b"yes").expect("setxattr");
    for i in 0..8 {
        xattr::set(m.join("keep/xa"), format!("user.x{i}"), &vec![b'x'; BIG_XATTR]).expect("setxattr xa");
    }
    File::open(m.join("keep/b")).and_then(|f| f.sync_all()).expect("fsync");
}

fn check_keep(m: &Path, when: &str) {
    for i in 0..3 {
        assert!(fs::read(m.join(format!("keep/data{i}"))).expect("read data") == content(i), "keep/data{i} differs {when}");
    }
    assert_eq!(get_xattr(&m.join("keep/b"), "user.kept"), Ok(b"yes".to_vec()), "xattr of keep/b {when}");
}

/// Fill the overlay through the mount: data until ENOSPC, then metadata
/// (files with a large xattr each) until ENOSPC.
fn fill_through(m: &Path) {
    let mut err = None;
    for i in 0..200u64 {
        let r = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o644).open(m.join(format!("fill{i}")))?;
            f.write_all(&pseudo_random(i, 1 << 20))?;
            f.sync_all()
        })();
        if let Err(e) = r {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("the partition must fill within 200 MiB of data");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "a data write on a full overlay: {err}");
    let mut err = None;
    for i in 0..2000u64 {
        let p = m.join(format!("meta{i}"));
        let r = File::create(&p).and_then(|_| xattr::set(&p, "user.fill", &vec![b'm'; BIG_XATTR]));
        if let Err(e) = r {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("the partition must fill within 2000 metadata changes");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "a metadata change on a full overlay: {err}");
}

/// The operations that need room, each with its errno (`tag` keeps names
/// apart between rounds).
fn ops(m: &Path, tag: &str) -> Vec<(&'static str, Result<(), i32>)> {
    let k = m.join("keep");
    let (from, to) = if k.join("r").exists() { ("r", "r2") } else { ("r2", "r") };
    let mode = if fs::metadata(k.join("b")).map(|md| md.permissions().mode() & 0o777 == 0o600).unwrap_or(false) { 0o640 } else { 0o600 };
    vec![
        ("mkdir", errno_of(fs::create_dir(m.join(format!("dir-{tag}"))))),
        ("create", errno_of(OpenOptions::new().write(true).create_new(true).open(m.join(format!("new-{tag}"))).map(drop))),
        ("symlink", errno_of(symlink("keep/b", m.join(format!("link-{tag}"))))),
        ("rename", errno_of(fs::rename(k.join(from), k.join(to)))),
        ("chmod", errno_of(fs::set_permissions(k.join("b"), fs::Permissions::from_mode(mode)))),
        ("setxattr", set_xattr_flags(&k.join("b"), &format!("user.{tag}"), b"v", 0)),
        ("write", errno_of(OpenOptions::new().append(true).open(k.join("log")).and_then(|mut f| f.write_all(&[7u8; 4096]).and_then(|_| f.sync_data())))),
    ]
}

/// Fill `part` to its last block (ballast files `stem0`, `stem1`, …) and
/// run [`ops`] until every one of them fails with ENOSPC; any that fails
/// otherwise fails the test. A few rounds: RocksDB may give back space
/// (an old log, once its flush is done) after a fill. The ballast files.
fn fill_until_refused(part: &SmallFs, m: &Path, stem: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for round in 0..5 {
        let b = part.p(&format!("{stem}{round}"));
        fill(&b);
        files.push(b);
        let results = ops(m, &format!("{stem}{round}"));
        for (op, r) in &results {
            assert!(matches!(r, Ok(()) | Err(libc::ENOSPC)), "{op} on a full partition: {r:?} (ENOSPC is {})", libc::ENOSPC);
        }
        if results.iter().all(|(_, r)| *r == Err(libc::ENOSPC)) {
            return files;
        }
    }
    panic!("operations still succeed after filling the partition 5 times");
}

fn assert_all(results: &[(&str, Result<(), i32>)], want: Result<(), i32>, when: &str) {
    for (op, r) in results {
        assert_eq!(*r, want, "{op} {when}: got {r:?}, want {want:?} (ENOSPC is {})", libc::ENOSPC);
    }
}

/// After a full partition was freed: what the freed round did is there.
fn check_freed(m: &Path, tag: &str) {
    assert!(m.join(format!("dir-{tag}")).is_dir(), "dir-{tag} missing");
    assert!(m.join(format!("new-{tag}")).is_file(), "new-{tag} missing");
    assert_eq!(fs::read_link(m.join(format!("link-{tag}"))).expect("readlink"), Path::new("keep/b"));
    assert_eq!(get_xattr(&m.join("keep/b"), &format!("user.{tag}")), Ok(b"v".to_vec()));
}

fn full_overlay_round(kind: FsKind) {
    let mut g = Guest::new(|src| fs::write(src.join("image-file"), b"from the image\n").expect("write src"));
    let part = SmallFs::new(kind, &g.r.scratch("small"), 64);
    g.overlay = part.p("ov");
    // Freed at the end: more than the overlay then takes and holds back,
    // so every operation must work at once. The reopened database takes up
    // to ~13 MiB (its 5 MiB reserve made again, its log replayed as tables,
    // a new log preallocated at 1.1x its 4 MiB memtable) and metadata keeps
    // a 5 MiB margin: with 8 or 16 MiB freed the outcome depended on how far
    // the logs had grown.
    ballast(&part.p("ballast"), 28 << 20);
    let m = g.mount();
    write_keep(&m.p(""));
    fill_through(&m.p(""));
    // Now to the last block, from outside the overlay.
    let ballasts = fill_until_refused(&part, &m.p(""), "full");
    // What makes room is never refused for want of room, and a fsync never
    // reports EIO; a removal the database could not record leaves no trace.
    let rm = errno_of(xattr::remove(m.p("keep/xa"), "user.x0"));
    assert!(matches!(rm, Ok(()) | Err(libc::ENOSPC)), "removexattr on a full partition: {rm:?}");
    assert_eq!(get_xattr(&m.p("keep/xa"), "user.x0").is_ok(), rm.is_err(), "user.x0 after removexattr gave {rm:?}");
    let sync = errno_of(File::open(m.p("keep/data0")).and_then(|f| f.sync_all()));
    assert!(matches!(sync, Ok(()) | Err(libc::ENOSPC)), "fsync on a full partition: {sync:?}");
    assert_eq!(fs::read(m.p("image-file")).expect("read image file"), b"from the image\n");
    check_keep(&m.p(""), "while the partition is full");

    // Room again: everything works at once, no remount.
    fs::remove_file(part.p("ballast")).expect("rm ballast");
    for b in ballasts {
        fs::remove_file(b).expect("rm ballast");
    }
    assert_all(&ops(&m.p(""), "freed"), Ok(()), &format!("once space was freed; daemon log:\n{}", g.log()));
    if rm.is_err() {
        xattr::remove(m.p("keep/xa"), "user.x0").expect("removexattr once space was freed");
    }
    check_freed(&m.p(""), "freed");
    check_keep(&m.p(""), "after the partition was full");
    for i in [0u64, 1] {
        assert!(fs::read(m.p(&format!("fill{i}"))).expect("read fill") == pseudo_random(i, 1 << 20), "fill{i} differs");
    }
    m.umount();

    let m = g.mount();
    check_keep(&m.p(""), "after a remount");
    check_freed(&m.p(""), "freed");
    assert!(get_xattr(&m.p("keep/xa"), "user.x0").is_err(), "user.x0 back after a remount");
    assert_eq!(get_xattr(&m.p("keep/xa"), "user.x1").map(|v| v.len()), Ok(BIG_XATTR));
    m.umount();
}

#[test]
fn a_full_ext4_overlay_partition_gives_enospc_and_recovers_without_remount() {
    full_overlay_round(FsKind::Ext4);
}

#[test]
fn a_full_tmpfs_overlay_partition_gives_enospc_and_recovers_without_remount() {
    full_overlay_round(FsKind::Tmpfs);
}

#[test]
fn a_daemon_killed_on_a_full_partition_mounts_again_and_a_failed_database_write_recovers() {
    let mut g = Guest::new(|src| fs::write(src.join("image-file"), b"from the image\n").expect("write src"));
    let part = SmallFs::new(FsKind::Ext4, &g.r.scratch("small"), 64);
    g.overlay = part.p("ov");
    ballast(&part.p("room"), 8 << 20);
    let m = g.mount();
    write_keep(&m.p(""));
    fill_through(&m.p(""));
    fill(&part.p("ballast"));
    m.kill9();

    // The reserve makes room to open the database (and replay its log).
    let m = g.mount();
    check_keep(&m.p(""), "after kill -9 on a full partition");
    // Full again, to the last block: a removal is let through, and the
    // database's write of it fails once its log cannot grow (round by round:
    // each fill may be undone by space RocksDB frees after it). The failed
    // removal changes nothing, and every later operation gets ENOSPC.
    let mut ballasts = Vec::new();
    let mut refused = None;
    for i in 0..8 {
        let b = part.p(&format!("again{i}"));
        fill(&b);
        ballasts.push(b);
        let name = format!("user.x{i}");
        match errno_of(xattr::remove(m.p("keep/xa"), &name)) {
            Ok(()) => assert!(get_xattr(&m.p("keep/xa"), &name).is_err(), "{name} still there after its removal"),
            Err(e) => {
                assert_eq!(e, libc::ENOSPC, "removexattr with no block left");
                assert_eq!(get_xattr(&m.p("keep/xa"), &name).map(|v| v.len()), Ok(BIG_XATTR), "a refused removexattr removed {name}");
                refused = Some(name);
                break;
            }
        }
    }
    let refused = refused.expect("a removal with no block left never failed");
    ballasts.extend(fill_until_refused(&part, &m.p(""), "full"));
    let log = g.log();
    assert!(!log.contains("panicked"), "daemon panicked:\n{log}");

    for b in ballasts.iter().chain([&part.p("ballast"), &part.p("room")]) {
        fs::remove_file(b).expect("rm ballast");
    }
    xattr::remove(m.p("keep/xa"), &refused).expect("removexattr once space was freed");
    assert_all(&ops(&m.p(""), "freed"), Ok(()), &format!("once space was freed; daemon log:\n{}", g.log()));
    check_keep(&m.p(""), "after the database was reopened");
    m.umount();
    let m = g.mount();
    check_keep(&m.p(""), "after a remount");
    check_freed(&m.p(""), "freed");
    assert!(get_xattr(&m.p("keep/xa"), &refused).is_err(), "{refused} back after a remount");
    m.umount();
}

/// Pack files of a store: (name, length), sorted.
fn packs(store: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = match fs::read_dir(store.join("packs")) {
        Ok(rd) => rd.map(|e| e.expect("readdir packs")).map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().expect("stat pack").len())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}: {e}", store.display()),
    };
    v.sort();
    v
}

fn no_space_message(stderr: &str, part: &SmallFs, what: &str) {
    let want = format!("no space left on the partition mounted at {}", part.mp.display());
    assert!(stderr.contains(&want), "{what}: stderr does not say {want:?}:\n{stderr}");
}

#[test]
fn guest_checkpoint_and_create_on_a_full_partition_fail_cleanly_and_work_once_freed() {
    require_root();
    let r = Lvrepo::init();
    let src = r.scratch("src");
    fs::create_dir(&src).expect("mkdir src");
    fs::write(src.join("image-file"), b"from the image\n").expect("write src");
    r.import(&src, "img:1");
    let part = SmallFs::new(FsKind::Ext4, &r.scratch("small"), 64);
    let gdir = part.p("g");
    r.ok([OsStr::new("guest"), OsStr::new("create"), OsStr::new("g"), OsStr::new("--image"), OsStr::new("img:1"), OsStr::new("--overlay"), gdir.as_os_str()]);
    let mp = r.scratch("mnt");
    fs::create_dir(&mp).expect("mkdir mnt");
    let mount = || r.ok([OsStr::new("mount"), OsStr::new("--guest"), OsStr::new("g"), mp.as_os_str()]);
    let umount = || r.ok([OsStr::new("umount"), mp.as_os_str()]);
    let _guard = MountGuard(&r, &mp);
    mount();
    let big = pseudo_random(9, 3 << 20);
    fs::write(mp.join("big"), &big).expect("write big");
    write_keep(&mp);
    let store = gdir.join("store");
    let before = packs(&store);
    fill(&part.p("ballast"));

    // Mounted: the daemon's checkpoint fails, names the partition, and
    // leaves the store as it was; the mount goes on serving.
    let err = r.fails(["checkpoint", "g", "-m", "full"], 1);
    no_space_message(&err, &part, "mounted checkpoint");
    assert_eq!(packs(&store), before, "a failed mounted checkpoint left pack bytes behind");
    assert!(fs::read(mp.join("big")).expect("read big") == big, "big differs after a failed checkpoint");
    umount();

    // Unmounted: the same.
    let err = r.fails(["checkpoint", "g", "-m", "full"], 1);
    no_space_message(&err, &part, "unmounted checkpoint");
    assert_eq!(packs(&store), before, "a failed unmounted checkpoint left pack bytes behind");
    let log = r.json(["log", "g", "--json"]);
    assert_eq!(log["checkpoints"].as_array().map(Vec::len), Some(0), "a failed checkpoint was recorded: {log}");

    // A guest created on the full partition: refused, nothing left behind.
    // (Opening the guest released its overlay's reserve: fill that too.)
    fill(&part.p("ballast2"));
    let g2 = part.p("g2");
    let err = r.fails([OsStr::new("guest"), OsStr::new("create"), OsStr::new("g2"), OsStr::new("--image"), OsStr::new("img:1"), OsStr::new("--overlay"), g2.as_os_str()], 1);
    no_space_message(&err, &part, "guest create");
    assert!(!g2.exists(), "a failed guest create left {} behind", g2.display());

    // Room again.
    fs::remove_file(part.p("ballast")).expect("rm ballast");
    fs::remove_file(part.p("ballast2")).expect("rm ballast2");
    let cp = r.json(["checkpoint", "g", "-m", "room", "--json"]);
    assert_eq!(cp["checkpoint"]["number"].as_u64(), Some(1), "checkpoint once freed: {cp}");
    r.ok([OsStr::new("guest"), OsStr::new("create"), OsStr::new("g2"), OsStr::new("--image"), OsStr::new("img:1"), OsStr::new("--overlay"), g2.as_os_str()]);
    mount();
    assert!(fs::read(mp.join("big")).expect("read big") == big, "big differs after the checkpoint");
    check_keep(&mp, "after the checkpoint");
    fs::write(mp.join("later"), b"after").expect("write later");
    let cp = r.json(["checkpoint", "g", "-m", "mounted", "--json"]);
    assert_eq!(cp["checkpoint"]["number"].as_u64(), Some(2), "mounted checkpoint once freed: {cp}");
    umount();
}

/// Unmounts the guest mount at `.1` on drop if a test left it mounted.
struct MountGuard<'a>(&'a Lvrepo, &'a Path);

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        if is_mounted(self.1) {
            let pid = daemon_pid(self.1);
            common::umount_or_kill(self.0, self.1);
            if let Some(pid) = pid {
                wait_gone(pid, std::time::Duration::from_secs(30));
            }
        }
    }
}

#[test]
fn an_import_into_a_full_repository_partition_fails_cleanly_and_works_once_freed() {
    require_root();
    let tmp = tempfile::Builder::new().prefix("lvrepo-full").tempdir().expect("tempdir");
    let part = SmallFs::new(FsKind::Tmpfs, tmp.path(), 40);
    let r = Lvrepo::at(part.p("repo"));
    r.ok(["init"]);
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir src");
    for i in 0..3u64 {
        fs::write(src.join(format!("f{i}")), pseudo_random(i + 50, 2 << 20)).expect("write src");
    }
    let free = nix::sys::statvfs::statvfs(&part.mp).map(|s| s.blocks_available() as u64 * s.fragment_size() as u64).expect("statvfs");
    // Room to open the repository, not to store the image.
    ballast(&part.p("ballast"), (free - (3 << 20)) as usize);
    let before = packs(&part.p("repo"));
    let err = r.fails([OsStr::new("import"), src.as_os_str(), OsStr::new("--image"), OsStr::new("big:1")], 1);
    no_space_message(&err, &part, "import");
    assert_eq!(packs(&part.p("repo")), before, "a failed import left pack bytes behind");
    // To the last block: refused before the index is touched.
    fill(&part.p("ballast2"));
    let err = r.fails([OsStr::new("import"), src.as_os_str(), OsStr::new("--image"), OsStr::new("big:1")], 1);
    no_space_message(&err, &part, "import into a full partition");
    assert_eq!(packs(&part.p("repo")), before, "a refused import left pack bytes behind");

    fs::remove_file(part.p("ballast")).expect("rm ballast");
    fs::remove_file(part.p("ballast2")).expect("rm ballast2");
    r.ok([OsStr::new("import"), src.as_os_str(), OsStr::new("--image"), OsStr::new("big:1")]);
    r.ok(["verify"]);
    let out = tmp.path().join("out");
    r.ok([OsStr::new("export"), OsStr::new("big:1"), out.as_os_str()]);
    for i in 0..3u64 {
        assert!(fs::read(out.join(format!("f{i}"))).expect("read export") == pseudo_random(i + 50, 2 << 20), "f{i} differs");
    }
    drop(r);
    drop(part);
}

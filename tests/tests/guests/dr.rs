//! Disaster recovery (issue 26): `backup GUEST --to REPO`, `backups`,
//! `restore GUEST --from REPO`. A restored guest, mounted, has exactly the
//! manifest of the source guest at the backed-up checkpoint (content,
//! metadata, xattrs, ACLs, hardlinks, sparse maps, devices) and its whole
//! checkpoint history, at a site that holds the golden image and at an empty
//! one; a site holding the image receives only the guest's bytes, and a later
//! backup only the change; an interrupted backup or restore leaves nothing
//! visible and, run again, does not resend what landed.

use super::*;
use super::rollback::{build_system, change_a};

/// A repository of its own (a backup site or another host), in `w`'s scratch.
/// Create guest `g1` of the world's image and make change A in it (mounted,
/// then unmounted); the manifest of that state.
pub(super) fn changed_guest(w: &World) -> Manifest {
    let g = w.guest("g1");
    let m = g.mount();
    change_a(&m);
    let m1 = m.manifest();
    m.umount();
    m1
}

pub(super) fn site(w: &World, name: &str, with_image: bool) -> Lvrepo {
    let r = Lvrepo::at(w.r.scratch(name));
    r.ok(["init"]);
    if with_image {
        r.import(&w.src, "img:1");
    }
    r
}

/// A guest of repository `r` mounted at `mp`; unmounted on drop.
pub(super) struct Mount<'a> {
    r: &'a Lvrepo,
    mp: PathBuf,
}

impl<'a> Mount<'a> {
    pub(super) fn new(r: &'a Lvrepo, guest: &str, mp: PathBuf) -> Self {
        fs::create_dir_all(&mp).expect("mkdir mountpoint");
        r.ok([os("mount"), os("--guest"), os(guest), mp.as_os_str()]);
        assert!(is_mounted(&mp), "mount --guest {guest} returned 0 but {} is not a mount", mp.display());
        Mount { r, mp }
    }
    pub(super) fn manifest(&self) -> Manifest {
        manifest(&self.mp).unwrap_or_else(|e| panic!("manifest of {}: {e}", self.mp.display()))
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        common::umount_or_kill(self.r, &self.mp);
    }
}

/// `backup NAME --to SITE ARGS --json`.
fn backup(r: &Lvrepo, name: &str, to: &Lvrepo, args: &[&str]) -> Value {
    let mut a = vec![os("backup"), os(name), os("--to"), to.repo().as_os_str()];
    a.extend(args.iter().map(|s| os(s)));
    a.push(os("--json"));
    r.json(&a)
}

fn restore_args<'a>(from: &'a Lvrepo, name: &'a str, overlay: &'a Path, extra: &[&'a str]) -> Vec<&'a OsStr> {
    let mut a = vec![os("restore"), os(name), os("--from"), from.repo().as_os_str(), os("--overlay"), overlay.as_os_str()];
    a.extend(extra.iter().map(|s| os(s)));
    a
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64().unwrap_or_else(|| panic!("{} missing in {v}", path.join(".")))
}

/// `backups NAME --json` at `site`: the checkpoint numbers it holds.
pub(super) fn held(site: &Lvrepo, name: &str) -> Vec<u64> {
    let v = site.json(["backups", name, "--json"]);
    v["backups"].as_array().unwrap_or_else(|| panic!("backups --json has no backups array: {v}")).iter().map(|b| b["checkpoint"]["number"].as_u64().expect("checkpoint")).collect()
}

#[test]
fn restored_guest_is_exact_at_a_site_with_the_image_and_at_an_empty_one() {
    let w = World::new(true, build_system);
    let g = w.guest("g1");
    let with_image = site(&w, "site-img", true);
    let empty = site(&w, "site-empty", false);
    let (m1, m2, guest_bytes);
    {
        let m = g.mount();
        change_a(&m);
        m1 = m.manifest();
        // Mounted: the backup's checkpoint is taken by the daemon.
        let b1 = backup(&w.r, "g1", &with_image, &[]);
        assert_eq!(numbers(&b1["sent"]), vec![1], "{b1}");
        let first_bytes = u(&b1, &["copied", "object_bytes"]);
        let e1 = backup(&w.r, "g1", &empty, &["--no-checkpoint"]);
        let full_bytes = u(&e1, &["copied", "object_bytes"]);
        // The image's data is ~1 MB; the guest's own bytes are its changes.
        assert!(full_bytes > 900_000, "an empty site must receive the whole guest: {e1}");
        assert!(first_bytes * 4 < full_bytes, "a site with the image must receive only the guest's bytes: {first_bytes} vs {full_bytes}");
        // A small change: the next backup carries that change only.
        write_at(&m.p("data/big.link"), 10, b"second");
        put(&m.p("etc/new-file"), b"new\n");
        m2 = m.manifest();
        assert_differs("second state", &m1, &m2);
        let b2 = backup(&w.r, "g1", &with_image, &[]);
        assert_eq!((numbers(&b2["sent"]), numbers(&b2["present"])), (vec![2], vec![1]), "{b2}");
        let inc = u(&b2, &["copied", "object_bytes"]);
        eprintln!("backup bytes: empty site {full_bytes}, site with image {first_bytes}, incremental {inc}");
        assert!(inc < 64 * 1024 + 40_000, "an incremental backup carries one 64 KiB chunk and the trees on its path, not {inc} bytes");
        // What a site with the image needed of this guest, in all.
        guest_bytes = first_bytes + inc;
        backup(&w.r, "g1", &empty, &["--no-checkpoint"]);
        m.umount();
    }
    assert_eq!(held(&with_image, "g1"), vec![1, 2]);
    let listed = with_image.json(["backups", "--json"]);
    assert_eq!(listed["backups"][0]["image"]["label"], "img:1", "{listed}");
    for s in [&with_image, &empty] {
        s.ok(["verify"]);
    }

    // Restore into a host that holds the image, and into an empty one.
    for (host_name, host_has_image, from) in [("host-img", true, &with_image), ("host-empty", false, &empty)] {
        let host = site(&w, host_name, host_has_image);
        let dir = w.r.scratch(&format!("{host_name}-guests")).join("r1");
        let v = host.json(restore_args(from, "g1", &dir, &["--as", "r1", "--json"]));
        let copied = u(&v, &["copied", "object_bytes"]);
        if host_has_image {
            assert!(copied <= guest_bytes, "{host_name}: a host with the image receives only the guest's bytes ({guest_bytes}), not {copied}");
        } else {
            assert!(copied > 900_000, "{host_name}: an empty host receives everything: {v}");
        }
        let log = host.json(["log", "r1", "--json"]);
        let versions: Vec<u64> = log["checkpoints"].as_array().expect("log array").iter().map(|c| c["number"].as_u64().expect("number")).collect();
        assert_eq!(versions, vec![1, 2], "{host_name}: the checkpoint history comes back");
        assert_eq!(log["checkpoints"][0]["message"], "backup");
        let mp = w.r.scratch(&format!("{host_name}-mnt"));
        {
            let m = Mount::new(&host, "r1", mp.clone());
            assert_same(&format!("{host_name}: restored guest vs source at checkpoint 2"), &m2, &m.manifest());
        }
        host.ok(["rollback", "r1", "1"]);
        {
            let m = Mount::new(&host, "r1", mp.clone());
            assert_same(&format!("{host_name}: restored guest rolled back to 1 vs source at checkpoint 1"), &m1, &m.manifest());
        }
        // --checkpoint N restores that state; gc keeps what restored guests use.
        let dir2 = w.r.scratch(&format!("{host_name}-guests")).join("r2");
        host.ok(restore_args(from, "g1", &dir2, &["--as", "r2", "--checkpoint", "1"]));
        host.ok(["gc"]);
        host.ok(["verify"]);
        let m = Mount::new(&host, "r2", mp.clone());
        assert_same(&format!("{host_name}: restore --checkpoint 1"), &m1, &m.manifest());
    }
}

#[test]
fn bad_restores_and_conflicting_backups_are_refused_and_leave_nothing() {
    let w = World::new(true, build_system);
    let g = w.guest("g1");
    {
        let m = g.mount();
        put(&m.p("etc/x"), b"x\n");
        m.umount();
    }
    let s = site(&w, "site", false);
    backup(&w.r, "g1", &s, &[]);
    let host = site(&w, "host", false);
    let dir = w.r.scratch("host-guests").join("x");
    host.fails(restore_args(&s, "nope", &dir, &[]), 3);
    host.fails(restore_args(&s, "g1", &dir, &["--checkpoint", "9"]), 3);
    assert!(!dir.exists() || fs::read_dir(&dir).expect("readdir").next().is_none(), "a refused restore leaves no guest directory");
    assert_eq!(host.json(["guest", "list", "--json"])["guests"], serde_json::json!([]), "a refused restore registers no guest");
    host.ok(restore_args(&s, "g1", &dir, &[]));
    let dir2 = w.r.scratch("host-guests").join("y");
    host.fails(restore_args(&s, "g1", &dir2, &[]), 5);
    // Another guest of the same name (from another image) is not mixed in.
    let other = site(&w, "other", false);
    let src2 = w.r.scratch("src2");
    mkdir(&src2);
    put(&src2.join("f"), b"other image\n");
    other.import(&src2, "img:2");
    let d = w.r.scratch("other-guests").join("g1");
    other.ok([os("guest"), os("create"), os("g1"), os("--image"), os("img:2"), os("--overlay"), d.as_os_str()]);
    let out = other.fails([os("backup"), os("g1"), os("--to"), s.repo().as_os_str()], 5);
    assert!(out.contains("img:1"), "the refusal names what the target holds: {out}");
    assert_eq!(held(&s, "g1"), vec![1]);
    s.ok(["verify"]);
}

#[test]
fn interrupted_backup_and_restore_leave_nothing_visible_and_resume() {
    let w = World::new(true, build_system);
    let m1 = changed_guest(&w);
    let s = site(&w, "site", false);
    let to = s.repo().to_str().expect("utf-8 temp path").to_string();
    run_to_failpoint(&w.r, &["backup", "g1", "--to", &to], "backup-before-publish");
    assert_eq!(held(&s, "g1"), Vec::<u64>::new(), "an interrupted backup publishes nothing");
    s.ok(["verify"]);
    // The rerun finds every object there and sends none again.
    let v = backup(&w.r, "g1", &s, &["--no-checkpoint"]);
    assert_eq!(numbers(&v["sent"]), vec![1], "{v}");
    assert_eq!(u(&v, &["copied", "object_count"]), 0, "the rerun resent objects that had landed: {v}");
    assert_eq!(held(&s, "g1"), vec![1]);
    // A run with nothing new sends nothing.
    let v = backup(&w.r, "g1", &s, &["--no-checkpoint"]);
    assert_eq!((numbers(&v["sent"]), u(&v, &["copied", "object_count"])), (vec![], 0), "{v}");

    let host = site(&w, "host", false);
    let dir = w.r.scratch("host-guests").join("g1");
    let from = s.repo().to_str().expect("utf-8").to_string();
    let dir_s = dir.to_str().expect("utf-8").to_string();
    run_to_failpoint(&host, &["restore", "g1", "--from", &from, "--overlay", &dir_s], "restore-before-publish");
    assert_eq!(host.json(["guest", "list", "--json"])["guests"], serde_json::json!([]), "an interrupted restore registers no guest");
    host.ok(["verify"]);
    host.ok(restore_args(&s, "g1", &dir, &[]));
    let m = Mount::new(&host, "g1", w.r.scratch("host-mnt"));
    assert_same("restored after an interrupted restore", &m1, &m.manifest());
}

//! Fleet operations: `harvest` publishes a guest's state as an image (a guest
//! of it is the same filesystem, and stands on the repository alone);
//! `rebase` moves a guest onto a new image version keeping its changes
//! (a three-way merge), refuses conflicts without touching the guest, and
//! re-applies personalisation.

use super::*;
use std::os::unix::ffi::OsStrExt;

fn build_fleet_image(src: &Path) {
    for d in ["etc", "var", "opt/other", "usr"] {
        mkdir(&src.join(d));
    }
    for (p, c) in [("etc/a", "alpha\n"), ("etc/b", "beta\n"), ("etc/hostname", "template\n"), ("var/keep", "keep\n"), ("opt/other/g", "g\n"), ("usr/x", "x\n"), ("usr/y", "y\n")] {
        put(&src.join(p), c.as_bytes());
    }
    put(&src.join(OsStr::from_bytes(b"etc/bin\xff")), b"binary name\n");
    // Bulk the guest never changes: a harvest must not store it again.
    put(&src.join("usr/big"), &pseudo_random(3 << 20, 7));
}

/// A guest of `image` (not `img:1`): `guest create NAME --image IMAGE`.
fn guest_of<'w>(w: &'w World, name: &str, image: &str, extra: &[&str]) -> Guest<'w> {
    let dir = w.r.scratch("guests").join(name);
    let mut args: Vec<&OsStr> = vec![os("guest"), os("create"), os(name), os("--image"), os(image), os("--overlay"), dir.as_os_str()];
    args.extend(extra.iter().map(|s| os(s)));
    w.r.ok(&args);
    let mp = w.r.scratch("mnt").join(name);
    fs::create_dir_all(&mp).expect("mkdir mountpoint");
    Guest { w, name: name.to_string(), dir, mp }
}

/// The guest's changes, with every time they move set explicitly (in
/// 2030, later than any image change), so the same function applied to a
/// plain directory gives the same manifest.
fn guest_changes(root: &Path) {
    write_at(&root.join("etc/a"), 0, b"GUEST");
    put(&root.join("etc/new"), b"new from the guest\n");
    rm(&root.join("var/keep"));
    mkdir(&root.join("opt/mine"));
    put(&root.join("opt/mine/f"), b"mine\n");
    symlink("../etc/a", &root.join("opt/link"));
    chmod(&root.join("usr/y"), 0o600);
    xattr_set(&root.join("usr/y"), "user.tag", b"guest");
    for (i, p) in ["etc/a", "etc/new", "opt/mine/f", "opt/link", "opt/mine", "opt", "var", "etc"].iter().enumerate() {
        mtime(&root.join(p), 1_900_000_000 + i as i64, 5);
    }
}

/// Image version 2: a copy of version 1's source with the image's changes.
fn image_changes(root: &Path) {
    put(&root.join("usr/x"), b"x version 2\n");
    put(&root.join("usr/new"), b"new in the image\n");
    rm(&root.join("opt/other/g"));
    put(&root.join("etc/b"), b"beta version 2\n");
    put(&root.join("etc/fromimage"), b"image file\n");
    put(&root.join("etc/hostname"), b"template2\n");
}

fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("spawn cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// A World with img:1 and img:2 (= img:1 + `image_changes`); returns img:2's source.
fn two_versions() -> (World, PathBuf) {
    let w = World::new(true, build_fleet_image);
    let src2 = w.r.scratch("src2");
    cp_a(&w.src, &src2);
    image_changes(&src2);
    w.r.import(&src2, "img:2");
    (w, src2)
}

/// What must not change when a rebase is refused or only planned.
fn guest_files(g: &Guest) -> (Vec<u8>, Vec<u8>, Value) {
    let rec = fs::read(g.r().repo().join("guests").join(format!("{}.json", g.name))).expect("read guest record");
    let state = fs::read(g.dir.join("STATE")).expect("read STATE");
    (rec, state, g.r().json(["log", &g.name, "--json"]))
}

pub(super) fn mounted_manifest(g: &Guest) -> Manifest {
    let m = g.mount();
    let man = m.manifest();
    m.umount();
    man
}

/// Guest `g` of img:1 with `guest_changes` made through its mount, and its
/// manifest.
fn changed_guest(w: &World) -> (Guest<'_>, Manifest) {
    let g = w.guest("g");
    let m = g.mount();
    guest_changes(&m.p(""));
    let man = m.manifest();
    m.umount();
    (g, man)
}

// ─────────────────────────── harvest ───────────────────────────

#[test]
fn harvest_publishes_the_guest_state_and_copies_only_its_own_objects() {
    let w = World::new(true, build_fleet_image);
    let (g, want) = changed_guest(&w);
    let before = w.stored_bytes();
    let label = w.r.ok(["harvest", "g", "--image", "golden", "-m", "from g"]);
    assert_eq!(label.trim(), "golden:1");
    let grown = w.stored_bytes() - before;
    assert!(grown < 64 << 10, "harvest stored {grown} bytes in the repository; the guest changed a few hundred");
    assert_eq!(g.checkpoints(), vec![1], "harvest of the current state checkpoints it");
    let imgs = w.r.json(["images", "--json"]);
    let rec = imgs["images"].as_array().unwrap().iter().find(|i| i["name"] == "golden").unwrap_or_else(|| panic!("no golden in {imgs}")).clone();
    assert_eq!(rec["parent"], "img:1");
    assert_eq!(rec["message"], "from g");

    // The image stands on the repository alone: gone the source guest, gc'd.
    w.r.ok(["guest", "rm", "g"]);
    w.r.ok(["gc"]);
    w.r.ok(["verify"]);
    let h = guest_of(&w, "h", "golden:1", &[]);
    assert_same("a guest of the harvested image vs the source guest", &want, &mounted_manifest(&h));
    assert_differs("the source guest vs its image", &want, &manifest(&w.src).expect("manifest of the source"));
}

#[test]
fn harvest_of_a_checkpoint_or_a_mounted_guest() {
    let w = World::new(true, build_fleet_image);
    let g = w.guest("src");
    let m = g.mount();
    put(&m.p("etc/one"), b"one\n");
    let at_one = m.manifest();
    assert_eq!(g.checkpoint("one"), 1);
    guest_changes(&m.p(""));
    let live = m.manifest();
    // Mounted, current state: checkpointed through the daemon.
    assert_eq!(w.r.ok(["harvest", "src", "--image", "live:3"]).trim(), "live:3");
    m.umount();
    assert_eq!(w.r.ok(["harvest", "src", "--checkpoint", "1", "--image", "snap"]).trim(), "snap:1");
    let e = w.r.fails(["harvest", "src", "--checkpoint", "1", "--image", "snap:1"], 5);
    assert!(e.contains("snap:1"), "{e}");
    w.r.fails(["harvest", "src", "--checkpoint", "9", "--image", "snap"], 3);
    assert_same("guest of snap:1 vs checkpoint 1", &at_one, &mounted_manifest(&guest_of(&w, "s", "snap:1", &[])));
    assert_same("guest of live:3 vs the mounted state", &live, &mounted_manifest(&guest_of(&w, "l", "live:3", &[])));
}

// ─────────────────────────── rebase ───────────────────────────

#[test]
fn rebase_equals_the_guest_changes_applied_to_the_new_image() {
    let (w, src2) = two_versions();
    let (g, before) = changed_guest(&w);
    w.r.ok(["rebase", "g", "--image", "img:2"]);
    let expected = w.r.scratch("expected");
    cp_a(&src2, &expected);
    guest_changes(&expected);
    assert_same("rebased guest vs img:2 + the guest's changes", &manifest(&expected).expect("manifest"), &mounted_manifest(&g));
    assert_eq!(g.show()["guest"]["image"]["label"], "img:2");
    // The state before is a checkpoint: rolling back to it undoes the content.
    assert_eq!(g.checkpoints(), vec![1]);
    g.rollback(1);
    assert_same("rolled back to the checkpoint the rebase took", &before, &mounted_manifest(&g));
    assert_eq!(g.show()["guest"]["image"]["label"], "img:1", "the checkpoint stands on img:1");
    // Rebased again from there: the same result.
    w.r.ok(["rebase", "g", "--image", "img:2"]);
    assert_same("rebased twice", &manifest(&expected).expect("manifest"), &mounted_manifest(&g));
    assert_eq!(g.show()["guest"]["image"]["label"], "img:2");
}

#[test]
fn rebase_costs_the_directories_both_sides_changed_and_dry_run_changes_nothing() {
    let (w, _) = two_versions();
    let (g, _) = changed_guest(&w);
    let before = guest_files(&g);
    let plan = w.r.json(["rebase", "g", "--image", "img:2", "--dry-run", "--json"]);
    let plan = &plan["rebases"][0];
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["conflicts"], serde_json::json!([]));
    // The root directory, etc, usr and opt: var and everything else is taken
    // whole from the one side that changed it.
    assert_eq!(plan["merged_dir_count"], 4, "{plan}");
    assert_eq!(guest_files(&g), before, "--dry-run changed the guest");
    let done = w.r.json(["rebase", "g", "--image", "img:2", "--json"]);
    assert_eq!(done["rebases"][0]["checkpoint"]["number"], 1, "{done}");
    assert_ne!(guest_files(&g), before);
}

#[test]
fn conflicting_rebase_lists_every_path_and_leaves_the_guest_as_it_was() {
    let (w, _) = two_versions();
    let g = w.guest("c");
    let m = g.mount();
    put(&m.p("etc/b"), b"beta by the guest\n");
    fs::write(m.p("etc").join(OsStr::from_bytes(b"bin\xff")), b"changed by the guest\n").expect("write bin\\xff");
    let want = m.manifest();
    m.umount();
    let before = guest_files(&g);
    // img:2 changed etc/b, not etc/bin\xff: make one more version that does.
    let src3 = w.r.scratch("src3");
    cp_a(&w.r.scratch("src2"), &src3);
    fs::write(src3.join("etc").join(OsStr::from_bytes(b"bin\xff")), b"changed by the image\n").expect("write");
    w.r.import(&src3, "img:3");
    let out = w.r.run(["rebase", "c", "--image", "img:3"]);
    assert_eq!(out.status.code(), Some(7), "{}", report("conflicting rebase", &out));
    let listed: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(listed, vec![b"/etc/b".as_slice(), b"/etc/bin\\xff".as_slice()], "{}", report("conflicting rebase", &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"), "{}", report("conflicting rebase", &out));
    assert_eq!(guest_files(&g), before, "a refused rebase changed the guest's record, STATE or checkpoints");
    assert_same("guest after a refused rebase", &want, &mounted_manifest(&g));
    // --dry-run says the same, with the same exit.
    assert_eq!(w.r.run(["rebase", "c", "--image", "img:3", "--dry-run"]).status.code(), Some(7));
}

#[test]
fn prefer_resolves_conflicts_for_the_guest_or_the_image() {
    let (w, _) = two_versions();
    let (a, b) = (w.guest("pa"), w.guest("pb"));
    for g in [&a, &b] {
        let m = g.mount();
        put(&m.p("etc/b"), b"beta by the guest\n");
        m.umount();
    }
    let out = w.r.ok(["rebase", "pa", "--image", "img:2", "--prefer", "guest"]);
    assert_eq!(out.trim(), "/etc/b", "the resolved conflict is listed");
    w.r.ok(["rebase", "pb", "--image", "img:2", "--prefer", "image"]);
    let ma = a.mount();
    assert_eq!(fs::read(ma.p("etc/b")).unwrap(), b"beta by the guest\n");
    assert_eq!(fs::read(ma.p("usr/x")).unwrap(), b"x version 2\n", "the image's other changes apply");
    ma.umount();
    let mb = b.mount();
    assert_eq!(fs::read(mb.p("etc/b")).unwrap(), b"beta version 2\n");
    assert_eq!(fs::read(mb.p("usr/new")).unwrap(), b"new in the image\n");
    mb.umount();
    w.r.fails(["rebase", "pa", "--image", "img:2", "--prefer", "neither"], 2);
}

#[test]
fn rebase_reapplies_personalisation_and_refuses_a_mounted_guest() {
    let (w, _) = two_versions();
    let g = w.guest_with("web7", &[os("--set"), os("hostname=web7"), os("--set"), os("role=web")]);
    {
        let m = g.mount();
        let e = w.r.fails(["rebase", "web7", "--image", "img:2"], 6);
        assert!(e.contains("mounted"), "{e}");
        assert!(is_mounted(&g.mp), "a refused rebase unmounted the guest");
        m.umount();
    }
    // img:2 changed /etc/hostname, which personalisation wrote: no conflict.
    w.r.ok(["rebase", "web7", "--image", "img:2"]);
    let m = g.mount();
    assert_eq!(fs::read(m.p("etc/hostname")).unwrap(), b"web7\n");
    assert_eq!(fs::read(m.p("etc/lvrepo/guest.conf")).unwrap(), b"hostname=web7\nrole=web\n");
    assert_eq!(fs::read(m.p("etc/b")).unwrap(), b"beta version 2\n");
    m.umount();
}

// ─────────────────────────── channels ───────────────────────────

#[test]
fn tag_moves_a_channel_that_names_a_version_everywhere_and_log_shows_it() {
    let (w, _) = two_versions();
    w.r.ok(["tag", "img:1", "img:stable"]);
    let g = guest_of(&w, "ch", "img:stable", &[]);
    assert_eq!(g.show()["guest"]["image"]["label"], "img:1", "a guest records the version the channel named");
    w.r.ok(["tag", "img:2", "img:stable"]);
    w.r.ok(["rebase", "ch", "--image", "img:stable"]);
    assert_eq!(g.show()["guest"]["image"]["label"], "img:2");
    let m = g.mount();
    assert_eq!(fs::read(m.p("usr/x")).unwrap(), b"x version 2\n");
    m.umount();
    w.r.ok(["tag", "img:1", "img:old"]);

    let log = w.r.json(["log", "img", "--json"]);
    let versions: Vec<(u64, Value)> = log["versions"].as_array().unwrap().iter().map(|v| (v["image"]["version"].as_u64().unwrap(), v["tags"].clone())).collect();
    assert_eq!(versions, vec![(1, serde_json::json!(["old"])), (2, serde_json::json!(["stable"]))], "{log}");
    let stable = log["channels"].as_array().unwrap().iter().find(|c| c["channel"] == "stable").unwrap_or_else(|| panic!("no stable in {log}")).clone();
    assert_eq!(stable["version"], 2);
    assert_eq!(stable["history"].as_array().map(|h| h.iter().map(|m| m["version"].clone()).collect::<Vec<_>>()), Some(vec![serde_json::json!(1)]), "{stable}");
    let text = w.r.ok(["log", "img"]);
    assert!(text.lines().any(|l| l.starts_with("img:2") && l.ends_with("[stable]")), "{text}");
    assert!(text.contains("img:stable -> img:2"), "{text}");

    w.r.fails(["tag", "img:9", "img:stable"], 3);
    w.r.fails(["tag", "img:1", "img:7"], 2);
    w.r.fails(["tag", "img:1", "other:stable"], 2);
    w.r.fails(["guest", "create", "x", "--image", "img:nosuch", "--overlay", w.r.scratch("x").to_str().unwrap()], 3);
    w.r.fails(["log", "nosuch"], 3);
}

// ─────────────────────────── audit ───────────────────────────

#[test]
fn audit_records_every_change_and_verify_detects_an_edited_or_removed_entry() {
    let (w, _) = two_versions();
    let g = w.guest("au");
    assert_eq!(g.checkpoint("one"), 1);
    let m = g.mount();
    put(&m.p("etc/b"), b"guest\n");
    m.umount();
    w.r.fails(["rebase", "au", "--image", "img:2"], 7);
    w.r.ok(["tag", "img:2", "img:stable"]);
    w.r.ok(["images"]);
    w.r.ok(["log", "au"]);
    let all = w.r.json(["audit", "--json"]);
    let rows: Vec<(String, String, String)> = all["events"].as_array().unwrap().iter().map(|e| (e["command"].as_str().unwrap().into(), e["target"].as_str().unwrap().into(), e["result"].as_str().unwrap().into())).collect();
    let cmds: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    // img:1 and img:2 were imported by the harness; reads are not recorded.
    assert_eq!(cmds, ["init", "import", "import", "guest create", "checkpoint", "mount", "umount", "rebase", "tag"], "{all}");
    assert_eq!(rows[7].1, "au img:2");
    assert!(rows[7].2.starts_with("exit 7: "), "a refused rebase is recorded with its result: {:?}", rows[7]);
    assert_eq!(rows[8].2, "ok");
    let first = &all["events"][0];
    assert_eq!(first["uid"], 0);
    assert_eq!(first["user"], "root");
    assert!(w.r.json(["audit", "--since", "1h", "--json"])["events"].as_array().unwrap().len() == rows.len());
    assert!(w.r.json(["audit", "--since", "4000000000", "--json"])["events"].as_array().unwrap().is_empty());
    w.r.fails(["audit", "--since", "yesterday"], 2);
    w.r.ok(["audit", "verify"]);

    let log = w.r.repo().join("audit.log");
    let good = fs::read_to_string(&log).expect("read audit.log");
    let lines: Vec<&str> = good.lines().collect();
    // Edited: entry 8's result says the rebase went through.
    let edited = good.replacen(lines[7], &lines[7].replace("exit 7: ", "ok; "), 1);
    fs::write(&log, &edited).expect("write");
    let e = w.r.fails(["audit", "verify"], 4);
    assert!(e.contains("line 8") && e.contains("entry 8 was edited"), "{e}");
    // Removed: entry 5 gone.
    let removed: String = lines.iter().enumerate().filter(|(i, _)| *i != 4).map(|(_, l)| format!("{l}\n")).collect();
    fs::write(&log, removed).expect("write");
    let e = w.r.fails(["audit", "verify"], 4);
    assert!(e.contains("line 5") && e.contains("entry 5 was removed"), "{e}");
    // The newest removed: the head file knows.
    let newest_gone: String = lines[..lines.len() - 1].iter().map(|l| format!("{l}\n")).collect();
    fs::write(&log, newest_gone).expect("write");
    let e = w.r.fails(["audit", "verify"], 4);
    assert!(e.contains("newest entries were removed"), "{e}");
    fs::write(&log, &good).expect("write");
    w.r.ok(["audit", "verify"]);
    // Appending goes on from the restored log.
    w.r.ok(["tag", "img:1", "img:old"]);
    w.r.ok(["audit", "verify"]);
}

// ─────────────────────────── groups ───────────────────────────

#[test]
fn group_checkpoint_rollback_and_rebase_act_on_every_member_and_a_conflict_changes_none() {
    let (w, _) = two_versions();
    let (a, b) = (w.guest("ga"), w.guest("gb"));
    w.r.ok(["group", "create", "web", "ga"]);
    w.r.ok(["group", "add", "web", "gb"]);
    w.r.fails(["group", "add", "web", "nosuch"], 3);
    w.r.fails(["group", "create", "web"], 5);
    w.r.ok(["group", "create", "spare", "ga"]);
    w.r.ok(["group", "rm", "spare"]);
    let list = w.r.json(["group", "list", "--json"]);
    assert_eq!(list["groups"].as_array().map(|l| l.len()), Some(1), "{list}");
    assert_eq!(list["groups"][0]["members"], serde_json::json!([{ "name": "ga" }, { "name": "gb" }]));

    let cps = w.r.json(["checkpoint", "--group", "web", "-m", "fleet", "--json"]);
    assert_eq!(cps["results"].as_array().map(|c| c.iter().all(|r| r["ok"] == true && r["checkpoint"]["number"] == 1)), Some(true), "{cps}");
    for g in [&a, &b] {
        let m = g.mount();
        put(&m.p("etc/b"), format!("{} was here\n", g.name).as_bytes());
        m.umount();
    }
    w.r.ok(["rollback", "--group", "web", "1"]);
    for g in [&a, &b] {
        let m = g.mount();
        assert_eq!(fs::read(m.p("etc/b")).unwrap(), b"beta\n", "guest {} rolled back", g.name);
        m.umount();
    }

    // Only gb conflicts with img:2 (both changed etc/b): no member changes.
    let m = b.mount();
    put(&m.p("etc/b"), b"gb's beta\n");
    m.umount();
    let before = (guest_files(&a), guest_files(&b));
    let out = w.r.run(["rebase", "--group", "web", "--image", "img:2"]);
    assert_eq!(out.status.code(), Some(7), "{}", report("conflicting group rebase", &out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "gb /etc/b");
    assert_eq!((guest_files(&a), guest_files(&b)), before, "a refused group rebase changed a member");
    let m = a.mount();
    w.r.fails(["rebase", "--group", "web", "--image", "img:2", "--prefer", "guest"], 6);
    m.umount();
    w.r.ok(["rebase", "--group", "web", "--image", "img:2", "--prefer", "guest"]);
    for (g, want) in [(&a, b"beta version 2\n".as_slice()), (&b, b"gb's beta\n")] {
        assert_eq!(g.show()["guest"]["image"]["label"], "img:2");
        let m = g.mount();
        assert_eq!(fs::read(m.p("etc/b")).unwrap(), want, "guest {}", g.name);
        assert_eq!(fs::read(m.p("usr/x")).unwrap(), b"x version 2\n");
        m.umount();
    }
    // A member that is gone: the others still run, the exit says so.
    w.r.ok(["guest", "rm", "gb"]);
    let e = w.r.fails(["checkpoint", "--group", "web"], 3);
    assert!(e.contains("1 of 2 guests failed, first gb"), "{e}");
    assert_eq!(a.checkpoints().len(), 3, "ga was checkpointed although gb failed");
}

// ─────────────────────────── signed images ───────────────────────────

#[test]
fn under_the_signing_policy_unsigned_and_tampered_images_are_refused() {
    let (w, _) = two_versions();
    let key = w.r.scratch("release.key");
    let public = w.r.ok([os("key"), os("generate"), os("--out"), key.as_os_str()]);
    assert_eq!(public.trim().len(), 64, "{public}");
    assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(fs::read_to_string(key.with_extension("key.pub")).unwrap().contains(public.trim()));
    w.r.fails([os("key"), os("generate"), os("--out"), key.as_os_str()], 5);
    let other = w.r.scratch("other.key");
    w.r.ok([os("key"), os("generate"), os("--out"), other.as_os_str()]);

    // Before a policy, nothing is checked.
    let early = w.guest("early");
    w.r.ok([os("sign"), os("img:1"), os("--key"), key.as_os_str()]);
    w.r.ok([os("sign"), os("img:2"), os("--key"), other.as_os_str()]);
    w.r.ok([os("policy"), os("require-signature"), os("--key"), key.with_extension("key.pub").as_os_str()]);
    assert!(w.r.ok(["policy", "show"]).contains(public.trim()));

    let g = w.guest("signed");
    let e = w.r.fails(["guest", "create", "u", "--image", "img:2", "--overlay", w.r.scratch("u").to_str().unwrap()], 77);
    assert!(e.contains("img:2 is not signed by a key the repository's policy requires"), "signed by another key only: {e}");
    let e = w.r.fails(["rebase", "signed", "--image", "img:2"], 77);
    assert!(e.contains("not signed"), "{e}");
    w.r.ok([os("sign"), os("img:2"), os("--key"), key.as_os_str()]);
    w.r.ok(["rebase", "signed", "--image", "img:2"]);
    let m = g.mount();
    assert_eq!(fs::read(m.p("usr/x")).unwrap(), b"x version 2\n");
    m.umount();

    // Tampered: img:1 replaced by another tree under the same label.
    w.r.ok(["delete", "img:1", "--force"]);
    let evil = w.r.scratch("evil");
    mkdir(&evil.join("etc"));
    put(&evil.join("etc/a"), b"backdoor\n");
    w.r.import(&evil, "img:1");
    let e = w.r.fails(["guest", "create", "t", "--image", "img:1", "--overlay", w.r.scratch("t").to_str().unwrap()], 4);
    assert!(e.contains("img:1") && e.contains("tampered"), "{e}");
    let out = early.try_mount();
    assert_eq!(out.status.code(), Some(4), "{}", report("mount of a guest whose image was tampered with", &out));
    assert!(!is_mounted(&early.mp));
    let mnt = w.r.scratch("mnt").join("img");
    fs::create_dir_all(&mnt).unwrap();
    let ov = w.r.scratch("img-overlay");
    w.r.fails([os("mount"), os("img:1"), os("--overlay"), ov.as_os_str(), mnt.as_os_str()], 4);
    assert!(!is_mounted(&mnt));
}

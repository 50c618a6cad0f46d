//! The rest of a guest's life: `diff GUEST`, clones that cost the shared disk
//! nothing, prune + gc + verify, `guest rm` of a mounted guest, personalisation.

use super::*;

// ─────────────────────────── 4. diff ───────────────────────────

fn build_diff_image(src: &Path) {
    for d in ["etc", "var/old", "opt/app", "opt/other", "usr"] {
        mkdir(&src.join(d));
    }
    for (p, c) in [("etc/a", "alpha\n"), ("etc/b", "beta\n"), ("etc/c", "gamma\n"), ("var/old/x", "x\n"), ("var/old/y", "y\n"), ("var/keep", "keep\n"), ("opt/app/f", "app\n"), ("opt/other/g", "g\n"), ("usr/x", "x\n"), ("usr/y", "y\n")] {
        put(&src.join(p), c.as_bytes());
    }
    put(&src.join("usr/z"), &[b'z'; 1000]);
}

#[test]
fn diff_lists_exactly_the_changes_mounted_or_not() {
    let w = World::new(true, build_diff_image);
    let g = w.guest("d");
    assert_diff("fresh guest vs its image", &BTreeSet::new(), &diff_set(&g.diff_json(None)));

    let m = g.mount();
    write_at(&m.p("etc/a"), 0, b"ALPHA");
    chmod(&m.p("etc/b"), 0o600);
    rm(&m.p("etc/c"));
    put(&m.p("etc/new"), b"new\n");
    rm_rf(&m.p("var/old"));
    mv(&m.p("opt/app"), &m.p("opt/app2"));
    rm(&m.p("usr/x"));
    mkdir(&m.p("usr/x"));
    xattr_set(&m.p("usr/y"), "user.tag", b"t");
    set_len(&m.p("usr/z"), 10);
    put(&m.p("newtop"), b"top\n");
    let e1 = set(&[
        ("", "metadata"),
        ("etc", "metadata"),
        ("etc/a", "content"),
        ("etc/b", "metadata"),
        ("etc/c", "removed"),
        ("etc/new", "added"),
        ("var", "metadata"),
        ("var/old", "removed"),
        ("var/old/x", "removed"),
        ("var/old/y", "removed"),
        ("opt", "metadata"),
        ("opt/app", "removed"),
        ("opt/app/f", "removed"),
        ("opt/app2", "added"),
        ("opt/app2/f", "added"),
        ("usr", "metadata"),
        ("usr/x", "removed"),
        ("usr/x", "added"),
        ("usr/y", "metadata"),
        ("usr/z", "content"),
        ("newtop", "added"),
    ]);
    let live = g.diff_json(None);
    assert_diff("mounted guest vs its image (daemon)", &e1, &diff_set(&live));
    assert_eq!(g.diff_json(Some("img:1")), live, "diff NAME img:1 must equal diff NAME");
    let text = g.r().ok(["diff", "d"]);
    for line in ["A /newtop", "D /etc/c", "C /etc/a", "M /etc/b"] {
        assert!(text.lines().any(|l| l == line), "text diff lacks {line:?}:\n{text}");
    }
    m.umount();
    assert_eq!(g.diff_json(None), live, "unmounted diff must equal the mounted (daemon) one");

    // Against a checkpoint.
    assert_eq!(g.checkpoint("one"), 1);
    assert_diff("right after checkpoint 1, vs 1", &BTreeSet::new(), &diff_set(&g.diff_json(Some("1"))));
    assert_diff("after the checkpoint, vs image", &e1, &diff_set(&g.diff_json(None)));
    let m = g.mount();
    append(&m.p("etc/new"), b"more\n");
    rm(&m.p("opt/app2/f"));
    put(&m.p("var/n2"), b"n2\n");
    let e2 = set(&[("etc/new", "content"), ("opt/app2", "metadata"), ("opt/app2/f", "removed"), ("var", "metadata"), ("var/n2", "added")]);
    let live_cp = g.diff_json(Some("1"));
    assert_diff("mounted guest vs checkpoint 1", &e2, &diff_set(&live_cp));
    let mut e12 = e1.clone();
    e12.remove(&("opt/app2/f".to_string(), "added".to_string()));
    e12.insert(("var/n2".to_string(), "added".to_string()));
    let live_img = g.diff_json(None);
    assert_diff("mounted guest vs image after both rounds", &e12, &diff_set(&live_img));
    g.r().fails(["diff", "d", "7", "--json"], 3);
    m.umount();
    assert_eq!(g.diff_json(Some("1")), live_cp, "unmounted diff vs checkpoint 1 must equal the mounted one");
    assert_eq!(g.diff_json(None), live_img, "unmounted diff vs image must equal the mounted one");
}

// ───────────────────── 5. clones cost the shared disk nothing ─────────────────────

#[test]
fn hundred_guests_cost_nothing_shared_and_only_their_own_changes() {
    let w = World::new(true, |src| {
        mkdir(&src.join("usr/lib"));
        put(&src.join("usr/lib/big"), &pseudo_random(1, 4 << 20));
        put(&src.join("usr/lib/small"), b"small\n");
    });
    let stats0 = w.r.json(["stats", "--json"]);
    let stored = w.stored_bytes();
    let guests: Vec<Guest> = (0..100).map(|i| w.guest(&format!("clone{i:03}"))).collect();
    let stats1 = w.r.json(["stats", "--json"]);
    for k in ["object_count", "stored_bytes"] {
        assert_eq!(stats1[k], stats0[k], "creating guests must not add objects to the shared repository ({k})");
    }
    // Asserted last, so the rest is checked whatever this shows.
    let stored_after_create = w.stored_bytes();
    let listed = w.r.json(["guest", "list", "--json"]);
    assert_eq!(listed["guests"].as_array().map(Vec::len), Some(100), "guest list --json: {listed}");
    for g in &guests {
        let du = disk_usage(&g.dir);
        assert!(du < 1 << 20, "guest {} takes {du} bytes on disk right after creation", g.name);
    }
    let before: Vec<u64> = guests.iter().map(Guest::local_bytes).collect();

    // 1 MiB of unique data into 3 guests, mounted at the same time; checkpoint live.
    let busy = [7usize, 42, 99];
    {
        let mounts: Vec<Mounted> = busy.iter().map(|&i| guests[i].mount()).collect();
        for (k, m) in mounts.iter().enumerate() {
            put(&m.p("unique.bin"), &pseudo_random(5000 + k as u64, 1 << 20));
        }
        for &i in &busy {
            assert_eq!(guests[i].checkpoint("1 MiB"), 1);
        }
        for m in mounts {
            m.umount();
        }
    }
    let stats2 = w.r.json(["stats", "--json"]);
    for k in ["object_count", "stored_bytes"] {
        assert_eq!(stats2[k], stats0[k], "guests' checkpoints must not add objects to the shared repository ({k})");
    }
    let stored_after_checkpoints = w.stored_bytes();
    for (i, g) in guests.iter().enumerate() {
        let now = g.local_bytes();
        if busy.contains(&i) {
            assert!(now >= before[i] + (1 << 20), "guest {}: local_bytes {} → {now}, expected ≥ 1 MiB more", g.name, before[i]);
        } else {
            assert_eq!(now, before[i], "guest {} changed nothing but its local_bytes moved", g.name);
        }
    }
    let registry = disk_usage(&w.r.repo().join("guests"));
    assert_eq!(stored_after_create, stored, "creating 100 guests changed the shared repository's stored_bytes ({registry} bytes under REPO/guests)");
    assert_eq!(stored_after_checkpoints, stored, "guests' checkpoints changed the shared repository's stored_bytes");
}

// ───────────────────────── 6. prune, gc, verify ─────────────────────────

#[test]
fn prune_keeps_the_newest_and_gc_keeps_what_guests_use() {
    const BLOB: usize = 256 << 10;
    let w = World::new(true, |src| {
        mkdir(&src.join("etc"));
        put(&src.join("etc/os-release"), b"NAME=golden\n");
        put(&src.join("lib.so"), &pseudo_random(3, 400_000));
    });
    // img:2 holds a payload the guest will copy; img:3 is unique and unused.
    let payload = pseudo_random(77, 300_000);
    let src2 = w.r.scratch("src2");
    mkdir(&src2);
    put(&src2.join("payload"), &payload);
    w.r.import(&src2, "img:2");
    let src3 = w.r.scratch("src3");
    mkdir(&src3);
    put(&src3.join("unused"), &pseudo_random(88, 600_000));
    w.r.import(&src3, "img:3");

    let g = w.guest("p");
    let mut states = Vec::new();
    for i in 1..=5u64 {
        let m = g.mount();
        if i > 1 {
            rm(&m.p("blob"));
        }
        put(&m.p("blob"), &pseudo_random(1000 + i, BLOB));
        put(&m.p("state"), format!("{i}\n").as_bytes());
        append(&m.p("etc/os-release"), format!("CP={i}\n").as_bytes());
        if i == 2 {
            put(&m.p("copied"), &payload);
        }
        states.push(m.manifest());
        if i % 2 == 1 {
            assert_eq!(g.checkpoint(&format!("cp {i}")), i);
            m.umount();
        } else {
            m.umount();
            let l0 = g.local_bytes();
            assert_eq!(g.checkpoint(&format!("cp {i}")), i);
            if i == 2 {
                let grew = g.local_bytes() - l0;
                assert!(grew >= BLOB as u64, "checkpoint 2 stored {grew} bytes, less than its unique blob");
                assert!(grew < (BLOB + 200_000) as u64, "checkpoint 2 stored {grew} bytes: the copy of img:2's payload must come from the shared repository");
            }
        }
    }
    assert_eq!(g.checkpoints(), vec![1, 2, 3, 4, 5]);
    let local_before = g.local_bytes();
    g.r().ok(["checkpoint", "prune", "p", "--keep", "2"]);
    assert_eq!(g.checkpoints(), vec![4, 5], "prune --keep 2");
    let local_after = g.local_bytes();
    assert!(local_after + 2 * BLOB as u64 <= local_before, "prune must reclaim the blobs only checkpoints 1-3 used: {local_before} → {local_after}");
    for gone in [1, 2, 3] {
        g.r().fails(["rollback", "p", &gone.to_string()], 3);
    }
    g.rollback(4);
    let m = g.mount();
    assert_same("rollback to kept checkpoint 4", &states[3], &m.manifest());
    m.umount();

    // Delete every image, the guest's own included (forced: delete refuses
    // an image a guest stands on): gc must keep all the guest uses.
    let stored = w.stored_bytes();
    w.r.fails(["delete", "img:1"], 6);
    for img in ["img:1", "img:2", "img:3"] {
        w.r.ok(["delete", img, "--force"]);
    }
    w.r.ok(["gc"]);
    let after_gc = w.stored_bytes();
    assert!(after_gc + 500_000 <= stored, "gc should reclaim img:3's 600 kB: {stored} → {after_gc}");
    w.r.ok(["verify"]);
    let m = g.mount();
    assert_same("guest at checkpoint 4 after gc", &states[3], &m.manifest());
    assert_eq!(fs::read(m.p("copied")).expect("read copied"), payload);
    m.umount();
    g.rollback(5);
    let m = g.mount();
    assert_same("rollback to checkpoint 5 after gc", &states[4], &m.manifest());
    m.umount();
    w.r.ok(["verify"]);
    // A second gc keeps everything too.
    w.r.ok(["gc"]);
    let m = g.mount();
    assert_same("guest after a second gc", &states[4], &m.manifest());
    m.umount();
}

// ─────────────────────────── 7. guest rm ───────────────────────────

#[test]
fn a_mounted_guest_cannot_be_removed() {
    let w = World::new(true, |src| put(&src.join("file"), b"f\n"));
    let g = w.guest("victim");
    let other = w.guest("bystander");
    let m = g.mount();
    put(&m.p("mine"), b"mine\n");
    g.r().fails(["guest", "rm", "victim"], 6);
    g.r().fails(["checkpoint", "prune", "victim", "--keep", "0"], 6);
    // A second mount of the same guest is refused; the first keeps working.
    let mp2 = w.r.scratch("mnt/victim-2");
    mkdir(&mp2);
    let out = g.r().run([os("mount"), os("--guest"), os("victim"), mp2.as_os_str()]);
    if out.status.success() {
        lazy_umount(&mp2);
        panic!("{}", report("a second mount of a mounted guest must be refused", &out));
    }
    assert!(!is_mounted(&mp2));
    assert_eq!(fs::read(m.p("mine")).expect("the guest still works"), b"mine\n");
    let list = w.r.json(["guest", "list", "--json"]);
    let row = list["guests"].as_array().and_then(|a| a.iter().find(|g| g["name"] == "victim")).cloned().unwrap_or_else(|| panic!("victim not listed: {list}"));
    assert_eq!(row["mounted"], Value::Bool(true), "{row}");
    m.umount();

    g.r().ok(["guest", "rm", "victim"]);
    let list = w.r.json(["guest", "list", "--json"]);
    let names: Vec<&str> = list["guests"].as_array().expect("array").iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, vec!["bystander"], "guest list after rm");
    assert!(!g.dir.exists(), "guest dir {} left behind", g.dir.display());
    g.r().fails(["guest", "show", "victim"], 3);
    g.r().fails(["mount", "--guest", "victim", g.mp.to_str().expect("utf-8")], 3);
    g.r().fails(["guest", "rm", "victim"], 3);
    // The name can be reused, and the other guest is untouched.
    let again = w.guest("victim");
    let m = again.mount();
    assert!(!m.p("mine").exists(), "a new guest of a reused name must start clean");
    m.umount();
    let m = other.mount();
    assert_eq!(fs::read(m.p("file")).expect("read"), b"f\n");
    m.umount();
}

// ───────────────────────── personalisation ─────────────────────────

#[test]
fn create_personalises_the_guest() {
    let w = World::new(true, |src| {
        mkdir(&src.join("etc"));
        put(&src.join("etc/hostname"), b"golden\n");
    });
    let values = w.r.scratch("values.conf");
    put(&values, b"# site defaults\nip=10.0.0.5\n\nhostname=from-values\n");
    let motd = w.r.scratch("motd");
    put(&motd, b"managed by lvrepo\n");
    chmod(&motd, 0o640);
    let file_arg: OsString = format!("/etc/motd={}", motd.display()).into();
    let g = w.guest_with("web01", &[os("--values"), values.as_os_str(), os("--set"), os("hostname=web01"), os("--set"), os("role=db"), os("--file"), &file_arg]);
    let m = g.mount();
    assert_eq!(fs::read(m.p("etc/hostname")).expect("hostname"), b"web01\n", "--set overrides --values");
    let conf = fs::read_to_string(m.p("etc/lvrepo/guest.conf")).expect("guest.conf");
    assert_eq!(conf, "ip=10.0.0.5\nhostname=from-values\nhostname=web01\nrole=db\n");
    assert_eq!(fs::metadata(m.p("etc/lvrepo/guest.conf")).expect("stat").mode() & 0o7777, 0o600);
    assert_eq!(fs::read(m.p("etc/motd")).expect("motd"), b"managed by lvrepo\n");
    assert_eq!(fs::metadata(m.p("etc/motd")).expect("stat").mode() & 0o7777, 0o640);
    m.umount();
    let d = diff_set(&g.diff_json(None));
    for want in [("etc/hostname", "content"), ("etc/lvrepo", "added"), ("etc/lvrepo/guest.conf", "added"), ("etc/motd", "added")] {
        assert!(d.contains(&(want.0.to_string(), want.1.to_string())), "diff lacks {want:?}: {d:?}");
    }
    // The image itself is untouched.
    assert_eq!(w.r.ok(["cat", "img:1:/etc/hostname"]), "golden\n");
    // Bad input creates nothing.
    let out = w.r.run(["guest", "create", "bad", "--image", "img:1", "--overlay", w.r.scratch("guests/bad").to_str().expect("utf-8"), "--set", "no-equals"]);
    assert!(!out.status.success(), "{}", report("guest create with a bad --set must fail", &out));
    assert!(w.r.json(["guest", "list", "--json"])["guests"].as_array().expect("array").iter().all(|g| g["name"] != "bad"));
}

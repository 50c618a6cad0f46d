//! Guest management from the command line: names (validated, never a
//! command's), rename, clone from a checkpoint, deleting one checkpoint,
//! comparing two guests, and the JSON of rollback and prune.

use super::*;

fn small(src: &Path) {
    mkdir(&src.join("etc"));
    put(&src.join("etc/a"), b"alpha\n");
    put(&src.join("etc/b"), b"beta\n");
}

#[test]
fn guest_names_are_validated_and_never_a_command() {
    let w = World::new(false, small);
    let dir = w.r.scratch("guests").join("x");
    for (name, why) in [("a/b", "contains '/'"), ("-x", "starts with '-'"), (".x", "starts with '.'"), ("a b", "a character other than"), ("", "empty")] {
        let err = w.r.fails(["guest", "create", "--image", "img:1", "--overlay", dir.to_str().unwrap(), "--", name], 2);
        assert!(err.contains("invalid guest name") && err.contains(why), "{name:?}: {err}");
        assert!(!err.contains("image name"), "{name:?}: a guest name is reported as an image name: {err}");
    }
    let long = "a".repeat(129);
    let err = w.r.fails(["guest", "create", &long, "--image", "img:1", "--overlay", dir.to_str().unwrap()], 2);
    assert!(err.contains("longer than 128"), "{err}");
    for name in ["prune", "help", "create", "checkpoint", "delete", "list"] {
        let err = w.r.fails(["guest", "create", name, "--image", "img:1", "--overlay", dir.to_str().unwrap()], 2);
        assert!(err.contains("name of an lvrepo command"), "{name}: {err}");
    }
    assert!(!dir.exists(), "a refused create left {}", dir.display());
    assert_eq!(w.r.json(["guest", "list", "--json"])["guests"], serde_json::json!([]));
    // A name of 128 characters is fine.
    w.r.ok(["guest", "create", &"a".repeat(128), "--image", "img:1", "--overlay", dir.to_str().unwrap()]);
}

#[test]
fn rename_keeps_state_and_is_refused_while_mounted() {
    let w = World::new(false, small);
    let g = w.guest("old");
    {
        let m = g.mount();
        put(&m.p("etc/new"), b"new\n");
        let err = w.r.fails(["guest", "rename", "old", "new"], 6);
        assert!(err.contains("mounted"), "{err}");
        m.umount();
    }
    let cp = g.checkpoint("one");
    w.guest("other");
    let err = w.r.fails(["guest", "rename", "old", "other"], 5);
    assert!(err.contains("already exists"), "{err}");
    w.r.fails(["guest", "rename", "old", "prune"], 2);
    w.r.fails(["guest", "rename", "nosuch", "x"], 3);
    w.r.ok(["guest", "rename", "old", "new"]);
    w.r.fails(["guest", "show", "old"], 3);
    let v = w.r.json(["guest", "show", "new", "--json"]);
    assert_eq!(v["guest"]["name"], "new", "{v}");
    let log = w.r.json(["log", "new", "--json"]);
    assert_eq!(log["checkpoints"].as_array().map(Vec::len), Some(1), "{log}");
    assert_eq!(log["checkpoints"][0]["number"].as_u64(), Some(cp));
    let names: Vec<String> = w.r.json(["guest", "list", "--json"])["guests"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["new", "other"]);
    // Its content came along, and it mounts under its new name.
    let renamed = Guest { w: &w, name: "new".into(), dir: g.dir.clone(), mp: g.mp.clone() };
    let m = renamed.mount();
    assert_eq!(fs::read(m.p("etc/new")).unwrap(), b"new\n");
    m.umount();
}

#[test]
fn clone_from_a_checkpoint_shares_and_is_independent() {
    let w = World::new(false, |src| {
        small(src);
        put(&src.join("big"), &pseudo_random(7, 4 << 20));
    });
    let g = w.guest("src");
    let m = g.mount();
    put(&m.p("etc/mine"), &pseudo_random(9, 2 << 20));
    let one = g.checkpoint("one");
    let at_one = m.manifest();
    put(&m.p("etc/later"), b"after checkpoint 1\n");
    m.umount();
    let before = w.stored_bytes();
    let dir = w.r.scratch("guests").join("c1");
    let v = w.r.json(["guest", "clone", &format!("src:{one}"), "c1", "--overlay", dir.to_str().unwrap(), "--json"]);
    assert_eq!((v["source"]["guest"]["name"].as_str(), v["source"]["checkpoint"]["number"].as_u64()), (Some("src"), Some(one)), "{v}");
    // The image's bytes are shared: the shared repository did not grow.
    assert_eq!(w.stored_bytes(), before);
    let c = Guest { w: &w, name: "c1".into(), dir: dir.clone(), mp: w.r.scratch("mnt").join("c1") };
    fs::create_dir_all(&c.mp).unwrap();
    // The clone holds the source's own bytes (2 MiB of etc/mine), not the image's (4 MiB).
    let local = c.local_bytes();
    assert!(local > 1 << 20 && local < 4 << 20, "clone local bytes {local}");
    let mc = c.mount();
    assert_same("clone of checkpoint 1", &at_one, &mc.manifest());
    put(&mc.p("etc/a"), b"changed in the clone\n");
    mc.umount();
    // Independent: the source does not see it, and survives the clone's removal.
    w.r.ok(["guest", "rm", "c1"]);
    w.r.ok(["gc"]);
    let ms = g.mount();
    assert_eq!(fs::read(ms.p("etc/a")).unwrap(), b"alpha\n");
    assert_eq!(fs::read(ms.p("etc/later")).unwrap(), b"after checkpoint 1\n");
    // Without a checkpoint: the source, mounted, is checkpointed first.
    let dir2 = w.r.scratch("guests").join("c2");
    w.r.ok(["guest", "clone", "src", "c2", "--overlay", dir2.to_str().unwrap()]);
    assert_eq!(g.checkpoints().len(), 2);
    ms.umount();
    let c2 = Guest { w: &w, name: "c2".into(), dir: dir2, mp: w.r.scratch("mnt").join("c2") };
    fs::create_dir_all(&c2.mp).unwrap();
    let m2 = c2.mount();
    assert_eq!(fs::read(m2.p("etc/later")).unwrap(), b"after checkpoint 1\n");
    m2.umount();
    w.r.ok(["verify"]);
    // Refusals: a used name, a reserved name, no such checkpoint.
    w.r.fails(["guest", "clone", "src:1", "c2"], 5);
    w.r.fails(["guest", "clone", "src:1", "prune"], 2);
    w.r.fails(["guest", "clone", "src:99", "c3", "--overlay", w.r.scratch("guests").join("c3").to_str().unwrap()], 3);
}

#[test]
fn delete_one_checkpoint() {
    let w = World::new(false, small);
    let g = w.guest("g");
    let m = g.mount();
    put(&m.p("one"), &pseudo_random(1, 1 << 20));
    let c1 = g.checkpoint("1");
    rm(&m.p("one"));
    put(&m.p("two"), &pseudo_random(2, 1 << 20));
    let c2 = g.checkpoint("2");
    put(&m.p("three"), b"3\n");
    let c3 = g.checkpoint("3");
    // Mounted: the guest is busy.
    let err = w.r.fails(["checkpoint", "delete", "g", &c1.to_string()], 6);
    assert!(err.contains("busy"), "{err}");
    m.umount();
    // The newest is refused.
    let err = w.r.fails(["checkpoint", "delete", "g", &c3.to_string()], 6);
    assert!(err.contains("newest"), "{err}");
    w.r.fails(["checkpoint", "delete", "g", "42"], 3);
    let before = g.local_bytes();
    let v = w.r.json(["checkpoint", "delete", "g", &c1.to_string(), "--json"]);
    assert_eq!((v["guest"]["name"].as_str(), numbers(&v["deleted"]), numbers(&v["kept"])), (Some("g"), vec![c1], vec![c2, c3]), "{v}");
    assert_eq!(g.checkpoints(), vec![c2, c3]);
    // checkpoint 1's own megabyte is reclaimed.
    let after = g.local_bytes();
    assert!(before - after > 900_000, "local bytes {before} -> {after}");
    // Roll back to 2, then delete 2: the state sits on it and stays whole.
    g.rollback(c2);
    let out = w.r.run(["checkpoint", "delete", "g", &c2.to_string()]);
    assert!(out.status.success(), "{}", report("checkpoint delete", &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("state sits on it"), "{}", report("checkpoint delete", &out));
    w.r.ok(["gc"]);
    w.r.ok(["verify"]);
    let m = g.mount();
    assert_eq!(fs::read(m.p("two")).unwrap(), pseudo_random(2, 1 << 20));
    assert!(!m.p("three").exists());
    m.umount();
    assert_eq!(g.checkpoints(), vec![c3]);
}

#[test]
fn diff_guest_against_guest_and_stat() {
    let w = World::new(false, small);
    let a = w.guest("a");
    let b = w.guest("b");
    let m = a.mount();
    put(&m.p("etc/a"), b"ALPHA\n");
    put(&m.p("etc/new"), b"new\n");
    m.umount();
    let m = b.mount();
    rm(&m.p("etc/b"));
    m.umount();
    // What a changed against b (a guest name is taken before an image name).
    let v = w.r.json(["diff", "a", "b", "--json"]);
    assert_diff("diff a b", &set(&[("etc", "metadata"), ("etc/a", "content"), ("etc/new", "added"), ("etc/b", "added")]), &diff_set(&v));
    let st = w.r.json(["diff", "a", "b", "--stat", "--json"]);
    assert_eq!(st, serde_json::json!({ "schema": "lvrepo/1", "command": "diff", "added_count": 2, "removed_count": 0, "content_count": 1, "metadata_count": 1 }));
    let text = w.r.ok(["diff", "a", "--stat"]);
    assert_eq!(text.trim(), "1 added, 0 removed, 1 changed in content, 1 in metadata only");
    let m = b.mount();
    let err = w.r.fails(["diff", "a", "b"], 6);
    assert!(err.contains("guest b is mounted"), "{err}");
    m.umount();
}

#[test]
fn rollback_and_prune_report_json() {
    let w = World::new(false, small);
    let g = w.guest("g");
    let c1 = g.checkpoint("1");
    let c2 = g.checkpoint("2");
    let v = w.r.json(["rollback", "g", &c1.to_string(), "--json"]);
    assert_eq!((v["guest"]["name"].as_str(), v["checkpoint"]["number"].as_u64(), v["guest"]["mounted"].as_bool()), (Some("g"), Some(c1), Some(false)), "{v}");
    assert!(v["checkpoint"]["id"].as_str().is_some_and(|r| r.starts_with("b3:")), "{v}");
    let v = w.r.json(["checkpoint", "prune", "g", "--keep", "1", "--json"]);
    assert_eq!((v["guest"]["name"].as_str(), numbers(&v["deleted"]), numbers(&v["kept"])), (Some("g"), vec![c1], vec![c2]), "{v}");
}

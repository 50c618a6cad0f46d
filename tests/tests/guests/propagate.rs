//! `propagate`: chosen paths' state (a file's bytes and metadata, a
//! directory subtree, a symlink, a deletion) copied from a source guest to
//! other guests; a target with its own version of a path is a conflict,
//! which without --prefer changes no target (exit 7, every conflict listed);
//! --group, a checkpoint as the source, and --dry-run.

use super::*;
use std::os::unix::ffi::OsStrExt;

fn build_image(src: &Path) {
    for d in ["etc", "var", "opt", "usr"] {
        mkdir(&src.join(d));
    }
    for (p, c) in [("etc/a", "alpha\n"), ("etc/b", "beta\n"), ("var/keep", "keep\n"), ("usr/x", "x\n")] {
        put(&src.join(p), c.as_bytes());
    }
    put(&src.join(OsStr::from_bytes(b"etc/bin\xff")), b"binary name\n");
}

/// The source's changes on the chosen paths: a file rewritten (bytes, mode,
/// xattr, mtime), a new subtree with a symlink, a deletion, a new file whose
/// parents the image lacks; and one change outside the chosen paths.
fn source_changes(root: &Path) {
    put(&root.join("etc/a"), b"alpha from the source\n");
    chmod(&root.join("etc/a"), 0o640);
    xattr_set(&root.join("etc/a"), "user.origin", b"source");
    mkdir(&root.join("opt/app"));
    put(&root.join("opt/app/conf"), b"conf\n");
    symlink("../../etc/a", &root.join("opt/app/link"));
    rm(&root.join("var/keep"));
    mkdir(&root.join("srv"));
    mkdir(&root.join("srv/www"));
    put(&root.join("srv/www/index.html"), b"<p>hello</p>\n");
    put(&root.join("usr/x"), b"not propagated\n");
    for (i, p) in ["etc/a", "opt/app/conf", "opt/app/link", "opt/app", "srv/www/index.html", "srv/www", "srv"].iter().enumerate() {
        mtime(&root.join(p), 1_900_000_000 + i as i64, 11);
    }
}

const CHOSEN: [&str; 4] = ["/etc/a", "/opt/app", "/var/keep", "/srv/www/index.html"];

fn propagate_args<'a>(from: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["propagate", "--from", from, "--path"];
    a.extend(CHOSEN);
    a.extend(extra);
    a
}

/// What a target must look like: `before` with every chosen path (and what
/// is below it) as in `source`, and parents it lacked as the source's.
fn expected(before: &Manifest, source: &Manifest) -> Manifest {
    let mut want = before.clone();
    let under = |p: &[u8], c: &[u8]| p == c || (p.starts_with(c) && p.get(c.len()) == Some(&b'/'));
    for c in CHOSEN.map(|c| c[1..].as_bytes()) {
        want.entries.retain(|p, _| !under(p, c));
        for (p, e) in source.entries.iter().filter(|(p, _)| under(p, c)) {
            want.entries.insert(p.clone(), e.clone());
        }
        let mut parent = c;
        while let Some(i) = parent.iter().rposition(|&b| b == b'/') {
            parent = &parent[..i];
            if !want.entries.contains_key(parent) {
                want.entries.insert(parent.to_vec(), source.get(parent).expect("source has the parent").clone());
            }
        }
    }
    want
}

use super::fleet::mounted_manifest as guest_manifest;

/// What a refused or planned propagation must leave as it was: STATE and
/// the checkpoints.
fn state(g: &Guest) -> (Vec<u8>, Value) {
    (fs::read(g.dir.join("STATE")).expect("read STATE"), g.r().json(["log", &g.name, "--json"]))
}

#[test]
fn propagated_paths_equal_the_source_on_each_target_and_a_deletion_propagates() {
    let w = World::new(true, build_image);
    let s = w.guest("src");
    let m = s.mount();
    source_changes(&m.p(""));
    let source = m.manifest();
    m.umount();
    let (t1, t2) = (w.guest("t1"), w.guest("t2"));
    // t2 has a change of its own elsewhere: it stays.
    let m = t2.mount();
    put(&m.p("etc/b"), b"t2's beta\n");
    mtime(&m.p("etc/b"), 1_800_000_000, 3);
    m.umount();
    let before = [guest_manifest(&t1), guest_manifest(&t2)];

    w.r.ok(propagate_args("src", &["--to", "t1", "t2"]));
    for (t, before) in [&t1, &t2].into_iter().zip(&before) {
        let got = guest_manifest(t);
        assert_same(&format!("target {} after propagate", t.name), &expected(before, &source), &got);
        assert!(got.get("var/keep").is_none(), "the deletion did not reach {}", t.name);
        assert_eq!(got.get("etc/a"), source.get("etc/a"), "etc/a's bytes and metadata on {}", t.name);
        assert_eq!(got.get("usr/x"), before.get("usr/x"), "a path not chosen was copied to {}", t.name);
        assert_eq!(t.checkpoints(), vec![1], "the target is checkpointed before (a rollback target)");
    }
    assert_eq!(guest_manifest(&t2).get("etc/b").map(|e| e.mtime_sec), Some(1_800_000_000), "t2's own change was lost");
    assert_same("the source after propagating from it", &source, &guest_manifest(&s));
    // Again: every target already has the source's versions; no conflict.
    w.r.ok(propagate_args("src", &["--to", "t1", "t2"]));
    assert_same("t1 after a second propagate", &expected(&before[0], &source), &guest_manifest(&t1));

    // Rolling back to the checkpoint taken before undoes it.
    t1.rollback(1);
    assert_same("t1 rolled back", &before[0], &guest_manifest(&t1));

    // Usage and lookup errors change nothing.
    w.r.fails(["propagate", "--from", "src", "--path", "etc/a", "--to", "t1"], 2);
    w.r.fails(["propagate", "--from", "src", "--path", "/etc/../a", "--to", "t1"], 2);
    w.r.fails(["propagate", "--from", "src", "--path", "/etc/a", "--to", "src"], 2);
    w.r.fails(["propagate", "--from", "src", "--path", "/nowhere", "--to", "t1"], 3);
    w.r.fails(["propagate", "--from", "src:7", "--path", "/etc/a", "--to", "t1"], 3);
    w.r.fails(["propagate", "--from", "src", "--path", "/etc/a", "--to", "nosuch"], 3);
    assert_same("t1 after refused propagations", &before[0], &guest_manifest(&t1));
}

#[test]
fn a_conflict_lists_every_guest_and_path_and_changes_no_target() {
    let w = World::new(true, build_image);
    let s = w.guest("src");
    let m = s.mount();
    source_changes(&m.p(""));
    put(&m.p("etc/b"), b"beta from the source\n");
    fs::write(m.p("etc").join(OsStr::from_bytes(b"bin\xff")), b"source's\n").expect("write bin\\xff");
    let source = m.manifest();
    m.umount();
    let (t1, t2, t3) = (w.guest("t1"), w.guest("t2"), w.guest("t3"));
    // t1 has its own etc/b and etc/bin\xff, t2 its own etc/a; t3 none.
    let m = t1.mount();
    put(&m.p("etc/b"), b"t1's beta\n");
    fs::write(m.p("etc").join(OsStr::from_bytes(b"bin\xff")), b"t1's\n").expect("write bin\\xff");
    m.umount();
    let m = t2.mount();
    put(&m.p("etc/a"), b"t2's alpha\n");
    m.umount();
    let targets = [&t1, &t2, &t3];
    let before: Vec<(Manifest, (Vec<u8>, Value))> = targets.iter().map(|t| (guest_manifest(t), state(t))).collect();
    let args = |extra: &[&'static str]| {
        let mut a: Vec<OsString> = ["propagate", "--from", "src", "--to", "t1", "t2", "t3", "--path", "/etc/a", "/etc/b"].map(OsString::from).to_vec();
        a.push(OsStr::from_bytes(b"/etc/bin\xff").to_os_string());
        a.extend(extra.iter().map(OsString::from));
        a
    };
    for extra in [&[][..], &["--dry-run"]] {
        let out = w.r.run(args(extra));
        assert_eq!(out.status.code(), Some(7), "{}", report("conflicting propagate", &out));
        let listed: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(listed, vec![b"t1 /etc/b".as_slice(), b"t1 /etc/bin\\xff", b"t2 /etc/a"], "{}", report("conflicting propagate", &out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no guest was changed"), "{}", report("conflicting propagate", &out));
        for (t, (man, st)) in targets.iter().zip(&before) {
            assert_eq!(&state(t), st, "a refused propagate changed {}'s STATE or checkpoints", t.name);
            assert_same(&format!("{} after a refused propagate", t.name), man, &guest_manifest(t));
        }
    }
    // A mounted target: exit 6, nothing changed.
    let m = t3.mount();
    w.r.fails(args(&["--prefer", "guest"]), 6);
    m.umount();
    assert_eq!(state(&t3), before[2].1, "a refused propagate changed t3");

    // --prefer guest keeps each target's own versions, --prefer source takes the source's.
    w.r.ok(args(&["--prefer", "guest"]));
    let got = guest_manifest(&t1);
    assert_eq!(got.get("etc/b"), before[0].0.get("etc/b"), "t1 kept its etc/b");
    assert_eq!(got.get("etc/a"), source.get("etc/a"), "t1 took the source's etc/a");
    assert_eq!(guest_manifest(&t2).get("etc/a"), before[1].0.get("etc/a"), "t2 kept its etc/a");
    assert_eq!(guest_manifest(&t3).get("etc/b"), source.get("etc/b"));
    w.r.ok(args(&["--prefer", "source"]));
    for t in targets {
        let got = guest_manifest(t);
        for p in ["etc/a".as_bytes(), b"etc/b", b"etc/bin\xff"] {
            assert_eq!(got.get(p), source.get(p), "{}: {} after --prefer source", t.name, String::from_utf8_lossy(p));
        }
    }
}

#[test]
fn group_checkpoint_source_and_dry_run() {
    let w = World::new(true, build_image);
    let s = w.guest("src");
    let m = s.mount();
    put(&m.p("etc/a"), b"alpha at checkpoint 1\n");
    mtime(&m.p("etc/a"), 1_900_000_000, 1);
    let at_one = m.manifest();
    assert_eq!(s.checkpoint("one"), 1);
    // Changed again after the checkpoint: the checkpoint's version goes.
    put(&m.p("etc/a"), b"alpha later\n");
    m.umount();
    let (t1, t2) = (w.guest("t1"), w.guest("t2"));
    w.r.ok(["group", "create", "web", "src", "t1", "t2"]);
    let before: Vec<(Manifest, (Vec<u8>, Value))> = [&t1, &t2].iter().map(|t| (guest_manifest(t), state(t))).collect();
    let src_state = state(&s);

    let plan = w.r.json(["propagate", "--from", "src:1", "--path", "/etc/a", "--group", "web", "--dry-run", "--json"]);
    let names: Vec<&str> = plan["propagations"].as_array().map(|a| a.iter().filter_map(|r| r["guest"]["name"].as_str()).collect()).unwrap_or_default();
    assert_eq!(names, vec!["t1", "t2"], "the group's members but the source: {plan}");
    for (t, (man, st)) in [&t1, &t2].iter().zip(&before) {
        assert_eq!(&state(t), st, "--dry-run changed {}'s STATE or checkpoints", t.name);
        assert_same(&format!("{} after --dry-run", t.name), man, &guest_manifest(t));
    }

    w.r.ok(["propagate", "--from", "src:1", "--path", "/etc/a", "--group", "web"]);
    for t in [&t1, &t2] {
        assert_eq!(guest_manifest(t).get("etc/a"), at_one.get("etc/a"), "{} has checkpoint 1's etc/a", t.name);
    }
    assert_eq!(state(&s), src_state, "the source changed");
    let audit = w.r.ok(["audit"]);
    assert!(audit.contains("propagate") && audit.contains("src:1 group web"), "no audit entry for propagate:\n{audit}");
    // A mounted source: its current state, checkpointed through the daemon.
    let m = s.mount();
    w.r.ok(["propagate", "--from", "src", "--path", "/etc/a", "--to", "t1", "--prefer", "source"]);
    m.umount();
    assert_eq!(s.checkpoints(), vec![1, 2], "the mounted source was checkpointed");
    let m = t1.mount();
    assert_eq!(fs::read(m.p("etc/a")).expect("read etc/a"), b"alpha later\n");
    m.umount();
}

//! The command-line contract: exit codes, JSON output, image naming.

use std::process::Command;

use lvrepo_tests::{changes, lvrepo_bin, report, require_root, Lvrepo};

fn two_versions() -> Lvrepo {
    require_root();
    let r = Lvrepo::init();
    let src = r.scratch("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/file"), b"version one\n").unwrap();
    std::fs::write(src.join("keep"), b"kept\n").unwrap();
    r.ok(["import".as_ref(), src.as_os_str(), "--image".as_ref(), "app".as_ref(), "-m".as_ref(), "first".as_ref()]);
    std::fs::write(src.join("dir/file"), b"version two!\n").unwrap();
    std::fs::write(src.join("added"), b"new\n").unwrap();
    r.ok(["import".as_ref(), src.as_os_str(), "--image".as_ref(), "app".as_ref(), "-m".as_ref(), "second".as_ref()]);
    r
}

#[test]
fn help_and_usage_errors() {
    let out = Command::new(lvrepo_bin()).arg("--help").output().unwrap();
    assert!(out.status.success(), "{}", report("lvrepo --help", &out));
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["init", "import", "images", "ls", "cat", "export", "diff", "verify", "gc", "stats"] {
        assert!(help.contains(cmd), "--help does not mention {cmd}:\n{help}");
    }
    let r = Lvrepo::at("/nonexistent-lvrepo-test");
    r.fails(["no-such-command"], 2);
    r.fails(["import"], 2);
}

#[test]
fn images_json_lists_versions_with_all_fields() {
    let r = two_versions();
    let v = r.json(["images", "--json"]);
    let arr = v["images"].as_array().expect("array");
    assert_eq!(arr.len(), 2, "{v}");
    for key in ["name", "version", "label", "id", "parent", "created", "message", "entry_count", "logical_bytes"] {
        for i in arr {
            assert!(i.get(key).is_some(), "images --json entry lacks {key}: {i}");
        }
    }
    let mut names = r.image_names();
    names.sort();
    assert_eq!(names, ["app:1", "app:2"]);
    let v2 = arr.iter().find(|i| i["version"] == 2 || i["version"] == "2").unwrap();
    let v1 = arr.iter().find(|i| i["version"] == 1 || i["version"] == "1").unwrap();
    assert_eq!(v2["message"], "second");
    assert_eq!(v1["message"], "first");
    assert_ne!(v1["id"], v2["id"], "different content, different root");
    assert!(v1["parent"].is_null(), "first version has no parent: {v1}");
    // A parent is recorded only when asked for; if present it must name v1.
    let p = v2["parent"].to_string();
    assert!(v2["parent"].is_null() || p.contains("app:1") || v2["parent"] == v1["id"], "{v2}");
    assert!(v2["entry_count"].as_u64().unwrap() >= 3, "{v2}");
    assert_eq!(v1["logical_bytes"].as_u64(), Some(12 + 5), "{v1}");
}

#[test]
fn cat_ls_and_latest_resolution() {
    let r = two_versions();
    assert_eq!(r.ok(["cat", "app:1:dir/file"]), "version one\n");
    assert_eq!(r.ok(["cat", "app:2:dir/file"]), "version two!\n");
    assert_eq!(r.ok(["cat", "app:dir/file"]), "version two!\n", "NAME alone = latest");
    r.fails(["cat", "app:1:no/such/file"], 3);
    r.fails(["cat", "app:1:added"], 3);
    r.fails(["cat", "nosuchimage:1:keep"], 3);
    r.fails(["cat", "app:9:keep"], 3);

    let ls = r.ok(["ls", "app:2"]);
    for n in ["dir", "keep", "added"] {
        assert!(ls.contains(n), "ls app:2 lacks {n}:\n{ls}");
    }
    let j = r.json(["ls", "app:2:dir", "--json"]);
    let paths: Vec<_> = j["entries"].as_array().expect("entries").iter().map(|e| e["path"].as_str().expect("path")).collect();
    assert_eq!(paths, ["dir/file"], "ls --json of dir: {j}");
    assert!(!r.json(["ls", "app:1", "--json"])["entries"].to_string().contains("added"));
    r.fails(["ls", "app:1:nope"], 3);
}

#[test]
fn existing_version_is_refused_and_repo_unchanged() {
    let r = two_versions();
    let src = r.scratch("src");
    r.fails(["import".as_ref(), src.as_os_str(), "--image".as_ref(), "app:2".as_ref()], 5);
    r.fails(["import".as_ref(), src.as_os_str(), "--image".as_ref(), "app:1".as_ref()], 5);
    assert_eq!(r.ok(["cat", "app:1:dir/file"]), "version one\n");
    assert_eq!(r.image_names().len(), 2);
    r.import(&src, "app:10");
    r.import(&src, "app");
    let mut n = r.image_names();
    n.sort();
    assert_eq!(n, ["app:1", "app:10", "app:11", "app:2"], "no VERSION → after the highest");
}

#[test]
fn diff_text_and_json() {
    let r = two_versions();
    let want = changes(&[("added", "added"), ("dir/file", "content")]);
    let got = r.diff_set("app:1", "app:2");
    // Adding a file changes the root dir's mtime: that is reported as metadata.
    let root_meta = changes(&[("", "metadata")]);
    let got_wo_root: std::collections::BTreeSet<_> = got.difference(&root_meta).cloned().collect();
    assert_eq!(got_wo_root, want, "full diff: {got:?}");
    let text = r.ok(["diff", "app:1", "app:2"]);
    assert!(text.lines().any(|l| l.starts_with("A ") && l.ends_with("added")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("C ") && l.ends_with("dir/file")), "{text}");
    assert!(r.diff_set("app:2", "app:2").is_empty());
    assert_eq!(r.ok(["diff", "app:1", "app:1"]).trim(), "");
    let back = r.diff_set("app:2", "app:1");
    assert!(back.contains(&("added".into(), "removed".into())), "{back:?}");
    r.fails(["diff", "app:1", "nope:1"], 3);
}

#[test]
fn metadata_only_change_is_m() {
    require_root();
    let r = Lvrepo::init();
    let src = r.scratch("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"same").unwrap();
    r.import(&src, "m:1");
    lvrepo_tests::fixture::lchown(&src.join("f"), 1234, 1234).unwrap();
    r.import(&src, "m:2");
    assert_eq!(r.diff_set("m:1", "m:2"), changes(&[("f", "metadata")]));
    let text = r.ok(["diff", "m:1", "m:2"]);
    assert_eq!(text.trim().replace(" /", " "), "M f");
}

#[test]
fn json_outputs_parse() {
    let r = two_versions();
    let s = r.json(["stats", "--json"]);
    for k in ["logical_bytes", "disk_bytes", "stored_bytes", "dedup_ratio", "object_count", "image_usage", "guest_usage"] {
        assert!(s.get(k).is_some(), "stats --json lacks {k}: {s}");
    }
    let imgs = s["image_usage"].as_array().expect("stats image_usage array");
    assert_eq!(imgs.len(), 2, "{s}");
    for i in imgs {
        assert!(i["unique_bytes"].is_u64() && i["image"]["logical_bytes"].is_u64(), "stats image_usage row: {i}");
    }
    r.json(["verify", "--json"]);
    r.json(["gc", "--json"]);
    r.json(["diff", "app:1", "app:2", "--json"]);
    r.ok(["stats"]);
    r.ok(["gc"]);
    r.ok(["verify"]);
}

#[test]
fn init_refuses_non_empty_dir_and_env_repo_works() {
    require_root();
    let r = two_versions();
    let out = r.run(["init"]);
    assert_ne!(out.status.code(), Some(0), "{}", report("init over an existing repo", &out));
    assert_eq!(r.image_names().len(), 2, "re-init destroyed images");

    let junk = r.scratch("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("x"), b"x").unwrap();
    let out = Lvrepo::at(&junk).run(["init"]);
    assert_ne!(out.status.code(), Some(0), "{}", report("init in a non-empty dir", &out));
    assert_eq!(std::fs::read(junk.join("x")).unwrap(), b"x");

    let out = Command::new(lvrepo_bin()).args(["images", "--json"]).env("LVREPO_REPO", &r.repo).output().unwrap();
    assert!(out.status.success(), "{}", report("LVREPO_REPO images", &out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"].as_array().map(|a| a.len()), Some(2));

    let out = Lvrepo::at(r.scratch("absent")).run(["images"]);
    assert_ne!(out.status.code(), Some(0), "images on a missing repo must fail");
}

#[test]
fn export_refuses_non_empty_dest() {
    let r = two_versions();
    let dest = r.scratch("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("precious"), b"keep me").unwrap();
    let out = r.run(["export".as_ref(), "app:1".as_ref(), dest.as_os_str()]);
    assert_ne!(out.status.code(), Some(0), "{}", report("export into non-empty dir", &out));
    assert_eq!(std::fs::read(dest.join("precious")).unwrap(), b"keep me");
    assert!(!dest.join("keep").exists(), "export wrote into a non-empty dir");
    let out = r.run(["export".as_ref(), "nope:1".as_ref(), r.scratch("x").as_os_str()]);
    assert_eq!(out.status.code(), Some(3), "{}", report("export of missing image", &out));
}

#[test]
fn gc_keeps_everything_reachable() {
    let r = two_versions();
    r.ok(["gc"]);
    r.ok(["verify"]);
    assert_eq!(r.ok(["cat", "app:1:dir/file"]), "version one\n");
    assert_eq!(r.ok(["cat", "app:2:added"]), "new\n");
}

/// `lvrepo ls -R | head -1` and `export - | head`: a reader that stops
/// early ends lvrepo quietly (SIGPIPE, as any Unix tool), never a panic or
/// an error message.
#[test]
fn a_closed_pipe_is_a_quiet_exit() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let r = Lvrepo::init();
    let src = r.scratch("many");
    std::fs::create_dir(&src).unwrap();
    for i in 0..3000 {
        std::fs::write(src.join(format!("file-{i:05}")), format!("{i}\n")).unwrap();
    }
    r.import(&src, "many:1");
    for args in [&["ls", "many:1", "-R"][..], &["export", "many:1", "-"], &["diff", "many:1", "many:1"]] {
        let mut c = Command::new(lvrepo_bin()).arg("--repo").arg(r.repo()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut first = [0u8; 16];
        let mut out = c.stdout.take().unwrap();
        let _ = out.read(&mut first);
        drop(out);
        let o = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() || o.status.signal() == Some(libc::SIGPIPE), "lvrepo {args:?} | head: {:?}\n{err}", o.status);
        assert!(err.is_empty(), "lvrepo {args:?} | head printed: {err}");
    }
}

/// `export IMAGE OUT.tar.zst` writes a zstd-compressed tar that imports back
/// to the same root; other compressed names are refused (exit 2) instead of
/// being taken for a directory to create.
#[test]
fn compressed_tar_by_extension() {
    let r = two_versions();
    let zst = r.scratch("out.tar.zst");
    r.ok([std::ffi::OsStr::new("export"), std::ffi::OsStr::new("app:2"), zst.as_os_str()]);
    let out = Command::new("zstd").arg("-t").arg(&zst).output().unwrap();
    assert!(out.status.success(), "{}", report("zstd -t", &out));
    r.ok([std::ffi::OsStr::new("import"), zst.as_os_str(), std::ffi::OsStr::new("--image"), std::ffi::OsStr::new("back:1")]);
    assert!(r.ok(["diff", "app:2", "back:1"]).is_empty(), "a .tar.zst round trip changed the image");
    for name in ["out.tar.gz", "out.tgz", "out.tar.xz"] {
        let p = r.scratch(name);
        r.fails([std::ffi::OsStr::new("export"), std::ffi::OsStr::new("app:2"), p.as_os_str()], 2);
        assert!(!p.exists(), "export to {name} created something");
    }
}

//! Commands operators of ostree, restic and zfs expect: `gc --dry-run`,
//! `images NAME`, `diff --stat`, `export IMAGE:PATH`, `import --exclude` and
//! `--one-file-system`, `delete --json`.

use std::ffi::OsStr;

use lvrepo_tests::{report, require_root, Lvrepo};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn tree(r: &Lvrepo) -> std::path::PathBuf {
    let src = r.scratch("src");
    for d in ["etc/app", "var/cache/apt", "var/log", "usr/lib"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    for (p, c) in [("etc/app/conf", "c\n"), ("etc/hosts", "h\n"), ("var/cache/apt/x.deb", "deb\n"), ("var/log/syslog.log", "log\n"), ("var/log/keep", "k\n"), ("usr/lib/a.pyc", "pyc\n"), ("usr/lib/a.py", "py\n")] {
        std::fs::write(src.join(p), c).unwrap();
    }
    src
}

fn paths(r: &Lvrepo, image: &str) -> Vec<String> {
    let v = r.json(["ls", image, "-R", "--json"]);
    v["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn gc_dry_run_removes_nothing_and_says_what_gc_removes() {
    require_root();
    let r = Lvrepo::init();
    let src = tree(&r);
    r.import(&src, "a:1");
    std::fs::write(src.join("big"), lvrepo_tests::fixture::pseudo_random(3, 3 << 20)).unwrap();
    r.import(&src, "a:2");
    r.ok(["delete", "a:2"]);
    let before = r.json(["stats", "--json"]);
    let dry = r.json(["gc", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(dry["removed_object_count"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(r.json(["stats", "--json"]), before, "gc --dry-run changed the repository");
    let text = r.ok(["gc", "-n"]);
    assert!(text.contains("would remove") && text.contains("dry run"), "{text}");
    let real = r.json(["gc", "--json"]);
    for k in ["removed_object_count", "removed_bytes", "deleted_pack_count", "rewritten_pack_count"] {
        assert_eq!(dry[k], real[k], "dry run and gc disagree on {k}: {dry} vs {real}");
    }
    assert_eq!(real["dry_run"], false, "{real}");
    let again = r.json(["gc", "--dry-run", "--json"]);
    assert_eq!(again["removed_object_count"], 0, "{again}");
}

#[test]
fn images_of_one_name_and_delete_json() {
    require_root();
    let r = Lvrepo::init();
    let src = tree(&r);
    r.import(&src, "a:1");
    r.import(&src, "a:2");
    r.import(&src, "b:1");
    let v = r.json(["images", "a", "--json"]);
    let labels: Vec<String> = v["images"].as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap().to_string()).collect();
    assert_eq!(labels, ["a:1", "a:2"]);
    let text = r.ok(["images", "b"]);
    assert!(text.contains("b:1") && !text.contains("a:1"), "{text}");
    r.fails(["images", "nosuch"], 3);
    let d = r.json(["delete", "a:1", "--json"]);
    assert_eq!((d["image"]["name"].as_str(), d["image"]["version"].as_u64()), (Some("a"), Some(1)), "{d}");
    assert_eq!(d["guests"], serde_json::json!([]));
}

#[test]
fn diff_stat_counts() {
    require_root();
    let r = Lvrepo::init();
    let src = tree(&r);
    r.import(&src, "a:1");
    std::fs::write(src.join("etc/hosts"), "changed\n").unwrap();
    std::fs::write(src.join("etc/new"), "n\n").unwrap();
    std::fs::remove_file(src.join("usr/lib/a.pyc")).unwrap();
    r.import(&src, "a:2");
    let full = r.json(["diff", "a:1", "a:2", "--json"]);
    let st = r.json(["diff", "a:1", "a:2", "--stat", "--json"]);
    let n = |c: &str| full["changes"].as_array().unwrap().iter().filter(|e| e["change"] == c).count();
    assert_eq!(st, serde_json::json!({ "schema": "lvrepo/1", "command": "diff", "added_count": n("added"), "removed_count": n("removed"), "content_count": n("content"), "metadata_count": n("metadata") }));
    assert_eq!((n("added"), n("removed"), n("content")), (1, 1, 1));
    let text = r.ok(["diff", "a:1", "a:2", "--stat"]);
    assert!(text.starts_with("1 added, 1 removed, 1 changed in content"), "{text}");
}

#[test]
fn export_a_subtree() {
    require_root();
    let r = Lvrepo::init();
    let src = tree(&r);
    r.import(&src, "a:1");
    let out = r.scratch("etc-out");
    r.ok([os("export"), os("a:1:/etc"), out.as_os_str()]);
    assert_eq!(std::fs::read(out.join("app/conf")).unwrap(), b"c\n");
    assert_eq!(std::fs::read(out.join("hosts")).unwrap(), b"h\n");
    assert!(!out.join("var").exists() && !out.join("etc").exists());
    let tar = r.scratch("log.tar");
    r.ok([os("export"), os("a:1:var/log"), tar.as_os_str()]);
    r.ok([os("import"), tar.as_os_str(), os("--image"), os("log:1")]);
    assert_eq!(paths(&r, "log:1"), ["/keep", "/syslog.log"]);
    let e = r.fails([os("export"), os("a:1:/etc/hosts"), r.scratch("h").as_os_str()], 2);
    assert!(e.contains("not a directory") && e.contains("cat"), "{e}");
    r.fails([os("export"), os("a:1:/nope"), r.scratch("n").as_os_str()], 3);
}

#[test]
fn import_excludes_patterns_from_directories_and_tar() {
    require_root();
    let r = Lvrepo::init();
    let src = tree(&r);
    let ex = ["--exclude", "*.log", "--exclude", "/var/cache", "--exclude", "usr/**/*.pyc"];
    let mut args = vec![os("import"), src.as_os_str(), os("--image"), os("d:1")];
    args.extend(ex.iter().map(|s| os(s)));
    r.ok(&args);
    let want = ["/etc", "/etc/app", "/etc/app/conf", "/etc/hosts", "/usr", "/usr/lib", "/usr/lib/a.py", "/var", "/var/log", "/var/log/keep"];
    assert_eq!(paths(&r, "d:1"), want);
    // The same patterns on a tar stream of the same tree.
    let tar = std::process::Command::new("tar").arg("-C").arg(&src).args(["-cf", "-", "."]).output().unwrap();
    assert!(tar.status.success(), "{}", report("tar", &tar));
    let mut args = vec!["import", "-", "--image", "t:1"];
    args.extend(ex);
    let out = r.run_stdin(&args, Some(&tar.stdout));
    assert!(out.status.success(), "{}", report("import - --exclude", &out));
    assert_eq!(paths(&r, "t:1"), want);
    let e = r.fails([os("import"), src.as_os_str(), os("--image"), os("x:1"), os("--exclude"), os("[ab")], 2);
    assert!(e.contains("invalid exclude pattern"), "{e}");
}

#[test]
fn import_one_file_system_keeps_mount_points_empty() {
    require_root();
    let r = Lvrepo::init();
    let src = tree(&r);
    let mnt = src.join("var/tmpfs");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount").args(["-t", "tmpfs", "lvrepo-test"]).arg(&mnt).status().unwrap();
    assert!(st.success(), "mount tmpfs");
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Umount(mnt.clone());
    std::fs::write(mnt.join("other-fs"), b"x").unwrap();
    r.ok([os("import"), src.as_os_str(), os("--image"), os("all:1")]);
    assert!(paths(&r, "all:1").contains(&"/var/tmpfs/other-fs".to_string()));
    r.ok([os("import"), src.as_os_str(), os("--image"), os("one:1"), os("--one-file-system")]);
    let p = paths(&r, "one:1");
    assert!(p.contains(&"/var/tmpfs".to_string()) && !p.iter().any(|x| x.starts_with("/var/tmpfs/")), "{p:?}");
    assert!(p.contains(&"/etc/hosts".to_string()), "{p:?}");
}

/// `man --out DIR` writes a page per command and subcommand with its
/// sections, and `--help` of every command ends with Examples.
#[test]
fn man_pages_and_help_examples() {
    let r = Lvrepo::at("/nonexistent-lvrepo-test");
    let dir = tempfile::tempdir().unwrap();
    r.ok([os("man"), os("--out"), dir.path().as_os_str()]);
    for page in ["lvrepo", "lvrepo-guest", "lvrepo-guest-create", "lvrepo-checkpoint-delete", "lvrepo-nbd-serve", "lvrepo-mount"] {
        let text = std::fs::read_to_string(dir.path().join(format!("{page}.1"))).unwrap_or_else(|e| panic!("{page}.1: {e}"));
        for sec in [".SH SYNOPSIS", ".SH EXAMPLES", ".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
            assert!(text.contains(sec), "{page}.1 lacks {sec}");
        }
    }
    for cmd in [&["import"][..], &["guest", "create"], &["checkpoint", "prune"], &["mount"]] {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push("--help");
        let help = r.ok(&args);
        assert!(help.contains("\nExamples:\n  lvrepo "), "lvrepo {cmd:?} --help has no examples:\n{help}");
    }
    let help = r.ok(["mount", "--help"]);
    assert!(help.contains("Usage: lvrepo mount [OPTIONS] IMAGE --overlay DIR MOUNTPOINT"), "{help}");
}

/// `-v`, `-vv`, `-vvv` each add lines of their level; an invalid
/// `LVREPO_LOG` is a usage error (exit 2), not ignored.
#[test]
fn log_levels_say_something_and_a_bad_filter_is_refused() {
    require_root();
    let r = Lvrepo::init();
    let src = tree(&r);
    r.import(&src, "a:1");
    let levels = |v: &[&str]| {
        let mut args = vec!["cat", "a:1:/etc/hosts"];
        args.extend(v);
        let out = r.run(&args);
        assert!(out.status.success(), "{}", report("cat", &out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(levels(&[]), "");
    let (v1, v2, v3) = (levels(&["-v"]), levels(&["-vv"]), levels(&["-vvv"]));
    assert!(v1.contains(" INFO ") && !v1.contains(" DEBUG "), "-v:\n{v1}");
    assert!(v2.contains(" DEBUG ") && !v2.contains(" TRACE "), "-vv:\n{v2}");
    assert!(v3.contains(" TRACE ") && v3.contains("object read"), "-vvv:\n{v3}");
    for bad in ["bogus[", "lvrepo=notalevel"] {
        let out = std::process::Command::new(lvrepo_tests::lvrepo_bin()).env("LVREPO_LOG", bad).arg("--repo").arg(r.repo()).arg("images").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "LVREPO_LOG={bad}: {}", report("images", &out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid LVREPO_LOG filter"), "{}", report("images", &out));
    }
    let out = std::process::Command::new(lvrepo_tests::lvrepo_bin()).env("LVREPO_LOG", "lvrepo_fs=trace").arg("--repo").arg(r.repo()).args(["cat", "a:1:/etc/hosts"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRACE"), "{}", report("LVREPO_LOG=lvrepo_fs=trace", &out));
}

/// With stderr the journal stream systemd names in JOURNAL_STREAM, logs go to
/// journald as structured entries. journald is played by a socket bound at
/// its address in a private mount namespace (a tmpfs over /run).
#[test]
fn logs_go_to_journald_when_stderr_is_the_journal() {
    require_root();
    let r = Lvrepo::init();
    let script = r#"
import os, socket, subprocess, sys, tempfile
os.makedirs("/run/systemd/journal", exist_ok=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
err = tempfile.TemporaryFile()
st = os.fstat(err.fileno())
env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
code = subprocess.call(sys.argv[1:], stderr=err, env=env)
s.setblocking(False)
while True:
    try:
        d = s.recv(1 << 20)
    except BlockingIOError:
        break
    # journald's native format: KEY=VALUE lines, or KEY, a 64-bit LE length and the value.
    out, i = [], 0
    while i < len(d):
        nl = d.index(b"\n", i)
        line = d[i:nl]
        if b"=" in line:
            out.append(line); i = nl + 1
        else:
            n = int.from_bytes(d[nl + 1:nl + 9], "little")
            out.append(line + b"=" + d[nl + 9:nl + 9 + n]); i = nl + 10 + n
    sys.stdout.write(b"\n".join(out).decode("utf-8", "replace") + "\n--\n")
err.seek(0)
sys.stdout.write("STDERR:" + err.read().decode() + "\nCODE:%d\n" % code)
"#;
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs lvrepo-test /run && exec python3 -c \"$0\" \"$@\""])
        .arg(script)
        .arg(lvrepo_tests::lvrepo_bin())
        .args(["-v", "--repo"])
        .arg(r.repo())
        .arg("images")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("CODE:0"), "{}", report("unshare … lvrepo images", &out));
    let entry = text.split("\n--\n").find(|e| e.contains("MESSAGE=repository opened")).unwrap_or_else(|| panic!("no journal entry for 'repository opened':\n{text}"));
    for field in ["PRIORITY=5", "SYSLOG_IDENTIFIER=lvrepo", &format!("PATH={}", r.repo().display())] {
        assert!(entry.lines().any(|l| l == field), "journal entry lacks {field}:\n{entry}");
    }
    assert!(!text.contains("STDERR:lvrepo") && !text.contains("repository opened path="), "logged to stderr too:\n{text}");
}

//! Shell completion of guest and image names: the hidden `lvrepo
//! __complete` lists them, and the generated bash script offers them where
//! a command takes a guest or an image (bash run with the script, COMP_WORDS
//! set as bash sets them for a TAB).

use std::process::Command;

use lvrepo_tests::{lvrepo_bin, Lvrepo};

fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// What bash offers for `WORDS... CUR<TAB>` (the words after `lvrepo`).
fn bash_complete(r: &Lvrepo, script: &std::path::Path, words: &[&str], cur: &str) -> Vec<String> {
    let bin = lvrepo_bin();
    let mut all: Vec<String> = vec![bin.to_str().expect("utf-8 binary path").into(), "--repo".into(), r.repo().to_str().expect("utf-8 repo").into()];
    all.extend(words.iter().map(|w| w.to_string()));
    all.push(cur.into());
    let quoted: Vec<String> = all.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n_lvrepo_names \"${{COMP_WORDS[0]}}\" '{cur}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        all.len() - 1,
        all[all.len() - 2],
    );
    let out = Command::new("bash").arg("--norc").arg("-c").arg(&prog).env_remove("LVREPO_REPO").output().expect("run bash");
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    lines(&String::from_utf8_lossy(&out.stdout)).into_iter().filter(|l| !l.is_empty()).collect()
}

#[test]
fn completion_offers_guest_and_image_names() {
    let r = Lvrepo::init();
    let src = r.scratch("src");
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::write(src.join("etc/a"), b"a\n").expect("write");
    r.import(&src, "web:1");
    r.import(&src, "db:1");
    for g in ["web01", "web02", "db01"] {
        r.ok(["guest", "create", g, "--image", "web:1", "--overlay", r.scratch(g).to_str().unwrap()]);
    }
    assert_eq!(lines(&r.ok(["__complete", "guests"])), ["db01", "web01", "web02"]);
    assert_eq!(lines(&r.ok(["__complete", "images"])), ["db", "db:1", "web", "web:1"]);
    assert_eq!(lines(&r.ok(["__complete", "args", "--", "guest", "show"])), ["db01", "web01", "web02"]);
    assert_eq!(r.ok(["__complete", "args", "--", "guest", "show", "web01"]), "", "a second operand is no guest");
    assert_eq!(r.ok(["__complete", "args", "--", "init"]), "");
    // Not a command of --help, the man pages or the completion script.
    assert!(!r.ok(["--help"]).contains("__complete"));

    let script = r.scratch("lvrepo.bash");
    std::fs::write(&script, r.ok(["completions", "bash"])).expect("write script");
    assert_eq!(bash_complete(&r, &script, &["guest", "show"], ""), ["db01", "web01", "web02"]);
    assert_eq!(bash_complete(&r, &script, &["guest", "show"], "we"), ["web01", "web02"]);
    assert_eq!(bash_complete(&r, &script, &["rollback"], "d"), ["db01"]);
    assert_eq!(bash_complete(&r, &script, &["ls"], ""), ["db", "web"], "bash gets image names without ':'");
    assert_eq!(bash_complete(&r, &script, &["guest", "create", "x", "--image"], "w"), ["web"]);
    // Elsewhere clap's completion stands: subcommands, options.
    let subs = bash_complete(&r, &script, &["guest"], "");
    assert!(subs.contains(&"show".to_string()) && subs.contains(&"create".to_string()), "{subs:?}");
    assert_eq!(bash_complete(&r, &script, &["guest", "show"], "--js"), ["--json"]);
}

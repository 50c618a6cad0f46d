//! The detached daemon rotates its own log: past `LVREPO_LOG_ROTATE_BYTES`
//! daemon.log becomes daemon.log.1 and a new daemon.log goes on, whole lines
//! in each; under the default limit (8 MiB) nothing rotates.

use super::*;

fn mount_with(w: &World, ov: &Path, mp: &Path, env: &[(&str, &str)]) {
    let mut c = lvrepo_cmd(&w.r, &["mount", "img:1", "--overlay", ov.to_str().unwrap(), mp.to_str().unwrap()]);
    // Debug: the FUSE requests are logged, so the log grows with use.
    c.env("LVREPO_LOG", "debug");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("spawn lvrepo");
    assert!(out.status.success(), "{}", report("lvrepo mount", &out));
    for _ in 0..3 {
        manifest(mp).expect("walk the mount");
    }
    let pid = daemon_pid(mp).expect("daemon");
    w.r.ok([OsStr::new("umount"), mp.as_os_str()]);
    assert!(wait_gone(pid, Duration::from_secs(30)), "daemon {pid} still alive");
}

fn whole_lines(what: &str, text: &str) {
    for l in text.lines() {
        assert!(l.starts_with("20") && l.as_bytes().get(4) == Some(&b'-'), "{what}: a line that is not a whole log line: {l:?}");
    }
}

#[test]
fn the_daemon_rotates_its_log() {
    let w = World::new(false, |src| {
        mkdir(&src.join("etc"));
        for i in 0..20 {
            put(&src.join(format!("etc/f{i}")), b"x\n");
        }
    });
    let mp = w.r.scratch("mnt").join("m");
    mkdir(&mp);
    let ov = w.r.scratch("ov-default");
    mount_with(&w, &ov, &mp, &[]);
    let log = fs::read_to_string(ov.join("daemon.log")).expect("daemon.log");
    assert!(log.len() > 3000 && log.contains("unmounted"), "too little logged to test rotation at 1000 bytes: {log}");
    assert!(!ov.join("daemon.log.1").exists(), "rotated under the default limit");

    let ov = w.r.scratch("ov-small");
    mount_with(&w, &ov, &mp, &[("LVREPO_LOG_ROTATE_BYTES", "1000")]);
    let old = fs::read_to_string(ov.join("daemon.log.1")).expect("daemon.log.1");
    let new = fs::read_to_string(ov.join("daemon.log")).expect("daemon.log");
    assert!(old.len() >= 1000, "daemon.log.1 rotated before the limit: {} bytes", old.len());
    let longest = old.lines().chain(new.lines()).map(str::len).max().unwrap_or(0);
    assert!(new.len() < 1000 + longest + 1, "daemon.log past the limit by more than a line: {} bytes", new.len());
    whole_lines("daemon.log.1", &old);
    whole_lines("daemon.log", &new);
    assert!(new.trim_end().lines().last().is_some_and(|l| l.contains("finished") || l.contains("unmounted")), "the newest lines are not in daemon.log: {new}");
    assert!(!ov.join("daemon.log.2").exists());
}

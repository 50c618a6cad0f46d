//! Retention and append-only backup targets (issue 26): `forget` keeps what
//! its rules keep (dry run changes nothing), gc then reclaims what only the
//! forgotten checkpoints used and the kept ones still restore exactly; an
//! append-only target takes new backups but refuses forget, delete and gc
//! (exit 77) and keeps everything.

use super::*;
use super::dr::{held, site, Mount};
use super::rollback::build_system;

fn forget(s: &Lvrepo, extra: &[&str]) -> Value {
    let mut a = vec!["forget", "g1"];
    a.extend_from_slice(extra);
    a.push("--json");
    s.json(&a)
}

#[test]
fn forget_keeps_what_its_rules_keep_and_append_only_targets_refuse_deletes() {
    let w = World::new(true, build_system);
    let g = w.guest("g1");
    let s = site(&w, "site", false);
    let locked = Lvrepo::at(w.r.scratch("locked"));
    locked.ok(["init", "--append-only"]);
    locked.import(&w.src, "img:1");
    let mut states = Vec::new();
    {
        let m = g.mount();
        for k in 0..4u64 {
            // One file rewritten each day: a day's bytes are only in its checkpoint.
            put(&m.p("data/day"), &pseudo_random(100 + k, 400_000));
            states.push(m.manifest());
            w.r.ok([os("backup"), os("g1"), os("--to"), s.repo().as_os_str()]);
            w.r.ok([os("backup"), os("g1"), os("--to"), locked.repo().as_os_str(), os("--no-checkpoint")]);
        }
        m.umount();
    }
    // One checkpoint per backup, taken by the mounted guest's daemon.
    let nums_held = held(&s, "g1");
    assert_eq!(nums_held, vec![1, 2, 3, 4]);
    s.fails(["forget", "g1"], 2);
    let dry = forget(&s, &["--keep-last", "2", "--dry-run"]);
    assert_eq!(numbers(&dry["forgotten"]), nums_held[..2].to_vec(), "{dry}");
    assert_eq!(held(&s, "g1"), nums_held, "a dry run changes nothing");
    let done = forget(&s, &["--keep-last", "2"]);
    assert_eq!(numbers(&done["kept"]), nums_held[2..].to_vec(), "{done}");
    assert!(done["gc"]["removed_object_count"].as_u64().expect("gc report") > 0, "gc reclaims what only the forgotten checkpoints used: {done}");
    let removed = done["gc"]["removed_bytes"].as_u64().expect("gc removed_bytes");
    assert!(removed > 400_000, "the two forgotten days (400 kB each, stored compressed) are reclaimed, not {removed} bytes: {done}");
    assert_eq!(held(&s, "g1"), nums_held[2..].to_vec());
    s.ok(["verify"]);
    let host = site(&w, "host", true);
    let dir = w.r.scratch("host-guests").join("g1");
    host.ok([os("restore"), os("g1"), os("--from"), s.repo().as_os_str(), os("--overlay"), dir.as_os_str(), os("--checkpoint"), os(&nums_held[2].to_string())]);
    {
        let m = Mount::new(&host, "g1", w.r.scratch("host-mnt"));
        assert_same("a kept checkpoint restores exactly after forget and gc", &states[2], &m.manifest());
    }

    // Append-only: new backups land; nothing is deleted.
    let all = held(&locked, "g1");
    assert_eq!(all.len(), 4);
    for args in [vec!["forget", "g1", "--keep-last", "1"], vec!["gc"], vec!["delete", "img:1"], vec!["delete", "img:1", "--force"]] {
        let err = locked.fails(&args, 77);
        assert!(err.contains("append-only"), "{args:?}: {err}");
    }
    let dry = forget(&locked, &["--keep-last", "1", "--dry-run"]);
    assert_eq!(numbers(&dry["forgotten"]).len(), 3, "{dry}");
    assert_eq!(held(&locked, "g1"), all);
    assert_eq!(locked.image_names().iter().filter(|n| n.as_str() == "img:1").count(), 1);
    locked.ok(["verify"]);
}

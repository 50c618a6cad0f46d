//! Crashes (failpoints, kill -9) during checkpoint and rollback leave the old
//! state or the new one.

use super::*;

// ───────────────────────── 3. crash safety ─────────────────────────

const CRASH_DIRS: usize = 20;
const CRASH_FILES: usize = 100;

fn build_many(src: &Path) {
    for d in 0..CRASH_DIRS {
        mkdir(&src.join(format!("d{d:02}")));
        for f in 0..CRASH_FILES {
            let body = format!("dir {d} file {f}\n").repeat(40 + (d * f) % 60);
            put(&src.join(format!("d{d:02}/f{f:03}")), body.as_bytes());
        }
    }
    put(&src.join("big"), &pseudo_random(5, 3 << 20));
}

/// Round `r` of changes: every one of the 2,000 image files appended to,
/// 50 new files, 20 deletions, a rename, a chmod, a write into `big`.
fn mutate(m: &Mounted, r: usize) {
    for d in 0..CRASH_DIRS {
        for f in 0..CRASH_FILES {
            let p = m.p(&format!("d{d:02}/f{f:03}"));
            if p.exists() {
                append(&p, format!("round {r}\n").as_bytes());
            }
        }
    }
    mkdir(&m.p(&format!("new{r}")));
    for i in 0..50 {
        put(&m.p(&format!("new{r}/n{i:02}")), &pseudo_random((r * 100 + i) as u64, 5000));
    }
    let dd = r % CRASH_DIRS;
    for f in 0..20 {
        let p = m.p(&format!("d{dd:02}/f{:03}", 50 + f));
        if p.exists() {
            rm(&p);
        }
    }
    mv(&m.p(&format!("d{dd:02}/f000")), &m.p(&format!("new{r}/moved")));
    chmod(&m.p(&format!("d{:02}", (r + 1) % CRASH_DIRS)), 0o700 + (r as u32 % 0o100));
    write_at(&m.p("big"), (r as u64 * 200_000) % (3 << 20), &pseudo_random(900 + r as u64, 100_000));
}

/// Mount, apply round `r`, return the manifest, unmount.
fn changed_state(g: &Guest, r: usize) -> Manifest {
    let m = g.mount();
    mutate(&m, r);
    let s = m.manifest();
    m.umount();
    s
}

fn mounted_state(g: &Guest) -> Manifest {
    let m = g.mount();
    let s = m.manifest();
    m.umount();
    s
}

/// After a crash: the guest must look exactly like `old` or `new`; returns
/// which (true = new).
#[track_caller]
fn old_or_new(g: &Guest, what: &str, old: &Manifest, new: &Manifest) -> bool {
    let got = mounted_state(g);
    match (compare(old, &got), compare(new, &got)) {
        (Ok(()), _) => false,
        (_, Ok(())) => true,
        (Err(a), Err(b)) => panic!("{what}: the guest is neither the old state nor the new one\nvs old: {a}\nvs new: {b}"),
    }
}

#[test]
fn crashes_during_checkpoint_and_rollback_leave_old_or_new_state() {
    let w = World::new(true, build_many);
    let g = w.guest("c");
    let mut rng = Rng::new(seed("LVREPO_GUESTS_CRASH_SEED"));
    let mut round = 0;
    // Every checkpoint taken, with the state it must restore.
    let mut known: Vec<(u64, Manifest)> = Vec::new();

    // Calibrate: one uninterrupted checkpoint of a full round of changes.
    let s = changed_state(&g, round);
    round += 1;
    let d_cp = timed(&w.r, &["checkpoint", "c"]);
    eprintln!("checkpoint of ~2,000 changed files: {d_cp:?}");
    assert_same("after an uninterrupted checkpoint", &s, &mounted_state(&g));
    known.push((1, s.clone()));
    let mut cur = s;

    // Failpoints of checkpoint: the rebase never commits / commits but the old
    // generation is not removed. Either way the guest looks unchanged, and the
    // recorded checkpoint is complete.
    for fp in ["checkpoint-before-rebase", "switch-after-commit"] {
        let old = changed_state(&g, round);
        round += 1;
        let before = g.checkpoints();
        run_to_failpoint(&w.r, &["checkpoint", "c"], fp);
        assert_same(&format!("guest after checkpoint crashed at {fp}"), &old, &mounted_state(&g));
        let after = g.checkpoints();
        assert_eq!(after.len(), before.len() + 1, "{fp}: the checkpoint was recorded before the crash: {after:?}");
        let n = *after.last().expect("a checkpoint");
        known.push((n, old.clone()));
        // Successful repeat: a new checkpoint of the same state.
        let n2 = g.checkpoint("repeat");
        assert_same(&format!("after repeating the checkpoint crashed at {fp}"), &old, &mounted_state(&g));
        known.push((n2, old.clone()));
        cur = old;
    }

    // Failpoint of rollback after the commit: the new state, already.
    let (target, target_state) = known.iter().find(|(_, s)| compare(s, &cur).is_err()).cloned().expect("a checkpoint that differs from now");
    run_to_failpoint(&w.r, &["rollback", "c", &target.to_string()], "switch-after-commit");
    assert_same("guest after rollback crashed after its commit", &target_state, &mounted_state(&g));
    cur = target_state;

    // Every recorded checkpoint is complete: roll back to each (a rollback
    // timed here calibrates the random kills below).
    let mut d_rb = Duration::ZERO;
    for (n, s) in known.clone() {
        d_rb = d_rb.max(timed(&w.r, &["rollback", "c", &n.to_string()]));
        assert_same(&format!("rollback to checkpoint {n}"), &s, &mounted_state(&g));
        cur = s;
    }

    // kill -9 of `lvrepo checkpoint` at random instants.
    let mut hits = 0;
    for i in 0..6 {
        let old = changed_state(&g, round);
        round += 1;
        let before = g.checkpoints();
        let delay = Duration::from_micros(rng.below(d_cp.as_micros() as u64 * 6 / 5));
        let finished = kill9_after(&w.r, &["checkpoint", "c"], delay);
        hits += usize::from(!finished);
        assert_same(&format!("kill -9 of checkpoint #{i} after {delay:?} (finished: {finished})"), &old, &mounted_state(&g));
        let after = g.checkpoints();
        eprintln!("kill -9 of checkpoint after {delay:?}: finished {finished}, checkpoint listed {}", after.len() > before.len());
        assert!(after.starts_with(&before) && after.len() <= before.len() + 1, "checkpoints before {before:?}, after the kill {after:?}");
        if finished {
            assert_eq!(after.len(), before.len() + 1, "a checkpoint that finished must be listed");
        }
        if after.len() > before.len() {
            let n = *after.last().expect("a checkpoint");
            // A listed checkpoint must be complete: roll back to it.
            g.rollback(n);
            assert_same(&format!("checkpoint {n} listed after a kill -9"), &old, &mounted_state(&g));
            known.push((n, old.clone()));
        }
        cur = old;
    }
    eprintln!("checkpoint killed mid-way {hits} times of 6");

    // kill -9 of `lvrepo rollback` at random instants, between two different states.
    for i in 0..6 {
        let candidates: Vec<&(u64, Manifest)> = known.iter().filter(|(_, s)| compare(s, &cur).is_err()).collect();
        assert!(!candidates.is_empty(), "no checkpoint differs from the current state");
        let (n, target) = candidates[rng.below(candidates.len() as u64) as usize].clone();
        let delay = Duration::from_micros(rng.below(d_rb.as_micros() as u64 * 3 / 2));
        let finished = kill9_after(&w.r, &["rollback", "c", &n.to_string()], delay);
        let is_new = old_or_new(&g, &format!("kill -9 of rollback #{i} to {n} after {delay:?}"), &cur, &target);
        eprintln!("kill -9 of rollback after {delay:?}: finished {finished}, switched {is_new}");
        if finished {
            assert!(is_new, "a rollback that finished must have switched");
        }
        if is_new {
            cur = target;
        }
    }

    // kill -9 of the daemon while it takes a mounted checkpoint.
    for i in 0..3 {
        let m = g.mount();
        mutate(&m, round);
        round += 1;
        let old = m.manifest();
        let before = g.checkpoints();
        let mut client = lvrepo_cmd(&w.r, &["checkpoint", "c"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn checkpoint");
        std::thread::sleep(Duration::from_micros(rng.below(d_cp.as_micros() as u64)));
        m.kill9();
        let _ = client.wait();
        assert_same(&format!("guest after its daemon was killed during a mounted checkpoint #{i}"), &old, &mounted_state(&g));
        let after = g.checkpoints();
        assert!(after.starts_with(&before) && after.len() <= before.len() + 1, "checkpoints before {before:?}, after {after:?}");
        if after.len() > before.len() {
            let n = *after.last().expect("a checkpoint");
            g.rollback(n);
            assert_same(&format!("mounted checkpoint {n} listed after the daemon's kill -9"), &old, &mounted_state(&g));
        }
    }

    // A rollback of the mounted guest: the daemon aborts right after the
    // commit point (failpoint), or is killed at random instants. The guest
    // is then the old state or the checkpoint's, never a mix.
    let mut cur = mounted_state(&g);
    let pick = |rng: &mut Rng, cur: &Manifest| {
        let candidates: Vec<&(u64, Manifest)> = known.iter().filter(|(_, s)| compare(s, cur).is_err()).collect();
        assert!(!candidates.is_empty(), "no checkpoint differs from the current state");
        candidates[rng.below(candidates.len() as u64) as usize].clone()
    };
    // Calibrate: one uninterrupted live rollback.
    let d_live = {
        let (n, target) = pick(&mut rng, &cur);
        let m = g.mount();
        let d = timed(&w.r, &["rollback", "c", &n.to_string()]);
        assert_same("live rollback", &target, &m.manifest());
        m.umount();
        cur = target;
        eprintln!("live rollback: {d:?}");
        d
    };
    {
        let (n, target) = pick(&mut rng, &cur);
        let out = lvrepo_cmd(&w.r, &["mount", "--guest", "c", &g.mp.to_string_lossy()]).env("LVREPO_FAILPOINT", "switch-after-commit").output().expect("spawn mount");
        assert!(out.status.success(), "{}", report("mount with a failpoint armed", &out));
        let pid = daemon_pid(&g.mp).expect("daemon of the failpoint mount");
        let out = lvrepo_cmd(&w.r, &["rollback", "c", &n.to_string()]).output().expect("spawn rollback");
        assert!(!out.status.success(), "{}", report("live rollback whose daemon aborts", &out));
        assert!(wait_gone(pid, Duration::from_secs(30)), "daemon {pid} should have aborted at the failpoint");
        lazy_umount(&g.mp);
        assert!(g.log().contains("failpoint switch-after-commit reached"), "daemon did not reach the failpoint:\n{}", g.log());
        assert_same("daemon aborted after the commit point of a live rollback", &target, &mounted_state(&g));
        cur = target;
    }
    for i in 0..4 {
        let (n, target) = pick(&mut rng, &cur);
        let m = g.mount();
        let mut client = lvrepo_cmd(&w.r, &["rollback", "c", &n.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn rollback");
        let delay = Duration::from_micros(rng.below(d_live.as_micros() as u64 * 6 / 5));
        std::thread::sleep(delay);
        m.kill9();
        let finished = client.wait().expect("wait rollback").success();
        let is_new = old_or_new(&g, &format!("kill -9 of the daemon during live rollback #{i} to {n} after {delay:?}"), &cur, &target);
        eprintln!("kill -9 of the daemon during a live rollback after {delay:?}: client finished {finished}, switched {is_new}");
        if finished {
            assert!(is_new, "a live rollback that reported success must have switched");
        }
        if is_new {
            cur = target;
        }
    }

    // Crashes must not leak: once a later checkpoint or rollback has
    // completed, only the current overlay generation is left on disk.
    g.checkpoint("final");
    assert_eq!(g.gen_dirs().len(), 1, "overlay generations left behind by crashes: {:?}", g.gen_dirs());
}

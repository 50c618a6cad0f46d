//! Publishers on many hosts at once, run on moto (atomic conditional writes)
//! and on `file://`: 16 hosts publishing different images all land, no ref
//! lost; two hosts publishing the same NAME:VERSION: exactly one wins, the
//! other exits 5 and the image is the winner's, whole.

use super::*;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Wait for every child (10 min limit for all); their outputs in order.
fn wait_all(children: Vec<Child>) -> Vec<Output> {
    let start = Instant::now();
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    let mut outs: Vec<Option<Output>> = children.iter().map(|_| None).collect();
    while outs.iter().any(Option::is_none) {
        for (i, slot) in children.iter_mut().enumerate() {
            let done = slot.as_mut().is_some_and(|c| c.try_wait().expect("try_wait").is_some());
            if done {
                outs[i] = Some(slot.take().expect("child").wait_with_output().expect("output"));
            }
        }
        if start.elapsed() > Duration::from_secs(600) {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
            }
            panic!("concurrent publishers still running after 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    outs.into_iter().map(|o| o.expect("output")).collect()
}

pub fn sixteen_hosts_publish_at_once_and_no_ref_is_lost(store: Store) {
    let w = World::new(store);
    w.init(&w.host("admin"), "main", "repo");
    // Half publish versions of one name (one ref list to race on), half names of their own.
    let names: Vec<String> = (0..16u64).map(|i| if i % 2 == 0 { format!("fleet:{}", i / 2 + 1) } else { format!("solo{i}:1") }).collect();
    let hosts: Vec<Host> = (0..16).map(|i| w.host(&format!("h{i:02}"))).collect();
    let srcs: Vec<PathBuf> = (0..16u64)
        .map(|i| {
            let s = w.scratch(&format!("src{i:02}"));
            mk(&s);
            small_tree(&s, 1000 + i);
            s
        })
        .collect();
    let children = hosts.iter().zip(&srcs).zip(&names).map(|((h, s), n)| spawn(h, &[os("import"), s.as_os_str(), os("--image"), os(n)])).collect();
    let outs = wait_all(children);
    let failed: Vec<String> = outs.iter().zip(&names).filter(|(o, _)| !o.status.success()).map(|(o, n)| report(&format!("import --image {n}"), o)).collect();
    assert!(failed.is_empty(), "{} of 16 concurrent publishers failed:\n{}\nserver log tail:\n{}", failed.len(), failed.join("\n"), tail(&w.server_log()));

    let mut want = names.clone();
    want.sort();
    let fresh = w.host("fresh");
    for h in [&hosts[0], &hosts[15], &fresh] {
        assert_eq!(image_list(h), want, "images after 16 concurrent publishes (host cache {})", h.cache.display());
    }
    for (s, n) in srcs.iter().zip(&names) {
        assert_same(&format!("{n} exported on a fresh host"), &manifest(s).expect("manifest"), &fresh.export_manifest(n));
    }
    fresh.ok(["verify"]);
}

pub fn two_hosts_race_on_one_name_version_and_exactly_one_wins(store: Store) {
    let w = World::new(store);
    w.init(&w.host("admin"), "main", "repo");
    let (a, b) = (w.host("a"), w.host("b"));
    let fresh = w.host("fresh");
    for round in 1..=3u64 {
        let name = format!("race:{round}");
        let srcs: Vec<PathBuf> = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let s = w.scratch(&format!("src-{round}-{h}"));
                mk(&s);
                small_tree(&s, round * 10 + i as u64);
                s
            })
            .collect();
        let children = vec![
            spawn(&a, &[os("import"), srcs[0].as_os_str(), os("--image"), os(&name)]),
            spawn(&b, &[os("import"), srcs[1].as_os_str(), os("--image"), os(&name)]),
        ];
        let outs = wait_all(children);
        let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
        let winner = match codes[..] {
            [Some(0), Some(5)] => 0,
            [Some(5), Some(0)] => 1,
            _ => panic!(
                "{name}: two hosts publishing it at once must give exactly one success and one exit 5, got {codes:?}\n{}\n{}",
                report("host a", &outs[0]),
                report("host b", &outs[1])
            ),
        };
        assert_same(&format!("{name}, the winner's tree, exported on a fresh host"), &manifest(&srcs[winner]).expect("manifest"), &fresh.export_manifest(&name));
    }
    assert_eq!(image_list(&fresh), strings(&["race:1", "race:2", "race:3"]));
    fresh.ok(["verify"]);
}

fn tail(s: &str) -> &str {
    &s[s.floor_char_boundary(s.len().saturating_sub(3000))..]
}

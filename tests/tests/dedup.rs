//! A second version of an image that differs in three files must cost about
//! three files of storage, and `diff` must name exactly those three.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use lvrepo_tests::fixture::{append, pseudo_random, set_mtime};
use lvrepo_tests::manifest::manifest;
use lvrepo_tests::{bookworm_minbase, changes, require_root, Lvrepo};

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("stats --json: {key} is not a number in {v}"))
}

/// `stats --json`'s usage of `image`: `{"image": {...}, "unique_bytes"}`.
fn image_stats<'a>(v: &'a serde_json::Value, image: &str) -> &'a serde_json::Value {
    v["image_usage"]
        .as_array()
        .unwrap_or_else(|| panic!("stats --json has no image_usage array: {v}"))
        .iter()
        .find(|i| i["image"]["label"] == image)
        .unwrap_or_else(|| panic!("stats --json lists no {image}: {v}"))
}

#[test]
fn second_version_with_three_changes_stores_only_the_changes() {
    require_root();
    let deb = bookworm_minbase();
    let r = Lvrepo::init();
    r.import(&deb, "deb");
    let s1 = r.json(["stats", "--json"]);

    // v2 = cp -a of v1 with: an append to a big binary, a new file, a deletion.
    // Parent dir mtimes are restored so exactly three paths differ.
    let v2 = r.scratch("v2");
    assert!(Command::new("cp").arg("-a").arg(&deb).arg(&v2).status().unwrap().success());
    let etc = v2.join("etc");
    let em = std::fs::symlink_metadata(&etc).unwrap();
    let bash = v2.join("usr/bin/bash");
    let old_bash = std::fs::read(&bash).unwrap();
    assert!(old_bash.len() > 1 << 20, "bash should be a big file");
    append(&bash, b"\n# appended by lvrepo dedup test\n").unwrap();
    std::fs::write(etc.join("lvrepo-new"), pseudo_random(42, 20_000)).unwrap();
    std::fs::remove_file(etc.join("issue.net")).unwrap();
    set_mtime(&etc, em.mtime(), em.mtime_nsec()).unwrap();

    r.import(&v2, "deb");
    let names = r.image_names();
    assert!(names.contains(&"deb:1".into()) && names.contains(&"deb:2".into()), "{names:?}");

    assert_eq!(
        r.diff_set("deb:1", "deb:2"),
        changes(&[
            ("etc/issue.net", "removed"),
            ("etc/lvrepo-new", "added"),
            ("usr/bin/bash", "content"),
        ])
    );
    let text = r.ok(["diff", "deb:1", "deb:2"]);
    let mut lines: Vec<&str> = text.lines().map(|l| l.trim_end()).collect();
    lines.sort();
    let strip = |l: &str| l.replacen(" /", " ", 1);
    let lines: Vec<String> = lines.iter().map(|l| strip(l)).collect();
    assert_eq!(lines, ["A etc/lvrepo-new", "C usr/bin/bash", "D etc/issue.net"], "diff text:\n{text}");

    let s2 = r.json(["stats", "--json"]);
    let tree_bytes = manifest(&deb).unwrap().logical_bytes() as f64;
    let grew = num(&s2, "disk_bytes") - num(&s1, "disk_bytes");
    assert!(grew < (1 << 20) as f64, "v2 added {grew} stored bytes for three small changes\n{s1}\n{s2}");
    assert!(grew > 20_000.0 * 0.5, "new random file must be stored: grew only {grew}");
    let objs = num(&s2, "object_count") - num(&s1, "object_count");
    // 1 new tail chunk of bash + 1 chunk for the new file + a few tree/index objects.
    assert!((2.0..=30.0).contains(&objs), "object count grew by {objs}\n{s1}\n{s2}");
    let logical = num(&s2, "logical_bytes");
    assert!(logical >= 1.9 * tree_bytes, "logical_bytes {logical} should count both versions of {tree_bytes}");
    // Compression alone gives ~2x on v1; the second version must ~double it.
    let (d1, d2) = (num(&s1, "dedup_ratio"), num(&s2, "dedup_ratio"));
    assert!(d2 > 1.9 * d1, "dedup_ratio {d1} → {d2}: second version was not deduplicated");
    for img in ["deb:1", "deb:2"] {
        let i = image_stats(&s2, img);
        assert!(num(&i["image"], "logical_bytes") >= 0.9 * tree_bytes, "{img}: {i}");
        assert!(num(i, "unique_bytes") < (1 << 20) as f64, "{img} unique bytes: {i}");
    }

    // Both versions still read back correctly.
    assert!(r.ok_bytes(["cat", "deb:1:usr/bin/bash"]) == old_bash, "deb:1 bash changed");
    assert!(r.ok_bytes(["cat", "deb:usr/bin/bash"]) == std::fs::read(&bash).unwrap(), "latest bash wrong");
    r.fails(["cat", "deb:2:etc/issue.net"], 3);
}

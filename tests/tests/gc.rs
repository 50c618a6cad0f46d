//! gc removes exactly what no image references, and a crash at any step of it
//! (simulated with LVREPO_FAILPOINT, which aborts the process) damages nothing.

use std::path::Path;

use lvrepo_tests::bin::Lvrepo;
use lvrepo_tests::manifest::{compare, manifest};

fn write_tree(dir: &Path, seed: u8, big: usize) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = vec![0u8; big];
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(dir.join("big.bin"), &data).unwrap();
    std::fs::write(dir.join("sub/shared.txt"), b"the same in every version\n").unwrap();
    std::fs::write(dir.join("sub/version"), format!("{seed}\n")).unwrap();
}

fn disk(r: &Lvrepo) -> u64 {
    r.json(["stats", "--json"])["disk_bytes"].as_u64().unwrap()
}

#[test]
fn gc_reclaims_deleted_images_and_survives_crashes_at_every_step() {
    let r = Lvrepo::init();
    let (a, b) = (r.scratch("a"), r.scratch("b"));
    write_tree(&a, 1, 8 << 20);
    write_tree(&b, 2, 1 << 20);
    r.import(&a, "img:1");
    r.import(&b, "img:2");
    let before = disk(&r);
    r.ok(["delete", "img:1"]);
    assert!(r.image_names().iter().all(|n| n != "img:1"), "deleted image still listed");

    for fp in ["gc-after-copy", "gc-after-index"] {
        let out = std::process::Command::new(lvrepo_tests::bin::lvrepo_bin())
            .args(["--repo"])
            .arg(r.repo())
            .args(["-q", "gc"])
            .env("LVREPO_FAILPOINT", fp)
            .output()
            .unwrap();
        assert!(!out.status.success(), "gc with failpoint {fp} should have aborted");
        // After the crash: nothing damaged, image 2 intact.
        r.ok(["verify"]);
        let out = r.scratch(&format!("out-{fp}"));
        r.export("img:2", &out);
        compare(&manifest(&b).unwrap(), &manifest(&out).unwrap()).unwrap();
    }
    let report = r.json(["gc", "--json"]);
    assert!(report["removed_object_count"].as_u64().unwrap() > 0 || disk(&r) < before, "gc removed nothing: {report}");
    let after = disk(&r);
    assert!(after + (6 << 20) < before, "gc should reclaim the 8 MiB unique to img:1: before {before}, after {after}");
    r.ok(["verify"]);
    let out = r.scratch("out-final");
    r.export("img:2", &out);
    compare(&manifest(&b).unwrap(), &manifest(&out).unwrap()).unwrap();
    // A second gc finds nothing more to do.
    let again = r.json(["gc", "--json"]);
    assert_eq!(again["removed_object_count"].as_u64(), Some(0), "{again}");
}

#[test]
fn interrupted_import_leaves_no_image_and_gc_cleans_its_objects() {
    let r = Lvrepo::init();
    let a = r.scratch("a");
    write_tree(&a, 3, 2 << 20);
    // A truncated tar stream fails the import after some chunks were stored.
    let mut tar = std::process::Command::new("tar").arg("-C").arg(&a).args(["-cf", "-", "."]).output().unwrap().stdout;
    tar.truncate(tar.len() / 2);
    let out = r.run_stdin(["import", "-", "--image", "cut:1"], Some(&tar));
    assert!(!out.status.success(), "truncated import must fail");
    assert!(r.image_names().is_empty(), "a failed import must publish nothing");
    r.ok(["verify"]);
    r.ok(["gc"]);
    let s = r.json(["stats", "--json"]);
    assert_eq!(s["object_count"].as_u64(), Some(0), "gc must remove the orphaned objects: {s}");
}

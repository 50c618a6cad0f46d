//! Damaged packs must be detected, named, and never served as data.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use lvrepo_tests::fixture::pseudo_random;
use lvrepo_tests::{image_path, report, require_root, Lvrepo};

/// A tree of incompressible files (so packs are mostly file payload).
fn known_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fs::create_dir_all(dir.join("sub")).unwrap();
    let mut files = Vec::new();
    for i in 0..8u64 {
        files.push((format!("sub/f{i}"), pseudo_random(1000 + i, 200_000 + i as usize * 13)));
    }
    files.push(("big".into(), pseudo_random(7, 3 << 20)));
    files.push(("small".into(), b"small file\n".to_vec()));
    for (p, data) in &files {
        fs::write(dir.join(p), data).unwrap();
    }
    files
}

fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo.join("packs"))
        .unwrap_or_else(|e| panic!("REPO/packs missing: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.pack files under {}/packs", repo.display());
    v
}

fn setup() -> (Lvrepo, Vec<(String, Vec<u8>)>) {
    require_root();
    let r = Lvrepo::init();
    let src = r.scratch("src");
    let files = known_tree(&src);
    r.import(&src, "img:1");
    r.ok(["verify"]);
    (r, files)
}

/// cat every file: success must give exactly the original bytes, failure
/// must be exit 4 with at most a correct prefix on stdout. Returns failures.
fn cat_all(r: &Lvrepo, files: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut failed = Vec::new();
    for (p, data) in files {
        let out = r.run(["cat".into(), image_path("img:1", p.as_bytes())]);
        match out.status.code() {
            Some(0) => assert!(out.stdout == *data, "cat {p} exited 0 with WRONG bytes"),
            Some(4) => {
                assert!(data.starts_with(&out.stdout), "cat {p} exit 4 but printed wrong bytes");
                failed.push(p.clone());
            }
            _ => panic!("{}", report(&format!("cat {p}: expected exit 0 or 4"), &out)),
        }
    }
    failed
}

#[test]
fn bit_flip_in_pack_is_found_by_verify_and_cat() {
    let (r, files) = setup();
    let biggest = packs(&r.repo).into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let len = fs::metadata(&biggest).unwrap().len();
    let f = fs::OpenOptions::new().read(true).write(true).open(&biggest).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, len / 2).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], len / 2).unwrap();
    drop(f);

    let out = r.run(["verify"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{}", report("verify after bit flip", &out));
    let failed = cat_all(&r, &files);
    assert!(!failed.is_empty(), "a flipped bit in the middle of the biggest pack went unnoticed by cat");
    assert!(
        failed.iter().any(|p| text.contains(p.as_str())),
        "verify output names none of the damaged paths {failed:?}:\n{text}"
    );
    assert!(text.contains("img:1"), "verify should name the image referencing the damage:\n{text}");

    let out = r.run(["verify", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", report("verify --json", &out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{}", report(&format!("verify --json: bad JSON {e}"), &out)));
    assert!(failed.iter().any(|p| v.to_string().contains(p.as_str())), "verify --json names no path: {v}");

    // Exporting the damaged image must fail with 4, not write bad data silently.
    let dest = r.scratch("out");
    r.fails(["export".as_ref(), "img:1".as_ref(), dest.as_os_str()], 4);
}

#[test]
fn missing_pack_is_damage() {
    let (r, files) = setup();
    for p in packs(&r.repo) {
        fs::remove_file(p).unwrap();
    }
    let out = r.run(["verify"]);
    assert_eq!(out.status.code(), Some(4), "{}", report("verify with all packs deleted", &out));
    let out = r.run(["cat", "img:1:big"]);
    assert!(out.stdout.is_empty(), "cat printed data from a deleted pack");
    assert_eq!(out.status.code(), Some(4), "{}", report("cat with packs deleted", &out));
    assert!(cat_all(&r, &files).len() >= files.len() - 1, "cat served files whose pack is gone");
}

#[test]
fn every_single_byte_corruption_in_a_small_pack_is_caught() {
    // Flip one byte at a time across a whole (small) repo's packs: whatever
    // byte is hit, no cat may ever print wrong data.
    require_root();
    let r = Lvrepo::init();
    let src = r.scratch("src");
    fs::create_dir(&src).unwrap();
    let data = pseudo_random(5, 70_000);
    fs::write(src.join("f"), &data).unwrap();
    let files = vec![("f".to_string(), data)];
    r.import(&src, "img:1");
    for pack in packs(&r.repo) {
        let len = fs::metadata(&pack).unwrap().len();
        let step = (len / 97).max(1);
        let f = fs::OpenOptions::new().read(true).write(true).open(&pack).unwrap();
        let mut off = 0;
        while off < len {
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, off).unwrap();
            f.write_all_at(&[!b[0]], off).unwrap();
            let cat_failed = !cat_all(&r, &files).is_empty();
            let code = r.run(["verify"]).status.code();
            f.write_all_at(&b, off).unwrap();
            let want: &[Option<i32>] = if cat_failed { &[Some(4)] } else { &[Some(0), Some(4)] };
            assert!(
                want.contains(&code),
                "verify exit {code:?} (cat failed: {cat_failed}) with byte {off} of {} flipped",
                pack.display()
            );
            off += step;
        }
    }
    r.ok(["verify"]);
}

//! Conformance of the remote layer over object_store's in-memory and
//! local-filesystem stores: two caches of one bucket, lazy fetch, damage,
//! concurrent publishers, gc's two phases.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::{ObjectStore as Bucket, ObjectStoreExt};

use super::{Remote, RemoteUrl};
use crate::digest::ObjectKind;
use crate::error::{DamageKind, Error};
use crate::import::{dir::import_dir, ImportTarget, NoProgress};
use crate::repo::{dir_usage, ImageRecord, Repository};

/// A cache of `bucket` at `dir` (a new local repository, then opened writable).
fn cache(dir: &Path, bucket: &Arc<dyn Bucket>) -> Repository {
    Repository::init(dir).unwrap();
    let r = Remote::with_store("mem://test", bucket.clone(), "site/a").unwrap();
    Repository::open_with(dir, true, Some(r)).unwrap()
}

fn source(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/hostname"), b"golden\n").unwrap();
    // Several chunks of incompressible-ish data.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.join("big"), &big).unwrap();
}

fn import(repo: &Repository, src: &Path, name: &str) -> ImageRecord {
    let t = ImportTarget { image: name.parse().unwrap(), message: String::new(), parent: None };
    import_dir(repo, src, &t, &NoProgress).unwrap().0
}

fn new_bucket() -> Arc<dyn Bucket> {
    let b: Arc<dyn Bucket> = Arc::new(InMemory::new());
    Remote::with_store("mem://test", b.clone(), "site/a").unwrap().init_bucket().unwrap();
    b
}

#[test]
fn second_cache_syncs_and_fetches_lazily() {
    let t = tempfile::tempdir().unwrap();
    source(&t.path().join("src"));
    let bucket = new_bucket();
    let a = cache(&t.path().join("a"), &bucket);
    let rec = import(&a, &t.path().join("src"), "deb:1");
    let objects = a.packs().entries().unwrap();
    drop(a);

    let b = cache(&t.path().join("b"), &bucket);
    assert_eq!(b.images().unwrap(), vec![rec.clone()], "the ref is mirrored");
    let before = dir_usage(&t.path().join("b/packs"));
    assert!(before < 64 << 10, "nothing fetched at sync: {before}");
    // One object: only its record arrives.
    let (id0, e0) = objects.iter().find(|(_, e)| e.kind == ObjectKind::Chunk).unwrap();
    assert!(b.objects().get(e0.kind, id0).unwrap().is_some());
    let one = dir_usage(&t.path().join("b/packs"));
    assert!(one > before && one < before + u64::from(e0.stored_len) + (64 << 10), "{before} {one}");
    // Every object reads back, verified, from the second cache.
    for (id, e) in &objects {
        let got = b.objects().get(e.kind, id).unwrap().unwrap();
        assert_eq!(e.kind.hash(&got), *id);
    }
    // A second read is served from the cache (a reopened reader, same bytes).
    drop(b);
    let r = Remote::with_store("mem://test", bucket.clone(), "site/a").unwrap();
    let b = Repository::open_with(&t.path().join("b"), false, Some(r)).unwrap();
    assert!(b.objects().get(e0.kind, id0).unwrap().is_some());
}

#[test]
fn damaged_remote_record_is_an_error_never_data() {
    let t = tempfile::tempdir().unwrap();
    source(&t.path().join("src"));
    let bucket = new_bucket();
    let a = cache(&t.path().join("a"), &bucket);
    import(&a, &t.path().join("src"), "deb:1");
    let (id, e) = a.packs().entries().unwrap().into_iter().find(|(_, e)| e.kind == ObjectKind::Chunk).unwrap();
    let name = a.remote().unwrap().pack_name(e.pack).unwrap();
    drop(a);
    // Flip one payload byte of that record in the bucket's pack.
    flip(&bucket, &name, e.offset + 60);

    let b = cache(&t.path().join("b"), &bucket);
    for _ in 0..2 {
        match b.objects().get(e.kind, &id) {
            Err(Error::Damaged { id: bad, why: DamageKind::HashMismatch, .. }) => assert_eq!(bad, id),
            other => panic!("expected damage, got {other:?}"),
        }
    }
    // The publishing host's cache holds good bytes; verify checks the bucket.
    let r = Remote::with_store("mem://test", bucket.clone(), "site/a").unwrap();
    let a = Repository::open_with(&t.path().join("a"), false, Some(r)).unwrap();
    let report = crate::verify::verify(&a, &NoProgress).unwrap();
    assert!(report.problems.iter().any(|p| p.store == "bucket" && p.path.ends_with(&format!("{name}.pack"))), "{:?}", report.problems);
}

#[test]
fn concurrent_publishers_of_one_version_one_wins() {
    let t = tempfile::tempdir().unwrap();
    source(&t.path().join("src"));
    std::fs::create_dir_all(t.path().join("src2")).unwrap();
    std::fs::write(t.path().join("src2/other"), b"another image").unwrap();
    let bucket = new_bucket();
    let a = cache(&t.path().join("a"), &bucket);
    let b = cache(&t.path().join("b"), &bucket);
    let ta = ImportTarget { image: "web:1".parse().unwrap(), message: "a".into(), parent: None };
    let tb = ImportTarget { image: "web:1".parse().unwrap(), message: "b".into(), parent: None };
    let (ra, rb) = std::thread::scope(|s| {
        let ja = s.spawn(|| import_dir(&a, &t.path().join("src"), &ta, &NoProgress).map(|r| r.0));
        let jb = s.spawn(|| import_dir(&b, &t.path().join("src2"), &tb, &NoProgress).map(|r| r.0));
        (ja.join().unwrap(), jb.join().unwrap())
    });
    let won = match (&ra, &rb) {
        (Ok(w), Err(Error::ImageExists(l))) | (Err(Error::ImageExists(l)), Ok(w)) => {
            assert_eq!(l, "web:1");
            w.clone()
        }
        other => panic!("exactly one publisher must win: {other:?}"),
    };
    drop((a, b));
    let c = cache(&t.path().join("c"), &bucket);
    assert_eq!(c.images().unwrap(), vec![won], "the winner's record is the bucket's");
}

#[test]
fn gc_marks_then_sweeps_after_the_grace() {
    let t = tempfile::tempdir().unwrap();
    source(&t.path().join("src"));
    let bucket = new_bucket();
    let a = cache(&t.path().join("a"), &bucket);
    let rec = import(&a, &t.path().join("src"), "deb:1");
    a.delete_image(&rec.label().parse().unwrap()).unwrap();
    let long = super::gc::collect(&a, Duration::from_secs(3600), false).unwrap();
    assert_eq!((long.packs, long.live, long.marked.len(), long.swept.len()), (1, 0, 1, 0));
    // Within the grace: marked again, nothing swept.
    let again = super::gc::collect(&a, Duration::from_secs(3600), false).unwrap();
    assert!(again.swept.is_empty());
    let swept = super::gc::collect(&a, Duration::ZERO, false).unwrap();
    assert_eq!(swept.swept, long.marked);
    drop(a);
    let b = cache(&t.path().join("b"), &bucket);
    assert!(b.packs().entries().unwrap().is_empty() && b.images().unwrap().is_empty());
}

#[test]
fn gc_keeps_what_a_ref_reaches_and_a_republish_survives_a_mark() {
    let t = tempfile::tempdir().unwrap();
    source(&t.path().join("src"));
    let bucket = new_bucket();
    let a = cache(&t.path().join("a"), &bucket);
    let one = import(&a, &t.path().join("src"), "deb:1");
    a.delete_image(&one.label().parse().unwrap()).unwrap();
    let marked = super::gc::collect(&a, Duration::from_secs(3600), false).unwrap();
    assert_eq!(marked.marked.len(), 1);
    // The same content again: its objects are copied out of the marked pack.
    let two = import(&a, &t.path().join("src"), "deb:2");
    // The old pack holds objects deb:2 reaches: live again, kept whole.
    let rep = super::gc::collect(&a, Duration::ZERO, false).unwrap();
    assert!(rep.swept.is_empty() && rep.marked.is_empty(), "{rep:?}");
    assert_eq!(rep.live, 2, "the old pack and the copy");
    drop(a);
    let b = cache(&t.path().join("b"), &bucket);
    assert_eq!(b.images().unwrap(), vec![two.clone()]);
    let mut seen = std::collections::HashSet::new();
    crate::reach::mark(b.objects(), &two.root_tree(), &mut seen).unwrap();
    for (id, e) in b.packs().entries().unwrap() {
        assert!(b.objects().get(e.kind, &id).unwrap().is_some());
    }
    assert!(!seen.is_empty());
}

#[test]
fn local_filesystem_bucket_through_a_linked_cache() {
    let t = tempfile::tempdir().unwrap();
    source(&t.path().join("src"));
    let dir = t.path().join("bucket");
    std::fs::create_dir(&dir).unwrap();
    let url: RemoteUrl = format!("file://{}", dir.display()).parse().unwrap();
    let r = Remote::connect(&url).unwrap();
    super::prepare_cache(&t.path().join("a"), &url, &r, true).unwrap();
    assert!(matches!(Remote::connect(&url).unwrap().init_bucket(), Err(Error::DestinationNotEmpty(_))));
    let a = Repository::open(&t.path().join("a"), true).unwrap();
    assert!(a.remote().is_some(), "the link makes it a cache");
    let rec = import(&a, &t.path().join("src"), "deb:1");
    let objects = a.packs().entries().unwrap();
    drop(a);
    super::prepare_cache(&t.path().join("b"), &url, &Remote::connect(&url).unwrap(), false).unwrap();
    let b = Repository::open(&t.path().join("b"), true).unwrap();
    assert_eq!(b.images().unwrap(), vec![rec]);
    for (id, e) in objects {
        assert!(b.objects().get(e.kind, &id).unwrap().is_some());
    }
    // A directory holding anything else is never taken (nor emptied).
    std::fs::create_dir(t.path().join("c")).unwrap();
    std::fs::write(t.path().join("c/keep"), b"user data").unwrap();
    assert!(matches!(super::prepare_cache(&t.path().join("c"), &url, &Remote::connect(&url).unwrap(), false), Err(Error::DestinationNotEmpty(_))));
    assert_eq!(std::fs::read(t.path().join("c/keep")).unwrap(), b"user data");
    // Another bucket's cache is refused.
    let other: RemoteUrl = format!("file://{}", t.path().display()).parse().unwrap();
    assert!(matches!(super::prepare_cache(&t.path().join("b"), &other, &Remote::connect(&other).unwrap(), false), Err(Error::NotARepository(_))));
}

#[test]
fn a_bounded_cache_evicts_and_fetches_again() {
    let t = tempfile::tempdir().unwrap();
    source(&t.path().join("src"));
    let bucket = new_bucket();
    let a = cache(&t.path().join("a"), &bucket);
    import(&a, &t.path().join("src"), "deb:1");
    drop(a);
    let b = cache(&t.path().join("b"), &bucket);
    b.remote().unwrap().set_cache_limit(64 << 10);
    let objects = b.packs().entries().unwrap();
    for _ in 0..2 {
        for (id, e) in &objects {
            assert!(b.objects().get(e.kind, id).unwrap().is_some());
        }
        // Evicted along the way: far less than the 3 MB read is kept.
        let kept = dir_usage(&t.path().join("b/packs"));
        assert!(kept < 1 << 20, "kept {kept}");
    }
    // A record cut under a reader (header kept, payload gone) is healed.
    b.remote().unwrap().set_cache_limit(1 << 40);
    let (id, e) = objects.iter().max_by_key(|(_, e)| e.stored_len).unwrap();
    assert!(b.objects().get(e.kind, id).unwrap().is_some());
    let before = dir_usage(&t.path().join("b/packs"));
    let pack = b.packs().pack_path(e.pack);
    super::punch(&pack, e.offset + 48, u64::from(e.stored_len)).unwrap();
    assert!(dir_usage(&t.path().join("b/packs")) < before, "the payload was cut");
    assert_eq!(b.objects().get(e.kind, id).unwrap().map(|v| e.kind.hash(&v)), Some(*id));
}

#[test]
fn channels_move_in_the_bucket_and_other_caches_follow() {
    let t = tempfile::tempdir().unwrap();
    source(&t.path().join("src"));
    let bucket = new_bucket();
    let a = cache(&t.path().join("a"), &bucket);
    let one = import(&a, &t.path().join("src"), "deb:1");
    std::fs::write(t.path().join("src/etc/hostname"), b"second\n").unwrap();
    let two = import(&a, &t.path().join("src"), "deb:2");
    a.set_channel(&"deb:1".parse().unwrap(), "stable").unwrap();
    drop(a);
    let b = cache(&t.path().join("b"), &bucket);
    assert_eq!(b.resolve_name("deb:stable").unwrap(), one);
    // Moved on b (a conditional update of what a wrote), seen by a again.
    let ch = b.set_channel(&"deb:2".parse().unwrap(), "stable").unwrap();
    assert_eq!((ch.version, ch.history.len()), (2, 1));
    drop(b);
    let a = cache_reopen(&t.path().join("a"), &bucket);
    assert_eq!(a.resolve_name("deb:stable").unwrap(), two);
    assert_eq!(a.channels("deb").unwrap()[0].history.len(), 1);
}

/// Many small records, each file one chunk.
fn small_files(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..n {
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_add(f * 7919).wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        std::fs::write(dir.join(format!("f{f:04}")), data).unwrap();
    }
}

/// `n` small files published from cache `a` under `t`: the bucket, the
/// records in pack order, and their remote pack names.
fn published_small_files(t: &Path, n: u32) -> (Arc<dyn Bucket>, Vec<(crate::digest::Digest, crate::object::IndexEntry)>, std::collections::HashMap<u32, String>) {
    small_files(&t.join("src"), n);
    let bucket = new_bucket();
    let a = cache(&t.join("a"), &bucket);
    import(&a, &t.join("src"), "many:1");
    let mut objects = a.packs().entries().unwrap();
    objects.sort_by_key(|(_, e)| (e.pack, e.offset));
    let names = a.remote().unwrap().known_packs();
    (bucket, objects, names)
}

/// Flip a bit of the byte at `at` of remote pack `name` in the bucket.
fn flip(bucket: &Arc<dyn Bucket>, name: &str, at: u64) {
    let p = Remote::with_store("mem://test", bucket.clone(), "site/a").unwrap().path(&format!("packs/{name}.pack"));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut bytes = rt.block_on(async { bucket.get(&p).await.unwrap().bytes().await.unwrap() }).to_vec();
    bytes[at as usize] ^= 0x40;
    rt.block_on(bucket.put(&p, bytes.into())).unwrap();
}

#[test]
fn reads_in_pack_order_get_read_ahead_and_random_reads_do_not() {
    let t = tempfile::tempdir().unwrap();
    let (bucket, objects, _) = published_small_files(t.path(), 300);
    assert!(objects.len() > 300, "{} records", objects.len());

    // In pack order: the window grows, far fewer requests than records.
    let b = cache(&t.path().join("b"), &bucket);
    let (_, r0) = b.remote().unwrap().fetched();
    for (id, e) in &objects {
        let got = b.objects().get(e.kind, id).unwrap().unwrap();
        assert_eq!(e.kind.hash(&got), *id);
    }
    let (_, r1) = b.remote().unwrap().fetched();
    assert!((r1 - r0) * 10 < objects.len() as u64, "{} requests for {} records read in order", r1 - r0, objects.len());

    // Every other record, backwards: one request and its bytes each.
    let c = cache(&t.path().join("c"), &bucket);
    let (b0, r0) = c.remote().unwrap().fetched();
    let picked: Vec<_> = objects.iter().rev().step_by(2).collect();
    for (id, e) in &picked {
        assert!(c.objects().get(e.kind, id).unwrap().is_some());
    }
    let (b1, r1) = c.remote().unwrap().fetched();
    let want: u64 = picked.iter().map(|(_, e)| crate::object::RECORD_HEADER_LEN as u64 + u64::from(e.stored_len)).sum();
    assert_eq!((r1 - r0, b1 - b0), (picked.len() as u64, want), "random reads fetch exactly their records");
    // What read-ahead brought in is served from the cache: no request.
    let (_, r2) = b.remote().unwrap().fetched();
    for (id, e) in objects.iter().take(50) {
        assert!(b.objects().get(e.kind, id).unwrap().is_some());
    }
    assert_eq!(b.remote().unwrap().fetched().1, r2);
}

#[test]
fn a_damaged_record_in_the_read_ahead_is_not_kept() {
    let t = tempfile::tempdir().unwrap();
    let (bucket, objects, names) = published_small_files(t.path(), 40);
    // Flip a payload byte of the 10th record in the bucket's pack.
    let (bad_id, bad) = objects[10];
    flip(&bucket, &names[&bad.pack], bad.offset + crate::object::RECORD_HEADER_LEN as u64 + 3);

    let b = cache(&t.path().join("b"), &bucket);
    for (id, e) in &objects[..10] {
        assert!(b.objects().get(e.kind, id).unwrap().is_some());
    }
    // Fetched again on its own (the read-ahead dropped it), and refused.
    match b.objects().get(bad.kind, &bad_id) {
        Err(Error::Damaged { why: DamageKind::HashMismatch, .. }) => {}
        other => panic!("a damaged record read as {other:?}"),
    }
    for (id, e) in &objects[11..] {
        assert!(b.objects().get(e.kind, id).unwrap().is_some());
    }
}

fn cache_reopen(dir: &Path, bucket: &Arc<dyn Bucket>) -> Repository {
    let r = Remote::with_store("mem://test", bucket.clone(), "site/a").unwrap();
    Repository::open_with(dir, true, Some(r)).unwrap()
}

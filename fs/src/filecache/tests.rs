use super::*;
use crate::object::MemStore;
use crate::tree::file::ContentBuilder;

fn pattern(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

/// A sparse file: 300 KiB of data at 0, a hole, 100 KiB at 1 MiB; 2 MiB long.
fn sparse(store: &MemStore) -> (Content, u64, Vec<u8>) {
    let size = 2 << 20;
    let mut want = vec![0u8; size as usize];
    let mut b = ContentBuilder::new(store);
    for (off, d) in [(0u64, pattern(1, 300 << 10)), (1 << 20, pattern(2, 100 << 10))] {
        b.push(off, &d).unwrap();
        want[off as usize..off as usize + d.len()].copy_from_slice(&d);
    }
    (b.finish(size).unwrap(), size, want)
}

fn cache(dir: &Path, budget: u64) -> FileCache {
    FileCache::open(dir, budget).unwrap()
}

#[test]
fn fills_verifies_and_serves_the_same_file() {
    let t = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let (content, size, want) = sparse(&store);
    let c = cache(t.path(), 1 << 30);
    let f = c.get(&store, &content, size).unwrap().expect("cached");
    assert_eq!(read_all(&f), want);
    // Another process (a fresh cache object) verifies the file and serves it.
    let c2 = cache(t.path(), 1 << 30);
    let g = c2.get(&store, &content, size).unwrap().expect("cached");
    assert_eq!(read_all(&g), want);
    assert_eq!(id(&f), id(&g), "the same cached file, not a second fill");
    // Holes stay holes on the host.
    use std::os::unix::fs::MetadataExt;
    assert!(g.metadata().unwrap().blocks() * 512 < size, "the cached file filled its holes");
}

#[test]
fn a_damaged_cached_file_is_refilled_never_served() {
    let t = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let (content, size, want) = sparse(&store);
    let path = {
        let c = cache(t.path(), 1 << 30);
        let f = c.get(&store, &content, size).unwrap().unwrap();
        drop(f);
        c.scan().pop().unwrap().0
    };
    for (what, off, byte) in [("a flipped data byte", 1000u64, 0xffu8), ("a byte in a hole", 600 << 10, 1)] {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let mut b = [0u8; 1];
        File::open(&path).unwrap().read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[b[0] ^ byte], off).unwrap();
        drop(f);
        let c = cache(t.path(), 1 << 30);
        let g = c.get(&store, &content, size).unwrap().expect("refilled");
        assert!(read_all(&g) == want, "{what} was served");
    }
    // Truncated.
    OpenOptions::new().write(true).open(&path).unwrap().set_len(10).unwrap();
    let c = cache(t.path(), 1 << 30);
    assert_eq!(read_all(&c.get(&store, &content, size).unwrap().unwrap()), want);
}

#[test]
fn concurrent_fillers_publish_one_whole_file() {
    let t = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let (content, size, want) = sparse(&store);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let c = cache(t.path(), 1 << 30);
                for _ in 0..5 {
                    if let Some(f) = c.get(&store, &content, size).unwrap() {
                        assert!(read_all(&f) == want, "a filler was handed a file that is not the image file");
                    }
                }
            });
        }
    });
    let c = cache(t.path(), 1 << 30);
    assert_eq!(c.scan().len(), 1);
    assert_eq!(std::fs::read_dir(t.path().join("tmp")).unwrap().count(), 0, "temporaries left behind");
}

#[test]
fn a_crashed_fills_temporary_is_removed_and_never_used() {
    let t = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let (content, size, want) = sparse(&store);
    drop(cache(t.path(), 1 << 30));
    std::fs::write(t.path().join("tmp/half.123"), b"half a file").unwrap();
    let c = cache(t.path(), 1 << 30);
    assert_eq!(std::fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
    assert_eq!(read_all(&c.get(&store, &content, size).unwrap().unwrap()), want);
}

#[test]
fn eviction_keeps_the_cache_within_its_budget() {
    let t = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let c = cache(t.path(), 4 << 20);
    let mut files = Vec::new();
    for i in 0..8u8 {
        let d = pattern(i + 10, 1 << 20);
        let mut b = ContentBuilder::new(&store);
        b.push(0, &d).unwrap();
        let content = b.finish(1 << 20).unwrap();
        let f = c.get(&store, &content, 1 << 20).unwrap().unwrap();
        // An open descriptor keeps its bytes even if the file is evicted.
        files.push((f, d));
        let held: u64 = c.scan().iter().map(|f| f.1).sum();
        assert!(held <= (4 << 20) + (1 << 20), "cache holds {held} bytes");
    }
    for (f, d) in &files {
        assert_eq!(&read_all(f), d);
    }
    assert!(c.scan().len() < 8, "nothing was evicted");
}

#[test]
fn files_without_bytes_are_not_cached() {
    let t = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let c = cache(t.path(), 1 << 30);
    assert!(c.get(&store, &Content::None, 0).unwrap().is_none());
}

#[test]
fn files_past_a_quarter_of_the_budget_are_left_to_the_daemon() {
    let t = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let (content, size, _) = sparse(&store);
    let c = cache(t.path(), 4 * size - 1);
    assert!(c.get(&store, &content, size).unwrap().is_none());
    let c = cache(t.path(), 4 * size);
    assert!(c.get(&store, &content, size).unwrap().is_some());
}

//! Round-trip and canonicality tests for trees and file content.

use super::file::*;
use super::*;
use crate::chunker::CHUNK_SIZE;
use crate::object::MemStore;
use proptest::collection::vec;
use proptest::prelude::*;

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..40).prop_filter("valid name", |n| valid_name(n))
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        (arb_name(), 1u8..=7, 0u32..=0o7777, any::<u32>(), any::<u32>(), any::<i64>()),
        0u32..1_000_000_000,
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        vec((vec(any::<u8>(), 1..20), vec(any::<u8>(), 0..50)), 0..4),
        vec(any::<u8>(), 0..60),
        proptest::array::uniform32(any::<u8>()),
    )
        .prop_map(|((name, k, mode, uid, gid, sec), nsec, size, rdev, link, xattrs, target, id)| {
            let kind = Kind::from_u8(k).unwrap_or(Kind::File);
            let content = match kind {
                Kind::Dir => Content::Tree(TreeId(Digest(id))),
                Kind::File if id[0] % 3 == 0 => Content::None,
                Kind::File if id[0] % 3 == 1 => Content::Chunk(ChunkId(Digest(id))),
                Kind::File => Content::File(FileId(Digest(id))),
                _ => Content::None,
            };
            let mut xattrs = xattrs;
            xattrs.sort();
            xattrs.dedup_by(|a, b| a.0 == b.0);
            let links = if link == 0 { 0 } else { (link % 7 + 1) as u32 };
            Entry { name, kind, mode, uid, gid, mtime: Timestamp { sec, nsec }, size, rdev, link, links, xattrs, target, content }
        })
}

proptest! {
    #[test]
    fn tree_round_trips_and_is_canonical(entries in vec(arb_entry(), 0..20)) {
        let mut t = Tree { entries };
        t.sort();
        t.entries.dedup_by(|a, b| a.name == b.name);
        let bytes = t.encode();
        let back = Tree::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn file_content_round_trips(pieces in vec((0u64..300_000, vec(any::<u8>(), 1..100_000)), 0..6), tail in 0u64..100_000) {
        // Build a sparse file image in memory from non-overlapping pieces.
        let mut pieces = pieces;
        pieces.sort_by_key(|p| p.0);
        let mut image = Vec::new();
        let mut runs = Vec::new();
        let mut pos = 0u64;
        for (gap, data) in pieces {
            let off = pos + gap;
            image.resize(off as usize, 0);
            image.extend_from_slice(&data);
            runs.push((off, data));
            pos = image.len() as u64;
        }
        let size = pos + tail;
        image.resize(size as usize, 0);
        let store = MemStore::new();
        let mut b = ContentBuilder::new(&store);
        for (off, data) in &runs {
            b.push(*off, data).unwrap();
        }
        let content = b.finish(size).unwrap();
        let mut out = Vec::new();
        read_all(&store, &content, size, &mut |d| { out.extend_from_slice(d); Ok(()) }).unwrap();
        prop_assert_eq!(out, image);
        for (off, len, _) in leaf_extents(&store, &content, size).unwrap() {
            prop_assert!(len <= CHUNK_SIZE);
            prop_assert_eq!(off / CHUNK_SIZE, (off + len - 1) / CHUNK_SIZE);
        }
    }
}

#[test]
fn decode_rejects_unsorted_and_bad_names() {
    let mut a = Entry::new(b"b".to_vec(), Kind::Fifo);
    a.mode = 0o644;
    let b = Entry::new(b"a".to_vec(), Kind::Fifo);
    let t = Tree { entries: vec![a.clone(), b] };
    assert!(Tree::decode(&t.encode()).is_err(), "unsorted entries must be rejected");
    let t = Tree { entries: vec![Entry::new(b"x/y".to_vec(), Kind::Fifo)] };
    assert!(Tree::decode(&t.encode()).is_err(), "a name with / must be rejected");
    let t = Tree { entries: vec![Entry::new(b"..".to_vec(), Kind::Fifo)] };
    assert!(Tree::decode(&t.encode()).is_err(), ".. must be rejected");
    let mut bad = a;
    bad.content = Content::Tree(TreeId(Digest([1; 32])));
    assert!(Tree::decode(&Tree { entries: vec![bad] }.encode()).is_err(), "a fifo with a listing");
}

#[test]
fn large_file_gets_an_index_level_and_one_chunk_change_is_local() {
    let store = MemStore::new();
    let n = FANOUT as u64 + 10;
    let mut b = ContentBuilder::new(&store);
    for i in 0..n {
        let mut chunk = vec![0u8; CHUNK_SIZE as usize];
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        b.push(i * CHUNK_SIZE, &chunk).unwrap();
    }
    let size = n * CHUNK_SIZE;
    let c1 = b.finish(size).unwrap();
    let Content::File(top) = c1 else { panic!("expected an index") };
    let idx = FileIndex::decode(&store.get(ObjectKind::FileIndex, &top.0).unwrap().unwrap()).unwrap();
    assert_eq!(idx.extents.len(), 2, "two leaves under the top index");
    assert!(idx.extents.iter().all(|e| matches!(e.target, Target::Index(_))));
    assert_eq!(leaf_extents(&store, &c1, size).unwrap().len() as u64, n);
}

#[test]
fn root_tree_and_lookup() {
    let store = MemStore::new();
    let mut f = Entry::new(b"hello".to_vec(), Kind::File);
    let mut cb = ContentBuilder::new(&store);
    cb.push(0, b"hi").unwrap();
    f.content = cb.finish(2).unwrap();
    f.size = 2;
    let sub = Tree { entries: vec![f] }.store(&store).unwrap();
    let mut d = Entry::new(b"etc".to_vec(), Kind::Dir);
    d.content = Content::Tree(sub);
    let top = Tree { entries: vec![d] }.store(&store).unwrap();
    let mut root = Entry::new(Vec::new(), Kind::Dir);
    root.mode = 0o755;
    root.content = Content::Tree(top);
    let rid = store_root(&store, root.clone()).unwrap();
    assert_eq!(load_root(&store, &rid).unwrap(), root);
    assert_eq!(lookup(&store, &rid, b"/etc/hello").unwrap().unwrap().size, 2);
    assert!(lookup(&store, &rid, b"etc/nope").unwrap().is_none());
    assert!(lookup(&store, &rid, b"etc/hello/x").unwrap().is_none());
}

#[test]
fn sparse_and_dense_forms_of_the_same_bytes_are_the_same() {
    let store = MemStore::new();
    let size = 5 * CHUNK_SIZE + 7;
    let mut sparse = ContentBuilder::new(&store);
    sparse.push(10, b"data").unwrap();
    sparse.push(3 * CHUNK_SIZE + 100, b"more").unwrap();
    let sparse = sparse.finish(size).unwrap();
    let mut image = vec![0u8; size as usize];
    image[10..14].copy_from_slice(b"data");
    image[(3 * CHUNK_SIZE + 100) as usize..(3 * CHUNK_SIZE + 104) as usize].copy_from_slice(b"more");
    let mut dense = ContentBuilder::new(&store);
    dense.push(0, &image).unwrap();
    let dense = dense.finish(size).unwrap();
    assert!(same_bytes(&store, &sparse, &dense, size).unwrap());
    image[11] = b'X';
    let mut changed = ContentBuilder::new(&store);
    changed.push(0, &image).unwrap();
    let changed = changed.finish(size).unwrap();
    assert!(!same_bytes(&store, &sparse, &changed, size).unwrap());
}

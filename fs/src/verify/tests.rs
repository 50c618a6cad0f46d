use super::*;
use crate::digest::{ChunkId, ImageId};
use crate::object::put_object;
use crate::repo::ImageRecord;
use crate::tree::{Content, Entry, Kind, Timestamp, Tree};

fn entry(name: &[u8], kind: Kind, content: Content, size: u64) -> Entry {
    Entry { name: name.to_vec(), kind, mode: 0o755, uid: 0, gid: 0, mtime: Timestamp::default(), size, rdev: 0, link: 0, links: 0, xattrs: Vec::new(), target: Vec::new(), content }
}

/// A chain of `depth` directories `d/d/…/d/f`, `f` one chunk; its root.
fn deep_image(repo: &Repository, depth: usize) -> (TreeId, Digest) {
    let store = repo.objects();
    let leaf = b"leaf data".to_vec();
    let chunk = put_object(store, ObjectKind::Chunk, &leaf).unwrap();
    let mut tree = Tree { entries: vec![entry(b"f", Kind::File, Content::Chunk(ChunkId(chunk)), leaf.len() as u64)] }.store(store).unwrap();
    for _ in 0..depth {
        tree = Tree { entries: vec![entry(b"d", Kind::Dir, Content::Tree(tree), 0)] }.store(store).unwrap();
    }
    let root = crate::tree::store_root(store, entry(b"", Kind::Dir, Content::Tree(tree), 0)).unwrap();
    store.flush().unwrap();
    let rec = ImageRecord { name: "deep".into(), version: 1, root: ImageId(root), parent: None, created: 0, message: String::new(), files: 0, logical_bytes: 0, volume: false };
    repo.publish(&rec).unwrap();
    (root, chunk)
}

#[test]
fn a_tree_100000_levels_deep_is_walked_without_recursion_and_a_missing_leaf_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r");
    let depth = 100_000;
    let chunk = {
        let repo = Repository::init(&p).unwrap();
        let (_, chunk) = deep_image(&repo, depth);
        let report = verify(&repo, &crate::import::NoProgress).unwrap();
        assert!(report.clean(), "{:?}", report.damaged);
        assert_eq!(report.objects, depth as u64 + 3);
        chunk
    };
    // Drop the leaf's index entry: verify must name its 100,000-deep path.
    {
        let repo = Repository::open(&p, true).unwrap();
        let cf = repo.cf(crate::repo::CF_OBJECTS).unwrap();
        repo.db().delete_cf(cf, chunk.as_bytes()).unwrap();
    }
    let repo = Repository::open(&p, false).unwrap();
    let report = verify(&repo, &crate::import::NoProgress).unwrap();
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    let d = &report.damaged[0];
    assert_eq!((d.object, d.problem.as_str(), d.store.as_str()), (chunk, "missing", "repository"));
    let want = format!("deep:1:{}/f", "/d".repeat(depth));
    assert_eq!(d.referenced_by, vec![want]);
}

#[test]
fn damage_marks_make_put_write_again_and_rewrite_repoints() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(&dir.path().join("r")).unwrap();
    let packs = repo.packs();
    let bytes = b"some chunk".repeat(100);
    let id = put_object(repo.objects(), ObjectKind::Chunk, &bytes).unwrap();
    repo.objects().flush().unwrap();
    let first = packs.entry(&id).unwrap().unwrap();
    assert!(!repo.objects().put(ObjectKind::Chunk, &id, &bytes).unwrap(), "deduplicated while unmarked");
    packs.set_damaged_marks(&[id].into_iter().collect()).unwrap();
    assert!(packs.marked_damaged(&id).unwrap());
    assert!(repo.objects().put(ObjectKind::Chunk, &id, &bytes).unwrap(), "a marked id is written again");
    repo.objects().flush().unwrap();
    let second = packs.entry(&id).unwrap().unwrap();
    assert_ne!((first.pack, first.offset), (second.pack, second.offset), "the index entry points at the new record");
    packs.rewrite(ObjectKind::Chunk, &id, &bytes).unwrap();
    repo.objects().flush().unwrap();
    assert_eq!(repo.objects().get(ObjectKind::Chunk, &id).unwrap().unwrap(), bytes);
    packs.set_damaged_marks(&Default::default()).unwrap();
    assert!(packs.damaged_marks().unwrap().is_empty());
}

//! Trees 100,000 levels deep through every traversal of the library: reach,
//! walk, diff, tar import and export, export to and import from a directory,
//! and the fold of an overlay. None may recurse per level (the default 8 MiB main-thread
//! stack, and 2 MiB test threads, overflow after a few thousand frames).

use std::sync::Arc;

use crate::diff::{diff_trees, Change};
use crate::digest::{ObjectKind, TreeId};
use crate::export::{export_dir, export_tar};
use crate::import::tar::store_tar;
use crate::import::NoProgress;
use crate::object::{MemStore, ObjectStore};
use crate::overlay::ns::NewNode;
use crate::overlay::{Overlay, ROOT_INO};
use crate::tree::file::ContentBuilder;
use crate::tree::{store_root, Content, Entry, Kind, Tree};
use crate::walk::walk;

const DEPTH: usize = 100_000;

/// `/d/d/.../d/file` (`depth` directories), as a tar import of that one
/// path would store it: directories 0755 owned by root at time 0, the file
/// 0644 at time 0.
fn chain(store: &dyn ObjectStore, depth: usize, data: &[u8]) -> TreeId {
    let mut b = ContentBuilder::new(store);
    b.push(0, data).unwrap();
    let mut f = Entry::new(b"file".to_vec(), Kind::File);
    f.mode = 0o644;
    f.size = data.len() as u64;
    f.content = b.finish(f.size).unwrap();
    let mut t = Tree { entries: vec![f] };
    for _ in 0..depth {
        let mut d = Entry::new(b"d".to_vec(), Kind::Dir);
        d.mode = 0o755;
        d.content = Content::Tree(t.store(store).unwrap());
        t = Tree { entries: vec![d] };
    }
    let mut root = Entry::new(Vec::new(), Kind::Dir);
    root.mode = 0o755;
    root.content = Content::Tree(t.store(store).unwrap());
    store_root(store, root).unwrap()
}

fn bottom(depth: usize, leaf: &[u8]) -> Vec<u8> {
    let mut p = b"/d".repeat(depth);
    p.push(b'/');
    p.extend_from_slice(leaf);
    p
}

#[test]
fn reach_marks_every_level() {
    let s = MemStore::new();
    let root = chain(&s, DEPTH, b"x");
    let mut seen = std::collections::HashSet::new();
    crate::reach::mark(&s, &root, &mut seen).unwrap();
    // depth listings + the root's listing + the root tree + the chunk.
    assert_eq!(seen.len(), DEPTH + 3);
    let mut kinds = std::collections::HashMap::new();
    crate::reach::mark_kinds(&s, &root, &mut kinds).unwrap();
    assert_eq!(kinds.len(), DEPTH + 3);
    assert_eq!(kinds.values().filter(|k| **k == ObjectKind::Chunk).count(), 1);
}

#[test]
fn walk_visits_every_level_in_order() {
    let s = MemStore::new();
    let root = chain(&s, DEPTH, b"x");
    let (mut n, mut last) = (0, Vec::new());
    walk(&s, &root, &mut |p, _| {
        n += 1;
        last = p.to_vec();
        Ok(())
    })
    .unwrap();
    assert_eq!(n, DEPTH + 2);
    assert_eq!(last, bottom(DEPTH, b"file"));
}

#[test]
fn diff_of_two_deep_trees_names_only_the_bottom() {
    let s = MemStore::new();
    let a = chain(&s, DEPTH, b"one");
    let b = chain(&s, DEPTH, b"two");
    let d = diff_trees(&s, &a, &b).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].path.clone(), d[0].change), (bottom(DEPTH, b"file"), Change::Content));
    // An added deep subtree lists every level (kept small: each row holds
    // its whole path).
    let empty = {
        let mut root = Entry::new(Vec::new(), Kind::Dir);
        root.mode = 0o755;
        root.content = Content::Tree(Tree::default().store(&s).unwrap());
        store_root(&s, root).unwrap()
    };
    let added = diff_trees(&s, &empty, &chain(&s, 2_000, b"x")).unwrap();
    assert_eq!(added.len(), 2_001);
    assert!(added.iter().all(|e| e.change == Change::Added));
    assert_eq!(added[2_000].path, bottom(2_000, b"file"));
}

/// A tar stream of the single path `d/.../d/file`, `depth` levels down.
fn deep_tar(depth: usize, data: &[u8], end: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    let mut p = "d/".repeat(depth);
    p.push_str("file");
    b.append_data(&mut h, p, data).unwrap();
    if end {
        b.into_inner().unwrap()
    } else {
        b.get_ref().clone()
    }
}

#[test]
fn tar_import_builds_and_drops_deep_trees() {
    let s = MemStore::new();
    let (root, stats) = store_tar(&s, &deep_tar(DEPTH, b"x", true)[..], &NoProgress).unwrap();
    assert_eq!(root, chain(&s, DEPTH, b"x"));
    assert_eq!(stats.entries, DEPTH as u64 + 2);
    // Cut short: refused, and the half-built tree is dropped without recursion.
    assert!(store_tar(&s, &deep_tar(DEPTH, b"x", false)[..], &NoProgress).is_err());
}

#[test]
fn tar_export_and_reimport_round_trip() {
    // 3,000 levels: a tar holds every entry's whole path (size grows with
    // the square of the depth), and the walk is what this checks.
    let s = MemStore::new();
    let root = chain(&s, 3_000, b"x");
    let mut out = Vec::new();
    let st = export_tar(&s, &root, &mut out, &NoProgress).unwrap();
    assert_eq!(st.entries, 3_002);
    let (back, _) = store_tar(&s, &out[..], &NoProgress).unwrap();
    assert_eq!(back, root);
}

#[test]
fn export_to_a_directory_and_import_back_far_past_path_max() {
    let s = MemStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // 20,000 levels: paths of 40 KB, ten times PATH_MAX (100,000 run in
    // tests/tests/deep.rs; here the kernel's work would dominate).
    const D: usize = 20_000;
    let root = chain(&s, D, b"x");
    let st = export_dir(&s, &root, &out, &NoProgress).unwrap();
    assert_eq!(st.entries, D as u64 + 2);
    let (back, stats) = crate::import::dir::store_dir(&s, &out, &NoProgress).unwrap();
    assert_eq!(stats.entries, D as u64 + 2);
    assert_eq!(back, root);
    // GNU rm removes a tree of any depth.
    let rm = std::process::Command::new("rm").arg("-rf").arg(&out).status().unwrap();
    assert!(rm.success());
}

#[test]
fn fold_of_a_deep_overlay_and_its_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let image = {
        let mut root = Entry::new(Vec::new(), Kind::Dir);
        root.mode = 0o755;
        root.content = Content::Tree(Tree::default().store(&*store).unwrap());
        store_root(&*store, root).unwrap()
    };
    let ov = Overlay::open(&tmp.path().join("ov"), store.clone(), image).unwrap();
    let dir = NewNode { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, rdev: 0, target: b"" };
    let mut parent = ROOT_INO;
    for _ in 0..DEPTH {
        parent = ov.create(parent, b"d", NewNode { ..dir }).unwrap().0;
    }
    let fold = |ov: &Overlay| {
        let mut st = ov.lock();
        let (root, memo) = crate::guest::fold::fold(ov, &mut st, &*store).unwrap();
        ov.apply_memo(&mut st, memo).unwrap();
        root
    };
    let before = fold(&ov);
    let (file, _) = ov.create(parent, b"file", NewNode { kind: Kind::File, mode: 0o644, ..dir }).unwrap();
    ov.write(file, 0, b"bottom").unwrap();
    let after = fold(&ov);
    let d = diff_trees(&*store, &before, &after).unwrap();
    let got: Vec<(Vec<u8>, Change)> = d.into_iter().map(|e| (e.path, e.change)).collect();
    let mut dir_path = b"/d".repeat(DEPTH);
    let want = vec![(dir_path.clone(), Change::Metadata), ({ dir_path.extend_from_slice(b"/file"); dir_path }, Change::Added)];
    assert_eq!(got, want);
    let mut n = 0;
    walk(&*store, &after, &mut |_, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, DEPTH + 2);
}

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}
use crate::digest::{Digest, ObjectKind};
use crate::object::MemStore;
use crate::tree::file::ContentBuilder;
use crate::tree::store_root;

/// A root tree of files `path → content` (directories 0755, times 0).
fn build(store: &dyn ObjectStore, files: &[(&str, &str)]) -> TreeId {
    // dir path → its entries; directories filled deepest first.
    let mut dirs: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    dirs.insert(String::new(), Vec::new());
    for (p, c) in files {
        let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
        let mut d = String::new();
        for comp in dir.split('/').filter(|c| !c.is_empty()) {
            d = if d.is_empty() { comp.to_string() } else { format!("{d}/{comp}") };
            dirs.entry(d.clone()).or_default();
        }
        let mut e = Entry::new(name.as_bytes().to_vec(), Kind::File);
        e.mode = 0o644;
        e.size = c.len() as u64;
        let mut b = ContentBuilder::new(store);
        b.push(0, c.as_bytes()).unwrap();
        e.content = b.finish(e.size).unwrap();
        dirs.entry(dir.to_string()).or_default().push(e);
    }
    let mut order: Vec<String> = dirs.keys().cloned().collect();
    order.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count() + usize::from(!d.is_empty())));
    let mut ids: BTreeMap<String, TreeId> = BTreeMap::new();
    for d in order {
        let mut t = Tree { entries: dirs.remove(&d).unwrap() };
        let parent = |s: &str| s.rsplit_once('/').map_or("", |(p, _)| p).to_string();
        for (sub, id) in ids.iter().filter(|(s, _)| parent(s) == d) {
            let mut e = Entry::new(sub.rsplit('/').next().unwrap().as_bytes().to_vec(), Kind::Dir);
            e.mode = 0o755;
            e.content = Content::Tree(*id);
            t.entries.push(e);
        }
        t.sort();
        let id = t.store(store).unwrap();
        if d.is_empty() {
            let mut root = Entry::new(Vec::new(), Kind::Dir);
            root.mode = 0o755;
            root.content = Content::Tree(id);
            return store_root(store, root).unwrap();
        }
        ids.insert(d, id);
    }
    unreachable!("the root is always built last")
}

/// Counts tree reads.
struct Counting(MemStore, AtomicU64);
impl ObjectStore for Counting {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        if kind == ObjectKind::Tree {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
        self.0.get(kind, id)
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        self.0.contains(id)
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        self.0.put(kind, id, bytes)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

const BASE: &[(&str, &str)] = &[("a/x", "1"), ("a/y", "1"), ("b/z", "1"), ("top", "1")];

#[test]
fn disjoint_changes_merge_to_both() {
    let s = MemStore::new();
    let base = build(&s, BASE);
    let theirs = build(&s, &[("a/x", "2"), ("a/y", "1"), ("b/z", "1"), ("c/n", "1"), ("top", "1")]);
    let ours = build(&s, &[("a/x", "1"), ("a/y", "3"), ("top", "1"), ("mine", "m")]);
    let r = merge3(&s, &s, &base, &theirs, &ours, None, &HashSet::new()).unwrap();
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    let want = build(&s, &[("a/x", "2"), ("a/y", "3"), ("c/n", "1"), ("top", "1"), ("mine", "m")]);
    assert_eq!(r.root, want);
    // One side unchanged: the other side's root, nothing merged.
    assert_eq!(merge3(&s, &s, &base, &base, &ours, None, &HashSet::new()).unwrap().root, ours);
    assert_eq!(merge3(&s, &s, &base, &theirs, &base, None, &HashSet::new()).unwrap().root, theirs);
}

#[test]
fn both_sides_changing_a_path_is_a_conflict_resolved_only_by_prefer() {
    let s = MemStore::new();
    let base = build(&s, BASE);
    let theirs = build(&s, &[("a/x", "2"), ("a/y", "1"), ("top", "T")]);
    // Ours changes a/x too, and changes b/z where theirs removed b.
    let ours = build(&s, &[("a/x", "3"), ("a/y", "1"), ("b/z", "3"), ("top", "1")]);
    let none = HashSet::new();
    let r = merge3(&s, &s, &base, &theirs, &ours, None, &none).unwrap();
    assert_eq!(r.conflicts, vec![b"/a/x".to_vec(), b"/b".to_vec()]);
    let g = merge3(&s, &s, &base, &theirs, &ours, Some(Prefer::Guest), &none).unwrap();
    assert_eq!(g.root, build(&s, &[("a/x", "3"), ("a/y", "1"), ("b/z", "3"), ("top", "T")]));
    let i = merge3(&s, &s, &base, &theirs, &ours, Some(Prefer::Image), &none).unwrap();
    assert_eq!(i.root, build(&s, &[("a/x", "2"), ("a/y", "1"), ("top", "T")]));
    assert_eq!(i.conflicts.len(), 2, "resolved conflicts are still reported");
    let ignore: HashSet<Vec<u8>> = [b"/a/x".to_vec(), b"/b".to_vec()].into();
    assert!(merge3(&s, &s, &base, &theirs, &ours, None, &ignore).unwrap().conflicts.is_empty());
}

#[test]
fn cost_is_the_directories_both_sides_changed() {
    let s = Counting(MemStore::new(), AtomicU64::new(0));
    // A wide image: theirs changes a file deep in big/, ours one in small/.
    let mut files: Vec<(String, String)> = (0..200).map(|i| (format!("big/d{i}/f"), "1".to_string())).collect();
    files.push(("small/x".into(), "1".into()));
    let as_ref = |v: &[(String, String)]| v.to_vec();
    let base = build(&s, &refs(&files));
    let mut t = as_ref(&files);
    t[150].1 = "2".into();
    let theirs = build(&s, &refs(&t));
    let mut o = as_ref(&files);
    o[200].1 = "3".into();
    let ours = build(&s, &refs(&o));
    s.1.store(0, Ordering::Relaxed);
    let r = merge3(&s, &s, &base, &theirs, &ours, None, &HashSet::new()).unwrap();
    let reads = s.1.load(Ordering::Relaxed);
    let mut both = as_ref(&t);
    both[200].1 = "3".into();
    assert_eq!(r.root, build(&s, &refs(&both)));
    // The root trees and the root directory's listings: big/ and small/
    // are each taken whole from the side that changed them.
    assert_eq!(r.dirs_merged, 1);
    assert_eq!(reads, 6, "three root trees and three root listings, nothing below");
}

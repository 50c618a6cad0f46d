//! Three-way merge of root trees: `base` (the image a guest stands on),
//! `theirs` (a new version of it) and `ours` (the guest's state). Layer:
//! operations, over the object store only. `lvrepo rebase` uses it.
//!
//! Per entry (by name): a side that left it as `base` had it yields to the
//! other side; both sides making it the same is no conflict; a directory
//! present as a directory on both changed sides is merged below (its
//! attributes field by field, its mtime the later of the two); anything
//! else changed on both sides differently is a conflict at that path,
//! resolved by `prefer` or, without it, reported (the result then holds
//! ours there, and the caller must not use it).
//!
//! Cost: a subtree whose id `base` shares with one side is taken whole from
//! the other side without being read, so the merge reads only the
//! directories that both sides changed (and writes only those).
//! Iterative: directories being merged form an arena (parents before
//! children) and are stored in reverse; no recursion per tree level.

use std::collections::BTreeSet;
use std::collections::HashSet;

use crate::digest::TreeId;
use crate::error::Result;
use crate::object::ObjectStore;
use crate::tree::{Content, Entry, Kind, Tree};

/// Whose version wins a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    Guest,
    Image,
}

#[derive(Clone, Debug)]
pub struct MergeOutcome {
    /// The merged root tree (stored in `out`).
    pub root: TreeId,
    /// Paths changed on both sides differently (`/`-joined bytes, leading
    /// `/`), sorted; those `prefer` resolved too.
    pub conflicts: Vec<Vec<u8>>,
    /// Directories read and merged below the root (what the merge cost).
    pub dirs_merged: u64,
}

/// A directory being merged: its merged entries (sub-directories still
/// pointing at a placeholder until their own tree is stored).
struct Dir {
    name: Vec<u8>,
    parent: usize,
    /// Its entry's index in the parent's `entries`.
    slot: usize,
    entries: Vec<Entry>,
}

/// Merge `ours` and `theirs` against `base`, reading through `store` and
/// storing new trees in `out`. Conflicts at a path in `ignore` (the caller
/// rewrites those paths afterwards) are not reported.
pub fn merge3(store: &dyn ObjectStore, out: &dyn ObjectStore, base: &TreeId, theirs: &TreeId, ours: &TreeId, prefer: Option<Prefer>, ignore: &HashSet<Vec<u8>>) -> Result<MergeOutcome> {
    let mut res = MergeOutcome { root: *ours, conflicts: Vec::new(), dirs_merged: 0 };
    if let Some(t) = shortcut(base, theirs, ours) {
        res.root = t;
        return Ok(res);
    }
    // Node 0 is the root tree itself: a listing of one unnamed directory.
    let mut nodes = vec![Dir { name: Vec::new(), parent: 0, slot: 0, entries: Vec::new() }];
    let mut todo: Vec<(usize, [Option<TreeId>; 3])> = vec![(0, [Some(*base), Some(*theirs), Some(*ours)])];
    while let Some((at, [b, t, o])) = todo.pop() {
        let load = |id: Option<TreeId>| -> Result<Tree> { id.map_or(Ok(Tree::default()), |id| Tree::load(store, &id)) };
        let (b, t, o) = (load(b)?, load(t)?, load(o)?);
        let names: BTreeSet<&[u8]> = b.entries.iter().chain(&t.entries).chain(&o.entries).map(|e| e.name.as_slice()).collect();
        for name in names {
            let (eb, et, eo) = (b.get(name), t.get(name), o.get(name));
            let path = || {
                let mut p = crate::walk::path_up(at, |i| (&nodes[i].name, nodes[i].parent));
                p.push(b'/');
                p.extend_from_slice(name);
                p
            };
            let taken = if et == eb {
                eo.cloned()
            } else if eo == eb || et == eo {
                et.cloned()
            } else if let (Some(x), Some(y)) = (et, eo) {
                if x.kind == Kind::Dir && y.kind == Kind::Dir && eb.is_none_or(|e| e.kind == Kind::Dir) {
                    let (mut dir, clash) = merge_dir_meta(eb, x, y, prefer);
                    if clash && !ignore.contains(&path()) {
                        res.conflicts.push(path());
                    }
                    let ids = [eb.and_then(tree_of), tree_of(x), tree_of(y)];
                    match shortcut_opt(ids) {
                        Some(id) => dir.content = Content::Tree(id),
                        None => {
                            let idx = nodes.len();
                            let slot = nodes[at].entries.len();
                            nodes.push(Dir { name: name.to_vec(), parent: at, slot, entries: Vec::new() });
                            todo.push((idx, ids));
                            res.dirs_merged += 1;
                        }
                    }
                    nodes[at].entries.push(dir);
                    continue;
                }
                conflict(&mut res, ignore, path(), et, eo, prefer)
            } else {
                conflict(&mut res, ignore, path(), et, eo, prefer)
            };
            if let Some(e) = taken {
                nodes[at].entries.push(e);
            }
        }
    }
    // Children were pushed after their parents: store bottom-up.
    for i in (1..nodes.len()).rev() {
        let id = Tree { entries: std::mem::take(&mut nodes[i].entries) }.store(out)?;
        let (p, s) = (nodes[i].parent, nodes[i].slot);
        nodes[p].entries[s].content = Content::Tree(id);
    }
    res.root = Tree { entries: std::mem::take(&mut nodes[0].entries) }.store(out)?;
    res.conflicts.sort();
    Ok(res)
}

/// A conflict on a whole entry: recorded (unless ignored), resolved.
fn conflict(res: &mut MergeOutcome, ignore: &HashSet<Vec<u8>>, path: Vec<u8>, theirs: Option<&Entry>, ours: Option<&Entry>, prefer: Option<Prefer>) -> Option<Entry> {
    if !ignore.contains(&path) {
        res.conflicts.push(path);
    }
    match prefer {
        Some(Prefer::Image) => theirs.cloned(),
        _ => ours.cloned(),
    }
}

fn tree_of(e: &Entry) -> Option<TreeId> {
    match e.content {
        Content::Tree(t) => Some(t),
        _ => None,
    }
}

/// The result without a walk, when one side left the listing as it was.
fn shortcut(b: &TreeId, t: &TreeId, o: &TreeId) -> Option<TreeId> {
    if t == b || t == o {
        Some(*o)
    } else if o == b {
        Some(*t)
    } else {
        None
    }
}

fn shortcut_opt([b, t, o]: [Option<TreeId>; 3]) -> Option<TreeId> {
    match (b, t, o) {
        (Some(b), Some(t), Some(o)) => shortcut(&b, &t, &o),
        (None, Some(t), Some(o)) if t == o => Some(t),
        _ => None,
    }
}

/// A directory's attributes merged field by field: mode, owner and xattrs
/// three-way (a field changed on both sides differently is a clash,
/// resolved by `prefer`, else ours); mtime the later one when both changed
/// it (any change below a directory moves it). Content is filled in later.
fn merge_dir_meta(b: Option<&Entry>, t: &Entry, o: &Entry, prefer: Option<Prefer>) -> (Entry, bool) {
    let mut clash = false;
    let mut e = o.clone();
    if take_theirs(b.map(|b| b.mode), t.mode, o.mode, prefer, &mut clash) {
        e.mode = t.mode;
    }
    if take_theirs(b.map(|b| (b.uid, b.gid)), (t.uid, t.gid), (o.uid, o.gid), prefer, &mut clash) {
        (e.uid, e.gid) = (t.uid, t.gid);
    }
    if take_theirs(b.map(|b| &b.xattrs), &t.xattrs, &o.xattrs, prefer, &mut clash) {
        e.xattrs = t.xattrs.clone();
    }
    e.mtime = match b {
        Some(b) if b.mtime == o.mtime => t.mtime,
        Some(b) if b.mtime == t.mtime => o.mtime,
        _ => t.mtime.max(o.mtime),
    };
    (e, clash)
}

/// Three-way choice of one field: whether theirs wins (ours unchanged, or
/// both the same); a field both changed differently is a clash.
fn take_theirs<T: PartialEq>(b: Option<T>, t: T, o: T, prefer: Option<Prefer>, clash: &mut bool) -> bool {
    if t == o || b.as_ref() == Some(&o) {
        true
    } else if b.as_ref() == Some(&t) {
        false
    } else {
        *clash = true;
        prefer == Some(Prefer::Image)
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;

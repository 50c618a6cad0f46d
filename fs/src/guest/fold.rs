//! Fold: turn image + overlay (the guest's live state) into one root tree.
//!
//! Unchanged image entries are reused as they are (same ids, nothing read);
//! a changed file reuses the image's chunks for every window it did not write,
//! and stores only the windows it wrote. The result is written to `out`
//! (a layered store: guest-local over the shared repository, so chunks the
//! repository has are not stored again).
//!
//! The caller holds the engine's state lock, so the cut is consistent: no
//! operation can run between two reads of the fold.

use std::collections::{BTreeMap, HashMap};

use crate::chunker::{window_of, CHUNK_SIZE};
use crate::digest::{ChunkId, ObjectKind, TreeId};
use crate::error::{Error, Result};
use crate::object::{get_required_shared, ObjectStore};
use crate::overlay::db::Folded;
use crate::overlay::{Base, Dirent, ImagePath, Inode, Overlay, State, ROOT_INO};
use crate::tree::file::{leaf_extents, ContentBuilder, Extent, Target};
use crate::tree::{store_root, Content, Entry, Kind, Tree};

/// One entry of the folded namespace, before trees are stored.
struct Node {
    entry: Entry,
    /// The parent's arena index (the root's is 0): paths are built only where
    /// needed (hardlink labels), since each held whole costs depth² bytes.
    parent: usize,
    ino: u64,
    children: Vec<usize>,
    /// An image entry reused as it is (keeps its hardlink label).
    reused: bool,
    /// A walked directory: its image tree, if any (the memo keeps only
    /// listings that differ from it).
    base_tree: Option<TreeId>,
    /// A file whose content this fold computed (not from the memo).
    fresh: bool,
}

/// What a fold computed, by inode, for the next fold to reuse
/// ([`Overlay::apply_memo`] records it once the objects are durable).
pub(crate) type Memo = Vec<(u64, Folded)>;

/// Fold the overlay's current state into a root tree stored in `out`.
pub(crate) fn fold(ov: &Overlay, st: &mut State, out: &dyn ObjectStore) -> Result<(TreeId, Memo)> {
    let mut memo = Memo::new();
    let root_inode = ov.node(st, ROOT_INO)?.inode.clone();
    let (mut root, _) = entry_of(ov, st, &root_inode, Vec::new(), out, ROOT_INO)?;
    if let Some(t) = clean_listing(st, ROOT_INO, &root_inode) {
        root.content = Content::Tree(t);
        return Ok((store_root(out, root)?, memo));
    }
    let mut nodes = vec![Node { entry: root, parent: 0, ino: ROOT_INO, children: Vec::new(), reused: false, base_tree: base_tree(&root_inode), fresh: false }];
    walk(ov, st, out, &mut nodes, root_inode)?;

    // Hardlink sets: inodes reached by more than one path.
    let mut by_ino: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.entry.kind != Kind::Dir {
            by_ino.entry(n.ino).or_default().push(i);
        }
    }
    for members in by_ino.values() {
        if members.iter().all(|&i| nodes[i].reused) {
            continue;
        }
        let ino = nodes[members[0]].ino;
        let (link, links) = if let Some(f) = st.memo.get(&ino) {
            // Unchanged since the last fold, which saw every link (a change
            // to a hardlink set makes the next fold walk everything), some
            // of which may lie in directories this fold does not walk.
            (f.link, f.links)
        } else if members.len() > 1 {
            // Labelled from the path without its leading '/', as import does,
            // so an untouched image hardlink set keeps its label.
            let smallest = members.iter().map(|&i| path_of(&nodes, i)).min().unwrap_or_default();
            (crate::import::link_label(&smallest), members.len() as u32)
        } else {
            (0, 0)
        };
        for &i in members {
            nodes[i].entry.link = link;
            nodes[i].entry.links = links;
        }
        if nodes[members[0]].fresh {
            memo.push((ino, Folded { content: nodes[members[0]].entry.content, link, links }));
        }
    }
    for i in (0..nodes.len()).rev() {
        if nodes[i].entry.kind != Kind::Dir || matches!(nodes[i].entry.content, Content::Tree(_)) {
            continue;
        }
        let mut t = Tree { entries: nodes[i].children.iter().map(|&c| nodes[c].entry.clone()).collect() };
        t.sort();
        let id = t.store(out)?;
        nodes[i].entry.content = Content::Tree(id);
        // (Also when it is back to its image tree: an older memo is stale.)
        if nodes[i].base_tree != Some(id) || st.memo.contains_key(&nodes[i].ino) {
            memo.push((nodes[i].ino, Folded { content: Content::Tree(id), link: 0, links: 0 }));
        }
    }
    let root = nodes.swap_remove(0).entry;
    Ok((store_root(out, root)?, memo))
}

fn base_tree(i: &Inode) -> Option<TreeId> {
    match &i.base {
        Base::Dir { tree, .. } => Some(*tree),
        _ => None,
    }
}

/// The path of arena node `i` without its leading '/' (as import labels
/// hardlink sets).
fn path_of(nodes: &[Node], i: usize) -> Vec<u8> {
    crate::walk::path_up(i, |i| (&nodes[i].entry.name, nodes[i].parent))
}

/// Add the merged namespace below the root (arena index 0, inode `root`).
/// Iterative: directories still to walk are on an explicit stack, so the
/// depth of the guest's tree costs heap, never call stack.
fn walk(ov: &Overlay, st: &mut State, out: &dyn ObjectStore, nodes: &mut Vec<Node>, root: Inode) -> Result<()> {
    let mut todo = vec![(0, root)];
    while let Some((dir, inode)) = todo.pop() {
        walk_dir(ov, st, out, nodes, dir, &inode, &mut todo)?;
    }
    Ok(())
}

/// Add the merged children of directory `dir` (an arena index); those to be
/// walked in turn go onto `todo`.
fn walk_dir(ov: &Overlay, st: &mut State, out: &dyn ObjectStore, nodes: &mut Vec<Node>, dir: usize, inode: &Inode, todo: &mut Vec<(usize, Inode)>) -> Result<()> {
    let dino = nodes[dir].ino;
    let dirents = ov.db.dirents(dino)?;
    // Unchanged image directory: its tree is reused as is, unless something
    // below it changed (a record for a descendant), which only a walk shows.
    let mut children: BTreeMap<Vec<u8>, (u64, Option<Entry>)> = BTreeMap::new();
    if let Base::Dir { tree, path } = &inode.base {
        for e in &ov.tree(tree)?.entries {
            children.insert(e.name.clone(), (path.child_ino(&e.name, e), Some(e.clone())));
        }
    }
    for (name, d) in dirents {
        match d {
            Dirent::Whiteout => {
                children.remove(&name);
            }
            Dirent::Child { ino, .. } => {
                children.insert(name, (ino, None));
            }
        }
    }
    for (name, (ino, base)) in children {
        // The database is authoritative: every operation commits its batch.
        let inode = match (ov.db.inode(ino)?, &base) {
            (Some(r), _) => r,
            (None, Some(e)) => {
                // Untouched image entry: reuse it whole, unless it is a
                // directory with changes somewhere below it (dirty: walk it;
                // changed before the last checkpoint: its memo).
                if e.kind != Kind::Dir || (!st.dirty_all && !st.dirty.contains(&ino)) {
                    let mut entry = e.clone();
                    if let (Kind::Dir, Some(Folded { content: c @ Content::Tree(_), .. })) = (e.kind, st.memo.get(&ino)) {
                        entry.content = *c;
                    }
                    let idx = nodes.len();
                    nodes.push(Node { entry, parent: dir, ino, children: Vec::new(), reused: true, base_tree: None, fresh: false });
                    nodes[dir].children.push(idx);
                    continue;
                }
                ov.from_entry(e, image_path(&inode.base, &name))?
            }
            (None, None) => return Err(Error::Posix(libc::EIO)),
        };
        let (mut entry, fresh) = entry_of(ov, st, &inode, name, out, ino)?;
        let clean = clean_listing(st, ino, &inode);
        let walk_it = inode.kind == Kind::Dir && clean.is_none();
        if let Some(t) = clean {
            entry.content = Content::Tree(t);
        }
        let idx = nodes.len();
        nodes.push(Node { entry, parent: dir, ino, children: Vec::new(), reused: false, base_tree: base_tree(&inode), fresh });
        nodes[dir].children.push(idx);
        if walk_it {
            todo.push((idx, inode));
        }
    }
    Ok(())
}

/// A directory with no change since the last mounted checkpoint (not
/// dirty): the listing that checkpoint folded (memo), or its image tree if
/// it never changed; reused without a walk.
fn clean_listing(st: &State, ino: u64, i: &Inode) -> Option<TreeId> {
    if i.kind != Kind::Dir || st.dirty_all || st.dirty.contains(&ino) {
        return None;
    }
    match (st.memo.get(&ino).map(|f| f.content), &i.base) {
        (Some(Content::Tree(t)), _) => Some(t),
        (_, Base::Dir { tree, .. }) => Some(*tree),
        _ => None,
    }
}

fn image_path(parent_base: &Base, name: &[u8]) -> ImagePath {
    match parent_base {
        Base::Dir { path, .. } => path.child(name),
        _ => ImagePath::new(b"").child(name),
    }
}

/// The tree entry for an inode (directory content is filled in later), and
/// whether its file content was computed (not taken from the memo).
fn entry_of(ov: &Overlay, st: &State, i: &Inode, name: Vec<u8>, out: &dyn ObjectStore, ino: u64) -> Result<(Entry, bool)> {
    let mut e = Entry::new(name, i.kind);
    e.mode = i.mode;
    e.uid = i.uid;
    e.gid = i.gid;
    e.mtime = i.mtime;
    e.rdev = if matches!(i.kind, Kind::CharDev | Kind::BlockDev) { i.rdev } else { 0 };
    e.xattrs = i.xattrs.clone();
    e.xattrs.sort();
    if i.kind == Kind::Symlink {
        e.target = i.target.clone();
    }
    if i.kind == Kind::File {
        e.size = i.size;
        match st.memo.get(&ino) {
            // Unchanged since the last mounted checkpoint folded it.
            Some(f) => e.content = f.content,
            None => {
                e.content = file_content(ov, st, i, out, ino)?;
                return Ok((e, true));
            }
        }
    }
    Ok((e, false))
}

/// A file's content: image chunks for windows it never wrote, new chunks for
/// the windows it did (and for every byte of a file the guest created). The
/// overlay's bytes are read through its verified API: damage fails the fold
/// (a checkpoint never stores zeros or wrong bytes as the file's data).
fn file_content(ov: &Overlay, st: &State, i: &Inode, out: &dyn ObjectStore, ino: u64) -> Result<Content> {
    let mut b = ContentBuilder::new(out);
    if i.base == Base::Inline {
        let bytes = ov.inline_bytes(ino)?;
        let n = (bytes.len() as u64).min(i.size) as usize;
        if n > 0 {
            b.push(0, &bytes[..n])?;
        }
        return b.finish(i.size);
    }
    let local = ov.local_data(st, ino, i)?;
    match &i.base {
        Base::File { content, limit } => {
            let windows: std::collections::HashSet<u64> = local.windows().iter().copied().collect();
            let base_end = (*limit).min(i.size);
            // A one-chunk file's extent length is its chunk's length, which the
            // entry no longer tells once `limit` was lowered: ask the chunk.
            let base: Vec<(u64, u64, ChunkId)> = match content {
                Content::Chunk(c) => vec![(0, get_required_shared(&*ov.store, ObjectKind::Chunk, &c.0)?.len() as u64, *c)],
                other => leaf_extents(&*ov.store, other, *limit)?,
            };
            let mut wins: Vec<u64> = windows.iter().copied().collect();
            wins.extend(base.iter().filter(|x| x.0 < base_end).map(|x| window_of(x.0)));
            wins.sort_unstable();
            wins.dedup();
            for w in wins {
                if windows.contains(&w) {
                    b.push(w * CHUNK_SIZE, &local.window_bytes(w, i.size, &base, base_end)?)?;
                    continue;
                }
                for &(off, len, id) in base.iter().filter(|x| window_of(x.0) == w && x.0 < base_end) {
                    if off + len <= base_end {
                        b.push_extent(Extent { offset: off, len, target: Target::Chunk(id) });
                    } else {
                        let chunk = get_required_shared(&*ov.store, ObjectKind::Chunk, &id.0)?;
                        b.push(off, &chunk[..(base_end - off) as usize])?;
                    }
                }
            }
        }
        _ => {
            // Only the blocks that hold data: holes stay holes.
            for &w in local.windows() {
                for (s, e) in local.data_runs(w, i.size) {
                    b.push(s, &local.read(s, e - s)?)?;
                }
            }
        }
    }
    b.finish(i.size)
}

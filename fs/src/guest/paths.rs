//! One path of a root tree, looked up and replaced without reading the rest
//! of the tree (rebase's personalisation files, propagate's chosen paths).
//! Layer: operations, over the object store only. Paths are absolute,
//! `/`-separated bytes; only the directories on the path are read and
//! written, in a loop (the path's length bounds the work, no recursion).

use crate::digest::TreeId;
use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::tree::{load_root, store_root, Content, Entry, Kind, Timestamp, Tree};

/// What is at a path: the directories on the way (the root's entry first,
/// then each parent that exists), and the entry itself.
pub(crate) struct Walked {
    pub dirs: Vec<Entry>,
    pub entry: Option<Entry>,
    /// A component on the way is there but not a directory.
    pub blocked: bool,
}

/// A path's components; the root itself, `.`, `..` and empty names refused.
pub(crate) fn components(path: &[u8]) -> Result<Vec<&[u8]>> {
    let bad = |why| Error::BadPath { path: crate::walk::escape_path(path), why };
    if path.first() != Some(&b'/') {
        return Err(bad("not absolute (it must start with /)"));
    }
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty() {
        return Err(bad("the root itself: name paths below it"));
    }
    if comps.iter().any(|c| *c == b"." || *c == b"..") {
        return Err(bad("has a . or .. component"));
    }
    Ok(comps)
}

/// A directory entry's listing (empty for a directory without content yet).
fn listing(store: &dyn ObjectStore, e: &Entry) -> Result<Tree> {
    match e.content {
        Content::Tree(id) => Tree::load(store, &id),
        _ => Ok(Tree::default()),
    }
}

/// Look `path` up in root tree `root`.
pub(crate) fn lookup(store: &dyn ObjectStore, root: &TreeId, path: &[u8]) -> Result<Walked> {
    let comps = components(path)?;
    let mut w = Walked { dirs: vec![load_root(store, root)?], entry: None, blocked: false };
    for (i, c) in comps.iter().enumerate() {
        let Some(cur) = w.dirs.last() else { break };
        let found = listing(store, cur)?.get(c).cloned();
        match found {
            Some(e) if i + 1 == comps.len() => w.entry = Some(e),
            Some(e) if e.kind == Kind::Dir => w.dirs.push(e),
            Some(_) => {
                w.blocked = true;
                break;
            }
            None => break,
        }
    }
    Ok(w)
}

/// Root tree `root` with `entry` at `path` (`None`: nothing there), stored
/// in `store`. A missing parent, or one that is not a directory, becomes a
/// directory: `template[i]` for the `i`-th component (the root's entry is
/// `template[0]`) with its content dropped, else 0755 root-owned with mtime
/// `now`. Removing below a missing parent changes nothing.
pub(crate) fn set_path(store: &dyn ObjectStore, root: TreeId, path: &[u8], entry: Option<Entry>, template: &[Entry], now: Timestamp) -> Result<TreeId> {
    let comps = components(path)?;
    let Some((last, parents)) = comps.split_last() else { return Ok(root) };
    // The directories on the path with their listings, root first.
    let mut chain: Vec<(Entry, Tree)> = Vec::new();
    let mut cur = load_root(store, &root)?;
    for (i, c) in parents.iter().enumerate() {
        let t = listing(store, &cur)?;
        let next = match t.get(c) {
            Some(e) if e.kind == Kind::Dir => e.clone(),
            _ if entry.is_none() => return Ok(root),
            _ => new_dir(c, template.get(i + 1), now),
        };
        chain.push((cur, t));
        cur = next;
    }
    let mut t = listing(store, &cur)?;
    let mut child = entry.map(|mut e| {
        e.name = last.to_vec();
        e
    });
    t.entries.retain(|e| e.name != *last);
    loop {
        if let Some(c) = child {
            t.entries.retain(|e| e.name != c.name);
            t.entries.push(c);
            t.sort();
        }
        cur.content = Content::Tree(t.store(store)?);
        match chain.pop() {
            Some((parent, pt)) => (child, cur, t) = (Some(cur), parent, pt),
            None => return store_root(store, cur),
        }
    }
}

fn new_dir(name: &[u8], template: Option<&Entry>, now: Timestamp) -> Entry {
    match template {
        Some(t) if t.kind == Kind::Dir => {
            let mut d = t.clone();
            (d.name, d.content) = (name.to_vec(), Content::None);
            d
        }
        _ => {
            let mut d = Entry::new(name.to_vec(), Kind::Dir);
            (d.mode, d.mtime) = (0o755, now);
            d
        }
    }
}

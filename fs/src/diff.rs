//! Differences between two root trees. Subtrees with equal ids are skipped
//! without being read, so the cost is proportional to what changed, not to the
//! size of the image.

use std::cmp::Ordering;

use crate::digest::TreeId;
use crate::error::Result;
use crate::object::ObjectStore;
use crate::tree::{load_root, Content, Entry, Tree};
use crate::walk::walk_entry;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    /// Data changed: bytes, symlink target, device number or kind.
    Content,
    /// Only attributes changed (mode, owner, times, xattrs, hardlink set, or
    /// the layout of holes in a file whose bytes are the same).
    Metadata,
}

impl Change {
    /// One-letter code used in text output.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Removed => 'D',
            Change::Content => 'C',
            Change::Metadata => 'M',
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffEntry {
    pub path: Vec<u8>,
    pub change: Change,
}

/// Every path that differs between `a` and `b`, in path order. Added and
/// removed directories list their whole contents too.
pub fn diff_trees(store: &dyn ObjectStore, a: &TreeId, b: &TreeId) -> Result<Vec<DiffEntry>> {
    let mut out = Vec::new();
    if a == b {
        return Ok(out);
    }
    let ra = load_root(store, a)?;
    let rb = load_root(store, b)?;
    compare(store, &ra, &rb, &mut out)?;
    if !ra.same_meta(&rb) {
        out.insert(0, DiffEntry { path: b"/".to_vec(), change: Change::Metadata });
    }
    Ok(out)
}

/// Two listings being merged: the next entry of each, and the length of
/// their directory's path.
struct Frame {
    a: Vec<Entry>,
    b: Vec<Entry>,
    i: usize,
    j: usize,
    base: usize,
}

impl Frame {
    fn new(store: &dyn ObjectStore, a: &Entry, b: &Entry, base: usize) -> Result<Option<Frame>> {
        let (Content::Tree(ta), Content::Tree(tb)) = (a.content, b.content) else { return Ok(None) };
        if ta == tb {
            return Ok(None);
        }
        Ok(Some(Frame { a: Tree::load(store, &ta)?.entries, b: Tree::load(store, &tb)?.entries, i: 0, j: 0, base }))
    }
}

/// The differences below directories `a` and `b` (the roots). Iterative: the
/// directories being compared are an explicit stack, one frame per level.
fn compare(store: &dyn ObjectStore, a: &Entry, b: &Entry, out: &mut Vec<DiffEntry>) -> Result<()> {
    let mut path = Vec::new();
    let mut stack: Vec<Frame> = Frame::new(store, a, b, 0)?.into_iter().collect();
    while let Some(fr) = stack.last_mut() {
        let (ea, eb) = (fr.a.get(fr.i), fr.b.get(fr.j));
        let ord = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => {
                stack.pop();
                continue;
            }
        };
        path.truncate(fr.base);
        path.push(b'/');
        match (ord, ea, eb) {
            (Ordering::Less, Some(x), _) | (_, Some(x), None) => {
                path.extend_from_slice(&x.name);
                all(store, &path, x, Change::Removed, out)?;
                fr.i += 1;
            }
            (Ordering::Greater, _, Some(y)) | (_, None, Some(y)) => {
                path.extend_from_slice(&y.name);
                all(store, &path, y, Change::Added, out)?;
                fr.j += 1;
            }
            (Ordering::Equal, Some(x), Some(y)) => {
                path.extend_from_slice(&x.name);
                fr.i += 1;
                fr.j += 1;
                if x.kind != y.kind {
                    all(store, &path, x, Change::Removed, out)?;
                    all(store, &path, y, Change::Added, out)?;
                    continue;
                }
                let data = x.kind != crate::tree::Kind::Dir && !x.same_data(y);
                // Only the hole layout differs: same bytes, so metadata.
                let holes_only = data
                    && x.kind == crate::tree::Kind::File
                    && x.size == y.size
                    && crate::tree::file::same_bytes(store, &x.content, &y.content, x.size)?;
                if data && !holes_only {
                    out.push(DiffEntry { path: path.clone(), change: Change::Content });
                } else if holes_only || !x.same_meta(y) {
                    out.push(DiffEntry { path: path.clone(), change: Change::Metadata });
                }
                if let Some(child) = Frame::new(store, x, y, path.len())? {
                    stack.push(child);
                }
            }
            (_, None, None) => {}
        }
    }
    Ok(())
}

fn all(store: &dyn ObjectStore, path: &[u8], e: &Entry, change: Change, out: &mut Vec<DiffEntry>) -> Result<()> {
    out.push(DiffEntry { path: path.to_vec(), change });
    walk_entry(store, e, path, &mut |p, _| {
        out.push(DiffEntry { path: p.to_vec(), change });
        Ok(())
    })
}

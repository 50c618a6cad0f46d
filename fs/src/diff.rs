//! Differences between two root trees. Subtrees with equal ids are skipped
//! without being read, so the cost is proportional to what changed, not to the
//! size of the image.

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
    compare(store, b"", &ra, &rb, &mut out)?;
    if !ra.same_meta(&rb) {
        out.insert(0, DiffEntry { path: b"/".to_vec(), change: Change::Metadata });
    }
    Ok(out)
}

fn compare(store: &dyn ObjectStore, path: &[u8], a: &Entry, b: &Entry, out: &mut Vec<DiffEntry>) -> Result<()> {
    let (Content::Tree(ta), Content::Tree(tb)) = (a.content, b.content) else { return Ok(()) };
    if ta == tb {
        return Ok(());
    }
    let (la, lb) = (Tree::load(store, &ta)?, Tree::load(store, &tb)?);
    let (mut i, mut j) = (0, 0);
    let join = |name: &[u8]| {
        let mut p = path.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    };
    while i < la.entries.len() || j < lb.entries.len() {
        let ea = la.entries.get(i);
        let eb = lb.entries.get(j);
        let ord = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match (ord, ea, eb) {
            (std::cmp::Ordering::Less, Some(x), _) => {
                all(store, &join(&x.name), x, Change::Removed, out)?;
                i += 1;
            }
            (std::cmp::Ordering::Greater, _, Some(y)) => {
                all(store, &join(&y.name), y, Change::Added, out)?;
                j += 1;
            }
            (_, Some(x), Some(y)) => {
                let p = join(&x.name);
                if x.kind != y.kind {
                    all(store, &p, x, Change::Removed, out)?;
                    all(store, &p, y, Change::Added, out)?;
                } else {
                    let data = x.kind != crate::tree::Kind::Dir && !x.same_data(y);
                    // Only the hole layout differs: same bytes, so metadata.
                    let holes_only = data
                        && x.kind == crate::tree::Kind::File
                        && x.size == y.size
                        && crate::tree::file::same_bytes(store, &x.content, &y.content, x.size)?;
                    if data && !holes_only {
                        out.push(DiffEntry { path: p.clone(), change: Change::Content });
                    } else if holes_only || !x.same_meta(y) {
                        out.push(DiffEntry { path: p.clone(), change: Change::Metadata });
                    }
                    compare(store, &p, x, y, out)?;
                }
                i += 1;
                j += 1;
            }
            _ => break,
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

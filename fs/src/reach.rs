//! Reachability: the set of objects a root tree references (trees, file
//! indexes, chunks). gc keeps exactly this set; stats attributes bytes with it.
//!
//! The walk keeps its pending subtrees on an explicit stack (no recursion: a
//! tree's depth is whatever an import or a guest made it).

use std::collections::{HashMap, HashSet};

use crate::digest::{Digest, ObjectKind, TreeId};
use crate::error::Result;
use crate::object::ObjectStore;
use crate::tree::file::visit_objects;
use crate::tree::{Content, Tree};

/// Add every object reachable from root tree `root` to `seen`. Subtrees already
/// in `seen` are not read again, so marking many images that share structure
/// costs about their union.
pub fn mark(store: &dyn ObjectStore, root: &TreeId, seen: &mut HashSet<Digest>) -> Result<()> {
    walk(store, root, seen)
}

/// Like [`mark`] but records each object's kind too (for verify).
pub fn mark_kinds(store: &dyn ObjectStore, root: &TreeId, out: &mut HashMap<Digest, ObjectKind>) -> Result<()> {
    walk(store, root, out)
}

/// A set of marked objects.
trait Marks {
    /// Mark tree `id`; whether it was new (then its listing is read).
    fn tree(&mut self, id: &TreeId) -> bool;
    /// Mark what a file's content references.
    fn content(&mut self, store: &dyn ObjectStore, c: &Content) -> Result<()>;
}

impl Marks for HashSet<Digest> {
    fn tree(&mut self, id: &TreeId) -> bool {
        self.insert(id.0)
    }

    fn content(&mut self, store: &dyn ObjectStore, c: &Content) -> Result<()> {
        // A file index already marked was visited whole.
        if let Content::File(f) = c {
            if self.contains(&f.0) {
                return Ok(());
            }
        }
        visit_objects(store, c, &mut |_, id| {
            self.insert(*id);
        })
    }
}

impl Marks for HashMap<Digest, ObjectKind> {
    fn tree(&mut self, id: &TreeId) -> bool {
        self.insert(id.0, ObjectKind::Tree).is_none()
    }

    fn content(&mut self, store: &dyn ObjectStore, c: &Content) -> Result<()> {
        visit_objects(store, c, &mut |k, id| {
            self.insert(*id, k);
        })
    }
}

fn walk(store: &dyn ObjectStore, root: &TreeId, m: &mut impl Marks) -> Result<()> {
    if !m.tree(root) {
        return Ok(());
    }
    let mut stack = vec![*root];
    while let Some(id) = stack.pop() {
        for e in &Tree::load(store, &id)?.entries {
            match &e.content {
                Content::Tree(t) => {
                    if m.tree(t) {
                        stack.push(*t);
                    }
                }
                Content::None => {}
                c => m.content(store, c)?,
            }
        }
    }
    Ok(())
}

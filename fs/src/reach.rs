//! Reachability: the set of objects a root tree references (trees, file
//! indexes, chunks). gc keeps exactly this set; stats attributes bytes with it.

use std::collections::HashSet;

use crate::digest::{Digest, ObjectKind, TreeId};
use crate::error::Result;
use crate::object::ObjectStore;
use crate::tree::file::visit_objects;
use crate::tree::{Content, Tree};

/// Add every object reachable from root tree `root` to `seen`. Subtrees already
/// in `seen` are not read again, so marking many images that share structure
/// costs about their union.
pub fn mark(store: &dyn ObjectStore, root: &TreeId, seen: &mut HashSet<Digest>) -> Result<()> {
    if !seen.insert(root.0) {
        return Ok(());
    }
    let tree = Tree::load(store, root)?;
    for e in &tree.entries {
        match &e.content {
            Content::Tree(t) => mark(store, t, seen)?,
            Content::None => {}
            c @ Content::Chunk(_) => visit_objects(store, c, &mut |_, id| {
                seen.insert(*id);
            })?,
            c @ Content::File(f) => {
                if !seen.contains(&f.0) {
                    visit_objects(store, c, &mut |_, id| {
                        seen.insert(*id);
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Like [`mark`] but records each object's kind too (for verify).
pub fn mark_kinds(store: &dyn ObjectStore, root: &TreeId, out: &mut std::collections::HashMap<Digest, ObjectKind>) -> Result<()> {
    if out.insert(root.0, ObjectKind::Tree).is_some() {
        return Ok(());
    }
    let tree = Tree::load(store, root)?;
    for e in &tree.entries {
        match &e.content {
            Content::Tree(t) => mark_kinds(store, t, out)?,
            Content::None => {}
            c => visit_objects(store, c, &mut |k, id| {
                out.insert(*id, k);
            })?,
        }
    }
    Ok(())
}

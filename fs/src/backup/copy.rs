//! Copy what a root tree reaches from one store to another, skipping what the
//! destination already holds.
//!
//! Invariant kept at the destination: an object is stored only after every
//! object it references (children before parents, chunks before the file
//! index naming them). So a destination that holds a tree or a file index
//! holds everything below it, and the walk does not descend into it: an
//! incremental copy reads the source's trees only on the paths to changes.
//! A copy interrupted before `flush` leaves objects no ref names (garbage for
//! gc); run again, it skips what already landed.
//!
//! Objects move in their stored (compressed) form: read through a
//! `Verified` source, which decodes and hashes each before handing it out,
//! and kept as they are, never compressed again.
//!
//! The walk is iterative (an explicit stack): tree depth is user data.

use std::collections::HashSet;

use crate::digest::{Digest, ObjectKind, TreeId};
use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::tree::file::visit_objects;
use crate::tree::{Content, Tree};

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyStats {
    /// Objects written to the destination, their (uncompressed) bytes, and
    /// their bytes as stored (compressed).
    pub objects: u64,
    pub bytes: u64,
    pub stored_bytes: u64,
    /// Objects the destination already held (not sent).
    pub skipped: u64,
}

impl CopyStats {
    pub fn add(&mut self, o: CopyStats) {
        self.objects += o.objects;
        self.bytes += o.bytes;
        self.stored_bytes += o.stored_bytes;
        self.skipped += o.skipped;
    }
}

/// Copy every object `root` reaches in `src` that `dst` lacks into `dst`
/// (not flushed: the caller flushes before publishing anything that names
/// them). Every object is read through `src` in stored form (a `Verified`
/// store checks it against its id) and stored under that id as it is.
pub fn copy_closure(src: &dyn ObjectStore, dst: &dyn ObjectStore, root: &TreeId, stats: &mut CopyStats) -> Result<()> {
    // Objects written or found present in this run.
    let mut done: HashSet<Digest> = HashSet::new();
    // (tree, expanded): a tree is stored when popped the second time, after
    // everything pushed above it. A tree pushed twice is stored once.
    let mut stack: Vec<(TreeId, bool)> = vec![(*root, false)];
    while let Some((t, expanded)) = stack.pop() {
        if done.contains(&t.0) {
            continue;
        }
        if expanded {
            copy_one(src, dst, ObjectKind::Tree, &t.0, stats)?;
            done.insert(t.0);
            continue;
        }
        if dst.contains(&t.0)? {
            stats.skipped += 1;
            done.insert(t.0);
            continue;
        }
        stack.push((t, true));
        let tree = Tree::load(src, &t)?;
        for e in &tree.entries {
            match &e.content {
                Content::None => {}
                Content::Tree(sub) => {
                    if !done.contains(&sub.0) {
                        stack.push((*sub, false));
                    }
                }
                c @ (Content::Chunk(_) | Content::File(_)) => copy_content(src, dst, c, &mut done, stats)?,
            }
        }
    }
    Ok(())
}

/// A file's objects: its chunks first, then its index objects innermost
/// first (`visit_objects` names an index before what it references).
fn copy_content(src: &dyn ObjectStore, dst: &dyn ObjectStore, c: &Content, done: &mut HashSet<Digest>, stats: &mut CopyStats) -> Result<()> {
    let top = match c {
        Content::Chunk(id) => id.0,
        Content::File(id) => id.0,
        _ => return Ok(()),
    };
    if done.contains(&top) {
        return Ok(());
    }
    if dst.contains(&top)? {
        stats.skipped += 1;
        done.insert(top);
        return Ok(());
    }
    let mut objs: Vec<(ObjectKind, Digest)> = Vec::new();
    visit_objects(src, c, &mut |k, id| objs.push((k, *id)))?;
    let (chunks, indexes): (Vec<_>, Vec<_>) = objs.into_iter().partition(|(k, _)| *k == ObjectKind::Chunk);
    for (k, id) in chunks.into_iter().chain(indexes.into_iter().rev()) {
        if !done.insert(id) {
            continue;
        }
        if dst.contains(&id)? {
            stats.skipped += 1;
            continue;
        }
        copy_one(src, dst, k, &id, stats)?;
    }
    Ok(())
}

fn copy_one(src: &dyn ObjectStore, dst: &dyn ObjectStore, kind: ObjectKind, id: &Digest, stats: &mut CopyStats) -> Result<()> {
    let obj = src.get_stored(kind, id)?.ok_or(Error::Missing { kind, id: *id })?;
    if dst.put_stored(kind, id, &obj)? {
        stats.objects += 1;
        stats.bytes += u64::from(obj.raw_len);
        stats.stored_bytes += obj.payload.len() as u64;
    } else {
        stats.skipped += 1;
    }
    Ok(())
}

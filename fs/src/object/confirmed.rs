//! A store whose `contains` is confirmed against a second, current view.
//!
//! A mount daemon reads the shared repository through the index it opened
//! at mount time: a read-only RocksDB that never sees later changes. gc may
//! since have removed objects that view still lists, so a checkpoint that
//! skipped writing an object because that view "has" it would reference
//! something gone (docs/threat-model.md, "gc and live guests").
//! `Confirmed` answers `contains` with yes only when both the store that will
//! serve the object (`inner`) and a view opened now (`current`, held under
//! the gc guard for the whole checkpoint) hold it; everything else is
//! `inner`'s.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::{ObjectStore, Stored};
use crate::digest::{Digest, ObjectKind};
use crate::error::Result;

pub struct Confirmed<S, C> {
    pub inner: S,
    pub current: C,
    /// Ids stored through this wrapper: present whatever `current` says.
    put_here: Mutex<HashSet<Digest>>,
}

impl<S: ObjectStore, C: ObjectStore> Confirmed<S, C> {
    pub fn new(inner: S, current: C) -> Self {
        Confirmed { inner, current, put_here: Mutex::default() }
    }
}

impl<S: ObjectStore, C: ObjectStore> ObjectStore for Confirmed<S, C> {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        self.inner.get(kind, id)
    }
    fn get_shared(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Arc<Vec<u8>>>> {
        self.inner.get_shared(kind, id)
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        if !self.inner.contains(id)? {
            return Ok(false);
        }
        Ok(self.put_here.lock().unwrap_or_else(|e| e.into_inner()).contains(id) || self.current.contains(id)?)
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        let stored = self.inner.put(kind, id, bytes)?;
        self.put_here.lock().unwrap_or_else(|e| e.into_inner()).insert(*id);
        Ok(stored)
    }
    fn get_stored(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Stored>> {
        self.inner.get_stored(kind, id)
    }
    fn put_stored(&self, kind: ObjectKind, id: &Digest, obj: &Stored) -> Result<bool> {
        let stored = self.inner.put_stored(kind, id, obj)?;
        self.put_here.lock().unwrap_or_else(|e| e.into_inner()).insert(*id);
        Ok(stored)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn read_through(&self, id: &Digest) {
        self.inner.read_through(id)
    }
    fn cache_budget(&self) -> Option<usize> {
        self.inner.cache_budget()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{put_object, Layered, MemStore};

    #[test]
    fn conformance() {
        super::super::conformance::run(&Confirmed::new(MemStore::new(), MemStore::new()));
    }

    #[test]
    fn a_layered_write_is_skipped_only_for_what_both_views_hold() {
        let stale = Arc::new(MemStore::new());
        let current = Arc::new(MemStore::new());
        // Removed by gc since the stale view was opened: only the stale view has it.
        put_object(&*stale, ObjectKind::Chunk, b"collected").unwrap();
        // Imported since: only the current view has it (the stale one cannot serve it).
        put_object(&*current, ObjectKind::Chunk, b"imported").unwrap();
        for s in [&stale, &current] {
            put_object(&**s, ObjectKind::Chunk, b"kept").unwrap();
        }
        let upper = Arc::new(MemStore::new());
        let l = Layered::new(upper.clone(), Confirmed::new(stale.clone(), current.clone()));
        for b in [&b"collected"[..], b"imported", b"kept"] {
            put_object(&l, ObjectKind::Chunk, b).unwrap();
        }
        assert!(upper.contains(&ObjectKind::Chunk.hash(b"collected")).unwrap());
        assert!(upper.contains(&ObjectKind::Chunk.hash(b"imported")).unwrap());
        assert!(!upper.contains(&ObjectKind::Chunk.hash(b"kept")).unwrap());
    }
}

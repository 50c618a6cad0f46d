//! A read cache wrapper shared by all threads of a daemon.
//!
//! Two-generation approximate LRU: hits are looked up in the young map, then the
//! old one (and promoted); when the young map passes half the byte budget, it
//! becomes the old map and the old one is dropped. O(1) per operation, no list
//! bookkeeping, and a scan larger than the budget cannot evict the hot set more
//! than once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::ObjectStore;
use crate::digest::{Digest, ObjectKind};
use crate::error::Result;

pub struct Cached<S> {
    inner: S,
    budget: usize,
    state: Mutex<Gens>,
}

#[derive(Default)]
struct Gens {
    young: HashMap<Digest, Arc<Vec<u8>>>,
    young_bytes: usize,
    old: HashMap<Digest, Arc<Vec<u8>>>,
}

impl<S: ObjectStore> Cached<S> {
    /// `budget` is the approximate number of bytes kept (both generations).
    pub fn new(inner: S, budget: usize) -> Self {
        Cached { inner, budget: budget.max(1), state: Mutex::new(Gens::default()) }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn lookup(&self, id: &Digest) -> Option<Arc<Vec<u8>>> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = g.young.get(id) {
            return Some(v.clone());
        }
        let v = g.old.remove(id)?;
        let len = v.len();
        g.young.insert(*id, v.clone());
        g.young_bytes += len;
        Some(v)
    }

    fn insert(&self, id: Digest, v: Arc<Vec<u8>>) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.young_bytes += v.len();
        g.young.insert(id, v);
        if g.young_bytes > self.budget / 2 {
            let young = std::mem::take(&mut g.young);
            g.old = young;
            g.young_bytes = 0;
        }
    }
}

impl<S: ObjectStore> ObjectStore for Cached<S> {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        Ok(self.get_shared(kind, id)?.map(|a| (*a).clone()))
    }
    /// Shares the cached buffer instead of copying it.
    fn get_shared(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Arc<Vec<u8>>>> {
        if let Some(hit) = self.lookup(id) {
            return Ok(Some(hit));
        }
        let Some(bytes) = self.inner.get(kind, id)? else {
            return Ok(None);
        };
        let arc = Arc::new(bytes);
        self.insert(*id, arc.clone());
        Ok(Some(arc))
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        if self.lookup(id).is_some() {
            return Ok(true);
        }
        self.inner.contains(id)
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        self.inner.put(kind, id, bytes)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{put_object, MemStore};

    #[test]
    fn conformance() {
        super::super::conformance::run(&Cached::new(MemStore::new(), 1 << 20));
    }

    #[test]
    fn hot_entries_survive_a_generation_flip() {
        let c = Cached::new(MemStore::new(), 4096);
        let hot = put_object(&c, ObjectKind::Chunk, &[1u8; 1000]).unwrap();
        for i in 0..10u8 {
            let id = put_object(&c, ObjectKind::Chunk, &[i + 2; 1000]).unwrap();
            c.get(ObjectKind::Chunk, &id).unwrap();
            assert!(c.get_shared(ObjectKind::Chunk, &hot).unwrap().is_some());
        }
        let g = c.state.lock().unwrap();
        assert!(g.young.contains_key(&hot) || g.old.contains_key(&hot));
        assert!(g.young_bytes <= 4096);
    }
}

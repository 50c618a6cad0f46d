//! A store over two stores: reads try `upper` then `lower`; writes go to `upper`
//! only, skipping objects `lower` already holds. This is how a guest stores its
//! checkpoints on its own partition while deduplicating against the shared,
//! read-only repository.

use super::{ObjectStore, Stored};
use crate::digest::{Digest, ObjectKind};
use crate::error::Result;

pub struct Layered<U, L> {
    pub upper: U,
    pub lower: L,
}

impl<U: ObjectStore, L: ObjectStore> Layered<U, L> {
    pub fn new(upper: U, lower: L) -> Self {
        Layered { upper, lower }
    }
}

impl<U: ObjectStore, L: ObjectStore> ObjectStore for Layered<U, L> {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        match self.upper.get(kind, id)? {
            Some(b) => Ok(Some(b)),
            None => self.lower.get(kind, id),
        }
    }
    fn get_shared(&self, kind: ObjectKind, id: &Digest) -> Result<Option<std::sync::Arc<Vec<u8>>>> {
        match self.upper.get_shared(kind, id)? {
            Some(b) => Ok(Some(b)),
            None => self.lower.get_shared(kind, id),
        }
    }
    fn get_stored(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Stored>> {
        match self.upper.get_stored(kind, id)? {
            Some(b) => Ok(Some(b)),
            None => self.lower.get_stored(kind, id),
        }
    }
    fn put_stored(&self, kind: ObjectKind, id: &Digest, obj: &Stored) -> Result<bool> {
        if self.lower.contains(id)? {
            return Ok(false);
        }
        self.upper.put_stored(kind, id, obj)
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        Ok(self.upper.contains(id)? || self.lower.contains(id)?)
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        if self.lower.contains(id)? {
            return Ok(false);
        }
        self.upper.put(kind, id, bytes)
    }
    fn flush(&self) -> Result<()> {
        self.upper.flush()
    }
    fn read_through(&self, id: &Digest) {
        self.upper.read_through(id);
        self.lower.read_through(id);
    }
    fn cache_budget(&self) -> Option<usize> {
        self.lower.cache_budget().or(self.upper.cache_budget())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{put_object, MemStore};
    use std::sync::Arc;

    #[test]
    fn conformance() {
        super::super::conformance::run(&Layered::new(MemStore::new(), MemStore::new()));
    }

    #[test]
    fn writes_skip_what_lower_holds() {
        let lower = Arc::new(MemStore::new());
        let upper = Arc::new(MemStore::new());
        put_object(&*lower, ObjectKind::Chunk, b"shared").unwrap();
        let l = Layered::new(upper.clone(), lower.clone());
        put_object(&l, ObjectKind::Chunk, b"shared").unwrap();
        put_object(&l, ObjectKind::Chunk, b"private").unwrap();
        assert_eq!(upper.len(), 1);
        assert_eq!(lower.len(), 1);
    }
}

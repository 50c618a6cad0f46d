//! An in-memory object store, for tests and scratch work.

use std::collections::HashMap;
use std::sync::RwLock;

use super::ObjectStore;
use crate::digest::{Digest, ObjectKind};
use crate::error::Result;

#[derive(Default)]
pub struct MemStore {
    map: RwLock<HashMap<Digest, (ObjectKind, Vec<u8>)>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Overwrite an object's bytes without changing its id: tests use this to
    /// simulate damage.
    pub fn corrupt(&self, id: &Digest, bytes: Vec<u8>) {
        if let Ok(mut m) = self.map.write() {
            if let Some(e) = m.get_mut(id) {
                e.1 = bytes;
            }
        }
    }
}

impl ObjectStore for MemStore {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        Ok(m.get(id).filter(|(k, _)| *k == kind).map(|(_, b)| b.clone()))
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        Ok(m.contains_key(id))
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(id) {
            return Ok(false);
        }
        m.insert(*id, (kind, bytes.to_vec()));
        Ok(true)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run(&super::MemStore::new());
    }
}

//! Verification wrapper: every object read is checked against its id, so damaged
//! bytes become an error naming the object and are never served as data.

use super::{ObjectStore, Stored};
use crate::digest::{Digest, ObjectKind};
use crate::error::{DamageKind, Error, Result};

pub struct Verified<S> {
    inner: S,
}

impl<S: ObjectStore> Verified<S> {
    pub fn new(inner: S) -> Self {
        Verified { inner }
    }
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: ObjectStore> ObjectStore for Verified<S> {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        // A cached copy of a remote record (cut by eviction, or damaged
        // here) is dropped and read once more from the bucket.
        let bytes = match self.inner.get(kind, id) {
            Ok(None) => return Ok(None),
            Ok(Some(b)) if kind.hash(&b) == *id => b,
            Ok(Some(_)) | Err(Error::Damaged { .. }) if self.inner.heal(id) => self.inner.get(kind, id)?.ok_or(Error::Missing { kind, id: *id })?,
            other => other?.ok_or(Error::Missing { kind, id: *id })?,
        };
        if kind.hash(&bytes) != *id {
            tracing::error!(chunk = %id, kind = kind.name(), "object fails verification");
            return Err(Error::Damaged { kind, id: *id, why: DamageKind::HashMismatch });
        }
        tracing::trace!(chunk = %id, kind = kind.name(), bytes = bytes.len(), "object read and verified");
        Ok(Some(bytes))
    }
    /// Decoded and hashed here; the caller gets the stored form only.
    fn get_stored(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Stored>> {
        let Some(mut obj) = self.inner.get_stored(kind, id)? else {
            return Ok(None);
        };
        if obj.verify(kind, id).is_err() && self.inner.heal(id) {
            obj = self.inner.get_stored(kind, id)?.ok_or(Error::Missing { kind, id: *id })?;
        }
        if let Err(e) = obj.verify(kind, id) {
            tracing::error!(chunk = %id, kind = kind.name(), "object fails verification");
            return Err(e);
        }
        Ok(Some(obj))
    }
    fn put_stored(&self, kind: ObjectKind, id: &Digest, obj: &Stored) -> Result<bool> {
        self.inner.put_stored(kind, id, obj)
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        self.inner.contains(id)
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        debug_assert_eq!(kind.hash(bytes), *id, "caller passed a wrong id");
        self.inner.put(kind, id, bytes)
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
    fn heal(&self, id: &Digest) -> bool {
        self.inner.heal(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{put_object, MemStore};
    use std::sync::Arc;

    #[test]
    fn conformance() {
        super::super::conformance::run(&Verified::new(MemStore::new()));
    }

    #[test]
    fn damaged_bytes_are_an_error_not_data() {
        let mem = Arc::new(MemStore::new());
        let v = Verified::new(mem.clone());
        let id = put_object(&v, ObjectKind::Chunk, b"good bytes").unwrap();
        mem.corrupt(&id, b"evil bytes".to_vec());
        match v.get(ObjectKind::Chunk, &id) {
            Err(Error::Damaged { id: bad, why: DamageKind::HashMismatch, .. }) => assert_eq!(bad, id),
            other => panic!("expected damage error, got {other:?}"),
        }
    }
}

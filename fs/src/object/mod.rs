//! Object stores: the seam between "what an object is" and "where its bytes live".
//!
//! An object is an immutable byte string named by its digest in a kind's domain
//! (see [`crate::digest::ObjectKind`]). Stores hold objects; they do not interpret
//! them. Verification and caching are wrappers ([`Verified`], [`Cached`]) around any
//! store, never flags inside one. Implementations:
//! - [`PackStore`]: pack files plus a RocksDB index, the on-disk repository format;
//! - [`MemStore`]: a map in memory, for tests and scratch work.
//!
//! Wrappers: [`Verified`], [`Cached`], [`Layered`] (a guest's store over the
//! shared one) and [`Confirmed`] (presence checked against a current view).

mod cache;
mod confirmed;
mod layered;
mod mem;
mod pack;
mod stored;
mod verify;

pub use cache::Cached;
pub use confirmed::Confirmed;
pub use layered::Layered;
pub use mem::MemStore;
pub(crate) use pack::RecordHeader;
pub use pack::{IndexEntry, PackStore, PACK_HEADER_LEN, PACK_MAGIC, RECORD_HEADER_LEN, RECORD_MAGIC};
pub use stored::{Codec, Stored};
pub use verify::Verified;

use std::sync::Arc;

use crate::digest::{Digest, ObjectKind};
use crate::error::{Error, Result};

/// A content-addressed object store.
///
/// Contract, shared by every implementation and checked by the conformance suite
/// in this module's tests:
/// - `get` returns `Ok(None)` when the store does not hold `id`; it never returns
///   bytes stored under another id. It may return damaged bytes: checking them
///   against the id is the job of the [`Verified`] wrapper.
/// - `put` is idempotent: putting an id the store already holds writes nothing and
///   returns `Ok(false)`. The caller guarantees `id == kind.hash(bytes)`.
/// - A `put` is visible to `get`/`contains` at once, but durable only after `flush`
///   returns. A crash before `flush` loses the object entirely, never half of it.
pub trait ObjectStore: Send + Sync {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>>;
    /// `get`, with the bytes possibly shared with a cache instead of copied
    /// (same contract). The default wraps `get`'s vector; [`Cached`] hands
    /// out its own buffer, so a 4 KiB read of a cached 64 KiB chunk copies
    /// 4 KiB, not 64. Wrappers forward it.
    fn get_shared(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Arc<Vec<u8>>>> {
        Ok(self.get(kind, id)?.map(Arc::new))
    }
    fn contains(&self, id: &Digest) -> Result<bool>;
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool>;
    /// `get` in the stored form (possibly compressed), for a copy to
    /// another store that keeps it as it is (same contract as `get`: checked
    /// only through [`Verified`]). The default gives `get`'s bytes raw.
    /// Wrappers forward it.
    fn get_stored(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Stored>> {
        Ok(self.get(kind, id)?.map(Stored::raw))
    }
    /// `put` of an object in stored form, kept as given (a copy trusts the
    /// codec choice of the store it came from). The caller guarantees that
    /// `obj` decodes to bytes hashing to `id` ([`Stored::verify`]). The
    /// default decodes it and `put`s the bytes. Wrappers forward it.
    fn put_stored(&self, kind: ObjectKind, id: &Digest, obj: &Stored) -> Result<bool> {
        let bytes = obj.decode().map_err(|why| Error::Damaged { kind, id: *id, why })?;
        self.put(kind, id, &bytes)
    }
    fn flush(&self) -> Result<()>;
    /// A hint, never needed for correctness: a sequential reader is past
    /// object `id` and does not expect to read it again soon. A cache may let
    /// it go before the others; a store ignores it. Wrappers forward it.
    fn read_through(&self, _id: &Digest) {}
    /// The bytes a cache in this store may keep now (`None`: no cache).
    /// Read-ahead sizes what it loads by it. Wrappers forward it.
    fn cache_budget(&self) -> Option<usize> {
        None
    }
    /// After `id` failed verification: drop a copy of it that can be had
    /// again (a record cached from a remote repository); whether one was
    /// dropped, so that one more read may succeed. Wrappers forward it.
    fn heal(&self, _id: &Digest) -> bool {
        false
    }
}

impl<T: ObjectStore + ?Sized> ObjectStore for Arc<T> {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        (**self).get(kind, id)
    }
    fn get_shared(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Arc<Vec<u8>>>> {
        (**self).get_shared(kind, id)
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        (**self).contains(id)
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        (**self).put(kind, id, bytes)
    }
    fn get_stored(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Stored>> {
        (**self).get_stored(kind, id)
    }
    fn put_stored(&self, kind: ObjectKind, id: &Digest, obj: &Stored) -> Result<bool> {
        (**self).put_stored(kind, id, obj)
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn read_through(&self, id: &Digest) {
        (**self).read_through(id)
    }
    fn cache_budget(&self) -> Option<usize> {
        (**self).cache_budget()
    }
    fn heal(&self, id: &Digest) -> bool {
        (**self).heal(id)
    }
}

/// Hash `bytes` in `kind`'s domain, store them, and return the id.
pub fn put_object(store: &dyn ObjectStore, kind: ObjectKind, bytes: &[u8]) -> Result<Digest> {
    let id = kind.hash(bytes);
    store.put(kind, &id, bytes)?;
    Ok(id)
}

/// Fetch an object that must exist: a missing object is an error naming it.
pub fn get_required(store: &dyn ObjectStore, kind: ObjectKind, id: &Digest) -> Result<Vec<u8>> {
    store
        .get(kind, id)?
        .ok_or(Error::Missing { kind, id: *id })
}

/// [`get_required`] through [`ObjectStore::get_shared`]: for reads that use
/// part of an object, or only look at it.
pub fn get_required_shared(store: &dyn ObjectStore, kind: ObjectKind, id: &Digest) -> Result<Arc<Vec<u8>>> {
    store
        .get_shared(kind, id)?
        .ok_or(Error::Missing { kind, id: *id })
}

#[cfg(test)]
pub(crate) mod conformance {
    //! One suite, applied to every [`ObjectStore`] implementation.
    use super::*;

    pub fn run(store: &dyn ObjectStore) {
        let a = b"alpha".repeat(1000);
        let id = ObjectKind::Chunk.hash(&a);
        assert_eq!(store.get(ObjectKind::Chunk, &id).unwrap(), None, "absent is Ok(None)");
        assert_eq!(store.get_shared(ObjectKind::Chunk, &id).unwrap(), None, "absent is Ok(None), shared too");
        assert!(!store.contains(&id).unwrap());
        assert!(store.put(ObjectKind::Chunk, &id, &a).unwrap(), "first put stores");
        assert!(!store.put(ObjectKind::Chunk, &id, &a).unwrap(), "second put is a no-op");
        assert!(store.contains(&id).unwrap());
        assert_eq!(store.get(ObjectKind::Chunk, &id).unwrap().as_deref(), Some(&a[..]));
        store.flush().unwrap();
        assert_eq!(store.get(ObjectKind::Chunk, &id).unwrap().as_deref(), Some(&a[..]));
        // Incompressible and empty objects round-trip too.
        let mut noise = vec![0u8; 70_000];
        let mut x = 0x9e3779b97f4a7c15u64;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let nid = put_object(store, ObjectKind::Chunk, &noise).unwrap();
        let eid = put_object(store, ObjectKind::Tree, b"").unwrap();
        store.flush().unwrap();
        assert_eq!(store.get(ObjectKind::Chunk, &nid).unwrap().unwrap(), noise);
        assert_eq!(store.get(ObjectKind::Tree, &eid).unwrap().unwrap(), b"");
        // The stored form round-trips: into the same store (a no-op) and
        // as a new object of either codec.
        let got = store.get_stored(ObjectKind::Chunk, &nid).unwrap().unwrap();
        got.verify(ObjectKind::Chunk, &nid).unwrap();
        assert!(!store.put_stored(ObjectKind::Chunk, &nid, &got).unwrap(), "held: a no-op");
        let text = b"stored form ".repeat(400);
        let tid = ObjectKind::Chunk.hash(&text);
        assert!(store.put_stored(ObjectKind::Chunk, &tid, &Stored::encode(&text, 3)).unwrap());
        store.flush().unwrap();
        assert_eq!(store.get(ObjectKind::Chunk, &tid).unwrap().unwrap(), text);
        assert_eq!(store.get_stored(ObjectKind::Chunk, &tid).unwrap().unwrap().decode().unwrap(), text);
        assert_eq!(store.get_stored(ObjectKind::Tree, &tid).unwrap(), None, "another kind is absent");
        // get_shared gives the same bytes, again and again (a cache's
        // buffer is shared, never handed out for change).
        for _ in 0..2 {
            assert_eq!(*store.get_shared(ObjectKind::Chunk, &nid).unwrap().unwrap(), noise);
            assert_eq!(*store.get_shared(ObjectKind::Chunk, &id).unwrap().unwrap(), a);
        }
    }
}

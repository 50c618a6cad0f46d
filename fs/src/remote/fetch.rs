//! Lazy reads: a record of a remote-backed pack that is not in the cache
//! (its offset is a hole) is fetched with one ranged GET, checked, and
//! written into the cache's sparse copy of the pack.
//!
//! Order: the payload is written before the header, so a present record
//! magic means the record's bytes are present (a crash between the two
//! leaves a hole that is fetched again). A fetched record whose header or
//! hash is wrong is fetched once more, then reported damaged: the cache
//! never takes, nor serves, bytes that do not match their id.

use std::os::unix::fs::FileExt;
use std::path::Path;

use object_store::ObjectStoreExt;

use super::Remote;
use crate::digest::Digest;
use crate::error::{DamageKind, Error, Result};
use crate::object::{IndexEntry, RECORD_HEADER_LEN};
use crate::object::{Codec, Stored};

impl Remote {
    /// Fetch the record `e` (of `id`) of remote pack `name` into the local
    /// pack file `local`; its stored payload. `header` is the record header
    /// the index entry implies.
    pub(crate) fn fill(&self, local: &Path, name: &str, id: &Digest, e: &IndexEntry, header: &[u8; RECORD_HEADER_LEN]) -> Result<Vec<u8>> {
        let rel = format!("packs/{name}.pack");
        let path = self.path(&rel);
        let range = e.offset..e.offset + (RECORD_HEADER_LEN as u64) + u64::from(e.stored_len);
        let codec = Codec::from_u8(e.codec).ok_or(Error::Damaged { kind: e.kind, id: *id, why: DamageKind::BadHeader })?;
        let mut why = DamageKind::HashMismatch;
        for attempt in 1..=2 {
            let bytes = match self.block(self.bucket().get_range(&path, range.clone())) {
                Ok(b) => b,
                Err(err) => {
                    let err = self.err("fetching", &rel, err);
                    tracing::error!(chunk = %id, offset = e.offset, error = %crate::error::chain(&err), "fetching a record from the remote repository failed");
                    return Err(err);
                }
            };
            self.count(bytes.len() as u64);
            if bytes.len() as u64 != range.end - range.start || bytes[..RECORD_HEADER_LEN] != header[..] {
                why = if (bytes.len() as u64) < range.end - range.start { DamageKind::Truncated } else { DamageKind::BadHeader };
                tracing::error!(chunk = %id, offset = e.offset, attempt, "remote record has a wrong header or length");
                continue;
            }
            let stored = Stored { codec, raw_len: e.raw_len, payload: bytes[RECORD_HEADER_LEN..].to_vec() };
            if stored.verify(e.kind, id).is_err() {
                why = DamageKind::HashMismatch;
                tracing::error!(chunk = %id, offset = e.offset, attempt, "remote record fails verification");
                continue;
            }
            match write_record(local, e.offset, &bytes) {
                Ok(()) => self.filled(local.parent().unwrap_or(local), bytes.len() as u64),
                // Served all the same: the cache only misses a copy.
                Err(err) => tracing::warn!(chunk = %id, path = %local.display(), error = %err, "keeping a fetched record in the cache failed"),
            }
            return Ok(stored.payload);
        }
        Err(Error::Damaged { kind: e.kind, id: *id, why })
    }
}

/// Write a record (header and payload) at `offset` of `local`: payload first.
fn write_record(local: &Path, offset: u64, rec: &[u8]) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(local)?;
    f.write_all_at(&rec[RECORD_HEADER_LEN..], offset + RECORD_HEADER_LEN as u64)?;
    f.write_all_at(&rec[..RECORD_HEADER_LEN], offset)
}

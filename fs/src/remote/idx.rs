//! A remote pack's index object, `packs/<b3>.idx` (format 1):
//! `"LVIDX\0\0\x01" | pack_len u64 | count u64 | entries | b3 [32]`, each
//! entry `id [32] | offset u64 | stored_len u32 | raw_len u32 | kind u8 |
//! codec u8 | reserved u16`, little-endian; the trailing BLAKE3 covers all
//! bytes before it, so a damaged or cut index is refused, never half-read.

use crate::digest::{Digest, ObjectKind, DIGEST_LEN};
use crate::error::{Error, Result};
use crate::object::IndexEntry;

const MAGIC: &[u8; 8] = b"LVIDX\0\0\x01";
const ENTRY_LEN: usize = DIGEST_LEN + 8 + 4 + 4 + 4;

/// One record of a remote pack (its local pack number is the cache's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: Digest,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub kind: ObjectKind,
    pub codec: u8,
}

impl Entry {
    pub fn local(&self, pack: u32) -> IndexEntry {
        IndexEntry { pack, offset: self.offset, stored_len: self.stored_len, raw_len: self.raw_len, kind: self.kind, codec: self.codec }
    }
}

pub(crate) fn encode(pack_len: u64, entries: &[Entry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(24 + entries.len() * ENTRY_LEN + 32);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&pack_len.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        b.extend_from_slice(e.id.as_bytes());
        b.extend_from_slice(&e.offset.to_le_bytes());
        b.extend_from_slice(&e.stored_len.to_le_bytes());
        b.extend_from_slice(&e.raw_len.to_le_bytes());
        b.extend_from_slice(&[e.kind as u8, e.codec, 0, 0]);
    }
    let sum = blake3::hash(&b);
    b.extend_from_slice(sum.as_bytes());
    b
}

/// The pack's length and its entries.
pub(crate) fn decode(b: &[u8]) -> Result<(u64, Vec<Entry>)> {
    let bad = |why| Error::Decode { what: "remote pack index", why };
    if b.len() < 24 + 32 || &b[..8] != MAGIC {
        return Err(bad("not a pack index"));
    }
    let (body, sum) = b.split_at(b.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(bad("checksum mismatch"));
    }
    let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap_or_default());
    let (pack_len, count) = (u64_at(8), u64_at(16));
    let rest = &body[24..];
    if Some(rest.len() as u64) != count.checked_mul(ENTRY_LEN as u64) {
        return Err(bad("wrong length"));
    }
    let mut out = Vec::with_capacity(count as usize);
    for e in rest.chunks_exact(ENTRY_LEN) {
        let u32_at = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().unwrap_or_default());
        let id = Digest::from_slice(&e[..DIGEST_LEN]).map_err(|_| bad("bad id"))?;
        let offset = u64::from_le_bytes(e[32..40].try_into().unwrap_or_default());
        let kind = ObjectKind::from_u8(e[48]).ok_or(bad("unknown kind"))?;
        if offset.saturating_add(u64::from(u32_at(40))) > pack_len {
            return Err(bad("entry beyond the pack"));
        }
        out.push(Entry { id, offset, stored_len: u32_at(40), raw_len: u32_at(44), kind, codec: e[49] });
    }
    Ok((pack_len, out))
}

//! An object in the form a store keeps it: a payload under a codec.
//!
//! Copies between stores (backup, restore, streams) move this form as it is:
//! decoding and hashing is cheap, compressing again is what a copy would
//! otherwise spend its time on. The invariant a copy keeps: a stored form is
//! written only after [`Stored::verify`] (or a [`super::Verified`] read) has
//! decoded it exactly as a reader will and hashed the result to its id.

use crate::digest::{Digest, ObjectKind};
use crate::error::{DamageKind, Error, Result};

/// How a payload encodes an object (the pack record's codec byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
}

impl Codec {
    pub fn from_u8(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub codec: Codec,
    /// The object's length once decoded.
    pub raw_len: u32,
    pub payload: Vec<u8>,
}

impl Stored {
    /// An object kept as it is.
    pub fn raw(bytes: Vec<u8>) -> Stored {
        Stored { codec: Codec::Raw, raw_len: bytes.len() as u32, payload: bytes }
    }

    /// `bytes` compressed at `level`, or kept raw (see [`compressed`]).
    pub fn encode(bytes: &[u8], level: i32) -> Stored {
        match compressed(bytes, level) {
            Some(z) => Stored { codec: Codec::Zstd, raw_len: bytes.len() as u32, payload: z },
            None => Stored::raw(bytes.to_vec()),
        }
    }

    /// The object's bytes: exactly `raw_len` of them, or the payload is
    /// damaged. Not hashed (see [`Stored::verify`]).
    pub fn decode(&self) -> std::result::Result<Vec<u8>, DamageKind> {
        match self.codec {
            Codec::Raw => self.clone().into_decoded(),
            Codec::Zstd => check_len(decompress(&self.payload, self.raw_len as usize).map_err(|_| DamageKind::Undecodable)?, self.raw_len),
        }
    }

    /// [`Stored::decode`], moving a raw payload instead of copying it.
    pub fn into_decoded(self) -> std::result::Result<Vec<u8>, DamageKind> {
        match self.codec {
            Codec::Raw => check_len(self.payload, self.raw_len),
            Codec::Zstd => self.decode(),
        }
    }

    /// Decode and hash in `kind`'s domain: damage is an error naming `id`.
    pub fn verify(&self, kind: ObjectKind, id: &Digest) -> Result<()> {
        let damaged = |why| Error::Damaged { kind, id: *id, why };
        let ok = match self.codec {
            // No copy for what needs no decoding.
            Codec::Raw => self.payload.len() == self.raw_len as usize && kind.hash(&self.payload) == *id,
            Codec::Zstd => kind.hash(&self.decode().map_err(damaged)?) == *id,
        };
        if !ok {
            return Err(damaged(DamageKind::HashMismatch));
        }
        Ok(())
    }
}

fn check_len(out: Vec<u8>, raw_len: u32) -> std::result::Result<Vec<u8>, DamageKind> {
    if out.len() != raw_len as usize {
        return Err(DamageKind::Undecodable);
    }
    Ok(out)
}

/// `bytes` compressed at `level`, or `None` when that saves less than about
/// 3% (not worth a decompression on every read): such objects are kept raw.
pub(crate) fn compressed(bytes: &[u8], level: i32) -> Option<Vec<u8>> {
    zstd::bulk::compress(bytes, level).ok().filter(|z| z.len() + z.len() / 32 < bytes.len())
}

/// zstd decompression with one context per thread: a fresh context per
/// record (a large zeroed allocation) showed up in profiles of cold walks,
/// which read one small tree per directory.
pub(crate) fn decompress(payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|c| {
        let mut c = c.try_borrow_mut().map_err(std::io::Error::other)?;
        if c.is_none() {
            *c = Some(zstd::bulk::Decompressor::new()?);
        }
        match c.as_mut() {
            Some(d) => d.decompress(payload, capacity),
            None => zstd::bulk::decompress(payload, capacity),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_catches_damage_in_either_codec() {
        let text = b"compressible ".repeat(500);
        let id = ObjectKind::Chunk.hash(&text);
        let z = Stored::encode(&text, 3);
        assert_eq!(z.codec, Codec::Zstd);
        z.verify(ObjectKind::Chunk, &id).unwrap();
        assert_eq!(z.decode().unwrap(), text);
        // Another kind's domain, a flipped payload byte, a wrong length.
        assert!(z.verify(ObjectKind::Tree, &id).is_err());
        let mut bad = z.clone();
        let mid = bad.payload.len() / 2;
        bad.payload[mid] ^= 0x40;
        assert!(matches!(bad.verify(ObjectKind::Chunk, &id), Err(Error::Damaged { .. })));
        let mut bad = z.clone();
        bad.raw_len -= 1;
        assert!(matches!(bad.verify(ObjectKind::Chunk, &id), Err(Error::Damaged { why: DamageKind::Undecodable, .. })));
        let raw = Stored::raw(b"tiny".to_vec());
        let rid = ObjectKind::Chunk.hash(b"tiny");
        raw.verify(ObjectKind::Chunk, &rid).unwrap();
        let mut bad = raw.clone();
        bad.payload[0] ^= 1;
        assert!(matches!(bad.verify(ObjectKind::Chunk, &rid), Err(Error::Damaged { why: DamageKind::HashMismatch, .. })));
    }
}

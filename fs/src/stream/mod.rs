//! Streams (format v2): a self-describing byte stream carrying refs and the
//! objects a receiver lacks, for pipes (ssh) and files (air-gapped DR).
//! Layer: operations; reads and writes go through [`ObjectStore`] only.
//!
//! Layout (docs/format.md#streams): `"LVSTREAM"`, version u32 LE, then
//! records `tag u8 | len u32 LE | body`:
//! - `H` once, first: [`StreamHeader`] as JSON (kind, base);
//! - per object, children before the objects naming them, in the form the
//!   sender's store keeps it: `O` `kind u8 | id [32] | bytes` (uncompressed)
//!   or (v2) `Z` `kind u8 | id [32] | raw_len u32 LE | zstd payload`;
//! - `R` once, after the objects: [`StreamRefs`] as JSON (with the images'
//!   signatures, `signatures`, when they have any);
//! - `T` last: `objects u64 LE | BLAKE3 of every byte before this record`.
//!
//! Invariant on receive: every object is decoded and re-hashed in its
//! kind's domain before it is stored (a `Z` payload is then stored as it
//! came, not compressed again); no ref is written until the trailer's hash and
//! count match and every ref's closure is present. Objects are flushed every
//! 64 MiB as they arrive (checked, but named by no ref: garbage for gc), so
//! a rerun after an interruption does not store them again; a truncated,
//! damaged or refused stream makes nothing visible.

mod receive;
mod send;

pub use receive::{receive, ReceiveReport};
pub use send::{send_guest, send_image, SendReport};

use std::io::{Read, Write};

use crate::backup::BackupGuest;
use crate::digest::{Digest, ObjectKind, TreeId, DIGEST_LEN};
use crate::error::{Error, Result};
use crate::object::{Codec, Stored};
use crate::repo::ImageRecord;

pub const STREAM_MAGIC: &[u8; 8] = b"LVSTREAM";
pub const STREAM_VERSION: u32 = 2;
/// Version 1 streams (no `Z` records) are still read.
pub const STREAM_VERSION_MIN: u32 = 1;
/// The largest record a receiver accepts (objects are at most a few MiB; a
/// larger length is damage, not something to allocate).
pub const MAX_RECORD: u32 = 64 << 20;

const TAG_HEADER: u8 = b'H';
const TAG_OBJECT: u8 = b'O';
const TAG_ZSTD_OBJECT: u8 = b'Z';
const TAG_REFS: u8 = b'R';
const TAG_TRAILER: u8 = b'T';

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// Image versions, published as images.
    Image,
    /// A guest's checkpoints, recorded as a backup (`backup/GUEST:N`).
    Guest,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StreamHeader {
    pub kind: StreamKind,
    /// Incremental: the root the sender left out (and everything it reaches);
    /// the receiver must hold it.
    pub base: Option<TreeId>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StreamRefs {
    /// Image records (kind image) or checkpoint records (kind guest).
    pub images: Vec<ImageRecord>,
    pub guest: Option<BackupGuest>,
    /// The images' signatures (kind image). Absent in streams from before
    /// signatures travelled; a receiver that does not know the field
    /// ignores it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<crate::sign::CarriedSignature>,
}

fn bad(why: impl Into<String>) -> Error {
    Error::BadStream(why.into())
}

/// Writes records and keeps the running hash.
pub(crate) struct Writer<W: Write> {
    out: W,
    hash: blake3::Hasher,
    pub(crate) objects: u64,
    pub(crate) bytes: u64,
}

impl<W: Write> Writer<W> {
    pub(crate) fn new(mut out: W, header: &StreamHeader) -> Result<Self> {
        let mut start = STREAM_MAGIC.to_vec();
        start.extend_from_slice(&STREAM_VERSION.to_le_bytes());
        out.write_all(&start).map_err(write_err)?;
        let mut hash = blake3::Hasher::new();
        hash.update(&start);
        let mut w = Writer { out, hash, objects: 0, bytes: start.len() as u64 };
        w.record(TAG_HEADER, &[&json(header)?])?;
        Ok(w)
    }

    fn record(&mut self, tag: u8, parts: &[&[u8]]) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(len).ok().filter(|&l| l <= MAX_RECORD).ok_or_else(|| bad("record too large to send"))?;
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&head).map_err(write_err)?;
        self.hash.update(&head);
        for p in parts {
            self.out.write_all(p).map_err(write_err)?;
            self.hash.update(p);
        }
        self.bytes += 5 + len as u64;
        Ok(())
    }

    pub(crate) fn object(&mut self, kind: ObjectKind, id: &Digest, obj: &Stored) -> Result<()> {
        self.objects += 1;
        match obj.codec {
            Codec::Raw => self.record(TAG_OBJECT, &[&[kind as u8], id.as_bytes(), &obj.payload]),
            Codec::Zstd => self.record(TAG_ZSTD_OBJECT, &[&[kind as u8], id.as_bytes(), &obj.raw_len.to_le_bytes(), &obj.payload]),
        }
    }

    /// The refs record and the trailer; flushes the output.
    pub(crate) fn finish(mut self, refs: &StreamRefs) -> Result<(u64, u64)> {
        self.record(TAG_REFS, &[&json(refs)?])?;
        let digest = *self.hash.finalize().as_bytes();
        let count = self.objects.to_le_bytes();
        let mut head = [0u8; 5];
        head[0] = TAG_TRAILER;
        head[1..].copy_from_slice(&((8 + DIGEST_LEN) as u32).to_le_bytes());
        for p in [&head[..], &count, &digest] {
            self.out.write_all(p).map_err(write_err)?;
        }
        self.out.flush().map_err(write_err)?;
        Ok((self.objects, self.bytes + 5 + 8 + DIGEST_LEN as u64))
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|_| Error::Decode { what: "stream record", why: "unencodable" })
}

fn write_err(e: std::io::Error) -> Error {
    Error::io("writing", "the stream", e)
}

/// One record read from a stream.
pub(crate) enum Record {
    Header(StreamHeader),
    /// Checked: it decodes to bytes that hash to the id.
    Object(ObjectKind, Digest, Stored),
    Refs(StreamRefs),
    /// The trailer checked out: object count and hash matched.
    End,
}

/// Reads records, checking framing, the running hash and the trailer.
pub(crate) struct Reader<R: Read> {
    input: R,
    hash: blake3::Hasher,
    objects: u64,
    ended: bool,
    pub(crate) version: u32,
}

impl<R: Read> Reader<R> {
    pub(crate) fn new(mut input: R) -> Result<Self> {
        let mut start = [0u8; 12];
        read_exact(&mut input, &mut start, "the stream header")?;
        if &start[..8] != STREAM_MAGIC {
            return Err(bad("not an lvrepo stream (bad magic)"));
        }
        let version = u32::from_le_bytes([start[8], start[9], start[10], start[11]]);
        if !(STREAM_VERSION_MIN..=STREAM_VERSION).contains(&version) {
            return Err(bad(format!("stream format version {version}; this lvrepo reads versions {STREAM_VERSION_MIN} to {STREAM_VERSION}")));
        }
        let mut hash = blake3::Hasher::new();
        hash.update(&start);
        Ok(Reader { input, hash, objects: 0, ended: false, version })
    }

    pub(crate) fn next(&mut self) -> Result<Record> {
        if self.ended {
            return Err(bad("read past the trailer"));
        }
        let mut head = [0u8; 5];
        read_exact(&mut self.input, &mut head, "a record header")?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_RECORD {
            return Err(bad(format!("record of {len} bytes (damaged length)")));
        }
        let mut body = vec![0u8; len as usize];
        read_exact(&mut self.input, &mut body, "a record")?;
        if head[0] == TAG_TRAILER {
            return self.trailer(&body);
        }
        self.hash.update(&head);
        self.hash.update(&body);
        match head[0] {
            TAG_HEADER => Ok(Record::Header(serde_json::from_slice(&body).map_err(|_| bad("header record is not valid JSON"))?)),
            TAG_REFS => Ok(Record::Refs(serde_json::from_slice(&body).map_err(|_| bad("refs record is not valid JSON"))?)),
            TAG_OBJECT => self.object(body, false),
            TAG_ZSTD_OBJECT if self.version >= 2 => self.object(body, true),
            t => Err(bad(format!("unknown record tag {t:#04x}"))),
        }
    }

    /// An object record's body: `kind | id | [raw_len u32 |] payload`.
    fn object(&mut self, mut body: Vec<u8>, zstd: bool) -> Result<Record> {
        let head = 1 + DIGEST_LEN + if zstd { 4 } else { 0 };
        if body.len() < head {
            return Err(bad("object record too short"));
        }
        let kind = ObjectKind::from_u8(body[0]).ok_or_else(|| bad(format!("unknown object kind {}", body[0])))?;
        let mut id = [0u8; DIGEST_LEN];
        id.copy_from_slice(&body[1..1 + DIGEST_LEN]);
        let id = Digest(id);
        let obj = if zstd {
            let raw_len = u32::from_le_bytes([body[head - 4], body[head - 3], body[head - 2], body[head - 1]]);
            // Decoding allocates raw_len: bounded like a record.
            if raw_len > MAX_RECORD {
                return Err(bad(format!("object of {raw_len} bytes (damaged length)")));
            }
            body.drain(..head);
            Stored { codec: Codec::Zstd, raw_len, payload: body }
        } else {
            body.drain(..head);
            Stored::raw(body)
        };
        obj.verify(kind, &id)?;
        self.objects += 1;
        Ok(Record::Object(kind, id, obj))
    }

    fn trailer(&mut self, body: &[u8]) -> Result<Record> {
        if body.len() != 8 + DIGEST_LEN {
            return Err(bad("trailer has the wrong length"));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&body[..8]);
        if u64::from_le_bytes(n) != self.objects {
            return Err(bad(format!("trailer counts {} objects, the stream held {}", u64::from_le_bytes(n), self.objects)));
        }
        if body[8..] != self.hash.finalize().as_bytes()[..] {
            return Err(bad("stream hash mismatch (damaged in transit)"));
        }
        let mut extra = [0u8; 1];
        match self.input.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(bad("bytes after the trailer")),
            Err(e) => return Err(Error::io("reading", "the stream", e)),
        }
        self.ended = true;
        Ok(Record::End)
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad(format!("truncated: the stream ends inside {what}"))
        } else {
            Error::io("reading", "the stream", e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of `version` with one object record and a correct trailer.
    fn stream(version: u32, tag: u8, body: &[u8]) -> Vec<u8> {
        let mut s = STREAM_MAGIC.to_vec();
        s.extend_from_slice(&version.to_le_bytes());
        for (t, b) in [(TAG_HEADER, &br#"{"kind":"image","base":null}"#[..]), (tag, body)] {
            s.push(t);
            s.extend_from_slice(&(b.len() as u32).to_le_bytes());
            s.extend_from_slice(b);
        }
        let h = *blake3::hash(&s).as_bytes();
        s.push(TAG_TRAILER);
        s.extend_from_slice(&40u32.to_le_bytes());
        s.extend_from_slice(&1u64.to_le_bytes());
        s.extend_from_slice(&h);
        s
    }

    fn first_object(s: &[u8]) -> Result<Stored> {
        let mut r = Reader::new(s)?;
        assert!(matches!(r.next()?, Record::Header(_)));
        let Record::Object(_, _, obj) = r.next()? else { panic!("not an object") };
        assert!(matches!(r.next()?, Record::End));
        Ok(obj)
    }

    #[test]
    fn version_1_streams_are_read_and_compressed_records_are_checked() {
        let text = b"an object ".repeat(300);
        let id = ObjectKind::Chunk.hash(&text);
        let plain = [&[ObjectKind::Chunk as u8][..], id.as_bytes(), &text].concat();
        let z = Stored::encode(&text, 3);
        let packed = [&[ObjectKind::Chunk as u8][..], id.as_bytes(), &z.raw_len.to_le_bytes(), &z.payload].concat();
        assert_eq!(first_object(&stream(1, TAG_OBJECT, &plain)).unwrap().decode().unwrap(), text, "v1 uncompressed");
        assert_eq!(first_object(&stream(2, TAG_ZSTD_OBJECT, &packed)).unwrap(), z, "v2 compressed, kept as sent");
        assert!(matches!(first_object(&stream(1, TAG_ZSTD_OBJECT, &packed)), Err(Error::BadStream(_))), "no Z in v1");
        let mut bad = packed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x21;
        assert!(matches!(first_object(&stream(2, TAG_ZSTD_OBJECT, &bad)), Err(Error::Damaged { .. })));
        let mut short = packed.clone();
        short[33..37].copy_from_slice(&(z.raw_len - 1).to_le_bytes());
        assert!(matches!(first_object(&stream(2, TAG_ZSTD_OBJECT, &short)), Err(Error::Damaged { .. })), "a wrong length is damage");
    }
}

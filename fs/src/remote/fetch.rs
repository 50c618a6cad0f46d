//! Lazy reads: a record of a remote-backed pack that is not in the cache
//! (its offset is a hole) is fetched with a ranged GET, checked, and
//! written into the cache's sparse copy of the pack.
//!
//! Read-ahead: when a fetch starts where the last fetch of the same pack
//! ended (a reader walking the pack in order: a large file, a directory
//! read file by file in import order), the GET also takes the next
//! `window` bytes, the window doubling from 128 KiB up to 2 MiB
//! (`LVREPO_REMOTE_READAHEAD_KIB`: the most; 0: off); any other fetch
//! resets it to the one record asked for, so random reads fetch no
//! more than they read. The window stops at the next byte the cache already
//! holds. Each whole record in the extra bytes is checked against the id in
//! its header before it is kept; a partial or unchecked one is dropped.
//!
//! Order: the payload is written before the header, so a present record
//! magic means the record's bytes are present (a crash between the two
//! leaves a hole that is fetched again). A fetched record whose header or
//! hash is wrong is fetched once more, then reported damaged: the cache
//! never takes, nor serves, bytes that do not match their id.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use object_store::ObjectStoreExt;

use super::Remote;
use crate::digest::Digest;
use crate::error::{DamageKind, Error, Result};
use crate::object::{Codec, Stored};
use crate::object::{IndexEntry, RecordHeader, RECORD_HEADER_LEN, RECORD_MAGIC};

/// The first read-ahead of a pack walked in order, and the default most
/// (`LVREPO_REMOTE_READAHEAD_KIB` sets the most; 0 turns read-ahead off).
const AHEAD_MIN: u64 = 128 << 10;
const AHEAD_MAX: u64 = 2 << 20;

fn ahead_max() -> u64 {
    static MAX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| match std::env::var("LVREPO_REMOTE_READAHEAD_KIB") {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(k) => k.saturating_mul(1024),
            Err(_) => {
                tracing::warn!(value = %v, "LVREPO_REMOTE_READAHEAD_KIB is not a number of KiB: using the default");
                AHEAD_MAX
            }
        },
        Err(_) => AHEAD_MAX,
    })
}

/// One pack's read-ahead state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ahead {
    /// Where the last fetch's kept records ended.
    next: u64,
    /// The window the next fetch starting at `next` gets.
    window: u64,
}

impl Remote {
    /// Fetch the record `e` (of `id`) of remote pack `name` into the local
    /// pack file `local`; its stored payload. `header` is the record header
    /// the index entry implies.
    pub(crate) fn fill(&self, local: &Path, name: &str, id: &Digest, e: &IndexEntry, header: &[u8; RECORD_HEADER_LEN]) -> Result<Vec<u8>> {
        let rel = format!("packs/{name}.pack");
        let path = self.path(&rel);
        let rec_end = e.offset + (RECORD_HEADER_LEN as u64) + u64::from(e.stored_len);
        let codec = Codec::from_u8(e.codec).ok_or(Error::Damaged { kind: e.kind, id: *id, why: DamageKind::BadHeader })?;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(local).ok();
        let window = self.window(name, e.offset, rec_end, file.as_ref());
        let mut why = DamageKind::HashMismatch;
        for attempt in 1..=2 {
            // A second attempt asks for the record alone.
            let range = e.offset..if attempt == 1 { rec_end + window } else { rec_end };
            let bytes = match self.block(self.bucket().get_range(&path, range.clone())) {
                Ok(b) => b,
                Err(err) => {
                    let err = self.err("fetching", &rel, err);
                    tracing::error!(chunk = %id, offset = e.offset, error = %crate::error::chain(&err), "fetching a record from the remote repository failed");
                    return Err(err);
                }
            };
            self.count(bytes.len() as u64);
            let rec_len = (rec_end - e.offset) as usize;
            if bytes.len() < rec_len || bytes[..RECORD_HEADER_LEN] != header[..] {
                why = if bytes.len() < rec_len { DamageKind::Truncated } else { DamageKind::BadHeader };
                tracing::error!(chunk = %id, offset = e.offset, attempt, "remote record has a wrong header or length");
                continue;
            }
            let stored = Stored { codec, raw_len: e.raw_len, payload: bytes[RECORD_HEADER_LEN..rec_len].to_vec() };
            if stored.verify(e.kind, id).is_err() {
                why = DamageKind::HashMismatch;
                tracing::error!(chunk = %id, offset = e.offset, attempt, "remote record fails verification");
                continue;
            }
            let Some(f) = &file else {
                tracing::warn!(chunk = %id, path = %local.display(), "the cache's copy of the pack cannot be opened: serving the record uncached");
                return Ok(stored.payload);
            };
            let mut kept = 0;
            match write_record(f, e.offset, &bytes[..rec_len]) {
                Ok(()) => kept += rec_len as u64,
                // Served all the same: the cache only misses a copy.
                Err(err) => tracing::warn!(chunk = %id, path = %local.display(), error = %err, "keeping a fetched record in the cache failed"),
            }
            let (more, end) = keep_following(f, e.offset + rec_len as u64, &bytes[rec_len..]);
            kept += more;
            self.fetched_to(name, end);
            self.filled(local.parent().unwrap_or(local), kept);
            return Ok(stored.payload);
        }
        Err(Error::Damaged { kind: e.kind, id: *id, why })
    }

    /// The read-ahead for a fetch of `[offset, rec_end)` of pack `name`:
    /// grown if the fetch continues the last one, else none; never past
    /// the pack's end or into bytes the cache already holds.
    fn window(&self, name: &str, offset: u64, rec_end: u64, file: Option<&File>) -> u64 {
        let mut map = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let a = map.entry(name.to_string()).or_default();
        let sequential = a.next == offset && offset > 0;
        let max = ahead_max();
        a.window = if sequential { (a.window * 2).max(AHEAD_MIN).min(max) } else { 0 };
        let want = a.window;
        drop(map);
        let Some(f) = file.filter(|_| want > 0) else { return 0 };
        let size = f.metadata().map_or(rec_end, |m| m.len());
        let held = next_data(f, rec_end).unwrap_or(u64::MAX);
        want.min(size.saturating_sub(rec_end)).min(held.saturating_sub(rec_end))
    }

    fn fetched_to(&self, name: &str, end: u64) {
        let mut map = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 4096 {
            map.clear();
        }
        map.entry(name.to_string()).or_default().next = end;
    }
}

/// Keep the whole, checked records at the start of `bytes` (read from
/// `offset` of the remote pack) that the cache does not hold; the bytes
/// kept and where the kept run ends.
fn keep_following(f: &File, offset: u64, bytes: &[u8]) -> (u64, u64) {
    let (mut at, mut kept) = (0usize, 0u64);
    while let Some(len) = whole_record(&bytes[at..]) {
        let rec = &bytes[at..at + len];
        let off = offset + at as u64;
        let mut magic = [0u8; 4];
        let held = f.read_exact_at(&mut magic, off).is_ok() && magic == *RECORD_MAGIC;
        if !held {
            if write_record(f, off, rec).is_err() {
                break;
            }
            kept += len as u64;
        }
        at += len;
    }
    (kept, offset + at as u64)
}

/// The length of the record at the start of `b` if it is whole and its
/// payload matches the id in its header.
fn whole_record(b: &[u8]) -> Option<usize> {
    let h = RecordHeader::parse(b)?;
    let end = RECORD_HEADER_LEN + h.stored_len as usize;
    let stored = Stored { codec: Codec::from_u8(h.codec)?, raw_len: h.raw_len, payload: b.get(RECORD_HEADER_LEN..end)?.to_vec() };
    stored.verify(h.kind, &h.id).ok()?;
    Some(end)
}

/// The first offset at or after `from` where `f` holds data (None: none).
fn next_data(f: &File, from: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let from = libc::off_t::try_from(from).ok()?;
    // SAFETY: lseek on a descriptor `f` owns; no memory is passed.
    let at = unsafe { libc::lseek(f.as_raw_fd(), from, libc::SEEK_DATA) };
    u64::try_from(at).ok()
}

/// Write a record (header and payload) at `offset` of `f`: payload first.
fn write_record(f: &File, offset: u64, rec: &[u8]) -> std::io::Result<()> {
    f.write_all_at(&rec[RECORD_HEADER_LEN..], offset + RECORD_HEADER_LEN as u64)?;
    f.write_all_at(&rec[..RECORD_HEADER_LEN], offset)
}

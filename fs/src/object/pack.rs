//! The repository's object store: append-only pack files plus a RocksDB index.
//!
//! Layout (format 1, see docs/format.md):
//! - `packs/pack-NNNNNNNN.pack`: a 16-byte file header, then records. Each record
//!   is a 48-byte header (magic, kind, codec, lengths, id) and the payload, so
//!   packs are self-describing and the index can be rebuilt from them.
//! - the `objects` column family maps a 32-byte id to a 24-byte [`IndexEntry`].
//!
//! Durability order: payloads are appended, the pack is fsynced, and only then
//! is the index batch written (synced). A crash therefore leaves at worst pack
//! bytes that nothing indexes (reclaimed by gc), never an index entry pointing
//! at bytes that are not on disk.
//!
//! A failed append or pack sync (a full partition) discards everything
//! appended since the last flush: the pack is cut back to its indexed length,
//! or removed if nothing in it is indexed, so a failed import or checkpoint
//! gives its space back at once. (A failed index write keeps the pack: its
//! batch may still be in the index's log.)

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rocksdb::{WriteBatch, WriteOptions, DB};

use super::{Codec, ObjectStore, Stored};
use crate::digest::{Digest, ObjectKind, DIGEST_LEN};
use crate::error::{DamageKind, Error, Result};

pub const PACK_MAGIC: &[u8; 8] = b"LVPACK\0\0";
pub const PACK_FORMAT: u32 = 1;
pub const PACK_HEADER_LEN: u64 = 16;
pub const RECORD_MAGIC: &[u8; 4] = b"LVOB";
pub const RECORD_HEADER_LEN: usize = 48;
/// A pack is closed once it grows past this size.
const PACK_TARGET: u64 = 512 << 20;
/// Appends stop this far short of a full partition, with ENOSPC: the index
/// needs room to commit and close, and a guest's store shares its partition
/// with the guest's overlay, whose database keeps its own reserve there.
const PACK_RESERVE: u64 = 8 << 20;

/// Where an object lives. On disk (index value) as 24 bytes, little-endian:
/// `pack u32 | offset u64 (of the record header) | stored_len u32 | raw_len u32 |
/// kind u8 | codec u8 | reserved u16 (zero)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub pack: u32,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub kind: ObjectKind,
    pub codec: u8,
}

impl IndexEntry {
    pub const ENCODED_LEN: usize = 24;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[0..4].copy_from_slice(&self.pack.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..16].copy_from_slice(&self.stored_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.raw_len.to_le_bytes());
        b[20] = self.kind as u8;
        b[21] = self.codec;
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let bad = |why| Error::Decode { what: "index entry", why };
        if b.len() != Self::ENCODED_LEN {
            return Err(bad("wrong length"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&b[4..12]);
        Ok(IndexEntry {
            pack: u32_at(0),
            offset: u64::from_le_bytes(off),
            stored_len: u32_at(12),
            raw_len: u32_at(16),
            kind: ObjectKind::from_u8(b[20]).ok_or(bad("unknown kind"))?,
            codec: b[21],
        })
    }
}

/// Record header layout: `magic [4] | kind u8 | codec u8 | reserved u16 |
/// raw_len u32 | stored_len u32 | id [32]`.
fn record_header(kind: ObjectKind, codec: u8, raw: u32, stored: u32, id: &Digest) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(RECORD_MAGIC);
    h[4] = kind as u8;
    h[5] = codec;
    h[8..12].copy_from_slice(&raw.to_le_bytes());
    h[12..16].copy_from_slice(&stored.to_le_bytes());
    h[16..48].copy_from_slice(id.as_bytes());
    h
}
const _: () = assert!(RECORD_HEADER_LEN == 4 + 1 + 1 + 2 + 4 + 4 + DIGEST_LEN);

/// A record header as read from a pack's bytes ([`record_header`]'s
/// layout); the codec is left as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub kind: ObjectKind,
    pub codec: u8,
    pub raw_len: u32,
    pub stored_len: u32,
    pub id: Digest,
}

impl RecordHeader {
    /// The header at the start of `h`: None when `h` is short, or has no
    /// record magic or an unknown kind there.
    pub(crate) fn parse(h: &[u8]) -> Option<RecordHeader> {
        let h = h.get(..RECORD_HEADER_LEN)?;
        if h[..4] != RECORD_MAGIC[..] {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(RecordHeader { kind: ObjectKind::from_u8(h[4])?, codec: h[5], raw_len: u32_at(8), stored_len: u32_at(12), id: Digest::from_slice(&h[16..48]).ok()? })
    }
}

/// Read a record at `offset`: its header into `header`, then `len` payload
/// bytes into a new vector. One `preadv`, usually: the payload lands where it
/// is kept, neither zero-filled first nor shifted past the header afterwards
/// (on a cold sequential read of an image those two were a tenth of the
/// daemon's CPU).
fn read_record(f: &File, header: &mut [u8; RECORD_HEADER_LEN], len: usize, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut payload = Vec::<u8>::with_capacity(len);
    let want = RECORD_HEADER_LEN + len;
    let mut done = 0usize;
    while done < want {
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2];
        let mut n = 0;
        if done < RECORD_HEADER_LEN {
            iov[0] = libc::iovec { iov_base: header[done..].as_mut_ptr().cast(), iov_len: RECORD_HEADER_LEN - done };
            n = 1;
        }
        let from = done.saturating_sub(RECORD_HEADER_LEN);
        if from < len {
            // SAFETY: `from < len <= capacity`, so the pointer stays inside
            // the vector's allocation; the kernel only writes to it.
            iov[n] = libc::iovec { iov_base: unsafe { payload.as_mut_ptr().add(from) }.cast(), iov_len: len - from };
            n += 1;
        }
        let at = libc::off_t::try_from(offset + done as u64).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: each iovec names writable memory we own (the rest of
        // `header`, the unfilled capacity of `payload`), alive for the call.
        let r = unsafe { libc::preadv(f.as_raw_fd(), iov.as_ptr(), n as libc::c_int, at) };
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if r == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        done += r as usize;
    }
    // SAFETY: the loop ran until the kernel had written all `len` payload
    // bytes (every byte after the header up to `want`).
    unsafe { payload.set_len(len) };
    Ok(payload)
}

struct Writer {
    pack: u32,
    file: Arc<File>,
    len: u64,
    /// The pack's length at the last flush: every record before it is indexed.
    flushed: u64,
    batch: Vec<(Digest, IndexEntry)>,
    pending: HashMap<Digest, IndexEntry>,
    /// Pack files created since the last flush, whose directory entry needs a sync.
    new_pack: bool,
    /// Free bytes on the partition at the last statfs, less what was
    /// appended since: statfs runs again only when this nears the reserve.
    free: u64,
}

pub struct PackStore {
    dir: PathBuf,
    db: Arc<DB>,
    cf: &'static str,
    read_only: bool,
    level: i32,
    files: RwLock<HashMap<u32, Arc<File>>>,
    writer: Mutex<Option<Writer>>,
    /// The bucket this store caches (docs/remote.md): holes in its packs
    /// are fetched from there.
    remote: Option<Arc<crate::remote::Remote>>,
}

impl PackStore {
    /// `dir` holds the pack files; `cf` names the index column family in `db`.
    pub fn new(dir: PathBuf, db: Arc<DB>, cf: &'static str, read_only: bool) -> Self {
        PackStore { dir, db, cf, read_only, level: 3, files: RwLock::default(), writer: Mutex::new(None), remote: None }
    }

    pub fn with_remote(mut self, remote: Arc<crate::remote::Remote>) -> Self {
        self.remote = Some(remote);
        self
    }

    pub fn remote(&self) -> Option<&Arc<crate::remote::Remote>> {
        self.remote.as_ref()
    }

    pub fn with_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pack_path(&self, pack: u32) -> PathBuf {
        self.dir.join(format!("pack-{pack:08}.pack"))
    }

    fn cf(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(self.cf).ok_or(Error::Decode { what: "index", why: "column family missing" })
    }

    /// The index entry for `id`, including objects not yet flushed.
    pub fn entry(&self, id: &Digest) -> Result<Option<IndexEntry>> {
        if let Some(w) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if let Some(e) = w.pending.get(id) {
                return Ok(Some(*e));
            }
        }
        match self.db.get_pinned_cf(self.cf()?, id.as_bytes())? {
            Some(v) => Ok(Some(IndexEntry::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every indexed object, in id order.
    pub fn entries(&self) -> Result<Vec<(Digest, IndexEntry)>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf()?, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            out.push((Digest::from_slice(&k).map_err(|_| Error::Decode { what: "index key", why: "wrong length" })?, IndexEntry::decode(&v)?));
        }
        Ok(out)
    }

    /// Existing pack numbers, sorted.
    pub fn packs(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io("listing", &self.dir, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io("listing", &self.dir, e))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_prefix("pack-").and_then(|s| s.strip_suffix(".pack")) {
                if let Ok(n) = n.parse() {
                    out.push(n);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn open_pack(&self, pack: u32) -> Result<Arc<File>> {
        if let Some(f) = self.files.read().unwrap_or_else(|e| e.into_inner()).get(&pack) {
            return Ok(f.clone());
        }
        let path = self.pack_path(pack);
        let f = Arc::new(File::open(&path).map_err(|e| Error::io("opening pack", &path, e))?);
        self.files.write().unwrap_or_else(|e| e.into_inner()).insert(pack, f.clone());
        Ok(f)
    }

    /// Read one record's stored payload, checking its header against the index
    /// entry (gc copies payloads as they are, without recompressing).
    pub(crate) fn read_payload(&self, id: &Digest, e: &IndexEntry) -> Result<Vec<u8>> {
        let damaged = |why| Error::Damaged { kind: e.kind, id: *id, why };
        let f = match self.open_pack(e.pack) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Err(damaged(DamageKind::PackMissing)),
            other => other?,
        };
        let mut header = [0u8; RECORD_HEADER_LEN];
        let read = read_record(&f, &mut header, e.stored_len as usize, e.offset);
        // A hole (no record magic) in a copy of a remote pack: fetch it.
        let hole = match &read {
            Ok(_) => header[..4] != RECORD_MAGIC[..],
            Err(err) => err.kind() == std::io::ErrorKind::UnexpectedEof,
        };
        if let Some((r, name)) = self.remote.as_ref().filter(|_| hole).and_then(|r| Some((r, r.pack_name(e.pack)?))) {
            return r.fill(&self.pack_path(e.pack), &name, id, e, &record_header(e.kind, e.codec, e.raw_len, e.stored_len, id));
        }
        let payload = read.map_err(|err| {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                damaged(DamageKind::Truncated)
            } else {
                Error::io("reading pack", self.pack_path(e.pack), err)
            }
        })?;
        if header != record_header(e.kind, e.codec, e.raw_len, e.stored_len, id) {
            return Err(damaged(DamageKind::BadHeader));
        }
        Ok(payload)
    }

    /// Read and decode one record. The payload is not hashed here (that is
    /// [`super::Verified`]'s job).
    pub fn read_entry(&self, id: &Digest, e: &IndexEntry) -> Result<Vec<u8>> {
        self.read_stored(id, e)?.into_decoded().map_err(|why| Error::Damaged { kind: e.kind, id: *id, why })
    }

    /// Read one record in its stored form (not decoded, not hashed).
    pub fn read_stored(&self, id: &Digest, e: &IndexEntry) -> Result<Stored> {
        let codec = Codec::from_u8(e.codec).ok_or(Error::Damaged { kind: e.kind, id: *id, why: DamageKind::BadHeader })?;
        Ok(Stored { codec, raw_len: e.raw_len, payload: self.read_payload(id, e)? })
    }

    fn new_writer(&self) -> Result<Writer> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))?;
        let pack = self.packs()?.last().map_or(1, |n| n + 1);
        let path = self.pack_path(pack);
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("creating pack", &path, e))?;
        let mut h = [0u8; PACK_HEADER_LEN as usize];
        h[..8].copy_from_slice(PACK_MAGIC);
        h[8..12].copy_from_slice(&PACK_FORMAT.to_le_bytes());
        if let Err(e) = f.write_all(&h) {
            // A pack without its header is no pack: nothing is left behind.
            let _ = std::fs::remove_file(&path);
            return Err(Error::io("writing pack", &path, e));
        }
        let file = Arc::new(f);
        self.files.write().unwrap_or_else(|e| e.into_inner()).insert(pack, file.clone());
        Ok(Writer { pack, file, len: PACK_HEADER_LEN, flushed: PACK_HEADER_LEN, batch: Vec::new(), pending: HashMap::new(), new_pack: true, free: 0 })
    }

    /// Append a record with an already-encoded payload, with no reserve: gc
    /// moves live objects out of a pack it is about to delete (making room).
    pub(crate) fn append_raw(&self, kind: ObjectKind, id: &Digest, codec: u8, raw_len: u32, payload: &[u8]) -> Result<bool> {
        self.append(kind, id, codec, raw_len, payload, 0)
    }

    /// [`append_raw`](Self::append_raw), refused with ENOSPC if it would
    /// leave less than `reserve` bytes free (new objects keep
    /// [`PACK_RESERVE`]; gc's moves, which make room, keep none).
    fn append(&self, kind: ObjectKind, id: &Digest, codec: u8, raw_len: u32, payload: &[u8], reserve: u64) -> Result<bool> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = guard.as_ref() {
            if w.pending.contains_key(id) {
                return Ok(false);
            }
        }
        if guard.as_ref().is_some_and(|w| w.len >= PACK_TARGET) {
            // Close the full pack: its records are indexed at the next flush.
            self.flush_locked(&mut guard)?;
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(self.new_writer()?);
        }
        let w = guard.as_mut().ok_or(Error::ReadOnly)?;
        let stored_len = payload.len() as u32;
        let header = record_header(kind, codec, raw_len, stored_len, id);
        let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
        rec.extend_from_slice(&header);
        rec.extend_from_slice(payload);
        let n = rec.len() as u64;
        if reserve > 0 && w.free < n + 4 * reserve {
            w.free = crate::repo::free_bytes(&self.dir, |f| f < n + reserve).unwrap_or(u64::MAX);
        }
        w.free = w.free.saturating_sub(n);
        let written = if reserve > 0 && w.free < reserve { Err(std::io::Error::from_raw_os_error(libc::ENOSPC)) } else { (&*w.file).write_all(&rec) };
        if let Err(e) = written {
            let err = Error::io("writing pack", self.pack_path(w.pack), e);
            self.discard(&mut guard);
            return Err(err);
        }
        let entry = IndexEntry { pack: w.pack, offset: w.len, stored_len, raw_len, kind, codec };
        w.len += rec.len() as u64;
        w.batch.push((*id, entry));
        w.pending.insert(*id, entry);
        Ok(true)
    }

    /// Point `id` at a new place (gc's move), written with the next flush.
    pub(crate) fn batch_write(&self, batch: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    pub(crate) fn cf_handle(&self) -> Result<&rocksdb::ColumnFamily> {
        self.cf()
    }

    /// Forget a pack file handle (gc, before unlinking it).
    pub(crate) fn forget_pack(&self, pack: u32) {
        self.files.write().unwrap_or_else(|e| e.into_inner()).remove(&pack);
    }

    fn flush_locked(&self, guard: &mut Option<Writer>) -> Result<()> {
        let Some(w) = guard.as_mut() else { return Ok(()) };
        if w.batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = w.file.sync_data() {
            let err = Error::io("syncing pack", self.pack_path(w.pack), e);
            self.discard(guard);
            return Err(err);
        }
        if w.new_pack {
            if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                self.discard(guard);
                return Err(Error::io("syncing", &self.dir, e));
            }
            w.new_pack = false;
        }
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        for (id, e) in &w.batch {
            batch.put_cf(cf, id.as_bytes(), e.encode());
        }
        self.batch_write(batch)?;
        w.batch.clear();
        w.pending.clear();
        w.flushed = w.len;
        Ok(())
    }

    /// After a failed append or pack sync: drop every record not yet
    /// indexed, cutting the pack back to its indexed length, or removing it
    /// if nothing in it is indexed; the next append starts a new pack.
    fn discard(&self, guard: &mut Option<Writer>) {
        let Some(w) = guard.take() else { return };
        let path = self.pack_path(w.pack);
        let done = if w.flushed > PACK_HEADER_LEN {
            w.file.set_len(w.flushed)
        } else {
            self.forget_pack(w.pack);
            std::fs::remove_file(&path)
        };
        match done {
            Ok(()) => tracing::warn!(pack = w.pack, objects = w.pending.len(), "dropped the objects not yet indexed from the pack"),
            // Left as unindexed bytes, which gc reclaims.
            Err(e) => tracing::error!(pack = w.pack, error = %e, path = %path.display(), "cutting back the pack to its indexed length failed"),
        }
    }

    /// Flush and close the pack being written: the next append starts a new
    /// pack (a pack is immutable once uploaded to a bucket).
    pub fn seal(&self) -> Result<()> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_locked(&mut guard)?;
        *guard = None;
        Ok(())
    }

    /// The pack currently being written, if any (gc must not delete it).
    pub(crate) fn current_pack(&self) -> Option<u32> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|w| w.pack)
    }
}

impl PackStore {
    /// Whether a put of `id` stores anything: not when it is held, except
    /// that an id verify found damaged is written again, not deduplicated
    /// against (the import that brings its bytes heals it).
    fn wants(&self, id: &Digest) -> Result<bool> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(!self.contains(id)? || self.marked_damaged(id)?)
    }

    /// Append `bytes` compressed, or raw when that saves too little.
    /// Compressed outside the writer lock, so several threads compress at once.
    fn append_encoded(&self, kind: ObjectKind, id: &Digest, bytes: &[u8], reserve: u64) -> Result<bool> {
        match super::stored::compressed(bytes, self.level) {
            Some(z) => self.append(kind, id, Codec::Zstd as u8, bytes.len() as u32, &z, reserve),
            None => self.append(kind, id, Codec::Raw as u8, bytes.len() as u32, bytes, reserve),
        }
    }
}

/// What [`PackStore::scan`] could not read: the entry's id when its key
/// decoded, and why.
pub type ScanProblem = (Option<Digest>, Error);

/// Key prefix, in the `meta` column family, of the ids verify found damaged.
const DAMAGED_PREFIX: &[u8] = b"damaged\0";

/// Verify and repair: a tolerant scan, rewriting objects, damage marks.
impl PackStore {
    /// The index database's directory.
    pub fn index_path(&self) -> &Path {
        self.db.path()
    }

    /// Every indexed object that can be read, in id order, and what could
    /// not: an entry that does not decode is named (by its id) and skipped;
    /// an iterator error (a damaged index file) ends the scan.
    pub fn scan(&self) -> (Vec<(Digest, IndexEntry)>, Vec<ScanProblem>) {
        let (mut out, mut problems) = (Vec::new(), Vec::new());
        let cf = match self.cf() {
            Ok(cf) => cf,
            Err(e) => return (out, vec![(None, e)]),
        };
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            match item {
                Ok((k, v)) => match (Digest::from_slice(&k), IndexEntry::decode(&v)) {
                    (Ok(id), Ok(e)) => out.push((id, e)),
                    (Err(_), _) => problems.push((None, Error::Decode { what: "index key", why: "wrong length" })),
                    (Ok(id), Err(e)) => problems.push((Some(id), e)),
                },
                Err(e) => {
                    problems.push((None, Error::from_index(self.index_path(), Error::Db(e))));
                    break;
                }
            }
        }
        (out, problems)
    }

    /// Complete table files (`*.sst`) in the index directory that the index
    /// does not use: see [`PackStore::unlisted_tables`].
    pub fn unreferenced_index_files(&self) -> Result<Vec<PathBuf>> {
        Self::unlisted_tables(&self.db)
    }

    /// Complete table files in `db`'s directory that its MANIFEST does not
    /// list and that are newer than every table it lists. A writer deletes
    /// the tables a compaction replaced (older than its output), a table a
    /// crash cut short has no footer, and a flush's table whose MANIFEST
    /// record a crash prevented still has its writes in the log; so such a
    /// table, with every log empty (as a clean close leaves them), means the
    /// MANIFEST lost its record (cut or damaged). A writer opening the index
    /// would delete it: the index's data.
    pub(crate) fn unlisted_tables(db: &DB) -> Result<Vec<PathBuf>> {
        let number = |n: &str| n.trim_start_matches('/').strip_suffix(".sst").and_then(|n| n.parse::<u64>().ok());
        let newest = db.live_files()?.iter().filter_map(|f| number(&f.name)).max().unwrap_or(0);
        let dir = db.path();
        let names: Vec<(String, u64)> = std::fs::read_dir(dir)
            .map_err(|e| Error::io("listing", dir, e))?
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            .collect();
        if names.iter().any(|(n, len)| n.ends_with(".log") && *len > 0) {
            return Ok(Vec::new());
        }
        let mut out: Vec<PathBuf> = names
            .iter()
            .filter(|(n, _)| number(n).is_some_and(|k| k > newest))
            .map(|(n, _)| dir.join(n))
            .filter(|p| complete_table(p))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Append `bytes` as a new record of `id` even if `id` is indexed (its
    /// record is damaged); the next flush repoints the index entry. The
    /// caller has checked `id == kind.hash(bytes)`.
    pub fn rewrite(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<()> {
        self.append_encoded(kind, id, bytes, 0)?;
        Ok(())
    }

    fn meta_cf(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(crate::repo::CF_META).ok_or(Error::Decode { what: "index", why: "column family missing" })
    }

    fn damaged_key(id: &Digest) -> Vec<u8> {
        [DAMAGED_PREFIX, id.as_bytes()].concat()
    }

    /// Whether verify marked `id` damaged (and nothing has cleared it since).
    pub fn marked_damaged(&self, id: &Digest) -> Result<bool> {
        Ok(self.db.get_pinned_cf(self.meta_cf()?, Self::damaged_key(id))?.is_some())
    }

    /// The ids marked damaged.
    pub fn damaged_marks(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let it = self.db.iterator_cf(self.meta_cf()?, rocksdb::IteratorMode::From(DAMAGED_PREFIX, rocksdb::Direction::Forward));
        for item in it {
            let (k, _) = item?;
            let Some(id) = k.strip_prefix(DAMAGED_PREFIX) else { break };
            out.push(Digest::from_slice(id).map_err(|_| Error::Decode { what: "damage mark", why: "wrong length" })?);
        }
        Ok(out)
    }

    /// Make the damage marks exactly `ids` (one synced batch): `put` then
    /// writes these ids again instead of deduplicating against them.
    pub fn set_damaged_marks(&self, ids: &std::collections::HashSet<Digest>) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let cf = self.meta_cf()?;
        let mut batch = WriteBatch::default();
        for old in self.damaged_marks()? {
            if !ids.contains(&old) {
                batch.delete_cf(cf, Self::damaged_key(&old));
            }
        }
        for id in ids {
            batch.put_cf(cf, Self::damaged_key(id), b"");
        }
        self.batch_write(batch)
    }
}

impl Drop for PackStore {
    /// Objects never flushed are not in the store (see [`ObjectStore`]):
    /// their bytes go too, rather than wait for gc (a failed import or
    /// checkpoint ends here, other threads having appended after the error).
    fn drop(&mut self) {
        let guard = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_some_and(|w| w.len > w.flushed) {
            let mut g = guard.take();
            self.discard(&mut g);
        }
    }
}

impl ObjectStore for PackStore {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        let Some(e) = self.entry(id)? else { return Ok(None) };
        if e.kind != kind {
            return Ok(None);
        }
        self.read_entry(id, &e).map(Some)
    }

    fn contains(&self, id: &Digest) -> Result<bool> {
        Ok(self.entry(id)?.is_some())
    }

    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        if !self.wants(id)? {
            return Ok(false);
        }
        self.append_encoded(kind, id, bytes, PACK_RESERVE)
    }

    fn get_stored(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Stored>> {
        match self.entry(id)? {
            Some(e) if e.kind == kind => self.read_stored(id, &e).map(Some),
            _ => Ok(None),
        }
    }

    fn put_stored(&self, kind: ObjectKind, id: &Digest, obj: &Stored) -> Result<bool> {
        if !self.wants(id)? {
            return Ok(false);
        }
        self.append(kind, id, obj.codec as u8, obj.raw_len, &obj.payload, PACK_RESERVE)
    }

    fn flush(&self) -> Result<()> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.flush_locked(&mut guard)
    }

    /// A record in a copy of a remote pack: punched out, fetched again at
    /// the next read.
    fn heal(&self, id: &Digest) -> bool {
        match (self.remote.as_ref(), self.entry(id)) {
            (Some(r), Ok(Some(e))) if r.pack_name(e.pack).is_some() => {
                let len = RECORD_HEADER_LEN as u64 + u64::from(e.stored_len);
                crate::remote::punch(&self.pack_path(e.pack), e.offset, len).is_ok()
            }
            _ => false,
        }
    }
}

/// Whether `p` ends with a block-based table footer's magic number (as
/// RocksDB writes last, so a table cut short by a crash has none).
fn complete_table(p: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    const MAGIC: [u64; 2] = [0x88e2_41b7_85f4_cff7, 0xdb47_7524_8b80_fb57];
    let Ok(f) = File::open(p) else { return false };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut b = [0u8; 8];
    len >= 8 && f.read_exact_at(&mut b, len - 8).is_ok() && MAGIC.contains(&u64::from_le_bytes(b))
}

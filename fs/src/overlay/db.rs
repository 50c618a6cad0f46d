//! The overlay's metadata database (RocksDB on the guest's partition).
//!
//! Column families:
//! - `inodes`: ino u64 BE → [`Inode`];
//! - `dirents`: parent u64 BE ‖ name → [`Dirent`];
//! - `windows`: ino u64 BE ‖ window u64 BE → empty (this chunk-sized window
//!   of the file lives in the overlay data file) or (format 4) version 1 ‖
//!   u16 LE mask of the window's 4 KiB blocks that do; the others still
//!   read from the image (see `sums::Mask`);
//! - `sums` (format 3): ino u64 BE ‖ window u64 BE → [`WindowSums`], the
//!   checksums of the window's 4 KiB blocks in the data file (see `sums`);
//! - `inline` (format 2): ino u64 BE → the bytes of a small file the guest
//!   created, kept here instead of in a data file (see `overlay::data`);
//! - `meta`: `root` → image root tree id; `next_ino` → u64 LE; `orphan/` ‖
//!   ino: inodes unlinked while the kernel held them (maybe open), purged at
//!   their FORGET, at unmount, or at the next mount if the daemon died;
//!   `dirty/` ‖ ino and `dirty/all`: see `State::dirty`; `memo/` ‖ ino
//!   → [`encode_folded`]: what the last mounted checkpoint folded for that
//!   inode, see `State::memo`.
//!
//! Every namespace operation is one [`Batch`], applied atomically: after a
//! crash the overlay shows the operation entirely or not at all.
//!
//! A failed write (a full partition) puts RocksDB 7.8 into its background
//! error state: it refuses every later write, and syncing the log that failed
//! aborts the process (an assertion in its file writer; so [`MetaDb::sync`]
//! syncs the log files itself). So the first failed commit marks the
//! database failed; nothing is written through that instance again, and the
//! next write reopens it (close, open: the log is replayed up to the last
//! whole batch, which covers every acknowledged one) once the partition has
//! [`REOPEN_ROOM`] free, releasing the reserve file (`meta.reserve`,
//! [`RESERVE_LEN`]) if that is what it takes. Opening releases it the same
//! way when the partition is full, so a full partition never keeps the
//! overlay from mounting.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use rocksdb::{Options, WriteBatch, DB};

use super::record::{dirent_key, window_key, Dirent, Inode};
use super::sums::{Mask, WindowSums, FULL};
use super::space::{free_space, keep_reserve, release, reserve_path};
use crate::digest::{ChunkId, Digest, FileId, TreeId};
use crate::error::{Error, Result};
use crate::tree::Content;

mod recover;

const CFS: [&str; 6] = ["inodes", "dirents", "windows", "meta", "inline", "sums"];

/// The database's write buffer (every column family's memtables together):
/// what it may have to write out as a table when it is (re)opened.
const WRITE_BUFFER: usize = 4 << 20;
/// Free bytes the partition needs before a failed database is reopened.
pub const REOPEN_ROOM: u64 = WRITE_BUFFER as u64 + (1 << 20);
/// Size of the reserve file, released when opening needs the room.
pub const RESERVE_LEN: u64 = REOPEN_ROOM;

pub struct MetaDb {
    /// `None` only between closing a failed instance and a reopen that failed.
    db: RwLock<Option<DB>>,
    path: PathBuf,
    /// A write or sync through the open instance failed (see the module doc).
    failed: AtomicBool,
    /// The reserve file holds its [`RESERVE_LEN`] bytes.
    reserved: AtomicBool,
    /// The WAL files whose directory entries the last sync made durable.
    logs_synced: Mutex<Vec<std::ffi::OsString>>,
    /// Batches committed, and how many of them the last WAL sync covered:
    /// a sync with nothing new to make durable costs nothing.
    committed: AtomicU64,
    synced: AtomicU64,
    known: Mutex<Known>,
}

/// Which records may exist, so that the common miss costs no RocksDB lookup:
/// resolving an image entry the guest never changed asks for a dirent of its
/// directory and a record of its inode, and neither exists (two lookups per
/// entry listed). Loaded at open, grown by every put before its batch
/// commits, never shrunk (a stale member costs only the lookup it would have
/// cost anyway).
#[derive(Default)]
struct Known {
    /// Inodes with a record.
    inodes: HashSet<u64>,
    /// Directories with at least one dirent.
    parents: HashSet<u64>,
}

/// A write batch, and the node records it replaced in memory (see
/// [`Batch::remember`]).
pub struct Batch(WriteBatch, Vec<(u64, Inode)>);

impl Batch {
    /// The in-memory record of `ino` before this batch changed it, put back
    /// if the batch fails to commit.
    pub fn remember(&mut self, ino: u64, old: Inode) {
        self.1.push((ino, old));
    }

    /// The records to put back, oldest first (put back in reverse order).
    pub fn take_undo(&mut self) -> Vec<(u64, Inode)> {
        std::mem::take(&mut self.1)
    }
}

/// A read lock on the open database instance.
struct DbRef<'a>(RwLockReadGuard<'a, Option<DB>>);

impl std::ops::Deref for DbRef<'_> {
    type Target = DB;
    fn deref(&self) -> &DB {
        match &*self.0 {
            Some(db) => db,
            // `MetaDb::db` hands out a `DbRef` only over `Some`, and the read
            // lock it holds keeps it so.
            None => unreachable!("DbRef over a closed database"),
        }
    }
}

impl MetaDb {
    /// Open the database in `path` with the overlay's options.
    fn open_db(path: &Path, create: bool, upgrade: bool) -> Result<DB> {
        let mut o = Options::default();
        crate::repo::quiet_info_log(&mut o);
        crate::repo::open_on_one_thread(&mut o);
        o.create_if_missing(create);
        o.create_missing_column_families(create || upgrade);
        o.set_keep_log_file_num(4);
        // Small memtables: each is preallocated on the guest partition as log space.
        o.set_write_buffer_size(WRITE_BUFFER);
        o.set_db_write_buffer_size(WRITE_BUFFER);
        o.set_max_total_wal_size(WRITE_BUFFER as u64);
        o.set_manifest_preallocation_size(64 << 10);
        o.set_compression_type(rocksdb::DBCompressionType::None);
        // Writes are serialised by the overlay lock already: no concurrent
        // memtable insert, no spinning write thread (a warm chmod's SETATTR
        // went from 26-29 to 22-23 us).
        o.set_allow_concurrent_memtable_write(false);
        o.set_enable_write_thread_adaptive_yield(false);
        // Damage is refused at open, never repaired by dropping records:
        // RocksDB's default recovery stops replaying the log at the first bad
        // record and opens without the rest (one flipped byte lost 24 KB of
        // records). A torn last record (kill -9, power cut) is still
        // tolerated: it was never acknowledged.
        o.set_paranoid_checks(true);
        o.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        let cfs = CFS.iter().map(|n| rocksdb::ColumnFamilyDescriptor::new(*n, if *n == "inodes" { inode_options(&o) } else { o.clone() }));
        crate::repo::room_to_open(path, "opening the overlay database in")?;
        DB::open_cf_descriptors(&o, path, cfs).map_err(|e| Error::db("opening the overlay database", path, e))
    }

    /// Open the database; `create` makes a new one, `upgrade` adds the
    /// column families an older overlay lacks (`inline`, `sums`). On a full partition the
    /// reserve file makes room first (see the module doc).
    pub fn open(path: &Path, create: bool, upgrade: bool) -> Result<Self> {
        let reserve = reserve_path(path);
        if free_space(path) < REOPEN_ROOM {
            release(&reserve);
        }
        let db = Self::open_db(path, create, upgrade)?;
        let reserved = AtomicBool::new(keep_reserve(&reserve));
        let known = Mutex::new(load_known(&db)?);
        Ok(MetaDb { db: RwLock::new(Some(db)), path: path.to_path_buf(), failed: AtomicBool::new(false), reserved, logs_synced: Mutex::new(Vec::new()), committed: AtomicU64::new(0), synced: AtomicU64::new(0), known })
    }

    /// The open instance (reads go on through a failed one: RocksDB serves them).
    fn db(&self) -> Result<DbRef<'_>> {
        let g = self.db.read().unwrap_or_else(|e| e.into_inner());
        if g.is_some() {
            return Ok(DbRef(g));
        }
        drop(g);
        {
            // Closed by a reopen whose open failed: try again.
            let mut w = self.db.write().unwrap_or_else(|e| e.into_inner());
            if w.is_none() {
                self.reopen(&mut w).map_err(|e| Error::Overlay { path: self.path.clone(), why: format!("the overlay database could not be reopened after a failed write: {}", crate::overlay::error_chain(&e)) })?;
            }
        }
        let g = self.db.read().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            return Err(self.closed());
        }
        Ok(DbRef(g))
    }

    fn closed(&self) -> Error {
        Error::Overlay { path: self.path.clone(), why: "the overlay database is closed after a failed write; it reopens once the partition has room".into() }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn inode(&self, ino: u64) -> Result<Option<Inode>> {
        if !self.known().inodes.contains(&ino) {
            return Ok(None);
        }
        let db = self.db()?;
        let v = db.get_pinned_cf(cf(&db, "inodes")?, ino.to_be_bytes())?;
        match v {
            Some(v) => Ok(Some(Inode::decode(&v)?)),
            None => Ok(None),
        }
    }

    pub fn dirent(&self, parent: u64, name: &[u8]) -> Result<Option<Dirent>> {
        if !self.known().parents.contains(&parent) {
            return Ok(None);
        }
        let db = self.db()?;
        let v = db.get_pinned_cf(cf(&db, "dirents")?, dirent_key(parent, name))?;
        match v {
            Some(v) => Ok(Some(Dirent::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every dirent of directory `parent`, sorted by name.
    pub fn dirents(&self, parent: u64) -> Result<Vec<(Vec<u8>, Dirent)>> {
        let prefix = parent.to_be_bytes();
        let mut out = Vec::new();
        if !self.known().parents.contains(&parent) {
            return Ok(out);
        }
        let db = self.db()?;
        let it = db.iterator_cf(cf(&db, "dirents")?, rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push((k[8..].to_vec(), Dirent::decode(&v)?));
        }
        Ok(out)
    }

    /// The inline bytes of file `ino` (one whose base is `Base::Inline`);
    /// none written yet reads as empty.
    pub fn inline(&self, ino: u64) -> Result<Vec<u8>> {
        let db = self.db()?;
        Ok(db.get_cf(cf(&db, "inline")?, ino.to_be_bytes())?.unwrap_or_default())
    }

    pub fn put_inline(&self, b: &mut Batch, ino: u64, bytes: &[u8]) -> Result<()> {
        b.0.put_cf(cf(&*self.db()?, "inline")?, ino.to_be_bytes(), bytes);
        Ok(())
    }

    /// `ino`'s bytes moved to its data file (written before this commits).
    pub fn delete_inline(&self, b: &mut Batch, ino: u64) -> Result<()> {
        b.0.delete_cf(cf(&*self.db()?, "inline")?, ino.to_be_bytes());
        Ok(())
    }

    /// The recorded windows of `ino`, with the mask of their local blocks.
    pub fn windows(&self, ino: u64) -> Result<HashMap<u64, Mask>> {
        let prefix = ino.to_be_bytes();
        let mut out = HashMap::new();
        let db = self.db()?;
        let it = db.iterator_cf(cf(&db, "windows")?, rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || k.len() != 16 {
                break;
            }
            let mut w = [0u8; 8];
            w.copy_from_slice(&k[8..]);
            out.insert(u64::from_be_bytes(w), decode_mask(&v)?);
        }
        Ok(out)
    }

    /// The block sums of every window of `ino` that has any.
    pub fn sums(&self, ino: u64) -> Result<HashMap<u64, WindowSums>> {
        let prefix = ino.to_be_bytes();
        let mut out = HashMap::new();
        let db = self.db()?;
        let it = db.iterator_cf(cf(&db, "sums")?, rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || k.len() != 16 {
                break;
            }
            let w = k[8..].try_into().map(u64::from_be_bytes).map_err(|_| Error::Decode { what: "overlay sums key", why: "not 16 bytes" })?;
            out.insert(w, WindowSums::decode(&v)?);
        }
        Ok(out)
    }

    /// Record window `w`'s sums (none left: the record goes).
    pub fn put_sums(&self, b: &mut Batch, ino: u64, w: u64, s: &WindowSums) -> Result<()> {
        if s.is_empty() {
            b.0.delete_cf(cf(&*self.db()?, "sums")?, window_key(ino, w));
        } else {
            b.0.put_cf(cf(&*self.db()?, "sums")?, window_key(ino, w), s.encode());
        }
        Ok(())
    }

    /// Drop the sums of windows at and above `from` (after a truncate).
    pub fn delete_sums_from(&self, b: &mut Batch, ino: u64, from: u64) -> Result<()> {
        self.delete_keys_from(b, "sums", &window_key(ino, from), &ino.to_be_bytes())
    }

    /// Call `f` with every key and value of column family `cf`, in order
    /// (checks and upgrades read everything).
    pub(crate) fn scan(&self, cf: &str, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_total_order_seek(true);
        ro.fill_cache(false);
        let db = self.db()?;
        for item in db.iterator_cf_opt(self::cf(&db, cf)?, ro, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            f(&k, &v)?;
        }
        Ok(())
    }

    /// Delete one key of column family `cf` (repairs drop bad records).
    pub(crate) fn delete_raw(&self, b: &mut Batch, cf: &str, key: &[u8]) -> Result<()> {
        b.0.delete_cf(self::cf(&*self.db()?, cf)?, key);
        Ok(())
    }

    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db()?;
        Ok(db.get_cf(cf(&db, "meta")?, key)?)
    }

    /// Inodes recorded as unlinked-while-open.
    pub fn orphans(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let db = self.db()?;
        for item in db.prefix_iterator_cf(cf(&db, "meta")?, b"orphan/") {
            let (k, _) = item?;
            if !k.starts_with(b"orphan/") || k.len() != 15 {
                break;
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&k[7..]);
            out.push(u64::from_be_bytes(a));
        }
        Ok(out)
    }

    /// The dirty directories and the walk-everything flag (see `State::dirty`).
    pub fn dirty(&self) -> Result<(HashSet<u64>, bool)> {
        let mut set = HashSet::new();
        let mut all = false;
        let db = self.db()?;
        for item in db.prefix_iterator_cf(cf(&db, "meta")?, b"dirty/") {
            let (k, _) = item?;
            if !k.starts_with(b"dirty/") {
                break;
            }
            match &k[6..] {
                b"all" => all = true,
                n if n.len() == 8 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(n);
                    set.insert(u64::from_be_bytes(a));
                }
                _ => {}
            }
        }
        Ok((set, all))
    }

    /// The fold memo (see `State::memo`).
    pub fn memos(&self) -> Result<HashMap<u64, Folded>> {
        let mut out = HashMap::new();
        let db = self.db()?;
        for item in db.prefix_iterator_cf(cf(&db, "meta")?, b"memo/") {
            let (k, v) = item?;
            if !k.starts_with(b"memo/") {
                break;
            }
            let ino = k[5..].try_into().map(u64::from_be_bytes).map_err(|_| Error::Decode { what: "overlay memo key", why: "not 8 bytes" })?;
            out.insert(ino, decode_folded(&v)?);
        }
        Ok(out)
    }

    pub fn delete_meta(&self, b: &mut Batch, key: &[u8]) -> Result<()> {
        b.0.delete_cf(cf(&*self.db()?, "meta")?, key);
        Ok(())
    }

    pub fn batch(&self) -> Batch {
        Batch(WriteBatch::default(), Vec::new())
    }

    /// Apply a batch atomically (written to the WAL, not yet synced).
    pub fn commit(&self, b: Batch) -> Result<()> {
        self.ready()?;
        self.db()?.write(b.0).map_err(|e| self.failed("writing the overlay database in", e))?;
        self.committed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Write every memtable to table files, so that nothing lives only in
    /// the log (a clean close: see `Overlay`'s `UNCLEAN` marker).
    pub fn flush_all(&self) -> Result<()> {
        let db = self.db()?;
        for name in CFS {
            db.flush_cf(cf(&db, name)?).map_err(|e| Error::db("flushing the overlay database", &self.path, e))?;
        }
        Ok(())
    }

    /// Make every committed batch durable: an fdatasync of the WAL files,
    /// none when nothing was committed since the last sync. Done here, not by
    /// RocksDB's `SyncWAL`: that aborts the process when a write that failed
    /// on a full partition, in another thread, left its log writer in error
    /// (an assertion in 7.8), and nothing here can order the two.
    pub fn sync(&self) -> Result<()> {
        // Every batch counted here is already in the WAL file.
        let upto = self.committed.load(Ordering::SeqCst);
        if self.synced.load(Ordering::SeqCst) >= upto {
            return Ok(());
        }
        // Also through a failed instance: its log files hold every batch
        // committed.
        self.sync_logs().map_err(|e| Error::io("syncing the overlay database in", &self.path, e))?;
        self.synced.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }

    pub fn put_inode(&self, b: &mut Batch, ino: u64, i: &Inode) -> Result<()> {
        self.known().inodes.insert(ino);
        b.0.put_cf(cf(&*self.db()?, "inodes")?, ino.to_be_bytes(), i.encode());
        Ok(())
    }

    /// Forget an inode entirely: its record, its windows and sums, its own dirents.
    pub fn delete_inode(&self, b: &mut Batch, ino: u64) -> Result<()> {
        b.0.delete_cf(cf(&*self.db()?, "inodes")?, ino.to_be_bytes());
        self.delete_keys_from(b, "windows", &window_key(ino, 0), &ino.to_be_bytes())?;
        self.delete_keys_from(b, "sums", &window_key(ino, 0), &ino.to_be_bytes())?;
        if self.known().parents.contains(&ino) {
            self.delete_keys_from(b, "dirents", &ino.to_be_bytes(), &ino.to_be_bytes())?;
        }
        b.0.delete_cf(cf(&*self.db()?, "meta")?, orphan_key(ino));
        b.0.delete_cf(cf(&*self.db()?, "inline")?, ino.to_be_bytes());
        Ok(())
    }

    /// Delete, one key at a time, every key of column family `cf` at or
    /// after `from` that starts with `prefix`. Not a range deletion: RocksDB
    /// 7.8 re-fragments every range tombstone in the memtable on every read,
    /// so each one left there slows all later lookups (10,000 unlinks made
    /// an `rm -rf` of them take 14 s).
    fn delete_keys_from(&self, b: &mut Batch, cf: &str, from: &[u8], prefix: &[u8]) -> Result<()> {
        let db = self.db()?;
        let cf = self::cf(&db, cf)?;
        let mut it = db.raw_iterator_cf(cf);
        it.seek(from);
        while let Some(k) = it.key() {
            if !k.starts_with(prefix) {
                break;
            }
            b.0.delete_cf(cf, k);
            it.next();
        }
        Ok(it.status()?)
    }

    pub fn put_dirent(&self, b: &mut Batch, parent: u64, name: &[u8], d: Dirent) -> Result<()> {
        self.known().parents.insert(parent);
        b.0.put_cf(cf(&*self.db()?, "dirents")?, dirent_key(parent, name), d.encode());
        Ok(())
    }

    pub fn delete_dirent(&self, b: &mut Batch, parent: u64, name: &[u8]) -> Result<()> {
        b.0.delete_cf(cf(&*self.db()?, "dirents")?, dirent_key(parent, name));
        Ok(())
    }

    /// Record window `w` with local blocks `mask` (a whole window keeps the
    /// empty value of formats before 4).
    pub fn put_window(&self, b: &mut Batch, ino: u64, w: u64, mask: Mask) -> Result<()> {
        b.0.put_cf(cf(&*self.db()?, "windows")?, window_key(ino, w), encode_mask(mask));
        Ok(())
    }

    /// Drop the window records at and above `from` (after a truncate).
    pub fn delete_windows_from(&self, b: &mut Batch, ino: u64, from: u64) -> Result<()> {
        self.delete_keys_from(b, "windows", &window_key(ino, from), &ino.to_be_bytes())
    }

    pub fn put_meta(&self, b: &mut Batch, key: &[u8], v: &[u8]) -> Result<()> {
        b.0.put_cf(cf(&*self.db()?, "meta")?, key, v);
        Ok(())
    }

    pub fn mark_orphan(&self, b: &mut Batch, ino: u64) -> Result<()> {
        b.0.put_cf(cf(&*self.db()?, "meta")?, orphan_key(ino), []);
        Ok(())
    }
}

pub fn dirty_key(ino: u64) -> Vec<u8> {
    let mut k = b"dirty/".to_vec();
    k.extend_from_slice(&ino.to_be_bytes());
    k
}

pub fn memo_key(ino: u64) -> Vec<u8> {
    let mut k = b"memo/".to_vec();
    k.extend_from_slice(&ino.to_be_bytes());
    k
}

/// What a fold made of an inode (see `State::memo`): its content, and for a
/// file its hardlink label and count as that fold computed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folded {
    pub content: Content,
    pub link: u64,
    pub links: u32,
}

/// Layout: a tag byte (0 none, 1 tree, 2 chunk, 3 file index), the 32-byte
/// id (absent for none), then link (u64 LE) and links (u32 LE).
pub fn encode_folded(f: &Folded) -> Vec<u8> {
    let (tag, id) = match &f.content {
        Content::None => (0, None),
        Content::Tree(t) => (1, Some(t.0)),
        Content::Chunk(ch) => (2, Some(ch.0)),
        Content::File(x) => (3, Some(x.0)),
    };
    let mut v = vec![tag];
    if let Some(id) = id {
        v.extend_from_slice(id.as_bytes());
    }
    v.extend_from_slice(&f.link.to_le_bytes());
    v.extend_from_slice(&f.links.to_le_bytes());
    v
}

pub fn decode_folded(v: &[u8]) -> Result<Folded> {
    let bad = |why| Error::Decode { what: "overlay memo", why };
    let (tag, rest) = v.split_first().ok_or(bad("empty"))?;
    let (content, rest) = if *tag == 0 {
        (Content::None, rest)
    } else {
        let (id, rest) = rest.split_at_checked(32).ok_or(bad("truncated id"))?;
        let d = Digest::from_slice(id).map_err(|_| bad("id is not 32 bytes"))?;
        let c = match tag {
            1 => Content::Tree(TreeId(d)),
            2 => Content::Chunk(ChunkId(d)),
            3 => Content::File(FileId(d)),
            _ => return Err(bad("unknown tag")),
        };
        (c, rest)
    };
    let rest: [u8; 12] = rest.try_into().map_err(|_| bad("wrong length"))?;
    let link = u64::from_le_bytes(rest[..8].try_into().map_err(|_| bad("wrong length"))?);
    let links = u32::from_le_bytes(rest[8..].try_into().map_err(|_| bad("wrong length"))?);
    Ok(Folded { content, link, links })
}

fn orphan_key(ino: u64) -> Vec<u8> {
    let mut k = b"orphan/".to_vec();
    k.extend_from_slice(&ino.to_be_bytes());
    k
}

/// The inode records' column family: keys are inode numbers, which for image
/// entries are hashes (`base_ino`), so a metadata change inserts at a random
/// place. In the default skiplist memtable that insert walked ~20 nodes, a
/// cache miss each; a hash table keyed by the whole 8-byte key finds its bucket
/// at once. Point reads (`get`) work as before; a scan must ask for total
/// order (`load_known`).
fn inode_options(o: &Options) -> Options {
    let mut o = o.clone();
    o.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(8));
    o.set_memtable_factory(rocksdb::MemtableFactory::HashSkipList { bucket_count: INODE_BUCKETS, height: 4, branching_factor: 4 });
    o
}

/// Buckets of the inode memtable: 64 KiB of pointers, charged to the 4 MiB
/// memtable and written when it is made, so every mounted guest, idle or
/// not, holds them; a full memtable holds ~30,000 records, ~4 a bucket
/// (each bucket a skiplist). 32 Ki buckets cost an idle guest 256 KiB.
const INODE_BUCKETS: usize = 8 << 10;

/// Open the database at `path` read-only, changing nothing on disk (its
/// log replayed in memory, refused when damaged inside, as by `open`).
pub(crate) fn open_read_only(path: &Path) -> Result<DB> {
    let mut o = Options::default();
    o.set_paranoid_checks(true);
    o.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    let cfs = DB::list_cf(&o, path)?;
    Ok(DB::open_cf_for_read_only(&o, path, &cfs, false)?)
}

/// A column family of the overlay database.
fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name).ok_or(Error::Decode { what: "overlay database", why: "column family missing" })
}

/// Every inode with a record and every directory with a dirent.
fn load_known(db: &DB) -> Result<Known> {
    let mut k = Known::default();
    let key = |v: &[u8]| v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
    // The inode memtable is hashed (`inode_options`): a scan needs total order.
    let mut ro = rocksdb::ReadOptions::default();
    ro.set_total_order_seek(true);
    for item in db.iterator_cf_opt(cf(db, "inodes")?, ro, rocksdb::IteratorMode::Start) {
        let (ino, _) = item?;
        k.inodes.insert(key(&ino).ok_or(Error::Decode { what: "overlay database", why: "short inode key" })?);
    }
    // One seek per directory, not a step per dirent.
    let mut it = db.raw_iterator_cf(cf(db, "dirents")?);
    it.seek_to_first();
    while let Some(parent) = it.key().and_then(key) {
        k.parents.insert(parent);
        match parent.checked_add(1) {
            Some(next) => it.seek(next.to_be_bytes()),
            None => break,
        }
    }
    it.status()?;
    Ok(k)
}

/// A window record's value: empty for a whole window, else version 1 ‖
/// u16 LE mask.
pub(crate) fn encode_mask(mask: Mask) -> Vec<u8> {
    if mask == FULL {
        return Vec::new();
    }
    let m = mask.to_le_bytes();
    vec![1, m[0], m[1]]
}

pub(crate) fn decode_mask(v: &[u8]) -> Result<Mask> {
    match v {
        [] => Ok(FULL),
        [1, a, b] => Ok(u16::from_le_bytes([*a, *b])),
        _ => Err(Error::Decode { what: "overlay window record", why: "unknown version or length" }),
    }
}

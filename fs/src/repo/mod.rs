//! The repository: a directory on the shared disk holding pack files, a RocksDB
//! index and image refs. Written only by the publisher (import, gc), under an
//! exclusive lock; opened read-only by guests and readers at any time.
//!
//! Layout (format 1): `FORMAT` (text: "lvrepo repository\nformat 1\n"),
//! `packs/pack-NNNNNNNN.pack`, `index/` (RocksDB: column families `objects`,
//! `refs`, `meta`), `lock`.

mod append_only;
pub mod channels;
pub(crate) mod refs;

pub use refs::{ImageRecord, ImageRef};

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{Options, DB};

use crate::error::{Error, Result};
use crate::object::{ObjectStore, PackStore, Verified};

/// The repository format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
pub(crate) const CF_OBJECTS: &str = "objects";
pub(crate) const CF_REFS: &str = "refs";
pub(crate) const CF_META: &str = "meta";

pub struct Repository {
    path: PathBuf,
    db: Arc<DB>,
    store: Arc<Verified<PackStore>>,
    read_only: bool,
    _lock: Option<File>,
    /// Readers hold `readers` shared, so gc knows not to unlink packs under them.
    _reader: Option<File>,
}

impl Repository {
    /// Create a new, empty repository at `path` (absent or an empty directory).
    pub fn init(path: &Path) -> Result<Self> {
        crate::perms::create_private_dir(path)?;
        let mut rd = std::fs::read_dir(path).map_err(|e| Error::io("listing", path, e))?;
        if rd.next().is_some() {
            return Err(Error::DestinationNotEmpty(path.to_path_buf()));
        }
        std::fs::create_dir(path.join("packs")).map_err(|e| Error::io("creating", path.join("packs"), e))?;
        // The writer lock from before the index exists: the database made
        // here is the one served (a new index lists every table it has, so
        // the reopen `open` does to check that would buy nothing).
        let lock = take_lock(path)?;
        let db = Arc::new(open_db(path, false)?);
        // FORMAT last: a directory without it is not (yet) a repository.
        let fp = path.join(FORMAT_FILE);
        let tmp = path.join("FORMAT.tmp");
        std::fs::write(&tmp, format!("lvrepo repository\nformat {FORMAT_VERSION}\n"))
            .and_then(|_| File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &fp))
            .and_then(|_| File::open(path)?.sync_all())
            .map_err(|e| Error::io("writing", &fp, e))?;
        tracing::info!(repo = %path.display(), "initialised repository");
        let packs = PackStore::new(path.join("packs"), db.clone(), CF_OBJECTS, false);
        Ok(Repository { path: path.to_path_buf(), db, store: Arc::new(Verified::new(packs)), read_only: false, _lock: Some(lock), _reader: None })
    }

    /// Open an existing repository. `writable` takes the writer lock and fails
    /// with [`Error::Locked`] if another writer holds it.
    ///
    /// A cache of a remote repository (a `REMOTE` link, docs/remote.md)
    /// reads holes from its bucket; opened writable, it is synced first.
    pub fn open(path: &Path, writable: bool) -> Result<Self> {
        let remote = match crate::remote::link_of(path)? {
            Some(url) => Some(crate::remote::Remote::connect(&url)?),
            None => None,
        };
        Self::open_with(path, writable, remote)
    }

    /// [`open`](Self::open) with the remote handle given (tests share one
    /// in-memory bucket between caches).
    pub fn open_with(path: &Path, writable: bool, remote: Option<Arc<crate::remote::Remote>>) -> Result<Self> {
        let repo = Self::open_local(path, writable, remote.clone())?;
        if let Some(r) = remote {
            crate::remote::sync::load(&repo, &r)?;
            if writable {
                crate::remote::sync::sync(&repo, &r)?;
            }
        }
        Ok(repo)
    }

    fn open_local(path: &Path, writable: bool, remote: Option<Arc<crate::remote::Remote>>) -> Result<Self> {
        check_format(path)?;
        let lock = if writable { Some(take_lock(path)?) } else { None };
        let reader = if writable { None } else { lock_file(path, "readers", libc::LOCK_SH | libc::LOCK_NB).ok() };
        let db = Arc::new(open_index(path, !writable).map_err(|e| {
            // RocksDB says only "Permission denied" in its message.
            if crate::error::chain(&e).contains("Permission denied") {
                Error::NotPermitted(path.join("index"))
            } else {
                e
            }
        })?);
        let mut packs = PackStore::new(path.join("packs"), db.clone(), CF_OBJECTS, !writable);
        if let Some(r) = remote {
            packs = packs.with_remote(r);
        }
        Ok(Repository { path: path.to_path_buf(), db, store: Arc::new(Verified::new(packs)), read_only: !writable, _lock: lock, _reader: reader })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bucket this repository is a cache of, if any.
    pub fn remote(&self) -> Option<&Arc<crate::remote::Remote>> {
        self.packs().remote()
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The verified object store: every read is checked against its id.
    pub fn store(&self) -> &Verified<PackStore> {
        &self.store
    }

    pub fn objects(&self) -> &dyn ObjectStore {
        &*self.store
    }

    /// Give up the repository handle, keeping its verified store (a daemon
    /// wraps it in a cache and shares it between threads).
    pub fn into_store(self) -> Arc<Verified<PackStore>> {
        self.store.clone()
    }

    /// A shared handle on the verified store (outlives this `Repository`).
    pub fn shared_store(&self) -> Arc<Verified<PackStore>> {
        self.store.clone()
    }

    /// The raw pack store (verify and gc walk it directly).
    pub fn packs(&self) -> &PackStore {
        self.store.inner()
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or(Error::Decode { what: "index", why: "column family missing" })
    }

    pub(crate) fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Bytes used on disk: pack files plus the index (not the guest registry).
    pub fn disk_usage(&self) -> Result<u64> {
        Ok(dir_usage(&self.path.join("packs")) + dir_usage(&self.path.join("index")))
    }
}

/// Bytes used on disk below `p`: allocated blocks (so sparse files count what
/// they really hold), capped at each file's length.
pub fn dir_usage(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    // An explicit stack of directories to read: no recursion per level.
    let mut todo = vec![p.to_path_buf()];
    let mut total = 0;
    while let Some(dir) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                // Allocated bytes, but not beyond the length: RocksDB preallocates
                // its logs (fallocate KEEP_SIZE), which holds no data.
                Ok(m) => total += (m.blocks() * 512).min(m.len().next_multiple_of(4096)),
                Err(_) => {}
            }
        }
    }
    total
}

fn check_format(path: &Path) -> Result<()> {
    let fp = path.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&fp) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotARepository(path.to_path_buf())),
        Err(e) => return Err(crate::perms::open_error("reading", &fp, e)),
    };
    let mut lines = text.lines();
    if lines.next() != Some("lvrepo repository") {
        return Err(Error::NotARepository(path.to_path_buf()));
    }
    let found: u32 = lines
        .next()
        .and_then(|l| l.strip_prefix("format "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::NotARepository(path.to_path_buf()))?;
    if found != FORMAT_VERSION {
        let hint = if found > FORMAT_VERSION {
            " (written by a newer lvrepo: upgrade lvrepo to open it)"
        } else {
            " (older format: no migration exists for it)"
        };
        return Err(Error::Format { path: path.to_path_buf(), found, supported: FORMAT_VERSION, hint });
    }
    Ok(())
}

impl Drop for Repository {
    /// A writer leaves the index with empty memtables (everything in SST
    /// files): a reader opening it read-only would otherwise replay the
    /// writer's log into a memtable of its own at every open (each guest
    /// mount) and search that memtable on every lookup.
    fn drop(&mut self) {
        if self.read_only {
            return;
        }
        for name in [CF_OBJECTS, CF_REFS, CF_META] {
            if let Some(cf) = self.db.cf_handle(name) {
                if let Err(e) = self.db.flush_cf(cf) {
                    tracing::warn!(repo = %self.path.display(), error = %e, "flushing the index at close failed; readers replay its log");
                }
            }
        }
    }
}

/// [`open_db`] for an existing repository, with damage named as damage
/// (exit 4): a writer must not quietly create a new, empty index where the
/// old one lost its `CURRENT`, and RocksDB's corruption errors name the index.
fn open_index(path: &Path, read_only: bool) -> Result<DB> {
    let idx = path.join("index");
    if let Err(e) = std::fs::symlink_metadata(idx.join("CURRENT")) {
        return Err(match e.kind() {
            std::io::ErrorKind::NotFound => Error::IndexIncomplete(idx),
            _ => crate::perms::open_error("reading", &idx.join("CURRENT"), e),
        });
    }
    if !read_only {
        // A writer deletes the tables its MANIFEST does not list: when the
        // MANIFEST lost complete ones (cut), that deletes the index itself.
        let db = open_db(path, true).map_err(|e| Error::from_index(&idx, e))?;
        if let Some(t) = PackStore::unlisted_tables(&db)?.first() {
            return Err(Error::IndexUnlisted(t.clone()));
        }
    }
    open_db(path, read_only).map_err(|e| Error::from_index(&idx, e))
}

/// Free bytes a writable open of a database needs: its info log's header
/// (tens of KiB), a MANIFEST and an OPTIONS file, the replay of a log left
/// by a crash. Below it the open is refused with ENOSPC before RocksDB runs.
pub(crate) const OPEN_ROOM: u64 = 1 << 20;

/// Options every database on a partition that can fill up needs. RocksDB
/// 7.8 aborts the process (an assertion in its file writer) at the second
/// line it fails to append to its info log (`LOG`), so that log gets only
/// what it writes at open (the header, while [`OPEN_ROOM`] is free) and
/// fatal errors: no events, warnings or periodic statistics, which it would
/// write exactly when the partition is full. Errors still reach lvrepo as the
/// statuses RocksDB returns.
pub(crate) fn quiet_info_log(opts: &mut Options) {
    opts.set_log_level(rocksdb::LogLevel::Fatal);
    opts.set_stats_dump_period_sec(0);
}

/// Load tables on the opening thread: by default an open loads each column
/// family's tables on 16 new threads, started and joined even when there
/// is no table (~60 thread starts for the 4 column families of a new guest
/// store, 78 per `guest create`); the few tables of a guest's databases
/// load as fast without them.
pub(crate) fn open_on_one_thread(opts: &mut Options) {
    opts.set_max_file_opening_threads(1);
}

/// ENOSPC, naming the partition, if a database in `dir` has no room to open.
pub(crate) fn room_to_open(dir: &Path, what: &'static str) -> Result<()> {
    let probe = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    match free_bytes(probe, |f| f < OPEN_ROOM) {
        Some(f) if f < OPEN_ROOM => Err(Error::io(what, dir, std::io::Error::from_raw_os_error(libc::ENOSPC))),
        _ => Ok(()),
    }
}

/// Free bytes (for an unprivileged writer) on the partition holding `path`
/// (`None` if statfs fails). If that is `short`, once more after a syncfs:
/// blocks of files deleted in a journal transaction not yet committed (ext4)
/// count as free only after the commit, which ext4's own allocator forces
/// before it says ENOSPC.
pub(crate) fn free_bytes(path: &Path, short: impl Fn(u64) -> bool) -> Option<u64> {
    let read = || nix::sys::statvfs::statvfs(path).ok().map(|s| s.blocks_available() * s.fragment_size());
    let f = read()?;
    if !short(f) {
        return Some(f);
    }
    if let Ok(d) = File::open(path) {
        // SAFETY: syncfs on a descriptor we own; no memory is passed.
        unsafe { libc::syncfs(d.as_raw_fd()) };
    }
    read()
}

fn open_db(path: &Path, read_only: bool) -> Result<DB> {
    let mut opts = Options::default();
    quiet_info_log(&mut opts);
    open_on_one_thread(&mut opts);
    opts.create_if_missing(!read_only);
    opts.create_missing_column_families(!read_only);
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    opts.set_keep_log_file_num(4);
    // Modest memtables: a guest-local store is a repository too, and each
    // write buffer is preallocated on disk as log space.
    opts.set_write_buffer_size(8 << 20);
    // The log is preallocated at 1.1 x the memtable unless capped here.
    opts.set_db_write_buffer_size(8 << 20);
    opts.set_max_total_wal_size(8 << 20);
    opts.set_manifest_preallocation_size(64 << 10);
    // Refuse a damaged index rather than open without part of it (the
    // default recovery drops every log record after a bad one); a torn last
    // record (a crash mid-write) was never acknowledged and is tolerated.
    opts.set_paranoid_checks(true);
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    let idx = path.join("index");
    let cfs = [CF_OBJECTS, CF_REFS, CF_META];
    let db = if read_only {
        DB::open_cf_descriptors_read_only(&opts, &idx, cf_descriptors(&opts, cfs), false)?
    } else {
        room_to_open(&idx, "opening the index in")?;
        DB::open_cf_descriptors(&opts, &idx, cf_descriptors(&opts, cfs)).map_err(|e| Error::db("opening the index in", &idx, e))?
    };
    Ok(db)
}

/// Column families with the database's tuned options: `open_cf` by name would
/// give each one RocksDB's defaults (a 64 MiB memtable, preallocated on disk
/// as ~70 MiB of log per database).
pub(crate) fn cf_descriptors(opts: &Options, names: [&str; 3]) -> Vec<rocksdb::ColumnFamilyDescriptor> {
    names.iter().map(|n| rocksdb::ColumnFamilyDescriptor::new(*n, opts.clone())).collect()
}

fn take_lock(path: &Path) -> Result<File> {
    lock_file(path, "lock", libc::LOCK_EX | libc::LOCK_NB)
}

/// Open (creating) `path/name` and flock it with `op`; `Err(Locked)` if held.
fn lock_file(path: &Path, name: &str, op: libc::c_int) -> Result<File> {
    let lp = path.join(name);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lp)
        .map_err(|e| crate::perms::open_error("opening", &lp, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), op) };
    if rc != 0 {
        return Err(Error::Locked(lp));
    }
    Ok(f)
}

/// The gc guard, `REPO/gc.lock`: gc holds it exclusively from before it
/// reads any root (images, guests' bases and checkpoints) until its sweep is
/// done; a checkpoint holds it shared from before it looks at what the
/// repository holds until its checkpoint is recorded (and so is a root gc
/// reads). So gc never removes an object a checkpoint in progress decided not
/// to store, and a checkpoint never trusts a presence gc has since undone.
/// Blocking: gc waits for running checkpoints, checkpoints wait for a
/// running gc. `None` where the file cannot be had (a repository on a
/// read-only disk, where no gc runs).
pub struct GcGuard(#[allow(dead_code)] File);

impl GcGuard {
    /// Take the guard of the repository at `path`: shared (checkpoints) or
    /// exclusive (gc).
    pub fn take(path: &Path, exclusive: bool) -> Result<Option<GcGuard>> {
        let lp = path.join("gc.lock");
        let f = match OpenOptions::new().create(true).truncate(false).write(true).open(&lp) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(Error::NotPermitted(lp)),
            // A read-only repository disk: nobody collects it from here.
            Err(_) => match File::open(&lp) {
                Ok(f) => f,
                Err(_) => return Ok(None),
            },
        };
        let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
        loop {
            // SAFETY: flock on a descriptor we own; no memory is passed.
            if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
                return Ok(Some(GcGuard(f)));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("locking", lp, e));
            }
        }
    }
}

impl Repository {
    /// Whether no reader (a mount daemon, a command) has the repository open;
    /// while the returned guard lives, none can open it. gc unlinks packs only
    /// under this guard: readers keep index entries that point into old packs.
    pub(crate) fn exclude_readers(&self) -> Option<File> {
        lock_file(&self.path, "readers", libc::LOCK_EX | libc::LOCK_NB).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_store_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let raw = Repository::init(&dir.path().join("raw")).unwrap();
        crate::object::conformance::run(raw.packs());
        let verified = Repository::init(&dir.path().join("verified")).unwrap();
        crate::object::conformance::run(verified.store());
    }

    #[test]
    fn flushed_objects_survive_reopen_and_unflushed_leave_no_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        let (a, b);
        {
            let repo = Repository::init(&p).unwrap();
            a = crate::object::put_object(repo.objects(), crate::digest::ObjectKind::Chunk, b"kept").unwrap();
            repo.objects().flush().unwrap();
            b = crate::object::put_object(repo.objects(), crate::digest::ObjectKind::Chunk, b"lost").unwrap();
        }
        let repo = Repository::open(&p, false).unwrap();
        assert!(repo.objects().contains(&a).unwrap());
        assert!(!repo.objects().contains(&b).unwrap());
    }

    #[test]
    fn second_writer_is_refused_and_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        let _w = Repository::init(&p).unwrap();
        assert!(matches!(Repository::open(&p, true), Err(Error::Locked(_))));
        assert!(Repository::open(&p, false).is_ok(), "readers never wait for the writer");
        std::fs::write(p.join("FORMAT"), "lvrepo repository\nformat 9\n").unwrap();
        let err = Repository::open(&p, false).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
        assert!(matches!(Repository::open(dir.path(), false), Err(Error::NotARepository(_))));
    }
}

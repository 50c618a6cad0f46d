//! Opening and closing an overlay: `FORMAT` (and upgrades of older
//! formats), the metadata database (damage refused with exit 4, never
//! opened past: see docs/overlay.md, "Crash consistency" 5), and the
//! `UNCLEAN` marker that tells an open whether the last session closed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::db::{self, MetaDb};
use super::{error_chain, prefetch, trees, upgrade, Node, Overlay, State, OVERLAY_FORMAT, ROOT_INO};
use crate::digest::{Digest, TreeId};
use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::tree::load_root;

impl Overlay {
    /// Open (creating if needed) the overlay in `dir` over root tree `root`.
    /// An existing overlay made over another root is refused.
    pub fn open(dir: &Path, store: Arc<dyn ObjectStore>, root: TreeId) -> Result<Self> {
        Self::open_as(dir, store, root, false)
    }

    /// Open an overlay that must exist already (a guest's committed
    /// generation): a missing `FORMAT` is damage, not a new overlay.
    pub fn open_existing(dir: &Path, store: Arc<dyn ObjectStore>, root: TreeId) -> Result<Self> {
        Self::open_as(dir, store, root, true)
    }

    fn open_as(dir: &Path, store: Arc<dyn ObjectStore>, root: TreeId, existing: bool) -> Result<Self> {
        let fmt = dir.join("FORMAT");
        let fresh = !fmt.exists();
        let oerr = |why: String| Error::Overlay { path: dir.to_path_buf(), why };
        let damaged = |path: PathBuf, why: String| Error::OverlayDamaged { path, why };
        // A database with records but no FORMAT: FORMAT was lost (a new
        // overlay writes it right after its first two records).
        if fresh && (existing || dir.join("meta").join("CURRENT").exists())
            && (existing || has_records(&dir.join("meta"))) {
                return Err(damaged(fmt, "missing: the overlay's format is unknown; nothing was changed".into()));
            }
        let mut from = OVERLAY_FORMAT;
        if fresh {
            std::fs::create_dir_all(dir.join("data")).map_err(|e| Error::io("creating", dir, e))?;
        } else {
            let text = std::fs::read(&fmt).map_err(|e| Error::io("reading", &fmt, e))?;
            let t = String::from_utf8_lossy(&text);
            let n = t.trim().strip_prefix("lvrepo overlay\nformat ").and_then(|n| n.parse::<u32>().ok());
            match n {
                Some(n) if (1..=OVERLAY_FORMAT).contains(&n) => from = n,
                Some(n) => return Err(oerr(format!("overlay format {n} is newer than this lvrepo reads ({OVERLAY_FORMAT})"))),
                None => return Err(damaged(fmt, format!("not an lvrepo overlay FORMAT file: {:?}", t.chars().take(40).collect::<String>()))),
            }
        }
        let upgrade = from < OVERLAY_FORMAT;
        // Open and not closed cleanly since: records may live only in the
        // log, and RocksDB opens without a log that is gone.
        let unclean = dir.join(UNCLEAN);
        if let Ok(t) = std::fs::read_to_string(&unclean) {
            if newest_log(&dir.join("meta")) < t.trim().parse().unwrap_or(1) {
                return Err(damaged(dir.join("meta"), "the database's log is missing after an unclean shutdown: records written since its last flush are lost; nothing was changed".into()));
            }
        }
        let db = MetaDb::open(&dir.join("meta"), fresh, upgrade).map_err(|e| db_open_error(dir, e))?;
        // The log this session writes (RocksDB made it at open); later ones
        // are numbered higher.
        std::fs::write(&unclean, newest_log(&dir.join("meta")).to_string()).map_err(|e| Error::io("writing", &unclean, e))?;
        match db.meta(b"root")? {
            Some(r) if r.as_slice() != root.0.as_bytes() => {
                let have = Digest::from_slice(&r).map(|d| d.to_string()).unwrap_or_default();
                let why = format!("overlay belongs to image root {have}, not {}", root.0);
                // A guest's own generation disagreeing with its STATE is damage.
                return Err(if existing { damaged(dir.to_path_buf(), format!("{why} (the root the guest's STATE names); nothing was changed")) } else { oerr(why) });
            }
            Some(_) => {}
            None => {
                let mut b = db.batch();
                db.put_meta(&mut b, b"root", root.0.as_bytes())?;
                db.put_meta(&mut b, b"next_ino", &2u64.to_le_bytes())?;
                db.commit(b)?;
                db.sync()?;
            }
        }
        if fresh {
            // Written once the database has what the format says it has
            // (written last by a fresh overlay, so a crash before leaves a
            // directory without FORMAT, opened as fresh again).
            write_format(dir)?;
        }
        let next_ino = match db.meta(b"next_ino")? {
            Some(v) if v.len() == 8 => u64::from_le_bytes(v.as_slice().try_into().unwrap_or([0; 8])),
            _ => return Err(oerr("overlay database lacks next_ino".into())),
        };
        let ov = Overlay {
            dir: dir.to_path_buf(),
            guest: String::new(),
            db,
            store: store.clone(),
            root,
            state: Mutex::new(State { nodes: HashMap::default(), next_ino, dirty: HashSet::new(), dirty_all: false, memo: HashMap::new(), dir_gen: 0, fds: VecDeque::new() }),
            trees: trees::Trees::new(store.clone()),
            prefetch: prefetch::Prefetch::new(store),
            free: Mutex::new(0),
        };
        if upgrade {
            // Before 3: no block sums yet (a crash here sums again next time).
            if from < 3 {
                upgrade::add_sums(&ov)?;
            }
            write_format(dir)?;
        }
        ov.purge_orphans()?;
        {
            let (dirty, all) = ov.db.dirty()?;
            let memo = ov.db.memos()?;
            let mut st = ov.lock();
            st.dirty = dirty;
            st.dirty_all = all;
            st.memo = memo;
        }
        let root_inode = match ov.db.inode(ROOT_INO)? {
            Some(i) => i,
            None => {
                let e = load_root(&*ov.store, &root)?;
                ov.from_entry(&e, super::ImagePath::new(b""))?
            }
        };
        ov.lock().nodes.insert(ROOT_INO, Box::new(Node::new(root_inode, u64::MAX / 2)));
        Ok(ov)
    }

    /// Close cleanly (at unmount; also when dropped): everything durable,
    /// the database's memtables in table files, the `UNCLEAN` marker gone.
    /// Nothing may change the overlay after this but another open.
    pub fn close(&self) -> Result<()> {
        self.sync_all()?;
        self.close_db()
    }

    /// The database's part of [`Self::close`] (RocksDB syncs the table
    /// files and manifest a flush writes; no syncfs of the partition).
    fn close_db(&self) -> Result<()> {
        self.db.flush_all()?;
        let m = self.dir.join(UNCLEAN);
        match std::fs::remove_file(&m) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", m, e)),
            _ => Ok(()),
        }
    }
}

/// Present while the overlay is open, holding the number of the log the
/// session started (removed once a close has flushed the database's
/// memtables to table files, so that no record lives only in a log).
const UNCLEAN: &str = "UNCLEAN";

/// The highest number of a log file in database directory `meta` (0: none).
fn newest_log(meta: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(meta) else { return 0 };
    rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse().ok())).max().unwrap_or(0)
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if let Err(e) = self.close_db() {
            tracing::warn!(overlay = %self.dir.display(), error = %e, "closing the overlay cleanly failed: the next open replays its log");
        }
    }
}

/// Write `FORMAT` (temp file and rename).
fn write_format(dir: &Path) -> Result<()> {
    let (fmt, tmp) = (dir.join("FORMAT"), dir.join("FORMAT.tmp"));
    std::fs::write(&tmp, format!("lvrepo overlay\nformat {OVERLAY_FORMAT}\n"))
        .and_then(|_| std::fs::rename(&tmp, &fmt))
        .map_err(|e| Error::io("writing", &fmt, e))
}

/// Whether the database at `meta` holds any inode record, read without
/// changing it (`true` when it does not even open: not a fresh overlay).
fn has_records(meta: &Path) -> bool {
    let Ok(db) = db::open_read_only(meta) else { return true };
    let Some(cf) = db.cf_handle("inodes") else { return true };
    let mut ro = rocksdb::ReadOptions::default();
    ro.set_total_order_seek(true);
    let any = db.iterator_cf_opt(cf, ro, rocksdb::IteratorMode::Start).next().is_some();
    any
}

/// The error for an overlay database that does not open: damage (a
/// corrupt log, table or manifest, a missing file) is `OverlayDamaged`
/// (exit 4, EIO), anything else (busy, permissions, space) says why.
fn db_open_error(dir: &Path, e: Error) -> Error {
    let chain = error_chain(&e);
    let damage = match &e {
        Error::Db(r) => match r.kind() {
            rocksdb::ErrorKind::Corruption => true,
            // A missing CURRENT, MANIFEST or table file.
            rocksdb::ErrorKind::InvalidArgument => chain.contains("does not exist"),
            rocksdb::ErrorKind::IOError | rocksdb::ErrorKind::NotFound => chain.contains("No such file"),
            _ => false,
        },
        _ => false,
    };
    if damage {
        tracing::error!(overlay = %dir.display(), error = %chain, "the overlay database is damaged");
        Error::OverlayDamaged { path: dir.join("meta"), why: format!("the overlay database does not open: {chain}; nothing was changed (see `lvrepo guest fsck`)") }
    } else {
        Error::Overlay { path: dir.to_path_buf(), why: format!("cannot open overlay database: {chain}") }
    }
}

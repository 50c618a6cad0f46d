//! Getting a working database back after a failed write (see the parent
//! module's doc): the failed instance is closed and the database opened
//! again once the partition has room; the WAL is synced by hand, never by
//! RocksDB's `SyncWAL` on a log writer a failed write left in error.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;

use rocksdb::DB;

use super::{MetaDb, REOPEN_ROOM};
use crate::error::{Error, Result};
use crate::overlay::space::{free_space, keep_reserve, release, reserve_path};

impl MetaDb {
    /// Before a write: a failed instance is reopened first, if the
    /// partition has room (releasing the reserve file if need be);
    /// otherwise ENOSPC, with nothing asked of RocksDB.
    pub(super) fn ready(&self) -> Result<()> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut g = self.db.write().unwrap_or_else(|e| e.into_inner());
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.reopen(&mut g).inspect_err(|e| {
            tracing::warn!(path = %self.path.display(), error = %crate::overlay::error_chain(e), "the overlay database stays failed: no reopen yet");
        })
    }

    /// Close the failed instance `g` holds and open the database again, if
    /// the partition has room for what the reopen writes: the replay of its
    /// logs as tables, and [`REOPEN_ROOM`] besides. Without that room the
    /// failed instance stays (reads go on through it).
    pub(super) fn reopen(&self, g: &mut Option<DB>) -> Result<()> {
        let need = REOPEN_ROOM + logs_len(&self.path);
        let reserve = reserve_path(&self.path);
        if free_space(&self.path) < need {
            release(&reserve);
            self.reserved.store(false, Ordering::SeqCst);
            if free_space(&self.path) < need {
                let source = std::io::Error::from_raw_os_error(libc::ENOSPC);
                return Err(Error::NoSpace { partition: crate::error::mount_point(&self.path), op: "reopening the overlay database in", path: self.path.clone(), source });
            }
        }
        // Closing is safe after a failed write (the log writer skips its
        // buffer); the reopen replays the log up to the last whole batch.
        *g = None;
        *g = Some(Self::open_db(&self.path, false, false)?);
        // Opening wrote the replayed log out as tables, synced: every batch
        // committed so far is durable.
        self.synced.fetch_max(self.committed.load(Ordering::SeqCst), Ordering::SeqCst);
        self.failed.store(false, Ordering::SeqCst);
        self.reserved.store(keep_reserve(&reserve), Ordering::SeqCst);
        tracing::warn!(path = %self.path.display(), "reopened the overlay database after a failed write");
        Ok(())
    }

    /// A write or sync through the open instance failed: never use it again
    /// for either (see the module doc).
    pub(super) fn failed(&self, op: &'static str, e: rocksdb::Error) -> Error {
        self.failed.store(true, Ordering::SeqCst);
        let e = Error::db(op, &self.path, e);
        tracing::error!(path = %self.path.display(), error = %crate::overlay::error_chain(&e), "overlay database write failed; it reopens at the next write once there is room");
        e
    }

    /// Allocate the reserve file again if it was released and the
    /// partition has room for it now.
    pub(crate) fn restore_reserve(&self) {
        if !self.reserved.load(Ordering::SeqCst) && keep_reserve(&reserve_path(&self.path)) {
            self.reserved.store(true, Ordering::SeqCst);
            tracing::info!(path = %self.path.display(), "allocated the overlay database's reserve again");
        }
    }

    /// fdatasync every WAL file (each write reached the file before its
    /// commit returned), and the directory when a log appeared since.
    pub(super) fn sync_logs(&self) -> std::io::Result<()> {
        let mut logs = Vec::new();
        for ent in std::fs::read_dir(&self.path)? {
            let name = ent?.file_name();
            if name.as_encoded_bytes().ends_with(b".log") {
                logs.push(name);
            }
        }
        logs.sort();
        for name in &logs {
            match File::open(self.path.join(name)) {
                Ok(f) => f.sync_data()?,
                // Obsolete and deleted since the listing: nothing to sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut seen = self.logs_synced.lock().unwrap_or_else(|e| e.into_inner());
        if *seen != logs {
            File::open(&self.path)?.sync_all()?;
            *seen = logs;
        }
        Ok(())
    }
}

/// Bytes in the log files of the database in `path`: what a reopen may
/// write out again as tables.
fn logs_len(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else { return 0 };
    rd.flatten().filter(|e| e.file_name().as_encoded_bytes().ends_with(b".log")).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

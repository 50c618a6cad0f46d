//! Free space on the overlay's partition: what a write may use, and the
//! metadata database's reserve file.
//!
//! Data writes stop [`SPACE_RESERVE`] short of full, metadata changes that
//! grow the overlay [`META_RESERVE`] short (removals always run: they make
//! room), so the database keeps room to record what was admitted, to flush,
//! and to reopen after a failed write. Against a partition filled by someone
//! else, `meta.reserve` (beside `meta/`) holds [`RESERVE_LEN`] allocated
//! bytes, released when opening or reopening the database needs them and
//! allocated again once the partition has room (see [`super::db`]). It is
//! allocated only once the partition runs low ([`RESERVE_BELOW`] free): on a
//! roomy partition an overlay (a new guest) costs no reserve at all.

use std::path::{Path, PathBuf};

use super::db::RESERVE_LEN;
use super::{posix, Overlay, META_RESERVE, SPACE_RESERVE};
use crate::error::{Error, Result};
use crate::repo::free_bytes;

/// The reserve file is allocated only while the partition has less than
/// this free: the estimate's slow path (below) runs from a little above
/// `4 * SPACE_RESERVE`, well before data writes are refused.
pub(crate) const RESERVE_BELOW: u64 = 64 << 20;

/// What one metadata change is charged against the running free-space
/// estimate (more than it writes: the estimate must err low).
const META_CHARGE: u64 = 64 << 10;

impl Overlay {
    /// Whether writing `n` more bytes would cut into [`SPACE_RESERVE`].
    pub(crate) fn low_on_space(&self, n: u64) -> bool {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        // Trust the running estimate while it is far above the reserve.
        if *free > n + 4 * SPACE_RESERVE {
            *free -= n;
            return false;
        }
        let short = |f: u64| f <= SPACE_RESERVE + n.min(SPACE_RESERVE);
        *free = self.free_now(short);
        if *free > RESERVE_LEN + SPACE_RESERVE {
            // Running low: the reserve is made now (or again, after it was spent).
            self.db.restore_reserve();
        }
        short(*free)
    }

    /// ENOSPC if a metadata change that grows the overlay would cut into
    /// [`META_RESERVE`]. Removals are never refused: they make room.
    pub(crate) fn room_for_metadata(&self) -> Result<()> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if *free > META_CHARGE + 4 * SPACE_RESERVE {
            *free -= META_CHARGE;
            return Ok(());
        }
        *free = self.free_now(|f| f <= META_RESERVE);
        if *free <= META_RESERVE {
            return Err(posix(libc::ENOSPC));
        }
        if *free > RESERVE_LEN + SPACE_RESERVE {
            // Room again after the reserve was spent to open or reopen.
            self.db.restore_reserve();
        }
        Ok(())
    }

    /// Free bytes on the overlay's partition now (see [`free_bytes`]).
    fn free_now(&self, short: impl Fn(u64) -> bool) -> u64 {
        free_bytes(&self.dir, short).unwrap_or(u64::MAX)
    }

    /// Filesystem statistics of the overlay's partition.
    pub fn statfs(&self) -> Result<nix::sys::statvfs::Statvfs> {
        nix::sys::statvfs::statvfs(&self.dir).map_err(|e| Error::io("statfs", &self.dir, e.into()))
    }
}

/// The reserve file of the database in `path` (`meta.reserve` beside `meta/`).
pub(crate) fn reserve_path(path: &Path) -> PathBuf {
    path.with_extension("reserve")
}

/// Free bytes on the partition holding `path` for an unprivileged writer
/// (0 if it cannot be read: then the reserve is released rather than kept).
pub(crate) fn free_space(path: &Path) -> u64 {
    free_bytes(path, |f| f < RESERVE_LEN + SPACE_RESERVE).unwrap_or(0)
}

/// Before opening a database beside the overlay in `dir` (the guest's own
/// store) on a partition without the room it needs to open: release the
/// overlay database's reserve.
pub fn make_room(dir: &Path) {
    let meta = dir.join("meta");
    if free_space(dir) < crate::repo::OPEN_ROOM {
        release(&reserve_path(&meta));
    }
}

/// Give the reserve file's blocks back to the partition.
pub(crate) fn release(reserve: &Path) {
    use std::os::unix::fs::MetadataExt;
    let cut = std::fs::OpenOptions::new().write(true).open(reserve).and_then(|f| {
        // Already released: nothing to say.
        if f.metadata()?.blocks() == 0 {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        f.set_len(0)
    });
    match cut {
        Ok(()) => tracing::warn!(path = %reserve.display(), "partition full: released the overlay database's reserve"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %reserve.display(), error = %e, "could not release the overlay database's reserve"),
    }
}

/// Have the reserve file hold [`RESERVE_LEN`] allocated bytes, if the
/// partition can spare them and [`SPACE_RESERVE`] besides; otherwise leave it
/// as it is (released: allocated again once there is room). Whether it holds them.
pub(crate) fn keep_reserve(reserve: &Path) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(f) = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(reserve) else { return false };
    if f.metadata().is_ok_and(|m| m.blocks() * 512 >= RESERVE_LEN) {
        return true;
    }
    // Never at the cost of refusing data writes; not yet while there is
    // plenty of room (the partition's own free space is the reserve then).
    let free = free_space(reserve);
    if !(RESERVE_LEN + SPACE_RESERVE..=RESERVE_BELOW).contains(&free) {
        return false;
    }
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    if unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, RESERVE_LEN as libc::off_t) } != 0 {
        tracing::warn!(path = %reserve.display(), error = %std::io::Error::last_os_error(), "could not allocate the overlay database's reserve");
        let _ = f.set_len(0);
        return false;
    }
    true
}

//! The overlay a mount serves, replaceable while mounted (a guest's rollback).
//!
//! Every FUSE request holds a read guard for its whole run; a switch takes
//! the write side, so it waits for the requests in flight and holds new ones
//! back: applications see a pause. The kernel's references are carried over
//! to the new overlay ([`Overlay::adopt`]) before it goes live, and the
//! kernel's caches are invalidated right after the write side is released
//! (never while it is held: the kernel may need a request answered to finish
//! an invalidation).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fuser::{INodeNo, Notifier};

use super::negative::Negatives;
use crate::overlay::{Adopted, Overlay};

pub struct Live {
    current: RwLock<Arc<Overlay>>,
    notifier: OnceLock<Notifier>,
    /// Counts switches; directory listings cached before a switch are stale.
    epoch: AtomicU64,
    /// Misses the kernel caches (a root daemon's); a switch invalidates them.
    pub(crate) negatives: Negatives,
}

impl Live {
    pub fn new(ov: Arc<Overlay>) -> Arc<Live> {
        Arc::new(Live { current: RwLock::new(ov), notifier: OnceLock::new(), epoch: AtomicU64::new(0), negatives: Negatives::default() })
    }

    /// The overlay, held for one request.
    pub fn get(&self) -> RwLockReadGuard<'_, Arc<Overlay>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The overlay now (not holding switches back).
    pub fn current(&self) -> Arc<Overlay> {
        self.get().clone()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn set_notifier(&self, n: Notifier) {
        let _ = self.notifier.set(n);
    }

    /// Begin a switch: returns once no request is running; none starts until
    /// the [`Switch`] is dropped.
    pub fn begin(&self) -> Switch<'_> {
        let guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        let old = (*guard).clone();
        Switch { live: self, guard: Some(guard), old, adopted: None }
    }
}

/// A switch in progress (see [`Live::begin`]).
pub struct Switch<'a> {
    live: &'a Live,
    /// Taken (dropped) first thing in `drop`, before the invalidations.
    guard: Option<RwLockWriteGuard<'a, Arc<Overlay>>>,
    old: Arc<Overlay>,
    adopted: Option<Adopted>,
}

impl Switch<'_> {
    /// The overlay being replaced.
    pub fn old(&self) -> Arc<Overlay> {
        self.old.clone()
    }

    /// Serve `ov` from now on; `adopted` is what [`Overlay::adopt`] carried over.
    pub fn install(&mut self, ov: Arc<Overlay>, adopted: Adopted) {
        if let Some(g) = self.guard.as_mut() {
            **g = ov;
        }
        self.live.epoch.fetch_add(1, Ordering::AcqRel);
        self.adopted = Some(adopted);
    }
}

impl Drop for Switch<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let (Some(a), Some(n)) = (self.adopted.take(), self.live.notifier.get()) else { return };
        // ENOENT: the kernel forgot the inode or dentry meanwhile; nothing to do.
        // Cached misses too: the switch may have made those names exist.
        let negatives = self.live.negatives.take();
        for (parent, name) in a.stale_entries.iter().chain(&negatives) {
            if let Err(e) = n.inval_entry(INodeNo(*parent), OsStr::from_bytes(name)) {
                tracing::debug!(parent, error = %e, "invalidating an entry");
            }
        }
        for ino in a.kept.iter().chain(&a.dropped) {
            if let Err(e) = n.inval_inode(INodeNo(*ino), 0, 0) {
                tracing::debug!(ino, error = %e, "invalidating an inode");
            }
        }
        tracing::info!(kept = a.kept.len(), stale = a.stale_entries.len(), negative = negatives.len(), dropped = a.dropped.len(), "kernel caches invalidated after a switch");
    }
}

//! What a checkpoint may trust of the shared repository.
//!
//! Folding a guest writes into its own store only the objects the shared
//! repository lacks. A daemon's view of the repository is the index it
//! opened at mount time, and gc may have removed objects from the
//! repository since. A [`CheckpointView`] is taken for the whole checkpoint:
//! it holds the gc guard shared (gc waits; see [`GcGuard`]) and a view of the
//! repository opened after the guard, and [`CheckpointView::confirm`] makes
//! a store whose presence answers need both views. So a checkpoint never
//! relies on an object it did not find in the repository as it is, and gc
//! cannot remove that object before the checkpoint is recorded (then it is
//! a root gc keeps).

use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::object::{Confirmed, ObjectStore};
use crate::repo::{GcGuard, Repository};

pub struct CheckpointView {
    current: Arc<dyn ObjectStore>,
    // Dropped after `current` (fields drop in order): the view's reader
    // lock goes before the guard.
    _guard: Option<GcGuard>,
}

impl CheckpointView {
    /// Take the gc guard of the repository at `repo`, then open it.
    pub fn open(repo: &Path) -> Result<Self> {
        let guard = GcGuard::take(repo, false)?;
        let current = Repository::open(repo, false)?.shared_store();
        Ok(CheckpointView { current, _guard: guard })
    }

    /// The repository as it is now (for a command that has no older view).
    pub fn shared(&self) -> Arc<dyn ObjectStore> {
        self.current.clone()
    }

    /// `serving` (the store reads go to, e.g. a daemon's cache over its
    /// mount-time view) with presence confirmed against the current view.
    pub fn confirm(&self, serving: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Confirmed::new(serving, self.current.clone()))
    }
}

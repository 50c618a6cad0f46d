//! FUSE passthrough of unchanged image files onto the host file cache
//! ([`crate::filecache`]): the kernel reads the cached file itself, at native
//! speed, and every guest on the host shares its page cache.
//!
//! The kernel keeps one I/O mode per inode: while any descriptor reads it
//! through a backing file, every other open of it must name the same backing
//! file (Linux refuses anything else with EIO), and a descriptor using FUSE's
//! page cache keeps passthrough from starting. So, per inode:
//! - a read-only open of a file the guest has not changed, while no cached
//!   descriptor is open, is passthrough (one backing file per inode while
//!   such opens last);
//! - any other open is cached, as without passthrough. While passthrough
//!   descriptors are open, Linux refuses it (EIO: the writer cannot share
//!   the read-only backing file). The kernel decides, not this table: a
//!   close is synchronous in the kernel but its RELEASE reaches the daemon
//!   later, so only the kernel knows whether a reader is still there.
//!
//! So a write to an unchanged image file waits until its passthrough
//! readers have closed it (kernel overlayfs lets the write happen and the
//! old descriptor keep reading the image's bytes). Opens after the write
//! read and write through the daemon as always.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fuser::{BackingId, FileHandle, FopenFlags, ReplyOpen};

use crate::filecache::FileCache;
use crate::overlay::Overlay;
use crate::tree::Content;

#[derive(Default)]
struct Modes {
    passthrough: u32,
    cached: u32,
    /// The backing file and the content it holds (after a rollback of the
    /// mounted guest, the same inode number may name other content).
    backing: Option<(BackingId, (Content, u64))>,
}

/// How a handle was opened, for its release.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Passthrough,
    Cached,
}

pub(crate) struct Passthrough {
    cache: Arc<FileCache>,
    inodes: Mutex<HashMap<u64, Modes>>,
    handles: Mutex<HashMap<u64, (u64, Mode)>>,
}

impl Passthrough {
    pub(crate) fn new(cache: Arc<FileCache>) -> Self {
        Passthrough { cache, inodes: Mutex::new(HashMap::new()), handles: Mutex::new(HashMap::new()) }
    }

    /// Answer the OPEN of `ino` as handle `fh`.
    pub(crate) fn open(&self, ov: &Overlay, ino: u64, read_only: bool, fh: u64, reply: ReplyOpen) {
        // The cached file is found (or filled) before the table is locked:
        // a fill may take a while and must not hold up other opens.
        let pristine = if read_only { ov.pristine_file(ino).ok().flatten() } else { None };
        let cached_file = match &pristine {
            Some((content, size)) if self.lock_inodes().get(&ino).is_none_or(|m| m.cached == 0 && m.backing.is_none()) => {
                self.cache.get(&*ov.store, content, *size).unwrap_or_else(|e| {
                    tracing::warn!(ino, error = %e, "host file cache: serving from the repository");
                    None
                })
            }
            _ => None,
        };
        let mut inodes = self.lock_inodes();
        let m = inodes.entry(ino).or_default();
        let same = |m: &Modes| m.backing.as_ref().map(|b| &b.1) == pristine.as_ref();
        let mode = if pristine.is_some() && m.cached == 0 && (same(m) || (m.backing.is_none() && cached_file.is_some())) {
            if let (None, Some(f), Some(key)) = (&m.backing, &cached_file, &pristine) {
                match reply.open_backing(f) {
                    Ok(id) => m.backing = Some((id, *key)),
                    Err(e) => tracing::warn!(ino, error = %e, "passthrough: the kernel refused the backing file"),
                }
            }
            if m.backing.is_some() { Mode::Passthrough } else { Mode::Cached }
        } else {
            Mode::Cached
        };
        match mode {
            Mode::Passthrough => m.passthrough += 1,
            Mode::Cached => m.cached += 1,
        }
        self.handles.lock().unwrap_or_else(|e| e.into_inner()).insert(fh, (ino, mode));
        match (mode, &m.backing) {
            (Mode::Passthrough, Some((id, _))) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), id),
            _ => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    /// Handle `fh` is closed.
    pub(crate) fn release(&self, fh: u64) {
        let Some((ino, mode)) = self.handles.lock().unwrap_or_else(|e| e.into_inner()).remove(&fh) else { return };
        let mut inodes = self.lock_inodes();
        let Some(m) = inodes.get_mut(&ino) else { return };
        match mode {
            Mode::Passthrough => m.passthrough = m.passthrough.saturating_sub(1),
            Mode::Cached => m.cached = m.cached.saturating_sub(1),
        }
        if m.passthrough == 0 {
            // The kernel keeps the file while its descriptors are open.
            m.backing = None;
        }
        if m.passthrough == 0 && m.cached == 0 {
            inodes.remove(&ino);
        }
    }

    fn lock_inodes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Modes>> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

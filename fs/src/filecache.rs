//! The host file cache: whole image files, decompressed, keyed by content,
//! shared by every guest and daemon on a host. A mount given one serves
//! read-only opens of image files a guest has not changed by FUSE
//! passthrough onto the cached file, so the kernel reads it natively and
//! keeps one page-cache copy for all guests.
//!
//! Invariants:
//! - A cached file is named by what it holds (`<content id>-<size>`) and
//!   appears by rename of a completely written temporary file, so a reader
//!   never sees a half-written one; concurrent fillers write the same bytes
//!   and the last rename wins. Temporaries of a crashed filler are removed
//!   when a cache is opened (they are locked while written).
//! - Nothing is served unverified: a file this process did not fill is
//!   hashed against the image's chunk ids (and its holes checked for zeros)
//!   on its first use by this process; a damaged one is removed, refilled
//!   and logged, never served.
//! - Bounded: past its budget, the least recently used files are removed
//!   (an open descriptor keeps a removed file's bytes).
//! - A fill that fails (a full disk) leaves nothing behind, and the caller
//!   serves the file from the chunk store as before.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::digest::{ChunkId, ObjectKind};
use crate::error::{Error, Result};
use crate::object::{get_required_shared, ObjectStore};
use crate::tree::file::leaf_extents;
use crate::tree::Content;

/// `used` before the cache's files are first counted.
const UNCOUNTED: u64 = u64::MAX;

/// The largest file the cache takes (and at most a quarter of its budget).
pub const MAX_FILE: u64 = 1 << 30;

/// The default directory of the host file cache.
pub const DEFAULT_DIR: &str = "/var/cache/lvrepo/files";

#[derive(Debug)]
pub struct FileCache {
    dir: PathBuf,
    budget: u64,
    /// Bytes the cache holds (as last counted, plus fills since);
    /// [`UNCOUNTED`] until the first fill counts them, so a daemon's start
    /// does not walk the cache.
    used: AtomicU64,
    /// Cached files this process filled or verified: (device, inode, size).
    verified: Mutex<HashSet<(u64, u64, u64)>>,
    /// Distinguishes this process's temporaries from each other.
    seq: AtomicU64,
}

impl FileCache {
    /// Open (creating) the cache at `dir`, holding at most `budget` bytes.
    pub fn open(dir: &Path, budget: u64) -> Result<FileCache> {
        crate::perms::create_private_dir(dir)?;
        for sub in ["objects", "tmp"] {
            crate::perms::create_private_dir(&dir.join(sub))?;
        }
        let c = FileCache { dir: dir.to_path_buf(), budget, used: AtomicU64::new(UNCOUNTED), verified: Mutex::new(HashSet::new()), seq: AtomicU64::new(0) };
        c.remove_stale_temporaries();
        Ok(c)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached file of an image file (`content`, `size` bytes), filled
    /// from `store` if absent or damaged. `None`: not cacheable (no bytes),
    /// or the fill failed (logged); serve it from the store then.
    pub fn get(&self, store: &dyn ObjectStore, content: &Content, size: u64) -> Result<Option<File>> {
        let key = match content {
            Content::Chunk(c) => format!("c{}-{size}", c.0.to_hex()),
            Content::File(f) => format!("f{}-{size}", f.0.to_hex()),
            Content::None | Content::Tree(_) => return Ok(None),
        };
        // A first open fills the whole file: a huge one (a disk image in the
        // tree) stays with the daemon, which reads only what is asked.
        if size > MAX_FILE.min(self.budget / 4) {
            return Ok(None);
        }
        let path = self.dir.join("objects").join(&key[1..3]).join(&key);
        let extents = leaf_extents(store, content, size)?;
        if let Ok(f) = File::open(&path) {
            if self.is_verified(&f) || self.verify(&f, &extents, size, &path) {
                touch(&f);
                return Ok(Some(f));
            }
            tracing::error!(path = %path.display(), "host file cache: damaged cached file removed and filled again");
            let _ = std::fs::remove_file(&path);
        }
        match self.fill(store, &extents, size, &path) {
            Ok(f) => Ok(Some(f)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "host file cache: fill failed; serving from the repository");
                Ok(None)
            }
        }
    }

    fn is_verified(&self, f: &File) -> bool {
        let key = id(f);
        key.is_some_and(|k| self.verified.lock().unwrap_or_else(|e| e.into_inner()).contains(&k))
    }

    fn mark_verified(&self, f: &File) {
        if let Some(k) = id(f) {
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(k);
        }
    }

    /// Whether `f` holds exactly the image file: its size, each extent's
    /// chunk id, zeros between.
    fn verify(&self, f: &File, extents: &[(u64, u64, ChunkId)], size: u64, path: &Path) -> bool {
        if f.metadata().map(|m| m.len()).ok() != Some(size) {
            return false;
        }
        let mut buf = Vec::new();
        let mut at = 0;
        let zeros = |from: u64, to: u64, buf: &mut Vec<u8>| -> bool {
            let mut p = from;
            while p < to {
                let n = (to - p).min(1 << 20) as usize;
                buf.resize(n, 0);
                if f.read_exact_at(buf, p).is_err() || buf.iter().any(|&b| b != 0) {
                    return false;
                }
                p += n as u64;
            }
            true
        };
        for (off, len, chunk) in extents {
            let end = (off + len).min(size);
            if *off < at || !zeros(at, *off, &mut buf) {
                return false;
            }
            buf.resize((end - off) as usize, 0);
            if f.read_exact_at(&mut buf, *off).is_err() || ChunkId::of(&buf) != *chunk {
                tracing::debug!(path = %path.display(), chunk = %chunk, "host file cache: chunk does not verify");
                return false;
            }
            at = end;
        }
        let ok = zeros(at, size, &mut buf);
        if ok {
            self.mark_verified(f);
        }
        ok
    }

    /// Write the file to a locked temporary, then rename it into place.
    fn fill(&self, store: &dyn ObjectStore, extents: &[(u64, u64, ChunkId)], size: u64, path: &Path) -> Result<File> {
        self.make_room(size);
        let parent = path.parent().unwrap_or(&self.dir);
        crate::perms::create_private_dir(parent)?;
        // A name no other filler uses, created exclusively: nobody else can
        // open (and truncate) this temporary while it is written.
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let tmp = self.dir.join("tmp").join(format!("{}.{}.{}.{nanos}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id(), self.seq.fetch_add(1, Ordering::Relaxed)));
        let f = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| Error::io("creating a host cache file", &tmp, e))?;
        // Locked while written: a crashed filler's temporary is unlocked.
        if !try_lock(&f) {
            return Err(Error::io("locking a host cache file", &tmp, std::io::Error::last_os_error()));
        }
        let written = (|| {
            for (off, len, chunk) in extents {
                let bytes = get_required_shared(store, ObjectKind::Chunk, &chunk.0)?;
                let n = (*len as usize).min(bytes.len()).min(size.saturating_sub(*off) as usize);
                f.write_all_at(&bytes[..n], *off).map_err(|e| Error::io("writing a host cache file", &tmp, e))?;
                // The kernel reads this file from now on: the daemon's chunk
                // cache need not keep the chunk.
                store.read_through(&chunk.0);
            }
            f.set_len(size).map_err(|e| Error::io("writing a host cache file", &tmp, e))?;
            std::fs::rename(&tmp, path).map_err(|e| Error::io("publishing a host cache file", path, e))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.used.fetch_add(size, Ordering::Relaxed);
        self.mark_verified(&f);
        Ok(f)
    }

    /// Remove least recently used files until `need` more bytes fit.
    fn make_room(&self, need: u64) {
        let used = self.used.load(Ordering::Relaxed);
        if used != UNCOUNTED && used + need <= self.budget {
            return;
        }
        let mut files = self.scan();
        let mut used: u64 = files.iter().map(|f| f.1).sum();
        if used + need <= self.budget {
            // Only counted now (the first fill since this cache was opened).
            self.used.store(used, Ordering::Relaxed);
            return;
        }
        files.sort_by_key(|f| f.2);
        for (p, len, _) in files {
            if used + need <= self.budget.saturating_mul(9) / 10 {
                break;
            }
            if std::fs::remove_file(&p).is_ok() {
                tracing::debug!(path = %p.display(), "host file cache: evicted");
                used -= len;
            }
        }
        self.used.store(used, Ordering::Relaxed);
    }

    /// Every cached file: path, allocated bytes, last use.
    fn scan(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        let Ok(top) = std::fs::read_dir(self.dir.join("objects")) else { return out };
        for d in top.flatten() {
            let Ok(rd) = std::fs::read_dir(d.path()) else { continue };
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    out.push((e.path(), m.blocks() * 512, m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                }
            }
        }
        out
    }

    /// Temporaries no filler holds locked are a crashed fill's remains.
    fn remove_stale_temporaries(&self) {
        let Ok(rd) = std::fs::read_dir(self.dir.join("tmp")) else { return };
        for e in rd.flatten() {
            let Ok(f) = File::open(e.path()) else { continue };
            if try_lock(&f) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// An exclusive flock on `f`, if nobody holds one.
fn try_lock(f: &File) -> bool {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(f), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Mark `f` used now (eviction removes the least recently used first).
fn touch(f: &File) {
    let _ = f.set_modified(SystemTime::now());
}

fn id(f: &File) -> Option<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    f.metadata().ok().map(|m| (m.dev(), m.ino(), m.len()))
}

/// Read all of `f` (tests).
#[cfg(test)]
fn read_all(f: &File) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    let _ = (&*f).read_to_end(&mut v);
    v
}

#[cfg(test)]
mod tests;

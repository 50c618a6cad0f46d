//! The cache's bound on disk: what records fetched from the bucket may take
//! in the cache's pack files (`LVREPO_CACHE_MIB`; default a tenth of the
//! cache's filesystem). Past it, whole copies of remote packs, least
//! recently filled first (by mtime: each fill writes the file), are
//! punched out (fallocate PUNCH_HOLE) down to three quarters of the bound;
//! a punched record is a hole again and is simply fetched again. A reader
//! racing a punch may see a header without its payload: the hash check
//! catches it and [`crate::object::ObjectStore::heal`] refetches it.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::Remote;

/// Punch `len` bytes at `offset` out of `path` (its length is kept).
pub fn punch(path: &Path, offset: u64, len: u64) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let (off, len) = (libc::off_t::try_from(offset), libc::off_t::try_from(len));
    let (Ok(off), Ok(len)) = (off, len) else { return Err(std::io::Error::from_raw_os_error(libc::EINVAL)) };
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The bound for a cache whose packs are in `dir`.
fn default_limit(dir: &Path) -> u64 {
    if let Some(mib) = std::env::var("LVREPO_CACHE_MIB").ok().and_then(|v| v.parse::<u64>().ok()) {
        return mib << 20;
    }
    nix::sys::statvfs::statvfs(dir).map(|s| s.blocks() * s.fragment_size() / 10).unwrap_or(u64::MAX)
}

impl Remote {
    /// Set the bound (bytes) instead of the default.
    pub fn set_cache_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// `n` bytes were written into the cache's packs in `dir`: evict when
    /// enough has come in since the last look.
    pub(crate) fn filled(&self, dir: &Path, n: u64) {
        let mut limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            limit = default_limit(dir);
            self.limit.store(limit, Ordering::Relaxed);
        }
        let step = (limit / 32).clamp(4 << 10, 64 << 20);
        if self.since_evict.fetch_add(n, Ordering::Relaxed) + n < step {
            return;
        }
        self.since_evict.store(0, Ordering::Relaxed);
        // One eviction at a time; the others go on fetching.
        let Ok(_g) = self.evicting.try_lock() else { return };
        self.evict(dir, limit);
    }

    fn evict(&self, dir: &Path, limit: u64) {
        let mut packs: Vec<(i64, u64, std::path::PathBuf)> = self
            .known_packs()
            .keys()
            .filter_map(|n| {
                let p = dir.join(format!("pack-{n:08}.pack"));
                let m = std::fs::metadata(&p).ok()?;
                Some((m.mtime(), m.blocks() * 512, p))
            })
            .collect();
        let mut total: u64 = packs.iter().map(|p| p.1).sum();
        if total <= limit {
            return;
        }
        packs.sort();
        let (mut freed, mut count) = (0, 0);
        for (_, used, p) in packs {
            if total <= limit / 4 * 3 {
                break;
            }
            if used == 0 {
                continue;
            }
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            match punch(&p, 0, len) {
                Ok(()) => {
                    total = total.saturating_sub(used);
                    freed += used;
                    count += 1;
                }
                Err(e) => tracing::warn!(path = %p.display(), error = %e, "evicting a cached pack failed"),
            }
        }
        tracing::info!(packs = count, bytes = freed, limit, "evicted cached remote packs");
    }
}

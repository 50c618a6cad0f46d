//! A read cache wrapper shared by all threads of a daemon.
//!
//! Two-generation approximate LRU: hits are looked up in the young map, then the
//! old one (and promoted); when the young map passes half the byte budget, it
//! becomes the old map and the old one is dropped. O(1) per operation, no list
//! bookkeeping, and a scan larger than the budget cannot evict the hot set more
//! than once.
//!
//! The budget is fixed ([`Cached::new`]) or follows the machine's memory
//! ([`Cached::sized_to_memory`]): at most a share of RAM, and at each
//! generation flip no more than a quarter of the memory then available, so
//! a cache that grew while memory was plentiful gives it back under pressure
//! (the kernel cannot reclaim it as it would page cache).
//!
//! Chunks a sequential reader has read through ([`ObjectStore::read_through`])
//! leave the generations for a small FIFO ([`SCANNED`] bytes): a stream
//! through a large file then reuses the same memory instead of growing the
//! cache by the whole file (each new page is a fault, a zeroing and a memory
//! cgroup charge: a seventh of a cold sequential read's CPU with a 2 GiB
//! budget). A scanned chunk read again is promoted back.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::ObjectStore;
use crate::digest::{Digest, ObjectKind};
use crate::error::Result;

/// The smallest budget a memory-sized cache shrinks to.
const MIN_BUDGET: usize = 32 << 20;
/// Bytes of read-through chunks kept (at most an eighth of the budget).
const SCANNED: usize = 32 << 20;

pub struct Cached<S> {
    inner: S,
    /// The most the cache may hold.
    max: usize,
    /// What it may hold now (`max`, or less under memory pressure).
    budget: AtomicUsize,
    /// Re-read available memory at each generation flip.
    adaptive: bool,
    state: Mutex<Gens>,
}

#[derive(Default)]
struct Gens {
    young: HashMap<Digest, Arc<Vec<u8>>>,
    young_bytes: usize,
    old: HashMap<Digest, Arc<Vec<u8>>>,
    /// Read-through chunks, each with the number of its FIFO entry, and
    /// the entries oldest first: an entry whose chunk was promoted since
    /// (or promoted and read through again, under a newer number) frees
    /// nothing when it comes up.
    scanned: HashMap<Digest, (u64, Arc<Vec<u8>>)>,
    scanned_bytes: usize,
    fifo: VecDeque<(u64, Digest)>,
    next_scan: u64,
}

impl<S: ObjectStore> Cached<S> {
    /// `budget` is the approximate number of bytes kept (both generations).
    pub fn new(inner: S, budget: usize) -> Self {
        let budget = budget.max(1);
        Cached { inner, max: budget, budget: AtomicUsize::new(budget), adaptive: false, state: Mutex::new(Gens::default()) }
    }

    /// A cache of at most `max` bytes (`None`: an eighth of RAM, between
    /// 64 MiB and 2 GiB) that, each time a generation fills, holds no more
    /// than a quarter of the memory then available (never under 32 MiB).
    pub fn sized_to_memory(inner: S, max: Option<usize>) -> Self {
        let max = max.unwrap_or_else(|| meminfo("MemTotal:").map_or(256 << 20, |t| (t / 8).clamp(64 << 20, 2 << 30))).max(1);
        let c = Cached { inner, max, budget: AtomicUsize::new(max), adaptive: true, state: Mutex::new(Gens::default()) };
        c.rebudget();
        c
    }

    /// What the cache may hold now, in bytes.
    pub fn budget(&self) -> usize {
        self.budget.load(Relaxed)
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn rebudget(&self) {
        if !self.adaptive {
            return;
        }
        let b = budget_for(self.max, meminfo("MemAvailable:"));
        if b != self.budget.swap(b, Relaxed) {
            tracing::debug!(budget = b, "chunk cache budget");
        }
    }

    fn lookup(&self, id: &Digest) -> Option<Arc<Vec<u8>>> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = g.young.get(id) {
            return Some(v.clone());
        }
        let v = match g.old.remove(id) {
            Some(v) => v,
            None => {
                let (_, v) = g.scanned.remove(id)?;
                g.scanned_bytes -= v.len();
                v
            }
        };
        let len = v.len();
        g.young.insert(*id, v.clone());
        g.young_bytes += len;
        Some(v)
    }

    fn insert(&self, id: Digest, v: Arc<Vec<u8>>) {
        let dropped = {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            g.young_bytes += v.len();
            g.young.insert(id, v);
            if g.young_bytes <= self.budget() / 2 {
                return;
            }
            let young = std::mem::take(&mut g.young);
            g.young_bytes = 0;
            std::mem::replace(&mut g.old, young)
        };
        // Freed after the lock: half the budget (thousands of buffers) would
        // otherwise stall every reader of the cache while it is returned.
        drop(dropped);
        self.rebudget();
    }
}

impl<S> Cached<S> {
    /// Where the cache holds `id`: `"young"`, `"old"`, `"scanned"`, or
    /// `None` (for tests of the layers that give it hints).
    #[cfg(test)]
    pub(crate) fn holds(&self, id: &Digest) -> Option<&'static str> {
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if g.young.contains_key(id) {
            Some("young")
        } else if g.old.contains_key(id) {
            Some("old")
        } else {
            g.scanned.contains_key(id).then_some("scanned")
        }
    }

    /// Move `id` from the generations to the scanned FIFO; returns what the
    /// FIFO let go, for the caller to free after the lock.
    fn scanned(&self, id: &Digest) -> Vec<Arc<Vec<u8>>> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *g;
        let v = match g.young.remove(id) {
            Some(v) => {
                g.young_bytes = g.young_bytes.saturating_sub(v.len());
                v
            }
            None => match g.old.remove(id) {
                Some(v) => v,
                None => return Vec::new(),
            },
        };
        g.next_scan += 1;
        g.scanned_bytes += v.len();
        g.scanned.insert(*id, (g.next_scan, v));
        g.fifo.push_back((g.next_scan, *id));
        let limit = SCANNED.min(self.budget.load(Relaxed) / 8);
        let mut freed = Vec::new();
        while g.scanned_bytes > limit || g.fifo.len() > g.scanned.len() * 2 + 64 {
            let Some((n, k)) = g.fifo.pop_front() else { break };
            if g.scanned.get(&k).is_some_and(|e| e.0 == n) {
                if let Some((_, v)) = g.scanned.remove(&k) {
                    g.scanned_bytes -= v.len();
                    freed.push(v);
                }
            }
        }
        freed
    }
}

/// The budget of a cache of at most `max` bytes when `avail` bytes of memory
/// are available (`None`: unknown).
fn budget_for(max: usize, avail: Option<usize>) -> usize {
    match avail {
        Some(avail) => max.min((avail / 4).max(MIN_BUDGET)),
        None => max,
    }
}

/// A `/proc/meminfo` line's value in bytes (`None` where there is none).
fn meminfo(key: &str) -> Option<usize> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = s.lines().find_map(|l| l.strip_prefix(key))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

impl<S: ObjectStore> ObjectStore for Cached<S> {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        Ok(self.get_shared(kind, id)?.map(|a| (*a).clone()))
    }
    /// Shares the cached buffer instead of copying it.
    fn get_shared(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Arc<Vec<u8>>>> {
        if let Some(hit) = self.lookup(id) {
            return Ok(Some(hit));
        }
        let Some(bytes) = self.inner.get(kind, id)? else {
            return Ok(None);
        };
        let arc = Arc::new(bytes);
        self.insert(*id, arc.clone());
        Ok(Some(arc))
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        if self.lookup(id).is_some() {
            return Ok(true);
        }
        self.inner.contains(id)
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        self.inner.put(kind, id, bytes)
    }
    /// Past the cache: it holds decoded bytes, a copy wants the stored form.
    fn get_stored(&self, kind: ObjectKind, id: &Digest) -> Result<Option<super::Stored>> {
        self.inner.get_stored(kind, id)
    }
    fn put_stored(&self, kind: ObjectKind, id: &Digest, obj: &super::Stored) -> Result<bool> {
        self.inner.put_stored(kind, id, obj)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn read_through(&self, id: &Digest) {
        drop(self.scanned(id));
        self.inner.read_through(id);
    }
    fn cache_budget(&self) -> Option<usize> {
        Some(self.budget())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{put_object, MemStore};

    #[test]
    fn conformance() {
        super::super::conformance::run(&Cached::new(MemStore::new(), 1 << 20));
    }

    #[test]
    fn hot_entries_survive_a_generation_flip() {
        let c = Cached::new(MemStore::new(), 4096);
        let hot = put_object(&c, ObjectKind::Chunk, &[1u8; 1000]).unwrap();
        for i in 0..10u8 {
            let id = put_object(&c, ObjectKind::Chunk, &[i + 2; 1000]).unwrap();
            c.get(ObjectKind::Chunk, &id).unwrap();
            assert!(c.get_shared(ObjectKind::Chunk, &hot).unwrap().is_some());
        }
        let g = c.state.lock().unwrap();
        assert!(g.young.contains_key(&hot) || g.old.contains_key(&hot));
        assert!(g.young_bytes <= 4096);
    }

    #[test]
    fn memory_sized_budget_is_bounded_by_ram_and_what_is_available() {
        let total = meminfo("MemTotal:").expect("MemTotal in /proc/meminfo");
        let c = Cached::sized_to_memory(MemStore::new(), None);
        assert!(c.budget() <= (total / 8).clamp(64 << 20, 2 << 30));
        assert!(c.budget() >= MIN_BUDGET);
        // An explicit maximum is kept to when memory allows it.
        assert_eq!(Cached::sized_to_memory(MemStore::new(), Some(1 << 20)).budget(), 1 << 20);
        // Never more than a quarter of what is available, never under the floor.
        assert_eq!(budget_for(2 << 30, Some(16 << 30)), 2 << 30);
        assert_eq!(budget_for(2 << 30, Some(1 << 30)), 256 << 20);
        assert_eq!(budget_for(2 << 30, Some(8 << 20)), MIN_BUDGET);
        assert_eq!(budget_for(2 << 30, None), 2 << 30);
    }

    #[test]
    fn read_through_chunks_are_kept_in_a_bounded_fifo_and_promoted_on_reuse() {
        let c = Cached::new(MemStore::new(), 8 * SCANNED);
        let chunk = |i: u32| [&i.to_le_bytes()[..], &vec![7u8; 1 << 20][..]].concat();
        let ids: Vec<_> = (0..48u32).map(|i| put_object(&c, ObjectKind::Chunk, &chunk(i)).unwrap()).collect();
        for id in &ids {
            c.get_shared(ObjectKind::Chunk, id).unwrap();
            c.read_through(id);
        }
        {
            let g = c.state.lock().unwrap();
            assert!(g.young.is_empty() && g.old.is_empty(), "read-through chunks left the generations");
            assert!(g.scanned_bytes <= SCANNED, "scanned {} bytes", g.scanned_bytes);
            assert_eq!(g.scanned_bytes, g.scanned.values().map(|v| v.1.len()).sum::<usize>());
            assert!(g.scanned.contains_key(&ids[47]) && !g.scanned.contains_key(&ids[0]), "oldest first");
        }
        // A scanned chunk read again is promoted back to the young generation.
        assert_eq!(*c.get_shared(ObjectKind::Chunk, &ids[47]).unwrap().unwrap(), chunk(47));
        let g = c.state.lock().unwrap();
        assert!(g.young.contains_key(&ids[47]) && !g.scanned.contains_key(&ids[47]));
        // Evicted chunks are still served (from the store), never wrong.
        drop(g);
        assert_eq!(*c.get_shared(ObjectKind::Chunk, &ids[0]).unwrap().unwrap(), chunk(0));
        // A chunk promoted, then read through again later, is let go by its
        // newer FIFO entry, not by the older one that comes up first.
        let through = |ids: &[Digest]| {
            for id in ids {
                c.get_shared(ObjectKind::Chunk, id).unwrap();
                c.read_through(id);
            }
        };
        through(&ids[..16]);
        c.read_through(&ids[47]);
        through(&ids[16..32]);
        let g = c.state.lock().unwrap();
        assert!(g.scanned.contains_key(&ids[47]), "let go by its older FIFO entry");
        assert!(!g.scanned.contains_key(&ids[33]), "the FIFO did not move past the older entry");
        assert!(g.scanned_bytes <= SCANNED);
    }

    #[test]
    fn a_shrunk_budget_bounds_what_is_kept() {
        let c = Cached::new(MemStore::new(), 64 << 10);
        for i in 0..64u32 {
            let id = put_object(&c, ObjectKind::Chunk, &[&i.to_le_bytes()[..], &[0u8; 4096]].concat()).unwrap();
            c.get_shared(ObjectKind::Chunk, &id).unwrap();
        }
        let g = c.state.lock().unwrap();
        let kept: usize = g.young.values().chain(g.old.values()).map(|v| v.len()).sum();
        assert!(kept <= 64 << 10, "kept {kept} bytes under a 64 KiB budget");
        assert!(kept >= 16 << 10, "kept only {kept} bytes");
    }
}

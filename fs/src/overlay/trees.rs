//! Decoded image trees, cached, with read-ahead of the levels below.
//!
//! Trees are immutable, so a cached tree never goes stale. Resolving a
//! directory's entry loads that directory's tree (its subdirectory count is
//! the entry's nlink), and a walk (`ls -lR`, `find`, `du`) then descends into
//! it and resolves its subdirectories in turn, each a tree load (an index
//! lookup, a pack read, zstd, BLAKE3, a decode: ~50 µs warm, a disk read or
//! two cold) on the request's critical path. So when a tree is needed for a
//! directory's own entry, the trees of its subdirectories are queued for a
//! background thread at nice 19, which in practice runs on the CPU the walk
//! leaves idle: by the time the walk lists the directory, they are here.
//! The thread goes on down from what it loaded, breadth first, while no
//! request is waiting to be queued: a walk's next directories are below
//! the ones it is in (a directory of 1,000 subdirectories needs all their
//! trees for its first listing, for their link counts), and a cold `ls -lR`
//! of the bench tree then meets almost no tree load (with one level ahead:
//! 35-209 loads, 60-125 ms of its READDIRPLUS time).
//! Read-ahead is best effort and bounded: it stops at [`AHEAD_CAP`] cached
//! trees, a full queue or a failed load drops the work, and the request path
//! loads (and reports errors for) whatever is missing. Going down is paid
//! for by requests: each directory a request resolves grants [`GRANT`]
//! loads below, so a walk keeps the thread ahead of it while an idle guest
//! (a `stat` of its root at mount) loads a few trees, not the whole image
//! (an idle debootstrap guest held 1.7 MiB of decoded trees).
//! The cache's own lock is never taken by the thread (it sends what it
//! loaded back through a channel, which requests drain into the cache).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::digest::TreeId;
use crate::error::Result;
use crate::object::ObjectStore;
use crate::tree::{Content, Kind, Tree};

/// Trees kept; the cache is emptied when it would grow past this.
const CAP: usize = 4096;
/// Read-ahead stops at this cache size, leaving room for demand.
const AHEAD_CAP: usize = CAP * 3 / 4;
/// Tree ids queued for read-ahead at most; more are dropped. The channel's
/// slots are allocated (and written) when it is made, so every daemon holds
/// them: 1,024 (40 KiB) still take a directory of 1,000 subdirectories.
const QUEUE: usize = 1024;
/// Loads below what requests queued, granted per directory a request
/// resolves (a walk resolves every directory, so it never runs short).
const GRANT: usize = 32;

/// What the read-ahead thread shares with requests: lock-free only.
struct Shared {
    /// Set at drop: the thread leaves the rest of its queue.
    stop: AtomicBool,
    /// The cache's size as requests last saw it.
    cached: AtomicUsize,
    /// Loads the thread may still make going down on its own.
    budget: AtomicUsize,
}

struct Cache {
    map: HashMap<TreeId, Arc<Tree>>,
    /// Trees the read-ahead thread loaded, not yet in `map`.
    loaded: Receiver<(TreeId, Arc<Tree>)>,
}

impl Cache {
    fn insert(&mut self, id: TreeId, t: Arc<Tree>) -> Arc<Tree> {
        if self.map.len() >= CAP {
            self.map.clear();
        }
        self.map.entry(id).or_insert(t).clone()
    }

    fn drain(&mut self) {
        while let Ok((id, t)) = self.loaded.try_recv() {
            self.insert(id, t);
        }
    }
}

pub(crate) struct Trees {
    store: Arc<dyn ObjectStore>,
    cache: Mutex<Cache>,
    shared: Arc<Shared>,
    /// The read-ahead queue (`None`: its thread could not start). Dropping
    /// it ends the thread.
    ahead: Option<SyncSender<TreeId>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Trees {
    /// Ends the read-ahead thread and waits for it, so that its share of the
    /// store is released here: a store closed on a thread that outlives its
    /// owner can run RocksDB's destructor while the process exits.
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.ahead = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Trees {
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        let shared = Arc::new(Shared { stop: AtomicBool::new(false), cached: AtomicUsize::new(0), budget: AtomicUsize::new(0) });
        let (tx, rx) = sync_channel::<TreeId>(QUEUE);
        let (back, loaded) = channel();
        let (bg, bstore) = (shared.clone(), store.clone());
        let spawned = std::thread::Builder::new().name("lvrepo-trees".into()).spawn(move || {
            // Nice 19, not SCHED_IDLE: the loads take locks inside the store
            // (RocksDB's block cache, the chunk cache) that requests take
            // too, and a nice-19 holder preempted there still gets a share
            // of a busy CPU to finish, where an idle-policy one could starve.
            // SAFETY: setpriority on the calling thread (who = 0 is this
            // thread on Linux); no memory is passed. Failure only loses the hint.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
            let mut seen = HashSet::new();
            // Subdirectories of what this thread loaded: taken when no id
            // from requests is queued.
            let mut below = VecDeque::new();
            while let Some(id) = next_id(&rx, &mut below, &bg.budget) {
                if bg.stop.load(Relaxed) {
                    break;
                }
                if bg.cached.load(Relaxed) >= AHEAD_CAP || !seen.insert(id) {
                    continue;
                }
                if seen.len() >= CAP {
                    seen.clear();
                }
                match Tree::load(&*bstore, &id) {
                    Ok(t) => {
                        if below.len() < QUEUE {
                            below.extend(subdirs(&t).filter(|s| !seen.contains(s)));
                        }
                        if back.send((id, Arc::new(t))).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::debug!(tree = %id, error = %e, "tree read-ahead failed"),
                }
            }
        });
        let (ahead, thread) = match spawned {
            Ok(t) => (Some(tx), Some(t)),
            Err(e) => {
                tracing::debug!(error = %e, "no tree read-ahead thread");
                (None, None)
            }
        };
        Trees { store, cache: Mutex::new(Cache { map: HashMap::new(), loaded }), shared, ahead, thread }
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.drain();
        self.shared.cached.store(c.map.len(), Relaxed);
        c
    }

    /// Tree `id`, from the cache or loaded now.
    pub(crate) fn get(&self, id: &TreeId) -> Result<Arc<Tree>> {
        if let Some(t) = self.lock().map.get(id) {
            return Ok(t.clone());
        }
        let t = Arc::new(Tree::load(&*self.store, id)?);
        Ok(self.lock().insert(*id, t))
    }

    /// Queue the trees of `t`'s subdirectories that are not cached.
    pub(crate) fn read_ahead(&self, t: &Tree) {
        let Some(tx) = &self.ahead else { return };
        let b = &self.shared.budget;
        let _ = b.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(GRANT).min(AHEAD_CAP)));
        let c = self.lock();
        for id in subdirs(t) {
            if !c.map.contains_key(&id) && tx.try_send(id).is_err() {
                return;
            }
        }
    }
}

/// The read-ahead thread's next tree: one requests queued, else one below
/// what it loaded while `budget` lasts, else it waits for requests (`None`:
/// the cache is gone).
fn next_id(rx: &Receiver<TreeId>, below: &mut VecDeque<TreeId>, budget: &AtomicUsize) -> Option<TreeId> {
    match rx.try_recv() {
        Ok(id) => Some(id),
        Err(TryRecvError::Disconnected) => None,
        Err(TryRecvError::Empty) => {
            if !below.is_empty() && budget.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok() {
                return below.pop_front();
            }
            rx.recv().ok()
        }
    }
}

/// The tree ids of `t`'s subdirectories.
fn subdirs(t: &Tree) -> impl Iterator<Item = TreeId> + '_ {
    t.entries.iter().filter_map(|e| match (e.kind, &e.content) {
        (Kind::Dir, Content::Tree(id)) => Some(*id),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TreeId {
        TreeId::of(&[n])
    }

    /// Going down stops when the budget is spent: the thread then waits for
    /// a request rather than loading the rest of the image (an idle guest).
    #[test]
    fn descent_stops_when_budget_is_spent() {
        let (tx, rx) = sync_channel(QUEUE);
        let budget = AtomicUsize::new(2);
        let mut below: VecDeque<TreeId> = [1, 2, 3].map(id).into();
        tx.send(id(9)).unwrap();
        assert_eq!(next_id(&rx, &mut below, &budget), Some(id(9)), "requests come first");
        assert_eq!(next_id(&rx, &mut below, &budget), Some(id(1)));
        assert_eq!(next_id(&rx, &mut below, &budget), Some(id(2)));
        // Spent: the next id is the request sent meanwhile, not id 3.
        let waiter = std::thread::spawn(move || (next_id(&rx, &mut below, &budget), rx, below, budget));
        tx.send(id(7)).unwrap();
        let (next, rx, mut below, budget) = waiter.join().unwrap();
        assert_eq!(next, Some(id(7)));
        // A grant lets it go on down.
        budget.store(1, Relaxed);
        assert_eq!(next_id(&rx, &mut below, &budget), Some(id(3)));
        drop(tx);
        assert_eq!(next_id(&rx, &mut below, &budget), None, "the cache is gone");
    }
}

//! Read-ahead of image chunks for sequential reads.
//!
//! A cold sequential read of an image file meets one chunk load per 64 KiB
//! on the request path: an index lookup, a pack read, zstd and BLAKE3
//! (about 60 µs of CPU warm, plus the disk cold), one after another on the
//! ring thread that serves the reader. When a read of a file is part of a
//! stream (it continues where reads have reached, allowing for READs taken
//! out of order: `Overlay::read_ahead`), the chunks up to [`WINDOW`] past it
//! are queued for [`THREADS`] background threads at nice 19, which load
//! them into the daemon's chunk cache (the store's [`Cached`](crate::object::Cached)
//! wrapper) on the CPUs the reader leaves idle; the requests then find them
//! there. Two threads, not one: one chunk at a time on one thread kept pace
//! with neither the disk nor the reader (a 1 GiB read from packs in the page
//! cache: 1.16 s with one thread and a 2 MiB window, 0.85 s with two and
//! 8 MiB, three alternated runs each; docs/overlay.md).
//!
//! A file read at random many times ([`RANDOM_READS`], or a sixteenth of its
//! chunks if more) has all its image chunks queued as one job, when they fit
//! in half the chunk cache (one generation): each 4 KiB read of a cold chunk costs a
//! 64 KiB load on the request path (the whole chunk is verified), which the
//! threads do instead, in file order, on the CPU a one-at-a-time reader
//! leaves idle. A thread takes [`SLICE`] chunks of such a job at a time and
//! looks at the queue in between, so streams are not held up behind it.
//!
//! Best effort and bounded, as the tree read-ahead: a full queue drops ids,
//! a failed load is dropped (the request path loads the chunk again and
//! reports the error, naming the chunk), and the chunk cache's budget bounds
//! what is kept. Requests never wait for the thread: a chunk the reader has
//! nearly reached is left to it, so a thread that fell behind skips ahead
//! instead of loading each chunk at the same moment as the reader. (A chunk
//! loaded by both is decoded twice, never served wrong: both verify it.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

use crate::chunker::CHUNK_SIZE;
use crate::digest::{ChunkId, ObjectKind};
use crate::object::ObjectStore;

/// How far past a sequential read's end chunks are loaded ahead.
pub(crate) const WINDOW: u64 = 8 << 20;
/// Threads loading chunks. Each takes the next queued chunk, so the two read
/// neighbouring records of a pack at once.
pub(crate) const THREADS: usize = 2;
/// Chunk ids queued at most; more are dropped.
const QUEUE: usize = 256;
/// A queued chunk that starts less than this past its reader's position is
/// left to the reader.
const SKIP: u64 = 2 * CHUNK_SIZE;

/// Random reads of one file after which its whole image content is loaded
/// ahead (or a sixteenth of its chunks, if more).
pub(crate) const RANDOM_READS: u32 = 64;
/// Chunks of a whole-file job a thread loads before it looks at the queue.
const SLICE: usize = 32;

/// One chunk to load: where it is in its file, and that file's reader.
struct Ahead {
    id: ChunkId,
    offset: u64,
    reader: Arc<AtomicU64>,
}

/// Every chunk of one file, claimed in order by the threads.
struct FileJob {
    extents: Arc<Vec<(u64, u64, ChunkId)>>,
    next: AtomicUsize,
}

enum Job {
    Chunk(Ahead),
    File(Arc<FileJob>),
}

pub(crate) struct Prefetch {
    stop: Arc<AtomicBool>,
    /// `None`: no thread could start. Dropping it ends the threads.
    tx: Option<SyncSender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Prefetch {
    /// Ends the threads and waits for them (see `Trees`' drop: the store
    /// must not be released on a thread that outlives its owner).
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Prefetch {
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for _ in 0..THREADS {
            let (stop, rx, store) = (stop.clone(), rx.clone(), store.clone());
            match std::thread::Builder::new().name("lvrepo-chunks".into()).spawn(move || load_ahead(&*store, &rx, &stop)) {
                Ok(t) => threads.push(t),
                Err(e) => tracing::debug!(error = %e, "no chunk read-ahead thread"),
            }
        }
        let tx = if threads.is_empty() { None } else { Some(tx) };
        Prefetch { stop, tx, threads }
    }

    /// Queue the chunks of `extents` (offset, length, id; sorted) that start
    /// in `[from, to)`, for a reader whose position (the end of its last
    /// read) is `reader`.
    pub(crate) fn want(&self, extents: &[(u64, u64, ChunkId)], from: u64, to: u64, reader: &Arc<AtomicU64>) {
        let Some(tx) = &self.tx else { return };
        let i = extents.partition_point(|e| e.0 < from);
        for &(offset, _, id) in &extents[i..] {
            if offset >= to || tx.try_send(Job::Chunk(Ahead { id, offset, reader: reader.clone() })).is_err() {
                return;
            }
        }
    }

    /// Queue every chunk of a file (its `extents`), for all threads.
    pub(crate) fn want_file(&self, extents: Arc<Vec<(u64, u64, ChunkId)>>) {
        let Some(tx) = &self.tx else { return };
        let job = Arc::new(FileJob { extents, next: AtomicUsize::new(0) });
        for _ in 0..self.threads.len() {
            let _ = tx.try_send(Job::File(job.clone()));
        }
    }
}

/// One read-ahead thread: load queued chunks until the queue closes.
fn load_ahead(store: &dyn ObjectStore, rx: &Mutex<Receiver<Job>>, stop: &AtomicBool) {
    // Nice 19, not SCHED_IDLE, for the reason given in `trees`.
    // SAFETY: setpriority on the calling thread (who = 0 is this thread on
    // Linux); no memory is passed. Failure only loses the hint.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    let load = |id: &ChunkId| {
        // A cached chunk costs a map lookup here.
        if let Err(e) = store.get_shared(ObjectKind::Chunk, &id.0) {
            tracing::debug!(chunk = %id, error = %e, "chunk read-ahead failed");
        }
    };
    let mut files: VecDeque<Arc<FileJob>> = VecDeque::new();
    loop {
        // The lock is held while waiting for the next job. With a file job
        // in hand, only what is queued already is taken, and a lock held by
        // the other thread means it is waiting: nothing is queued.
        let next = if files.is_empty() {
            rx.lock().unwrap_or_else(|e| e.into_inner()).recv().map(Some).map_err(|_| ())
        } else {
            let held = match rx.try_lock() {
                Ok(rx) => Some(rx),
                Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            match held.map(|rx| rx.try_recv()) {
                Some(Ok(j)) => Ok(Some(j)),
                None | Some(Err(TryRecvError::Empty)) => Ok(None),
                Some(Err(TryRecvError::Disconnected)) => Err(()),
            }
        };
        let Ok(job) = next else { return };
        if stop.load(Relaxed) {
            return;
        }
        match job {
            // Behind the reader: it loads this chunk itself, maybe right now.
            // Skipping lets the threads get ahead again, where loading would
            // keep them in step with it, loading every chunk twice.
            Some(Job::Chunk(a)) if a.offset < a.reader.load(Relaxed) + SKIP => {}
            Some(Job::Chunk(a)) => load(&a.id),
            Some(Job::File(f)) => files.push_back(f),
            None => {}
        }
        if let Some(f) = files.front() {
            for _ in 0..SLICE {
                let Some((_, _, id)) = f.extents.get(f.next.fetch_add(1, Relaxed)) else {
                    files.pop_front();
                    break;
                };
                if stop.load(Relaxed) {
                    return;
                }
                load(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::digest::Digest;
    use crate::error::Result;
    use crate::object::{Cached, MemStore};
    use crate::overlay::{Overlay, ROOT_INO};
    use crate::tree::file::ContentBuilder;
    use crate::tree::{store_root, Content, Entry, Kind, Tree};

    /// Counts the reads that reach the store under the chunk cache.
    #[derive(Default)]
    struct Counting {
        inner: MemStore,
        gets: Mutex<HashMap<Digest, u32>>,
    }

    impl ObjectStore for Counting {
        fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
            *self.gets.lock().unwrap().entry(*id).or_default() += 1;
            self.inner.get(kind, id)
        }
        fn contains(&self, id: &Digest) -> Result<bool> {
            self.inner.contains(id)
        }
        fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
            self.inner.put(kind, id, bytes)
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }

    /// Longer than the window, so the test sees where read-ahead stops.
    const CHUNKS: u64 = WINDOW / CHUNK_SIZE + 24;

    /// An overlay over an image of one file `big` of [`CHUNKS`] distinct
    /// 64 KiB chunks, behind a chunk cache that holds them all.
    fn setup(tmp: &std::path::Path) -> (Overlay, u64, Arc<Cached<Arc<Counting>>>, Vec<u8>, Vec<ChunkId>) {
        let counting = Arc::new(Counting::default());
        let cached = Arc::new(Cached::new(counting.clone(), 64 << 20));
        let data: Vec<u8> = (0..CHUNKS * crate::chunker::CHUNK_SIZE).map(|i| (i / 4096 % 251) as u8 ^ (i % 7) as u8).collect();
        let mut b = ContentBuilder::new(&*counting);
        b.push(0, &data).unwrap();
        let content = b.finish(data.len() as u64).unwrap();
        let ids = crate::tree::file::leaf_extents(&*counting, &content, data.len() as u64).unwrap().into_iter().map(|e| e.2).collect();
        let mut f = Entry::new(b"big".to_vec(), Kind::File);
        f.mode = 0o644;
        f.size = data.len() as u64;
        f.content = content;
        let mut root = Entry::new(Vec::new(), Kind::Dir);
        root.content = Content::Tree(Tree { entries: vec![f] }.store(&*counting).unwrap());
        let root = store_root(&*counting, root).unwrap();
        let store: Arc<dyn ObjectStore> = cached.clone();
        let ov = Overlay::open(&tmp.join("ov"), store, root).unwrap();
        let (ino, _) = ov.lookup(ROOT_INO, b"big").unwrap();
        counting.gets.lock().unwrap().clear();
        (ov, ino, cached, data, ids)
    }

    fn loaded(c: &Cached<Arc<Counting>>, ids: &[ChunkId]) -> usize {
        let g = c.inner().gets.lock().unwrap();
        ids.iter().filter(|id| g.contains_key(&id.0)).count()
    }

    /// A sequential reader finds the chunks ahead of it loaded by the
    /// read-ahead thread: each chunk is read from the store once, and the
    /// bytes are the file's.
    #[test]
    fn sequential_reads_find_chunks_loaded_ahead() {
        let tmp = tempfile::tempdir().unwrap();
        let (ov, ino, cached, data, ids) = setup(tmp.path());
        let step = 128 << 10;
        assert_eq!(ov.read(ino, 0, step as u32).unwrap(), data[..step]);
        // The two chunks read, and the window past them (the file is longer)
        // but for the two next to the reader, left to it.
        let want = 2 + ((WINDOW - SKIP) / CHUNK_SIZE) as usize;
        let t = Instant::now();
        while loaded(&cached, &ids) < want && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(loaded(&cached, &ids), want, "chunks loaded after one read");
        for off in (step..data.len()).step_by(step) {
            assert_eq!(ov.read(ino, off as u64, step as u32).unwrap(), data[off..off + step], "bytes at {off}");
        }
        drop(ov);
        // Once each, but for the few chunks the reader and a thread missed
        // at the same moment (a reader that catches up with the threads, as
        // this one reading from memory does near the end; a thread that
        // falls behind skips ahead: it does not keep step with the reader,
        // which would load every chunk twice).
        let g = cached.inner().gets.lock().unwrap();
        assert!(ids.iter().all(|id| g.contains_key(&id.0)));
        let reads: u32 = ids.iter().map(|id| g[&id.0]).sum();
        assert!(reads <= (CHUNKS + CHUNKS / 8) as u32, "{reads} chunk reads for {CHUNKS} chunks: {:?}", ids.iter().map(|id| g[&id.0]).collect::<Vec<_>>());
    }

    /// A file read at random long enough is loaded whole, by the threads.
    #[test]
    fn many_random_reads_load_the_whole_file_ahead() {
        let tmp = tempfile::tempdir().unwrap();
        let (ov, ino, cached, data, ids) = setup(tmp.path());
        let c = crate::chunker::CHUNK_SIZE as usize;
        // Far apart (never a stream; the first not within a stream's reach
        // of the start), a few chunks over and over.
        let spots = [60usize, 110, 30, 80, 130, 50, 100, 20, 70, 120, 40, 90, 140, 10];
        let read = |k: usize| assert_eq!(ov.read(ino, (k * c + 100) as u64, 4096).unwrap(), data[k * c + 100..k * c + 4196]);
        spots.iter().cycle().take(RANDOM_READS as usize - 1).for_each(|&k| read(k));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(loaded(&cached, &ids), spots.len(), "only what was read, before the file counts as read at random");
        read(spots[0]);
        let t = Instant::now();
        while loaded(&cached, &ids) < ids.len() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(loaded(&cached, &ids), ids.len(), "every chunk loaded ahead");
        // And served from the cache: no chunk is read from the store twice
        // but for the few a reader and a thread may miss at the same moment.
        for (i, off) in (0..data.len()).step_by(c).enumerate().rev() {
            assert_eq!(ov.read(ino, off as u64, 4096).unwrap(), data[off..off + 4096], "chunk {i}");
        }
        drop(ov);
        let g = cached.inner().gets.lock().unwrap();
        let reads: u32 = ids.iter().map(|id| g[&id.0]).sum();
        assert!(reads <= (CHUNKS + 16) as u32, "{reads} chunk reads for {CHUNKS} chunks");
    }

    /// The chunk cache lets go first what the kernel's page cache now holds:
    /// every chunk a stream has passed, and a chunk any READ covered whole
    /// (a stream's READs may come out of order); a 4 KiB random read keeps
    /// its chunk.
    #[test]
    fn chunks_read_whole_or_passed_by_a_stream_are_let_go_first() {
        let tmp = tempfile::tempdir().unwrap();
        let (ov, ino, cached, data, ids) = setup(tmp.path());
        let c = crate::chunker::CHUNK_SIZE as usize;
        let holds = |k: usize| cached.holds(&ids[k].0);
        // Random 4 KiB reads (not near each other, not at 0).
        assert_eq!(ov.read(ino, (60 * c + 100) as u64, 4096).unwrap(), data[60 * c + 100..60 * c + 4196]);
        assert_eq!(ov.read(ino, (20 * c) as u64, 4096).unwrap(), data[20 * c..20 * c + 4096]);
        assert_eq!((holds(60), holds(20)), (Some("young"), Some("young")));
        // A random READ of two whole chunks and half a third (past where
        // the stream below will load ahead).
        let (off, n) = (140 * c, 2 * c + c / 2);
        assert_eq!(ov.read(ino, off as u64, n as u32).unwrap(), data[off..off + n]);
        assert_eq!((holds(140), holds(141), holds(142)), (Some("scanned"), Some("scanned"), Some("young")));
        // A stream: the chunk it is inside stays, the ones it passed go.
        for k in 0..3usize {
            assert_eq!(ov.read(ino, (k * c / 2) as u64, (c / 2) as u32).unwrap(), data[k * c / 2..(k + 1) * c / 2]);
        }
        assert_eq!((holds(0), holds(1)), (Some("scanned"), Some("young")));
        // Read again, a chunk let go is promoted back, bytes unchanged.
        assert_eq!(holds(140), Some("scanned"));
        assert_eq!(ov.read(ino, (140 * c) as u64, 4096).unwrap(), data[140 * c..140 * c + 4096]);
        assert_eq!(holds(140), Some("young"));
    }

    /// A stream whose READs arrive out of order (the ring threads may take
    /// the kernel's read-ahead READs in any order) is still a stream: it
    /// counts no random reads, so it never sets off the whole-file job.
    #[test]
    fn a_stream_read_out_of_order_is_no_random_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let (ov, ino, _cached, data, _ids) = setup(tmp.path());
        let step = 512 << 10;
        let passes = 4;
        for _ in 0..passes {
            // Each pair of neighbouring READs swapped.
            for pair in (0..data.len()).step_by(2 * step) {
                for off in [pair + step, pair].into_iter().filter(|&o| o < data.len()) {
                    let n = step.min(data.len() - off);
                    assert_eq!(ov.read(ino, off as u64, n as u32).unwrap(), data[off..off + n], "bytes at {off}");
                }
            }
        }
        let mut st = ov.lock();
        let node = ov.node(&mut st, ino).unwrap();
        // Only each later pass's return to the start is a jump (two READs
        // of it: the first jumps back, the second is behind a new stream).
        assert!(node.random_reads <= 2 * (passes - 1), "{} random reads", node.random_reads);
        assert!(!node.whole_ahead, "the whole file was queued");
    }

    /// Reads far apart queue nothing.
    #[test]
    fn random_reads_load_only_what_they_read() {
        let tmp = tempfile::tempdir().unwrap();
        let (ov, ino, cached, data, ids) = setup(tmp.path());
        let c = crate::chunker::CHUNK_SIZE as usize;
        // Start away from 0 (a read at 0 counts as the start of a stream),
        // each more than a stream's 1.25 MiB reach from the last.
        for k in [40usize, 9, 70, 17] {
            assert_eq!(ov.read(ino, (k * c) as u64, 4096).unwrap(), data[k * c..k * c + 4096]);
        }
        drop(ov);
        assert_eq!(loaded(&cached, &ids), 4);
    }
}

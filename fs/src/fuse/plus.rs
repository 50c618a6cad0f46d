//! Which entries of a READDIRPLUS reply carry their attributes.
//!
//! An entry sent with attributes is linked by the kernel: it builds a dentry
//! and an inode for it, and the daemon resolves it first. In a cold `find`
//! of the bench tree that was most of the time spent in the kernel (about
//! 6 µs per entry on the 2-vCPU bench machine) and half of the daemon's.
//! It pays off only when the reader then looks at the entry (`ls -l`, `du`,
//! `stat`: the attributes save a LOOKUP each) and is wasted on a reader that
//! only walks names (`find`, `ls`, a shell glob). An entry sent without
//! attributes (node id 0) is listed by name, number and type alone; a later
//! stat of it costs a LOOKUP.
//!
//! Directories always carry their attributes: a walk descends into them.
//! For the other entries the daemon follows the reader. After a chunk that
//! left entries bare ("lean"), the LOOKUPs that arrive in that directory
//! before the next chunk is asked for tell whether the reader stats what it
//! lists (readers stat a chunk's entries before they read the next one; a
//! walker reads a whole directory first). If they number at least half the
//! bare entries, chunks carry every entry's attributes ("full") from then
//! on; in full mode one chunk in [`PROBE`] is sent lean to measure again,
//! and each probe that finds the reader still stat-ing doubles the interval
//! up to [`MAX_PROBE`] (a probe costs a LOOKUP per bare entry: in a cold
//! `ls -lR` of the bench tree, probes every 32 chunks cost 3,280 LOOKUPs).
//! Only speed depends on the choice: every chunk lists the same entries with
//! the same numbers and types, and the kernel's lookup counts stay exact
//! (bare entries are not linked, so they count no lookup).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// In full mode, the first probe comes this many chunks after the switch.
pub(crate) const PROBE: u32 = 32;
/// The longest interval between probes: a walker that follows a stat-ing
/// reader is noticed within this many chunks (a full chunk costs a walker
/// about 6 µs per entry, so at most ~35 ms for 256 chunks of 23 entries).
pub(crate) const MAX_PROBE: u32 = 256;

pub(crate) struct Advisor {
    /// The directory of the last lean chunk (0, which no inode has: none),
    /// and the LOOKUPs in it since. Atomics: every LOOKUP checks them.
    dir: AtomicU64,
    hits: AtomicU64,
    st: Mutex<St>,
}

struct St {
    full: bool,
    /// Entries the last lean chunk left bare (0: no evidence pending).
    bare: u64,
    /// Full chunks until the next probe, and the interval it restarts from.
    until_probe: u32,
    interval: u32,
}

impl Advisor {
    /// Starts in full mode: a fresh mount is as likely to be `ls -l`ed as
    /// walked, and the first lean probe decides.
    pub(crate) fn new() -> Self {
        Advisor { dir: AtomicU64::new(0), hits: AtomicU64::new(0), st: Mutex::new(St { full: true, bare: 0, until_probe: PROBE, interval: PROBE }) }
    }

    /// A LOOKUP in directory `parent`.
    pub(crate) fn lookup(&self, parent: u64) {
        if self.dir.load(Relaxed) == parent {
            self.hits.fetch_add(1, Relaxed);
        }
    }

    /// Whether the next chunk (of any directory) carries every entry's
    /// attributes. Judges the last lean chunk by the LOOKUPs that followed it.
    pub(crate) fn full(&self) -> bool {
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        if st.bare > 0 {
            let hits = self.hits.load(Relaxed);
            let full = hits * 2 >= st.bare;
            if full != st.full {
                tracing::debug!(full, bare = st.bare, hits, "readdirplus: attributes for {}", if full { "every entry" } else { "directories only" });
                st.interval = PROBE;
                st.until_probe = PROBE;
            } else if full {
                // A probe confirmed the mode: look again less often.
                st.interval = (st.interval * 2).min(MAX_PROBE);
                st.until_probe = st.interval;
            }
            st.full = full;
            st.bare = 0;
            self.dir.store(0, Relaxed);
        }
        if !st.full {
            return false;
        }
        st.until_probe = st.until_probe.saturating_sub(1);
        st.until_probe != 0
    }

    /// A lean chunk of directory `dir` left `bare` entries without
    /// attributes: count the LOOKUPs in `dir` from now on.
    pub(crate) fn sent_lean(&self, dir: u64, bare: u64) {
        if bare == 0 {
            return;
        }
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        st.bare = bare;
        self.hits.store(0, Relaxed);
        self.dir.store(dir, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lean chunk of 10 bare entries in directory 7, then `stats` LOOKUPs.
    fn lean_then(a: &Advisor, stats: u64) {
        a.sent_lean(7, 10);
        for _ in 0..stats {
            a.lookup(7);
        }
    }

    #[test]
    fn walker_goes_lean_and_stays_lean() {
        let a = Advisor::new();
        // Full until the first probe.
        let first_lean = (0..PROBE).position(|_| !a.full()).expect("a probe within PROBE chunks");
        assert_eq!(first_lean as u32, PROBE - 1);
        lean_then(&a, 0);
        for _ in 0..3 * PROBE {
            assert!(!a.full(), "nobody stats: every chunk lean");
            lean_then(&a, 1);
        }
    }

    #[test]
    fn reader_that_stats_goes_full() {
        let a = Advisor::new();
        while a.full() {}
        lean_then(&a, 5);
        assert!(a.full(), "half the bare entries looked up: full");
        // LOOKUPs elsewhere are no evidence; a chunk with nothing bare leaves the mode.
        a.sent_lean(7, 0);
        a.lookup(8);
        assert!(a.full());
    }

    #[test]
    fn lookups_in_another_directory_do_not_count() {
        let a = Advisor::new();
        while a.full() {}
        a.sent_lean(7, 10);
        for _ in 0..10 {
            a.lookup(8);
        }
        assert!(!a.full());
    }

    #[test]
    fn full_mode_probes_less_often_and_follows_a_walker() {
        let a = Advisor::new();
        while a.full() {}
        lean_then(&a, 10);
        // While stats follow, each probe doubles the interval, up to MAX_PROBE.
        let mut gaps = Vec::new();
        let mut since = 0;
        for _ in 0..4 * MAX_PROBE {
            since += 1;
            if !a.full() {
                gaps.push(since);
                since = 0;
                lean_then(&a, 10);
            }
        }
        assert_eq!(&gaps[..4], &[2 * PROBE, 4 * PROBE, MAX_PROBE, MAX_PROBE]);
        assert!(gaps.iter().all(|&g| g <= MAX_PROBE));
        // A walker: the next probe (within MAX_PROBE chunks) goes lean.
        let n = (0..MAX_PROBE).position(|_| !a.full()).expect("a probe within MAX_PROBE chunks");
        assert!(n < MAX_PROBE as usize);
        lean_then(&a, 0);
        assert!(!a.full(), "a probe nobody stats: lean");
        // Back to full: probes start again at PROBE.
        lean_then(&a, 10);
        let n = (0..MAX_PROBE).position(|_| !a.full()).expect("a probe");
        assert_eq!(n as u32, PROBE - 1);
    }
}

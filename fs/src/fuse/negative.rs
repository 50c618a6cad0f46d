//! Misses the kernel may cache: a root daemon's (docs/boot.md) answer to a
//! lookup of a name that does not exist is a negative entry that lives as
//! long as its positive ones (`ROOT_TTL`), not an uncached ENOENT.
//!
//! Why: systemd-shutdown SIGSTOPs every process, the root's daemon too,
//! while it walks /proc; in its SIGKILL round it asks, for the spared
//! daemon, whether it runs in an initrd (`access("/etc/initrd-release")`).
//! An uncached miss is a LOOKUP sent to the stopped daemon: the shutdown
//! hangs for good. Cached, the kernel answers it.
//!
//! Invariant: every negative entry handed to the kernel is recorded here
//! until the next switch (rollback) invalidates it; names created through
//! the kernel replace their negative dentries there, so only a switch can
//! make a cached miss wrong. Past [`MAX`] recorded misses a miss is
//! answered uncached again (bounded memory, still correct).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Most misses recorded between two switches.
const MAX: usize = 1 << 16;

#[derive(Default)]
pub(crate) struct Negatives {
    on: AtomicBool,
    names: Mutex<HashSet<(u64, Vec<u8>)>>,
}

impl Negatives {
    /// Let the kernel cache misses from now on (a root daemon).
    pub(crate) fn enable(&self) {
        self.on.store(true, Ordering::Release);
    }

    /// Whether the miss of `name` in directory `parent` may be answered as a
    /// cached negative entry; if so it is recorded for the next switch. Call
    /// while holding the overlay's read guard, and reply before releasing it.
    pub(crate) fn record(&self, parent: u64, name: &[u8]) -> bool {
        if !self.on.load(Ordering::Acquire) {
            return false;
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() >= MAX && !names.contains(&(parent, name.to_vec())) {
            return false;
        }
        names.insert((parent, name.to_vec()));
        true
    }

    /// The recorded misses, forgotten here: the kernel's copies must be
    /// invalidated by the caller (a switch changed what exists).
    pub(crate) fn take(&self) -> HashSet<(u64, Vec<u8>)> {
        std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_recorded_only_when_on_and_within_the_bound() {
        let n = Negatives::default();
        assert!(!n.record(1, b"a"), "off: a plain ENOENT");
        n.enable();
        assert!(n.record(1, b"a"));
        for i in 0..MAX as u64 {
            n.record(2, &i.to_le_bytes());
        }
        assert!(!n.record(3, b"x"), "past the bound a miss is not cached");
        assert!(n.record(1, b"a"), "one already recorded stays cacheable");
        let taken = n.take();
        assert_eq!(taken.len(), MAX);
        assert!(taken.contains(&(1, b"a".to_vec())));
        assert!(n.record(3, b"x"), "a switch empties the record");
        assert_eq!(n.take().len(), 1);
    }
}

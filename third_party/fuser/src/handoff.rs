//! Hand-off at commit (lvrepo patch, see PATCHES.md): a ring thread runs as
//! `SCHED_IDLE` while the machine has a CPU to spare, so that when it commits
//! a reply the CPU it runs on counts as idle.
//!
//! Why: the commit wakes the requesting task while the ring thread is still
//! running on the requester's CPU. The scheduler then sees that CPU busy and
//! wakes the requester on another, idle CPU; in a virtual machine whose idle
//! vCPUs halt, that costs a host exit per request, and the next request is
//! queued on the other CPU's ring, so the pair keeps bouncing. A CPU that runs
//! only `SCHED_IDLE` tasks counts as idle when the scheduler places a woken
//! task, and a normal task preempts a `SCHED_IDLE` one at once: the requester
//! stays on its CPU and runs immediately, and the ring thread finishes its
//! `io_uring_enter` when the requester sleeps again.
//!
//! The idle class holds only while the machine has a CPU to spare: when at
//! least as many tasks are runnable as there are CPUs, no CPU would count as
//! idle anyway, and a `SCHED_IDLE` thread woken on a loaded CPU would wait
//! behind the normal tasks there (EEVDF still runs it within about a slice;
//! measured in docs/overlay.md). The check reads the instantaneous run count
//! in `/proc/loadavg`, at most every [`RECHECK`], at commit time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use log::{debug, warn};

/// How long a "the machine has a spare CPU" verdict is trusted.
const RECHECK: Duration = Duration::from_millis(20);

/// Per ring thread.
pub(crate) struct Handoff {
    on: bool,
    cpus: usize,
    /// When `idle` was last decided.
    checked: Option<Instant>,
    /// The thread is SCHED_IDLE now.
    idle: bool,
}

impl Handoff {
    /// `want`: the session asked for hand-off. It is used only where this
    /// thread may also leave `SCHED_IDLE` again (root, or RLIMIT_NICE allows
    /// nice 0), which is tried once per process in a throwaway thread.
    pub(crate) fn new(want: bool) -> Self {
        // SAFETY: sysconf has no memory effects.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        Handoff { on: want && cpus > 1 && reversible(), cpus, checked: None, idle: false }
    }

    /// Call just before the io_uring_enter that commits a reply: the thread
    /// goes idle-class, or back to normal when the machine has no CPU to
    /// spare. Between verdicts the class stays as it is, which saves two
    /// system calls per request (about a quarter of a `chmod`'s round trip).
    pub(crate) fn before_commit(&mut self) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        if self.checked.is_some_and(|t| now.duration_since(t) <= RECHECK) {
            return;
        }
        self.checked = Some(now);
        // The count includes this thread.
        let spare = runnable().is_some_and(|r| r <= self.cpus);
        if spare != self.idle {
            if set_policy(if spare { libc::SCHED_IDLE } else { libc::SCHED_OTHER }) {
                self.idle = spare;
            } else if self.idle {
                // Cannot happen after the trial in `reversible`; should it,
                // the thread stays idle-class: stop making it worse.
                warn!("io_uring hand-off: cannot leave SCHED_IDLE: {}", std::io::Error::last_os_error());
                self.on = false;
            }
        }
    }
}

/// Runnable tasks on the machine now: the fourth field of /proc/loadavg,
/// "running/total".
fn runnable() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let field = s.split_ascii_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

/// Set this thread's policy (priority 0, the only one the two classes have).
fn set_policy(policy: i32) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // that outlives the call.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

/// Whether a thread of this process can go `SCHED_IDLE` and back. Tried once,
/// in a thread of its own, so that a failure strands nothing that matters.
fn reversible() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let ok = std::thread::spawn(|| set_policy(libc::SCHED_IDLE) && set_policy(libc::SCHED_OTHER)).join().unwrap_or(false);
        if !ok {
            debug!("io_uring hand-off off: this process cannot leave SCHED_IDLE");
        }
        ok
    })
}

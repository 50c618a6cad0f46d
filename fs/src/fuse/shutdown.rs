//! The end of a root storage daemon (docs/boot.md): the root filesystem it
//! serves cannot be unmounted while the system runs, so at a termination
//! signal the daemon instead syncs the overlay (the caller) and freezes the
//! overlay's filesystem here. A frozen ext4 has its journal checkpointed and
//! its "needs recovery" flag cleared, so a power-off at any instant after it
//! leaves the filesystem clean for the host. Writes after the freeze wait
//! (the system is stopping).
//!
//! The outcome is published as the name of the calling thread
//! (`lvrepo-clean` or `lvrepo-dirty`), readable by a shutdown script in
//! `/proc/PID/task/*/comm`: nothing is written to the frozen disk, and the
//! daemon needs no /proc of its own (it may be gone after switch_root).

use std::os::fd::AsRawFd;
use std::path::Path;

/// `_IOWR('X', 119, int)`: freeze the filesystem holding the descriptor.
const FIFREEZE: libc::c_ulong = 0xC004_5877;

/// Freeze the filesystem holding `dir` and name this thread after the outcome.
pub fn freeze(dir: &Path) {
    let frozen = match std::fs::File::open(dir) {
        Ok(d) => {
            tracing::info!(path = %dir.display(), "freezing the overlay's filesystem for shutdown");
            // SAFETY: FIFREEZE takes no argument memory; `d` is a descriptor we own.
            if unsafe { libc::ioctl(d.as_raw_fd(), FIFREEZE as _, 0) } == 0 {
                true
            } else {
                tracing::error!(path = %dir.display(), error = %std::io::Error::last_os_error(), "freezing the overlay's filesystem");
                false
            }
        }
        Err(e) => {
            tracing::error!(path = %dir.display(), error = %e, "opening the overlay to freeze it");
            false
        }
    };
    let name: &[u8] = if frozen { b"lvrepo-clean\0" } else { b"lvrepo-dirty\0" };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

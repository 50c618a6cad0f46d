//! The detached mount daemon's log file (OVERLAY/daemon.log: its stdout and
//! stderr) rotated by the daemon itself: before a log line is written, a
//! file past `LVREPO_LOG_ROTATE_BYTES` (default 8 MiB) is renamed to
//! `daemon.log.1` (replacing the previous one) and a new `daemon.log` is put
//! in its place on descriptors 1 and 2. So the log stays under about twice
//! the limit without logrotate, and a line is never split across files.
//!
//! Only when the detaching command named the file (`LVREPO_DAEMON_LOG`) and
//! stderr is that file: a daemon run by hand or under systemd logs as usual.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

/// The log file's path, set by the command that detaches the daemon.
pub const ENV_PATH: &str = "LVREPO_DAEMON_LOG";
/// The size past which the log is rotated, in bytes.
pub const ENV_MAX: &str = "LVREPO_LOG_ROTATE_BYTES";
const DEFAULT_MAX: u64 = 8 << 20;

pub struct Rotating {
    path: PathBuf,
    max: u64,
    // One rotation at a time: threads log concurrently.
    lock: Mutex<()>,
}

impl Rotating {
    /// A rotator when `LVREPO_DAEMON_LOG` names the file stderr is.
    pub fn from_env() -> Option<Rotating> {
        let path = PathBuf::from(std::env::var_os(ENV_PATH)?);
        let max = std::env::var(ENV_MAX).ok().and_then(|v| v.parse::<u64>().ok()).filter(|&m| m > 0).unwrap_or(DEFAULT_MAX);
        let file = nix::sys::stat::stat(&path).ok()?;
        let err = nix::sys::stat::fstat(std::io::stderr().as_raw_fd()).ok()?;
        (file.st_dev == err.st_dev && file.st_ino == err.st_ino).then(|| Rotating { path, max, lock: Mutex::new(()) })
    }

    fn size(&self) -> u64 {
        nix::sys::stat::fstat(std::io::stderr().as_raw_fd()).map_or(0, |st| st.st_size as u64)
    }

    /// Rotate if the file is past the limit. A failure (a full partition)
    /// keeps logging to the current file: the log must not stop the daemon.
    fn maybe_rotate(&self) {
        if self.size() < self.max {
            return;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.size() < self.max {
            return;
        }
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        if std::fs::rename(&self.path, &old).is_err() {
            return;
        }
        let new = std::fs::OpenOptions::new().create(true).append(true).open(&self.path);
        if let Ok(f) = new {
            // SAFETY: dup2 onto the process's own stdout and stderr with a
            // descriptor we hold open; no memory is involved.
            unsafe {
                libc::dup2(f.as_raw_fd(), 1);
                libc::dup2(f.as_raw_fd(), 2);
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Rotating {
    type Writer = std::io::Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.maybe_rotate();
        std::io::stderr()
    }
}

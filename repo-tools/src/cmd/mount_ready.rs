//! The background daemon's readiness pipe: `lvrepo mount` hands the daemon
//! the write end of a pipe (its number in [`ENV`]) and waits for one byte,
//! written once the mount is live (`MountOptions::ready`). Reading the mount
//! table every few milliseconds instead costs the parse of a table that, on
//! a host of 1,000 guests, lists 1,000 mounts, and up to a period's delay.
//! End of file without the byte means the daemon closed it without
//! mounting (it exited, or it is an older binary): the caller then goes
//! back to the mount table and the daemon's exit status.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// The environment variable naming the write end in the daemon.
pub const ENV: &str = "LVREPO_READY_FD";

/// What one wait on the pipe saw.
pub enum Ready {
    /// The byte: the mount is live.
    Mounted,
    /// End of file: every write end is closed.
    Closed,
    /// Nothing yet.
    Waiting,
}

/// A pipe, both ends close-on-exec; the daemon's end is made inheritable in
/// the child only ([`inherit`]).
pub fn pipe() -> Result<(File, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("making the readiness pipe")?;
    Ok((File::from(r), w))
}

/// In the forked child, before exec: keep `fd` open across exec.
pub fn inherit(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor this process holds; async-signal-safe.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Wait up to `timeout` for the byte on `r`.
pub fn wait(r: &mut File, timeout: Duration) -> Result<Ready> {
    let mut p = libc::pollfd { fd: r.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll on one pollfd that lives on this stack frame.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted { Ok(Ready::Waiting) } else { Err(e).context("waiting for the mount daemon") };
    }
    if n == 0 {
        return Ok(Ready::Waiting);
    }
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(0) => Ok(Ready::Closed),
        Ok(_) => Ok(Ready::Mounted),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(Ready::Waiting),
        Err(e) => Err(e).context("reading the readiness pipe"),
    }
}

/// In the daemon: the write end its parent handed over, if any (taken out
/// of the environment, and close-on-exec again).
pub fn take() -> Option<Arc<File>> {
    let fd: RawFd = std::env::var(ENV).ok()?.parse().ok()?;
    std::env::remove_var(ENV);
    // Never one of the standard streams (a stray or hostile value).
    // SAFETY: fcntl on a descriptor number; fails with EBADF if not open.
    if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return None;
    }
    // SAFETY: the parent opened this descriptor for us alone and named it in
    // the environment, removed just above, so nothing else here takes it.
    Some(Arc::new(unsafe { File::from_raw_fd(fd) }))
}

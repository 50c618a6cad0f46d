//! `lvrepo umount MOUNTPOINT`: unmount (exit 6 at once if busy), then wait
//! until the daemon has synced and exited. Without the right to unmount, ask
//! the daemon (SIGTERM): it unmounts itself.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub fn run(mountpoint: &Path) -> Result<()> {
    if !super::mount::is_fuse_mount(mountpoint)? {
        bail!("{} is not an lvrepo mount", mountpoint.display());
    }
    let pid = daemon_pid(mountpoint);
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()).context("mountpoint has a NUL byte")?;
    // Unmount here, so a busy mount is reported at once; the daemon then
    // sees its session end, syncs and exits.
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return pid.map_or(Ok(()), wait_exit);
    }
    let err = std::io::Error::last_os_error();
    match (err.raw_os_error(), pid) {
        (Some(libc::EBUSY), _) => bail!(crate::Exit(crate::exit::BUSY, format!("{} is busy: a process has a file or its working directory there", mountpoint.display()))),
        // Not allowed to unmount: the daemon is (it unmounts on SIGTERM).
        // SAFETY: kill sends a signal to a process id we just read; no memory.
        (Some(libc::EPERM), Some(pid)) if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 => wait_exit(pid),
        _ => Err(err).with_context(|| format!("unmounting {}", mountpoint.display())),
    }
}

/// Wait (up to 60 s) until process `pid` has exited.
pub(super) fn wait_exit(pid: i32) -> Result<()> {
    let start = Instant::now();
    // SAFETY: kill with signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid) {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("daemon {pid} still running 60 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Whether `pid` has exited and only waits to be reaped (a detached
/// daemon's parent is init, which may take its time). Every thread counts:
/// the leader turns zombie first while others may still be finishing an
/// fsync, and their file table keeps the guest's lock until the last one
/// is gone.
fn is_zombie(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.flatten().all(|t| {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { return true };
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
        stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_none_or(|st| st == "Z" || st == "X")
    })
}

/// The daemon serving `mountpoint`, found among processes whose command
/// line names it.
fn daemon_pid(mountpoint: &Path) -> Option<i32> {
    let want = std::fs::canonicalize(mountpoint).ok()?;
    for ent in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(ent.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_mount = args.iter().any(|a| *a == b"mount") && args.iter().any(|a| *a == b"--foreground");
        if is_mount && args.iter().any(|a| std::fs::canonicalize(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(a)).ok().as_deref() == Some(want.as_path())) {
            return Some(pid);
        }
    }
    None
}

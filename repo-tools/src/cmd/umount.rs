//! `lvrepo umount MOUNTPOINT`: ask the daemon serving it to unmount (SIGTERM)
//! and wait until it has synced and exited; without a daemon, unmount directly.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub fn run(mountpoint: &Path) -> Result<()> {
    if !super::mount::is_fuse_mount(mountpoint)? {
        bail!("{} is not an lvrepo mount", mountpoint.display());
    }
    match daemon_pid(mountpoint) {
        // The daemon unmounts itself on SIGTERM, then syncs and exits.
        // SAFETY: kill sends a signal to a process id we just read; no memory.
        Some(pid) if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 => wait_exit(pid),
        _ => {
            let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()).context("mountpoint has a NUL byte")?;
            // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
            if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| format!("unmounting {}", mountpoint.display()));
            }
            Ok(())
        }
    }
}

fn wait_exit(pid: i32) -> Result<()> {
    let start = Instant::now();
    // SAFETY: kill with signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("daemon {pid} still running 60 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
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

//! `lvrepo mount IMAGE --overlay DIR MOUNTPOINT`: serve image + overlay over
//! FUSE. Without --foreground it starts itself again in the background (as a
//! session leader, logging to DIR/daemon.log) and returns once the mount is
//! live, or fails with the daemon's error.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lvrepo_fs::fuse::{block_termination_signals, mount_foreground, MountOptions};
use lvrepo_fs::object::Cached;
use lvrepo_fs::overlay::Overlay;
use lvrepo_fs::ObjectStore;

use crate::cli::Cli;

/// Chunk cache shared by all FUSE threads.
const CACHE_BYTES: usize = 256 << 20;

pub fn run(cli: &Cli, image: &str, overlay: &Path, mountpoint: &Path, foreground: bool, threads: usize) -> Result<()> {
    if !mountpoint.is_dir() {
        bail!("mountpoint {} is not a directory", mountpoint.display());
    }
    if !foreground {
        return spawn_daemon(cli, overlay, mountpoint);
    }
    let sigs = block_termination_signals()?;
    let repo = super::open(cli, false)?;
    let img = super::resolve(&repo, image)?;
    let store: Arc<dyn ObjectStore> = Arc::new(Cached::new(repo.into_store(), CACHE_BYTES));
    let ov = Overlay::open(overlay, store, img.root_tree()).with_context(|| format!("opening overlay {}", overlay.display()))?;
    std::fs::write(overlay.join("daemon.pid"), format!("{}\n", std::process::id())).context("writing daemon.pid")?;
    tracing::info!(image = %img.label(), overlay = %overlay.display(), "serving");
    let r = mount_foreground(Arc::new(ov), mountpoint, &MountOptions { threads }, sigs);
    let _ = std::fs::remove_file(overlay.join("daemon.pid"));
    Ok(r?)
}

fn spawn_daemon(_cli: &Cli, overlay: &Path, mountpoint: &Path) -> Result<()> {
    std::fs::create_dir_all(overlay).with_context(|| format!("creating {}", overlay.display()))?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(overlay.join("daemon.log")).context("opening daemon.log")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.push("--foreground".into());
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(&args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("starting the mount daemon")?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if is_fuse_mount(mountpoint)? {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(overlay.join("daemon.log")).unwrap_or_default();
            let last: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!("mount daemon exited with {status}: {}", last.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("mount did not appear at {} within 60 s", mountpoint.display())
}

/// Whether `mountpoint` is an lvrepo FUSE mount (per /proc/self/mountinfo).
pub fn is_fuse_mount(mountpoint: &Path) -> Result<bool> {
    let mp = std::fs::canonicalize(mountpoint)?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let mut tail = f.iter().skip_while(|x| **x != "-").skip(1);
        let (fstype, source) = (tail.next().copied().unwrap_or(""), tail.next().copied().unwrap_or(""));
        // The kernel shows "fuse" + source "lvrepo", or "fuse.lvrepo" when mounted via mount(8).
        let ours = fstype == "fuse.lvrepo" || (fstype == "fuse" && source == "lvrepo");
        f.get(4).is_some_and(|m| Path::new(&unescape(m)) == mp) && ours
    }))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

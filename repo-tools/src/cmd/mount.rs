//! `lvrepo mount IMAGE --overlay DIR MOUNTPOINT`: serve image + overlay over
//! FUSE. Without --foreground it starts itself again in the background (as a
//! session leader, logging to DIR/daemon.log) and returns once the mount is
//! live, or fails with the daemon's error.
//! With --read-only and no overlay (an image, or `--guest NAME:CHECKPOINT`)
//! it serves through a scratch overlay removed at unmount (mount_scratch.rs).
//! Started as `@lvrepo` (the initrd does), it is a root storage daemon:
//! see docs/boot.md.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lvrepo_fs::fuse::{block_termination_signals, limit_heap, mount_foreground, Live, MountOptions};
use lvrepo_fs::object::Cached;
use lvrepo_fs::overlay::Overlay;
use lvrepo_fs::guest::GuestHandle;
use lvrepo_fs::ObjectStore;

use crate::cli::Cli;

#[allow(clippy::too_many_arguments)]
/// `cache`: the most bytes of the chunk cache all FUSE threads share (`None`:
/// sized to the machine's memory).
/// `file_cache`: the host file cache's directory and budget in bytes.
pub fn run(cli: &Cli, image: Option<&str>, overlay: Option<&Path>, guest: Option<&str>, mountpoint: &Path, foreground: bool, cache: Option<usize>, mut opts: MountOptions, file_cache: Option<(&Path, u64)>) -> Result<()> {
    if !mountpoint.is_dir() {
        bail!("mountpoint {} is not a directory", mountpoint.display());
    }
    let p = super::repo_path(cli)?;
    // `--guest NAME:CHECKPOINT` browses a checkpoint (guest names have no ':').
    let (guest, checkpoint) = match guest.and_then(|g| g.split_once(':')) {
        Some((name, cp)) => (Some(name), Some(cp)),
        None => (guest, None),
    };
    let browse = checkpoint.is_some() || (guest.is_none() && overlay.is_none());
    if browse && !opts.flags.read_only {
        let what = if checkpoint.is_some() { "a checkpoint mounts read-only: add --read-only" } else { "give --overlay DIR (writable), --read-only (browse the image), or --guest NAME" };
        bail!(crate::Exit(crate::exit::USAGE, what.into()));
    }
    if let (Some(name), Some(cp)) = (guest, checkpoint) {
        // Named now (exit 3 if not there); the guest's lock is not taken:
        // it may be mounted read-write meanwhile.
        GuestHandle::open(&p, name, false)?.checkpoint(cp)?;
    }
    let scratch = match (browse, foreground) {
        (false, _) => None,
        (true, false) => Some(super::mount_scratch::Scratch::create()?),
        (true, true) => Some(super::mount_scratch::Scratch::take_or_create()?),
    };
    let state_dir = match (&scratch, guest, overlay) {
        (Some(s), _, _) => s.path().to_path_buf(),
        (None, Some(name), _) => {
            let dir = lvrepo_fs::guest::find(&p, name)?.dir;
            // Busy (mounted, or another command on it): say so now, exit 6.
            drop(lvrepo_fs::guest::lock(&dir, name)?);
            dir
        }
        (None, None, Some(o)) => o.to_path_buf(),
        (None, None, None) => bail!(crate::Exit(crate::exit::USAGE, "give --overlay DIR or --guest NAME".into())),
    };
    // The overlay holds the guest's files (0600 ones too) as plain data
    // files and database logs: root's only, even if it was made otherwise.
    lvrepo_fs::perms::create_private_dir(&state_dir)?;
    if !foreground {
        spawn_daemon(&state_dir, mountpoint, scratch.is_some())?;
        // The daemon owns the scratch overlay now (a failed start dropped it).
        if let Some(s) = scratch {
            s.keep();
        }
        return Ok(());
    }
    let sigs = block_termination_signals()?;
    limit_heap();
    opts.ready = super::mount_ready::take();
    opts.root_daemon = root_daemon_arg0().is_some();
    if let Some((dir, budget)) = file_cache {
        opts.file_cache = Some(Arc::new(lvrepo_fs::filecache::FileCache::open(dir, budget)?));
    }
    let repo = super::open(cli, false)?;
    let cache = Arc::new(Cached::sized_to_memory(repo.shared_store(), cache));
    tracing::info!(budget_mib = cache.budget() >> 20, "chunk cache");
    let shared: Arc<dyn ObjectStore> = cache;
    let live = match (guest, checkpoint) {
        (Some(name), Some(cp)) => {
            let g = GuestHandle::open(&p, name, false)?;
            let c = g.checkpoint(cp)?;
            tracing::info!(guest = name, checkpoint = c.version, "serving a checkpoint read-only");
            opts.source = format!("guest:{name}:{}", c.version);
            Live::new(Arc::new(Overlay::open(&state_dir, g.store(shared.clone()), c.root_tree()).context("opening the scratch overlay")?))
        }
        (Some(name), None) => {
            // The daemon holds the guest's lock while mounted; commands that
            // need the live state ask it over the control socket, one at a time.
            let g = GuestHandle::open(&p, name, true)?;
            super::signed(&repo, &g.rec.image)?;
            let store = g.store(shared.clone());
            let live = Live::new(Arc::new(g.overlay(store.clone()).with_context(|| format!("opening overlay of guest {name}"))?));
            let served = super::mount_control::Served { repo: p.clone(), guest: Arc::new(Mutex::new(g)), live: live.clone(), shared: shared.clone() };
            let host = served.clone();
            crate::control::serve(&state_dir, move |req| host.host(req))?;
            if opts.root_daemon {
                crate::control::serve_root(move |req| served.this_root(req))?;
            }
            tracing::info!(guest = name, "serving guest");
            opts.source = format!("guest:{name}");
            live
        }
        (None, _) => {
            let image = image.ok_or_else(|| crate::Exit(crate::exit::USAGE, "name the image to mount".into()))?;
            let img = super::resolve(&repo, image)?;
            lvrepo_fs::sign::check(&repo, &img)?;
            tracing::info!(image = %img.label(), overlay = %state_dir.display(), "serving");
            opts.source = img.label();
            if opts.root_daemon {
                crate::control::serve_root(super::mount_control::image_root(img.label(), &state_dir))?;
            }
            Live::new(Arc::new(Overlay::open(&state_dir, shared, img.root_tree()).with_context(|| format!("opening overlay {}", state_dir.display()))?))
        }
    };
    std::fs::write(state_dir.join("daemon.pid"), format!("{}\n", std::process::id())).context("writing daemon.pid")?;
    notify_when_mounted(mountpoint, &opts.source);
    let r = mount_foreground(live, mountpoint, &opts, sigs);
    let _ = std::fs::remove_file(state_dir.join("daemon.pid"));
    let _ = std::fs::remove_file(crate::control::socket_path(&state_dir));
    drop(scratch);
    Ok(r?)
}

/// Under systemd (`Type=notify`), send READY=1 once the mount is live: the
/// session mounts inside `mount_foreground`, so a thread watches for the
/// mount to appear (as `spawn_daemon` does for a background daemon).
fn notify_when_mounted(mountpoint: &Path, source: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let (mp, source) = (mountpoint.to_path_buf(), source.to_string());
    let watch = move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if is_fuse_mount(&mp).unwrap_or(false) {
                crate::logging::notify_ready(&format!("serving {source} at {}", mp.display()));
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::warn!(path = %mp.display(), "the mount did not appear within 60 s: no readiness sent");
    };
    if let Err(e) = std::thread::Builder::new().name("sd-notify".into()).spawn(watch) {
        tracing::warn!(error = %e, "no sd_notify thread");
    }
}

/// `scratch`: `overlay` is a browsing mount's scratch overlay, handed to the
/// daemon (which removes it when it exits).
fn spawn_daemon(overlay: &Path, mountpoint: &Path, scratch: bool) -> Result<()> {
    std::fs::create_dir_all(overlay).with_context(|| format!("creating {}", overlay.display()))?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(overlay.join("daemon.log")).context("opening daemon.log")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.push("--foreground".into());
    let mut cmd = Command::new(std::env::current_exe()?);
    if let Some(arg0) = root_daemon_arg0() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
    }
    // A separate open (not a dup): its own offset, from the start.
    let mut log_read = std::fs::File::open(overlay.join("daemon.log")).context("opening daemon.log")?;
    cmd.args(&args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // The daemon rotates its log (logrotate.rs).
    cmd.env(crate::logrotate::ENV_PATH, overlay.join("daemon.log"));
    if scratch {
        cmd.env(super::mount_scratch::ENV, overlay);
    } else {
        cmd.env_remove(super::mount_scratch::ENV);
    }
    let (mut ready, ready_w) = super::mount_ready::pipe()?;
    let w = std::os::fd::AsRawFd::as_raw_fd(&ready_w);
    cmd.env(super::mount_ready::ENV, w.to_string());
    // SAFETY: setsid and fcntl are async-signal-safe and touch no memory of
    // the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from)?;
            super::mount_ready::inherit(w)
        });
    }
    let log_start = std::fs::metadata(overlay.join("daemon.log")).map(|m| m.len()).unwrap_or(0) as usize;
    let mut child = cmd.spawn().context("starting the mount daemon")?;
    // Only the daemon's copy may stay open: its end of file is the news.
    drop(ready_w);
    let mut piped = true;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if piped {
            match super::mount_ready::wait(&mut ready, Duration::from_millis(5))? {
                super::mount_ready::Ready::Mounted => return Ok(()),
                super::mount_ready::Ready::Closed => piped = false,
                super::mount_ready::Ready::Waiting => {}
            }
        } else if is_fuse_mount(mountpoint)? {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            // Only what this daemon wrote: earlier runs' lines are history.
            // Read through the open file: a scratch overlay is gone by now.
            let mut log = Vec::new();
            let _ = std::io::Read::read_to_end(&mut log_read, &mut log);
            let tail = String::from_utf8_lossy(log.get(log_start..).unwrap_or_default()).into_owned();
            let last: Vec<&str> = tail.lines().rev().take(5).collect();
            // The daemon's exit code is the command's (4: damaged index, ...).
            let code = status.code().and_then(|c| u8::try_from(c).ok()).filter(|&c| c != 0).unwrap_or(crate::exit::ERROR);
            let what = format!("mount daemon exited with {status}: {}", last.into_iter().rev().collect::<Vec<_>>().join("\n"));
            return Err(crate::Exit(code, what).into());
        }
        if !piped {
            // Short: a mount takes tens of milliseconds.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    bail!("mount did not appear at {} within 60 s", mountpoint.display())
}

/// argv[0] when it starts with '@': systemd's mark of a root storage daemon
/// (spared by the shutdown killing spree; docs/boot.md), which the initrd
/// gives the daemon of the root filesystem. The background daemon keeps it.
fn root_daemon_arg0() -> Option<std::ffi::OsString> {
    std::env::args_os().next().filter(|a| a.as_encoded_bytes().first() == Some(&b'@'))
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

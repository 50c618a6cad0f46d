//! Mounting: a multi-threaded FUSE session that unmounts cleanly on SIGTERM,
//! SIGINT or SIGHUP, and syncs the overlay before the process exits.

use std::path::Path;
use std::sync::Arc;

use fuser::{Config, MountOption, Session, SessionACL};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

use super::LvFs;
use crate::error::{Error, Result};
use super::Live;

#[derive(Clone, Debug)]
pub struct MountOptions {
    /// FUSE worker threads reading /dev/fuse.
    pub threads: usize,
    /// Serve requests through per-CPU io_uring queues when the kernel offers
    /// it (Linux 6.14+ with `fuse.enable_uring=1`); /dev/fuse otherwise.
    pub uring: bool,
    /// Ring threads reply as SCHED_IDLE while the machine has a CPU to spare,
    /// so the woken requester stays on its CPU (see docs/overlay.md).
    pub handoff: bool,
    /// Serve `security.selinux` like any other xattr. Off by default: the
    /// name is then unsupported (EOPNOTSUPP), as on NFS without
    /// `security_label`, so label-aware tools (`ls -l`) stop asking for it
    /// per file; labels kept in the image or overlay are not touched.
    pub seclabel: bool,
    /// The kernel's per-mount flags (mount(8)'s ro, nosuid, nodev, noexec,
    /// noatime), applied to the mount itself.
    pub flags: MountFlags,
    /// The mount's source as the mount table and `df` show it (the image,
    /// `NAME:VERSION`, or `guest:NAME`); the type is `fuse.lvrepo`.
    pub source: String,
    /// A root storage daemon (started from the initrd; see docs/boot.md): on
    /// a termination signal whose unmount fails (the root is busy until the
    /// power goes), sync the overlay and freeze its filesystem, so it is
    /// clean on disk whenever the machine stops after that.
    pub root_daemon: bool,
    /// Serve read-only opens of unchanged image files by FUSE passthrough
    /// onto this host file cache (when the kernel offers passthrough).
    pub file_cache: Option<std::sync::Arc<crate::filecache::FileCache>>,
    /// Written one byte once the mount is live: `lvrepo mount` waits on
    /// this pipe for its background daemon rather than reading the mount
    /// table every few milliseconds (a table of 1,000 guests' mounts).
    pub ready: Option<std::sync::Arc<std::fs::File>>,
}

/// Per-mount flags the kernel enforces; the defaults are a root filesystem's
/// (rw, suid, dev, exec, atime as relatime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountFlags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub noatime: bool,
}

impl MountFlags {
    /// Apply one mount(8) option; `false` if it is not a flag this knows.
    pub fn apply(&mut self, opt: &str) -> bool {
        match opt {
            "ro" => self.read_only = true,
            "rw" => self.read_only = false,
            "nosuid" => self.nosuid = true,
            "suid" => self.nosuid = false,
            "nodev" => self.nodev = true,
            "dev" => self.nodev = false,
            "noexec" => self.noexec = true,
            "exec" => self.noexec = false,
            "noatime" => self.noatime = true,
            "atime" | "relatime" => self.noatime = false,
            // mount(8)'s shorthands: the flags they imply.
            "user" | "users" => {
                self.nosuid = true;
                self.nodev = true;
                self.noexec = true;
            }
            "defaults" => *self = MountFlags::default(),
            _ => return false,
        }
        true
    }

    fn options(&self) -> [MountOption; 5] {
        [
            if self.read_only { MountOption::RO } else { MountOption::RW },
            if self.nosuid { MountOption::NoSuid } else { MountOption::Suid },
            if self.nodev { MountOption::NoDev } else { MountOption::Dev },
            if self.noexec { MountOption::NoExec } else { MountOption::Exec },
            if self.noatime { MountOption::NoAtime } else { MountOption::Atime },
        ]
    }
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions { threads: std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8), uring: true, handoff: true, seclabel: false, flags: MountFlags::default(), source: "lvrepo".into(), root_daemon: false, file_cache: None, ready: None }
    }
}

/// Raise the open-file limit to the hard limit: the daemon holds a descriptor
/// per open file of the guest, and the soft default (1024) is far too low.
fn raise_fd_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// An idle daemon's heap: glibc gives threads arenas of their own (up to 8
/// per CPU), each keeping freed pages, and returns freed memory to the
/// kernel only above a threshold. Two arenas serve a daemon's few busy
/// threads; the trim after mounting hands back what opening the databases
/// freed (docs/overlay.md, "Idle guests"). Call it first in a daemon, before
/// threads allocate: a thread takes its arena at its first allocation.
pub fn limit_heap() {
    // SAFETY: mallopt only sets allocator parameters; no memory is passed.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

/// Return the free pages of every arena to the kernel.
fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory the allocator owns.
    unsafe { libc::malloc_trim(0) };
}

/// Block SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it
/// starts afterwards. Call it first thing in a daemon, before any library
/// (RocksDB) starts threads: a signal delivered to a thread that does not
/// block it would kill the process without unmounting.
pub fn block_termination_signals() -> Result<SigSet> {
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        sigs.add(s);
    }
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&sigs), None).map_err(|e| Error::io("blocking signals", "/", e.into()))?;
    Ok(sigs)
}

/// Mount the overlay `live` serves at `mountpoint` and serve until unmounted or one of `sigs`
/// (from [`block_termination_signals`]) arrives.
pub fn mount_foreground(live: Arc<Live>, mountpoint: &Path, opts: &MountOptions, sigs: SigSet) -> Result<()> {
    let mut config = Config::default();
    config.mount_options = vec![MountOption::FSName(opts.source.clone()), MountOption::Subtype("lvrepo".into()), MountOption::DefaultPermissions];
    config.mount_options.extend(opts.flags.options());
    config.acl = SessionACL::All;
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    config.uring_handoff = opts.handoff;
    raise_fd_limit();
    let mut session = Session::new(LvFs::new(live.clone(), opts), mountpoint, &config).map_err(|e| Error::io("mounting", mountpoint, e))?;
    live.set_notifier(session.notifier());
    if let Some(mut f) = opts.ready.as_deref() {
        // The waiter may be gone (killed): nothing to tell then.
        let _ = std::io::Write::write_all(&mut f, b"R");
    }
    let mut unmounter = session.unmount_callable();
    let mp = mountpoint.to_path_buf();
    let (root_daemon, live2) = (opts.root_daemon, live.clone());
    std::thread::spawn(move || {
        // A failed unmount (busy: a process uses the mount) is retried at
        // the next signal; the overlay is synced meanwhile.
        while let Ok(sig) = sigs.wait() {
            tracing::info!(?sig, mountpoint = %mp.display(), "unmounting on signal");
            match unmounter.unmount() {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "unmount failed");
                    let ov = live2.current();
                    if let Err(e) = ov.sync_all() {
                        tracing::error!(error = %e, "syncing the overlay");
                    } else if root_daemon {
                        super::shutdown::freeze(ov.dir());
                    }
                }
            }
        }
    });
    let transport = if session.io_uring() { "io_uring" } else { "dev_fuse" };
    tracing::info!(mountpoint = %mountpoint.display(), threads = opts.threads, transport, handoff = opts.handoff, seclabel = opts.seclabel, "mounted");
    trim_heap();
    session.run().map_err(|e| Error::io("serving", mountpoint, e))?;
    live.current().close()?;
    tracing::info!(mountpoint = %mountpoint.display(), "unmounted");
    Ok(())
}

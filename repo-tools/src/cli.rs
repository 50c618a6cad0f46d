//! The command line, declared once: clap parses it, and `lvrepo man` and
//! `lvrepo completions` generate man pages and shell completions from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "lvrepo", version, about = "Golden-image repository: import, publish, inspect and verify images", long_about = None)]
pub struct Cli {
    /// Repository directory.
    #[arg(long, global = true, env = "LVREPO_REPO", value_name = "PATH")]
    pub repo: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); LVREPO_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new, empty repository at --repo.
    Init,
    /// Import a directory, a tar file, or a tar stream on stdin ("-") as an image.
    Import {
        /// A directory, a .tar file, or "-" for a tar stream on stdin.
        source: PathBuf,
        /// NAME or NAME:VERSION (without VERSION: the next version).
        #[arg(long, value_name = "NAME[:VERSION]")]
        image: String,
        /// A message recorded with the image.
        #[arg(short, long, default_value = "")]
        message: String,
        /// The image this one derives from (recorded, not enforced).
        #[arg(long, value_name = "IMAGE")]
        parent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete an image version (NAME:VERSION); gc then reclaims what only it used.
    Delete {
        image: String,
    },
    /// List images.
    Images {
        #[arg(long)]
        json: bool,
    },
    /// List a directory of an image (IMAGE or IMAGE:PATH; IMAGE is NAME or NAME:VERSION).
    Ls {
        #[arg(value_name = "IMAGE[:PATH]")]
        target: std::ffi::OsString,
        /// List recursively.
        #[arg(short = 'R', long)]
        recursive: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write a file of an image to stdout (verified; damaged data is an error).
    Cat {
        #[arg(value_name = "IMAGE:PATH")]
        target: std::ffi::OsString,
    },
    /// Export an image to a directory (absent or empty) or a tar file (*.tar, or "-").
    Export {
        image: String,
        dest: PathBuf,
    },
    /// Show what changed: between two images (IMAGE IMAGE), or what guest NAME
    /// changed against its image, a checkpoint number, or another image.
    Diff {
        /// An image, or a guest name.
        from: String,
        /// An image; for a guest: a checkpoint number or an image (default: its image).
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Guests: instant clones of an image with a private overlay.
    #[command(subcommand)]
    Guest(GuestCmd),
    /// Checkpoint a guest (mounted or not), or prune its checkpoints.
    #[command(args_conflicts_with_subcommands = true)]
    Checkpoint {
        #[command(subcommand)]
        action: Option<CheckpointCmd>,
        /// The guest.
        name: Option<String>,
        #[arg(short, long, default_value = "")]
        message: String,
        #[arg(long)]
        json: bool,
    },
    /// List a guest's checkpoints.
    Log {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Roll a guest back to a checkpoint (number or root id prefix).
    Rollback { name: String, checkpoint: String },
    /// Check every object against its id and name what is damaged.
    Verify {
        /// Also check every guest's STATE and current overlay (records and
        /// data checksums).
        #[arg(long)]
        overlays: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove what no image references.
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// Logical vs stored bytes, dedup ratio, unique bytes per image.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Mount an image with a private writable overlay, or a guest (FUSE):
    /// `mount IMAGE --overlay DIR MOUNTPOINT` or `mount --guest NAME MOUNTPOINT`.
    Mount {
        /// IMAGE MOUNTPOINT, or just MOUNTPOINT with --guest.
        #[arg(value_name = "IMAGE] [MOUNTPOINT", num_args = 1..=2, required = true)]
        operands: Vec<PathBuf>,
        /// The overlay directory on the guest's own partition (created if absent).
        #[arg(long, value_name = "DIR", conflicts_with = "guest")]
        overlay: Option<PathBuf>,
        /// Mount guest NAME (its image and overlay come from the guest).
        #[arg(long, value_name = "NAME")]
        guest: Option<String>,
        /// Serve in the foreground instead of detaching a daemon.
        #[arg(short, long)]
        foreground: bool,
        /// FUSE worker threads. One is fastest on small machines: each extra
        /// thread adds a wake-up per request (measured in docs/overlay.md).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Read requests from /dev/fuse only, even when the kernel offers FUSE
        /// over io_uring (per-CPU queues; needs `fuse.enable_uring=1`, Linux 6.14+).
        #[arg(long)]
        no_uring: bool,
        /// Keep io_uring threads at normal priority while they reply. By
        /// default a thread replies as SCHED_IDLE (when the machine has a CPU to
        /// spare), so the woken requester stays on its CPU (docs/overlay.md).
        #[arg(long)]
        no_handoff: bool,
        /// Serve SELinux labels (the `security.selinux` xattr). Without it the
        /// name is unsupported (EOPNOTSUPP), as on NFS without labels, which
        /// spares `ls -l` a request per file; stored labels are kept either way.
        #[arg(long)]
        seclabel: bool,
        /// Most MiB of decoded image chunks the daemon keeps (default: an
        /// eighth of RAM, between 64 MiB and 2 GiB). It keeps less while
        /// memory is short: never more than a quarter of what is available.
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        cache_mib: Option<u64>,
    },
    /// Unmount an lvrepo mount and wait for its daemon to finish writing.
    Umount { mountpoint: PathBuf },
    /// Write man pages (one per command) into a directory.
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum GuestCmd {
    /// Create a guest from an image, instantly (an empty overlay, no copy).
    Create {
        name: String,
        #[arg(long, value_name = "IMAGE[:VERSION]")]
        image: String,
        /// The guest's directory on its own partition [default: /var/lib/lvrepo/guests/NAME].
        #[arg(long, value_name = "DIR")]
        overlay: Option<PathBuf>,
        /// Personalise: KEY=VALUE (hostname=... writes /etc/hostname; every pair
        /// goes to /etc/lvrepo/guest.conf).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Put a local file into the guest: /PATH/IN/GUEST=LOCALFILE.
        #[arg(long = "file", value_name = "DEST=SRC")]
        file: Vec<String>,
        /// A file of KEY=VALUE lines, as --set.
        #[arg(long, value_name = "FILE")]
        values: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List guests.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one guest.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a guest and its directory (refused while mounted).
    Rm { name: String },
    /// Check a guest's own files (STATE, overlay database and data, store);
    /// exit 4 if anything is damaged. Not while mounted.
    Fsck {
        name: String,
        /// Salvage what is sound and list what was lost.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CheckpointCmd {
    /// Keep the newest N checkpoints of a guest; reclaim what only the others used.
    Prune {
        name: String,
        #[arg(long)]
        keep: usize,
    },
}

//! The command line, declared once: clap parses it, and `lvrepo man` and
//! `lvrepo completions` generate man pages and shell completions from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::cli_fleet::{AuditCmd, GroupCmd, KeyCmd, PolicyCmd};

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
    Init {
        /// A backup target that refuses deletes and overwrites (delete,
        /// forget, gc: exit 77); undone only by hand on the target.
        #[arg(long)]
        append_only: bool,
    },
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
        /// Import a block volume (a disk): a raw file, a block device, "-" for a
        /// raw stream, or a qcow2/vmdk file (converted with `qemu-img convert`).
        /// All-zero blocks are not stored. Serve its guests with `lvrepo nbd serve`.
        #[arg(long)]
        volume: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete an image version (NAME:VERSION); gc then reclaims what only it used.
    /// An image a guest stands on is refused (exit 6) unless --force.
    Delete {
        image: String,
        /// Delete even if guests stand on it (gc still keeps what they use).
        #[arg(long)]
        force: bool,
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
        /// Checkpoint every guest of group NAME (each is reported; exit: the first failure's).
        #[arg(long, value_name = "NAME", conflicts_with = "name")]
        group: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List a guest's checkpoints, or an image's versions and channels.
    Log {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Roll a guest back to a checkpoint (number or root id prefix).
    Rollback {
        /// The guest (with --group: the checkpoint).
        name: String,
        checkpoint: Option<String>,
        /// Roll every guest of group NAME back to its checkpoint CHECKPOINT:
        /// `rollback --group NAME CHECKPOINT`.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// A volume guest served over NBD with clients connected: disconnect them
        /// (otherwise the rollback is refused, exit 6).
        #[arg(long)]
        disconnect: bool,
    },
    /// Check every object of the repository and of every guest's store
    /// against its id and name what is damaged (exit 4).
    Verify {
        /// Also check every guest's STATE and current overlay (records and
        /// data checksums).
        #[arg(long)]
        overlays: bool,
        #[arg(long)]
        json: bool,
        /// Rewrite damaged and missing objects with their bytes from a good
        /// source: a directory tree, a tar file (`-`: stdin) or another
        /// lvrepo repository (a guest's store too). Repeatable: sources are
        /// tried in order for what is still lacking.
        #[arg(long, value_name = "DIR|TAR|REPO")]
        repair_from: Vec<std::path::PathBuf>,
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
        /// Mount flags, as mount(8) takes them: ro, rw, nosuid, suid, nodev,
        /// dev, noexec, exec, noatime, atime, relatime, defaults (comma-separated
        /// or repeated). The kernel enforces them on the mount.
        #[arg(short = 'o', long = "options", value_name = "OPT[,OPT...]", value_delimiter = ',')]
        options: Vec<String>,
        /// Mount read-only (the same as -o ro).
        #[arg(long)]
        read_only: bool,
    },
    /// Unmount an lvrepo mount and wait for its daemon to finish writing.
    Umount { mountpoint: PathBuf },
    /// Block volumes over NBD: serve a volume guest (read-write), or an image or
    /// a checkpoint (read-only); stop a server.
    #[command(subcommand)]
    Nbd(NbdCmd),
    /// Back a guest up to another repository: checkpoint it (mounted or not)
    /// unless --no-checkpoint, then copy its checkpoints and only the objects
    /// the target lacks. Resumable: a rerun sends only what did not land.
    Backup {
        guest: String,
        /// The backup repository (a local path).
        #[arg(long, value_name = "REPO")]
        to: PathBuf,
        /// Back up the existing checkpoints only.
        #[arg(long)]
        no_checkpoint: bool,
        /// Message of the checkpoint taken first.
        #[arg(short, long, default_value = "backup")]
        message: String,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a guest from a backup repository: its checkpoint history, and
    /// its state at a checkpoint (default: the newest).
    Restore {
        guest: String,
        /// The backup repository (a local path).
        #[arg(long, value_name = "REPO")]
        from: PathBuf,
        #[arg(long, value_name = "N")]
        checkpoint: Option<u32>,
        /// Name of the restored guest (default: GUEST).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// The restored guest's directory (absent or empty).
        #[arg(long, value_name = "DIR")]
        overlay: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List the guests' checkpoints a backup repository (--repo) holds.
    Backups {
        guest: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a stream of an image, or of a guest's checkpoints (a registered
    /// guest of that name wins), to stdout or -o FILE (docs/format.md).
    Send {
        /// IMAGE[:VERSION] or GUEST.
        what: String,
        /// Incremental: leave out what this reaches (a guest's checkpoint
        /// number; an image's IMAGE:VERSION or VERSION). The receiver must hold it.
        #[arg(long, value_name = "CHECKPOINT|IMAGE")]
        since: Option<String>,
        /// Write to FILE (complete or absent) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// A JSON report on stdout (with -o only).
        #[arg(long)]
        json: bool,
    },
    /// Apply a stream from FILE or stdin ("-"): images are published, guest
    /// checkpoints recorded as backups; nothing is visible unless all of it verifies.
    Receive {
        #[arg(default_value = "-")]
        input: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Retention on a backup repository (--repo): keep the checkpoints of
    /// GUEST any rule keeps, forget the others, then gc. Refused (exit 77) on
    /// an append-only repository.
    Forget {
        guest: String,
        /// The newest N.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_last: u32,
        /// The newest checkpoint of each of the newest N hours that have one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_hourly: u32,
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_daily: u32,
        /// Weeks start on Monday (UTC).
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_weekly: u32,
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_monthly: u32,
        /// Show what would be forgotten; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write man pages (one per command) into a directory.
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        shell: clap_complete::Shell,
    },
    /// Signing keys (ed25519).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Sign an image version with a secret key (`key generate`).
    Sign {
        #[arg(value_name = "NAME[:VERSION]")]
        image: String,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// The repository's policy: `policy require-signature --key FILE.pub`
    /// (guest create, mount and rebase then refuse images that key did not
    /// sign, exit 77, or whose signature does not match, exit 4); `policy show`.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Groups of guests, for --group on checkpoint, rollback and rebase.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Point a channel (a movable name: web:stable) at an image version:
    /// `tag NAME:VERSION NAME:CHANNEL`. NAME:CHANNEL then works wherever an
    /// image is named; `log NAME` shows the channels and where they pointed.
    Tag {
        #[arg(value_name = "NAME:VERSION")]
        image: String,
        #[arg(value_name = "NAME:CHANNEL")]
        channel: String,
    },
    /// The audit log: every state-changing command, who ran it, on what, and
    /// its result (hash-chained; `audit verify` checks the chain, exit 4).
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        action: Option<AuditCmd>,
        /// Only entries from then on: seconds since the epoch, YYYY-MM-DD[THH:MM[:SS]]
        /// (UTC), or an age (30m, 12h, 7d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Publish a guest's state as a new image: its current state (checkpointed
    /// first, mounted or not) or checkpoint N. Only what the repository lacks
    /// (the guest's own objects) is copied.
    Harvest {
        guest: String,
        #[arg(long, value_name = "N")]
        checkpoint: Option<String>,
        /// NAME or NAME:VERSION (without VERSION: the next version).
        #[arg(long, value_name = "NAME[:VERSION]")]
        image: String,
        #[arg(short, long, default_value = "")]
        message: String,
        #[arg(long)]
        json: bool,
    },
    /// Move an unmounted guest onto another image version keeping its changes
    /// (three-way merge). Paths both changed are listed; without --prefer the
    /// rebase is then refused (exit 7) and nothing changes. Mounted: exit 6.
    Rebase {
        #[arg(required_unless_present = "group", conflicts_with = "group")]
        guest: Option<String>,
        /// Rebase every guest of group NAME: all are planned first, and a
        /// conflict in any (without --prefer) or a mounted one changes none.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// The new image, NAME[:VERSION].
        #[arg(long, value_name = "IMAGE")]
        image: String,
        /// Show what would happen (conflicts included); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Resolve conflicts for the guest's version or the image's.
        #[arg(long, value_name = "guest|image")]
        prefer: Option<String>,
        #[arg(long)]
        json: bool,
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
pub enum NbdCmd {
    /// Serve a volume over NBD (the export name is the guest's or image's name).
    Serve {
        /// The volume guest to serve (read-write unless --read-only or --checkpoint).
        #[arg(long, value_name = "NAME", required_unless_present = "image")]
        guest: Option<String>,
        /// Serve this checkpoint of the guest, read-only.
        #[arg(long, value_name = "N", requires = "guest")]
        checkpoint: Option<String>,
        /// Serve a volume image, read-only.
        #[arg(long, value_name = "NAME[:VERSION]", conflicts_with = "guest")]
        image: Option<String>,
        /// Listen on a Unix socket.
        #[arg(long, value_name = "PATH", required_unless_present = "listen", conflicts_with = "listen")]
        socket: Option<PathBuf>,
        /// Listen on a TCP address (HOST:PORT).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
        /// Serve read-only.
        #[arg(long)]
        read_only: bool,
        /// Serve in the foreground instead of detaching a daemon.
        #[arg(short, long)]
        foreground: bool,
    },
    /// Stop the server of a guest (clients get ESHUTDOWN, writes are flushed).
    Stop {
        #[arg(long, value_name = "NAME")]
        guest: String,
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

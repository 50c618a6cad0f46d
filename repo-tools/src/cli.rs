//! The command line, declared once: clap parses it, and `lvrepo man` and
//! `lvrepo completions` generate man pages and shell completions from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::cli_fleet::{AuditCmd, GroupCmd, KeyCmd, PolicyCmd};
pub use crate::cli_guest::{CheckpointCmd, GuestCmd, NbdCmd};

#[derive(Parser, Debug)]
#[command(name = "lvrepo", version, about = "Golden-image repository: import, publish, inspect and verify images", long_about = None)]
pub struct Cli {
    /// Repository directory, or a remote repository: s3://BUCKET[/PREFIX]
    /// (configured by AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) or
    /// file:///DIR (docs/remote.md).
    #[arg(long, global = true, env = "LVREPO_REPO", value_name = "PATH")]
    pub repo: Option<PathBuf>,
    /// This host's cache directory of the remote repository (default
    /// /var/cache/lvrepo/BUCKET[_PREFIX]).
    #[arg(long, global = true, env = "LVREPO_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
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
        /// Leave out what matches PATTERN (repeatable): a name (`*.log`,
        /// `cache`) at any depth, or a path from the source's root when it
        /// has a `/` (`/var/cache`, `usr/**/*.pyc`); `*`, `?`, `[a-z]`, `**`
        /// (also across `/`), `\` escapes. An excluded directory goes whole.
        #[arg(long, value_name = "PATTERN")]
        exclude: Vec<std::ffi::OsString>,
        /// Do not descend into directories on other filesystems than the
        /// source directory's (mount points are kept, empty).
        #[arg(long, short = 'x')]
        one_file_system: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete an image version (NAME:VERSION); gc then reclaims what only it used.
    /// An image a guest stands on is refused (exit 6) unless --force.
    Delete {
        /// The image version to delete, NAME:VERSION.
        #[arg(value_name = "NAME:VERSION")]
        image: String,
        /// Delete even if guests stand on it (gc still keeps what they use).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// List images: every version, or the versions of image NAME.
    Images {
        /// Only the versions of this image.
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List a directory of an image (IMAGE or IMAGE:PATH; IMAGE is NAME or NAME:VERSION).
    Ls {
        /// The directory: IMAGE[:VERSION][:PATH] (default /).
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
        /// The file: IMAGE[:VERSION]:PATH.
        #[arg(value_name = "IMAGE:PATH")]
        target: std::ffi::OsString,
    },
    /// Fill the host file cache with an image's files (all, or those below
    /// each PATH) ahead of the guests that read them (see mount --file-cache).
    Prefetch {
        /// The image, NAME[:VERSION].
        image: String,
        /// Paths in the image (directories are taken whole); default: all.
        #[arg(value_name = "PATH")]
        paths: Vec<std::ffi::OsString>,
        /// The host file cache directory.
        #[arg(long, value_name = "DIR", env = "LVREPO_FILE_CACHE", default_value = lvrepo_fs::filecache::DEFAULT_DIR)]
        file_cache: PathBuf,
        /// Most MiB the host file cache holds.
        #[arg(long, value_name = "MIB", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
        file_cache_mib: u64,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export an image, or the directory PATH of it, to a directory (absent
    /// or empty), a tar file (*.tar, *.tar.zst), or "-" (tar on stdout).
    Export {
        /// IMAGE[:VERSION][:PATH] (PATH: a directory of the image; default /),
        /// or a volume guest.
        #[arg(value_name = "IMAGE[:PATH]")]
        image: std::ffi::OsString,
        /// A directory (absent or empty), FILE.tar, FILE.tar.zst, or "-".
        dest: PathBuf,
    },
    /// Show what changed: between two images (IMAGE IMAGE), or what guest NAME
    /// changed against its image, a checkpoint number, or another image.
    Diff {
        /// An image, or a guest name. Inside a guest booted with its root on
        /// lvrepo (no repository given): what to compare this root against.
        from: Option<String>,
        /// An image; for a guest: a checkpoint number, another guest (its
        /// current state) or an image (default: its image).
        to: Option<String>,
        /// Only counts: paths added, removed, changed in content, in metadata
        /// (volumes: changed ranges and bytes).
        #[arg(long)]
        stat: bool,
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
        /// A message recorded with the checkpoint.
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
        /// The guest or image (inside a guest booted with its root on lvrepo: this root).
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Roll a guest back to a checkpoint (its number, or a prefix of its root
    /// id starting with `b3:`).
    Rollback {
        /// The guest (inside a guest booted with its root on lvrepo, with no
        /// repository given, it may be left out: this root; with --group:
        /// the checkpoint).
        name: String,
        /// A checkpoint number (`lvrepo log GUEST`), or `b3:` and a prefix of its root id.
        checkpoint: Option<String>,
        /// Roll every guest of group NAME back to its checkpoint CHECKPOINT:
        /// `rollback --group NAME CHECKPOINT`.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        #[arg(long)]
        json: bool,
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
    /// Remove what no image, guest or checkpoint references.
    Gc {
        /// Report what would be removed; remove nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// A remote repository: sweep only packs marked unreachable by a gc
        /// at least this long ago (30s, 10m, 1h, 2d; docs/remote.md).
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        grace: String,
        #[arg(long)]
        json: bool,
    },
    /// Logical vs stored bytes, dedup ratio, unique bytes per image.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Mount an image with a private writable overlay, or a guest (FUSE); or
    /// browse an image or a guest's checkpoint read-only, keeping nothing and
    /// taking no lock (--read-only without --overlay, --guest NAME:CHECKPOINT).
    #[command(override_usage = "lvrepo mount [OPTIONS] IMAGE --overlay DIR MOUNTPOINT\n       lvrepo mount [OPTIONS] --guest NAME MOUNTPOINT\n       lvrepo mount [OPTIONS] IMAGE --read-only MOUNTPOINT\n       lvrepo mount [OPTIONS] --guest NAME:CHECKPOINT --read-only MOUNTPOINT")]
    Mount {
        /// IMAGE MOUNTPOINT, or just MOUNTPOINT with --guest.
        #[arg(value_name = "IMAGE|MOUNTPOINT", num_args = 1..=2, required = true)]
        operands: Vec<PathBuf>,
        /// The overlay directory on the guest's own partition (created if absent).
        #[arg(long, value_name = "DIR", conflicts_with = "guest")]
        overlay: Option<PathBuf>,
        /// Mount guest NAME (its image and overlay come from the guest), or
        /// browse its checkpoint NAME:CHECKPOINT (number or `b3:` id prefix;
        /// with --read-only, while the guest itself may be mounted).
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
        /// Mount read-only (the same as -o ro). Without --overlay or with a
        /// checkpoint, a scratch overlay under $TMPDIR is used and removed at
        /// unmount.
        #[arg(long)]
        read_only: bool,
        /// The host file cache: unchanged image files, decompressed and
        /// verified, shared by every guest on the host. Read-only opens of
        /// them are FUSE passthrough onto it: native reads, one page-cache
        /// copy per host (docs/overlay.md). Usually /var/cache/lvrepo/files.
        #[arg(long, value_name = "DIR", env = "LVREPO_FILE_CACHE")]
        file_cache: Option<PathBuf>,
        /// Most MiB the host file cache holds; least recently used files
        /// are removed past it.
        #[arg(long, value_name = "MIB", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
        file_cache_mib: u64,
    },
    /// Unmount an lvrepo mount and wait for its daemon to finish writing.
    Umount {
        /// Where the image or guest is mounted.
        mountpoint: PathBuf,
    },
    /// Block volumes over NBD: serve a volume guest (read-write), or an image or
    /// a checkpoint (read-only); stop a server.
    #[command(subcommand)]
    Nbd(NbdCmd),
    /// Back a guest up to another repository: checkpoint it (mounted or not)
    /// unless --no-checkpoint, then copy its checkpoints and only the objects
    /// the target lacks. Resumable: a rerun sends only what did not land.
    Backup {
        /// The guest to back up.
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
        /// The guest, as the backup repository names it.
        guest: String,
        /// The backup repository (a local path).
        #[arg(long, value_name = "REPO")]
        from: PathBuf,
        /// The checkpoint to restore the state of (default: the newest).
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
        /// Only this guest's checkpoints.
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
        /// The stream: a file, or "-" for stdin.
        #[arg(default_value = "-")]
        input: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Retention on a backup repository (--repo): keep the checkpoints of
    /// GUEST any rule keeps, forget the others, then gc. Refused (exit 77) on
    /// an append-only repository.
    Forget {
        /// The guest whose backed-up checkpoints to thin out.
        guest: String,
        /// The newest N.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_last: u32,
        /// The newest checkpoint of each of the newest N hours that have one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_hourly: u32,
        /// The newest checkpoint of each of the newest N days (UTC) that have one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_daily: u32,
        /// Weeks start on Monday (UTC).
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_weekly: u32,
        /// The newest checkpoint of each of the newest N months (UTC) that have one.
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
        /// The directory to write the pages to (created if absent).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The names completion scripts offer (hidden; cmd/complete.rs).
    #[command(name = "__complete", hide = true)]
    Complete {
        /// images, guests, or args (then WORDS: the words typed so far).
        what: String,
        /// The words typed after `lvrepo`, before the one being completed.
        #[arg(last = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Signing keys (ed25519).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Sign an image version with a secret key (`key generate`).
    Sign {
        /// The image version to sign.
        #[arg(value_name = "NAME[:VERSION]")]
        image: String,
        /// The secret key (`key generate`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long)]
        json: bool,
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
        /// The version the channel names from now on.
        #[arg(value_name = "NAME:VERSION")]
        image: String,
        /// The channel: NAME and a word that is not all digits (web:stable).
        #[arg(value_name = "NAME:CHANNEL")]
        channel: String,
        #[arg(long)]
        json: bool,
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
        /// The guest whose state becomes the image.
        guest: String,
        /// Publish checkpoint N instead of the current state.
        #[arg(long, value_name = "N")]
        checkpoint: Option<String>,
        /// NAME or NAME:VERSION (without VERSION: the next version).
        #[arg(long, value_name = "NAME[:VERSION]")]
        image: String,
        /// The new version's message.
        #[arg(short, long, default_value = "")]
        message: String,
        #[arg(long)]
        json: bool,
    },
    /// The local service (run by root, usually by systemd: lvrepo.socket):
    /// unprivileged users' lvrepo commands come here over a Unix socket and
    /// run as root when the roles file gives the caller the role they need
    /// (refused: exit 77). docs/operations.md#roles.
    Serve {
        /// The socket to listen on (unless systemd passes one).
        #[arg(long, value_name = "PATH", default_value = crate::service::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// The roles file: `GROUP ROLE [ROLE...]` lines [default: $LVREPO_ROLES, else /etc/lvrepo/roles].
        #[arg(long, value_name = "FILE")]
        roles: Option<PathBuf>,
    },
    /// Move an unmounted guest onto another image version keeping its changes
    /// (three-way merge). Paths both changed are listed; without --prefer the
    /// rebase is then refused (exit 7) and nothing changes. Mounted: exit 6.
    Rebase {
        /// The guest to move (unmounted).
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
        /// A group's guests rebased (and planned) at once: each works in its
        /// own overlay, and most of a rebase waits on the disk's flushes.
        #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        #[arg(long)]
        json: bool,
    },
    /// Copy chosen paths' state (file, directory subtree, symlink, deletion)
    /// from a guest to other unmounted guests, three-way as rebase: a target
    /// whose own version differs from both the source's image's and the
    /// source's is a conflict; without --prefer every conflict is listed
    /// (`GUEST PATH`), nothing changes on any target, exit 7. Mounted: exit 6.
    Propagate {
        /// The source: GUEST (its current state; a mounted one is
        /// checkpointed first) or GUEST:CHECKPOINT.
        #[arg(long, value_name = "GUEST[:CHECKPOINT]")]
        from: String,
        /// The paths to copy (absolute, in the guest); a directory copies its subtree.
        #[arg(long, value_name = "P", num_args = 1.., required = true)]
        path: Vec<std::ffi::OsString>,
        /// The target guests (unmounted).
        #[arg(long, value_name = "GUEST", num_args = 1.., required_unless_present = "group", conflicts_with = "group")]
        to: Vec<String>,
        /// Every guest of group NAME (the source excluded) is a target.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// Show what would happen (conflicts included); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Resolve conflicts for the target's version or the source's.
        #[arg(long, value_name = "guest|source")]
        prefer: Option<String>,
        #[arg(long)]
        json: bool,
    },
}


/// The command tree as users meet it: [`Cli`]'s, with every command's
/// Examples (`examples.rs`) after its options and a description of each
/// `--json` flag.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    decorate(Cli::command(), "")
}

/// Decorate `c` (at `path` below `lvrepo`) and its subcommands; the tree's
/// depth is the CLI's own (three levels), not input.
fn decorate(mut c: clap::Command, path: &str) -> clap::Command {
    if let Some(ex) = crate::examples::examples(path) {
        let lines: String = ex.lines().map(|l| format!("  {l}\n")).collect();
        c = c.after_help(format!("Examples:\n{lines}"));
    }
    if c.get_arguments().any(|a| a.get_id() == "json" && a.get_help().is_none()) {
        c = c.mut_arg("json", |a| a.help("Print the result as one JSON document on stdout (schema lvrepo/1: docs/json.md)"));
    }
    let subs: Vec<String> = c.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in subs {
        let sub_path = if path.is_empty() { name.clone() } else { format!("{path} {name}") };
        c = c.mut_subcommand(name, |s| decorate(s, &sub_path));
    }
    c
}

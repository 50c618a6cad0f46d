//! The subcommands of guests, checkpoints and NBD (`guest`, `checkpoint`,
//! `nbd`), kept beside `cli.rs` so that file stays one screen of commands.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum GuestCmd {
    /// Create a guest from an image, instantly (an empty overlay, no copy).
    Create {
        /// The new guest's name: letters, digits, '.', '_', '-', starting with
        /// a letter or digit, not a command's name.
        name: String,
        /// The image it starts from (without VERSION: the latest).
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
        /// The user it belongs to (a name or uid): they may checkpoint,
        /// diff and log it through the service in the `user` role
        /// [default: the caller, through the service; else nobody].
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
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
        /// The guest.
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a guest and its directory (refused while mounted).
    Rm {
        /// The guest.
        name: String,
    },
    /// Rename a guest (refused while mounted, exit 6). Its directory stays
    /// where it is; backups made under the old name keep it.
    Rename {
        /// The guest's name now.
        old: String,
        /// Its new name.
        new: String,
    },
    /// A new guest whose state is a checkpoint of another (an empty overlay
    /// over it; the source's own objects are copied into the new guest's
    /// store, the image's stay shared). Without :CHECKPOINT, the source is
    /// checkpointed first (mounted or not) and that checkpoint is cloned.
    Clone {
        /// The source guest, and a checkpoint number.
        #[arg(value_name = "GUEST[:CHECKPOINT]")]
        source: String,
        /// The new guest's name.
        name: String,
        /// The new guest's directory [default: /var/lib/lvrepo/guests/NAME].
        #[arg(long, value_name = "DIR")]
        overlay: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check a guest's own files (STATE, overlay database and data, store);
    /// exit 4 if anything is damaged. Not while mounted.
    Fsck {
        /// The guest (not mounted).
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
        /// The guest whose server to stop.
        #[arg(long, value_name = "NAME")]
        guest: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CheckpointCmd {
    /// Keep the newest N checkpoints of a guest; reclaim what only the others used.
    Prune {
        /// The guest (not mounted).
        name: String,
        /// How many of the newest checkpoints to keep (0: none).
        #[arg(long, value_name = "N")]
        keep: usize,
        #[arg(long)]
        json: bool,
    },
    /// Delete one checkpoint of a guest (not mounted) and reclaim what only
    /// it used. The newest is refused (exit 6); one the guest was rolled back
    /// to may go: its tree stays as long as the guest's state sits on it.
    Delete {
        /// The guest.
        name: String,
        /// The checkpoint number.
        #[arg(value_name = "N")]
        checkpoint: String,
        #[arg(long)]
        json: bool,
    },
}

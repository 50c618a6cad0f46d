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
    /// Show what changed between two images.
    Diff {
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Check every object against its id and name what is damaged.
    Verify {
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
    /// Mount an image with a private writable overlay (FUSE).
    Mount {
        /// NAME or NAME:VERSION.
        image: String,
        /// The overlay directory on the guest's own partition (created if absent).
        #[arg(long, value_name = "DIR")]
        overlay: PathBuf,
        mountpoint: PathBuf,
        /// Serve in the foreground instead of detaching a daemon.
        #[arg(short, long)]
        foreground: bool,
        /// FUSE worker threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
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

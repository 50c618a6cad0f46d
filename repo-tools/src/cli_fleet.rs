//! The subcommands of fleet operations (`audit`, `group`, `key`, `policy`),
//! kept beside `cli.rs` so that file stays one screen of commands.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the chain: exit 4 naming the first entry removed, edited or unreadable.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create a group, with these guests as its members.
    Create {
        /// The group's name.
        name: String,
        /// Its first members.
        guests: Vec<String>,
    },
    /// Add guests to a group.
    Add {
        /// The group.
        name: String,
        /// The guests to add.
        #[arg(required = true)]
        guests: Vec<String>,
    },
    /// Remove guests from a group; without guests, remove the group.
    Rm {
        /// The group.
        name: String,
        /// The guests to remove (none: the group itself).
        guests: Vec<String>,
    },
    /// List groups.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a group's members.
    Show {
        /// The group.
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Write a new key pair: FILE (secret, 0600) and FILE.pub.
    Generate {
        /// The secret key's file (the public key goes to FILE.pub).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Require a signature by this public key on every image guests use.
    RequireSignature {
        /// The public key (`key generate` wrote it).
        #[arg(long, value_name = "FILE.pub")]
        key: PathBuf,
    },
    /// Show the policy.
    Show {
        #[arg(long)]
        json: bool,
    },
}

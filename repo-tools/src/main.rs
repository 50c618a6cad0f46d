//! `lvrepo`: import, publish, inspect, verify and collect golden images.
//!
//! Exit codes (docs/operations.md): 0 success, 1 error, 2 usage, 3 not found,
//! 4 damaged data found, 5 already exists, 6 busy (another writer or in
//! use), 7 conflict, 77 not permitted.

mod audit;
mod cli;
mod cli_fleet;
mod cli_guest;
mod control;
mod cmd;
mod examples;
mod json;
mod logging;
mod logrotate;
mod mount_helper;
mod output;
mod progress;
mod roles;
mod service;

use std::process::ExitCode;

use clap::FromArgMatches;
use lvrepo_fs::ErrorClass;

pub use cli::{Cli, Command};

/// Exit codes, stable for scripts.
pub mod exit {
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const DAMAGED: u8 = 4;
    pub const EXISTS: u8 = 5;
    pub const BUSY: u8 = 6;
    pub const CONFLICT: u8 = 7;
    pub const NOT_PERMITTED: u8 = 77;
}

/// An error that carries its own exit code (e.g. verify found damage).
#[derive(Debug)]
pub struct Exit(pub u8, pub String);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for Exit {}

fn main() -> ExitCode {
    // Everything lvrepo creates (packs, databases, overlay data, logs) is
    // owner-only, whatever the caller's umask (docs/threat-model.md).
    lvrepo_fs::perms::private_umask();
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name().is_some_and(|n| n.to_string_lossy().starts_with("mount.")) {
        return mount_helper::main();
    }
    let cli = Cli::from_arg_matches(&cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    // Not root, and the service is there: it runs the command, in a role.
    if let Some(code) = service::forward(&cli) {
        return ExitCode::from(code);
    }
    if !is_daemon(&cli.command) {
        // `lvrepo ls -R | head`: a closed pipe ends the command quietly, as
        // it does every Unix tool (Rust ignores SIGPIPE, so each write would
        // fail and print). Daemons keep ignoring it: a client that goes away
        // mid-reply must not take a mount or an NBD server down.
        // SAFETY: restoring the default disposition of one signal.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if let Err(e) = logging::init(cli.verbose, cli.quiet) {
        eprintln!("lvrepo: {e}");
        return ExitCode::from(exit::USAGE);
    }
    let start = std::time::Instant::now();
    tracing::debug!(version = env!("CARGO_PKG_VERSION"), args = ?std::env::args_os().skip(1).collect::<Vec<_>>(), "lvrepo starting");
    let outcome = cmd::run(&cli);
    // "remote: fetched N bytes in M requests" (nothing for a local repository).
    lvrepo_fs::remote::report();
    tracing::debug!(ms = start.elapsed().as_millis() as u64, ok = outcome.is_ok(), "lvrepo finished");
    if !is_daemon(&cli.command) {
        audit::record(&cli, &outcome);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            if !(code == exit::DAMAGED && err.downcast_ref::<Exit>().is_some()) || !cli.quiet {
                eprintln!("lvrepo: {}", chain(&err));
            }
            ExitCode::from(code)
        }
    }
}

/// The commands that serve (a mount or NBD daemon in the foreground).
fn is_daemon(c: &Command) -> bool {
    matches!(c, Command::Mount { foreground: true, .. } | Command::Nbd(cli::NbdCmd::Serve { foreground: true, .. }) | Command::Serve { .. })
}

fn chain(err: &anyhow::Error) -> String {
    let mut s = err.to_string();
    for cause in err.chain().skip(1) {
        s.push_str(": ");
        s.push_str(&cause.to_string());
    }
    s
}

pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(e) = err.downcast_ref::<Exit>() {
        return e.0;
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<lvrepo_fs::Error>() {
            return match e.class() {
                ErrorClass::NotFound => exit::NOT_FOUND,
                ErrorClass::Damaged => exit::DAMAGED,
                ErrorClass::Exists => exit::EXISTS,
                ErrorClass::Busy => exit::BUSY,
                ErrorClass::Usage => exit::USAGE,
                ErrorClass::NotPermitted => exit::NOT_PERMITTED,
                ErrorClass::Conflict => exit::CONFLICT,
                ErrorClass::Other => continue,
            };
        }
    }
    exit::ERROR
}

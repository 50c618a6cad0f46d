//! `lvrepo rollback NAME CHECKPOINT`: the guest's state becomes exactly the
//! checkpoint's (a new overlay generation over the checkpoint tree; the switch
//! is one atomic rename). Refused while the guest is mounted.

use anyhow::{bail, Result};
use lvrepo_fs::guest::{self, GuestHandle};

use crate::cli::Cli;

pub fn run(cli: &Cli, name: &str, checkpoint: &str) -> Result<()> {
    let p = super::repo_path(cli)?;
    let rec = guest::find(&p, name)?;
    if std::os::unix::net::UnixStream::connect(crate::control::socket_path(&rec.dir)).is_ok() {
        bail!(crate::Exit(crate::exit::BUSY, format!("guest {name} is mounted; unmount it, roll back, mount again")));
    }
    let repo = super::open(cli, false)?;
    let mut g = GuestHandle::open(&p, name, true)?;
    let cp = g.checkpoint(checkpoint)?;
    g.rollback_offline(super::shared(&repo), &cp)?;
    if !cli.quiet {
        eprintln!("guest {name} rolled back to checkpoint {} ({})", cp.version, cp.root.0);
    }
    Ok(())
}

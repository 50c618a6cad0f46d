//! `lvrepo log NAME`: a guest's checkpoints, oldest first.

use anyhow::Result;
use lvrepo_fs::guest::GuestHandle;

use crate::cli::Cli;
use crate::output::{print_json, utc};

pub fn run(cli: &Cli, name: &str, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let g = GuestHandle::open(&p, name, false)?;
    let cps = g.checkpoints()?;
    if json {
        return print_json(&cps);
    }
    for c in cps {
        let current = if c.root_tree() == g.state.base { " (current base)" } else { "" };
        println!("{:>4}  {}  {}  {}{current}", c.version, utc(c.created), c.root.0, c.message);
    }
    Ok(())
}

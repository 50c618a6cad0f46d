//! `lvrepo log NAME`: a guest's checkpoints, oldest first. Inside a guest
//! booted with its root on lvrepo, `lvrepo log` asks the root's daemon.

use anyhow::{bail, Result};
use lvrepo_fs::guest::{Checkpoint, GuestHandle};
use lvrepo_fs::TreeId;

use crate::cli::Cli;
use crate::control::{self, RootRequest};
use crate::output::{print_json, utc};

pub fn run(cli: &Cli, name: Option<&str>, json: bool) -> Result<()> {
    if control::this_root(cli) {
        control::root_guest(name)?;
        let mut v = control::call_root(&RootRequest::Log)?;
        return print(serde_json::from_value(v["checkpoints"].take())?, serde_json::from_value(v["base"].take())?, json);
    }
    let Some(name) = name else { bail!(crate::Exit(crate::exit::USAGE, "name the guest".into())) };
    let p = super::repo_path(cli)?;
    let g = GuestHandle::open(&p, name, false)?;
    print(g.checkpoints()?, g.state.base, json)
}

fn print(cps: Vec<Checkpoint>, base: TreeId, json: bool) -> Result<()> {
    if json {
        return print_json(&cps);
    }
    for c in cps {
        let current = if c.root_tree() == base { " (current base)" } else { "" };
        println!("{:>4}  {}  {}  {}{current}", c.version, utc(c.created), c.root.0, c.message);
    }
    Ok(())
}

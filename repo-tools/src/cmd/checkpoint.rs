//! `lvrepo checkpoint NAME [-m MSG]` and `lvrepo checkpoint prune NAME --keep N`.
//! A mounted guest is checkpointed by its daemon (a consistent cut under the
//! engine's lock); an unmounted one here, then rebased on the checkpoint.

use anyhow::{bail, Result};
use lvrepo_fs::guest::{self, CheckpointView, GuestHandle};

use crate::cli::{CheckpointCmd, Cli};
use crate::control::{call, Request};
use crate::output::print_json;

pub fn run(cli: &Cli, action: Option<&CheckpointCmd>, name: Option<&str>, message: &str, json: bool) -> Result<()> {
    if let Some(CheckpointCmd::Prune { name, keep }) = action {
        return prune(cli, name, *keep);
    }
    let Some(name) = name else { bail!(crate::Exit(crate::exit::USAGE, "name the guest to checkpoint".into())) };
    let cp = take(cli, name, message)?;
    if json {
        return print_json(&cp);
    }
    println!("checkpoint {} of {name}: {}", cp.version, cp.root.0);
    Ok(())
}

/// Checkpoint guest `name`: through its daemon when mounted, here otherwise.
pub fn take(cli: &Cli, name: &str, message: &str) -> Result<guest::Checkpoint> {
    let p = super::repo_path(cli)?;
    let rec = guest::find(&p, name)?;
    refuse_unsound(cli, &p, name)?;
    Ok(match call(&rec.dir, &Request::Checkpoint { message: message.to_string() })? {
        Some(v) => serde_json::from_value(v)?,
        None => {
            // Holds gc off until the checkpoint is recorded.
            let view = CheckpointView::open(&p)?;
            let mut g = GuestHandle::open(&p, name, true)?;
            g.checkpoint_offline(view.shared(), message)?
        }
    })
}

/// A checkpoint reuses the objects of the guest's base and of its latest
/// checkpoint (the fold memo): refuse, before anything changes, when those
/// in the guest's store are damaged or missing (exit 4).
fn refuse_unsound(cli: &Cli, p: &std::path::Path, name: &str) -> Result<()> {
    let h = GuestHandle::open(p, name, false)?;
    let repo = super::open(cli, false)?;
    lvrepo_fs::verify::refuse_unsound(&h, &repo, &h.fold_roots()?, "checkpoint")?;
    Ok(())
}

fn prune(cli: &Cli, name: &str, keep: usize) -> Result<()> {
    let p = super::repo_path(cli)?;
    let repo = super::open(cli, false)?;
    let mut g = GuestHandle::open(&p, name, true)?;
    let dropped = g.prune(super::shared(&repo), keep)?;
    if !cli.quiet {
        eprintln!("pruned {} checkpoints of {name}, kept {keep}", dropped.len());
    }
    Ok(())
}

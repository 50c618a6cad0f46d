//! `lvrepo checkpoint NAME [-m MSG]`, `lvrepo checkpoint prune NAME --keep N`
//! and `lvrepo checkpoint delete NAME N` (the last two: unmounted guests).
//! A mounted guest is checkpointed by its daemon (a consistent cut under the
//! engine's lock); an unmounted one here, then rebased on the checkpoint.
//! Inside a guest booted with its root on lvrepo, `lvrepo checkpoint` (no
//! repository, no name) asks the daemon serving the root (docs/boot.md).

use anyhow::{bail, Result};
use lvrepo_fs::guest::{self, CheckpointView, GuestHandle};

use crate::cli::{CheckpointCmd, Cli};
use crate::control::{self, call, Request, RootRequest};
use crate::json::{self, Checkpoint, Guest};

pub fn run(cli: &Cli, action: Option<&CheckpointCmd>, name: Option<&str>, message: &str, json: bool) -> Result<()> {
    match action {
        Some(CheckpointCmd::Prune { name, keep, json }) => return prune(cli, name, *keep, *json),
        Some(CheckpointCmd::Delete { name, checkpoint, json }) => return delete(cli, name, checkpoint, *json),
        None => {}
    }
    let (name, cp): (String, guest::Checkpoint) = if control::this_root(cli) {
        // Inside a guest booted with its root on lvrepo: its daemon's.
        let name = control::root_guest(name)?;
        (name, serde_json::from_value(control::call_root(&RootRequest::Checkpoint { message: message.to_string() })?)?)
    } else {
        let Some(name) = name else { bail!(crate::Exit(crate::exit::USAGE, "name the guest to checkpoint".into())) };
        (name.to_string(), take(cli, name, message)?)
    };
    if json {
        return json::print("checkpoint", &serde_json::json!({ "guest": Guest::named(&name), "checkpoint": Checkpoint::of(&cp) }));
    }
    println!("checkpoint {} of {name}: {}", cp.version, cp.root.0);
    Ok(())
}

/// Checkpoint guest `name`: through its daemon when mounted, here otherwise.
pub fn take(cli: &Cli, name: &str, message: &str) -> Result<guest::Checkpoint> {
    let p = super::repo_path(cli)?;
    let rec = guest::find(&p, name)?;
    refuse_unsound(&super::open(cli, false)?, &GuestHandle::open(&p, name, false)?)?;
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
pub fn refuse_unsound(repo: &lvrepo_fs::Repository, h: &GuestHandle) -> Result<()> {
    lvrepo_fs::verify::refuse_unsound(h, repo, &h.fold_roots()?, "checkpoint")?;
    Ok(())
}

fn prune(cli: &Cli, name: &str, keep: usize, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let repo = super::open(cli, false)?;
    let mut g = GuestHandle::open(&p, name, true)?;
    let dropped = g.prune(super::shared(&repo), keep)?;
    if json {
        return print_removed("checkpoint prune", &g, &dropped);
    }
    if !cli.quiet {
        eprintln!("pruned {} checkpoints of {name}, kept {keep}", dropped.len());
    }
    Ok(())
}

fn delete(cli: &Cli, name: &str, which: &str, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let repo = super::open(cli, false)?;
    // Writable: the guest's lock (a mounted guest is busy, exit 6).
    let mut g = GuestHandle::open(&p, name, true)?;
    let cp = g.delete_checkpoint(super::shared(&repo), which)?;
    if json {
        return print_removed("checkpoint delete", &g, std::slice::from_ref(&cp));
    }
    if !cli.quiet {
        let note = if cp.root_tree() == g.state.base { " (the guest's state sits on it: its tree stays until the next checkpoint or rollback)" } else { "" };
        eprintln!("deleted checkpoint {} of {name}{note}", cp.version);
    }
    Ok(())
}

/// The document of `checkpoint prune` and `checkpoint delete`: the guest,
/// the checkpoints deleted and those kept.
fn print_removed(command: &str, g: &GuestHandle, deleted: &[guest::Checkpoint]) -> Result<()> {
    let kept: Vec<_> = g.checkpoints()?.iter().map(Checkpoint::of).collect();
    json::print(command, &serde_json::json!({ "guest": Guest::named(&g.rec.name), "deleted": deleted.iter().map(Checkpoint::of).collect::<Vec<_>>(), "kept": kept }))
}

//! `lvrepo rollback NAME CHECKPOINT`: the guest's state becomes exactly the
//! checkpoint's (a new overlay generation over the checkpoint tree; the switch
//! is one atomic rename). A mounted guest is rolled back by its daemon, which
//! pauses requests for the switch and then invalidates the kernel's caches.

use anyhow::{bail, Result};
use lvrepo_fs::guest::{self, Checkpoint, GuestHandle};
use lvrepo_fs::Repository;

use crate::cli::Cli;
use crate::control::{self, call, Request, RootRequest};

pub fn run(cli: &Cli, name: &str, checkpoint: Option<&str>, disconnect: bool, json: bool) -> Result<()> {
    if control::this_root(cli) {
        // Inside a guest booted with its root on lvrepo: `rollback CHECKPOINT`
        // (or `rollback NAME CHECKPOINT` as on the host), by the root's daemon.
        let (named, which) = match checkpoint {
            Some(c) => (Some(name), c),
            None => (None, name),
        };
        let guest = control::root_guest(named)?;
        let cp: Checkpoint = serde_json::from_value(control::call_root(&RootRequest::Rollback { checkpoint: which.to_string() })?)?;
        if json {
            return print_json(&guest, &cp, true);
        }
        if !cli.quiet {
            eprintln!("guest {guest} rolled back to checkpoint {} ({}), while running", cp.version, cp.root.0);
        }
        return Ok(());
    }
    let Some(checkpoint) = checkpoint else { bail!(crate::Exit(crate::exit::USAGE, "name the checkpoint to roll back to".into())) };
    let p = super::repo_path(cli)?;
    let rec = guest::find(&p, name)?;
    // Resolve here, so a wrong checkpoint is "not found" (exit 3) either way.
    let cp = {
        let h = GuestHandle::open(&p, name, false)?;
        let cp = h.checkpoint(checkpoint)?;
        // Refuse before anything changes when what the checkpoint needs from
        // the guest's store is damaged or missing (exit 4).
        refuse_unsound(&super::open(cli, false)?, &h, &cp)?;
        cp
    };
    let how = match call(&rec.dir, &Request::Rollback { checkpoint: cp.version.to_string(), disconnect })? {
        Some(_) => "while mounted or served",
        None => {
            let repo = super::open(cli, false)?;
            let mut g = GuestHandle::open(&p, name, true)?;
            g.rollback_offline(super::shared(&repo), &cp)?;
            "unmounted"
        }
    };
    // A checkpoint from before a rebase stands on the image it had then.
    guest::record_rollback(&p, name, cp.version)?;
    if json {
        return print_json(name, &cp, how != "unmounted");
    }
    if !cli.quiet {
        eprintln!("guest {name} rolled back to checkpoint {} ({}), {how}", cp.version, cp.root.0);
    }
    Ok(())
}

/// Refuse, before anything changes, when what checkpoint `cp` needs from
/// the guest's store is damaged or missing (exit 4).
pub fn refuse_unsound(repo: &Repository, h: &GuestHandle, cp: &Checkpoint) -> Result<()> {
    let label = format!("guest {} checkpoint {}", h.rec.name, cp.version);
    lvrepo_fs::verify::refuse_unsound(h, repo, &[(cp.root_tree(), label)], "rollback")?;
    Ok(())
}

fn print_json(guest: &str, cp: &Checkpoint, mounted: bool) -> Result<()> {
    let guest = crate::json::Guest { mounted: Some(mounted), ..crate::json::Guest::named(guest) };
    crate::json::print("rollback", &serde_json::json!({ "guest": guest, "checkpoint": crate::json::Checkpoint::of(cp) }))
}

//! `lvrepo rollback NAME CHECKPOINT`: the guest's state becomes exactly the
//! checkpoint's (a new overlay generation over the checkpoint tree; the switch
//! is one atomic rename). A mounted guest is rolled back by its daemon, which
//! pauses requests for the switch and then invalidates the kernel's caches.

use anyhow::Result;
use lvrepo_fs::guest::{self, GuestHandle};

use crate::cli::Cli;
use crate::control::{call, Request};

pub fn run(cli: &Cli, name: &str, checkpoint: &str, disconnect: bool, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let rec = guest::find(&p, name)?;
    // Resolve here, so a wrong checkpoint is "not found" (exit 3) either way.
    let cp = {
        let h = GuestHandle::open(&p, name, false)?;
        let cp = h.checkpoint(checkpoint)?;
        // Refuse before anything changes when what the checkpoint needs from
        // the guest's store is damaged or missing (exit 4).
        let repo = super::open(cli, false)?;
        let label = format!("guest {name} checkpoint {}", cp.version);
        lvrepo_fs::verify::refuse_unsound(&h, &repo, &[(cp.root_tree(), label)], "rollback")?;
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
        return crate::output::print_json(&serde_json::json!({ "guest": name, "checkpoint": cp.version, "root": cp.root, "mounted": how != "unmounted" }));
    }
    if !cli.quiet {
        eprintln!("guest {name} rolled back to checkpoint {} ({}), {how}", cp.version, cp.root.0);
    }
    Ok(())
}

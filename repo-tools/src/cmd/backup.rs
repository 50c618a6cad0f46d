//! `lvrepo backup GUEST --to REPO [--no-checkpoint] [-m MSG] [--json]`.

use std::path::Path;

use anyhow::{Context, Result};
use lvrepo_fs::guest::GuestHandle;
use lvrepo_fs::Repository;

use crate::cli::Cli;
use crate::json::{self, Checkpoint, Copied, Guest};
use crate::output::human_bytes;

pub fn run(cli: &Cli, name: &str, to: &Path, no_checkpoint: bool, message: &str, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let to_path = super::other_repo(cli, to)?;
    let to = to_path.as_path();
    if !no_checkpoint {
        let cp = super::checkpoint::take(cli, name, message)?;
        if !cli.quiet && !json {
            eprintln!("checkpoint {} of {name}: {}", cp.version, cp.root.0);
        }
    }
    let target = Repository::open(to, true).with_context(|| format!("opening backup repository {}", to.display()))?;
    let repo = super::open(cli, false)?;
    // Read-only: a mounted guest's daemon keeps its lock; recorded
    // checkpoints never change.
    let g = GuestHandle::open(&p, name, false)?;
    let r = lvrepo_fs::backup::backup(&g, super::shared(&repo), &target)?;
    if json {
        let cps = g.checkpoints()?;
        let pick = |ns: &[u32]| -> Vec<Checkpoint> { cps.iter().filter(|c| ns.contains(&c.version)).map(Checkpoint::of).collect() };
        return json::print("backup", &serde_json::json!({ "guest": Guest::named(name), "sent": pick(&r.checkpoints_sent), "present": pick(&r.checkpoints_present), "copied": Copied::from(r.copied) }));
    }
    if !cli.quiet {
        eprintln!(
            "backed up {name} to {}: {} new checkpoints, {} already there; sent {} objects ({}), {} were there",
            to.display(),
            r.checkpoints_sent.len(),
            r.checkpoints_present.len(),
            r.copied.objects,
            human_bytes(r.copied.bytes),
            r.copied.skipped
        );
    }
    Ok(())
}

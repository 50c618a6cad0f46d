//! `lvrepo restore GUEST --from REPO [--checkpoint N] [--as NAME] --overlay DIR`.

use std::path::Path;

use anyhow::{Context, Result};
use lvrepo_fs::Repository;
use serde_json::json;

use crate::cli::Cli;
use crate::json::{self, Copied, Guest};
use crate::output::human_bytes;

pub fn run(cli: &Cli, name: &str, from: &Path, checkpoint: Option<u32>, as_name: Option<&str>, overlay: &Path, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let from_path = super::other_repo(cli, from)?;
    let from = from_path.as_path();
    let src = Repository::open(from, false).with_context(|| format!("opening backup repository {}", from.display()))?;
    let as_name = as_name.unwrap_or(name);
    let (g, stats) = lvrepo_fs::backup::restore(&p, &src, name, checkpoint, as_name, overlay)?;
    if json {
        return json::print("restore", &json!({ "guest": Guest::of(&g.rec).with_state(&g.state), "copied": Copied::from(stats) }));
    }
    if !cli.quiet {
        eprintln!("restored {name} as {as_name} in {}: copied {} objects ({}), {} were here", g.dir().display(), stats.objects, human_bytes(stats.bytes), stats.skipped);
    }
    Ok(())
}

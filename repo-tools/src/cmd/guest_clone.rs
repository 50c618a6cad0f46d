//! `lvrepo guest clone SRC[:CHECKPOINT] NEW [--overlay DIR]`: a new guest
//! whose state is a checkpoint of SRC. Without a checkpoint, SRC is
//! checkpointed first (through its daemon when mounted: a consistent cut).

use std::path::PathBuf;

use anyhow::Result;
use lvrepo_fs::guest::{self, GuestHandle};
use serde_json::json;

use crate::cli::Cli;
use crate::json::{self, Checkpoint, Guest};

pub fn run(cli: &Cli, source: &str, name: &str, overlay: Option<PathBuf>, json: bool) -> Result<()> {
    super::names::check_new_guest(name)?;
    let p = super::repo_path(cli)?;
    let (src, which) = match source.split_once(':') {
        Some((g, n)) => (g, Some(n)),
        None => (source, None),
    };
    guest::find(&p, src)?;
    if guest::find(&p, name).is_ok() {
        return Err(lvrepo_fs::Error::GuestExists(name.to_string()).into());
    }
    let which = match which {
        Some(n) => n.to_string(),
        None => super::checkpoint::take(cli, src, &format!("clone to {name}"))?.version.to_string(),
    };
    // gc waits until the clone is registered (its objects then have a root).
    let _guard = lvrepo_fs::repo::GcGuard::take(&p, false)?;
    let repo = super::open(cli, false)?;
    let h = GuestHandle::open(&p, src, false)?;
    let cp = h.checkpoint(&which)?;
    let dir = overlay.unwrap_or_else(|| PathBuf::from("/var/lib/lvrepo/guests").join(name));
    let g = guest::clone_checkpoint(&repo, &h, &cp, name, &dir)?;
    if json {
        return json::print("guest clone", &json!({ "guest": Guest::of(&g.rec).with_state(&g.state), "source": { "guest": Guest::named(src), "checkpoint": Checkpoint::of(&cp) } }));
    }
    if !cli.quiet {
        eprintln!("created guest {name} from checkpoint {} of {src} in {}", cp.version, g.dir().display());
    }
    Ok(())
}

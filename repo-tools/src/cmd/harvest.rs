//! `lvrepo harvest GUEST [--checkpoint N] --image NAME[:VERSION] [-m MSG]`:
//! publish a guest's state as an image. Without `--checkpoint` the guest is
//! checkpointed first (through its daemon when mounted), so what is
//! published is also in the guest's history.

use anyhow::Result;
use lvrepo_fs::guest::{self, GuestHandle};
use lvrepo_fs::ImageRef;

use crate::cli::Cli;
use crate::json::{self, Checkpoint, Copied, Guest, Image};

pub fn run(cli: &Cli, name: &str, checkpoint: Option<&str>, image: &str, message: &str, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let target: ImageRef = image.parse()?;
    guest::find(&p, name)?;
    let cp = match checkpoint {
        Some(n) => GuestHandle::open(&p, name, false)?.checkpoint(n)?,
        None => super::checkpoint::take(cli, name, &format!("harvested as {target}"))?,
    };
    let repo = super::open(cli, true)?;
    let g = GuestHandle::open(&p, name, false)?;
    let h = guest::harvest(&repo, &g, cp.root_tree(), &target, message)?;
    if json {
        return json::print("harvest", &serde_json::json!({ "image": Image::of(&h.image), "guest": Guest::named(name), "checkpoint": Checkpoint::of(&cp), "copied": Copied::from(h.copied) }));
    }
    if !cli.quiet {
        eprintln!("guest {name} checkpoint {} published as {} ({} objects, {} bytes copied from the guest)", cp.version, h.image.label(), h.copied.objects, h.copied.bytes);
    }
    println!("{}", h.image.label());
    Ok(())
}

//! `lvrepo backups [GUEST] --repo REPO [--json]`: what a backup site holds.

use anyhow::Result;

use crate::cli::Cli;
use crate::output::{print_json, utc};

pub fn run(cli: &Cli, guest: Option<&str>, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let all = lvrepo_fs::backup::list(&repo, guest)?;
    if json {
        return print_json(&all);
    }
    println!("{:<24} {:>10}  {:<20} {:<24} MESSAGE", "GUEST", "CHECKPOINT", "CREATED", "IMAGE");
    for b in all {
        println!("{:<24} {:>10}  {:<20} {:<24} {}", b.guest, b.checkpoint, utc(b.created), b.image.as_deref().unwrap_or("-"), b.message);
    }
    Ok(())
}

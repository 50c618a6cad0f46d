//! `lvrepo backups [GUEST] --repo REPO [--json]`: what a backup site holds.

use anyhow::Result;

use crate::cli::Cli;
use crate::json::{self, Checkpoint, Guest, Image};
use crate::output::utc;

pub fn run(cli: &Cli, guest: Option<&str>, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let all = lvrepo_fs::backup::list(&repo, guest)?;
    if json {
        let v: Vec<_> = all.iter().map(|b| serde_json::json!({ "guest": Guest::named(&b.guest), "checkpoint": Checkpoint::of_backup(b), "image": b.image.as_deref().map(Image::label) })).collect();
        return json::print("backups", &serde_json::json!({ "backups": v }));
    }
    println!("{:<24} {:>10}  {:<20} {:<24} MESSAGE", "GUEST", "CHECKPOINT", "CREATED", "IMAGE");
    for b in all {
        println!("{:<24} {:>10}  {:<20} {:<24} {}", b.guest, b.checkpoint, utc(b.created), b.image.as_deref().unwrap_or("-"), b.message);
    }
    Ok(())
}

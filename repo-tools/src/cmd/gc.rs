//! `lvrepo gc`: remove objects no image references.

use anyhow::Result;

use crate::cli::Cli;
use crate::output::{human_bytes, print_json};
use crate::progress::Bar;

pub fn run(cli: &Cli, json: bool) -> Result<()> {
    let repo = super::open(cli, true)?;
    let bar = Bar::bytes(cli.quiet, "gc");
    // Keeps what every guest's base and checkpoints use, and waits for
    // checkpoints in progress.
    let r = lvrepo_fs::gc::gc_repository(&repo, &bar)?;
    bar.finish();
    if json {
        return print_json(&r);
    }
    println!(
        "removed {} objects ({}), rewrote {} packs, deleted {} packs; {} -> {}",
        r.removed_objects,
        human_bytes(r.removed_bytes),
        r.packs_rewritten,
        r.packs_deleted,
        human_bytes(r.bytes_before),
        human_bytes(r.bytes_after)
    );
    if r.packs_deferred > 0 {
        println!("{} unreferenced packs kept: the repository is open (mounted guests?); run gc again later", r.packs_deferred);
    }
    Ok(())
}

//! `lvrepo gc`: remove objects no image references.

use anyhow::Result;

use crate::cli::Cli;
use crate::output::{human_bytes, print_json};
use crate::progress::Bar;

pub fn run(cli: &Cli, json: bool) -> Result<()> {
    let repo = super::open(cli, true)?;
    let bar = Bar::bytes(cli.quiet, "gc");
    let r = lvrepo_fs::gc::gc(&repo, &[], &bar)?;
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
    Ok(())
}

//! `lvrepo gc`: remove objects no image references.

use anyhow::Result;
use lvrepo_fs::guest::GuestHandle;
use lvrepo_fs::{ObjectStore, TreeId};

use crate::cli::Cli;
use crate::output::{human_bytes, print_json};
use crate::progress::Bar;

pub fn run(cli: &Cli, json: bool) -> Result<()> {
    let repo = super::open(cli, true)?;
    let bar = Bar::bytes(cli.quiet, "gc");
    // Keep what every guest's base and checkpoints use, read through the
    // guest's own store layered over this repository.
    let p = super::repo_path(cli)?;
    let mut guests = Vec::new();
    for g in lvrepo_fs::guest::list(&p)? {
        let h = GuestHandle::open(&p, &g.name, false)?;
        let store = h.store(super::shared(&repo));
        guests.push((h.roots()?, store));
    }
    let extra: Vec<(&dyn ObjectStore, TreeId)> = guests.iter().flat_map(|(roots, s)| roots.iter().map(move |r| (&**s as &dyn ObjectStore, *r))).collect();
    let r = lvrepo_fs::gc::gc(&repo, &extra, &bar)?;
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

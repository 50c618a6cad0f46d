//! `lvrepo gc [--dry-run]`: remove objects no image, guest or checkpoint
//! references (`--dry-run`: say what would go).

use anyhow::Result;
use lvrepo_fs::gc::GcReport;

use crate::cli::Cli;
use crate::output::human_bytes;
use crate::progress::Bar;

pub fn run(cli: &Cli, dry_run: bool, json: bool) -> Result<()> {
    let r = if dry_run {
        let repo = super::open(cli, false)?;
        lvrepo_fs::gc::gc_repository_dry_run(&repo, &lvrepo_fs::import::NoProgress)?
    } else {
        let repo = super::open(cli, true)?;
        let bar = Bar::bytes(cli.quiet, "gc");
        // Keeps what every guest's base and checkpoints use, and waits for
        // checkpoints in progress.
        let r = lvrepo_fs::gc::gc_repository(&repo, &bar)?;
        bar.finish();
        r
    };
    if json {
        return crate::json::print("gc", &crate::json::Gc::from(&r));
    }
    print(&r);
    Ok(())
}

fn print(r: &GcReport) {
    let (verbs, about, tail) = if r.dry_run { (["would remove", "rewrite", "delete"], "about ", " (dry run: nothing removed)") } else { (["removed", "rewrote", "deleted"], "", "") };
    println!(
        "{} {} objects ({}), {} {} packs, {} {} packs; {} -> {about}{}{tail}",
        verbs[0],
        r.removed_objects,
        human_bytes(r.removed_bytes),
        verbs[1],
        r.packs_rewritten,
        verbs[2],
        r.packs_deleted,
        human_bytes(r.bytes_before),
        human_bytes(r.bytes_after)
    );
    if r.packs_deferred > 0 {
        println!("{} unreferenced packs kept: the repository is open (mounted guests?); run gc again later", r.packs_deferred);
    }
}

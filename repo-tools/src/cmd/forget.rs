//! `lvrepo forget GUEST --keep-* N [--dry-run] [--json]` on a backup
//! repository (--repo): drop the backed-up checkpoints no rule keeps, then gc.

use anyhow::Result;
use lvrepo_fs::backup::KeepPolicy;
use serde_json::json;

use crate::cli::Cli;
use crate::json::{self, Checkpoint, Gc, Guest};

pub fn run(cli: &Cli, guest: &str, policy: KeepPolicy, dry_run: bool, json: bool) -> Result<()> {
    if policy.is_empty() {
        return Err(crate::Exit(crate::exit::USAGE, "give at least one --keep-last/--keep-hourly/--keep-daily/--keep-weekly/--keep-monthly rule".into()).into());
    }
    let repo = super::open(cli, !dry_run)?;
    // The records of what is forgotten, read while they are there.
    let before = if json { lvrepo_fs::backup::list(&repo, Some(guest))? } else { Vec::new() };
    let r = lvrepo_fs::backup::forget(&repo, guest, &policy, dry_run)?;
    let gc = if !dry_run && !r.forgotten.is_empty() { Some(lvrepo_fs::gc::gc_repository(&repo, &lvrepo_fs::NoProgress)?) } else { None };
    if json {
        let pick = |ns: &[u32]| -> Vec<Checkpoint> { before.iter().filter(|b| ns.contains(&b.checkpoint)).map(Checkpoint::of_backup).collect() };
        return json::print("forget", &json!({ "guest": Guest::named(&r.guest), "dry_run": r.dry_run, "kept": pick(&r.kept), "forgotten": pick(&r.forgotten), "gc": gc.as_ref().map(Gc::from) }));
    }
    let verb = if dry_run { "would forget" } else { "forgot" };
    println!("{guest}: keep {:?}, {verb} {:?}", r.kept, r.forgotten);
    if let Some(g) = gc {
        println!("gc: removed {} objects, {} -> {} bytes", g.removed_objects, g.bytes_before, g.bytes_after);
    }
    Ok(())
}

//! `lvrepo verify [--json] [--repair-from SRC]`: check every object of the
//! repository and of every guest's store; exit 4 when anything is damaged
//! or missing. With `--repair-from`, damaged and missing objects get their
//! bytes from SRC first, and the report is of the repository after repair.
//! `--overlays` checks every unmounted guest's overlay as `guest fsck` does.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lvrepo_fs::verify::repair::{self, Source};
use lvrepo_fs::verify::{record_marks, VerifyReport};

use serde_json::json;

use crate::cli::Cli;
use crate::json::Guest;
use crate::output::human_bytes;
use crate::progress::Bar;

pub fn run(cli: &Cli, json: bool, overlays: bool, repair_from: &[PathBuf]) -> Result<()> {
    let mut report = check(cli)?;
    let mut repaired = Vec::new();
    if !repair_from.is_empty() && !report.damaged.is_empty() {
        let mut wanted = repair::wanted(&report);
        let mut found = repair::Found::new();
        for src in repair_from {
            let bar = Bar::bytes(cli.quiet, "reading source");
            // A remote repository is read through its cache (docs/remote.md).
            let local = super::other_repo(cli, src)?;
            let got = repair::harvest(&Source::from_arg(&local), &wanted, &bar).with_context(|| format!("reading repair source {}", src.display()))?;
            bar.finish();
            wanted.retain(|id, _| !got.contains_key(id));
            found.extend(got);
        }
        let failed;
        (repaired, failed) = repair::rewrite(&report, &found);
        for (store, e) in failed {
            eprintln!("lvrepo: could not rewrite the damaged objects of {store}: {}", lvrepo_fs::error::chain(&e));
        }
        // A fresh open: a read-only index does not see what was written since.
        report = check(cli)?;
    }
    let notes = record_marks(&report);
    // With --overlays: every unmounted guest's STATE, overlay database and
    // data checksums too (the checks of `guest fsck`).
    let guests = if overlays { super::fsck::check_guests(cli, &super::open(cli, false)?, json)? } else { Vec::new() };
    let guest_damage: usize = guests.iter().map(|g| g.damaged()).sum();
    if json {
        let mut v = report_json(&report);
        if overlays {
            v["overlays"] = guests.iter().map(super::fsck::report_json).collect();
        }
        if !repair_from.is_empty() {
            v["repaired_objects"] = repaired.iter().map(|(store, id)| json!({"store": store, "object": id})).collect();
        }
        crate::json::print("verify", &v)?;
    } else {
        print_text(&report, &repaired);
    }
    for n in notes {
        tracing::warn!("{n}");
    }
    if !report.clean() || guest_damage > 0 {
        let what = format!("{} damaged or missing objects, {} other problems, {guest_damage} damaged in overlays", report.damaged.len(), report.problems.len());
        return Err(crate::Exit(crate::exit::DAMAGED, what).into());
    }
    Ok(())
}

fn report_json(r: &VerifyReport) -> serde_json::Value {
    let damaged: Vec<_> = r
        .damaged
        .iter()
        .map(|d| json!({ "object": d.object, "kind": d.kind, "problem": d.problem, "store": d.store, "location": d.location, "referenced_by": d.referenced_by }))
        .collect();
    let problems: Vec<_> = r.problems.iter().map(|p| json!({ "store": p.store, "path": p.path, "problem": p.problem })).collect();
    json!({
        "object_count": r.objects,
        "stored_bytes": r.stored_bytes,
        "image_count": r.images,
        "guest_count": r.guests,
        "checkpoint_count": r.checkpoints,
        "damaged": damaged,
        "store_problems": problems,
        "absent": r.absent.iter().map(|g| Guest::named(g)).collect::<Vec<_>>(),
    })
}

fn check(cli: &Cli) -> Result<VerifyReport> {
    let repo = super::open(cli, false)?;
    let bar = Bar::bytes(cli.quiet, "verifying");
    let report = lvrepo_fs::verify::verify(&repo, &bar)?;
    bar.finish();
    Ok(report)
}

fn print_text(report: &VerifyReport, repaired: &[(String, lvrepo_fs::Digest)]) {
    for (store, id) in repaired {
        println!("REPAIRED {id} in {store}");
    }
    for d in &report.damaged {
        let at = d.location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default();
        println!("DAMAGED {} {} ({}) in {}{at}", d.kind, d.object, d.problem, d.store);
        for r in &d.referenced_by {
            println!("  used by {r}");
        }
    }
    for p in &report.problems {
        println!("DAMAGED {} {}: {}", p.store, p.path, p.problem);
    }
    for g in &report.absent {
        println!("SKIPPED guest {g}: its directory is not present (partition not attached?)");
    }
    println!(
        "{} objects ({}) in {} images checked, {} guests ({} checkpoints), {} damaged, {} other problems",
        report.objects,
        human_bytes(report.stored_bytes),
        report.images,
        report.guests,
        report.checkpoints,
        report.damaged.len(),
        report.problems.len()
    );
}

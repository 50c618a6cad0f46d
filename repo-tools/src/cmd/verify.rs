//! `lvrepo verify`: check every object; exit 4 when anything is damaged.

use anyhow::Result;

use crate::cli::Cli;
use crate::output::{human_bytes, print_json};
use crate::progress::Bar;

pub fn run(cli: &Cli, overlays: bool, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let bar = Bar::bytes(cli.quiet, "verifying");
    let report = lvrepo_fs::verify::verify(&repo, &bar)?;
    bar.finish();
    let guests = if overlays { super::fsck::check_guests(cli, &repo, json)? } else { Vec::new() };
    let guest_damage: usize = guests.iter().map(|g| g.damaged()).sum();
    if json && overlays {
        print_json(&serde_json::json!({ "repository": report, "guests": guests }))?;
    } else if json {
        print_json(&report)?;
    } else {
        for d in &report.damaged {
            println!("DAMAGED {} {} ({})", d.kind, d.object, d.problem);
            for r in &d.referenced_by {
                println!("  used by {r}");
            }
        }
        println!(
            "{} objects ({}) in {} images checked, {} damaged",
            report.objects,
            human_bytes(report.stored_bytes),
            report.images,
            report.damaged.len()
        );
    }
    if !report.damaged.is_empty() || guest_damage > 0 {
        return Err(crate::Exit(crate::exit::DAMAGED, format!("{} damaged objects, {guest_damage} damaged in guests", report.damaged.len())).into());
    }
    Ok(())
}

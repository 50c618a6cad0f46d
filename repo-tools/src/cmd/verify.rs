//! `lvrepo verify`: check every object; exit 4 when anything is damaged.

use anyhow::Result;

use crate::cli::Cli;
use crate::output::{human_bytes, print_json};
use crate::progress::Bar;

pub fn run(cli: &Cli, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let bar = Bar::bytes(cli.quiet, "verifying");
    let report = lvrepo_fs::verify::verify(&repo, &bar)?;
    bar.finish();
    if json {
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
    if !report.damaged.is_empty() {
        return Err(crate::Exit(crate::exit::DAMAGED, format!("{} damaged objects", report.damaged.len())).into());
    }
    Ok(())
}

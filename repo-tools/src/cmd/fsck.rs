//! `lvrepo guest fsck NAME [--repair] [--json]`: check a guest's own files;
//! exit 4 if anything was damaged (even when repaired: say so), 0 if clean.

use anyhow::Result;
use lvrepo_fs::overlay::check::Problem;

use crate::cli::Cli;
use serde_json::{json, Value};

use crate::json::Guest;

pub fn run(cli: &Cli, name: &str, repair: bool, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let report = lvrepo_fs::guest::fsck::fsck(&repo, name, repair)?;
    if json {
        crate::json::print("guest fsck", &report_json(&report))?;
    } else {
        let all = report.problems.iter().chain(report.overlay.iter().flat_map(|o| o.problems.iter()));
        for p in all {
            print_problem(p);
        }
        if let Some(o) = &report.overlay {
            println!("{} files with data, {} bytes checked", o.files, o.bytes_checked);
        }
        println!("guest {name}: {} damaged", report.damaged());
    }
    let n = report.damaged();
    if n > 0 {
        let how = if repair { "found and repaired (see above for what was lost)" } else { "found (run with --repair to salvage what is sound)" };
        return Err(crate::Exit(crate::exit::DAMAGED, format!("guest {name}: {n} problems {how}")).into());
    }
    Ok(())
}

/// A guest's fsck report as `guest fsck --json` and `verify --overlays
/// --json` print it.
pub fn report_json(r: &lvrepo_fs::guest::fsck::FsckReport) -> Value {
    let problems = |ps: &[Problem]| -> Vec<Value> {
        ps.iter()
            .map(|p| json!({ "path": p.path, "file": p.file, "range": p.range.map(|(s, e)| json!({ "start": s, "end": e })), "what": p.what, "damage": p.damage, "repaired": p.repaired }))
            .collect()
    };
    let overlay = r.overlay.as_ref().map(|o| json!({ "dir": o.overlay, "file_count": o.files, "checked_bytes": o.bytes_checked, "problems": problems(&o.problems) }));
    let guest = Guest { generation: r.generation, ..Guest::named(&r.guest) };
    json!({ "guest": guest, "damaged_count": r.damaged(), "problems": problems(&r.problems), "overlay": overlay })
}

/// One line per problem: `DAMAGED PATH [START..END] (FILE): WHAT`, and
/// what the repair did.
pub fn print_problem(p: &Problem) {
    let range = p.range.map(|(s, e)| format!(" bytes {s}..{e}")).unwrap_or_default();
    let tag = if p.damage { "DAMAGED" } else { "STRAY" };
    println!("{tag} {}{range} ({}): {}", p.path, p.file, p.what);
    if let Some(r) = &p.repaired {
        println!("  repaired: {r}");
    }
}

/// `verify --overlays`: check every guest that is not mounted (a mounted
/// one is said to be skipped, not counted as clean), printing what is
/// damaged unless `json`.
pub fn check_guests(cli: &Cli, repo: &lvrepo_fs::Repository, json: bool) -> Result<Vec<lvrepo_fs::guest::fsck::FsckReport>> {
    let mut out = Vec::new();
    for g in lvrepo_fs::guest::list(repo.path())? {
        match lvrepo_fs::guest::fsck::fsck(repo, &g.name, false) {
            Ok(r) => {
                if !json {
                    r.problems.iter().chain(r.overlay.iter().flat_map(|o| o.problems.iter())).for_each(print_problem);
                    println!("guest {}: {} damaged", g.name, r.damaged());
                }
                out.push(r);
            }
            Err(lvrepo_fs::Error::GuestBusy(_)) if !cli.quiet => eprintln!("guest {}: in use (mounted?), overlay not checked", g.name),
            Err(lvrepo_fs::Error::GuestBusy(_)) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("checking guest {}", g.name))),
        }
    }
    Ok(out)
}

//! `lvrepo propagate --from GUEST[:CHECKPOINT] --path P... --to GUEST...|--group NAME
//! [--dry-run] [--prefer guest|source]`: copy chosen paths' state from one
//! guest to others (`lvrepo_fs::guest::GuestHandle::propagate`).
//!
//! Targets must be unmounted (a mounted one: exit 6, before any change), as
//! for rebase. The source may be mounted: its current state is then
//! checkpointed through its daemon first (a consistent cut), even under
//! --dry-run. Every target is planned before any changes: conflicts are
//! listed on stdout as `GUEST PATH` (escaped) and, without --prefer, refuse
//! the whole propagation (exit 7, no target changed).

use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use lvrepo_fs::guest::{self, CheckpointView, GuestHandle, PropagateReport};
use lvrepo_fs::merge::Prefer;
use lvrepo_fs::object::ObjectStore;
use lvrepo_fs::walk::escape_path;

use crate::cli::Cli;
use crate::json::{self, Checkpoint, Guest};

#[allow(clippy::too_many_arguments)]
pub fn run(cli: &Cli, from: &str, paths: &[std::ffi::OsString], to: &[String], group: Option<&str>, dry_run: bool, prefer: Option<&str>, json: bool) -> Result<()> {
    let prefer = super::prefer(prefer, "source")?;
    let p = super::repo_path(cli)?;
    let (src, which) = match from.split_once(':') {
        Some((g, n)) => (g, Some(n.to_string())),
        None => (from, None),
    };
    let src_rec = guest::find(&p, src)?;
    let targets: Vec<String> = match group {
        Some(gr) => guest::find_group(&p, gr)?.members.into_iter().filter(|m| m != src).collect(),
        None => to.to_vec(),
    };
    if group.is_none() && targets.iter().any(|t| t == src) {
        bail!(crate::Exit(crate::exit::USAGE, format!("guest {src} is the source; it cannot also be a target")));
    }
    for n in &targets {
        if super::guest::is_mounted(&guest::find(&p, n)?) {
            bail!(crate::Exit(crate::exit::BUSY, format!("guest {n} is mounted: propagate changes unmounted guests; unmount it first (nothing was changed)")));
        }
    }
    let paths: Vec<Vec<u8>> = paths.iter().map(|s| s.as_bytes().to_vec()).collect();
    let which = match which {
        Some(n) => Some(n),
        None if super::guest::is_mounted(&src_rec) => Some(super::checkpoint::take(cli, src, "propagate")?.version.to_string()),
        None => None,
    };
    // Holds gc off while the source's objects are copied and targets switch.
    let view = CheckpointView::open(&p)?;
    let repo = super::open(cli, false)?;
    let h = GuestHandle::open(&p, src, false)?;
    let (source, before, after, label): (Arc<dyn ObjectStore>, _, _, String) = match which {
        Some(n) => {
            let cp = h.checkpoint(&n)?;
            let image = repo.resolve_name(&guest::image_at(&src_rec, cp.version))?;
            (h.store(view.shared()), image.root_tree(), cp.root_tree(), format!("{src}:{}", cp.version))
        }
        None => {
            let image = repo.resolve_name(&src_rec.image)?;
            let (store, root) = h.fold_scratch(view.shared())?;
            (store, image.root_tree(), root, src.to_string())
        }
    };
    let changes = guest::propagate_changes(&*source, &before, &after, &paths, &label)?;
    let one = |n: &str, dry: bool| -> Result<PropagateReport, lvrepo_fs::Error> {
        {
            let t = GuestHandle::open(&p, n, false)?;
            lvrepo_fs::verify::refuse_unsound(&t, &repo, &t.fold_roots()?, "propagate")?;
        }
        GuestHandle::open(&p, n, true)?.propagate(view.shared(), source.clone(), &label, &changes, prefer, dry)
    };
    // Plan every target before changing any.
    let mut conflicted = 0;
    let mut plans = Vec::new();
    for n in &targets {
        match one(n, true) {
            Ok(r) => plans.push(r),
            Err(lvrepo_fs::Error::PropagateConflict { paths, .. }) => {
                conflicted += 1;
                for path in &paths {
                    println!("{n} {}", escape_path(path));
                }
            }
            Err(e) => return Err(anyhow::Error::from(e).context(format!("guest {n}"))),
        }
    }
    if conflicted > 0 {
        bail!(crate::Exit(crate::exit::CONFLICT, format!("propagate from {label}: {conflicted} of {} guests have their own version of chosen paths (listed); no guest was changed (pass --prefer guest or --prefer source to choose)", targets.len())));
    }
    let reports = if dry_run { plans } else { targets.iter().map(|n| one(n, false).with_context(|| format!("guest {n}"))).collect::<Result<Vec<_>>>()? };
    report(cli, &p, group, &reports, prefer, json)
}

/// The source as `guest clone` reports it: the guest, and the checkpoint
/// the paths were taken from (null: its current state).
fn source_json(repo: &std::path::Path, source: &str) -> Result<serde_json::Value> {
    let (g, cp) = match source.split_once(':') {
        Some((g, n)) => (g, Some(Checkpoint::of(&lvrepo_fs::guest::GuestHandle::open(repo, g, false)?.checkpoint(n)?))),
        None => (source, None),
    };
    Ok(serde_json::json!({ "guest": Guest::named(g), "checkpoint": cp }))
}

fn report(cli: &Cli, repo: &std::path::Path, group: Option<&str>, reports: &[PropagateReport], prefer: Option<Prefer>, json: bool) -> Result<()> {
    if json {
        let v: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                let cp = match r.checkpoint {
                    Some(n) => Some(Checkpoint::of(&lvrepo_fs::guest::GuestHandle::open(repo, &r.guest, false)?.checkpoint(&n.to_string())?)),
                    None => None,
                };
                let conflicts: Vec<_> = r.conflicts.iter().map(|c| serde_json::json!({ "path": escape_path(c) })).collect();
                Ok(serde_json::json!({
                    "guest": Guest::named(&r.guest),
                    "source": source_json(repo, &r.source)?,
                    "dry_run": r.dry_run,
                    "conflicts": conflicts,
                    "checkpoint": cp,
                    "root": r.root.map(|id| id.0.to_string()),
                }))
            })
            .collect::<Result<_>>()?;
        return json::print("propagate", &serde_json::json!({ "group": group.map(|g| serde_json::json!({ "name": g })), "propagations": v }));
    }
    for r in reports {
        for path in &r.conflicts {
            println!("{} {}", r.guest, escape_path(path));
        }
        if cli.quiet {
            continue;
        }
        let resolved = if r.conflicts.is_empty() { String::new() } else { format!(", {} conflicts resolved for the {}", r.conflicts.len(), if prefer == Some(Prefer::Image) { "source" } else { "guest" }) };
        match r.checkpoint {
            Some(cp) => eprintln!("propagated from {} to guest {}{resolved} (checkpoint {cp} holds its state before)", r.source, r.guest),
            None => eprintln!("dry run: propagation from {} to guest {} planned{resolved}; nothing was changed", r.source, r.guest),
        }
    }
    Ok(())
}

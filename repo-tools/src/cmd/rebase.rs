//! `lvrepo rebase GUEST|--group NAME --image NEW [--dry-run] [--prefer guest|image]`:
//! move unmounted guests onto another image version keeping their changes
//! (`lvrepo_fs::guest::GuestHandle::rebase`). A mounted guest is refused
//! (exit 6); paths changed on both sides are listed on stdout, one per
//! line (escaped; `GUEST PATH` for a group), and without --prefer the
//! rebase is refused (exit 7). A group is planned whole first: a conflict
//! or a mounted member changes no member.

use anyhow::{bail, Context, Result};
use lvrepo_fs::guest::{self, CheckpointView, GuestHandle, RebaseReport};
use lvrepo_fs::merge::Prefer;
use lvrepo_fs::walk::escape_path;

use crate::cli::Cli;
use crate::json::{self, Checkpoint, Guest, Image};

pub fn run(cli: &Cli, guest: Option<&str>, group: Option<&str>, image: &str, dry_run: bool, prefer: Option<&str>, json: bool) -> Result<()> {
    let prefer = match prefer {
        None => None,
        Some("guest") => Some(Prefer::Guest),
        Some("image") => Some(Prefer::Image),
        Some(o) => bail!(crate::Exit(crate::exit::USAGE, format!("--prefer takes guest or image, not {o:?}"))),
    };
    let p = super::repo_path(cli)?;
    let ctx = Ctx { path: p.clone(), repo: lvrepo_fs::Repository::open(&p, false)?, view: CheckpointView::open(&p)? };
    let names = match (guest, group) {
        (Some(g), None) => vec![g.to_string()],
        (None, Some(gr)) => guest::find_group(&p, gr)?.members,
        _ => bail!(crate::Exit(crate::exit::USAGE, "name a guest or --group".into())),
    };
    for n in &names {
        let rec = guest::find(&p, n)?;
        if std::os::unix::net::UnixStream::connect(crate::control::socket_path(&rec.dir)).is_ok() {
            bail!(crate::Exit(crate::exit::BUSY, format!("guest {n} is mounted: rebase works on unmounted guests; unmount it first")));
        }
    }
    // A group's dry run reports its plan (planned once, not twice).
    let (mut reports, mut planned) = (Vec::new(), false);
    if let (Some(gr), None) = (group, prefer) {
        // Plan every member before changing any (with --prefer no conflict
        // refuses, so there is nothing to plan for).
        let mut conflicts = 0;
        let mut plans = Vec::new();
        for n in &names {
            match rebase_one(&ctx, n, image, true, prefer) {
                Ok(r) => plans.push(r),
                Err(lvrepo_fs::Error::RebaseConflict { paths, .. }) => {
                    conflicts += 1;
                    for path in &paths {
                        println!("{n} {}", escape_path(path));
                    }
                }
                Err(e) => return Err(anyhow::Error::from(e).context(format!("guest {n}"))),
            }
        }
        if conflicts > 0 {
            bail!(crate::Exit(crate::exit::CONFLICT, format!("rebase of group {gr} onto {image}: {conflicts} of {} guests have paths both they and the image changed; no guest was changed (pass --prefer guest or --prefer image to choose)", names.len())));
        }
        if dry_run {
            (reports, planned) = (plans, true);
        }
    }
    for n in names.iter().filter(|_| !planned) {
        match rebase_one(&ctx, n, image, dry_run, prefer) {
            Ok(r) => reports.push(r),
            Err(lvrepo_fs::Error::RebaseConflict { guest, image, paths }) => {
                for path in &paths {
                    println!("{}", escape_path(path));
                }
                return Err(lvrepo_fs::Error::RebaseConflict { guest, image, paths }.into());
            }
            Err(e) => return Err(anyhow::Error::from(e)).with_context(|| format!("guest {n}")),
        }
    }
    if json {
        let v: Vec<serde_json::Value> = reports.iter().map(|r| report_json(&p, r)).collect::<Result<_>>()?;
        return json::print("rebase", &serde_json::json!({ "group": group.map(|g| serde_json::json!({ "name": g })), "rebases": v }));
    }
    for r in &reports {
        for path in &r.conflicts {
            if group.is_some() {
                println!("{} {}", r.guest, escape_path(path));
            } else {
                println!("{}", escape_path(path));
            }
        }
        if !cli.quiet {
            let resolved = if r.conflicts.is_empty() { String::new() } else { format!(", {} conflicts resolved for the {}", r.conflicts.len(), if prefer == Some(Prefer::Image) { "image" } else { "guest" }) };
            match r.checkpoint {
                Some(cp) => eprintln!("guest {} rebased from {} onto {}{resolved} (checkpoint {cp} holds its state before)", r.guest, r.from, r.to),
                None => eprintln!("dry run: guest {} would be rebased from {} onto {}{resolved}; nothing was changed", r.guest, r.from, r.to),
            }
        }
    }
    Ok(())
}

/// One guest's rebase; `checkpoint` is the one taken before (none in a dry run).
fn report_json(repo: &std::path::Path, r: &RebaseReport) -> Result<serde_json::Value> {
    let cp = match r.checkpoint {
        Some(n) => Some(Checkpoint::of(&GuestHandle::open(repo, &r.guest, false)?.checkpoint(&n.to_string())?)),
        None => None,
    };
    let conflicts: Vec<_> = r.conflicts.iter().map(|c| serde_json::json!({ "path": escape_path(c) })).collect();
    Ok(serde_json::json!({
        "guest": Guest::named(&r.guest),
        "from": Image::label(&r.from),
        "to": Image::label(&r.to),
        "dry_run": r.dry_run,
        "conflicts": conflicts,
        "merged_dir_count": r.dirs_merged,
        "checkpoint": cp,
    }))
}

/// Rebase (or plan, `dry_run`) guest `name`; lvrepo_fs's error as is, so a
/// conflict keeps its paths.
fn rebase_one(ctx: &Ctx, name: &str, image: &str, dry_run: bool, prefer: Option<Prefer>) -> Result<RebaseReport, lvrepo_fs::Error> {
    let rec = guest::find(&ctx.path, name)?;
    let new = ctx.repo.resolve_name(image)?;
    lvrepo_fs::sign::check(&ctx.repo, &new)?;
    let old = ctx.repo.resolve_name(&rec.image)?;
    // A plan writes nothing: the guest's store opened read-only (cheaper,
    // and no lock: the rebase itself takes it and plans again under it).
    let mut g = GuestHandle::open(&ctx.path, name, !dry_run)?;
    // What the rebase reuses from the guest's store (its base, and the
    // latest checkpoint the fold memo may reuse) must be sound (exit 4).
    lvrepo_fs::verify::refuse_unsound(&g, &ctx.repo, &g.fold_roots()?, "rebase")?;
    g.rebase(&ctx.path, ctx.view.shared(), &old, &new, prefer, dry_run)
}

/// What every guest's rebase uses, opened once: the repository, and the
/// view that holds gc off until each guest stands on its new root.
struct Ctx {
    path: std::path::PathBuf,
    repo: lvrepo_fs::Repository,
    view: CheckpointView,
}

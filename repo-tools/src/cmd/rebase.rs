//! `lvrepo rebase GUEST|--group NAME --image NEW [--dry-run] [--prefer guest|image]`:
//! move unmounted guests onto another image version keeping their changes
//! (`lvrepo_fs::guest::GuestHandle::rebase`). A mounted guest is refused
//! (exit 6); paths changed on both sides are listed on stdout, one per
//! line (escaped; `GUEST PATH` for a group), and without --prefer the
//! rebase is refused (exit 7). A group is planned whole first: a conflict
//! or a mounted member changes no member. A group's guests are planned and
//! rebased `--jobs` at a time (each in its own overlay; results in order).

use anyhow::{bail, Result};
use lvrepo_fs::guest::{self, CheckpointView, GuestHandle, RebaseReport};
use lvrepo_fs::merge::Prefer;
use lvrepo_fs::walk::escape_path;

use crate::cli::Cli;
use crate::json::{self, Checkpoint, Guest, Image};

pub fn run(cli: &Cli, guest: Option<&str>, group: Option<&str>, image: &str, dry_run: bool, prefer: Option<&str>, jobs: usize, json: bool) -> Result<()> {
    let prefer = super::prefer(prefer, "image")?;
    let p = super::repo_path(cli)?;
    let view = CheckpointView::open(&p)?;
    // The images' trees are read by every member: decoded and checked once
    // (content-addressed, and gc is held off by the view).
    let shared: std::sync::Arc<dyn lvrepo_fs::object::ObjectStore> = std::sync::Arc::new(lvrepo_fs::object::Cached::sized_to_memory(view.shared(), Some(SHARED_CACHE)));
    let ctx = Ctx { path: p.clone(), repo: lvrepo_fs::Repository::open(&p, false)?, shared, _view: view };
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
        let mut failed = None;
        let results = each(&names, jobs, |n| rebase_one(&ctx, n, image, true, prefer), |e| !matches!(e, lvrepo_fs::Error::RebaseConflict { .. }));
        for (n, r) in names.iter().zip(results) {
            match r {
                Some(Ok(r)) => plans.push(r),
                Some(Err(lvrepo_fs::Error::RebaseConflict { paths, .. })) => {
                    conflicts += 1;
                    for path in &paths {
                        println!("{n} {}", escape_path(path));
                    }
                }
                Some(Err(e)) => {
                    failed.get_or_insert(anyhow::Error::from(e).context(format!("guest {n}")));
                }
                None => {}
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if conflicts > 0 {
            bail!(crate::Exit(crate::exit::CONFLICT, format!("rebase of group {gr} onto {image}: {conflicts} of {} guests have paths both they and the image changed; no guest was changed (pass --prefer guest or --prefer image to choose)", names.len())));
        }
        if dry_run {
            (reports, planned) = (plans, true);
        }
    }
    let todo: &[String] = if planned { &[] } else { &names };
    let mut failed = None;
    for (n, r) in todo.iter().zip(each(todo, jobs, |n| rebase_one(&ctx, n, image, dry_run, prefer), |_| true)) {
        match r {
            Some(Ok(r)) => reports.push(r),
            Some(Err(lvrepo_fs::Error::RebaseConflict { guest, image, paths })) if failed.is_none() => {
                for path in &paths {
                    println!("{}", escape_path(path));
                }
                failed = Some(anyhow::Error::from(lvrepo_fs::Error::RebaseConflict { guest, image, paths }));
            }
            Some(Err(e)) => {
                failed.get_or_insert(anyhow::Error::from(e).context(format!("guest {n}")));
            }
            None => {}
        }
    }
    if let Some(e) = failed {
        // Guests rebased before (or beside) the failure stay rebased: say so.
        for r in reports.iter().filter(|r| r.checkpoint.is_some()) {
            eprintln!("guest {} rebased from {} onto {}", r.guest, r.from, r.to);
        }
        return Err(e);
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
    g.rebase(&ctx.path, ctx.shared.clone(), &old, &new, prefer, dry_run)
}

/// What every guest's rebase uses, opened once: the repository, and the
/// view that holds gc off until each guest stands on its new root.
struct Ctx {
    path: std::path::PathBuf,
    repo: lvrepo_fs::Repository,
    // Dropped before the view, whose gc guard it reads under.
    shared: std::sync::Arc<dyn lvrepo_fs::object::ObjectStore>,
    _view: CheckpointView,
}

/// The most the shared objects' cache holds (less under memory pressure).
const SHARED_CACHE: usize = 256 << 20;

/// `f` on every name, `jobs` at a time; results in `names`' order. After an
/// error `stop` says is final, no further name is started (those are None).
fn each<T: Send>(
    names: &[String],
    jobs: usize,
    f: impl Fn(&str) -> Result<T, lvrepo_fs::Error> + Sync,
    stop: impl Fn(&lvrepo_fs::Error) -> bool + Sync,
) -> Vec<Option<Result<T, lvrepo_fs::Error>>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let (next, halt) = (AtomicUsize::new(0), AtomicBool::new(false));
    let slots: Vec<std::sync::Mutex<Option<Result<T, lvrepo_fs::Error>>>> = names.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, names.len().max(1)) {
            s.spawn(|| {
                while !halt.load(Relaxed) {
                    let i = next.fetch_add(1, Relaxed);
                    let Some(n) = names.get(i) else { break };
                    let r = f(n);
                    if r.as_ref().is_err_and(&stop) {
                        halt.store(true, Relaxed);
                    }
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    slots.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect()
}

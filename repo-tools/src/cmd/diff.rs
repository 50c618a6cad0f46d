//! `lvrepo diff IMAGE IMAGE`, and `lvrepo diff GUEST [CHECKPOINT|GUEST|IMAGE]`:
//! added (A), removed (D), content-changed (C) and metadata-only (M) paths,
//! or their counts (`--stat`). A guest is compared as it is now (its live
//! overlay, through its daemon if mounted) against its image by default; a
//! name is a guest before it is an image. Two guests are compared unmounted
//! (both folded in memory here). Volumes (guests and images) are compared by
//! byte ranges of their disk (`C OFFSET LENGTH`).
//! Inside a guest booted with its root on lvrepo, `lvrepo diff [AGAINST]`
//! asks the root's daemon.

use anyhow::{bail, Result};
use lvrepo_fs::diff::DiffEntry;
use lvrepo_fs::guest::{self, GuestHandle, Range};
use lvrepo_fs::walk::escape_path;
use lvrepo_fs::{Repository, TreeId};
use serde_json::json;

use crate::cli::Cli;
use crate::control::{self, call, Request, RootRequest};
use crate::json;

pub fn run(cli: &Cli, from: Option<&str>, to: Option<&str>, stat: bool, json: bool) -> Result<()> {
    if control::this_root(cli) {
        // Inside a guest booted with its root on lvrepo: `diff [AGAINST]` (or
        // `diff NAME [AGAINST]` as on the host), by the root's daemon.
        let guest = control::root_guest(None)?;
        let against = match (from, to) {
            (Some(f), t) if f == guest => t,
            (f, None) => f,
            (f, Some(_)) => bail!(crate::Exit(crate::exit::USAGE, format!("this root is guest {guest}, not {}", f.unwrap_or_default()))),
        };
        let rows: Vec<(String, String)> = serde_json::from_value(control::call_root(&RootRequest::Diff { against: against.map(str::to_string) })?)?;
        return print_rows(&rows, stat, json);
    }
    let Some(from) = from else { bail!(crate::Exit(crate::exit::USAGE, "name a guest, or two images".into())) };
    let p = super::repo_path(cli)?;
    let repo = super::open(cli, false)?;
    let rows: Vec<(String, String)> = match guest::find(&p, from) {
        Ok(rec) => {
            let g = GuestHandle::open(&p, from, false)?;
            if let Some(t) = to.filter(|t| t.parse::<u32>().is_err() && !t.starts_with("b3:")) {
                if guest::find(&p, t).is_ok() {
                    return guests(cli, &g, t, stat, json);
                }
            }
            let against = against(&repo, &g, to)?;
            if rec.volume {
                let ranges: Vec<Range> = match call(&rec.dir, &Request::Diff { against: against.to_string() })? {
                    Some(v) => serde_json::from_value(v)?,
                    None => g.diff_ranges_live(super::shared(&repo), None, against)?,
                };
                return print_ranges(&ranges, stat, json);
            }
            match call(&rec.dir, &Request::Diff { against: against.to_string() })? {
                Some(v) => serde_json::from_value(v)?,
                None => rows(&g.diff_live(super::shared(&repo), None, against)?),
            }
        }
        Err(lvrepo_fs::Error::GuestNotFound(_)) => {
            let Some(to) = to else { bail!(crate::Exit(crate::exit::USAGE, format!("{from} is not a guest; to compare images name two"))) };
            let a = super::resolve(&repo, from)?;
            let b = super::resolve(&repo, to)?;
            if a.volume && b.volume {
                return print_ranges(&lvrepo_fs::guest::changed_ranges(repo.objects(), &a.root_tree(), &b.root_tree())?, stat, json);
            }
            rows(&lvrepo_fs::diff::diff_trees(repo.objects(), &a.root_tree(), &b.root_tree())?)
        }
        Err(e) => return Err(e.into()),
    };
    print_rows(&rows, stat, json)
}

/// What guest `a` (as it is now) changed against guest `b` (as it is now),
/// as `diff GUEST IMAGE` is against the image; both unmounted.
fn guests(cli: &Cli, a: &GuestHandle, b: &str, stat: bool, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    for g in [a.rec.name.as_str(), b] {
        if super::guest::is_mounted(&guest::find(&p, g)?) {
            bail!(crate::Exit(crate::exit::BUSY, format!("guest {g} is mounted: two guests are compared unmounted (or checkpoint it and compare against the checkpoint)")));
        }
    }
    let repo = super::open(cli, false)?;
    let hb = GuestHandle::open(&p, b, false)?;
    let (store, ta, tb) = guest::fold_pair(a, &hb, super::shared(&repo))?;
    if a.rec.volume && hb.rec.volume {
        return print_ranges(&lvrepo_fs::guest::changed_ranges(&*store, &tb, &ta)?, stat, json);
    }
    print_rows(&rows(&lvrepo_fs::diff::diff_trees(&*store, &tb, &ta)?), stat, json)
}

/// What guest `g` is compared against: a checkpoint (number or `b3:` root
/// id prefix), another image, or (`None`) its own image.
pub fn against(repo: &Repository, g: &GuestHandle, to: Option<&str>) -> Result<TreeId> {
    Ok(match to {
        None => super::resolve(repo, &g.rec.image)?.root_tree(),
        Some(t) if t.parse::<u32>().is_ok() || t.starts_with("b3:") => g.checkpoint(t)?.root_tree(),
        Some(t) => super::resolve(repo, t)?.root_tree(),
    })
}

fn print_rows(rows: &[(String, String)], stat: bool, json: bool) -> Result<()> {
    if stat {
        let count = |c: &str| rows.iter().filter(|(_, x)| x == c).count();
        let (a, d, c, m) = (count("added"), count("removed"), count("content"), count("metadata"));
        if json {
            return json::print("diff", &json!({ "added_count": a, "removed_count": d, "content_count": c, "metadata_count": m }));
        }
        println!("{a} added, {d} removed, {c} changed in content, {m} in metadata only");
        return Ok(());
    }
    if json {
        let v: Vec<_> = rows.iter().map(|(p, c)| json!({ "path": p, "change": c })).collect();
        return json::print("diff", &json!({ "changes": v }));
    }
    for (path, change) in rows {
        let letter = match change.as_str() {
            "added" => 'A',
            "removed" => 'D',
            "content" => 'C',
            _ => 'M',
        };
        println!("{letter} {path}");
    }
    Ok(())
}

/// Changed byte ranges of a volume: `C OFFSET LENGTH` lines, or JSON
/// `[{"offset", "length"}]`.
fn print_ranges(ranges: &[Range], stat: bool, json: bool) -> Result<()> {
    if stat {
        let bytes: u64 = ranges.iter().map(|r| r.length).sum();
        if json {
            return json::print("diff", &json!({ "range_count": ranges.len(), "changed_bytes": bytes }));
        }
        println!("{} changed ranges, {bytes} bytes", ranges.len());
        return Ok(());
    }
    if json {
        return json::print("diff", &json!({ "ranges": ranges }));
    }
    for r in ranges {
        println!("C {} {}", r.offset, r.length);
    }
    Ok(())
}

/// Diff entries as (escaped path, change name): the form the daemon sends too.
pub fn rows(d: &[DiffEntry]) -> Vec<(String, String)> {
    d.iter()
        .map(|e| (escape_path(&e.path), serde_json::to_value(e.change).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()))
        .collect()
}

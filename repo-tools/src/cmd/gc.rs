//! `lvrepo gc [--dry-run]`: remove objects no image, guest or checkpoint
//! references (`--dry-run`: say what would go).

use anyhow::Result;
use lvrepo_fs::gc::GcReport;

use crate::cli::Cli;
use crate::output::human_bytes;
use crate::progress::Bar;

pub fn run(cli: &Cli, dry_run: bool, json: bool, grace: &str) -> Result<()> {
    let grace = parse_duration(grace).ok_or_else(|| crate::Exit(crate::exit::USAGE, format!("invalid --grace {grace:?}: a number and s, m, h or d")))?;
    {
        let repo = super::open(cli, true)?;
        if repo.remote().is_some() {
            return remote(cli, &repo, grace, dry_run, json);
        }
    }
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

/// `30s`, `10m`, `1h`, `2d` (a bare number: seconds).
fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = n.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(n.checked_mul(mult)?))
}

/// gc of a remote repository: sweep old marks, mark what is unreachable.
fn remote(cli: &Cli, repo: &lvrepo_fs::Repository, grace: std::time::Duration, dry_run: bool, json: bool) -> Result<()> {
    let r = lvrepo_fs::remote::gc::collect(repo, grace, dry_run)?;
    if json {
        return crate::json::print("gc", &crate::json::RemoteGc::new(&r, dry_run));
    }
    if !cli.quiet {
        let tail = if dry_run { " (dry run: nothing removed)" } else { "" };
        println!("{} packs, {} live; swept {} packs, marked {} unreachable packs (swept by a gc after the grace){tail}", r.packs, r.live, r.swept.len(), r.marked.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_durations() {
        assert_eq!(super::parse_duration("0s"), Some(std::time::Duration::ZERO));
        assert_eq!(super::parse_duration("90"), Some(std::time::Duration::from_secs(90)));
        assert_eq!(super::parse_duration("2h"), Some(std::time::Duration::from_secs(7200)));
        assert_eq!(super::parse_duration("1w"), None);
        assert_eq!(super::parse_duration("h"), None);
    }
}

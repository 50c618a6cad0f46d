//! `lvrepo rebase GUEST --image NEW [--dry-run] [--prefer guest|image]`:
//! move an unmounted guest onto another image version keeping its changes
//! (`lvrepo_fs::guest::GuestHandle::rebase`). A mounted guest is refused
//! (exit 6); paths changed on both sides are listed on stdout, one per
//! line (escaped), and without --prefer the rebase is refused (exit 7).

use anyhow::{bail, Result};
use lvrepo_fs::guest::{self, CheckpointView, GuestHandle};
use lvrepo_fs::merge::Prefer;
use lvrepo_fs::walk::escape_path;

use crate::cli::Cli;
use crate::output::print_json;

pub fn run(cli: &Cli, name: &str, image: &str, dry_run: bool, prefer: Option<&str>, json: bool) -> Result<()> {
    let prefer = match prefer {
        None => None,
        Some("guest") => Some(Prefer::Guest),
        Some("image") => Some(Prefer::Image),
        Some(o) => bail!(crate::Exit(crate::exit::USAGE, format!("--prefer takes guest or image, not {o:?}"))),
    };
    let p = super::repo_path(cli)?;
    let rec = guest::find(&p, name)?;
    if std::os::unix::net::UnixStream::connect(crate::control::socket_path(&rec.dir)).is_ok() {
        bail!(crate::Exit(crate::exit::BUSY, format!("guest {name} is mounted: rebase works on unmounted guests; unmount it first")));
    }
    let repo = super::open(cli, false)?;
    let new = super::resolve(&repo, image)?;
    let old = super::resolve(&repo, &rec.image)?;
    {
        // What the rebase reuses from the guest's store must be sound (exit 4).
        let h = GuestHandle::open(&p, name, false)?;
        lvrepo_fs::verify::refuse_unsound(&h, &repo, &[(h.state.base, format!("guest {name} base"))], "rebase")?;
    }
    // Holds gc off until the guest stands on its new root.
    let view = CheckpointView::open(&p)?;
    let mut g = GuestHandle::open(&p, name, true)?;
    let report = match g.rebase(&p, view.shared(), &old, &new, prefer, dry_run) {
        Ok(r) => r,
        Err(lvrepo_fs::Error::RebaseConflict { guest, image, paths }) => {
            for path in &paths {
                println!("{}", escape_path(path));
            }
            return Err(lvrepo_fs::Error::RebaseConflict { guest, image, paths }.into());
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        let paths: Vec<String> = report.conflicts.iter().map(|p| escape_path(p)).collect();
        let mut v = serde_json::to_value(&report)?;
        v["conflicts"] = serde_json::json!(paths);
        return print_json(&v);
    }
    for path in &report.conflicts {
        println!("{}", escape_path(path));
    }
    if !cli.quiet {
        let resolved = if report.conflicts.is_empty() { String::new() } else { format!(", {} conflicts resolved for the {}", report.conflicts.len(), if prefer == Some(Prefer::Image) { "image" } else { "guest" }) };
        match report.checkpoint {
            Some(cp) => eprintln!("guest {name} rebased from {} onto {}{resolved} (checkpoint {cp} holds its state before)", report.from, report.to),
            None => eprintln!("dry run: guest {name} would be rebased from {} onto {}{resolved}; nothing was changed", report.from, report.to),
        }
    }
    Ok(())
}

//! `lvrepo diff IMAGE IMAGE`: added (A), removed (D), content-changed (C) and
//! metadata-only (M) paths.

use anyhow::Result;
use lvrepo_fs::walk::escape_path;
use serde_json::json;

use crate::cli::Cli;
use crate::output::print_json;

pub fn run(cli: &Cli, from: &str, to: &str, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let a = super::resolve(&repo, from)?;
    let b = super::resolve(&repo, to)?;
    let changes = lvrepo_fs::diff::diff_trees(repo.objects(), &a.root_tree(), &b.root_tree())?;
    if json {
        let v: Vec<_> = changes.iter().map(|c| json!({ "path": escape_path(&c.path), "change": c.change })).collect();
        return print_json(&v);
    }
    for c in &changes {
        println!("{} {}", c.change.letter(), escape_path(&c.path));
    }
    Ok(())
}

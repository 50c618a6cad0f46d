//! `lvrepo receive [FILE|-] [--json]`: apply a stream; nothing is visible
//! until the whole stream is received and verified.

use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::Cli;

pub fn run(cli: &Cli, input: &Path, json: bool) -> Result<()> {
    let repo = super::open(cli, true)?;
    let r = if input == Path::new("-") {
        lvrepo_fs::stream::receive(&repo, BufReader::new(std::io::stdin()))?
    } else {
        let f = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
        lvrepo_fs::stream::receive(&repo, BufReader::new(f))?
    };
    if json {
        let v = serde_json::json!({ "kind": r.kind, "published": r.published, "object_count": r.objects, "new_object_count": r.new_objects });
        return crate::json::print("receive", &v);
    }
    if !cli.quiet {
        eprintln!("received {}: {} objects, {} new", r.published.join(", "), r.objects, r.new_objects);
    }
    Ok(())
}

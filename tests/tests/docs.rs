//! docs/operations.md stays true: its shell blocks marked `sh runnable` run,
//! in order, as one `bash -e` script in an empty scratch directory with the
//! built `lvrepo` first on PATH, and every command must succeed.

use std::path::Path;
use std::process::Command;

use lvrepo_tests::{lvrepo_bin, report, require_root};

/// The runnable blocks: (line of the opening fence, text).
fn runnable_blocks(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match cur.as_mut() {
            None if line.trim_end() == "```sh runnable" => cur = Some((i + 1, String::new())),
            None => {}
            Some(_) if line.trim_end() == "```" => out.extend(cur.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(cur.is_none(), "an unclosed runnable block");
    out
}

#[test]
fn the_operations_guide_examples_run() {
    require_root();
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/operations.md");
    let blocks = runnable_blocks(&doc);
    assert!(blocks.len() >= 3, "docs/operations.md has {} runnable blocks; the guide's first session has 3", blocks.len());
    let dir = tempfile::Builder::new().prefix("lvrepo-docs").tempdir().expect("tempdir");
    // Whatever fails, mounts the script made are let go before the temp dir.
    let mut script = String::from("set -euo pipefail\ntrap 'for m in mnt/*; do mountpoint -q \"$m\" && lvrepo umount \"$m\"; done; true' EXIT\n");
    for (line, text) in &blocks {
        script.push_str(&format!("echo '>>> docs/operations.md block at line {line}' >&2\n{text}"));
    }
    let bin_dir = lvrepo_bin().parent().expect("binary dir").to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash").arg("-x").arg("-c").arg(&script).current_dir(dir.path()).env("PATH", path).env_remove("LVREPO_REPO").output().expect("run bash");
    assert!(out.status.success(), "{}", report("the runnable blocks of docs/operations.md", &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (line, _) in &blocks {
        assert!(stderr.contains(&format!("block at line {line}")), "block at line {line} did not run");
    }
}

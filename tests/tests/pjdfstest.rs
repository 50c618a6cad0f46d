//! pjdfstest (the Rust rewrite, crate pjdfstest 0.2.2) on the host filesystem
//! (ext4) and on an lvrepo mount, compared case by case.
//!
//! Every case's result is parsed from both runs. lvrepo must have no failure,
//! and every case that passes on the host must pass on lvrepo, except the
//! explicit allow-list below of cases that skip themselves on any FUSE mount;
//! those must be reported `skipped` on lvrepo (never failed, never absent).
//!
//! Both runs get a secondary filesystem (`-s`, a directory on a different
//! filesystem) so the EXDEV cases of link and rename run instead of skipping.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{find_tool, run_with_timeout, Guest};

/// Cases that pass on ext4 but skip themselves on every FUSE filesystem, with
/// the reason pjdfstest prints. Nothing else may differ.
const FUSE_SELF_SKIPS: &[(&str, &str)] = &[
    // The case needs LINK_MAX from pathconf(_PC_LINK_MAX). glibc answers it
    // from a table keyed by statfs' f_type; FUSE's magic is not in the table,
    // so glibc returns its fallback 127 (LINUX_LINK_MAX), which pjdfstest reads
    // as "filesystem limit is unknown" and skips. A FUSE daemon has no way to
    // report LINK_MAX, so on any FUSE mount this case can only skip.
    ("link::link_count_max", "LINK_MAX"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Skipped(String),
    Failed(String),
    /// "PASSED UNEXPECTEDLY" / "failed as expected" (only with expected_failures).
    Other(String),
}

struct Run {
    cases: BTreeMap<String, Outcome>,
    summary: String,
    out: Output,
    secs: f64,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parse pjdfstest's output: one `name   result` line per case, followed by
/// tab-indented detail lines (skip reasons, failure messages).
fn parse(text: &str) -> (BTreeMap<String, Outcome>, String) {
    let text = strip_ansi(text);
    let mut cases: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut last: Option<String> = None;
    let mut summary = String::new();
    for line in text.lines() {
        if let Some(detail) = line.strip_prefix('\t') {
            if let Some(o) = last.as_ref().and_then(|n| cases.get_mut(n)) {
                match o {
                    Outcome::Skipped(s) | Outcome::Failed(s) | Outcome::Other(s) => {
                        s.push_str(detail.trim());
                        s.push('\n');
                    }
                    Outcome::Ok => {}
                }
            }
            continue;
        }
        if line.starts_with("Summary:") {
            summary = line.to_string();
            continue;
        }
        let t = line.trim_end();
        let parsed = [
            (" ok", Outcome::Ok),
            (" skipped", Outcome::Skipped(String::new())),
            (" FAILED", Outcome::Failed(String::new())),
            (" PASSED UNEXPECTEDLY", Outcome::Other("passed unexpectedly\n".into())),
            (" failed as expected", Outcome::Other("failed as expected\n".into())),
        ]
        .into_iter()
        .find_map(|(suffix, o)| t.strip_suffix(suffix).map(|name| (name.trim().to_string(), o)));
        if let Some((name, o)) = parsed {
            if !name.is_empty() && !name.contains(' ') {
                assert!(cases.insert(name.clone(), o).is_none(), "case {name} reported twice");
                last = Some(name);
                continue;
            }
        }
        last = None;
    }
    (cases, summary)
}

fn run_pjdfstest(tool: &Path, config: &Path, dir: &Path, secondary: &Path) -> Run {
    let mut cmd = Command::new(tool);
    cmd.arg("-c").arg(config).arg("-p").arg(dir).arg("-s").arg(secondary).env("NO_COLOR", "1");
    let t = Instant::now();
    let out = run_with_timeout(cmd, Duration::from_secs(1200), "pjdfstest");
    let secs = t.elapsed().as_secs_f64();
    let (cases, summary) = parse(&String::from_utf8_lossy(&out.stdout));
    // The parse must account for every case the summary counts.
    let total: usize = summary
        .split(',')
        .find_map(|p| p.trim().strip_suffix(" total").and_then(|n| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no summary line in pjdfstest output:\n{}", lvrepo_tests::report("pjdfstest", &out)));
    assert_eq!(cases.len(), total, "parsed {} cases but the summary says {total}: {summary}", cases.len());
    assert!(total > 300, "only {total} cases: is this pjdfstest 0.2.x?");
    Run { cases, summary, out, secs }
}

fn count(r: &Run, f: impl Fn(&Outcome) -> bool) -> usize {
    r.cases.values().filter(|o| f(o)).count()
}

/// The filesystem type of the mount holding `p` ("ext4", "fuse", ...).
fn fs_type(p: &Path) -> String {
    let out = Command::new("findmnt").args(["-n", "-o", "FSTYPE", "-T"]).arg(p).output().expect("findmnt");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn pjdfstest_on_lvrepo_passes_everything_ext4_passes() {
    let tool = find_tool("pjdfstest").expect("pjdfstest not installed: run scripts/setup.sh (cargo install --locked pjdfstest)");
    assert!(
        Command::new("id").arg("tests").output().expect("id").status.success(),
        "pjdfstest needs a user `tests`: run scripts/setup.sh"
    );
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("pjdfstest.toml");
    assert!(config.is_file(), "{} missing", config.display());

    let g = Guest::new(|src| {
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hostname"), b"golden\n").unwrap();
        std::fs::write(src.join("data.bin"), lvrepo_tests::fixture::pseudo_random(3, 300_000)).unwrap();
    });
    let host = g.r.scratch("host");
    let host_secondary = g.r.scratch("host-secondary");
    std::fs::create_dir(&host).unwrap();
    std::fs::create_dir(&host_secondary).unwrap();
    let host_fs = fs_type(&host);
    eprintln!("host scratch filesystem: {host_fs}");

    let m = g.mount();
    let lv = m.p("pjd");
    let lv_secondary = m.p("secondary");
    std::fs::create_dir(&lv).unwrap();
    std::fs::create_dir(&lv_secondary).unwrap();
    assert!(fs_type(&lv).starts_with("fuse"), "the lvrepo run must be on the FUSE mount, not {}", fs_type(&lv));

    // Host first (its secondary fs is the lvrepo mount), then lvrepo (its
    // secondary is the host fs).
    let ext = run_pjdfstest(&tool, &config, &host, &lv_secondary);
    let lvr = run_pjdfstest(&tool, &config, &lv, &host_secondary);
    // The image's own files must be untouched by the run.
    assert_eq!(std::fs::read(m.p("etc/hostname")).unwrap(), b"golden\n");
    m.umount();

    let summary = |name: &str, r: &Run| {
        format!(
            "{name}: {} passed, {} failed, {} skipped ({} other) of {} in {:.1} s   [{}]",
            count(r, |o| *o == Outcome::Ok),
            count(r, |o| matches!(o, Outcome::Failed(_))),
            count(r, |o| matches!(o, Outcome::Skipped(_))),
            count(r, |o| matches!(o, Outcome::Other(_))),
            r.cases.len(),
            r.secs,
            r.summary
        )
    };
    eprintln!("{}\n{}", summary(&format!("host ({host_fs})"), &ext), summary("lvrepo", &lvr));

    let mut problems = Vec::new();
    for (name, o) in &lvr.cases {
        match o {
            Outcome::Failed(msg) => problems.push(format!("{name}: FAILED on lvrepo\n    {}", msg.trim().replace('\n', "\n    "))),
            Outcome::Other(msg) => problems.push(format!("{name}: {} on lvrepo", msg.trim())),
            _ => {}
        }
    }
    for (name, eo) in &ext.cases {
        let lo = lvr.cases.get(name);
        if let Some((_, reason)) = FUSE_SELF_SKIPS.iter().find(|(n, _)| n == name) {
            match lo {
                Some(Outcome::Skipped(why)) if why.contains(reason) => {}
                other => problems.push(format!("{name}: expected a self-skip mentioning {reason:?} on FUSE, got {other:?}")),
            }
            continue;
        }
        if *eo == Outcome::Ok && lo != Some(&Outcome::Ok) {
            problems.push(format!("{name}: ok on {host_fs} but {lo:?} on lvrepo"));
        }
    }
    for name in lvr.cases.keys().filter(|n| !ext.cases.contains_key(*n)) {
        problems.push(format!("{name}: ran on lvrepo but not on the host"));
    }
    assert!(lvr.out.status.success() || !problems.is_empty(), "pjdfstest exited {:?} on lvrepo", lvr.out.status);
    assert!(problems.is_empty(), "{} problem(s):\n{}\n\nlvrepo daemon.log:\n{}", problems.len(), problems.join("\n"), g.log());
}

//! `lvrepo man --out DIR`: a man page per command and subcommand
//! (`lvrepo.1`, `lvrepo-guest.1`, `lvrepo-guest-create.1`, ...), generated
//! from the clap definition, each with EXAMPLES, EXIT STATUS, ENVIRONMENT
//! and FILES sections.

use std::path::Path;

use anyhow::{Context, Result};

pub fn run(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, page) in pages()? {
        let p = out.join(format!("{name}.1"));
        std::fs::write(&p, page).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Every page: (page name, roff text).
pub fn pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut root = crate::cli::command();
    // Built from the root: global options (--repo, -v, -q) reach every page.
    root.build();
    let mut out = Vec::new();
    // (command, its path below lvrepo); the tree is the CLI's, three deep.
    let mut stack = vec![(root, Vec::<String>::new())];
    while let Some((cmd, path)) = stack.pop() {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help" && !s.is_hide_set()) {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            stack.push((sub.clone(), p));
        }
        out.push(page(cmd, &path)?);
    }
    out.sort();
    Ok(out)
}

fn page(cmd: clap::Command, path: &[String]) -> Result<(String, Vec<u8>)> {
    let name = std::iter::once("lvrepo").chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join("-");
    let bin = std::iter::once("lvrepo").chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    let examples = crate::examples::examples(&path.join(" "));
    // The page's name is what its subcommand list refers to (NAME-SUB(1)).
    let cmd = cmd.display_name(name.clone()).bin_name(bin).after_help(None::<&str>).after_long_help(None::<&str>);
    let man = clap_mangen::Man::new(cmd.clone()).title(name.to_uppercase());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.get_subcommands().any(|s| s.get_name() != "help") {
        man.render_subcommands_section(&mut buf)?;
    }
    if let Some(ex) = examples {
        buf.extend_from_slice(b".SH EXAMPLES\n");
        for l in ex.lines() {
            buf.extend_from_slice(format!(".PP\n.nf\n{}\n.fi\n", roff_escape(l)).as_bytes());
        }
    }
    for (heading, paras) in crate::examples::SHARED {
        let heading = if heading.contains(' ') { format!("\"{heading}\"") } else { heading.to_string() };
        buf.extend_from_slice(format!(".SH {heading}\n").as_bytes());
        for p in *paras {
            buf.extend_from_slice(format!(".PP\n{}\n", roff_escape(p)).as_bytes());
        }
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf)?;
    }
    Ok((name, buf))
}

/// Text safe in a roff body: backslashes doubled, a leading `.` or `'`
/// (a request) escaped.
fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    /// Every command and subcommand has a page with its sections; every
    /// argument of every command says what it is.
    #[test]
    fn every_command_has_a_page_and_every_argument_a_description() {
        let pages = super::pages().unwrap();
        let mut want = vec!["lvrepo".to_string()];
        let mut missing = Vec::new();
        let mut stack = vec![(crate::cli::command(), "lvrepo".to_string())];
        while let Some((c, name)) = stack.pop() {
            for a in c.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
                if !a.get_help().is_some_and(|h| !h.to_string().trim().is_empty()) {
                    missing.push(format!("{name}: argument {} has no description", a.get_id()));
                }
            }
            if name != "lvrepo" && c.get_about().is_none() {
                missing.push(format!("{name} has no description"));
            }
            if !c.get_after_help().is_some_and(|h| h.to_string().starts_with("Examples:")) {
                missing.push(format!("{name} --help has no Examples (repo-tools/src/examples.rs)"));
            }
            for s in c.get_subcommands().filter(|s| !s.is_hide_set()) {
                let n = format!("{name}-{}", s.get_name());
                want.push(n.clone());
                stack.push((s.clone(), n));
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        for w in &want {
            let (_, page) = pages.iter().find(|(n, _)| n == w).unwrap_or_else(|| panic!("no man page {w}.1"));
            let text = String::from_utf8_lossy(page);
            for sec in [".SH NAME", ".SH SYNOPSIS", ".SH EXAMPLES", ".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
                assert!(text.contains(sec), "{w}.1 has no {sec} section:\n{text}");
            }
        }
        let guest = &pages.iter().find(|(n, _)| n == "lvrepo-guest").unwrap().1;
        assert!(String::from_utf8_lossy(guest).contains("lvrepo\\-guest\\-create(1)"), "lvrepo-guest.1 does not refer to lvrepo-guest-create(1)");
        assert_eq!(pages.len(), want.len(), "pages without a command");
    }
}

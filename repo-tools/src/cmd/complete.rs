//! `lvrepo __complete images|guests|args -- WORD...` (hidden): the names the
//! completion scripts (completions.rs) offer. `args` takes the words typed
//! so far (after `lvrepo`, before the one being completed), finds the
//! command they name with the CLI's own definition, and prints the guests or
//! images that fit the next word, one a line; nothing when no name fits.
//! Never fails loudly: a shell is waiting, and has no use for an error.

use std::io::Write;

use anyhow::Result;
use clap::{Arg, Command};

use crate::cli::Cli;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Guests,
    Images,
    Both,
}

/// Commands whose positional operand at an index names a guest or an image.
const OPERANDS: &[(&str, usize, Kind)] = &[
    ("guest show", 0, Kind::Guests),
    ("guest rm", 0, Kind::Guests),
    ("guest rename", 0, Kind::Guests),
    ("guest clone", 0, Kind::Guests),
    ("guest fsck", 0, Kind::Guests),
    ("checkpoint", 0, Kind::Guests),
    ("checkpoint prune", 0, Kind::Guests),
    ("checkpoint delete", 0, Kind::Guests),
    ("rollback", 0, Kind::Guests),
    ("backup", 0, Kind::Guests),
    ("backups", 0, Kind::Guests),
    ("forget", 0, Kind::Guests),
    ("harvest", 0, Kind::Guests),
    ("rebase", 0, Kind::Guests),
    ("ls", 0, Kind::Images),
    ("cat", 0, Kind::Images),
    ("export", 0, Kind::Images),
    ("delete", 0, Kind::Images),
    ("prefetch", 0, Kind::Images),
    ("tag", 0, Kind::Images),
    ("images", 0, Kind::Images),
    ("mount", 0, Kind::Images),
    ("diff", 0, Kind::Both),
    ("diff", 1, Kind::Both),
    ("log", 0, Kind::Both),
    ("send", 0, Kind::Both),
];

/// Options (by id) whose value names a guest or an image.
fn option_kind(id: &str) -> Option<Kind> {
    match id {
        "guest" => Some(Kind::Guests),
        "image" | "parent" => Some(Kind::Images),
        _ => None,
    }
}

pub fn run(cli: &Cli, what: &str, words: &[String]) -> Result<()> {
    let (kind, repo) = match what {
        "guests" => (Some(Kind::Guests), cli.repo.clone()),
        "images" => (Some(Kind::Images), cli.repo.clone()),
        "args" => {
            let (kind, repo) = next_word(words);
            (kind, repo.map(Into::into).or_else(|| cli.repo.clone()))
        }
        _ => return Err(crate::Exit(crate::exit::USAGE, format!("__complete: {what:?} is not images, guests or args")).into()),
    };
    let (Some(kind), Some(repo)) = (kind, repo) else { return Ok(()) };
    let mut out = Vec::new();
    if matches!(kind, Kind::Guests | Kind::Both) {
        for g in lvrepo_fs::guest::list(&repo).unwrap_or_default() {
            out.push(g.name);
        }
    }
    if matches!(kind, Kind::Images | Kind::Both) {
        if let Ok(r) = lvrepo_fs::Repository::open(&repo, false) {
            let images = r.images().unwrap_or_default();
            let mut names: Vec<String> = images.iter().map(|i| i.name.clone()).collect();
            names.dedup();
            out.extend(names);
            out.extend(images.iter().map(|i| i.label()));
        }
    }
    let mut so = std::io::stdout().lock();
    for n in out {
        writeln!(so, "{n}")?;
    }
    Ok(())
}

/// What the word after `words` names, and the repository they give
/// (`--repo PATH` or `--repo=PATH`).
fn next_word(words: &[String]) -> (Option<Kind>, Option<String>) {
    let mut root = crate::cli::command();
    // Built: global options (--repo, -v) are then every command's.
    root.build();
    let mut cmd: &Command = &root;
    let (mut path, mut operands, mut repo) = (Vec::<&str>::new(), 0usize, None);
    // The option whose value the next word is.
    let mut pending: Option<&Arg> = None;
    let mut only_operands = false;
    for w in words {
        if let Some(a) = pending.take() {
            if a.get_id() == "repo" {
                repo = Some(w.clone());
            }
            continue;
        }
        if only_operands || w == "-" || !w.starts_with('-') {
            match cmd.find_subcommand(w.as_str()).filter(|_| operands == 0 && !only_operands) {
                Some(sub) => {
                    cmd = sub;
                    path.push(sub.get_name());
                }
                None => operands += 1,
            }
        } else if w == "--" {
            only_operands = true;
        } else if let Some(long) = w.strip_prefix("--") {
            let (name, value) = long.split_once('=').map_or((long, None), |(n, v)| (n, Some(v)));
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(name));
            match (arg, value) {
                (Some(a), Some(v)) if a.get_id() == "repo" => repo = Some(v.to_string()),
                (Some(a), None) if a.get_action().takes_values() => pending = Some(a),
                _ => {}
            }
        } else {
            // -abc: flags, the last of which may take the next word.
            let last = w.chars().last();
            let arg = cmd.get_arguments().find(|a| a.get_short().is_some() && a.get_short() == last);
            if let Some(a) = arg.filter(|a| a.get_action().takes_values() && w.len() == 2) {
                pending = Some(a);
            }
        }
    }
    let kind = match pending {
        Some(a) => option_kind(a.get_id().as_str()),
        None => {
            let p = path.join(" ");
            OPERANDS.iter().find(|(c, i, _)| *c == p && *i == operands).map(|(_, _, k)| *k)
        }
    };
    (kind, repo)
}

#[cfg(test)]
mod tests {
    use super::{next_word, Kind};

    fn kind(words: &str) -> Option<Kind> {
        let w: Vec<String> = words.split_whitespace().map(str::to_string).collect();
        next_word(&w).0
    }

    #[test]
    fn finds_what_the_next_word_names() {
        assert_eq!(kind("guest show"), Some(Kind::Guests));
        assert_eq!(kind("--repo /r guest show"), Some(Kind::Guests));
        assert_eq!(kind("-v guest rm"), Some(Kind::Guests));
        assert_eq!(kind("guest show web01"), None);
        assert_eq!(kind("guest create web01 --image"), Some(Kind::Images));
        assert_eq!(kind("mount --guest"), Some(Kind::Guests));
        assert_eq!(kind("checkpoint"), Some(Kind::Guests));
        assert_eq!(kind("checkpoint -m x"), Some(Kind::Guests));
        assert_eq!(kind("checkpoint delete web01"), None);
        assert_eq!(kind("diff web:1"), Some(Kind::Both));
        assert_eq!(kind("ls"), Some(Kind::Images));
        assert_eq!(kind("guest"), None);
        assert_eq!(kind("init"), None);
        assert_eq!(next_word(&["--repo=/x".into(), "ls".into()]).1.as_deref(), Some("/x"));
        assert_eq!(next_word(&["--repo".into(), "/y".into(), "ls".into()]).1.as_deref(), Some("/y"));
    }
}

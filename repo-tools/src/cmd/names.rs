//! A new guest's name: valid (`lvrepo_fs::guest::check_guest_name`), and not
//! the name of any command or subcommand, which would make commands that take
//! a guest or a subcommand in the same place ambiguous (`checkpoint prune`,
//! `guest help`).

use anyhow::Result;
use clap::CommandFactory;

/// Refuse (exit 2) a name a new guest cannot have.
pub fn check_new_guest(name: &str) -> Result<()> {
    lvrepo_fs::guest::check_guest_name(name)?;
    if reserved().iter().any(|r| r == name) {
        return Err(crate::Exit(crate::exit::USAGE, format!("invalid guest name {name:?}: it is the name of an lvrepo command (`lvrepo help` lists them); choose another")).into());
    }
    Ok(())
}

/// Every command and subcommand name, at every level, and `help`.
pub fn reserved() -> Vec<String> {
    let mut out = vec!["help".to_string()];
    let mut stack = vec![crate::cli::Cli::command()];
    while let Some(c) = stack.pop() {
        for sub in c.get_subcommands() {
            out.push(sub.get_name().to_string());
            out.extend(sub.get_all_aliases().map(str::to_string));
            stack.push(sub.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn subcommands_are_reserved() {
        let r = super::reserved();
        for n in ["prune", "help", "create", "guest", "checkpoint", "serve", "rm"] {
            assert!(r.iter().any(|x| x == n), "{n} not reserved");
        }
        assert!(super::check_new_guest("prune").is_err());
        assert!(super::check_new_guest("web01").is_ok());
        assert!(super::check_new_guest("a/b").is_err() && super::check_new_guest("-x").is_err() && super::check_new_guest(".x").is_err());
    }
}

//! `lvrepo completions SHELL`: a completion script on stdout.

use anyhow::Result;

pub fn run(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = crate::cli::command();
    clap_complete::generate(shell, &mut cmd, "lvrepo", &mut std::io::stdout());
    Ok(())
}

//! `lvrepo completions SHELL`: a completion script on stdout. clap's script
//! completes commands and options; for bash, zsh and fish a hook is added
//! that asks `lvrepo __complete args -- WORDS` (complete.rs), run as the
//! binary the user typed, for the guest or image names that fit the word
//! being completed, and falls back to clap's completion when none do.

use std::io::Write;

use anyhow::Result;
use clap_complete::Shell;

const BASH: &str = r#"
# Guest and image names from the repository (lvrepo __complete). Names with
# ':' (NAME:VERSION) are left out: bash splits words at ':'.
_lvrepo_names() {
    local cur="${COMP_WORDS[COMP_CWORD]}" n all=() names=()
    if [[ "$cur" != -* ]]; then
        mapfile -t all < <("${COMP_WORDS[0]}" __complete args -- "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)
        for n in "${all[@]}"; do
            [[ "$n" == *:* ]] || names+=("$n")
        done
    fi
    if (( ${#names[@]} )); then
        # Set here only: clap's function needs the default IFS.
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "${names[*]}" -- "$cur"))
    else
        _lvrepo "$@"
    fi
}
"#;

const ZSH: &str = r#"
# Guest and image names from the repository (lvrepo __complete).
_lvrepo_names() {
    local -a names
    if [[ $PREFIX != -* ]]; then
        names=(${(f)"$(${words[1]} __complete args -- ${words[2,CURRENT-1]} 2>/dev/null)"})
    fi
    if (( ${#names} )); then
        compadd -a names
    else
        _lvrepo "$@"
    fi
}
"#;

const FISH: &str = r#"
# Guest and image names from the repository (lvrepo __complete).
function __lvrepo_names
    set -l words (commandline -opc)
    $words[1] __complete args -- $words[2..-1] 2>/dev/null
end
complete -c lvrepo -f -a '(__lvrepo_names)'
"#;

pub fn run(shell: Shell) -> Result<()> {
    std::io::stdout().lock().write_all(script(shell).as_bytes())?;
    Ok(())
}

/// The script for `shell`: clap's, of the visible commands, with the hook.
fn script(shell: Shell) -> String {
    let full = crate::cli::command();
    // clap_complete offers hidden subcommands too: leave them out (__complete).
    let mut cmd = clap::Command::new("lvrepo")
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .subcommand_required(full.is_subcommand_required_set());
    if full.get_version().is_some() {
        cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    }
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "lvrepo", &mut buf);
    with_names(shell, &String::from_utf8_lossy(&buf))
}

/// clap's `script` with the names hook of `shell` bound in place of clap's
/// function (where the shell has one).
fn with_names(shell: Shell, script: &str) -> String {
    match shell {
        Shell::Bash => format!("{script}{BASH}").replace("-F _lvrepo ", "-F _lvrepo_names "),
        Shell::Zsh => {
            // clap's tail binds `_lvrepo`: the hook goes before it, bound instead.
            let at = script.rfind("if [ \"$funcstack[1]\" = \"_lvrepo\" ]").unwrap_or(script.len());
            let (head, tail) = script.split_at(at);
            format!("{head}{ZSH}\n{}", tail.replace("_lvrepo \"$@\"", "_lvrepo_names \"$@\"").replace("compdef _lvrepo lvrepo", "compdef _lvrepo_names lvrepo"))
        }
        Shell::Fish => format!("{script}{FISH}"),
        _ => script.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap_complete::Shell;

    use super::script;

    #[test]
    fn scripts_bind_the_names_hook() {
        let bash = script(Shell::Bash);
        assert!(bash.contains("complete -F _lvrepo_names ") && !bash.contains("-F _lvrepo "), "bash binds clap's function directly");
        let zsh = script(Shell::Zsh);
        assert!(zsh.contains("compdef _lvrepo_names lvrepo") && !zsh.contains("compdef _lvrepo lvrepo"), "zsh binds clap's function directly");
        assert!(zsh.find("_lvrepo_names() {") < zsh.find("compdef _lvrepo_names"), "zsh binds the hook before defining it");
        assert!(script(Shell::Fish).contains("(__lvrepo_names)"));
        for (name, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &script(Shell::Fish))] {
            assert!(!text.contains(" __complete completions") && !text.contains("'__complete:") && !text.contains("(__complete)") && !text.contains("\"__complete\""), "{name} offers the hidden command");
        }
    }
}

//! `lvrepo man --out DIR`: man pages generated from the clap definition.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

pub fn run(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cmd = crate::cli::Cli::command();
    write_page(&cmd, "lvrepo", out)?;
    for sub in cmd.get_subcommands() {
        let name = format!("lvrepo-{}", sub.get_name());
        let sub = sub.clone().name(&*Box::leak(name.clone().into_boxed_str()));
        write_page(&sub, &name, out)?;
    }
    Ok(())
}

fn write_page(cmd: &clap::Command, name: &str, out: &Path) -> Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    let p = out.join(format!("{name}.1"));
    std::fs::write(&p, buf).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

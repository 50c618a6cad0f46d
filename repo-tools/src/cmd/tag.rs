//! `lvrepo tag NAME:VERSION NAME:CHANNEL`: point a channel at a version.

use anyhow::{bail, Result};
use lvrepo_fs::ImageRef;

use crate::cli::Cli;

pub fn run(cli: &Cli, image: &str, channel: &str, json: bool) -> Result<()> {
    let r: ImageRef = image.parse()?;
    let Some((name, ch)) = channel.split_once(':') else {
        bail!(crate::Exit(crate::exit::USAGE, format!("name the channel as NAME:CHANNEL, got {channel:?}")));
    };
    if r.version.is_none() || name != r.name {
        bail!(crate::Exit(crate::exit::USAGE, format!("usage: tag NAME:VERSION NAME:CHANNEL (one image name), got {image} {channel}")));
    }
    let repo = super::open(cli, true)?;
    let c = repo.set_channel(&r, ch)?;
    if json {
        return crate::json::print("tag", &crate::json::channel(&c));
    }
    if !cli.quiet {
        eprintln!("{}:{} -> {}:{}", c.name, c.channel, c.name, c.version);
    }
    Ok(())
}

//! `lvrepo serve --socket PATH [--roles FILE]`: the local service through
//! which unprivileged users act in their roles (`crate::service`).

use std::path::Path;

use anyhow::Result;

use crate::cli::Cli;

pub fn run(cli: &Cli, socket: &Path, roles: Option<&Path>) -> Result<()> {
    crate::service::serve(cli, socket, roles)
}

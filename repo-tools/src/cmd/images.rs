//! `lvrepo images`: list every image version.

use anyhow::Result;

use crate::cli::Cli;
use crate::output::{human_bytes, print_json, utc};

pub fn run(cli: &Cli, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let images = repo.images()?;
    if json {
        return print_json(&images);
    }
    println!("{:<32} {:>8} {:>10}  {:<20}  MESSAGE", "IMAGE", "ENTRIES", "SIZE", "CREATED");
    for i in images {
        println!("{:<32} {:>8} {:>10}  {:<20}  {}", i.label(), i.files, human_bytes(i.logical_bytes), utc(i.created), i.message);
    }
    Ok(())
}

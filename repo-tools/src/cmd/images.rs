//! `lvrepo images [NAME]`: list every image version, or those of NAME
//! (exit 3 when there is none).

use anyhow::Result;

use crate::cli::Cli;
use crate::json::{self, Image};
use crate::output::{human_bytes, utc};

pub fn run(cli: &Cli, name: Option<&str>, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let mut images = repo.images()?;
    if let Some(n) = name {
        let r: lvrepo_fs::ImageRef = n.parse()?;
        images.retain(|i| i.name == r.name && r.version.is_none_or(|v| v == i.version));
        if images.is_empty() {
            return Err(lvrepo_fs::Error::ImageNotFound(n.to_string()).into());
        }
    }
    if json {
        return json::print("images", &serde_json::json!({ "images": images.iter().map(Image::of).collect::<Vec<_>>() }));
    }
    println!("{:<32} {:>8} {:>10}  {:<20}  MESSAGE", "IMAGE", "ENTRIES", "SIZE", "CREATED");
    for i in images {
        println!("{:<32} {:>8} {:>10}  {:<20}  {}", i.label(), i.files, human_bytes(i.logical_bytes), utc(i.created), i.message);
    }
    Ok(())
}

//! `lvrepo stats`: logical vs stored bytes, dedup ratio, unique bytes per image.

use anyhow::Result;

use crate::cli::Cli;
use crate::output::{human_bytes, print_json};

pub fn run(cli: &Cli, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let s = lvrepo_fs::stats::stats(&repo)?;
    if json {
        return print_json(&s);
    }
    println!("logical bytes  {} ({})", s.logical_bytes, human_bytes(s.logical_bytes));
    println!("stored bytes   {} ({})", s.stored_bytes, human_bytes(s.stored_bytes));
    println!("objects        {} ({} compressed payload)", s.objects, human_bytes(s.object_bytes));
    println!("dedup ratio    {:.2}", s.dedup_ratio);
    println!();
    println!("{:<32} {:>8} {:>12} {:>12}", "IMAGE", "ENTRIES", "LOGICAL", "UNIQUE");
    for i in &s.images {
        println!("{:<32} {:>8} {:>12} {:>12}", i.image, i.files, human_bytes(i.logical_bytes), human_bytes(i.unique_bytes));
    }
    Ok(())
}

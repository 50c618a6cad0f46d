//! `lvrepo stats`: logical vs stored bytes, dedup ratio, unique bytes per image.

use anyhow::Result;

use crate::cli::Cli;
use crate::output::{human_bytes, print_json};

pub fn run(cli: &Cli, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let s = lvrepo_fs::stats::stats(&repo)?;
    // Each guest's own bytes: its overlay and its guest-local store, which
    // hold only what is unique to it.
    let guests: Vec<serde_json::Value> = lvrepo_fs::guest::list(repo.path())?
        .into_iter()
        .map(|g| serde_json::json!({ "guest": g.name, "image": g.image, "unique_bytes": lvrepo_fs::repo::dir_usage(&g.dir) }))
        .collect();
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["guests"] = serde_json::Value::Array(guests);
        return print_json(&v);
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
    if !guests.is_empty() {
        println!();
        println!("{:<32} {:<28} {:>12}", "GUEST", "IMAGE", "UNIQUE");
        for g in &guests {
            println!("{:<32} {:<28} {:>12}", g["guest"].as_str().unwrap_or(""), g["image"].as_str().unwrap_or(""), human_bytes(g["unique_bytes"].as_u64().unwrap_or(0)));
        }
    }
    Ok(())
}

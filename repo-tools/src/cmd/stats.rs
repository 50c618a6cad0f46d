//! `lvrepo stats`: logical vs stored bytes, dedup ratio, unique bytes per image.

use anyhow::Result;

use crate::cli::Cli;
use crate::json::{self, Guest, Image};
use crate::output::human_bytes;

pub fn run(cli: &Cli, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let s = lvrepo_fs::stats::stats(&repo)?;
    // Each guest's own bytes: its overlay and its guest-local store, which
    // hold only what is unique to it.
    let guests: Vec<(lvrepo_fs::guest::GuestRecord, u64)> = lvrepo_fs::guest::list(repo.path())?.into_iter().map(|g| { let u = lvrepo_fs::repo::dir_usage(&g.dir); (g, u) }).collect();
    if json {
        let records = repo.images()?;
        let image = |label: &str| records.iter().find(|r| r.label() == label).map_or_else(|| Image::label(label), Image::of);
        let images: Vec<_> = s.images.iter().map(|i| serde_json::json!({ "image": image(&i.image), "unique_bytes": i.unique_bytes })).collect();
        let guests: Vec<_> = guests.iter().map(|(g, u)| serde_json::json!({ "guest": Guest::of(g), "unique_bytes": u })).collect();
        return json::print("stats", &serde_json::json!({
            "logical_bytes": s.logical_bytes,
            "disk_bytes": s.stored_bytes,
            "object_count": s.objects,
            "stored_bytes": s.object_bytes,
            "dedup_ratio": s.dedup_ratio,
            "image_usage": images,
            "guest_usage": guests,
        }));
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
            println!("{:<32} {:<28} {:>12}", g.0.name, g.0.image, human_bytes(g.1));
        }
    }
    Ok(())
}

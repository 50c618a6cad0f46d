//! `lvrepo prefetch IMAGE [PATH...] --file-cache DIR`: fill the host file
//! cache with an image's files ahead of the guests that will read them (all
//! of them, or those below each PATH), so first opens are already native.

use std::path::Path;

use anyhow::Result;
use lvrepo_fs::filecache::FileCache;
use lvrepo_fs::walk::{escape_path, walk_entry};
use lvrepo_fs::{Error, Kind};
use serde_json::json;

use crate::cli::Cli;
use crate::json::{self, Image};

pub fn run(cli: &Cli, image: &str, paths: &[std::ffi::OsString], dir: &Path, budget: u64, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let img = super::resolve(&repo, image)?;
    let store = repo.objects();
    let cache = FileCache::open(dir, budget)?;
    let (mut files, mut bytes, mut skipped) = (0u64, 0u64, 0u64);
    let mut visit = |e: &lvrepo_fs::Entry| -> lvrepo_fs::Result<()> {
        if e.kind == Kind::File && e.size > 0 {
            match cache.get(store, &e.content, e.size)? {
                Some(_) => (files, bytes) = (files + 1, bytes + e.size),
                None => skipped += 1,
            }
        }
        Ok(())
    };
    let roots: Vec<Vec<u8>> = if paths.is_empty() { vec![b"/".to_vec()] } else { paths.iter().map(|p| p.as_encoded_bytes().to_vec()).collect() };
    for p in &roots {
        let e = lvrepo_fs::tree::lookup(store, &img.root_tree(), p)?
            .ok_or_else(|| Error::PathNotFound { image: img.label(), path: escape_path(p) })?;
        visit(&e)?;
        let base = p.strip_suffix(b"/").unwrap_or(p);
        walk_entry(store, &e, base, &mut |_, e| visit(e))?;
    }
    if json {
        return json::print("prefetch", &json!({ "image": Image::of(&img), "file_count": files, "cached_bytes": bytes, "skipped_count": skipped, "cache_dir": json::path(dir) }));
    }
    if !cli.quiet {
        eprintln!("{files} files ({bytes} bytes) of {} in the host file cache {}{}", img.label(), dir.display(), if skipped > 0 { format!("; {skipped} could not be cached (see the log)") } else { String::new() });
    }
    Ok(())
}

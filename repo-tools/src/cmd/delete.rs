//! `lvrepo delete NAME:VERSION [--force]`: remove an image ref. The version
//! must be named explicitly, so a typo cannot delete "the latest" by
//! accident; an image a guest stands on is refused (exit 6, naming the
//! guests) unless `--force` (gc keeps what the guests use either way).

use anyhow::{bail, Result};
use lvrepo_fs::guest::GuestHandle;
use lvrepo_fs::ImageRef;

use crate::cli::Cli;
use crate::json::{self, Guest, Image};

pub fn run(cli: &Cli, image: &str, force: bool, json: bool) -> Result<()> {
    let r: ImageRef = image.parse()?;
    if r.version.is_none() {
        bail!(crate::Exit(crate::exit::USAGE, format!("name the version to delete: {image}:VERSION")));
    }
    let repo = super::open(cli, true)?;
    let img = repo.resolve(&r)?;
    // Another image with the same root keeps the guests' trees named.
    let twin = repo.images()?.iter().any(|i| i.root == img.root && i.label() != img.label());
    let users = users_of(cli, &img, twin)?;
    if !users.is_empty() {
        let named = users.iter().map(|g| format!("guest {g}")).collect::<Vec<_>>().join(", ");
        if !force {
            return Err(lvrepo_fs::Error::ImageInUse { image: img.label(), users: named }.into());
        }
        tracing::warn!(image = %img.label(), users = %named, "deleting an image guests stand on (--force)");
    }
    let rec = repo.delete_image(&r)?;
    if json {
        let guests: Vec<_> = users.iter().map(|g| Guest::named(g)).collect();
        return json::print("delete", &serde_json::json!({ "image": Image::of(&rec), "guests": guests }));
    }
    if !cli.quiet {
        eprintln!("deleted {}; run `lvrepo gc` to reclaim its space", rec.label());
    }
    Ok(())
}

/// The guests that stand on `img`: created from it, or (unless a `twin`
/// image keeps its root) with its root as their base or a checkpoint.
fn users_of(cli: &Cli, img: &lvrepo_fs::ImageRecord, twin: bool) -> Result<Vec<String>> {
    let p = super::repo_path(cli)?;
    let mut users = Vec::new();
    for g in lvrepo_fs::guest::list(&p)? {
        let stands = g.image == img.label() || !twin && GuestHandle::open(&p, &g.name, false).and_then(|h| h.roots()).is_ok_and(|roots| roots.contains(&img.root_tree()));
        if stands {
            users.push(g.name);
        }
    }
    Ok(users)
}

//! `lvrepo guest create|list|show|rm|rename` (`fsck`: see `fsck.rs`,
//! `clone`: `guest_clone.rs`).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use lvrepo_fs::guest::{self, GuestHandle};
use serde_json::json;

use crate::cli::{Cli, GuestCmd};
use crate::json::{self, Guest};
use crate::output::utc;

pub fn run(cli: &Cli, cmd: &GuestCmd) -> Result<()> {
    match cmd {
        GuestCmd::Create { name, image, overlay, set, file, values, owner, json } => {
            let owner = match owner {
                Some(u) => Some(crate::service::uid_of(u)?),
                None => crate::service::caller().map(|c| c.uid),
            };
            create(cli, name, image, overlay.clone(), set, file, values.as_ref(), owner, *json)
        }
        GuestCmd::List { json } => list(cli, *json),
        GuestCmd::Show { name, json } => show(cli, name, *json),
        GuestCmd::Rm { name } => rm(cli, name),
        GuestCmd::Fsck { name, repair, json } => super::fsck::run(cli, name, *repair, *json),
        GuestCmd::Rename { old, new } => rename(cli, old, new),
        GuestCmd::Clone { source, name, overlay, json } => super::guest_clone::run(cli, source, name, overlay.clone(), *json),
    }
}

#[allow(clippy::too_many_arguments)]
fn create(cli: &Cli, name: &str, image: &str, overlay: Option<PathBuf>, set: &[String], files: &[String], values: Option<&PathBuf>, owner: Option<u32>, json: bool) -> Result<()> {
    super::names::check_new_guest(name)?;
    // gc waits until the guest is registered (and its image a root gc keeps).
    let _guard = lvrepo_fs::repo::GcGuard::take(&super::repo_path(cli)?, false)?;
    let repo = super::open(cli, false)?;
    let img = super::resolve(&repo, image)?;
    lvrepo_fs::sign::check(&repo, &img)?;
    // Personalisation, parsed before anything is created.
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(v) = values {
        let text = std::fs::read_to_string(v).with_context(|| format!("reading {}", v.display()))?;
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            pairs.push(split_kv(l)?);
        }
    }
    for s in set {
        pairs.push(split_kv(s)?);
    }
    let mut put = guest::personal_files(&pairs);
    for f in files {
        let (dest, src) = f.split_once('=').with_context(|| format!("--file wants DEST=SRC, got {f}"))?;
        if !dest.starts_with('/') {
            bail!("--file destination must be absolute: {dest}");
        }
        let bytes = std::fs::read(src).with_context(|| format!("reading {src}"))?;
        let mode = std::fs::metadata(src).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)?;
        put.push((std::ffi::OsStr::new(dest).as_bytes().to_vec(), bytes, mode));
    }
    let dir = overlay.unwrap_or_else(|| PathBuf::from("/var/lib/lvrepo/guests").join(name));
    let g = GuestHandle::create_owned(&repo, name, &img, &dir, pairs, owner)?;
    if !put.is_empty() {
        g.personalise(super::shared(&repo), &put)?;
    }
    if json {
        json::print("guest create", &json!({ "guest": Guest::of(&g.rec).with_state(&g.state) }))
    } else {
        if !cli.quiet {
            eprintln!("created guest {name} from {} in {}", img.label(), g.dir().display());
        }
        Ok(())
    }
}

fn split_kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').with_context(|| format!("expected KEY=VALUE, got {s}"))?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-') {
        bail!("bad key {k:?}");
    }
    Ok((k.to_string(), v.to_string()))
}

fn rename(cli: &Cli, old: &str, new: &str) -> Result<()> {
    super::names::check_new_guest(new)?;
    let p = super::repo_path(cli)?;
    let rec = guest::find(&p, old)?;
    if is_mounted(&rec) {
        bail!(crate::Exit(crate::exit::BUSY, format!("guest {old} is mounted; unmount it first")));
    }
    guest::rename(&p, old, new)?;
    if !cli.quiet {
        eprintln!("renamed guest {old} to {new} (its directory stays {})", rec.dir.display());
    }
    Ok(())
}

pub(crate) fn is_mounted(g: &guest::GuestRecord) -> bool {
    std::os::unix::net::UnixStream::connect(crate::control::socket_path(&g.dir)).is_ok()
}

fn list(cli: &Cli, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let all = guest::list(&p)?;
    if json {
        let v: Vec<_> = all.iter().map(|g| Guest { mounted: Some(is_mounted(g)), ..Guest::of(g) }).collect();
        return json::print("guest list", &json!({ "guests": v }));
    }
    println!("{:<24} {:<28} {:<8} DIR", "GUEST", "IMAGE", "MOUNTED");
    for g in all {
        println!("{:<24} {:<28} {:<8} {}", g.name, g.image, if is_mounted(&g) { "yes" } else { "no" }, g.dir.display());
    }
    Ok(())
}

fn show(cli: &Cli, name: &str, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let g = GuestHandle::open(&p, name, false)?;
    let cps = g.checkpoints()?;
    let mounted = is_mounted(&g.rec);
    if json {
        let guest = Guest { mounted: Some(mounted), checkpoint_count: Some(cps.len() as u64), local_bytes: Some(g.local().disk_usage()?), ..Guest::of(&g.rec).with_state(&g.state) };
        return json::print("guest show", &json!({ "guest": guest, "checkpoints": cps.iter().map(json::Checkpoint::of).collect::<Vec<_>>() }));
    }
    println!("guest       {}", g.rec.name);
    println!("image       {}", g.rec.image);
    println!("directory   {}", g.dir().display());
    println!("created     {}", utc(g.rec.created));
    if let Some(o) = g.rec.owner {
        println!("owner       {}", crate::service::user_name(o));
    }
    println!("base        {}", g.state.base.0);
    println!("generation  {}", g.state.generation);
    println!("mounted     {}", if mounted { "yes" } else { "no" });
    println!("checkpoints {}", cps.len());
    println!("local bytes {}", g.local().disk_usage()?);
    Ok(())
}

fn rm(cli: &Cli, name: &str) -> Result<()> {
    let p = super::repo_path(cli)?;
    let rec = guest::find(&p, name)?;
    if is_mounted(&rec) {
        bail!(crate::Exit(crate::exit::BUSY, format!("guest {name} is mounted; unmount it first")));
    }
    // Not through `GuestHandle::open`: a guest whose STATE is damaged can
    // be removed too.
    GuestHandle::remove_named(&p, name)?;
    // On a remote repository, this host's lease lets go of what only this
    // guest stood on (updated by the sync of a writable open).
    if lvrepo_fs::remote::link_of(&p).ok().flatten().is_some() {
        if let Err(e) = super::open(cli, true) {
            tracing::warn!(guest = name, error = %e, "the remote repository's lease is updated at the next sync");
        }
    }
    if !cli.quiet {
        eprintln!("removed guest {name}");
    }
    Ok(())
}

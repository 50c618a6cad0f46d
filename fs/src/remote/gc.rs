//! gc of a remote repository, in two phases, whole packs only.
//!
//! A pack is live when any object reachable from any ref in the bucket, or
//! from an image any host's lease names (guests standing on it), is in it
//! (by every pack's `.idx`, not only where this host's index points:
//! another host may read the same object from another pack). Each run:
//! 1. sweep: for every mark `gc/mark-<secs>-<pid>` older than the grace,
//!    delete the packs it lists that are still unreachable (`.idx` first,
//!    so the pack turns invisible before it goes), then the mark;
//! 2. mark: write a new mark listing the packs unreachable now.
//!
//! A pack uploaded after a mark is not in it, so nothing a publisher is
//! uploading is swept. A publisher whose image would reach an object only
//! through a marked pack copies that object into a new pack first
//! ([`keep_out_of_marks`]), so a sweep racing its ref cannot take it.
//! Packs partly live are kept whole (no repacking in the bucket).

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::ObjectStoreExt;

use super::sync::{get, list, rel_name};
use super::{idx, Remote};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::repo::{ImageRecord, Repository};

#[derive(Debug, Default, serde::Serialize)]
pub struct RemoteGcReport {
    /// Remote packs in the bucket, and how many are live.
    pub packs: usize,
    pub live: usize,
    /// Packs listed in the mark this run wrote.
    pub marked: Vec<String>,
    /// Packs deleted by this run's sweep.
    pub swept: Vec<String>,
    /// Hosts' leases read, and the images they name.
    pub leases: usize,
    pub leased_images: usize,
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Every object reachable from the refs the cache mirrors and from the
/// images hosts' leases name; how many leases and leased images.
fn reachable(repo: &Repository, remote: &Remote) -> Result<(HashSet<Digest>, usize, usize)> {
    let mut seen = HashSet::new();
    let mut roots: HashSet<crate::digest::TreeId> = HashSet::new();
    for rec in repo.images()? {
        crate::reach::mark(repo.objects(), &rec.root_tree(), &mut seen)?;
        roots.insert(rec.root_tree());
    }
    let leases = super::lease::all(remote)?;
    let mut leased = HashSet::new();
    for l in &leases {
        for (label, root) in &l.images {
            leased.insert(*root);
            if !roots.insert(*root) {
                continue;
            }
            // A root no pack holds any more is gone already; one that is
            // there is marked whole, and any failure in it stops the gc.
            if !repo.objects().contains(root.digest())? {
                tracing::warn!(host = %l.host, image = %label, "a lease names an image no longer in the bucket; ignored");
                continue;
            }
            crate::reach::mark(repo.objects(), root, &mut seen)?;
        }
    }
    Ok((seen, leases.len(), leased.len()))
}

/// Run gc on the remote repository `repo` caches (opened writable, so
/// synced). `dry_run` computes without deleting or marking.
pub fn collect(repo: &Repository, grace: Duration, dry_run: bool) -> Result<RemoteGcReport> {
    let remote = repo.packs().remote().ok_or_else(|| Error::NotSupported { path: repo.path().display().to_string(), why: "not a remote repository" })?.clone();
    let (seen, leases, leased_images) = reachable(repo, &remote)?;
    let mut rep = RemoteGcReport { leases, leased_images, ..Default::default() };
    let mut dead = HashSet::new();
    for m in list(&remote, "packs")? {
        let rel = rel_name(&remote, &m);
        let Some(name) = rel.strip_prefix("packs/").and_then(|n| n.strip_suffix(".idx")) else { continue };
        rep.packs += 1;
        let Some(b) = get(&remote, &rel)? else { continue };
        let (_, entries) = idx::decode(&b)?;
        if entries.iter().any(|e| seen.contains(&e.id)) {
            rep.live += 1;
        } else {
            dead.insert(name.to_string());
        }
    }
    let t = now();
    for m in list(&remote, "gc")? {
        let rel = rel_name(&remote, &m);
        let Some(secs) = rel.strip_prefix("gc/mark-").and_then(|s| s.split('-').next()).and_then(|s| s.parse::<u64>().ok()) else { continue };
        if t.saturating_sub(secs) < grace.as_secs() {
            continue;
        }
        let Some(body) = get(&remote, &rel)? else { continue };
        for name in String::from_utf8_lossy(&body).lines().filter(|n| dead.contains(*n)) {
            if !dry_run {
                delete(&remote, &format!("packs/{name}.idx"))?;
                delete(&remote, &format!("packs/{name}.pack"))?;
            }
            tracing::info!(remote_pack = name, "swept unreachable pack");
            rep.swept.push(name.to_string());
        }
        if !dry_run {
            delete(&remote, &rel)?;
        }
    }
    for s in &rep.swept {
        dead.remove(s);
    }
    rep.marked = dead.into_iter().collect();
    rep.marked.sort();
    if !dry_run && !rep.marked.is_empty() {
        let rel = format!("gc/mark-{t}-{}", std::process::id());
        let body = rep.marked.join("\n") + "\n";
        remote.block(remote.bucket().put(&remote.path(&rel), body.into_bytes().into())).map_err(|e| remote.err("writing", &rel, e))?;
    }
    tracing::info!(packs = rep.packs, live = rep.live, marked = rep.marked.len(), swept = rep.swept.len(), leases = rep.leases, "remote gc done");
    Ok(rep)
}

fn delete(remote: &Remote, rel: &str) -> Result<()> {
    match remote.block(remote.bucket().delete(&remote.path(rel))) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(remote.err("deleting", rel, e)),
    }
}

/// Before `rec`'s ref is created: the objects it reaches that this host
/// reads from a pack some gc mark lists are copied into a new pack, and
/// that pack uploaded, so a sweep cannot take what the new ref needs.
pub(crate) fn keep_out_of_marks(repo: &Repository, remote: &Remote, rec: &ImageRecord) -> Result<()> {
    let marks = list(remote, "gc")?;
    if marks.is_empty() {
        return Ok(());
    }
    let mut marked = HashSet::new();
    for m in marks {
        if let Some(body) = get(remote, &rel_name(remote, &m))? {
            marked.extend(String::from_utf8_lossy(&body).lines().map(str::to_string));
        }
    }
    let mut seen = HashSet::new();
    crate::reach::mark(repo.objects(), &rec.root_tree(), &mut seen)?;
    let mut copied = 0;
    for id in seen {
        let Some(e) = repo.packs().entry(&id)? else { continue };
        if remote.pack_name(e.pack).is_some_and(|n| marked.contains(&n)) {
            let obj = repo.store().get_stored(e.kind, &id)?.ok_or(Error::Missing { kind: e.kind, id })?;
            repo.packs().append_raw(e.kind, &id, obj.codec as u8, obj.raw_len, &obj.payload)?;
            copied += 1;
        }
    }
    if copied > 0 {
        tracing::info!(image = %rec.label(), objects = copied, "copied objects out of packs a gc marked");
        super::publish::upload_packs(repo, remote)?;
    }
    Ok(())
}

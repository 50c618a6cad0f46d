//! Leases: the images this host's guests stand on, published in the bucket
//! (`leases/<host>.json`) so that a gc on any host keeps them, even after
//! their refs are deleted: a guest created from `web:1` on host B goes on
//! reading `web:1`'s chunks from the bucket when host A deletes `web:1`.
//!
//! A lease names images by root id, taken when the label still resolved
//! (at guest create, or the first sync after), so it outlives the ref. It is
//! rewritten (a plain put: each host owns its key) when the set changes,
//! and deleted when no guest is left. The cache keeps the last lease it
//! put (`LEASE`) and its host key (`HOST`). A host that is gone for good
//! leaves its lease behind: remove `leases/<host>.json` to let gc take what
//! only it kept (docs/remote.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use object_store::ObjectStoreExt;

use super::sync::{get, list, rel_name};
use super::Remote;
use crate::digest::TreeId;
use crate::error::{Error, Result};
use crate::repo::Repository;

/// The lease this cache last put, and its host key.
const LOCAL_FILE: &str = "LEASE";
const HOST_FILE: &str = "HOST";

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub host: String,
    /// Seconds since the epoch of the last put.
    pub time: u64,
    /// Image label → root tree, for every image a guest of this host (or
    /// one of its checkpoints) stands on.
    pub images: BTreeMap<String, TreeId>,
}

/// Bring this host's lease up to date with its guests (after a guest is
/// made, and at every sync).
pub(crate) fn update(repo: &Repository, remote: &Remote) -> Result<()> {
    let dir = repo.path();
    let mut labels = BTreeSet::new();
    for g in crate::guest::list(dir)? {
        labels.insert(g.image.clone());
        for r in &g.rebases {
            labels.insert(r.from.clone());
            labels.insert(r.to.clone());
        }
    }
    let old = read_local(dir);
    let mut images = BTreeMap::new();
    for l in labels {
        match old.images.get(&l).copied().or_else(|| repo.resolve_name(&l).ok().map(|r| r.root_tree())) {
            Some(id) => {
                images.insert(l, id);
            }
            None => tracing::warn!(image = %l, "a guest's image is not in the repository: it cannot be leased"),
        }
    }
    if images == old.images {
        return Ok(());
    }
    let host = host_id(dir)?;
    let rel = format!("leases/{host}.json");
    let lease = Lease { host, time: super::gc::now(), images };
    let body = serde_json::to_vec_pretty(&lease).map_err(|_| Error::Decode { what: "lease", why: "unencodable" })?;
    if lease.images.is_empty() {
        match remote.block(remote.bucket().delete(&remote.path(&rel))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(remote.err("deleting", &rel, e)),
        }
    } else {
        remote.block(remote.bucket().put(&remote.path(&rel), body.clone().into())).map_err(|e| remote.err("writing", &rel, e))?;
    }
    crate::guest::write_atomic(&dir.join(LOCAL_FILE), &body)?;
    tracing::info!(images = lease.images.len(), host = %lease.host, "updated this host's lease in the remote repository");
    Ok(())
}

/// [`update`], a failure logged (a host with read-only credentials reads
/// on; its guests' images are then not protected from another host's gc).
pub(crate) fn refresh(repo: &Repository, remote: &Remote) {
    if let Err(e) = update(repo, remote) {
        tracing::error!(error = %crate::error::chain(&e), "updating this host's lease in the remote repository failed: a gc on another host may remove images its guests stand on");
    }
}

/// Every lease in the bucket (one unreadable is skipped, with a warning:
/// it names no root gc could use).
pub(crate) fn all(remote: &Remote) -> Result<Vec<Lease>> {
    let mut out = Vec::new();
    for m in list(remote, "leases")? {
        let rel = rel_name(remote, &m);
        let Some(body) = get(remote, &rel)? else { continue };
        match serde_json::from_slice::<Lease>(&body) {
            Ok(l) => out.push(l),
            Err(e) => tracing::warn!(object = %rel, error = %e, "unreadable lease in the remote repository; ignored"),
        }
    }
    Ok(out)
}

fn read_local(dir: &Path) -> Lease {
    std::fs::read(dir.join(LOCAL_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// This cache's host key: the host name and a random suffix, made once.
fn host_id(dir: &Path) -> Result<String> {
    let p = dir.join(HOST_FILE);
    if let Ok(s) = std::fs::read_to_string(&p) {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return Ok(s.to_string());
        }
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(48).collect();
    let seed = format!("{name} {} {:?} {}", std::process::id(), std::time::SystemTime::now(), dir.display());
    let id = format!("{}-{}", if name.is_empty() { "host" } else { &name }, &blake3::hash(seed.as_bytes()).to_hex()[..16]);
    crate::guest::write_atomic(&p, format!("{id}\n").as_bytes())?;
    Ok(id)
}

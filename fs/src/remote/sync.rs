//! Bringing a cache up to date with its bucket, on open: O(new packs + refs).
//!
//! - packs: every `packs/<b3>.idx` not seen before is read; its pack gets a
//!   local pack number (`meta`: `remote-pack\0` + number → name), a sparse
//!   local file of the remote length, and its entries in the `objects`
//!   column family (an id already indexed keeps its entry). The file exists
//!   (directory synced) before the batch naming it is written. A remote
//!   pack gone from the bucket (swept by gc) loses its entries and mapping.
//! - refs: `refs/images/<name>/<version>` are mirrored into the `refs`
//!   column family (new ones added, vanished ones dropped); channels,
//!   `refs/channels/<name>/<channel>`, likewise; backed-up guests'
//!   records, `refs/backup-guests/<guest>`, into `meta`.

use std::collections::{HashMap, HashSet};
use std::fs::File;

use futures_util::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use rocksdb::{WriteBatch, WriteOptions};

use super::{idx, Remote};
use crate::error::{Error, Result};
use crate::object::IndexEntry;
use crate::repo::{Repository, CF_META, CF_OBJECTS, CF_REFS};

const MAP_PREFIX: &[u8] = b"remote-pack\0";
/// `meta`: `remote-alt\0` + id + pack number → index entry: where else the
/// bucket holds an object indexed in another pack (used when that pack goes).
const ALT_PREFIX: &[u8] = b"remote-alt\0";

fn alt_key(id: &crate::digest::Digest, pack: u32) -> Vec<u8> {
    [ALT_PREFIX, id.as_bytes(), &pack.to_be_bytes()].concat()
}

pub(crate) fn map_key(pack: u32) -> Vec<u8> {
    [MAP_PREFIX, &pack.to_be_bytes()].concat()
}

/// Load the pack mapping the cache's index records into `remote`.
pub(crate) fn load(repo: &Repository, remote: &Remote) -> Result<()> {
    let cf = repo.cf(CF_META)?;
    for item in repo.db().prefix_iterator_cf(cf, MAP_PREFIX) {
        let (k, v) = item?;
        let Some(n) = k.strip_prefix(MAP_PREFIX) else { break };
        let n = u32::from_be_bytes(n.try_into().map_err(|_| Error::Decode { what: "remote pack mapping", why: "wrong length" })?);
        remote.set_pack(n, String::from_utf8_lossy(&v).into_owned());
    }
    Ok(())
}

/// Record that local pack `pack` is remote pack `name` (one synced write).
pub(crate) fn record(repo: &Repository, remote: &Remote, pack: u32, name: &str, mut batch: WriteBatch) -> Result<()> {
    batch.put_cf(repo.cf(CF_META)?, map_key(pack), name.as_bytes());
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    repo.db().write_opt(batch, &wo)?;
    remote.set_pack(pack, name.to_string());
    Ok(())
}

/// Every object below `rel` (recursive).
pub(crate) fn list(remote: &Remote, rel: &str) -> Result<Vec<ObjectMeta>> {
    let p = remote.path(rel);
    let r = remote.block(remote.bucket().list(Some(&p)).try_collect::<Vec<_>>());
    remote.count(0);
    r.map_err(|e| remote.err("listing", rel, e))
}

/// GET a whole small object; `None` if it is gone.
pub(crate) fn get(remote: &Remote, rel: &str) -> Result<Option<Vec<u8>>> {
    let p = remote.path(rel);
    match remote.block(async { remote.bucket().get(&p).await?.bytes().await }) {
        Ok(b) => {
            remote.count(b.len() as u64);
            Ok(Some(b.to_vec()))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(remote.err("reading", rel, e)),
    }
}

/// The name of `m` relative to the remote's prefix.
pub(crate) fn rel_name(remote: &Remote, m: &ObjectMeta) -> String {
    let full = m.location.as_ref();
    let pre = remote.path("");
    full.strip_prefix(pre.as_ref()).unwrap_or(full).trim_start_matches('/').to_string()
}

/// Bring the cache (opened writable) up to date with the bucket.
pub(crate) fn sync(repo: &Repository, remote: &Remote) -> Result<()> {
    let listed = list(remote, "packs")?;
    let mut sizes = HashMap::new();
    let mut indexed = HashSet::new();
    for m in &listed {
        let name = rel_name(remote, m);
        if let Some(h) = name.strip_prefix("packs/").and_then(|n| n.strip_suffix(".pack")) {
            sizes.insert(h.to_string(), m.size);
        } else if let Some(h) = name.strip_prefix("packs/").and_then(|n| n.strip_suffix(".idx")) {
            indexed.insert(h.to_string());
        }
    }
    let known = remote.known_packs();
    let known_names: HashSet<&String> = known.values().collect();
    let mut added = 0;
    let mut next = repo.packs().packs()?.last().copied().unwrap_or(0).max(known.keys().max().copied().unwrap_or(0)) + 1;
    let mut fresh: Vec<&String> = indexed.iter().filter(|h| !known_names.contains(h)).collect();
    fresh.sort();
    for h in fresh {
        let Some(&size) = sizes.get(h) else {
            tracing::warn!(pack = %h, "remote pack index without its pack; skipped");
            continue;
        };
        let Some(bytes) = get(remote, &format!("packs/{h}.idx"))? else { continue };
        let (len, entries) = idx::decode(&bytes).map_err(|e| {
            tracing::error!(pack = %h, error = %e, "remote pack index is damaged");
            e
        })?;
        if len != size {
            tracing::error!(pack = %h, len, size, "remote pack's length differs from its index's; skipped");
            continue;
        }
        let n = next;
        next += 1;
        let path = repo.packs().pack_path(n);
        let made = File::create_new(&path).and_then(|f| f.set_len(len)).and_then(|_| File::open(repo.packs().dir())?.sync_all());
        made.map_err(|e| Error::io("creating the cache's copy of a pack", &path, e))?;
        let cf = repo.cf(CF_OBJECTS)?;
        let mut batch = WriteBatch::default();
        for e in &entries {
            if repo.packs().entry(&e.id)?.is_none() {
                batch.put_cf(cf, e.id.as_bytes(), e.local(n).encode());
            } else {
                batch.put_cf(repo.cf(CF_META)?, alt_key(&e.id, n), e.local(n).encode());
            }
        }
        record(repo, remote, n, h, batch)?;
        added += 1;
    }
    let gone: Vec<u32> = known.iter().filter(|(_, h)| !indexed.contains(*h)).map(|(n, _)| *n).collect();
    if !gone.is_empty() {
        drop_packs(repo, remote, &gone)?;
    }
    let refs = sync_refs(repo, remote)?;
    tracing::info!(remote = %remote.url(), new_packs = added, gone_packs = gone.len(), refs, "synced the cache with the remote repository");
    super::lease::refresh(repo, remote);
    Ok(())
}

/// Forget local copies of remote packs the bucket no longer has.
fn drop_packs(repo: &Repository, remote: &Remote, gone: &[u32]) -> Result<()> {
    let gone: HashSet<u32> = gone.iter().copied().collect();
    for n in &gone {
        remote.forget_pack(*n);
    }
    let (cf, meta) = (repo.cf(CF_OBJECTS)?, repo.cf(CF_META)?);
    let mut batch = WriteBatch::default();
    for (id, e) in repo.packs().entries()? {
        if !gone.contains(&e.pack) {
            continue;
        }
        // Another remote pack still holding it (see ALT_PREFIX), or none.
        let prefix = [ALT_PREFIX, id.as_bytes()].concat();
        let mut alt = None;
        for item in repo.db().prefix_iterator_cf(meta, &prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            batch.delete_cf(meta, &k);
            let a = IndexEntry::decode(&v)?;
            if alt.is_none() && remote.pack_name(a.pack).is_some() {
                alt = Some(a);
            }
        }
        match alt {
            Some(a) => batch.put_cf(cf, id.as_bytes(), a.encode()),
            None => batch.delete_cf(cf, id.as_bytes()),
        }
    }
    for n in &gone {
        batch.delete_cf(meta, map_key(*n));
    }
    repo.packs().batch_write(batch)?;
    // Readers keep index entries into these files: unlink only without them.
    let guard = repo.exclude_readers();
    for n in gone {
        repo.packs().forget_pack(n);
        if guard.is_some() {
            let _ = std::fs::remove_file(repo.packs().pack_path(n));
        }
    }
    Ok(())
}

/// Mirror the bucket's refs into the cache's `refs` column family; how
/// many there are.
fn sync_refs(repo: &Repository, remote: &Remote) -> Result<usize> {
    let cf = repo.cf(CF_REFS)?;
    let mut guests = WriteBatch::default();
    let mut want: HashMap<Vec<u8>, String> = HashMap::new();
    for m in list(remote, "refs")? {
        let rel = rel_name(remote, &m);
        let parts: Vec<&str> = rel.split('/').collect();
        let key = match parts.as_slice() {
            ["refs", "images", name, v] => match v.parse::<u32>() {
                Ok(v) => crate::repo::refs::key(&super::publish::unescape(name), v),
                Err(_) => continue,
            },
            ["refs", "channels", name, ch] => crate::repo::channels::key(name, ch),
            ["refs", "backup-guests", guest] => {
                if let Some(v) = get(remote, &rel)? {
                    guests.put_cf(repo.cf(CF_META)?, crate::backup::meta_key(guest), v);
                }
                continue;
            }
            _ => continue,
        };
        want.insert(key, rel);
    }
    let mut have: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for item in repo.db().iterator_cf(cf, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        if k.starts_with(b"image\0") || k.starts_with(b"channel\0") {
            have.insert(k.to_vec(), v.to_vec());
        }
    }
    let mut batch = guests;
    for (k, rel) in &want {
        // Image versions are immutable: fetched once. Channels move: each time.
        if k.starts_with(b"image\0") && have.contains_key(k) {
            continue;
        }
        match get(remote, rel)? {
            Some(v) if have.get(k) != Some(&v) => batch.put_cf(cf, k, v),
            _ => {}
        }
    }
    for k in have.keys().filter(|k| !want.contains_key(*k)) {
        batch.delete_cf(cf, k);
    }
    if !batch.is_empty() {
        repo.packs().batch_write(batch)?;
    }
    Ok(want.len())
}

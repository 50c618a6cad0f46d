//! Publishing to the bucket: packs, their indexes, then the ref.
//!
//! Order: every local pack not yet uploaded is sealed (no append after
//! this), hashed, uploaded as `packs/<b3>.pack` (multipart when large),
//! then its `packs/<b3>.idx`; then the image's ref is created with a
//! create-only put (If-None-Match: *). A crash before the ref leaves only
//! packs no ref reaches (gc reclaims them); two hosts publishing the same
//! NAME:VERSION: one wins, the other gets [`Error::ImageExists`].
//! Packs are content-named, so a plain put of one already there writes
//! the same bytes (multipart uploads cannot be conditional).

use std::fs::File;
use std::io::{BufReader, Read};

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rocksdb::WriteBatch;

use super::idx::{self, Entry};
use super::Remote;
use crate::error::{Error, Result};
use crate::object::{IndexEntry, RecordHeader, PACK_HEADER_LEN, PACK_MAGIC, RECORD_HEADER_LEN};
use crate::repo::{ImageRecord, Repository};

/// Upload parts of this size (S3 wants at least 5 MiB but the last).
const PART: usize = 16 << 20;

/// Upload every local pack the bucket does not have yet.
pub(crate) fn upload_packs(repo: &Repository, remote: &Remote) -> Result<()> {
    repo.packs().seal()?;
    for n in repo.packs().packs()? {
        if remote.pack_name(n).is_none() {
            upload_pack(repo, remote, n)?;
        }
    }
    Ok(())
}

/// The object path of an image version's ref.
/// Image names are `[A-Za-z0-9._-]`, but a backed-up guest's checkpoints
/// are `backup/GUEST`: its `/` is kept as `@` (no image name has one).
pub(crate) fn ref_path(name: &str, version: u32) -> String {
    format!("refs/images/{}/{version}", name.replace('/', "@"))
}

/// The image name an escaped ref path part stands for.
pub(crate) fn unescape(part: &str) -> String {
    part.replace('@', "/")
}

/// Upload the packs, then create the ref of `rec` (create-only).
pub(crate) fn publish(repo: &Repository, remote: &Remote, rec: &ImageRecord) -> Result<()> {
    upload_packs(repo, remote)?;
    super::gc::keep_out_of_marks(repo, remote, rec)?;
    create_ref(remote, rec)
}

/// Create `rec`'s ref in the bucket, create-only; the same record there
/// already is success (a retried backup), another is [`Error::ImageExists`].
fn create_ref(remote: &Remote, rec: &ImageRecord) -> Result<()> {
    let body = serde_json::to_vec(rec).map_err(|_| Error::Decode { what: "image record", why: "unencodable" })?;
    let rel = ref_path(&rec.name, rec.version);
    let opts = PutOptions::from(PutMode::Create);
    match remote.block(remote.bucket().put_opts(&remote.path(&rel), body.clone().into(), opts)) {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            match super::sync::get(remote, &rel)? {
                Some(b) if serde_json::from_slice::<ImageRecord>(&b).ok().as_ref() == Some(rec) => Ok(()),
                _ => Err(Error::ImageExists(rec.label())),
            }
        }
        Err(e) => Err(remote.err("publishing", &rel, e)),
    }
}

/// A backup to a remote repository: packs, the guest's record
/// (`refs/backup-guests/GUEST`, `meta` = its JSON), then its checkpoints'
/// refs, each create-only.
pub(crate) fn publish_backup(repo: &Repository, remote: &Remote, guest: &str, meta: &[u8], recs: &[ImageRecord]) -> Result<()> {
    upload_packs(repo, remote)?;
    let rel = format!("refs/backup-guests/{guest}");
    remote.block(remote.bucket().put(&remote.path(&rel), meta.to_vec().into())).map_err(|e| remote.err("writing", &rel, e))?;
    for r in recs {
        create_ref(remote, r)?;
    }
    Ok(())
}

/// Remove an image version's ref from the bucket.
pub(crate) fn delete_ref(remote: &Remote, rec: &ImageRecord) -> Result<()> {
    let rel = ref_path(&rec.name, rec.version);
    match remote.block(remote.bucket().delete(&remote.path(&rel))) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(remote.err("deleting", &rel, e)),
    }
}

/// What a pass over a local pack found: its name, the length of its valid
/// records, and the records the index points at.
struct Scanned {
    name: String,
    len: u64,
    entries: Vec<Entry>,
}

/// Read local pack `n`: hash its records and collect those indexed there.
/// `None` when it is no pack of ours (a sparse copy of a remote pack made
/// by an interrupted sync has no header) or indexes nothing.
fn scan(repo: &Repository, n: u32) -> Result<Option<Scanned>> {
    let path = repo.packs().pack_path(n);
    let f = File::open(&path).map_err(|e| Error::io("opening pack", &path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut head = [0u8; PACK_HEADER_LEN as usize];
    if r.read_exact(&mut head).is_err() || head[..8] != PACK_MAGIC[..] {
        return Ok(None);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&head);
    let (mut off, mut entries, mut payload) = (PACK_HEADER_LEN, Vec::new(), Vec::new());
    loop {
        let mut h = [0u8; RECORD_HEADER_LEN];
        if r.read_exact(&mut h).is_err() {
            break;
        }
        let Some(RecordHeader { kind, codec, raw_len, stored_len, id }) = RecordHeader::parse(&h) else { break };
        payload.resize(stored_len as usize, 0);
        // A record cut short (a crash mid-append) ends the pack.
        if r.read_exact(&mut payload).is_err() {
            break;
        }
        hasher.update(&h);
        hasher.update(&payload);
        let e = IndexEntry { pack: n, offset: off, stored_len, raw_len, kind, codec };
        if repo.packs().entry(&id)? == Some(e) {
            entries.push(Entry { id, offset: off, stored_len, raw_len, kind, codec });
        }
        off += (RECORD_HEADER_LEN + payload.len()) as u64;
    }
    if entries.is_empty() {
        return Ok(None);
    }
    Ok(Some(Scanned { name: hasher.finalize().to_hex().to_string(), len: off, entries }))
}

fn upload_pack(repo: &Repository, remote: &Remote, n: u32) -> Result<()> {
    let Some(s) = scan(repo, n)? else {
        tracing::debug!(pack = n, "local pack holds no indexed record; not uploaded");
        return Ok(());
    };
    let path = repo.packs().pack_path(n);
    let rel = format!("packs/{}.pack", s.name);
    let dest = remote.path(&rel);
    let mut f = File::open(&path).map_err(|e| Error::io("opening pack", &path, e))?.take(s.len);
    let part = |f: &mut std::io::Take<File>| -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(PART);
        f.by_ref().take(PART as u64).read_to_end(&mut buf).map_err(|e| Error::io("reading pack", &path, e))?;
        Ok(buf)
    };
    if s.len <= PART as u64 {
        let buf = part(&mut f)?;
        remote.block(remote.bucket().put(&dest, buf.into())).map_err(|e| remote.err("uploading", &rel, e))?;
    } else {
        let mut up = remote.block(remote.bucket().put_multipart(&dest)).map_err(|e| remote.err("uploading", &rel, e))?;
        let sent: Result<()> = (|| {
            loop {
                let buf = part(&mut f)?;
                if buf.is_empty() {
                    return Ok(());
                }
                remote.block(up.put_part(PutPayload::from(buf))).map_err(|e| remote.err("uploading", &rel, e))?;
            }
        })();
        match sent {
            Ok(()) => {
                remote.block(up.complete()).map_err(|e| remote.err("completing the upload of", &rel, e))?;
            }
            Err(e) => {
                let _ = remote.block(up.abort());
                return Err(e);
            }
        }
    }
    let irel = format!("packs/{}.idx", s.name);
    let body = idx::encode(s.len, &s.entries);
    remote.block(remote.bucket().put(&remote.path(&irel), body.into())).map_err(|e| remote.err("uploading", &irel, e))?;
    super::sync::record(repo, remote, n, &s.name, WriteBatch::default())?;
    tracing::info!(pack = n, remote_pack = %s.name, bytes = s.len, objects = s.entries.len(), "uploaded pack");
    Ok(())
}

/// Move channel `channel` of image `name` in the bucket: read it, compute
/// the new record with `next`, write it only if nobody changed it since
/// (If-Match on its etag, or create-only when absent); on a lost race,
/// again from the new state. The record written.
pub(crate) fn update_channel<C>(
    remote: &Remote,
    name: &str,
    channel: &str,
    next: impl Fn(Option<Vec<u8>>) -> Result<C>,
    encode: impl Fn(&C) -> Result<Vec<u8>>,
) -> Result<C> {
    let rel = format!("refs/channels/{name}/{channel}");
    let path = remote.path(&rel);
    for _ in 0..16 {
        let cur = match remote.block(async {
            let r = remote.bucket().get(&path).await?;
            let version = object_store::UpdateVersion { e_tag: r.meta.e_tag.clone(), version: r.meta.version.clone() };
            Ok::<_, object_store::Error>((r.bytes().await?.to_vec(), version))
        }) {
            Ok(c) => Some(c),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(remote.err("reading", &rel, e)),
        };
        remote.count(cur.as_ref().map_or(0, |c| c.0.len() as u64));
        let (old, mode) = match cur {
            Some((b, v)) => (Some(b), PutMode::Update(v)),
            None => (None, PutMode::Create),
        };
        let same = old.clone();
        let ch = next(old)?;
        let body = encode(&ch)?;
        if same.as_deref() == Some(&body[..]) {
            return Ok(ch);
        }
        match remote.block(remote.bucket().put_opts(&path, body.into(), PutOptions::from(mode))) {
            Ok(_) => return Ok(ch),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => continue,
            Err(e) => return Err(remote.err("writing", &rel, e)),
        }
    }
    Err(Error::RemoteRace(format!("{}/{rel}", remote.url())))
}

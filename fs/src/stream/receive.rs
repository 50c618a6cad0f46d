//! `receive`: apply a stream to a repository, all or nothing.

use std::collections::HashSet;
use std::io::Read;

use super::{bad, Reader, Record, StreamHeader, StreamKind, StreamRefs};
use crate::backup::{already_held, backup_ref, held_for, publish};
use crate::error::{Error, Result};
use crate::repo::{ImageRecord, ImageRef, Repository};

/// Object bytes received between flushes.
const FLUSH_EVERY: usize = 64 << 20;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReceiveReport {
    pub kind: Option<StreamKind>,
    /// Refs published (image labels, or `backup/GUEST:N`).
    pub published: Vec<String>,
    /// Objects in the stream, and those the repository did not hold yet.
    pub objects: u64,
    pub new_objects: u64,
}

/// Apply the stream read from `input` to `repo` (opened writable). Objects
/// are checked as they arrive; refs are published only once the trailer has
/// verified and everything they reach is present.
pub fn receive(repo: &Repository, input: impl Read) -> Result<ReceiveReport> {
    repo.writable()?;
    let mut r = Reader::new(input)?;
    let header: StreamHeader = match r.next()? {
        Record::Header(h) => h,
        _ => return Err(bad("the first record is not the header")),
    };
    let store = repo.objects();
    if let Some(base) = &header.base {
        if !store.contains(&base.0)? {
            return Err(Error::StreamBaseMissing { base: base.0 });
        }
    }
    let mut report = ReceiveReport { kind: Some(header.kind), ..Default::default() };
    let mut refs: Option<StreamRefs> = None;
    let mut unflushed = 0usize;
    loop {
        match r.next()? {
            Record::Object(kind, id, obj) => {
                if refs.is_some() {
                    return Err(bad("an object after the refs record"));
                }
                report.objects += 1;
                // Version 1 sent every object uncompressed: compress it here.
                // Later versions send the sender's stored form: keep it.
                let new = match r.version {
                    1 => store.put(kind, &id, &obj.payload)?,
                    _ => store.put_stored(kind, &id, &obj)?,
                };
                if new {
                    report.new_objects += 1;
                    unflushed += obj.payload.len();
                }
                // Checked objects land as they come (no ref names them yet:
                // garbage for gc until published), so a receive run again
                // after an interruption does not store them twice.
                if unflushed >= FLUSH_EVERY {
                    store.flush()?;
                    unflushed = 0;
                }
            }
            Record::Refs(x) if refs.is_none() => refs = Some(x),
            Record::Refs(_) => return Err(bad("two refs records")),
            Record::Header(_) => return Err(bad("a second header")),
            Record::End => break,
        }
    }
    let refs = refs.ok_or_else(|| bad("no refs record"))?;
    let signatures = refs.signatures.clone();
    let (new, guest) = plan(repo, header.kind, refs)?;
    if new.is_empty() {
        return Err(Error::AlreadyReceived);
    }
    // Everything the new refs reach must be here: in the stream, or held.
    let mut reach = HashSet::new();
    for rec in &new {
        crate::reach::mark(store, &rec.root_tree(), &mut reach).map_err(|e| match e {
            Error::Missing { kind, id } => bad(format!("{kind} {id} is neither in the stream nor in this repository")),
            e => e,
        })?;
    }
    for id in &reach {
        if !store.contains(id)? {
            return Err(bad(format!("object {id} is neither in the stream nor in this repository")));
        }
    }
    // Images: their signatures checked (and the policy) before anything
    // is published, stored before their refs.
    let mut signed = Vec::new();
    if guest.is_none() {
        for rec in &new {
            signed.push(crate::sign::check_carried(repo, rec, &signatures)?);
        }
    }
    store.flush()?;
    crate::gc::failpoint("receive-before-publish");
    match &guest {
        Some(meta) => publish(repo, meta, &new)?,
        None => {
            for (rec, sigs) in new.iter().zip(&signed) {
                crate::sign::store_carried(repo, rec, sigs)?;
                repo.publish(rec)?;
            }
        }
    }
    report.published = new.iter().map(|r| r.label()).collect();
    tracing::info!(refs = ?report.published, objects = report.objects, new = report.new_objects, "stream received");
    Ok(report)
}

/// The refs to publish: names checked (a stream from another site is
/// untrusted input), what is already here left out, conflicts refused.
fn plan(repo: &Repository, kind: StreamKind, refs: StreamRefs) -> Result<(Vec<ImageRecord>, Option<crate::backup::BackupGuest>)> {
    let mut new = Vec::new();
    match (kind, refs.guest) {
        (StreamKind::Image, None) => {
            for rec in refs.images {
                let valid = rec.name.parse::<ImageRef>().ok().filter(|v| v.version.is_none());
                if valid.is_none() || rec.version == 0 {
                    return Err(bad(format!("image record with an invalid name {:?}:{}", rec.name, rec.version)));
                }
                match repo.resolve(&ImageRef { name: rec.name.clone(), version: Some(rec.version) }) {
                    Ok(have) if have.root == rec.root => {}
                    Ok(_) => return Err(Error::ImageExists(rec.label())),
                    Err(Error::ImageNotFound(_)) => new.push(rec),
                    Err(e) => return Err(e),
                }
            }
            Ok((new, None))
        }
        (StreamKind::Guest, Some(meta)) => {
            if !crate::guest::valid_guest_name(&meta.name) || meta.image.parse::<ImageRef>().is_err() {
                return Err(bad(format!("guest record with an invalid name {:?} or image {:?}", meta.name, meta.image)));
            }
            let held = held_for(repo, &meta)?;
            for cp in refs.images {
                if cp.name != crate::guest::CHECKPOINT_REF || cp.version == 0 {
                    return Err(bad(format!("checkpoint record with an invalid name {:?}:{}", cp.name, cp.version)));
                }
                if !already_held(&held, &meta, &cp)? {
                    new.push(backup_ref(&meta.name, cp));
                }
            }
            Ok((new, Some(meta)))
        }
        _ => Err(bad("the refs record does not match the stream's kind")),
    }
}

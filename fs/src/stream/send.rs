//! `send`: write an image, or a guest's checkpoints, as a stream.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};

use super::{StreamHeader, StreamKind, StreamRefs, Writer};
use crate::backup::{copy_closure, BackupGuest, CopyStats};
use crate::digest::{Digest, ObjectKind, TreeId};
use crate::error::{Error, Result};
use crate::guest::GuestHandle;
use crate::object::{ObjectStore, Stored};
use crate::repo::{ImageRecord, Repository};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SendReport {
    pub refs: Vec<String>,
    pub base: Option<TreeId>,
    pub objects: u64,
    /// Object bytes (uncompressed) and the whole stream's length.
    pub object_bytes: u64,
    pub stream_bytes: u64,
}

/// A store that writes what is put into it to the stream. It "contains"
/// what the base reaches (the receiver has it) and what was already sent,
/// so [`copy_closure`] sends exactly the rest, children first.
struct Sink<'a> {
    w: Mutex<Writer<&'a mut (dyn Write + Send)>>,
    base: HashSet<Digest>,
    sent: Mutex<HashSet<Digest>>,
}

impl ObjectStore for Sink<'_> {
    fn get(&self, _: ObjectKind, _: &Digest) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn contains(&self, id: &Digest) -> Result<bool> {
        Ok(self.base.contains(id) || self.sent.lock().unwrap_or_else(|e| e.into_inner()).contains(id))
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        self.put_stored(kind, id, &Stored::raw(bytes.to_vec()))
    }
    /// Sent as stored: a compressed object crosses compressed.
    fn put_stored(&self, kind: ObjectKind, id: &Digest, obj: &Stored) -> Result<bool> {
        if !self.sent.lock().unwrap_or_else(|e| e.into_inner()).insert(*id) {
            return Ok(false);
        }
        self.w.lock().unwrap_or_else(|e| e.into_inner()).object(kind, id, obj)?;
        Ok(true)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

fn send(src: &dyn ObjectStore, kind: StreamKind, base: Option<TreeId>, refs: StreamRefs, out: &mut (dyn Write + Send)) -> Result<SendReport> {
    let mut reach = HashSet::new();
    if let Some(b) = &base {
        crate::reach::mark(src, b, &mut reach)?;
    }
    let sink = Sink { w: Mutex::new(Writer::new(out, &StreamHeader { kind, base })?), base: reach, sent: Mutex::new(HashSet::new()) };
    let mut stats = CopyStats::default();
    for r in &refs.images {
        copy_closure(src, &sink, &r.root_tree(), &mut stats)?;
    }
    let labels = refs.images.iter().map(|r| r.label()).collect();
    let (objects, stream_bytes) = sink.w.into_inner().unwrap_or_else(|e| e.into_inner()).finish(&refs)?;
    Ok(SendReport { refs: labels, base, objects, object_bytes: stats.bytes, stream_bytes })
}

/// Send image `image`; with `since`, leave out what that image reaches.
pub fn send_image(repo: &Repository, image: &ImageRecord, since: Option<&ImageRecord>, out: &mut (dyn Write + Send)) -> Result<SendReport> {
    let refs = StreamRefs { images: vec![image.clone()], guest: None, signatures: crate::sign::carried(repo, image)? };
    send(repo.objects(), StreamKind::Image, since.map(|s| s.root_tree()), refs, out)
}

/// Send guest `g`'s checkpoints (read through its store over `shared`);
/// with `since`, only the later ones, leaving out what checkpoint `since`
/// reaches.
pub fn send_guest(g: &GuestHandle, shared: Arc<dyn ObjectStore>, since: Option<u32>, out: &mut (dyn Write + Send)) -> Result<SendReport> {
    let all = g.checkpoints()?;
    if all.is_empty() {
        return Err(Error::CheckpointNotFound { guest: g.rec.name.clone(), checkpoint: "(none: take one first)".into() });
    }
    let base = match since {
        Some(n) => Some(all.iter().find(|c| c.version == n).ok_or_else(|| Error::CheckpointNotFound { guest: g.rec.name.clone(), checkpoint: n.to_string() })?.root_tree()),
        None => None,
    };
    let images: Vec<ImageRecord> = all.into_iter().filter(|c| since.is_none_or(|n| c.version > n)).collect();
    let guest = BackupGuest { name: g.rec.name.clone(), image: g.rec.image.clone(), volume: g.rec.volume };
    send(&*g.store(shared), StreamKind::Guest, base, StreamRefs { images, guest: Some(guest), signatures: Vec::new() }, out)
}

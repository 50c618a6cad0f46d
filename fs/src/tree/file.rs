//! File content: chunks, extents and the file index.
//!
//! A regular file is a sorted list of extents `(offset, len, target)` over the
//! logical size; gaps are holes (sparse regions, read as zeros). A target is a
//! chunk (whose length equals the extent's) or, for files with more than
//! [`FANOUT`] extents, a nested index covering that range, so that changing one
//! chunk of a 1 GiB file rewrites one leaf index (~160 KiB), not the whole list.
//!
//! Encoding (`FileIndex`, format 1): `"LVF1" | uv count | count × (uv gap from the
//! previous extent's end | uv len | u8 tag (1 chunk, 2 index) | 32-byte id)`.

use super::codec::{put_uv, Reader};
use super::Content;
use crate::chunker::{aligned_pieces, CHUNK_SIZE};
use crate::digest::{ChunkId, Digest, FileId, ObjectKind};
use crate::error::{Error, Result};
use crate::object::{get_required, get_required_shared, put_object, ObjectStore};

const MAGIC: &[u8; 4] = b"LVF1";
/// Most extents in one index object before a level of indirection is added.
pub const FANOUT: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Chunk(ChunkId),
    Index(FileId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub target: Target,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FileIndex {
    pub extents: Vec<Extent>,
}

impl FileIndex {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.extents.len() * 40);
        out.extend_from_slice(MAGIC);
        put_uv(&mut out, self.extents.len() as u64);
        let mut end = 0;
        for e in &self.extents {
            put_uv(&mut out, e.offset - end);
            put_uv(&mut out, e.len);
            let (tag, id) = match e.target {
                Target::Chunk(c) => (1u8, c.0),
                Target::Index(f) => (2u8, f.0),
            };
            out.push(tag);
            out.extend_from_slice(id.as_bytes());
            end = e.end();
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "file index");
        if r.take(4)? != MAGIC {
            return Err(r.err("bad magic"));
        }
        let n = r.uv()?;
        let mut extents = Vec::with_capacity(n.min(FANOUT as u64) as usize);
        let mut end: u64 = 0;
        for _ in 0..n {
            let offset = end.checked_add(r.uv()?).ok_or_else(|| r.err("offset overflows"))?;
            let len = r.uv()?;
            if len == 0 {
                return Err(r.err("empty extent"));
            }
            let tag = r.u8()?;
            let id = Digest::from_slice(r.take(32)?).map_err(|_| r.err("bad digest"))?;
            let target = match tag {
                1 if len <= CHUNK_SIZE => Target::Chunk(ChunkId(id)),
                2 => Target::Index(FileId(id)),
                _ => return Err(r.err("bad extent target")),
            };
            end = offset.checked_add(len).ok_or_else(|| r.err("extent overflows"))?;
            extents.push(Extent { offset, len, target });
        }
        if !r.done() {
            return Err(r.err("trailing bytes"));
        }
        Ok(FileIndex { extents })
    }
}

/// Builds a file's [`Content`] from data pieces given in increasing offset order.
pub struct ContentBuilder<'s> {
    store: &'s dyn ObjectStore,
    extents: Vec<Extent>,
    /// Bytes newly stored (not already present), for import statistics.
    pub new_bytes: u64,
}

impl<'s> ContentBuilder<'s> {
    pub fn new(store: &'s dyn ObjectStore) -> Self {
        ContentBuilder { store, extents: Vec::new(), new_bytes: 0 }
    }

    /// Store the data at `offset`; it is cut at chunk boundaries here, so the
    /// caller may pass any run of bytes.
    pub fn push(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        for (off, len) in aligned_pieces(offset, offset + data.len() as u64) {
            let s = (off - offset) as usize;
            let piece = &data[s..s + len as usize];
            let id = ChunkId::of(piece);
            if self.store.put(ObjectKind::Chunk, &id.0, piece)? {
                self.new_bytes += len;
            }
            self.push_extent(Extent { offset: off, len, target: Target::Chunk(id) });
        }
        Ok(())
    }

    /// Add an already-stored chunk extent (the overlay uses this).
    pub fn push_extent(&mut self, e: Extent) {
        debug_assert!(self.extents.last().is_none_or(|p| p.end() <= e.offset));
        self.extents.push(e);
    }

    /// Finish a file of logical `size` (anything past the last extent is a hole).
    pub fn finish(self, size: u64) -> Result<Content> {
        build_content(self.store, self.extents, size)
    }
}

/// Turn a flat, sorted extent list into [`Content`], adding index levels as needed.
pub fn build_content(store: &dyn ObjectStore, mut extents: Vec<Extent>, size: u64) -> Result<Content> {
    match extents.as_slice() {
        [] => return Ok(Content::None),
        [Extent { offset: 0, len, target: Target::Chunk(c) }] if *len == size => return Ok(Content::Chunk(*c)),
        _ => {}
    }
    while extents.len() > FANOUT {
        let mut upper = Vec::with_capacity(extents.len() / FANOUT + 1);
        for group in extents.chunks(FANOUT) {
            let first = group[0].offset;
            let end = group[group.len() - 1].end();
            let id = put_object(store, ObjectKind::FileIndex, &FileIndex { extents: group.to_vec() }.encode())?;
            upper.push(Extent { offset: first, len: end - first, target: Target::Index(FileId(id)) });
        }
        extents = upper;
    }
    let id = put_object(store, ObjectKind::FileIndex, &FileIndex { extents }.encode())?;
    Ok(Content::File(FileId(id)))
}

/// The leaf (chunk) extents of a file, flattened, in offset order.
pub fn leaf_extents(store: &dyn ObjectStore, content: &Content, size: u64) -> Result<Vec<(u64, u64, ChunkId)>> {
    let mut out = Vec::new();
    match content {
        Content::None | Content::Tree(_) => {}
        Content::Chunk(c) => out.push((0, size, *c)),
        Content::File(f) => flatten(store, f, &mut out, 0)?,
    }
    Ok(out)
}

fn flatten(store: &dyn ObjectStore, id: &FileId, out: &mut Vec<(u64, u64, ChunkId)>, depth: u32) -> Result<()> {
    if depth > 8 {
        return Err(Error::Decode { what: "file index", why: "nested too deep" });
    }
    let idx = FileIndex::decode(&get_required(store, ObjectKind::FileIndex, &id.0)?)?;
    for e in idx.extents {
        match e.target {
            Target::Chunk(c) => out.push((e.offset, e.len, c)),
            Target::Index(sub) => flatten(store, &sub, out, depth + 1)?,
        }
    }
    Ok(())
}

/// Every object a file's content references (indexes and chunks), for gc,
/// verify and stats. Index objects are reported with their kind.
pub fn visit_objects(store: &dyn ObjectStore, content: &Content, f: &mut dyn FnMut(ObjectKind, &Digest)) -> Result<()> {
    match content {
        Content::None | Content::Tree(_) => Ok(()),
        Content::Chunk(c) => {
            f(ObjectKind::Chunk, &c.0);
            Ok(())
        }
        Content::File(id) => visit_index(store, id, f, 0),
    }
}

fn visit_index(store: &dyn ObjectStore, id: &FileId, f: &mut dyn FnMut(ObjectKind, &Digest), depth: u32) -> Result<()> {
    if depth > 8 {
        return Err(Error::Decode { what: "file index", why: "nested too deep" });
    }
    f(ObjectKind::FileIndex, &id.0);
    let idx = FileIndex::decode(&get_required(store, ObjectKind::FileIndex, &id.0)?)?;
    for e in idx.extents {
        match e.target {
            Target::Chunk(c) => f(ObjectKind::Chunk, &c.0),
            Target::Index(sub) => visit_index(store, &sub, f, depth + 1)?,
        }
    }
    Ok(())
}

/// Stream a whole file's bytes (holes as zeros) to `sink`, chunk by chunk.
pub fn read_all(store: &dyn ObjectStore, content: &Content, size: u64, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let zeros = vec![0u8; CHUNK_SIZE as usize];
    let mut pos = 0u64;
    let emit_hole = |from: u64, to: u64, sink: &mut dyn FnMut(&[u8]) -> Result<()>| -> Result<()> {
        let mut p = from;
        while p < to {
            let n = (to - p).min(CHUNK_SIZE);
            sink(&zeros[..n as usize])?;
            p += n;
        }
        Ok(())
    };
    for (off, len, chunk) in leaf_extents(store, content, size)? {
        emit_hole(pos, off, sink)?;
        let data = get_required_shared(store, ObjectKind::Chunk, &chunk.0)?;
        if data.len() as u64 != len {
            return Err(Error::Decode { what: "file index", why: "extent length differs from its chunk" });
        }
        sink(&data)?;
        pos = off + len;
    }
    emit_hole(pos, size, sink)
}

/// Whether two contents of a `size`-byte file read as the same bytes: a hole
/// and a stored run of zeros are equal (a sparse file and its dense tar round
/// trip are the same data). Windows whose extent lists agree (zero chunks
/// dropped) are decided from the index alone; only the others are read.
pub fn same_bytes(store: &dyn ObjectStore, a: &Content, b: &Content, size: u64) -> Result<bool> {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    if a == b {
        return Ok(true);
    }
    type Pieces = Vec<(u64, u64, ChunkId)>;
    let by_window = |c: &Content| -> Result<BTreeMap<u64, Pieces>> {
        let mut m: BTreeMap<u64, Pieces> = BTreeMap::new();
        for x in leaf_extents(store, c, size)? {
            m.entry(x.0 / CHUNK_SIZE).or_default().push(x);
        }
        Ok(m)
    };
    let (wa, wb) = (by_window(a)?, by_window(b)?);
    let mut zero_ids: HashMap<u64, ChunkId> = HashMap::new();
    let mut data_only = |p: Option<&Pieces>| -> Pieces {
        let mut v = p.cloned().unwrap_or_default();
        v.retain(|(_, len, id)| *zero_ids.entry(*len).or_insert_with(|| ChunkId::of(&vec![0u8; *len as usize])) != *id);
        v
    };
    let window_bytes = |w: u64, p: Option<&Pieces>| -> Result<Vec<u8>> {
        let start = w * CHUNK_SIZE;
        let mut buf = vec![0u8; (size.min(start + CHUNK_SIZE) - start) as usize];
        for (off, len, id) in p.map(Vec::as_slice).unwrap_or_default() {
            let data = get_required_shared(store, ObjectKind::Chunk, &id.0)?;
            let s = (off - start) as usize;
            let n = (*len as usize).min(data.len()).min(buf.len().saturating_sub(s));
            buf[s..s + n].copy_from_slice(&data[..n]);
        }
        Ok(buf)
    };
    let windows: BTreeSet<u64> = wa.keys().chain(wb.keys()).copied().collect();
    for w in windows {
        let (pa, pb) = (wa.get(&w), wb.get(&w));
        if data_only(pa) == data_only(pb) {
            continue;
        }
        if window_bytes(w, pa)? != window_bytes(w, pb)? {
            return Ok(false);
        }
    }
    Ok(true)
}

//! Import from a tar stream (a file or stdin), never touching the local
//! filesystem: entries are built into an in-memory tree, so hostile paths
//! cannot write anywhere.
//!
//! Documented handling of hostile input (docs/operations.md):
//! - a `..` component: the import fails;
//! - absolute paths: the leading `/` is stripped (as GNU tar does);
//! - an entry below a symlink or a file: the import fails;
//! - a hardlink whose target is not earlier in the archive or is a directory:
//!   the import fails;
//! - device nodes, fifos, odd names (newlines, invalid UTF-8): stored exactly;
//! - symlink targets pointing anywhere: stored as data, never followed;
//! - a truncated archive (cut inside an entry, or no end-of-archive marker):
//!   the import fails; in every failure no image is published;
//! - a path given twice: the later entry replaces the earlier, as on extraction.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use super::filter::ImportFilter;
use super::{link_label, precheck, publish, ImportStats, ImportTarget, Progress};
use crate::chunker::CHUNK_SIZE;
use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::repo::{ImageRecord, Repository};
use crate::tree::file::ContentBuilder;
use crate::tree::{store_root, Content, Entry, Kind, Timestamp, Tree};

struct DNode {
    entry: Entry,
    children: BTreeMap<Vec<u8>, DNode>,
}

/// Taken apart iteratively: the derived drop would recurse once per level,
/// and a stream may nest as deep as it likes.
impl Drop for DNode {
    fn drop(&mut self) {
        let mut stack: Vec<DNode> = std::mem::take(&mut self.children).into_values().collect();
        while let Some(mut n) = stack.pop() {
            stack.extend(std::mem::take(&mut n.children).into_values());
        }
    }
}

impl DNode {
    /// Move the entry and the children out (for a walk that takes the tree apart).
    fn split(mut self) -> (Entry, BTreeMap<Vec<u8>, DNode>) {
        let e = std::mem::replace(&mut self.entry, Entry::new(Vec::new(), Kind::File));
        (e, std::mem::take(&mut self.children))
    }

    fn dir(name: Vec<u8>) -> Self {
        let mut e = Entry::new(name, Kind::Dir);
        e.mode = 0o755;
        DNode { entry: e, children: BTreeMap::new() }
    }
}

/// Import a tar stream as a new image.
pub fn import_tar(repo: &Repository, input: impl Read, target: &ImportTarget, progress: &dyn Progress) -> Result<(ImageRecord, ImportStats)> {
    import_tar_filtered(repo, input, target, &ImportFilter::default(), progress)
}

/// [`import_tar`], leaving out the entries `filter` excludes (and those
/// below an excluded directory; a hardlink to an excluded file too).
pub fn import_tar_filtered(repo: &Repository, input: impl Read, target: &ImportTarget, filter: &ImportFilter, progress: &dyn Progress) -> Result<(ImageRecord, ImportStats)> {
    precheck(repo, target)?;
    let (root, stats) = store_tar_filtered(repo.objects(), input, filter, progress)?;
    let rec = publish(repo, target, root, &stats)?;
    Ok((rec, stats))
}

/// Remembers whether the last 512 bytes the tar reader consumed were zeros
/// (the end-of-archive marker), to tell a complete archive from a cut one.
struct Tail<R> {
    inner: R,
    last: Vec<u8>,
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.last.extend_from_slice(&buf[..n]);
        if self.last.len() > 4096 {
            self.last.drain(..self.last.len() - 512);
        }
        Ok(n)
    }
}

pub fn store_tar(store: &dyn ObjectStore, input: impl Read, progress: &dyn Progress) -> Result<(crate::digest::TreeId, ImportStats)> {
    store_tar_filtered(store, input, &ImportFilter::default(), progress)
}

fn store_tar_filtered(store: &dyn ObjectStore, mut input: impl Read, filter: &ImportFilter, progress: &dyn Progress) -> Result<(crate::digest::TreeId, ImportStats)> {
    // Not a tar at all (a wrong file, binary garbage): one clear line,
    // before the tar reader's messages quote the garbage.
    let mut first = [0u8; 512];
    let got = read_full(&mut input, &mut first).map_err(Error::Archive)?;
    check_first_header(&first[..got])?;
    let input = std::io::Read::chain(&first[..got], input);
    let mut ar = tar::Archive::new(Tail { inner: input, last: Vec::new() });
    let mut root = DNode::dir(Vec::new());
    let mut groups: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut group_of: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut stats = ImportStats::default();
    let mut buf = vec![0u8; (16 * CHUNK_SIZE) as usize];
    let mut pax: Option<Vec<(Vec<u8>, Vec<u8>)>> = None;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    // Raw iteration: PAX records are parsed here by their length prefix (the
    // tar crate splits them on newlines, which breaks binary xattr values).
    for ent in ar.entries().map_err(Error::Archive)?.raw(true) {
        let mut ent = ent.map_err(header_error)?;
        let h = ent.header().clone();
        let etype = h.entry_type();
        use tar::EntryType as T;
        match etype {
            T::XHeader | T::GNULongName | T::GNULongLink | T::XGlobalHeader => {
                let mut data = Vec::new();
                ent.read_to_end(&mut data).map_err(Error::Archive)?;
                match etype {
                    T::XHeader if pax.is_none() => pax = Some(parse_pax(&data)?),
                    T::GNULongName if long_name.is_none() => long_name = Some(trim_nul(data)),
                    T::GNULongLink if long_link.is_none() => long_link = Some(trim_nul(data)),
                    T::XGlobalHeader => {}
                    _ => return Err(Error::UnsafeEntry { path: String::new(), why: "two extension headers of one kind for one entry" }),
                }
                continue;
            }
            T::GNUSparse => {
                return Err(Error::NotSupported { path: String::from_utf8_lossy(&h.path_bytes()).into_owned(), why: "GNU sparse tar entries are not supported" });
            }
            _ => {}
        }
        let exts = pax.take().unwrap_or_default();
        let ext = |k: &[u8]| exts.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let raw_path = ext(b"path").or(long_name.take()).unwrap_or_else(|| h.path_bytes().into_owned());
        let link_target = ext(b"linkpath").or(long_link.take()).or_else(|| h.link_name_bytes().map(|c| c.into_owned())).unwrap_or_default();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let unsafe_entry = |why| Error::UnsafeEntry { path: shown.clone(), why };
        if ext(b"size").is_some_and(|v| v != h.size().map(|s| s.to_string().into_bytes()).unwrap_or_default()) {
            return Err(unsafe_entry("PAX size overrides are not supported"));
        }
        let comps = normalize(&raw_path).ok_or_else(|| unsafe_entry("path has a '..' component"))?;
        if filter.excludes_within(&comps) || etype == T::Link && normalize(&link_target).is_some_and(|t| filter.excludes_within(&t)) {
            continue;
        }
        // A PAX number that does not parse (or does not fit a uid) is an
        // error, never silently replaced by the header's value.
        let num = |key: &[u8], why| match ext(key) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u32>().ok()).map(Some).ok_or_else(|| unsafe_entry(why)),
        };
        let mut e = Entry::new(comps.last().map(|c| c.to_vec()).unwrap_or_default(), Kind::File);
        e.mode = h.mode().map_err(header_error)? & 0o7777;
        e.uid = match num(b"uid", "invalid PAX uid (not a number below 2^32)")? {
            Some(u) => u,
            None => u32::try_from(h.uid().map_err(header_error)?).map_err(|_| unsafe_entry("uid does not fit 32 bits"))?,
        };
        e.gid = match num(b"gid", "invalid PAX gid (not a number below 2^32)")? {
            Some(g) => g,
            None => u32::try_from(h.gid().map_err(header_error)?).map_err(|_| unsafe_entry("gid does not fit 32 bits"))?,
        };
        e.mtime = Timestamp { sec: h.mtime().map_err(header_error)? as i64, nsec: 0 };
        for (key, value) in &exts {
            if key == b"mtime" {
                e.mtime = parse_pax_time(value).ok_or_else(|| unsafe_entry("invalid PAX mtime"))?;
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                e.xattrs.push((name.to_vec(), value.clone()));
            }
        }
        e.xattrs.sort();
        e.xattrs.dedup_by(|a, b| a.0 == b.0);
        match etype {
            T::Directory => e.kind = Kind::Dir,
            T::Symlink => {
                e.kind = Kind::Symlink;
                e.target = link_target;
            }
            T::Char | T::Block => {
                e.kind = if etype == T::Char { Kind::CharDev } else { Kind::BlockDev };
                let maj = h.device_major().map_err(header_error)?.unwrap_or(0);
                let min = h.device_minor().map_err(header_error)?.unwrap_or(0);
                e.rdev = libc::makedev(maj, min);
            }
            T::Fifo => e.kind = Kind::Fifo,
            T::Regular | T::Continuous => {
                let mut b = ContentBuilder::new(store);
                let mut pos = 0u64;
                loop {
                    let n = read_full(&mut ent, &mut buf).map_err(Error::Archive)?;
                    if n == 0 {
                        break;
                    }
                    b.push(pos, &buf[..n])?;
                    progress.advance(n as u64);
                    pos += n as u64;
                }
                stats.new_bytes += b.new_bytes;
                e.size = pos;
                e.content = b.finish(pos)?;
            }
            T::Link => {
                let tcomps = normalize(&link_target).ok_or_else(|| unsafe_entry("hardlink target has a '..' component"))?;
                let tnode = find(&root, &tcomps).filter(|n| n.entry.kind != Kind::Dir).ok_or_else(|| unsafe_entry("hardlink target is not an earlier non-directory entry"))?;
                let name = e.name.clone();
                e = tnode.entry.clone();
                e.name = name;
                let tkey = tcomps.join(&b'/');
                let g = match group_of.get(&tkey) {
                    Some(&g) => g,
                    None => {
                        groups.push(vec![tkey.clone()]);
                        group_of.insert(tkey, groups.len() - 1);
                        groups.len() - 1
                    }
                };
                let key = comps.join(&b'/');
                groups[g].push(key.clone());
                group_of.insert(key, g);
            }
            _ => {
                tracing::warn!(path = %shown, ?etype, "skipping unsupported tar entry type");
                continue;
            }
        }
        insert(&mut root, &comps, e).map_err(unsafe_entry)?;
    }
    if pax.is_some() || long_name.is_some() || long_link.is_some() {
        return Err(Error::Archive(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "archive ends after an extension header")));
    }
    let tail = &ar.into_inner().last;
    if tail.len() < 512 || tail[tail.len() - 512..].iter().any(|&b| b != 0) {
        return Err(Error::Archive(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "archive is truncated: no end-of-archive marker")));
    }
    for members in &groups {
        let label = link_label(members.iter().min().map(Vec::as_slice).unwrap_or_default());
        for m in members {
            let comps: Vec<&[u8]> = m.split(|&b| b == b'/').collect();
            if let Some(n) = find_mut(&mut root, &comps) {
                if n.entry.kind != Kind::Dir {
                    n.entry.link = label;
                    n.entry.links = members.len() as u32;
                }
            }
        }
    }
    let mut counted = std::collections::HashSet::new();
    let root_entry = build(store, root, &mut stats, &mut counted)?;
    Ok((store_root(store, root_entry)?, stats))
}

/// The first block of an archive must be a tar header with a right
/// checksum (or the end-of-archive marker of an empty archive).
fn check_first_header(block: &[u8]) -> Result<()> {
    let not_tar = |why| Err(Error::NotTar(why));
    if block.is_empty() {
        return not_tar("the input is empty");
    }
    if block.len() < 512 {
        return not_tar("the input is shorter than one tar header (512 bytes)");
    }
    if block.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let field = &block[148..156];
    let digits: Vec<u8> = field.iter().copied().skip_while(|&b| b == b' ').take_while(|b| (b'0'..=b'7').contains(b)).collect();
    let stored = std::str::from_utf8(&digits).ok().and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) }).sum();
    if stored != Some(sum) {
        return not_tar("its first block is not a tar header (checksum mismatch)");
    }
    Ok(())
}

/// A header field the tar reader could not parse: named without quoting
/// its bytes (which may be anything).
fn header_error(e: std::io::Error) -> Error {
    let msg = e.to_string();
    let why = msg.split(':').next().unwrap_or("malformed header").trim().to_string();
    Error::Archive(std::io::Error::new(e.kind(), why))
}

/// Read until `buf` is full or the input ends; the bytes read.
pub(crate) fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Path components with `.`/empty dropped and a leading `/` stripped; `None` if
/// any component is `..`. Borrowed, not copied: a deep archive's paths are
/// long, and every entry's path is split.
fn normalize(p: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn find<'a>(mut n: &'a DNode, comps: &[&[u8]]) -> Option<&'a DNode> {
    for c in comps {
        n = n.children.get(*c)?;
    }
    Some(n)
}

fn find_mut<'a>(mut n: &'a mut DNode, comps: &[&[u8]]) -> Option<&'a mut DNode> {
    for c in comps {
        n = n.children.get_mut(*c)?;
    }
    Some(n)
}

fn insert(root: &mut DNode, comps: &[&[u8]], e: Entry) -> std::result::Result<(), &'static str> {
    let Some((last, parents)) = comps.split_last() else {
        if e.kind != Kind::Dir {
            return Err("the archive root is not a directory");
        }
        let name = std::mem::take(&mut root.entry.name);
        root.entry = Entry { name, ..e };
        return Ok(());
    };
    let mut n = root;
    for &c in parents {
        // Looked up before anything is copied: most parents exist already.
        if !n.children.contains_key(c) {
            n.children.insert(c.to_vec(), DNode::dir(c.to_vec()));
        }
        let Some(next) = n.children.get_mut(c) else { return Err("a parent of this entry vanished") };
        n = next;
        if n.entry.kind != Kind::Dir {
            return Err("a parent of this entry is not a directory (a symlink or a file)");
        }
    }
    match n.children.get_mut(*last) {
        Some(existing) if existing.entry.kind == Kind::Dir && e.kind == Kind::Dir => existing.entry = e,
        _ => {
            n.children.insert(last.to_vec(), DNode { entry: e, children: BTreeMap::new() });
        }
    }
    Ok(())
}

/// Store the trees below `root` bottom-up and return the root's entry. The
/// tree is taken apart in pre-order onto an explicit stack (no recursion: a
/// stream may nest as deep as it likes), then each directory's tree is stored
/// after its children's.
fn build(store: &dyn ObjectStore, root: DNode, stats: &mut ImportStats, counted: &mut std::collections::HashSet<u64>) -> Result<Entry> {
    // Per directory on the way down: its entry, its remaining children, and
    // the entries of the children already built.
    struct Open {
        entry: Entry,
        rest: std::collections::btree_map::IntoIter<Vec<u8>, DNode>,
        done: Vec<Entry>,
    }
    let mut count = |e: &Entry| {
        stats.entries += 1;
        if e.kind == Kind::File && (e.link == 0 || counted.insert(e.link)) {
            stats.logical_bytes += e.size;
        }
    };
    count(&root.entry);
    let (entry, children) = root.split();
    let mut stack = vec![Open { done: Vec::with_capacity(children.len()), entry, rest: children.into_iter() }];
    loop {
        let Some(top) = stack.last_mut() else {
            return Err(Error::Decode { what: "tar tree", why: "empty build stack" });
        };
        match top.rest.next() {
            Some((_, child)) => {
                let (entry, children) = child.split();
                count(&entry);
                if entry.kind == Kind::Dir {
                    stack.push(Open { done: Vec::with_capacity(children.len()), entry, rest: children.into_iter() });
                } else {
                    top.done.push(entry);
                }
            }
            None => {
                let Some(Open { mut entry, done, .. }) = stack.pop() else { continue };
                let mut t = Tree { entries: done };
                t.sort();
                entry.content = Content::Tree(t.store(store)?);
                match stack.last_mut() {
                    Some(parent) => parent.done.push(entry),
                    None => return Ok(entry),
                }
            }
        }
    }
}

/// PAX extended header records: `LEN KEY=VALUE\n`, where LEN counts the
/// whole record, so values may hold any byte (newlines included).
fn parse_pax(data: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = |why| Error::UnsafeEntry { path: "(pax header)".into(), why };
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if data[pos..].iter().all(|&b| b == 0) {
            break;
        }
        let sp = data[pos..].iter().position(|&b| b == b' ').ok_or(bad("PAX record without a length"))?;
        let len: usize = std::str::from_utf8(&data[pos..pos + sp]).ok().and_then(|s| s.parse().ok()).ok_or(bad("PAX record length is not a number"))?;
        let end = pos.checked_add(len).filter(|&e| e <= data.len() && len > sp + 1).ok_or(bad("PAX record runs past its header"))?;
        let rec = &data[pos + sp + 1..end];
        let rec = rec.strip_suffix(b"\n").ok_or(bad("PAX record does not end in a newline"))?;
        let eq = rec.iter().position(|&b| b == b'=').ok_or(bad("PAX record without '='"))?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        pos = end;
    }
    Ok(out)
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// PAX time: `SECONDS[.FRACTION]`, possibly negative.
fn parse_pax_time(v: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        nsec += c.to_digit(10)? * 10u32.pow(8 - i as u32);
    }
    if neg {
        if nsec == 0 {
            Some(Timestamp { sec: -secs, nsec: 0 })
        } else {
            Some(Timestamp { sec: -secs - 1, nsec: 1_000_000_000 - nsec })
        }
    } else {
        Some(Timestamp { sec: secs, nsec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"12.5"), Some(Timestamp { sec: 12, nsec: 500_000_000 }));
        assert_eq!(parse_pax_time(b"7"), Some(Timestamp { sec: 7, nsec: 0 }));
        assert_eq!(parse_pax_time(b"-1.25"), Some(Timestamp { sec: -2, nsec: 750_000_000 }));
        assert_eq!(parse_pax_time(b"1.123456789123"), Some(Timestamp { sec: 1, nsec: 123_456_789 }));
    }

    #[test]
    fn pax_records_may_hold_newlines() {
        let v = parse_pax(b"21 SCHILY.xattr.a=\n\x00\n12 path=a/b\n").unwrap();
        assert_eq!(v, vec![(b"SCHILY.xattr.a".to_vec(), b"\n\x00".to_vec()), (b"path".to_vec(), b"a/b".to_vec())]);
        assert!(parse_pax(b"99 path=x\n").is_err());
    }

    #[test]
    fn first_block_must_be_a_tar_header() {
        assert!(matches!(check_first_header(b""), Err(Error::NotTar(_))));
        assert!(matches!(check_first_header(&[0x55; 512]), Err(Error::NotTar(_))));
        assert!(check_first_header(&[0; 512]).is_ok(), "an empty archive");
        let mut h = tar::Header::new_gnu();
        h.set_path("a").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert!(check_first_header(h.as_bytes()).is_ok());
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize(b"/etc//x/./y").unwrap(), vec![&b"etc"[..], b"x", b"y"]);
        assert!(normalize(b"a/../b").is_none());
        assert_eq!(normalize(b"./").unwrap(), Vec::<&[u8]>::new());
    }
}

//! Checking an overlay offline (`lvrepo guest fsck`, `lvrepo verify
//! --overlays`): every record decodes, every dirent names a recorded inode,
//! every data block with a sum matches it; and, with `repair`, salvaging
//! what is sound:
//!
//! - a damaged block of an image file's window gets the image's bytes back
//!   (the guest's changes in that block are lost);
//! - a damaged block of a file the guest created becomes zeros;
//! - an undecodable record is dropped, as is a dirent naming no inode;
//! - stray data files (no inode, or an inline one: left by a crash) go.
//!
//! Every repair is reported with what was lost. Runs on an overlay nobody
//! else has open (the caller holds the guest's lock).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;

use super::record::{Dirent, Inode};
use super::sums::{block_of, sum, WindowSums, BLOCK};
use super::{Base, Overlay, ROOT_INO};
use crate::chunker::CHUNK_SIZE;
use crate::error::{Error, Result};
use crate::tree::Kind;

/// One problem found in an overlay.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    /// The file in the guest's namespace it concerns (`-` when no path
    /// leads to it), escaped like `lvrepo ls` paths.
    pub path: String,
    /// The overlay's own file that holds the damage.
    pub file: String,
    /// The damaged byte range of `path`, for data.
    pub range: Option<(u64, u64)>,
    pub what: String,
    /// Damage (exit 4), as opposed to left-overs of a crash.
    pub damage: bool,
    /// What `--repair` did about it, and what was lost.
    pub repaired: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub overlay: String,
    pub files: u64,
    pub bytes_checked: u64,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn damaged(&self) -> usize {
        self.problems.iter().filter(|p| p.damage).count()
    }
}

/// A problem before it has a path.
struct Found {
    ino: Option<u64>,
    file: String,
    range: Option<(u64, u64)>,
    what: String,
    damage: bool,
    repaired: Option<String>,
}

impl Overlay {
    /// Check this overlay (see the module docs); `repair` salvages.
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let mut found = Vec::new();
        let meta = self.dir().join("meta").display().to_string();
        let rec = |ino: Option<u64>, what: String, repaired: Option<String>| Found { ino, file: meta.clone(), range: None, what, damage: true, repaired };

        // Records.
        let mut inodes: HashMap<u64, Inode> = HashMap::new();
        let mut bad_keys: Vec<(&str, Vec<u8>)> = Vec::new();
        let scanned = self.db.scan("inodes", |k, v| {
            match (k.try_into().map(u64::from_be_bytes), Inode::decode(v)) {
                (Ok(ino), Ok(i)) => {
                    inodes.insert(ino, i);
                }
                (ino, _) => {
                    found.push(rec(ino.ok(), "inode record does not decode".into(), repair.then(|| "record dropped (the file is gone)".into())));
                    bad_keys.push(("inodes", k.to_vec()));
                }
            }
            Ok(())
        });
        if let Err(e) = scanned {
            found.push(rec(None, format!("column family inodes does not read: {}", super::error_chain(&e)), None));
        }
        let scanned = self.db.scan("dirents", |k, v| {
            let name = crate::walk::escape_path(k.get(8..).unwrap_or_default());
            match Dirent::decode(v) {
                Ok(Dirent::Child { ino, .. }) if !inodes.contains_key(&ino) => {
                    found.push(rec(Some(ino), format!("entry {name:?} names inode {ino}, which has no record"), repair.then(|| "entry dropped".into())));
                    bad_keys.push(("dirents", k.to_vec()));
                }
                Ok(_) => {}
                Err(_) => {
                    found.push(rec(None, format!("directory entry {name:?} does not decode"), repair.then(|| "entry dropped".into())));
                    bad_keys.push(("dirents", k.to_vec()));
                }
            }
            Ok(())
        });
        if let Err(e) = scanned {
            found.push(rec(None, format!("column family dirents does not read: {}", super::error_chain(&e)), None));
        }
        let mut sums: HashMap<u64, Vec<(u64, WindowSums)>> = HashMap::new();
        let scanned = self.db.scan("sums", |k, v| {
            let key = window_key_parts(k);
            match (key, WindowSums::decode(v)) {
                (Some((ino, w)), Ok(s)) if inodes.contains_key(&ino) => sums.entry(ino).or_default().push((w, s)),
                (key, decoded) => {
                    let ino = key.map(|k| k.0);
                    let what = if decoded.is_err() { "block sums do not decode".into() } else { "block sums of an inode with no record".to_string() };
                    let w = key.map_or(0, |k| k.1);
                    let lost = "sums and window record dropped: the window reads as the image's bytes (an image file) or zeros; the guest's bytes there are lost";
                    let mut f = rec(ino, what, repair.then(|| lost.into()));
                    f.range = Some((w * CHUNK_SIZE, (w + 1) * CHUNK_SIZE));
                    f.damage = decoded.is_err();
                    found.push(f);
                    bad_keys.push(("sums", k.to_vec()));
                    // Same key layout: the window is no longer local.
                    bad_keys.push(("windows", k.to_vec()));
                }
            }
            Ok(())
        });
        if let Err(e) = scanned {
            found.push(rec(None, format!("column family sums does not read: {}", super::error_chain(&e)), None));
        }
        let scanned = self.db.scan("windows", |k, v| {
            if super::db::decode_mask(v).is_err() {
                let key = window_key_parts(k);
                let lost = "window record and its sums dropped: the window reads as the image's bytes; the guest's bytes there are lost";
                let mut f = rec(key.map(|k| k.0), "window record does not decode".into(), repair.then(|| lost.into()));
                let w = key.map_or(0, |k| k.1);
                f.range = Some((w * CHUNK_SIZE, (w + 1) * CHUNK_SIZE));
                found.push(f);
                bad_keys.push(("windows", k.to_vec()));
                bad_keys.push(("sums", k.to_vec()));
            }
            Ok(())
        });
        if let Err(e) = scanned {
            found.push(rec(None, format!("column family windows does not read: {}", super::error_chain(&e)), None));
        }
        // The other column families: read through, so that RocksDB checks
        // every block of their tables.
        for cf in ["inline", "meta"] {
            if let Err(e) = self.db.scan(cf, |_, _| Ok(())) {
                found.push(rec(None, format!("column family {cf} does not read: {}", super::error_chain(&e)), None));
            }
        }
        for key in [&b"root"[..], b"next_ino"] {
            if self.db.meta(key)?.is_none() {
                found.push(rec(None, format!("meta record {} is missing", String::from_utf8_lossy(key)), None));
            }
        }
        if repair && !bad_keys.is_empty() {
            let mut b = self.db.batch();
            for (cf, k) in &bad_keys {
                self.db.delete_raw(&mut b, cf, k)?;
            }
            self.db.commit(b)?;
        }

        // Data.
        let mut report = CheckReport { overlay: self.dir().display().to_string(), ..Default::default() };
        for (&ino, i) in &inodes {
            if i.kind != Kind::File || i.base == Base::Inline {
                continue;
            }
            let Some(ws) = sums.get(&ino) else { continue };
            report.files += 1;
            let p = self.data_path(ino);
            let file = match std::fs::File::open(&p) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("opening overlay data", p, e)),
            };
            let mut bad: Vec<u64> = Vec::new();
            let mut block = vec![0u8; BLOCK as usize];
            for (w, s) in ws {
                for k in 0..s.cur.len() {
                    if s.cur[k].is_none() {
                        continue;
                    }
                    let at = w * CHUNK_SIZE + k as u64 * BLOCK;
                    block.fill(0);
                    if let Some(f) = &file {
                        super::local::read_into(f, &mut block, at).map_err(|e| Error::io("reading overlay data", &p, e))?;
                    }
                    report.bytes_checked += BLOCK;
                    if s.check(k, &block) == super::sums::Check::Damaged {
                        bad.push(at);
                    }
                }
            }
            bad.sort_unstable();
            for (s, e) in merge_ranges(&bad) {
                let what = if file.is_none() { "data file is missing" } else { "bytes do not match their checksum" };
                let repaired = if repair { Some(self.salvage(ino, i, s, e)?) } else { None };
                found.push(Found { ino: Some(ino), file: p.display().to_string(), range: Some((s, e.min(i.size))), what: what.into(), damage: true, repaired });
            }
        }
        // Left-overs of crashes: data files of no inode, or of an inline one.
        let data = self.dir().join("data");
        if let Ok(rd) = std::fs::read_dir(&data) {
            for ent in rd.flatten() {
                let name = ent.file_name();
                let ino = name.to_str().and_then(|n| u64::from_str_radix(n, 16).ok());
                let stray = match ino.and_then(|i| inodes.get(&i)) {
                    None => true,
                    Some(i) => i.base == Base::Inline || i.kind != Kind::File,
                };
                if stray {
                    let repaired = if repair { std::fs::remove_file(ent.path()).map_err(|e| Error::io("removing", ent.path(), e))?; Some("removed".into()) } else { None };
                    found.push(Found { ino: None, file: ent.path().display().to_string(), range: None, what: "stray data file (no inode uses it; left by a crash)".into(), damage: false, repaired });
                }
            }
        }
        let paths = self.paths_of(&found.iter().filter_map(|f| f.ino).collect())?;
        report.problems = found
            .into_iter()
            .map(|f| Problem {
                path: f.ino.and_then(|i| paths.get(&i)).map_or_else(|| "-".to_string(), |p| crate::walk::escape_path(p)),
                file: f.file,
                range: f.range,
                what: f.what,
                damage: f.damage,
                repaired: f.repaired,
            })
            .collect();
        Ok(report)
    }

    /// Replace the damaged blocks `[s, e)` of file `ino`: with the image's
    /// bytes for an image file, zeros for a file the guest created; returns
    /// what was lost.
    fn salvage(&self, ino: u64, i: &Inode, s: u64, e: u64) -> Result<String> {
        let mut st = self.lock();
        let f = self.data_file(&mut st, ino, true)?.ok_or(Error::Posix(libc::EIO))?;
        let (limit, image) = match i.base {
            Base::File { limit, .. } => (limit.min(i.size), true),
            _ => (0, false),
        };
        let mut b = self.db.batch();
        let mut at = s;
        while at < e {
            let mut block = vec![0u8; BLOCK as usize];
            if at < limit {
                let node = self.node(&mut st, ino)?;
                let x = self.extents(node)?;
                let n = (limit - at).min(BLOCK) as usize;
                self.read_base(&x, at, &mut block[..n])?;
            }
            f.write_all_at(&block, at).map_err(|er| Error::io("writing overlay data", self.data_path(ino), er))?;
            let (w, k) = block_of(at);
            let sums = self.sums_of(self.node(&mut st, ino)?, ino)?;
            let ws = sums.entry(w).or_default();
            ws.set(k, sum(&block), false);
            let ws = ws.clone();
            self.db.put_sums(&mut b, ino, w, &ws)?;
            at += BLOCK;
        }
        f.sync_data().map_err(|er| Error::io("syncing overlay data", self.data_path(ino), er))?;
        self.db.commit(b)?;
        self.db.sync()?;
        tracing::warn!(guest = %self.guest, path = %self.data_path(ino).display(), offset = s, len = e - s, "repaired damaged overlay data");
        Ok(if image { format!("bytes {s}..{e} now read as the image's (the guest's changes there are lost)") } else { format!("bytes {s}..{e} lost: now zeros") })
    }

    /// Paths (in the merged namespace) of the inodes in `want`: a walk of
    /// the whole tree, breadth first (only when something was found).
    fn paths_of(&self, want: &HashSet<u64>) -> Result<HashMap<u64, Vec<u8>>> {
        let mut out = HashMap::new();
        if want.is_empty() {
            return Ok(out);
        }
        let mut st = self.lock();
        let mut queue = std::collections::VecDeque::from([(ROOT_INO, Vec::new())]);
        while let Some((dir, path)) = queue.pop_front() {
            let Ok(list) = self.list_locked(&mut st, dir) else { continue };
            for l in list {
                let mut p = path.clone();
                p.push(b'/');
                p.extend_from_slice(&l.name);
                if want.contains(&l.ino) {
                    out.entry(l.ino).or_insert_with(|| p.clone());
                }
                if l.kind == Kind::Dir && self.resolve(&mut st, dir, &l.name).ok().flatten().is_some() {
                    queue.push_back((l.ino, p));
                }
            }
            if out.len() == want.len() {
                break;
            }
        }
        Ok(out)
    }
}

/// Block offsets (sorted) as `[start, end)` ranges of adjacent blocks.
fn merge_ranges(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        match out.last_mut() {
            Some((_, e)) if *e == b => *e = b + BLOCK,
            _ => out.push((b, b + BLOCK)),
        }
    }
    out
}

/// The image root an overlay directory's database records (to open it
/// when its guest's STATE is lost), read without changing anything.
pub fn recorded_root(dir: &std::path::Path) -> Result<crate::digest::TreeId> {
    let db = super::db::open_read_only(&dir.join("meta"))?;
    let cf = db.cf_handle("meta").ok_or(Error::Decode { what: "overlay database", why: "column family missing" })?;
    let r = db.get_cf(cf, b"root")?.ok_or(Error::Decode { what: "overlay database", why: "no root record" })?;
    Ok(crate::digest::TreeId(crate::digest::Digest::from_slice(&r).map_err(|_| Error::Decode { what: "overlay root", why: "not 32 bytes" })?))
}

/// Let RocksDB salvage a database that does not open (its repair keeps what
/// its files still hold; records in damaged parts are lost).
pub fn repair_database(dir: &std::path::Path) -> Result<()> {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(false);
    rocksdb::DB::repair(&o, dir.join("meta"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn adjacent_blocks_merge() {
        assert_eq!(super::merge_ranges(&[0, 4096, 12288]), vec![(0, 8192), (12288, 16384)]);
        assert!(super::merge_ranges(&[]).is_empty());
    }
}

/// The inode and window of a `windows` or `sums` key.
fn window_key_parts(k: &[u8]) -> Option<(u64, u64)> {
    let word = |r: std::ops::Range<usize>| k.get(r).and_then(|a| a.try_into().ok()).map(u64::from_be_bytes);
    word(0..8).zip(word(8..16))
}

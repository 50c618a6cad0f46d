//! Opening an overlay of an older format: format 1 lacks the `inline`
//! column family (added empty), format 2 the `sums` one. Upgrading to
//! format 3 sums every block of data the overlay holds: those bytes are
//! trusted once, as they are (nothing older can tell whether they were
//! damaged), and checked on every read from then on.

use std::fs::File;

use super::db::MetaDb;
use super::record::Inode;
use super::sums::{block_of, sum, WindowSums, BLOCK};
use super::{Base, Overlay};
use crate::chunker::CHUNK_SIZE;
use crate::error::{Error, Result};
use crate::tree::Kind;

/// Sum the data of every file of an overlay that had no sums.
pub(crate) fn add_sums(ov: &Overlay) -> Result<()> {
    let db: &MetaDb = &ov.db;
    let mut files: Vec<(u64, Inode)> = Vec::new();
    db.scan("inodes", |k, v| {
        let ino = k.try_into().map(u64::from_be_bytes).map_err(|_| Error::Decode { what: "overlay inode key", why: "not 8 bytes" })?;
        let i = Inode::decode(v)?;
        if i.kind == Kind::File && i.base != Base::Inline {
            files.push((ino, i));
        }
        Ok(())
    })?;
    let mut summed = 0u64;
    for (ino, i) in files {
        let p = ov.data_path(ino);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("opening overlay data", p, e)),
        };
        // The ranges that held bytes: the recorded windows of an image
        // file, the data regions of a file the guest created.
        let ranges: Vec<(u64, u64)> = match i.base {
            Base::File { .. } => {
                let mut w: Vec<u64> = db.windows(ino)?.into_keys().collect();
                w.sort_unstable();
                w.into_iter().map(|w| (w * CHUNK_SIZE, ((w + 1) * CHUNK_SIZE).min(i.size))).filter(|(s, e)| s < e).collect()
            }
            _ => crate::import::dir::data_regions(&f, i.size).map_err(|e| Error::io("seeking overlay data", &p, e))?,
        };
        let mut sums: std::collections::BTreeMap<u64, WindowSums> = Default::default();
        let mut block = vec![0u8; BLOCK as usize];
        for (s, e) in ranges {
            let mut at = s / BLOCK * BLOCK;
            while at < e {
                super::local::read_into(&f, &mut block, at).map_err(|er| Error::io("reading overlay data", &p, er))?;
                // Bytes past the size read as zeros from now on.
                if at + BLOCK > i.size {
                    block[(i.size - at) as usize..].fill(0);
                }
                let (w, k) = block_of(at);
                sums.entry(w).or_default().set(k, sum(&block), false);
                at += BLOCK;
            }
        }
        let mut b = db.batch();
        for (w, s) in &sums {
            db.put_sums(&mut b, ino, *w, s)?;
        }
        db.commit(b)?;
        summed += 1;
    }
    db.sync()?;
    tracing::info!(overlay = %ov.dir().display(), files = summed, "overlay upgraded to format 3: data files summed");
    Ok(())
}

//! Image refs: `NAME:VERSION` → [`ImageRecord`], immutable once published.
//!
//! Key in the `refs` column family: `"image\0" NAME "\0" VERSION (u32 big-endian)`,
//! so a prefix scan lists one image's versions in order. Value: the record as JSON
//! (small, human-inspectable, and extensible without a format bump).

use std::fmt;
use std::str::FromStr;

use rocksdb::{WriteBatch, WriteOptions};

use super::{Repository, CF_REFS};
use crate::digest::{ImageId, TreeId};
use crate::error::{Error, Result};

/// `NAME` (latest version) or `NAME:VERSION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    pub version: Option<u32>,
}

impl FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::BadImageName(s.to_string());
        let (name, version) = match s.split_once(':') {
            Some((n, v)) => (n, Some(v.parse::<u32>().ok().filter(|&v| v > 0).ok_or_else(bad)?)),
            None => (s, None),
        };
        let ok = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(bad());
        }
        Ok(ImageRef { name: name.to_string(), version })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    pub name: String,
    pub version: u32,
    /// The root tree (see [`crate::tree::store_root`]).
    pub root: ImageId,
    /// The image this one was derived from, as `NAME:VERSION`.
    pub parent: Option<String>,
    /// Publication time, seconds since the Unix epoch.
    pub created: i64,
    pub message: String,
    /// Number of entries (all kinds) and the sum of regular file sizes.
    pub files: u64,
    pub logical_bytes: u64,
    /// A block volume: the root holds one file, the disk
    /// ([`crate::nbd::volume::VOLUME_FILE`]). Absent in older records.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volume: bool,
}

impl ImageRecord {
    pub fn label(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }
    pub fn root_tree(&self) -> TreeId {
        self.root.0
    }
}

pub(crate) fn key(name: &str, version: u32) -> Vec<u8> {
    let mut k = prefix(name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn prefix(name: &str) -> Vec<u8> {
    let mut k = b"image\0".to_vec();
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

impl Repository {
    /// Every image version, sorted by name then version.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        let cf = self.cf(CF_REFS)?;
        for item in self.db().prefix_iterator_cf(cf, b"image\0") {
            let (k, v) = item?;
            if !k.starts_with(b"image\0") {
                break;
            }
            out.push(decode(&v)?);
        }
        out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        Ok(out)
    }

    /// The record `r` names; a bare name means its latest version.
    pub fn resolve(&self, r: &ImageRef) -> Result<ImageRecord> {
        let cf = self.cf(CF_REFS)?;
        match r.version {
            Some(v) => match self.db().get_cf(cf, key(&r.name, v))? {
                Some(b) => decode(&b),
                None => Err(Error::ImageNotFound(r.to_string())),
            },
            None => self
                .images()?
                .into_iter()
                .filter(|i| i.name == r.name)
                .max_by_key(|i| i.version)
                .ok_or_else(|| Error::ImageNotFound(r.to_string())),
        }
    }

    /// The version a new import of `name` gets when none is given.
    pub fn next_version(&self, name: &str) -> Result<u32> {
        Ok(self.images()?.iter().filter(|i| i.name == name).map(|i| i.version).max().unwrap_or(0) + 1)
    }

    /// Publish an image. Objects must already be flushed; the ref is written last,
    /// synced, so a crash before this leaves no visible image.
    pub fn publish(&self, rec: &ImageRecord) -> Result<()> {
        self.writable()?;
        let cf = self.cf(CF_REFS)?;
        let k = key(&rec.name, rec.version);
        if self.db().get_cf(cf, &k)?.is_some() {
            return Err(Error::ImageExists(rec.label()));
        }
        // A remote repository: the bucket's ref is the publication.
        if let Some(r) = self.remote() {
            crate::remote::publish::publish(self, r, rec)?;
        }
        let mut b = WriteBatch::default();
        b.put_cf(cf, k, serde_json::to_vec(rec).map_err(|_| Error::Decode { what: "image record", why: "unencodable" })?);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db().write_opt(b, &wo)?;
        tracing::info!(image = %rec.label(), root = %rec.root.0, "published image");
        Ok(())
    }
}

impl Repository {
    /// Remove an image ref; its data stays until `gc`.
    pub fn delete_image(&self, r: &ImageRef) -> Result<ImageRecord> {
        self.writable()?;
        self.refuse_if_append_only()?;
        let rec = self.resolve(r)?;
        if let Some(remote) = self.remote() {
            crate::remote::publish::delete_ref(remote, &rec)?;
        }
        let cf = self.cf(CF_REFS)?;
        let mut b = WriteBatch::default();
        b.delete_cf(cf, key(&rec.name, rec.version));
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db().write_opt(b, &wo)?;
        tracing::info!(image = %rec.label(), "deleted image ref");
        Ok(rec)
    }
}

fn decode(b: &[u8]) -> Result<ImageRecord> {
    serde_json::from_slice(b).map_err(|_| Error::Decode { what: "image record", why: "invalid JSON" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_refs() {
        assert_eq!("sles10-oracle:2".parse::<ImageRef>().unwrap(), ImageRef { name: "sles10-oracle".into(), version: Some(2) });
        assert_eq!("deb".parse::<ImageRef>().unwrap().version, None);
        for bad in ["", ":1", "a:0", "a:x", "a b", "../x", "a/b", ".hidden"] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} must be rejected");
        }
    }
}

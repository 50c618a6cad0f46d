//! Channels: movable names for an image's versions (`web:stable` → `web:3`),
//! set with `lvrepo tag`. Versions stay immutable; a channel is a pointer
//! that moves, and keeps the history of where it pointed.
//!
//! Key in the `refs` column family: `"channel\0" NAME "\0" CHANNEL`, so a
//! prefix scan lists one image's channels (`images()` scans `"image\0"`
//! and never sees them). Value: [`Channel`] as JSON. A channel name is an
//! image-name-like word that is not all digits (`NAME:3` is a version).

use rocksdb::{WriteBatch, WriteOptions};

use super::{ImageRecord, ImageRef, Repository, CF_REFS};
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Channel {
    pub name: String,
    pub channel: String,
    /// The version it points at now.
    pub version: u32,
    /// When it was set to that version (seconds since the epoch).
    pub time: i64,
    /// Where it pointed before, oldest first: `(version, time)`.
    #[serde(default)]
    pub history: Vec<(u32, i64)>,
}

/// Whether `c` may name a channel.
pub fn valid_channel(c: &str) -> bool {
    !c.is_empty() && c.len() <= 128 && !c.starts_with('.') && !c.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub(crate) fn key(name: &str, channel: &str) -> Vec<u8> {
    let mut k = prefix(name);
    k.extend_from_slice(channel.as_bytes());
    k
}

fn prefix(name: &str) -> Vec<u8> {
    let mut k = b"channel\0".to_vec();
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

fn decode(b: &[u8]) -> Result<Channel> {
    serde_json::from_slice(b).map_err(|_| Error::Decode { what: "channel record", why: "invalid JSON" })
}

impl Repository {
    /// Point channel `channel` of image `image.name` at version `image`
    /// (which must exist). Moving an existing channel is an overwrite:
    /// refused on an append-only repository.
    pub fn set_channel(&self, image: &ImageRef, channel: &str) -> Result<Channel> {
        self.writable()?;
        if !valid_channel(channel) {
            return Err(Error::BadImageName(format!("{}:{channel}", image.name)));
        }
        let rec = self.resolve(image)?;
        let cf = self.cf(CF_REFS)?;
        let k = key(&rec.name, channel);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let next = |old: Option<Channel>| -> Result<Channel> {
            Ok(match old {
                Some(old) if old.version == rec.version => old,
                Some(mut old) => {
                    self.refuse_if_append_only()?;
                    old.history.push((old.version, old.time));
                    Channel { version: rec.version, time: now, ..old }
                }
                None => Channel { name: rec.name.clone(), channel: channel.to_string(), version: rec.version, time: now, history: Vec::new() },
            })
        };
        let ch = match self.packs().remote() {
            // The bucket's channel is the one moved (a conditional update).
            Some(r) => crate::remote::publish::update_channel(r, &rec.name, channel, |old| next(old.map(|b| decode(&b)).transpose()?), |c| {
                serde_json::to_vec(c).map_err(|_| Error::Decode { what: "channel record", why: "unencodable" })
            })?,
            None => {
                let old = self.db().get_cf(cf, &k)?.map(|b| decode(&b)).transpose()?;
                let unchanged = old.as_ref().is_some_and(|o| o.version == rec.version);
                let ch = next(old)?;
                if unchanged {
                    return Ok(ch);
                }
                ch
            }
        };
        let mut b = WriteBatch::default();
        b.put_cf(cf, k, serde_json::to_vec(&ch).map_err(|_| Error::Decode { what: "channel record", why: "unencodable" })?);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db().write_opt(b, &wo)?;
        tracing::info!(image = %rec.label(), channel, "channel set");
        Ok(ch)
    }

    /// The channels of image `name`, sorted by channel name.
    pub fn channels(&self, name: &str) -> Result<Vec<Channel>> {
        let p = prefix(name);
        let mut out = Vec::new();
        for item in self.db().prefix_iterator_cf(self.cf(CF_REFS)?, &p) {
            let (k, v) = item?;
            if !k.starts_with(&p) {
                break;
            }
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// The record `s` names: `NAME` (latest), `NAME:VERSION` or `NAME:CHANNEL`.
    pub fn resolve_name(&self, s: &str) -> Result<ImageRecord> {
        if let Some((name, ch)) = s.split_once(':') {
            if valid_channel(ch) {
                return self.resolve_channel(name, ch);
            }
        }
        self.resolve(&s.parse()?)
    }

    /// The version channel `channel` of image `name` points at.
    pub fn resolve_channel(&self, name: &str, channel: &str) -> Result<ImageRecord> {
        let not_found = || Error::ImageNotFound(format!("{name}:{channel}"));
        let b = self.db().get_cf(self.cf(CF_REFS)?, key(name, channel))?.ok_or_else(not_found)?;
        let ch = decode(&b)?;
        self.resolve(&ImageRef { name: name.to_string(), version: Some(ch.version) })
    }
}

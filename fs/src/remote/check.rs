//! verify of a remote repository's bucket: every pack with an index is
//! read whole (streamed) and its BLAKE3 compared with its name, so damage in
//! the bucket is found even by a host whose cache holds good copies (the
//! bucket's bytes are what every other host gets).

use futures_util::TryStreamExt;
use object_store::ObjectStoreExt;

use super::sync::{list, rel_name};
use super::Remote;
use crate::error::Result;

/// The bucket's packs whose bytes do not match their names: `(object, why)`.
pub fn damaged_packs(remote: &Remote) -> Result<Vec<(String, String)>> {
    let listed: Vec<String> = list(remote, "packs")?.iter().map(|m| rel_name(remote, m)).collect();
    let mut out = Vec::new();
    for rel in listed.iter().filter(|r| r.ends_with(".pack")) {
        let Some(name) = rel.strip_prefix("packs/").and_then(|n| n.strip_suffix(".pack")) else { continue };
        if !listed.contains(&format!("packs/{name}.idx")) {
            continue;
        }
        let path = remote.path(rel);
        let hashed = remote.block(async {
            let mut stream = remote.bucket().get(&path).await?.into_stream();
            let (mut h, mut n) = (blake3::Hasher::new(), 0u64);
            while let Some(b) = stream.try_next().await? {
                h.update(&b);
                n += b.len() as u64;
            }
            Ok::<_, object_store::Error>((h.finalize().to_hex().to_string(), n))
        });
        match hashed {
            Ok((hex, n)) => {
                remote.count(n);
                if hex != name {
                    tracing::error!(remote_pack = name, "pack in the bucket does not match its name: damaged");
                    out.push((format!("{}/{rel}", remote.url()), "damaged in the bucket: its bytes do not match its name".to_string()));
                }
            }
            Err(e) => out.push((format!("{}/{rel}", remote.url()), crate::error::chain(&remote.err("reading", rel, e)))),
        }
    }
    Ok(out)
}

//! Signed images (ed25519) and the signing policy. Layer: operations, on
//! the repository (signatures in its `meta` column family, the policy in a
//! file beside it).
//!
//! A signature covers what names an image's content: the bytes
//! `"lvrepo image signature v1\0" NAME "\0" VERSION (u32 BE) ROOT (32) VOLUME (1)`.
//! The content itself is held by the root id (every object is checked
//! against its id when read), so a signature that verifies means the image
//! is the one the key holder signed; a ref pointed at another root (a
//! version deleted and imported again, a hand-edited index) no longer
//! verifies. Stored as `meta` key `"signature\0" NAME "\0" VERSION (BE)
//! "\0" PUBKEY (32)` → the 64-byte signature, so deleting a version leaves
//! its signatures (a version made again under the same label is then
//! "tampered", not "unsigned").
//!
//! Policy: `REPO/POLICY` (JSON `{"require_signature": [PUBKEY hex…]}`,
//! replaced atomically). With keys in it, [`check`] refuses an image that
//! no listed key signed ([`Error::Unsigned`], exit 77) or whose signature by
//! a listed key does not verify ([`Error::BadSignature`], exit 4).
//!
//! Key files: `FILE` holds `lvrepo ed25519 secret key\n<seed hex>\n`
//! (0600), `FILE.pub` holds `lvrepo ed25519 public key\n<key hex>\n`.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rocksdb::WriteOptions;

use crate::error::{Error, Result};
use crate::repo::{ImageRecord, Repository, CF_META};

const SECRET_HEADER: &str = "lvrepo ed25519 secret key";
const PUBLIC_HEADER: &str = "lvrepo ed25519 public key";
const POLICY: &str = "POLICY";

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Public keys (hex) one of which must have signed an image.
    #[serde(default)]
    pub require_signature: Vec<String>,
}

fn hex_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bad_key(path: &Path) -> Error {
    Error::BadFile { what: "lvrepo ed25519 key", path: path.to_path_buf() }
}

fn read_key<const N: usize>(path: &Path, header: &str) -> Result<[u8; N]> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(bad_key(path));
    }
    lines.next().and_then(hex_decode::<N>).ok_or_else(|| bad_key(path))
}

/// Write a new key pair: `out` (secret, 0600) and `out.pub`. Returns the
/// public key (hex). Refuses to overwrite either file.
pub fn generate(out: &Path) -> Result<String> {
    let mut seed = [0u8; 32];
    // SAFETY: getrandom writes at most `seed.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n != seed.len() as isize {
        return Err(Error::io("reading randomness for", out, std::io::Error::last_os_error()));
    }
    let sk = SigningKey::from_bytes(&seed);
    let public = hex(&sk.verifying_key().to_bytes());
    let pub_path = public_path(out);
    for (p, text) in [(out.to_path_buf(), format!("{SECRET_HEADER}\n{}\n", hex(&seed))), (pub_path, format!("{PUBLIC_HEADER}\n{public}\n"))] {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::DestinationNotEmpty(p.clone()),
            _ => Error::io("creating", &p, e),
        })?;
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io("writing", &p, e))?;
    }
    Ok(public)
}

/// `FILE.pub` beside `FILE`.
pub fn public_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// The public key (hex) in a `.pub` file.
pub fn read_public(path: &Path) -> Result<String> {
    let k: [u8; 32] = read_key(path, PUBLIC_HEADER)?;
    VerifyingKey::from_bytes(&k).map_err(|_| bad_key(path))?;
    Ok(hex(&k))
}

fn message(rec: &ImageRecord) -> Vec<u8> {
    let mut m = b"lvrepo image signature v1\0".to_vec();
    m.extend_from_slice(rec.name.as_bytes());
    m.push(0);
    m.extend_from_slice(&rec.version.to_be_bytes());
    m.extend_from_slice(rec.root.0 .0.as_bytes());
    m.push(u8::from(rec.volume));
    m
}

fn sig_prefix(rec: &ImageRecord) -> Vec<u8> {
    let mut k = b"signature\0".to_vec();
    k.extend_from_slice(rec.name.as_bytes());
    k.push(0);
    k.extend_from_slice(&rec.version.to_be_bytes());
    k.push(0);
    k
}

/// Sign image `rec` of `repo` (writable) with the secret key in `key_file`;
/// returns the public key (hex).
pub fn sign(repo: &Repository, rec: &ImageRecord, key_file: &Path) -> Result<String> {
    repo.writable()?;
    let seed: [u8; 32] = read_key(key_file, SECRET_HEADER)?;
    let sk = SigningKey::from_bytes(&seed);
    let public = sk.verifying_key().to_bytes();
    let sig = sk.sign(&message(rec));
    let mut k = sig_prefix(rec);
    k.extend_from_slice(&public);
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    repo.db().put_cf_opt(repo.cf(CF_META)?, k, sig.to_bytes(), &wo)?;
    tracing::info!(image = %rec.label(), key = %hex(&public), "image signed");
    Ok(hex(&public))
}

/// Every signature of `rec`: (public key, signature bytes).
fn signatures(repo: &Repository, rec: &ImageRecord) -> Result<Vec<([u8; 32], Vec<u8>)>> {
    let p = sig_prefix(rec);
    let mut out = Vec::new();
    for item in repo.db().prefix_iterator_cf(repo.cf(CF_META)?, &p) {
        let (k, v) = item?;
        if !k.starts_with(&p) {
            break;
        }
        if let Ok(pk) = <[u8; 32]>::try_from(&k[p.len()..]) {
            out.push((pk, v.to_vec()));
        }
    }
    Ok(out)
}

/// The repository's policy (empty when it has none).
pub fn policy(repo: &Path) -> Result<Policy> {
    let p = repo.join(POLICY);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|_| Error::BadFile { what: "policy", path: p }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
        Err(e) => Err(crate::perms::open_error("reading", &p, e)),
    }
}

/// Require a signature by the key in `pub_file` from now on.
pub fn require_signature(repo: &Repository, pub_file: &Path) -> Result<Policy> {
    repo.writable()?;
    let key = read_public(pub_file)?;
    let mut pol = policy(repo.path())?;
    if !pol.require_signature.contains(&key) {
        pol.require_signature.push(key);
    }
    let json = serde_json::to_vec_pretty(&pol).map_err(|_| Error::Decode { what: "policy", why: "unencodable" })?;
    crate::guest::write_atomic(&repo.path().join(POLICY), &json)?;
    Ok(pol)
}

/// Refuse `rec` under the repository's policy: no signature by a required
/// key (exit 77), or one that does not verify (tampered, exit 4).
pub fn check(repo: &Repository, rec: &ImageRecord) -> Result<()> {
    let pol = policy(repo.path())?;
    if pol.require_signature.is_empty() {
        return Ok(());
    }
    let msg = message(rec);
    let mut bad = false;
    for (pk, sig) in signatures(repo, rec)? {
        if !pol.require_signature.contains(&hex(&pk)) {
            continue;
        }
        let ok = match (VerifyingKey::from_bytes(&pk), <[u8; 64]>::try_from(sig.as_slice())) {
            (Ok(vk), Ok(s)) => vk.verify_strict(&msg, &Signature::from_bytes(&s)).is_ok(),
            _ => false,
        };
        if ok {
            return Ok(());
        }
        bad = true;
    }
    if bad {
        tracing::error!(image = %rec.label(), "image signature does not verify: the image is not the one signed");
        return Err(Error::BadSignature(rec.label()));
    }
    Err(Error::Unsigned(rec.label()))
}

/// A signature carried by a stream (`send` → `receive`): the image it is
/// for, the public key and the signature, hex.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CarriedSignature {
    pub name: String,
    pub version: u32,
    pub key: String,
    pub signature: String,
}

/// Every signature `repo` holds for `rec`, to carry in a stream.
pub fn carried(repo: &Repository, rec: &ImageRecord) -> Result<Vec<CarriedSignature>> {
    Ok(signatures(repo, rec)?.into_iter().map(|(pk, sig)| CarriedSignature { name: rec.name.clone(), version: rec.version, key: hex(&pk), signature: hex(&sig) }).collect())
}

/// A received image's carried signatures, checked before anything is
/// published: every one carried for `rec` must verify (one that does not is
/// a tampered stream, exit 4, policy or not), and under the policy one by a
/// required key must be among them (else exit 77). Returns them, to store
/// with [`store_carried`].
pub fn check_carried(repo: &Repository, rec: &ImageRecord, sigs: &[CarriedSignature]) -> Result<Vec<([u8; 32], [u8; 64])>> {
    let msg = message(rec);
    let mut ok = Vec::new();
    for c in sigs.iter().filter(|c| c.name == rec.name && c.version == rec.version) {
        let parsed = hex_decode::<32>(&c.key).zip(hex_decode::<64>(&c.signature));
        let verified = parsed.filter(|(pk, sig)| VerifyingKey::from_bytes(pk).is_ok_and(|vk| vk.verify_strict(&msg, &Signature::from_bytes(sig)).is_ok()));
        match verified {
            Some(v) => ok.push(v),
            None => {
                tracing::error!(image = %rec.label(), key = %c.key, "a signature the stream carries does not verify: the image is not the one signed");
                return Err(Error::BadSignature(rec.label()));
            }
        }
    }
    let pol = policy(repo.path())?;
    if !pol.require_signature.is_empty() && !ok.iter().any(|(pk, _)| pol.require_signature.contains(&hex(pk))) {
        return Err(Error::Unsigned(rec.label()));
    }
    Ok(ok)
}

/// Store checked signatures of `rec` (before its ref is published: a
/// signature of a label not there yet is harmless, an image of a signed
/// stream left unsigned by a crash would not be).
pub fn store_carried(repo: &Repository, rec: &ImageRecord, sigs: &[([u8; 32], [u8; 64])]) -> Result<()> {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    for (pk, sig) in sigs {
        let mut k = sig_prefix(rec);
        k.extend_from_slice(pk);
        repo.db().put_cf_opt(repo.cf(CF_META)?, k, sig, &wo)?;
    }
    Ok(())
}

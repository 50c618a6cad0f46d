//! Typed BLAKE3 ids.
//!
//! Every object in a repository is named by a 32-byte BLAKE3 digest. Chunks are
//! hashed as plain BLAKE3 of their bytes (so anyone can check a chunk with `b3sum`);
//! structured objects (trees, file indexes) are hashed in their own derive-key domain,
//! so a chunk whose bytes happen to equal a tree encoding never collides with it.
//! The wrapper types keep a tree id from being passed where a chunk id is expected.

use std::fmt;
use std::str::FromStr;

/// Length of every digest in bytes.
pub const DIGEST_LEN: usize = 32;

/// A raw 32-byte BLAKE3 digest. Prints as `b3:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; DIGEST_LEN]);

/// Why a digest could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest must be {DIGEST_LEN} bytes, got {0}")]
    WrongLength(usize),
    #[error("digest text must start with \"b3:\"")]
    MissingPrefix,
    #[error("digest text has a non-hex character")]
    BadHex,
}

impl Digest {
    pub fn from_slice(b: &[u8]) -> Result<Self, DigestError> {
        let a: [u8; DIGEST_LEN] = b.try_into().map_err(|_| DigestError::WrongLength(b.len()))?;
        Ok(Digest(a))
    }
    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
        }
        s
    }
    /// First 12 hex digits, for logs and progress lines.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b3:{}", self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b3:{}", self.short())
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("b3:").ok_or(DigestError::MissingPrefix)?;
        if hex.len() != DIGEST_LEN * 2 {
            return Err(DigestError::WrongLength(hex.len() / 2));
        }
        let mut out = [0u8; DIGEST_LEN];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or(DigestError::BadHex)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(DigestError::BadHex)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Digest(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The kind of object an id names; also the hashing domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ObjectKind {
    /// File content bytes.
    Chunk = 1,
    /// A directory listing (see `tree`).
    Tree = 2,
    /// A file's extent index (see `tree::file`).
    FileIndex = 3,
}

impl ObjectKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Chunk),
            2 => Some(Self::Tree),
            3 => Some(Self::FileIndex),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Chunk => "chunk",
            Self::Tree => "tree",
            Self::FileIndex => "file-index",
        }
    }
    /// The digest of `bytes` in this kind's domain.
    pub fn hash(self, bytes: &[u8]) -> Digest {
        match self {
            Self::Chunk => Digest(*blake3::hash(bytes).as_bytes()),
            Self::Tree => derive("lvrepo 2026 tree v1", bytes),
            Self::FileIndex => derive("lvrepo 2026 file-index v1", bytes),
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn derive(ctx: &str, bytes: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new_derive_key(ctx);
    h.update(bytes);
    Digest(*h.finalize().as_bytes())
}

macro_rules! typed_id {
    ($(#[$m:meta])* $name:ident, $kind:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Digest);
        impl $name {
            pub const KIND: ObjectKind = $kind;
            /// Hash `bytes` in this id's domain.
            pub fn of(bytes: &[u8]) -> Self {
                $name(Self::KIND.hash(bytes))
            }
            pub fn digest(&self) -> &Digest {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl FromStr for $name {
            type Err = DigestError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok($name(s.parse()?))
            }
        }
    };
}

typed_id!(
    /// Id of a chunk: plain BLAKE3 of its uncompressed bytes.
    ChunkId,
    ObjectKind::Chunk
);
typed_id!(
    /// Id of an encoded directory tree.
    TreeId,
    ObjectKind::Tree
);
typed_id!(
    /// Id of an encoded file extent index.
    FileId,
    ObjectKind::FileIndex
);

/// Id of a published image: the root tree it names. Distinct type so an image
/// root and an arbitrary subtree are not confused in APIs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ImageId(pub TreeId);

/// Id of a guest checkpoint: the root tree of the guest's state at that instant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CheckpointId(pub TreeId);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prints_with_prefix_and_rejects_wrong_length() {
        let id = ChunkId::of(b"hello");
        let s = id.to_string();
        assert!(s.starts_with("b3:"));
        assert_eq!(s.len(), 3 + 64);
        assert_eq!(s.parse::<ChunkId>().unwrap(), id);
        assert_eq!("b3:abcd".parse::<Digest>(), Err(DigestError::WrongLength(2)));
        assert_eq!(Digest::from_slice(&[0u8; 31]), Err(DigestError::WrongLength(31)));
        assert_eq!(format!("{}", "x".repeat(64)).parse::<Digest>(), Err(DigestError::MissingPrefix));
    }

    #[test]
    fn chunk_id_is_plain_blake3_and_domains_differ() {
        assert_eq!(ChunkId::of(b"abc").0 .0, *blake3::hash(b"abc").as_bytes());
        assert_ne!(TreeId::of(b"abc").0, ChunkId::of(b"abc").0);
        assert_ne!(TreeId::of(b"abc").0, FileId::of(b"abc").0);
    }

    proptest! {
        #[test]
        fn text_round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
            let d = Digest(bytes);
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }
    }
}

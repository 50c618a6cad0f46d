//! Persistent overlay records and their encodings (overlay format 1).
//!
//! An [`Inode`] record exists for every inode the guest changed or created;
//! an unchanged image entry has none and is synthesised from the image tree.
//! A [`Dirent`] records a name the guest added (`Child`) or removed from the
//! image (`Whiteout`): deletions are records, not 0:0 character devices, so real
//! 0:0 devices still work.

use crate::digest::{Digest, FileId, TreeId};
use crate::error::{Error, Result};
use crate::tree::codec::{put_bytes, put_iv, put_uv, Reader};
use crate::tree::{Content, Kind, Timestamp};

/// Where an inode's unchanged data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// Nothing: a new inode (its data, if any, is all in the overlay).
    None,
    /// A regular file of the image: bytes below `limit` that are not in an
    /// overlay window come from `content`; above `limit` the file reads zeros
    /// (a truncate lowers it).
    File { content: Content, limit: u64 },
    /// A directory of the image: its listing, merged with the dirents, and its
    /// original image path (children's inode numbers derive from it).
    Dir { tree: TreeId, path: super::ImagePath },
    /// A small file the guest created (format 2): its bytes are in the
    /// database's `inline` column family, not in a data file; bytes past
    /// them up to the size read as zeros.
    Inline,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub kind: Kind,
    /// Permission bits incl. setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub size: u64,
    pub rdev: u64,
    pub nlink: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub target: Vec<u8>,
    pub base: Base,
}

impl Inode {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(96);
        o.push(1); // record version
        o.push(self.kind as u8);
        put_uv(&mut o, self.mode.into());
        put_uv(&mut o, self.uid.into());
        put_uv(&mut o, self.gid.into());
        for t in [self.atime, self.mtime, self.ctime] {
            put_iv(&mut o, t.sec);
            put_uv(&mut o, t.nsec.into());
        }
        put_uv(&mut o, self.size);
        put_uv(&mut o, self.rdev);
        put_uv(&mut o, self.nlink.into());
        put_uv(&mut o, self.xattrs.len() as u64);
        for (k, v) in &self.xattrs {
            put_bytes(&mut o, k);
            put_bytes(&mut o, v);
        }
        put_bytes(&mut o, &self.target);
        match &self.base {
            Base::None => o.push(0),
            Base::File { content, limit } => {
                match content {
                    Content::Chunk(c) => {
                        o.push(1);
                        o.extend_from_slice(c.0.as_bytes());
                    }
                    Content::File(f) => {
                        o.push(2);
                        o.extend_from_slice(f.0.as_bytes());
                    }
                    Content::None | Content::Tree(_) => o.push(3),
                }
                put_uv(&mut o, *limit);
            }
            Base::Dir { tree, path } => {
                o.push(4);
                o.extend_from_slice(tree.0.as_bytes());
                put_bytes(&mut o, &path.to_bytes());
            }
            Base::Inline => o.push(5),
        }
        o
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "overlay inode");
        if r.u8()? != 1 {
            return Err(r.err("unknown record version"));
        }
        let kind = Kind::from_u8(r.u8()?).ok_or_else(|| r.err("bad kind"))?;
        let mode = r.u32v()?;
        let uid = r.u32v()?;
        let gid = r.u32v()?;
        let mut ts = [Timestamp::default(); 3];
        for t in &mut ts {
            *t = Timestamp { sec: r.iv()?, nsec: r.u32v()? };
        }
        let size = r.uv()?;
        let rdev = r.uv()?;
        let nlink = r.u32v()?;
        let nx = r.uv()?;
        let mut xattrs = Vec::new();
        for _ in 0..nx {
            xattrs.push((r.bytes()?.to_vec(), r.bytes()?.to_vec()));
        }
        let target = r.bytes()?.to_vec();
        let digest = |r: &mut Reader<'_>| Digest::from_slice(r.take(32)?).map_err(|_| r.err("bad digest"));
        let base = match r.u8()? {
            0 => Base::None,
            1 => Base::File { content: Content::Chunk(crate::digest::ChunkId(digest(&mut r)?)), limit: r.uv()? },
            2 => Base::File { content: Content::File(FileId(digest(&mut r)?)), limit: r.uv()? },
            3 => Base::File { content: Content::None, limit: r.uv()? },
            4 => Base::Dir { tree: TreeId(digest(&mut r)?), path: super::ImagePath::new(r.bytes()?) },
            5 => Base::Inline,
            _ => return Err(r.err("bad base tag")),
        };
        if !r.done() {
            return Err(r.err("trailing bytes"));
        }
        Ok(Inode { kind, mode, uid, gid, atime: ts[0], mtime: ts[1], ctime: ts[2], size, rdev, nlink, xattrs, target, base })
    }
}

/// A name in a directory, as changed by the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dirent {
    /// The image's entry of this name is deleted.
    Whiteout,
    /// The name refers to inode `ino` of `kind`.
    Child { ino: u64, kind: Kind },
}

impl Dirent {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Dirent::Whiteout => vec![0],
            Dirent::Child { ino, kind } => {
                let mut v = vec![*kind as u8];
                v.extend_from_slice(&ino.to_le_bytes());
                v
            }
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let bad = || Error::Decode { what: "overlay dirent", why: "malformed" };
        match b {
            [0] => Ok(Dirent::Whiteout),
            [k, rest @ ..] if rest.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(rest);
                Ok(Dirent::Child { ino: u64::from_le_bytes(a), kind: Kind::from_u8(*k).ok_or_else(bad)? })
            }
            _ => Err(bad()),
        }
    }
}

/// Key of a dirent: parent inode (big-endian, so one directory's names are
/// contiguous and sorted) then the name bytes.
pub fn dirent_key(parent: u64, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// Key of an overlay window: inode then window index, both big-endian.
pub fn window_key(ino: u64, window: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ino.to_be_bytes());
    k[8..].copy_from_slice(&window.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn inode_round_trips(mode in 0u32..0o7777, size in any::<u64>(), nlink in any::<u32>(), sec in any::<i64>(), limit in any::<u64>(), path in proptest::collection::vec(any::<u8>(), 0..30), which in 0u8..5) {
            let base = match which {
                0 => Base::None,
                1 => Base::File { content: Content::Chunk(crate::digest::ChunkId(Digest([7; 32]))), limit },
                2 => Base::File { content: Content::None, limit },
                3 => Base::Inline,
                _ => Base::Dir { tree: TreeId(Digest([9; 32])), path: super::super::ImagePath::new(&path) },
            };
            let i = Inode { kind: Kind::File, mode, uid: 1, gid: 2, atime: Timestamp { sec, nsec: 5 }, mtime: Timestamp { sec: 1, nsec: 0 }, ctime: Timestamp::default(), size, rdev: 3, nlink, xattrs: vec![(b"user.a".to_vec(), path)], target: b"t".to_vec(), base };
            prop_assert_eq!(Inode::decode(&i.encode()).unwrap(), i);
        }
    }

    #[test]
    fn dirents_round_trip() {
        for d in [Dirent::Whiteout, Dirent::Child { ino: 42, kind: Kind::Dir }] {
            assert_eq!(Dirent::decode(&d.encode()).unwrap(), d);
        }
        assert!(Dirent::decode(&[9, 1]).is_err());
    }
}

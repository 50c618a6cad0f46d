//! Image paths of overlay directories, shared by prefix.
//!
//! An image directory's inode carries its image path, because its children's
//! inode numbers are a hash of theirs ([`base_ino`](super::base_ino)). Held
//! as bytes, the paths of a chain of directories cost depth² bytes (the
//! kernel holds every ancestor of what it holds: 100,000 one-letter levels
//! would be 10 GB), and each lookup would copy its parent's path. So a path
//! is a link to its parent's plus its own name, and every
//! [`SNAP_EVERY`]th level keeps the hasher state of `"path:" + path`: a
//! child's number hashes at most that many names. Memory and time per level
//! are then bounded by the name lengths, whatever the depth.
//!
//! The bytes (`to_bytes`) are exactly what the flat representation held, and
//! overlay records still store them whole (a record is written only for a
//! directory the guest changed).

use std::sync::Arc;

use crate::tree::Entry;

/// Levels between two kept hasher states.
const SNAP_EVERY: u32 = 32;

/// The image path of a directory (`""` for the root, else `/a/b`).
#[derive(Clone)]
pub struct ImagePath(Arc<Level>);

struct Level {
    parent: Option<ImagePath>,
    /// This level's bytes: `/name`, or a whole path at the top.
    bytes: Box<[u8]>,
    /// Bytes of the whole path.
    len: usize,
    /// Levels since the nearest kept hasher state (0: this one has it).
    since: u32,
    /// A hasher fed with `"path:"` and this whole path.
    snap: Option<Box<blake3::Hasher>>,
}

impl ImagePath {
    /// A path given whole (the root's `""`, or one read from a record).
    pub fn new(bytes: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"path:").update(bytes);
        ImagePath(Arc::new(Level { parent: None, bytes: bytes.into(), len: bytes.len(), since: 0, snap: Some(Box::new(h)) }))
    }

    /// The path of entry `name` in this directory.
    pub fn child(&self, name: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + 1);
        bytes.push(b'/');
        bytes.extend_from_slice(name);
        let since = self.0.since + 1;
        let snap = (since >= SNAP_EVERY).then(|| {
            let mut h = self.hasher();
            h.update(&bytes);
            Box::new(h)
        });
        let since = if snap.is_some() { 0 } else { since };
        let len = self.0.len + bytes.len();
        ImagePath(Arc::new(Level { parent: Some(self.clone()), bytes: bytes.into(), len, since, snap }))
    }

    /// A hasher fed with `"path:"` and this path.
    fn hasher(&self) -> blake3::Hasher {
        let mut tail: Vec<&[u8]> = Vec::new();
        let mut l = &*self.0;
        let mut h = loop {
            if let Some(h) = &l.snap {
                break (**h).clone();
            }
            tail.push(&l.bytes);
            match &l.parent {
                Some(p) => l = &p.0,
                // Every top level keeps a state; hash from scratch otherwise.
                None => {
                    let mut h = blake3::Hasher::new();
                    h.update(b"path:");
                    break h;
                }
            }
        };
        for b in tail.iter().rev() {
            h.update(b);
        }
        h
    }

    /// The inode number of image entry `e`, named `name` in this directory:
    /// [`base_ino`](super::base_ino) of `self/name`, without building it.
    pub fn child_ino(&self, name: &[u8], e: &Entry) -> u64 {
        if e.link != 0 {
            return super::base_ino(b"", e);
        }
        let mut h = self.hasher();
        h.update(b"/").update(name);
        super::ino_of(h.finalize())
    }

    /// Bytes of the whole path.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether this is the root's (empty) path.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// The whole path.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            parts.push(&p.0.bytes);
            cur = p.0.parent.as_ref();
        }
        parts.reverse();
        parts.concat()
    }
}

/// Unlinked iteratively: the derived drop would recurse once per level.
impl Drop for Level {
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(p) = next {
            next = match Arc::try_unwrap(p.0) {
                Ok(mut l) => l.parent.take(),
                Err(_) => None,
            };
        }
    }
}

impl PartialEq for ImagePath {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.0, &o.0) || self.to_bytes() == o.to_bytes()
    }
}

impl Eq for ImagePath {}

impl std::fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", crate::walk::escape_path(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::ImagePath;
    use crate::overlay::base_ino;
    use crate::tree::{Entry, Kind};

    #[test]
    fn numbers_and_bytes_match_the_flat_path() {
        let e = Entry::new(b"x".to_vec(), Kind::Dir);
        let mut p = ImagePath::new(b"");
        let mut flat = Vec::new();
        for i in 0..100u32 {
            let name = format!("n{i}");
            assert_eq!(p.child_ino(name.as_bytes(), &e), base_ino(&[&flat[..], b"/", name.as_bytes()].concat(), &e), "level {i}");
            p = p.child(name.as_bytes());
            flat.extend_from_slice(b"/");
            flat.extend_from_slice(name.as_bytes());
            assert_eq!(p.to_bytes(), flat);
            assert_eq!(p.len(), flat.len());
        }
        // A path read back from a record numbers its children the same.
        let back = ImagePath::new(&flat);
        assert_eq!(back.child_ino(b"z", &e), p.child_ino(b"z", &e));
        assert_eq!(back, p);
    }

    #[test]
    fn a_chain_of_100000_levels_drops_without_recursion() {
        let mut p = ImagePath::new(b"");
        for _ in 0..100_000 {
            p = p.child(b"d");
        }
        assert_eq!(p.to_bytes().len(), 200_000);
        drop(p);
    }
}

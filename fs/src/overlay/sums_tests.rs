//! The block sums stay right through every way a file's bytes change
//! (writes of any alignment, copy-up, the move out of the database,
//! truncates, hole punching), across reopen, and damage is refused.

use std::sync::Arc;

use super::ns::NewNode;
use super::{Overlay, ROOT_INO};
use crate::object::{MemStore, ObjectStore};
use crate::tree::file::ContentBuilder;
use crate::tree::{store_root, Content, Entry, Kind, Tree};

const IMAGE_LEN: usize = 300_000;

fn image() -> Vec<u8> {
    (0..IMAGE_LEN).map(|i| (i * 7 % 253) as u8).collect()
}

fn open(dir: &std::path::Path, store: &Arc<dyn ObjectStore>, root: crate::digest::TreeId) -> Overlay {
    Overlay::open(dir, store.clone(), root).unwrap()
}

/// A small generator (no clock: the same sequence every run).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn sums_follow_every_change_and_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let mut b = ContentBuilder::new(&*store);
    b.push(0, &image()).unwrap();
    let mut f = Entry::new(b"img".to_vec(), Kind::File);
    f.mode = 0o644;
    f.size = IMAGE_LEN as u64;
    f.content = b.finish(IMAGE_LEN as u64).unwrap();
    let mut root = Entry::new(Vec::new(), Kind::Dir);
    root.content = Content::Tree(Tree { entries: vec![f] }.store(&*store).unwrap());
    let root = store_root(&*store, root).unwrap();
    let dir = tmp.path().join("ov");
    let ov = open(&dir, &store, root);
    let (img, _) = ov.lookup(ROOT_INO, b"img").unwrap();
    let nn = NewNode { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, rdev: 0, target: b"" };
    let (new, _) = ov.create(ROOT_INO, b"new", nn).unwrap();
    let mut model = [image(), Vec::new()];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for step in 0..400 {
        let which = rng.below(2) as usize;
        let ino = [img, new][which];
        let m = &mut model[which];
        match rng.below(10) {
            0 => {
                let size = rng.below(400_000) as usize;
                ov.truncate(ino, size as u64).unwrap();
                m.resize(size, 0);
            }
            1 if !m.is_empty() => {
                let off = rng.below(m.len() as u64);
                let len = rng.below(70_000).min(m.len() as u64 - off);
                ov.fallocate(ino, off, len, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE).unwrap();
                m[off as usize..(off + len) as usize].fill(0);
            }
            _ => {
                let off = rng.below(380_000) as usize;
                let most = if rng.below(2) == 0 { 100 } else { 140_000 };
                let len = 1 + rng.below(most) as usize;
                let data: Vec<u8> = (0..len).map(|i| (step * 31 + i) as u8 | 1).collect();
                ov.write(ino, off as u64, &data).unwrap();
                if m.len() < off + len {
                    m.resize(off + len, 0);
                }
                m[off..off + len].copy_from_slice(&data);
            }
        }
        if step % 50 == 49 {
            for (ino, m) in [(img, &model[0]), (new, &model[1])] {
                assert_eq!(ov.read(ino, 0, 1 << 20).unwrap(), *m, "step {step}");
            }
        }
    }
    let report = ov.check(false).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    drop(ov);
    let ov = open(&dir, &store, root);
    for (name, m) in [(&b"img"[..], &model[0]), (b"new", &model[1])] {
        let (ino, _) = ov.lookup(ROOT_INO, name).unwrap();
        assert_eq!(ov.read(ino, 0, 1 << 20).unwrap(), *m, "after reopen");
    }
    // A flipped byte in a block with data: EIO-class damage, not bytes.
    let (ino, _) = ov.lookup(ROOT_INO, b"new").unwrap();
    assert!(model[1].len() > 5000, "the model file is too short to damage");
    drop(ov);
    let p = dir.join("data").join(format!("{ino:016x}"));
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[4100] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let ov = open(&dir, &store, root);
    let (ino, _) = ov.lookup(ROOT_INO, b"new").unwrap();
    let e = ov.read(ino, 4096, 10).unwrap_err();
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(e.class(), crate::error::ErrorClass::Damaged);
    assert_eq!(ov.read(ino, 0, 4096).unwrap(), model[1][..4096], "the sound block before it reads");
    let report = ov.check(false).unwrap();
    assert_eq!(report.problems.iter().map(|p| p.range).collect::<Vec<_>>(), [Some((4096, 8192))]);
}

/// A first write into an image file's window makes local only the blocks
/// it touches (format 4): a whole block costs no copy, a part of one copies
/// that block alone; the rest of the window still reads from the image, and
/// damage to the written block is still refused.
#[test]
fn a_first_write_copies_only_what_it_touches() {
    use std::os::unix::fs::MetadataExt;
    let (_tmp, store, root, dir) = image_overlay();
    let ov = open(&dir, &store, root);
    let (img, _) = ov.lookup(ROOT_INO, b"img").unwrap();
    let mut model = image();
    ov.write(img, 65536 + 4096, &[7u8; 4096]).unwrap();
    model[65536 + 4096..65536 + 8192].fill(7);
    ov.write(img, 100, b"partial").unwrap();
    model[100..107].copy_from_slice(b"partial");
    assert_eq!(ov.read(img, 0, 1 << 20).unwrap(), model);
    let windows = ov.db.windows(img).unwrap();
    assert_eq!(windows.get(&1), Some(&0b10), "one block of window 1");
    assert_eq!(windows.get(&0), Some(&0b1), "one block of window 0");
    let p = dir.join("data").join(format!("{img:016x}"));
    assert!(std::fs::metadata(&p).unwrap().blocks() * 512 <= 4 * 4096, "the data file holds two blocks, not two windows");
    drop(ov);
    let ov = open(&dir, &store, root);
    assert_eq!(ov.read(img, 0, 1 << 20).unwrap(), model, "after reopen");
    drop(ov);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[65536 + 4100] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let ov = open(&dir, &store, root);
    assert_eq!(ov.read(img, 65536 + 4096, 10).unwrap_err().class(), crate::error::ErrorClass::Damaged);
    assert_eq!(ov.read(img, 65536, 4096).unwrap(), model[65536..65536 + 4096], "the image's block beside it reads");
    assert_eq!(ov.read(img, 65536 + 8192, 4096).unwrap(), model[65536 + 8192..65536 + 12288]);
}

/// Zeroing stores nothing for whole blocks (no copy from the image, no
/// zeros written): they read as zeros, report as such, and a later partial
/// write into one starts from zeros, not from the image.
#[test]
fn zeroing_a_range_stores_nothing_for_its_whole_blocks() {
    use super::blockmap::Source;
    use std::os::unix::fs::MetadataExt;
    let (_tmp, store, root, dir) = image_overlay();
    let ov = open(&dir, &store, root);
    let (img, _) = ov.lookup(ROOT_INO, b"img").unwrap();
    let mut model = image();
    ov.zero_range(img, 1000, 200_000).unwrap();
    model[1000..201_000].fill(0);
    assert_eq!(ov.read(img, 0, 1 << 20).unwrap(), model);
    let p = dir.join("data").join(format!("{img:016x}"));
    assert!(std::fs::metadata(&p).unwrap().blocks() * 512 <= 2 * 4096, "only the two partial blocks are stored");
    let map = ov.block_map(img, 0, IMAGE_LEN as u64, 100).unwrap();
    let zero: u64 = map.iter().filter(|r| r.source == Source::Zero).map(|r| r.len).sum();
    assert_eq!(zero, 200_704 - 4096, "the whole blocks of [1000, 201000) are the overlay's zeros: {map:?}");
    ov.write(img, 8192 + 10, b"x").unwrap();
    model[8192 + 10] = b'x';
    drop(ov);
    let ov = open(&dir, &store, root);
    assert_eq!(ov.read(img, 0, 1 << 20).unwrap(), model, "after reopen");
    let report = ov.check(false).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A temporary directory, a store with an image holding file `img` (the
/// bytes of [`image`]), and where its overlay goes.
fn image_overlay() -> (tempfile::TempDir, Arc<dyn ObjectStore>, crate::digest::TreeId, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
    let root = image_root(&store);
    let dir = tmp.path().join("ov");
    (tmp, store, root, dir)
}

fn image_root(store: &Arc<dyn ObjectStore>) -> crate::digest::TreeId {
    let mut b = ContentBuilder::new(&**store);
    b.push(0, &image()).unwrap();
    let mut f = Entry::new(b"img".to_vec(), Kind::File);
    f.size = IMAGE_LEN as u64;
    f.content = b.finish(IMAGE_LEN as u64).unwrap();
    let mut root = Entry::new(Vec::new(), Kind::Dir);
    root.content = Content::Tree(Tree { entries: vec![f] }.store(&**store).unwrap());
    store_root(&**store, root).unwrap()
}

#[test]
fn window_records_of_every_format_decode() {
    use super::db::{decode_mask, encode_mask};
    assert_eq!(decode_mask(&[]).unwrap(), super::sums::FULL, "before format 4: the whole window");
    assert_eq!(encode_mask(super::sums::FULL), Vec::<u8>::new());
    assert_eq!(decode_mask(&encode_mask(0b1010)).unwrap(), 0b1010);
    assert!(decode_mask(&[2, 0, 0]).is_err());
    assert!(decode_mask(&[1, 0]).is_err());
}

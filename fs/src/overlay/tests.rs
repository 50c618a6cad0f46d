//! Tests of opening an overlay (format upgrade) and of image inode numbers.

use super::*;

/// An overlay of format 1 (no `inline` column family) opens, is
/// upgraded to the current format with what it held (its data summed), and new files
/// go inline.
#[test]
fn a_format_1_overlay_is_upgraded_when_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(crate::object::MemStore::new());
    let mut root = Entry::new(Vec::new(), Kind::Dir);
    root.content = Content::Tree(Tree { entries: Vec::new() }.store(&*store).unwrap());
    let root = crate::tree::store_root(&*store, root).unwrap();
    let dir = tmp.path().join("ov");
    // Format 1 as it was written: four column families, a file with a
    // data file.
    std::fs::create_dir_all(dir.join("data")).unwrap();
    {
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&o, dir.join("meta"), ["inodes", "dirents", "windows", "meta"]).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, b"root", root.0.as_bytes()).unwrap();
        db.put_cf(meta, b"next_ino", 3u64.to_le_bytes()).unwrap();
        let f = Inode {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            atime: Timestamp::default(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            size: 5,
            rdev: 0,
            nlink: 1,
            xattrs: Vec::new(),
            target: Vec::new(),
            base: Base::None,
        };
        db.put_cf(db.cf_handle("inodes").unwrap(), 2u64.to_be_bytes(), f.encode()).unwrap();
        db.put_cf(db.cf_handle("dirents").unwrap(), record::dirent_key(ROOT_INO, b"old"), Dirent::Child { ino: 2, kind: Kind::File }.encode()).unwrap();
        std::fs::write(dir.join("data").join(format!("{:016x}", 2)), b"hello").unwrap();
    }
    std::fs::write(dir.join("FORMAT"), "lvrepo overlay\nformat 1\n").unwrap();
    let ov = Overlay::open(&dir, store.clone(), root).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("FORMAT")).unwrap(), format!("lvrepo overlay\nformat {OVERLAY_FORMAT}\n"));
    let (old, _) = ov.lookup(ROOT_INO, b"old").unwrap();
    assert_eq!(ov.read(old, 0, 100).unwrap(), b"hello");
    let nn = ns::NewNode { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, rdev: 0, target: b"" };
    let (new, i) = ov.create(ROOT_INO, b"new", nn).unwrap();
    assert_eq!(i.base, Base::Inline);
    ov.write(new, 0, b"small").unwrap();
    drop(ov);
    let ov = Overlay::open(&dir, store, root).unwrap();
    let (new, _) = ov.lookup(ROOT_INO, b"new").unwrap();
    assert_eq!(ov.read(new, 0, 100).unwrap(), b"small");
    assert!(!dir.join("data").join(format!("{new:016x}")).exists(), "a small new file got a data file");
}

/// Inode numbers are persisted (overlay records are keyed by them) and
/// the kernel holds them across remounts: the derivation must not drift.
#[test]
fn base_ino_is_the_documented_hash() {
    let expect = |pre: &[u8]| {
        let h = blake3::hash(pre);
        (u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()) & (BASE_BIT - 1)) | BASE_BIT
    };
    let mut e = Entry::new(b"passwd".to_vec(), Kind::File);
    assert_eq!(base_ino(b"/etc/passwd", &e), expect(b"path:/etc/passwd"));
    assert_eq!(base_ino(b"/etc/passwd", &e), 0x44a8_7d84_ada8_79d6);
    e.link = 0x1234;
    assert_eq!(base_ino(b"/etc/passwd", &e), expect(&[b"link:".as_slice(), &0x1234u64.to_le_bytes()].concat()));
    assert_ne!(base_ino(b"/etc/passwd", &e), base_ino(b"/etc/passwd", &Entry::new(b"passwd".to_vec(), Kind::File)));
}

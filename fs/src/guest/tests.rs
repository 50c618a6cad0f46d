//! Property test: any sequence of filesystem operations applied to the overlay
//! engine, then folded, gives the same tree as the same operations applied to
//! a real directory and imported. Checks fold (checkpoint) against ext4 as the
//! model, including the dirty-directory pruning.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use crate::import::dir::store_dir;
use crate::import::NoProgress;
use crate::object::{MemStore, ObjectStore};
use crate::overlay::ns::{NewNode, SetAttr};
use crate::overlay::{Overlay, ROOT_INO};
use crate::tree::file::read_all;
use crate::digest::TreeId;
use crate::tree::Kind;
use crate::walk::walk;

#[derive(Debug, Clone)]
enum Op {
    Write { file: u8, off: u32, len: u16, byte: u8 },
    Truncate { file: u8, size: u32 },
    Chmod { file: u8, mode: u16 },
    Unlink { file: u8 },
    Rename { from: u8, to: u8 },
    Mkdir { dir: u8 },
    Link { file: u8, to: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0u32..300_000, 1u16..5000, any::<u8>()).prop_map(|(file, off, len, byte)| Op::Write { file, off, len, byte }),
        (0u8..6, 0u32..300_000).prop_map(|(file, size)| Op::Truncate { file, size }),
        (0u8..6, 0u16..0o777).prop_map(|(file, mode)| Op::Chmod { file, mode }),
        (0u8..6).prop_map(|file| Op::Unlink { file }),
        (0u8..6, 0u8..6).prop_map(|(from, to)| Op::Rename { from, to }),
        (0u8..3).prop_map(|dir| Op::Mkdir { dir }),
        (0u8..6, 0u8..6).prop_map(|(file, to)| Op::Link { file, to }),
    ]
}

/// File `n` lives in `d<n%3>/f<n>` (image dirs d0..d2 exist in the image).
fn rel(n: u8) -> (String, String) {
    (format!("d{}", n % 3), format!("f{n}"))
}

fn seed_image(dir: &Path) {
    for d in 0..3 {
        std::fs::create_dir_all(dir.join(format!("d{d}/keep"))).unwrap();
        std::fs::write(dir.join(format!("d{d}/keep/static")), b"never touched").unwrap();
    }
    for n in 0..6u8 {
        let (d, f) = rel(n);
        let data: Vec<u8> = (0..(n as usize * 70_000 + 10)).map(|i| (i * 7 + n as usize) as u8).collect();
        std::fs::write(dir.join(&d).join(&f), data).unwrap();
    }
}

fn apply_real(root: &Path, op: &Op) {
    use std::os::unix::fs::FileExt;
    let p = |n: u8| {
        let (d, f) = rel(n);
        root.join(d).join(f)
    };
    let _ = match op {
        Op::Write { file, off, len, byte } => std::fs::OpenOptions::new().write(true).open(p(*file)).and_then(|f| f.write_all_at(&vec![*byte; *len as usize], u64::from(*off))),
        Op::Truncate { file, size } => std::fs::OpenOptions::new().write(true).open(p(*file)).and_then(|f| f.set_len(u64::from(*size))),
        Op::Chmod { file, mode } => std::fs::set_permissions(p(*file), std::fs::Permissions::from_mode(u32::from(*mode))),
        Op::Unlink { file } => std::fs::remove_file(p(*file)),
        Op::Rename { from, to } => std::fs::rename(p(*from), p(*to)),
        Op::Mkdir { dir } => std::fs::create_dir(root.join(format!("d{dir}/new"))),
        Op::Link { file, to } => std::fs::hard_link(p(*file), p(*to)),
    };
}

fn apply_engine(ov: &Overlay, op: &Op) {
    let dir = |n: u8| ov.lookup(ROOT_INO, rel(n).0.as_bytes()).map(|(i, _)| i);
    let file = |n: u8| dir(n).and_then(|d| ov.lookup(d, rel(n).1.as_bytes())).map(|(i, _)| i);
    let _ = match op {
        Op::Write { file: f, off, len, byte } => file(*f).and_then(|i| ov.write(i, u64::from(*off), &vec![*byte; *len as usize]).map(|_| ())),
        Op::Truncate { file: f, size } => file(*f).and_then(|i| ov.setattr(i, SetAttr { size: Some(u64::from(*size)), ..Default::default() }).map(|_| ())),
        Op::Chmod { file: f, mode } => file(*f).and_then(|i| ov.setattr(i, SetAttr { mode: Some(u32::from(*mode)), ..Default::default() }).map(|_| ())),
        Op::Unlink { file: f } => dir(*f).and_then(|d| ov.unlink(d, rel(*f).1.as_bytes())),
        Op::Rename { from, to } => dir(*from).and_then(|a| dir(*to).and_then(|b| ov.rename(a, rel(*from).1.as_bytes(), b, rel(*to).1.as_bytes(), 0))),
        Op::Mkdir { dir: d } => ov.lookup(ROOT_INO, format!("d{d}").as_bytes()).and_then(|(p, _)| ov.create(p, b"new", NewNode { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, rdev: 0, target: b"" }).map(|_| ())),
        Op::Link { file: f, to } => file(*f).and_then(|i| dir(*to).and_then(|d| ov.link(i, d, rel(*to).1.as_bytes()).map(|_| ()))),
    };
}

/// Every directory's merged listing (image entries, dirents, whiteouts)
/// names what the real directory holds, sorted by name; and looking up a
/// listed entry through the listing (at its generation, or a stale one)
/// finds the inode an ordinary lookup finds.
fn check_listings(ov: &Overlay, real: &Path) {
    for d in 0..3 {
        let (dino, _) = ov.lookup(ROOT_INO, format!("d{d}").as_bytes()).unwrap();
        let (gen, list) = ov.list_gen(dino).unwrap();
        let mut want: Vec<Vec<u8>> = std::fs::read_dir(real.join(format!("d{d}"))).unwrap().map(|e| e.unwrap().file_name().into_encoded_bytes()).collect();
        want.sort();
        assert_eq!(list.iter().map(|l| l.name.clone()).collect::<Vec<_>>(), want, "listing of d{d}");
        for l in &list {
            let (ino, inode) = ov.lookup(dino, &l.name).unwrap();
            assert_eq!(ino, l.ino, "listed number of {:?}", String::from_utf8_lossy(&l.name));
            for g in [gen, gen.wrapping_sub(1)] {
                let (lino, kind) = ov.lookup_listed(dino, l, g, |_, i| i.kind).unwrap();
                assert_eq!((lino, kind), (ino, inode.kind));
            }
            ov.forget(ino, 3);
        }
        ov.forget(dino, 1);
    }
}

/// Path → (kind, mode, size, content hash, hardlink count) of a stored tree.
fn summary(store: &dyn ObjectStore, root: &TreeId) -> BTreeMap<String, (Kind, u32, u64, String, u32)> {
    let mut out = BTreeMap::new();
    walk(store, root, &mut |p, e| {
        let mut bytes = Vec::new();
        if e.kind == Kind::File {
            read_all(store, &e.content, e.size, &mut |d| {
                bytes.extend_from_slice(d);
                Ok(())
            })?;
        }
        let mode = if p == b"/" || e.kind == Kind::Dir { 0 } else { e.mode };
        out.insert(String::from_utf8_lossy(p).into_owned(), (e.kind, mode, e.size, blake3::hash(&bytes).to_hex()[..12].to_string(), e.links));
        Ok(())
    })
    .unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn fold_matches_a_real_filesystem(ops in proptest::collection::vec(op(), 1..25), split in 0usize..25) {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        seed_image(&real);
        let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
        let (image, _) = store_dir(&*store, &real, &NoProgress).unwrap();
        let ov = Overlay::open(&tmp.path().join("ov"), store.clone(), image).unwrap();
        for (i, op) in ops.iter().enumerate() {
            apply_real(&real, op);
            apply_engine(&ov, op);
            if i == split {
                // A mounted checkpoint in the middle: what follows is folded
                // on top of its memo, and must still equal the real tree.
                let mut st = ov.lock();
                let (_, memo) = super::fold::fold(&ov, &mut st, &*store).unwrap();
                ov.apply_memo(&mut st, memo).unwrap();
            }
        }
        check_listings(&ov, &real);
        let folded = {
            let mut st = ov.lock();
            super::fold::fold(&ov, &mut st, &*store).unwrap().0
        };
        let (expected, _) = store_dir(&*store, &real, &NoProgress).unwrap();
        prop_assert_eq!(summary(&*store, &folded), summary(&*store, &expected));
    }
}

//! Carrying the kernel's references from one overlay generation to the next
//! while mounted (a rollback of a mounted guest).
//!
//! The kernel holds inodes by number. An inode of the old generation keeps
//! its number in the new one when the path the kernel reached it by resolves
//! to the same number and kind there: image entries are numbered by path (or
//! hardlink label), so unchanged ones survive. A path that resolves to
//! another number but the same kind (a file the guest created before the
//! checkpoint: the checkpoint numbers it by path) is given the kernel's
//! number in the new generation (one record, no data copied), unless it is
//! a hardlinked file. So an open handle or working directory keeps working
//! when its path exists in the checkpoint with the same kind, and then sees
//! the checkpoint's content and attributes. Everything else the kernel knows
//! is dropped: its dentry is invalidated, and requests on its number fail
//! with ESTALE.

use super::{db, Base, Dirent, Inode, Node, Overlay, State, ROOT_INO};

/// Longest image path of a directory that keeps the kernel's number: a
/// renumbered directory's record holds its whole image path, so renumbering
/// every level of a deep chain the kernel holds would write depth² bytes.
/// Deeper directories are dropped instead (their handles fail with ESTALE,
/// as for a path the checkpoint lacks); new lookups find them.
const RENUMBER_PATH_MAX: usize = 4096;

fn too_deep(i: &Inode) -> bool {
    matches!(&i.base, Base::Dir { path, .. } if path.len() > RENUMBER_PATH_MAX)
}
use crate::error::{Error, Result};
use crate::tree::Kind;

/// What [`Overlay::adopt`] carried over.
#[derive(Debug, Default)]
pub struct Adopted {
    /// Inodes whose number survived: their attributes and pages are stale.
    pub kept: Vec<u64>,
    /// Dentries `(parent, name)` whose inode did not survive.
    pub stale_entries: Vec<(u64, Vec<u8>)>,
    /// Inodes the kernel knows that did not survive: their cached pages
    /// must go too (requests on them fail with ESTALE).
    pub dropped: Vec<u64>,
}

impl Overlay {
    /// Take over the kernel's references held on `old`: walk the directories
    /// the kernel knows, from the root, and move lookup and open counts of
    /// every inode whose number survives into `self`. Also moves the inode
    /// counter past `old`'s, so no new inode reuses a number the kernel may
    /// still hold for a dropped one. Call before `self` serves requests.
    pub fn adopt(&self, old: &Overlay) -> Result<Adopted> {
        let mut ost = old.lock();
        let mut nst = self.lock();
        let mut out = Adopted { kept: vec![ROOT_INO], ..Default::default() };
        let mut seen = std::collections::HashSet::new();
        let mut queue = vec![ROOT_INO];
        while let Some(dir) = queue.pop() {
            for super::Listed { name, ino, .. } in old.list_locked(&mut ost, dir)? {
                let Some(on) = ost.nodes.get(&ino).filter(|n| n.held()) else { continue };
                let (kind, lookups, opens) = (on.inode.kind, on.lookups, on.opens);
                let same = match self.resolve(&mut nst, dir, &name) {
                    Ok(Some((nino, ni))) if nino == ino => ni.kind == kind,
                    // Same path and kind, another number (the kernel knows a
                    // file the guest created; the checkpoint numbers it by
                    // path): keep the kernel's number for it.
                    Ok(Some((nino, ni))) if ni.kind == kind && (kind == Kind::Dir || ni.nlink <= 1) && !too_deep(&ni) && !nst.nodes.get(&nino).is_some_and(|n| n.held()) => {
                        self.renumber(&mut nst, dir, &name, nino, ino, ni)?;
                        true
                    }
                    Ok(_) | Err(Error::Posix(_)) => false,
                    Err(e) => return Err(e),
                };
                if !same {
                    out.stale_entries.push((dir, name));
                    continue;
                }
                if let Some(n) = nst.nodes.get_mut(&ino) {
                    n.lookups = lookups;
                    n.opens = opens;
                }
                // A hardlinked file is met once per name.
                if seen.insert(ino) {
                    out.kept.push(ino);
                    if kind == Kind::Dir {
                        queue.push(ino);
                    }
                }
            }
        }
        let kept: std::collections::HashSet<u64> = out.kept.iter().copied().collect();
        out.dropped = ost.nodes.iter().filter(|(i, n)| n.held() && !kept.contains(i)).map(|(i, _)| *i).collect();
        if nst.next_ino < ost.next_ino {
            nst.next_ino = ost.next_ino;
            let mut b = self.db.batch();
            self.db.put_meta(&mut b, b"next_ino", &nst.next_ino.to_le_bytes())?;
            self.db.commit(b)?;
        }
        Ok(out)
    }

    /// Serve the entry `name` of `dir` (now inode `from`) as inode `to`:
    /// the same record under another number, like an image entry renamed in
    /// place. No data is copied.
    fn renumber(&self, st: &mut State, dir: u64, name: &[u8], from: u64, to: u64, inode: Inode) -> Result<()> {
        let mut b: db::Batch = self.db.batch();
        self.db.put_inode(&mut b, to, &inode)?;
        self.db.put_dirent(&mut b, dir, name, Dirent::Child { ino: to, kind: inode.kind })?;
        self.mark_changed(st, &mut b, dir, true)?;
        self.db.commit(b)?;
        st.nodes.remove(&from);
        let mut n = Box::new(Node::new(inode, 0));
        n.parent = dir;
        st.nodes.insert(to, n);
        Ok(())
    }
}

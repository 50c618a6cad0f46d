//! Which parts of the overlay changed since the last mounted checkpoint
//! (`dirty/` in the metadata), and what that checkpoint folded for each
//! inode (`memo/`): a fold reuses the memo of every directory that is not
//! dirty, so a checkpoint costs what changed since the last one
//! (docs/overlay.md, "On-disk layout").

use super::{db, Overlay, State, ROOT_INO};
use crate::error::Result;
use crate::tree::Kind;

impl Overlay {
    /// Record that inode `ino` changed: its directories up to the root become
    /// dirty (`ino` itself too when `is_dir_listing`: its entries changed).
    pub(crate) fn mark_changed(&self, st: &mut State, b: &mut db::Batch, ino: u64, is_dir_listing: bool) -> Result<()> {
        // A file's folded content is stale now. (A directory's memo stays:
        // it is ignored while the directory is dirty, as it is from here.)
        if st.nodes.get(&ino).is_some_and(|n| n.inode.kind != Kind::Dir) && st.memo.remove(&ino).is_some() {
            self.db.delete_meta(b, &db::memo_key(ino))?;
        }
        if st.dirty_all {
            return Ok(());
        }
        // A brand-new inode has no node yet: its parent's listing change
        // (marked by the caller) covers it.
        let Some(node) = st.nodes.get(&ino) else { return Ok(()) };
        let multi_parent = node.inode.kind != Kind::Dir && node.inode.nlink > 1;
        let mut cur = if is_dir_listing { ino } else { node.parent };
        if multi_parent || (cur == 0 && ino != ROOT_INO) {
            st.dirty_all = true;
            return self.db.put_meta(b, b"dirty/all", &[]);
        }
        while cur != 0 && st.dirty.insert(cur) {
            self.db.put_meta(b, &db::dirty_key(cur), &[])?;
            if cur == ROOT_INO {
                break;
            }
            cur = match st.nodes.get(&cur).map(|n| n.parent) {
                Some(p) if p != 0 => p,
                _ => {
                    st.dirty_all = true;
                    return self.db.put_meta(b, b"dirty/all", &[]);
                }
            };
        }
        Ok(())
    }

    /// Record what a fold produced (after its objects are durable) and start
    /// a new dirty set: the next fold redoes only what changes from here.
    /// The caller holds `st` from the fold until here, so nothing changed in
    /// between.
    pub(crate) fn apply_memo(&self, st: &mut State, memo: Vec<(u64, db::Folded)>) -> Result<()> {
        let mut b = self.db.batch();
        for ino in st.dirty.drain() {
            self.db.delete_meta(&mut b, &db::dirty_key(ino))?;
        }
        self.db.delete_meta(&mut b, b"dirty/all")?;
        st.dirty_all = false;
        for (ino, c) in memo {
            self.db.put_meta(&mut b, &db::memo_key(ino), &db::encode_folded(&c))?;
            st.memo.insert(ino, c);
        }
        self.db.commit(b)
    }

    /// Drop the memo (its objects are about to be collected): the next fold
    /// walks everything once.
    pub fn forget_memo(&self) -> Result<()> {
        let mut st = self.lock();
        let mut b = self.db.batch();
        for ino in std::mem::take(&mut st.memo).into_keys() {
            self.db.delete_meta(&mut b, &db::memo_key(ino))?;
        }
        self.db.put_meta(&mut b, b"dirty/all", &[])?;
        st.dirty_all = true;
        self.db.commit(b)?;
        self.db.sync()
    }
}

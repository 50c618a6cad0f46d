//! Namespace operations: create, link, unlink, rmdir, rename, attributes and
//! xattrs. Each is one atomic batch; image entries are never copied, only
//! described by records (a whiteout for a deletion, an inode record for a
//! changed attribute). An operation that grows the overlay checks for room
//! ([`Overlay::room_for_metadata`]) after its own checks and before it
//! changes anything, so a refusal leaves no trace; removals always run.

use super::db::Batch;
use super::{acl, now, posix, Base, Dirent, Inode, Node, Overlay, State};
use crate::error::Result;
use crate::tree::{Kind, Timestamp};

/// What to create.
pub struct NewNode<'a> {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub target: &'a [u8],
}

/// Attribute changes (`None` = unchanged).
#[derive(Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<Timestamp>,
    pub mtime: Option<Timestamp>,
    /// Clear setuid, and setgid when group-executable: a truncate by a
    /// caller without CAP_FSETID (the kernel's FATTR_KILL_SUIDGID).
    pub kill_suidgid: bool,
}

/// What a write or truncate takes from a regular file, as the kernel's
/// `file_remove_privs` would (the daemon does it for the kernel under
/// FUSE_HANDLE_KILLPRIV_V2): file capabilities always; setuid, and setgid
/// when group-executable, if `kill_suidgid` (the caller lacks CAP_FSETID).
/// Whether anything changed.
pub(crate) fn kill_privs(i: &mut Inode, kill_suidgid: bool) -> bool {
    let before = (i.mode, i.xattrs.len());
    if kill_suidgid {
        i.mode &= !libc::S_ISUID;
        if i.mode & libc::S_IXGRP != 0 {
            i.mode &= !libc::S_ISGID;
        }
    }
    if !i.xattrs.is_empty() {
        i.xattrs.retain(|(k, _)| k != CAPABILITY);
    }
    before != (i.mode, i.xattrs.len())
}

const CAPABILITY: &[u8] = b"security.capability";

impl Overlay {
    fn write_inode(&self, st: &mut State, b: &mut Batch, ino: u64, inode: Inode) -> Result<()> {
        // Marked with the inode's state before the change (an unlink that
        // drops nlink 2 -> 1 still touches a hardlink set).
        self.mark_changed(st, b, ino, false)?;
        self.db.put_inode(b, ino, &inode)?;
        match st.nodes.get_mut(&ino) {
            Some(n) => b.remember(ino, std::mem::replace(&mut n.inode, inode)),
            None => {
                st.nodes.insert(ino, Box::new(Node::new(inode, 0)));
            }
        }
        Ok(())
    }

    /// Commit `b`; if that fails, the nodes it changed in memory are put
    /// back as they were, so the refused operation leaves no trace.
    fn commit_or_undo(&self, st: &mut State, mut b: Batch) -> Result<()> {
        let undo = b.take_undo();
        let r = self.db.commit(b);
        if r.is_err() {
            for (ino, old) in undo.into_iter().rev() {
                if let Some(n) = st.nodes.get_mut(&ino) {
                    n.inode = old;
                }
            }
        }
        r
    }

    fn alloc_ino(&self, st: &mut State, b: &mut Batch) -> Result<u64> {
        let ino = st.next_ino;
        st.next_ino += 1;
        self.db.put_meta(b, b"next_ino", &st.next_ino.to_le_bytes())?;
        Ok(ino)
    }

    /// Does the image listing of `parent` have `name`? (Then removing the name
    /// needs a whiteout rather than just dropping a dirent.)
    fn in_base(&self, st: &mut State, parent: u64, name: &[u8]) -> Result<bool> {
        match &self.node(st, parent)?.inode.base {
            Base::Dir { tree, .. } => Ok(self.tree(tree)?.get(name).is_some()),
            _ => Ok(false),
        }
    }

    fn remove_name(&self, st: &mut State, b: &mut Batch, parent: u64, name: &[u8]) -> Result<()> {
        if self.in_base(st, parent, name)? {
            self.db.put_dirent(b, parent, name, Dirent::Whiteout)
        } else {
            self.db.delete_dirent(b, parent, name)
        }
    }

    fn touch_dir(&self, st: &mut State, b: &mut Batch, dir: u64, nlink_delta: i32, t: Timestamp) -> Result<()> {
        self.mark_changed(st, b, dir, true)?;
        st.dir_gen += 1;
        let mut d = self.node(st, dir)?.inode.clone();
        d.mtime = t;
        d.ctime = t;
        d.nlink = (d.nlink as i64 + nlink_delta as i64).max(0) as u32;
        self.write_inode(st, b, dir, d)
    }

    /// Create a file, directory, symlink, device, fifo or socket with exactly
    /// `n.mode` (no umask: callers inside lvrepo).
    pub fn create(&self, parent: u64, name: &[u8], n: NewNode<'_>) -> Result<(u64, Inode)> {
        self.create_masked(parent, name, n, 0)
    }

    /// [`create`](Self::create) for a caller with a umask (the kernel, which
    /// leaves it to us): the parent's default ACL, if any, decides the new
    /// entry's ACL and mode instead of the umask, as POSIX says.
    pub fn create_masked(&self, parent: u64, name: &[u8], n: NewNode<'_>, umask: u32) -> Result<(u64, Inode)> {
        if name.is_empty() || name.contains(&b'/') {
            return Err(posix(libc::EINVAL));
        }
        let mut st = self.lock();
        if self.resolve(&mut st, parent, name)?.is_some() {
            return Err(posix(libc::EEXIST));
        }
        self.room_for_metadata()?;
        let p = self.node(&mut st, parent)?.inode.clone();
        let t = now();
        let mut mode = n.mode & 0o7777;
        let mut xattrs = Vec::new();
        if n.kind != Kind::Symlink {
            match p.xattrs.iter().find(|(k, _)| k == acl::DEFAULT).and_then(|(_, v)| acl::parse(v)) {
                Some(d) => {
                    let (access, m) = acl::create(&d, mode);
                    mode = m;
                    if let Some(a) = access {
                        xattrs.push((acl::ACCESS.to_vec(), acl::encode(&a)));
                    }
                    if n.kind == Kind::Dir {
                        xattrs.push((acl::DEFAULT.to_vec(), acl::encode(&d)));
                    }
                }
                None => mode &= !(umask & 0o777),
            }
        }
        xattrs.sort();
        let mut gid = n.gid;
        if p.mode & libc::S_ISGID != 0 {
            gid = p.gid;
            if n.kind == Kind::Dir {
                mode |= libc::S_ISGID;
            }
        }
        let inode = Inode {
            kind: n.kind,
            mode,
            uid: n.uid,
            gid,
            atime: t,
            mtime: t,
            ctime: t,
            size: if n.kind == Kind::Symlink { n.target.len() as u64 } else { 0 },
            rdev: n.rdev,
            nlink: if n.kind == Kind::Dir { 2 } else { 1 },
            xattrs,
            target: n.target.to_vec(),
            // A new file's bytes start inline, in the database (see
            // `overlay::data`): no data file until it outgrows INLINE_MAX.
            base: if n.kind == Kind::File { Base::Inline } else { Base::None },
        };
        let mut b = self.db.batch();
        let ino = self.alloc_ino(&mut st, &mut b)?;
        self.db.put_dirent(&mut b, parent, name, Dirent::Child { ino, kind: n.kind })?;
        self.write_inode(&mut st, &mut b, ino, inode.clone())?;
        self.touch_dir(&mut st, &mut b, parent, if n.kind == Kind::Dir { 1 } else { 0 }, t)?;
        self.commit_or_undo(&mut st, b)?;
        if let Some(node) = st.nodes.get_mut(&ino) {
            node.lookups += 1;
            node.parent = parent;
        }
        Ok((ino, inode))
    }

    /// A new name for existing inode `ino`.
    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> Result<(u64, Inode)> {
        let mut st = self.lock();
        let mut inode = self.node(&mut st, ino)?.inode.clone();
        if inode.kind == Kind::Dir {
            return Err(posix(libc::EPERM));
        }
        if self.resolve(&mut st, parent, name)?.is_some() {
            return Err(posix(libc::EEXIST));
        }
        self.room_for_metadata()?;
        let t = now();
        inode.nlink += 1;
        inode.ctime = t;
        let mut b = self.db.batch();
        self.db.put_dirent(&mut b, parent, name, Dirent::Child { ino, kind: inode.kind })?;
        self.write_inode(&mut st, &mut b, ino, inode.clone())?;
        self.touch_dir(&mut st, &mut b, parent, 0, t)?;
        self.commit_or_undo(&mut st, b)?;
        let n = self.node(&mut st, ino)?;
        n.lookups += 1;
        n.parent = parent;
        Ok((ino, inode))
    }

    /// Drop one link of `ino`; purge it when no name remains and the kernel
    /// does not hold it. A held file may be open: it becomes an orphan, and
    /// goes at its last close ([`forget`](Overlay::forget)) or, after a
    /// crash, at the next mount. A directory has no data to keep.
    fn drop_link(&self, st: &mut State, b: &mut Batch, ino: u64, t: Timestamp) -> Result<bool> {
        let node = self.node(st, ino)?;
        let mut inode = node.inode.clone();
        let held = node.held();
        inode.nlink = inode.nlink.saturating_sub(if inode.kind == Kind::Dir { inode.nlink } else { 1 });
        inode.ctime = t;
        if inode.nlink == 0 && (!held || inode.kind == Kind::Dir) {
            self.db.delete_inode(b, ino)?;
            if let Some(n) = st.nodes.get_mut(&ino) {
                b.remember(ino, std::mem::replace(&mut n.inode, inode));
            }
            return Ok(true);
        }
        if inode.nlink == 0 {
            self.db.mark_orphan(b, ino)?;
        }
        self.write_inode(st, b, ino, inode)?;
        Ok(false)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        let mut st = self.lock();
        let (ino, inode) = self.resolve(&mut st, parent, name)?.ok_or_else(|| posix(libc::ENOENT))?;
        if inode.kind == Kind::Dir {
            return Err(posix(libc::EISDIR));
        }
        let t = now();
        let mut b = self.db.batch();
        self.remove_name(&mut st, &mut b, parent, name)?;
        let purge = self.drop_link(&mut st, &mut b, ino, t)?;
        self.touch_dir(&mut st, &mut b, parent, 0, t)?;
        self.commit_or_undo(&mut st, b)?;
        if purge {
            self.drop_data(ino);
        }
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        if name == b"." {
            return Err(posix(libc::EINVAL));
        }
        let mut st = self.lock();
        let (ino, inode) = self.resolve(&mut st, parent, name)?.ok_or_else(|| posix(libc::ENOENT))?;
        if inode.kind != Kind::Dir {
            return Err(posix(libc::ENOTDIR));
        }
        if !self.list_locked(&mut st, ino)?.is_empty() {
            return Err(posix(libc::ENOTEMPTY));
        }
        let t = now();
        let mut b = self.db.batch();
        self.remove_name(&mut st, &mut b, parent, name)?;
        self.drop_link(&mut st, &mut b, ino, t)?;
        self.touch_dir(&mut st, &mut b, parent, -1, t)?;
        self.commit_or_undo(&mut st, b)?;
        Ok(())
    }

    /// rename(2) with RENAME_NOREPLACE and RENAME_EXCHANGE.
    pub fn rename(&self, p1: u64, n1: &[u8], p2: u64, n2: &[u8], flags: u32) -> Result<()> {
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange) {
            return Err(posix(libc::EINVAL));
        }
        let mut st = self.lock();
        let (src, sinode) = self.resolve(&mut st, p1, n1)?.ok_or_else(|| posix(libc::ENOENT))?;
        let dst = self.resolve(&mut st, p2, n2)?;
        self.room_for_metadata()?;
        let t = now();
        let mut b = self.db.batch();
        let sdir = sinode.kind == Kind::Dir;
        if exchange {
            let (dino, dinode) = dst.ok_or_else(|| posix(libc::ENOENT))?;
            let ddir = dinode.kind == Kind::Dir;
            self.db.put_dirent(&mut b, p1, n1, Dirent::Child { ino: dino, kind: dinode.kind })?;
            self.db.put_dirent(&mut b, p2, n2, Dirent::Child { ino: src, kind: sinode.kind })?;
            for (ino, mut i) in [(src, sinode), (dino, dinode)] {
                i.ctime = t;
                self.write_inode(&mut st, &mut b, ino, i)?;
            }
            let delta = |d: bool| i32::from(d);
            let (d1, d2) = if p1 != p2 { (delta(ddir) - delta(sdir), delta(sdir) - delta(ddir)) } else { (0, 0) };
            self.touch_dir(&mut st, &mut b, p1, d1, t)?;
            if p1 != p2 {
                self.touch_dir(&mut st, &mut b, p2, d2, t)?;
            }
            self.commit_or_undo(&mut st, b)?;
            self.node(&mut st, src)?.parent = p2;
            self.node(&mut st, dino)?.parent = p1;
            return Ok(());
        }
        let mut p2_delta = i32::from(sdir && p1 != p2);
        let mut replaced = None;
        if let Some((dino, dinode)) = dst {
            if noreplace {
                return Err(posix(libc::EEXIST));
            }
            if dino == src {
                return Ok(());
            }
            match (sdir, dinode.kind == Kind::Dir) {
                (true, false) => return Err(posix(libc::ENOTDIR)),
                (false, true) => return Err(posix(libc::EISDIR)),
                (true, true) => {
                    if !self.list_locked(&mut st, dino)?.is_empty() {
                        return Err(posix(libc::ENOTEMPTY));
                    }
                    p2_delta -= 1;
                }
                (false, false) => {}
            }
            // Its data goes once the rename is committed (not before: a
            // crash in between must leave the old target whole).
            replaced = self.drop_link(&mut st, &mut b, dino, t)?.then_some(dino);
        }
        self.remove_name(&mut st, &mut b, p1, n1)?;
        self.db.put_dirent(&mut b, p2, n2, Dirent::Child { ino: src, kind: sinode.kind })?;
        let mut s = sinode;
        s.ctime = t;
        self.write_inode(&mut st, &mut b, src, s)?;
        self.touch_dir(&mut st, &mut b, p1, if sdir && p1 != p2 { -1 } else { 0 }, t)?;
        if p1 != p2 || p2_delta != 0 {
            self.touch_dir(&mut st, &mut b, p2, p2_delta, t)?;
        }
        self.commit_or_undo(&mut st, b)?;
        if let Some(ino) = replaced {
            self.drop_data(ino);
        }
        self.node(&mut st, src)?.parent = p2;
        Ok(())
    }

    /// chmod, chown, utimens and truncate.
    pub fn setattr(&self, ino: u64, a: SetAttr) -> Result<Inode> {
        match a.size {
            Some(size) => self.truncate(ino, size)?,
            // A truncate is let through: it is how a full partition is emptied.
            None => self.room_for_metadata()?,
        }
        let mut st = self.lock();
        let mut i = self.node(&mut st, ino)?.inode.clone();
        let t = now();
        if a.size.is_some() && i.kind == Kind::File {
            kill_privs(&mut i, a.kill_suidgid);
        }
        let owner_change = a.uid.is_some_and(|u| u != i.uid) || a.gid.is_some_and(|g| g != i.gid);
        if let Some(u) = a.uid {
            i.uid = u;
        }
        if let Some(g) = a.gid {
            i.gid = g;
        }
        if (a.uid.is_some() || a.gid.is_some()) && i.kind != Kind::Dir && (owner_change || a.mode.is_none()) {
            // As the kernel does for chown: drop setuid, and setgid when it
            // means "set group id" (group-executable), and file capabilities.
            i.mode &= !libc::S_ISUID;
            if i.mode & libc::S_IXGRP != 0 {
                i.mode &= !libc::S_ISGID;
            }
            i.xattrs.retain(|(k, _)| k != CAPABILITY);
        }
        if let Some(m) = a.mode {
            i.mode = m & 0o7777;
            // An access ACL follows chmod (the kernel leaves this to us).
            if let Some((_, v)) = i.xattrs.iter_mut().find(|(k, _)| k == acl::ACCESS) {
                if let Some(mut entries) = acl::parse(v) {
                    acl::chmod(&mut entries, i.mode);
                    *v = acl::encode(&entries);
                }
            }
        }
        if let Some(at) = a.atime {
            i.atime = at;
        }
        if let Some(mt) = a.mtime {
            i.mtime = mt;
        }
        i.ctime = t;
        let mut b = self.db.batch();
        self.write_inode(&mut st, &mut b, ino, i.clone())?;
        self.commit_or_undo(&mut st, b)?;
        Ok(i)
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        let mut st = self.lock();
        let i = &self.node(&mut st, ino)?.inode;
        i.xattrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).ok_or_else(|| posix(libc::ENODATA))
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let mut st = self.lock();
        Ok(self.node(&mut st, ino)?.inode.xattrs.iter().map(|(k, _)| k.clone()).collect())
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        if name.is_empty() || name.len() > 255 {
            return Err(posix(libc::ERANGE));
        }
        if value.len() > 65536 {
            return Err(posix(libc::E2BIG));
        }
        // An ACL must be well-formed; an access ACL sets the mode's bits (the
        // kernel leaves that to us), and one that says no more than the mode
        // is not kept (as on ext4).
        let access = if name == acl::ACCESS || name == acl::DEFAULT {
            let entries = acl::parse(value).ok_or_else(|| posix(libc::EINVAL))?;
            (name == acl::ACCESS).then_some(entries)
        } else {
            None
        };
        let mut st = self.lock();
        let mut i = self.node(&mut st, ino)?.inode.clone();
        let pos = i.xattrs.binary_search_by(|(k, _)| k.as_slice().cmp(name));
        match (pos, flags) {
            (Ok(_), f) if f & libc::XATTR_CREATE != 0 => return Err(posix(libc::EEXIST)),
            (Err(_), f) if f & libc::XATTR_REPLACE != 0 => return Err(posix(libc::ENODATA)),
            _ => {}
        }
        self.room_for_metadata()?;
        let keep = !access.as_ref().is_some_and(acl::is_minimal);
        if let Some(a) = &access {
            i.mode = (i.mode & !0o777) | acl::mode_bits(a);
        }
        match pos {
            Ok(p) if keep => i.xattrs[p].1 = value.to_vec(),
            Ok(p) => {
                i.xattrs.remove(p);
            }
            Err(p) if keep => i.xattrs.insert(p, (name.to_vec(), value.to_vec())),
            Err(_) => {}
        }
        i.ctime = now();
        let mut b = self.db.batch();
        self.write_inode(&mut st, &mut b, ino, i)?;
        self.commit_or_undo(&mut st, b)
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let mut st = self.lock();
        let mut i = self.node(&mut st, ino)?.inode.clone();
        let p = i.xattrs.binary_search_by(|(k, _)| k.as_slice().cmp(name)).map_err(|_| posix(libc::ENODATA))?;
        i.xattrs.remove(p);
        i.ctime = now();
        let mut b = self.db.batch();
        self.write_inode(&mut st, &mut b, ino, i)?;
        self.commit_or_undo(&mut st, b)
    }
}

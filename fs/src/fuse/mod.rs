//! The FUSE front of the overlay engine. Callbacks are thin: each calls the
//! engine (a `Result`), and replies with data or with the errno that
//! [`Error::errno`] maps, so nothing the kernel sends can panic the daemon.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use crate::error::Error;
use crate::overlay::ns::{NewNode, SetAttr};
use crate::overlay::{Inode, Listed, Overlay};
use crate::tree::{Kind, Timestamp};

/// Attribute and entry cache lifetime. Every change goes through this daemon,
/// whose replies keep the kernel's caches current, so a long TTL is safe; for
/// the same reason files are opened with FOPEN_KEEP_CACHE (the page cache of a
/// file stays valid across opens).
const TTL: Duration = Duration::from_secs(60);

/// The TTL of a root daemon (docs/boot.md): the kernel's entries, misses
/// (`negative.rs`) and attributes never expire. At shutdown, systemd SIGSTOPs
/// every process, the root's daemon too, while PID 1 walks /proc; an expired
/// `/proc` entry would send a lookup to the stopped daemon and hang the
/// shutdown for good.
const ROOT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A directory's entries with their cookies, in cookie order.
type Listing = Arc<Vec<(u64, Listed)>>;

/// Listings kept for directories being read (a 100k-entry directory is read in
/// hundreds of chunks); dropped wholesale when more are asked for.
const LISTINGS: usize = 64;

/// The readdir offset just past `name`. Directories are not opened (OPENDIR
/// is answered ENOSYS, so no per-handle snapshot exists): an offset must name
/// a place in the directory that survives changes to it, as ext4's hash
/// cookies do. Entries are listed in cookie order and a read resumes after
/// the cookie it was given, so an entry present for the whole read is
/// listed exactly once, whatever else changes meanwhile. Cookies are 62-bit
/// (above the 1 and 2 of "." and ".."); two names of one directory sharing
/// one would matter only if a read broke off between them. They live as long
/// as a directory stream, so any well-mixed hash does: FNV-1a with a
/// splitmix64 finish, cheaper than the BLAKE3 that numbers persisted ids.
fn cookie(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 2) | 4
}

pub struct LvFs {
    live: Arc<Live>,
    /// Listings by directory inode, with the switch epoch and directory
    /// generation they were taken at.
    listings: Mutex<HashMap<u64, (u64, u64, Listing)>>,
    next_fh: AtomicU64,
    /// Which READDIRPLUS entries carry attributes.
    plus: plus::Advisor,
    /// Ask for FUSE over io_uring (per-CPU queues) when the kernel offers it.
    uring: bool,
    /// Serve `security.selinux` (see [`MountOptions::seclabel`]).
    seclabel: bool,
    /// The kernel treats ENOSYS to OPEN / OPENDIR as "never send these"
    /// (capabilities it announces at INIT); older kernels fail the open.
    zero_open: bool,
    zero_opendir: bool,
    /// Passthrough onto the host file cache; `None` without a cache or
    /// when the kernel does not offer it.
    passthrough: Option<passthrough::Passthrough>,
    /// Entry and attribute cache lifetime ([`TTL`], [`ROOT_TTL`]).
    ttl: Duration,
}

/// The SELinux label's xattr name.
const SELINUX: &[u8] = b"security.selinux";

impl LvFs {
    pub fn new(live: Arc<Live>, opts: &MountOptions) -> Self {
        if opts.root_daemon {
            live.negatives.enable();
        }
        LvFs {
            live,
            listings: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            plus: plus::Advisor::new(),
            uring: opts.uring,
            seclabel: opts.seclabel,
            zero_open: false,
            zero_opendir: false,
            passthrough: opts.file_cache.clone().map(passthrough::Passthrough::new),
            ttl: if opts.root_daemon { ROOT_TTL } else { TTL },
        }
    }

    /// The attributes of `ino`, with `st_blocks` counting what a regular
    /// file holds (its holes not counted).
    fn attr(&self, ino: u64, i: &Inode) -> FileAttr {
        let mut a = attr(ino, i);
        if i.kind == Kind::File {
            a.blocks = blocks_or_size(&self.live.get(), ino, i.size);
        }
        a
    }

    /// An xattr this mount does not support: `security.selinux` unless it
    /// serves labels. Answering EOPNOTSUPP (not ENODATA) matters: `ls -l`
    /// asks for every file's label until a device says it has none, and each
    /// ask is a round trip, since the kernel cannot cache an absent xattr.
    fn unsupported(&self, name: &[u8]) -> bool {
        !self.seclabel && name == SELINUX
    }

    /// The current listing of directory `ino`, in cookie order: cached while
    /// no directory changes (and the mounted guest is not rolled back).
    fn listing(&self, ov: &Overlay, ino: INodeNo) -> Result<(u64, Listing), Errno> {
        let epoch = self.live.epoch();
        let gen = ov.dir_gen();
        if let Some((e, g, l)) = self.listings.lock().unwrap_or_else(|e| e.into_inner()).get(&ino.0) {
            if (*e, *g) == (epoch, gen) {
                return Ok((gen, l.clone()));
            }
        }
        let (gen, raw) = ov.list_gen(ino.0).map_err(|e| errno(&e))?;
        let mut list: Vec<_> = raw.into_iter().map(|l| (cookie(&l.name), l)).collect();
        list.sort_unstable_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        let list = Arc::new(list);
        let mut cache = self.listings.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= LISTINGS {
            cache.clear();
        }
        cache.insert(ino.0, (epoch, gen, list.clone()));
        Ok((gen, list))
    }
}

/// Where in `list` a read at `offset` resumes: at the first entry whose
/// cookie is above it (offsets 0 to 2, "." and "..", are below every cookie).
fn resume(list: &[(u64, Listed)], offset: u64) -> usize {
    list.partition_point(|e| e.0 <= offset)
}

fn errno(e: &Error) -> Errno {
    // A full or read-only partition is the caller's answer, not a fault.
    let expected = matches!(e.errno(), libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EFBIG);
    if !matches!(e, Error::Posix(_)) && !expected {
        tracing::error!(error = %e, "filesystem operation failed");
    }
    Errno::from_i32(e.errno())
}

fn ftype(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
    }
}

fn systime(t: Timestamp) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(t.nsec.into())
    }
}

fn stamp(t: TimeOrNow) -> Timestamp {
    let st = match t {
        TimeOrNow::Now => SystemTime::now(),
        TimeOrNow::SpecificTime(s) => s,
    };
    match st.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp { sec: d.as_secs() as i64, nsec: d.subsec_nanos() },
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                Timestamp { sec: -s, nsec: 0 }
            } else {
                Timestamp { sec: -s - 1, nsec: 1_000_000_000 - n }
            }
        }
    }
}

pub fn attr(ino: u64, i: &Inode) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: i.size,
        blocks: i.size.div_ceil(512),
        atime: systime(i.atime),
        mtime: systime(i.mtime),
        ctime: systime(i.ctime),
        crtime: systime(i.ctime),
        kind: ftype(i.kind),
        perm: (i.mode & 0o7777) as u16,
        nlink: i.nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// `st_blocks` of file `ino`; on an error (a damaged file index, which
/// reading names) the size's worth, so a listing still works.
fn blocks_or_size(ov: &Overlay, ino: u64, size: u64) -> u64 {
    ov.blocks(ino).unwrap_or_else(|e| {
        tracing::warn!(ino, error = %e, "st_blocks: counting the size");
        size.div_ceil(512)
    })
}

/// What readdirplus sends for "." and ".." (the kernel ignores all but the
/// number and the type), and a lookup for a cached miss (number 0).
fn dot_attr(ino: INodeNo) -> FileAttr {
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn name(n: &OsStr) -> &[u8] {
    n.as_bytes()
}

macro_rules! reply_entry {
    ($fs:expr, $reply:expr, $r:expr) => {
        match $r {
            Ok((ino, i)) => $reply.entry(&$fs.ttl, &$fs.attr(ino, &i), Generation(0)),
            Err(e) => $reply.error(errno(&e)),
        }
    };
}

macro_rules! reply_empty {
    ($reply:expr, $r:expr) => {
        match $r {
            Ok(()) => $reply.ok(),
            Err(e) => $reply.error(errno(&e)),
        }
    };
}

impl Filesystem for LvFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // The kernel caches symlink targets and ACLs (system.posix_acl_*; it
        // then also enforces them), and runs lookups and readdirs in parallel.
        // The umask comes to us unapplied (DONT_MASK): a default ACL replaces
        // it. Every listing is a READDIRPLUS (not READDIRPLUS_AUTO, where the
        // kernel decides per directory), and the daemon decides per entry
        // whether to send attributes (see `plus`). Each is a capability the
        // kernel may lack: ask for what it offers.
        // HANDLE_KILLPRIV_V2: the daemon drops setuid/setgid and file
        // capabilities on write and truncate (`overlay::ns::kill_privs`),
        // so the kernel need not ask for `security.capability` before every
        // write (it asks once per inode, then marks it S_NOSEC): a write
        // is one round trip instead of two.
        let want = InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_DO_READDIRPLUS;
        let want = if self.uring { want | InitFlags::FUSE_OVER_IO_URING } else { want };
        // Passthrough needs OPEN answered (the backing file is attached
        // there), so such a mount does not take the no-open shortcut.
        let want = if self.passthrough.is_some() && config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH) && config.set_max_stack_depth(1).is_ok() {
            want | InitFlags::FUSE_PASSTHROUGH
        } else {
            if self.passthrough.take().is_some() {
                tracing::warn!("the kernel offers no FUSE passthrough: the host file cache is not used");
            }
            want
        };
        let _ = config.add_capabilities(want & config.capabilities());
        self.zero_open = self.passthrough.is_none() && config.capabilities().contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        self.zero_opendir = config.capabilities().contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.live.current().purge_orphans() {
            tracing::error!(error = %e, "purging unlinked inodes at unmount failed");
        }
        if let Err(e) = self.live.current().sync_all() {
            tracing::error!(error = %e, "sync at unmount failed");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        self.plus.lookup(parent.0);
        let ov = self.live.get();
        match ov.lookup(parent.0, name(n)) {
            Ok((ino, i)) => reply.entry(&self.ttl, &self.attr(ino, &i), Generation(0)),
            // Node id 0: a miss the kernel caches. Replied under the guard:
            // a switch invalidates what it records.
            Err(e) if e.errno() == libc::ENOENT && self.live.negatives.record(parent.0, name(n)) => {
                reply.entry(&self.ttl, &dot_attr(INodeNo(0)), Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.live.get().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.live.get().getattr(ino.0) {
            Ok(i) => reply.attr(&self.ttl, &self.attr(ino.0, &i)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr_killpriv(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        kill_suidgid: bool,
        reply: ReplyAttr,
    ) {
        let a = SetAttr { mode, uid, gid, size, atime: atime.map(stamp), mtime: mtime.map(stamp), kill_suidgid };
        match self.live.get().setattr(ino.0, a) {
            Ok(i) => reply.attr(&self.ttl, &self.attr(ino.0, &i)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.live.get().getattr(ino.0) {
            Ok(i) if i.kind == Kind::Symlink => reply.data(&i.target),
            Ok(_) => reply.error(Errno::from_i32(libc::EINVAL)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let r = Kind::from_mode(mode).ok_or(Error::Posix(libc::EINVAL)).and_then(|kind| {
            self.live.get().create_masked(parent.0, name(n), NewNode { kind, mode, uid: req.uid(), gid: req.gid(), rdev: rdev.into(), target: b"" }, umask)
        });
        reply_entry!(self, reply, r)
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let nn = NewNode { kind: Kind::Dir, mode, uid: req.uid(), gid: req.gid(), rdev: 0, target: b"" };
        reply_entry!(self, reply, self.live.get().create_masked(parent.0, name(n), nn, umask))
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        reply_empty!(reply, self.live.get().unlink(parent.0, name(n)))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        reply_empty!(reply, self.live.get().rmdir(parent.0, name(n)))
    }

    fn symlink(&self, req: &Request, parent: INodeNo, n: &OsStr, target: &Path, reply: ReplyEntry) {
        let t = target.as_os_str().as_bytes();
        let nn = NewNode { kind: Kind::Symlink, mode: 0o777, uid: req.uid(), gid: req.gid(), rdev: 0, target: t };
        reply_entry!(self, reply, self.live.get().create(parent.0, name(n), nn))
    }

    fn rename(&self, _req: &Request, parent: INodeNo, n: &OsStr, newparent: INodeNo, newname: &OsStr, flags: RenameFlags, reply: ReplyEmpty) {
        reply_empty!(reply, self.live.get().rename(parent.0, name(n), newparent.0, name(newname), flags.bits()))
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        reply_entry!(self, reply, self.live.get().link(ino.0, newparent.0, name(newname)))
    }

    /// Files are not opened either (where the kernel allows it) unless the
    /// mount has a host file cache: ENOSYS tells the kernel to stop sending
    /// OPEN and RELEASE, two of the four round trips of a `touch`, and to
    /// keep each file's pages (FOPEN_KEEP_CACHE). Nothing is lost: requests
    /// name the inode, reads and writes keep the overlay data file's
    /// descriptor in the node table ([`OPEN_DATA_FILES`](crate::overlay)),
    /// and an unlinked file's last close is its FORGET (an open file pins
    /// the kernel's inode). With a host file cache, OPEN is answered, and a
    /// read-only open of an unchanged image file is passthrough onto its
    /// cached copy (see [`passthrough`]).
    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.zero_open {
            return reply.error(Errno::ENOSYS);
        }
        let ov = self.live.get();
        if let Err(e) = ov.open_file(ino.0) {
            return reply.error(errno(&e));
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        match &self.passthrough {
            Some(pt) => pt.open(&ov, ino.0, flags.0 & libc::O_ACCMODE == libc::O_RDONLY, fh, reply),
            None => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    fn read(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, size: u32, _flags: OpenFlags, _lo: Option<fuser::LockOwner>, reply: ReplyData) {
        match self.live.get().read_out(ino.0, offset, size) {
            Ok(d) => reply.data_vectored(&d.io_slices()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, data: &[u8], wf: WriteFlags, _flags: OpenFlags, _lo: Option<fuser::LockOwner>, reply: ReplyWrite) {
        match self.live.get().write_killpriv(ino.0, offset, data, wf.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Nothing to do at close (writes are not buffered here, no locks are
    /// kept): ENOSYS tells the kernel to stop sending FLUSH, a round trip
    /// saved per close(2).
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lo: fuser::LockOwner, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn release(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, _lo: Option<fuser::LockOwner>, _flush: bool, reply: ReplyEmpty) {
        if let Some(pt) = &self.passthrough {
            pt.release(fh.0);
        }
        reply_empty!(reply, self.live.get().release(ino.0))
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty!(reply, self.live.get().fsync(ino.0))
    }

    /// Directories are not opened: ENOSYS tells the kernel to stop sending
    /// OPENDIR and RELEASEDIR (two round trips per directory walked) and to
    /// keep each listing in its cache (FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE,
    /// dropped when the directory changes through this mount). Offsets are
    /// name cookies, see [`cookie`].
    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.zero_opendir {
            return reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR);
        }
        reply.error(Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let list = match self.listing(&self.live.get(), ino) {
            Ok((_, l)) => l,
            Err(e) => return reply.error(e),
        };
        for dot in offset.min(2)..2 {
            if reply.add(ino, dot + 1, FileType::Directory, if dot == 0 { "." } else { ".." }) {
                return reply.ok();
            }
        }
        for (c, l) in &list[resume(&list, offset)..] {
            if reply.add(INodeNo(l.ino), *c, ftype(l.kind), OsStr::from_bytes(&l.name)) {
                break;
            }
        }
        reply.ok();
    }

    /// readdir with entries' attributes, with the same offsets. Which entries
    /// carry them is [`plus::Advisor`]'s choice; the kernel links each of those
    /// (but "." and "..") as a lookup and forgets it later, so each one sent
    /// counts one, and one that no longer resolves (removed since the listing
    /// was taken) is left out. Entries sent bare count nothing.
    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let ov = self.live.get();
        let (gen, list) = match self.listing(&ov, ino) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for dot in offset.min(2)..2 {
            // The kernel takes only the name, number and type of these.
            if reply.add(ino, dot + 1, if dot == 0 { "." } else { ".." }, &self.ttl, &dot_attr(ino), Generation(0)) {
                return reply.ok();
            }
        }
        let rest = &list[resume(&list, offset)..];
        // A chunk of directories only (or the empty one that ends a listing)
        // is sent the same either way: it neither asks the advisor nor
        // spends its probe. (Only the first 256 entries are looked at: a
        // longer run of directories is sent with attributes.)
        let full = !rest.iter().take(256).any(|e| e.1.kind != Kind::Dir) || self.plus.full();
        let mut bare = 0;
        // An empty reply means end of directory: an error is reported only
        // when nothing was added, else it waits for the next call.
        let mut added = offset < 2;
        for (c, l) in rest {
            let n = OsStr::from_bytes(&l.name);
            if !full && l.kind != Kind::Dir {
                if reply.add_bare(INodeNo(l.ino), *c, n, ftype(l.kind)) {
                    break;
                }
                (added, bare) = (true, bare + 1);
                continue;
            }
            match ov.lookup_listed(ino.0, l, gen, attr) {
                Ok((cino, mut a)) => {
                    if a.kind == FileType::RegularFile {
                        a.blocks = blocks_or_size(&ov, cino, a.size);
                    }
                    if reply.add(INodeNo(cino), *c, n, &self.ttl, &a, Generation(0)) {
                        // Not sent: the kernel will not forget it.
                        ov.forget(cino, 1);
                        break;
                    }
                    added = true;
                }
                Err(Error::Posix(libc::ENOENT)) => continue,
                Err(e) if !added => return reply.error(errno(&e)),
                Err(_) => break,
            }
        }
        if !full {
            self.plus.sent_lean(ino.0, bare);
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty!(reply, self.live.get().fsync(ino.0))
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.live.get().statfs() {
            Ok(s) => reply.statfs(s.blocks(), s.blocks_free(), s.blocks_available(), s.files(), s.files_free(), s.block_size() as u32, 255, s.fragment_size() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, value: &[u8], flags: i32, _position: u32, reply: ReplyEmpty) {
        if self.unsupported(name(n)) {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        reply_empty!(reply, self.live.get().setxattr(ino.0, name(n), value, flags))
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        if self.unsupported(name(n)) {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        match self.live.get().getxattr(ino.0, name(n)) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.live.get().listxattr(ino.0) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names.iter().filter(|n| !self.unsupported(n)) {
                    buf.extend_from_slice(n);
                    buf.push(0);
                }
                if size == 0 {
                    reply.size(buf.len() as u32)
                } else if buf.len() > size as usize {
                    reply.error(Errno::from_i32(libc::ERANGE))
                } else {
                    reply.data(&buf)
                }
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        if self.unsupported(name(n)) {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        reply_empty!(reply, self.live.get().removexattr(ino.0, name(n)))
    }

    /// Where the kernel can do without OPEN, CREATE is answered ENOSYS
    /// once: the kernel then makes new files with MKNOD and opens them
    /// without a request, so a file written and closed costs no RELEASE
    /// (a CREATE's handle always gets one). The file is still created and
    /// opened in one open(2): the kernel has marked it created, so O_TRUNC
    /// and the permission check of a read-only mode do not apply to it.
    fn create(&self, req: &Request, parent: INodeNo, n: &OsStr, mode: u32, umask: u32, _flags: i32, reply: ReplyCreate) {
        if self.zero_open {
            return reply.error(Errno::ENOSYS);
        }
        let nn = NewNode { kind: Kind::File, mode, uid: req.uid(), gid: req.gid(), rdev: 0, target: b"" };
        let ov = self.live.get();
        match ov.create_masked(parent.0, name(n), nn, umask).and_then(|(ino, i)| ov.open_file(ino).map(|_| (ino, i))) {
            Ok((ino, i)) => {
                let fh = FileHandle(self.next_fh.fetch_add(1, Ordering::Relaxed));
                reply.created(&self.ttl, &self.attr(ino, &i), Generation(0), fh, FopenFlags::FOPEN_KEEP_CACHE)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// No ioctl is implemented: ENOTTY, as ext4 answers one it does not
    /// know, and quietly (Python asks every file it opens whether it is a
    /// terminal; fuser's default logs a warning per call).
    fn ioctl(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _flags: fuser::IoctlFlags, _cmd: u32, _in: &[u8], _out: u32, reply: fuser::ReplyIoctl) {
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    /// ENOSYS, quietly (fuser's default logs a warning): the kernel then
    /// copies through reads and writes itself, and asks no more.
    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        // The kernel asks only for SEEK_DATA and SEEK_HOLE.
        let r = match (whence, u64::try_from(offset)) {
            (libc::SEEK_DATA | libc::SEEK_HOLE, Ok(off)) => self.live.get().seek_data_hole(ino.0, off, whence == libc::SEEK_HOLE),
            (libc::SEEK_DATA | libc::SEEK_HOLE, Err(_)) => Err(Error::Posix(libc::ENXIO)),
            _ => Err(Error::Posix(libc::EINVAL)),
        };
        match r.and_then(|o| i64::try_from(o).map_err(|_| Error::Posix(libc::EOVERFLOW))) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
        reply_empty!(reply, self.live.get().fallocate(ino.0, offset, length, mode))
    }
}

mod live;
mod mount;
mod negative;
mod passthrough;
mod plus;
mod shutdown;
pub use live::{Live, Switch};
pub use mount::{block_termination_signals, limit_heap, mount_foreground, MountFlags, MountOptions};

//! fuse-null: the floor under any FUSE filesystem on this machine.
//!
//! It serves a directory tree's names and attributes from memory, with no
//! file data, no database and no image, through the same FUSE transport
//! (per-CPU io_uring queues, the same worker setup) and the same kernel
//! options (entry/attribute TTL, READDIRPLUS, POSIX ACLs, no OPEN) as
//! `lvrepo mount`. A metadata workload on it costs what the kernel's FUSE
//! layer and the round trips cost when the daemon does nothing:
//! benches/mount-compare.sh runs it as the `fuse-null` contender for find,
//! ls -lR, touch and chmod, so lvrepo's own share shows in the same run.
//! A READ is answered with zeros from one static buffer (no file data is
//! kept): the fio reads then cost what the kernel's FUSE data path costs,
//! the floor under lvrepo's reads (chunk loads, zstd, BLAKE3 on top).
//!
//! Usage: `fuse-null SOURCE_DIR MOUNTPOINT` (serves in the foreground until
//! the mount is unmounted). SETATTR changes the in-memory attributes only.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEntry, ReplyOpen, ReplyXattr, Request, Session,
    SessionACL, TimeOrNow,
};

/// The same entry/attribute lifetime as lvrepo's.
const TTL: Duration = Duration::from_secs(60);
/// The largest READ (lvrepo's read-ahead and write size, set in `init`).
const MAX_IO: usize = 1 << 20;
/// What every READ is answered with.
static ZEROS: [u8; MAX_IO] = [0; MAX_IO];

struct Node {
    parent: u64,
    /// Children by name (directories), and in listing order.
    children: HashMap<Vec<u8>, u64>,
    listing: Vec<(Vec<u8>, u64)>,
    target: Vec<u8>,
}

struct NullFs {
    /// Index = inode number - 1 (the root is 1).
    nodes: Vec<Node>,
    attrs: Mutex<Vec<FileAttr>>,
    zero_opendir: bool,
}

fn kind_of(ft: std::fs::FileType) -> FileType {
    if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_char_device() {
        FileType::CharDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else if ft.is_fifo() {
        FileType::NamedPipe
    } else if ft.is_socket() {
        FileType::Socket
    } else {
        FileType::RegularFile
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH
    }
}

impl NullFs {
    /// Walk `root` (lstat only, no data read) into the in-memory tree.
    fn load(root: &Path) -> std::io::Result<NullFs> {
        let mut fs = NullFs { nodes: Vec::new(), attrs: Mutex::new(Vec::new()), zero_opendir: false };
        let mut attrs = Vec::new();
        fs.add(&mut attrs, 0, root, std::fs::symlink_metadata(root)?)?;
        let mut todo: Vec<(u64, PathBuf)> = vec![(1, root.to_path_buf())];
        while let Some((ino, dir)) = todo.pop() {
            let mut names: Vec<OsString> = std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
            names.sort();
            for name in names {
                let path = dir.join(&name);
                let md = std::fs::symlink_metadata(&path)?;
                let is_dir = md.is_dir();
                let child = fs.add(&mut attrs, ino, &path, md)?;
                let n = name.into_vec();
                let parent = &mut fs.nodes[ino as usize - 1];
                parent.children.insert(n.clone(), child);
                parent.listing.push((n, child));
                if is_dir {
                    todo.push((child, path));
                }
            }
        }
        fs.attrs = Mutex::new(attrs);
        Ok(fs)
    }

    fn add(&mut self, attrs: &mut Vec<FileAttr>, parent: u64, path: &Path, md: std::fs::Metadata) -> std::io::Result<u64> {
        let ino = self.nodes.len() as u64 + 1;
        let target = if md.file_type().is_symlink() { std::fs::read_link(path)?.into_os_string().into_vec() } else { Vec::new() };
        attrs.push(FileAttr {
            ino: INodeNo(ino),
            size: md.size(),
            blocks: md.blocks(),
            atime: time(md.atime(), md.atime_nsec()),
            mtime: time(md.mtime(), md.mtime_nsec()),
            ctime: time(md.ctime(), md.ctime_nsec()),
            crtime: time(md.ctime(), md.ctime_nsec()),
            kind: kind_of(md.file_type()),
            perm: (md.mode() & 0o7777) as u16,
            nlink: md.nlink() as u32,
            uid: md.uid(),
            gid: md.gid(),
            rdev: md.rdev() as u32,
            blksize: 4096,
            flags: 0,
        });
        self.nodes.push(Node { parent: if parent == 0 { 1 } else { parent }, children: HashMap::new(), listing: Vec::new(), target });
        Ok(ino)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        self.attrs.lock().unwrap_or_else(|e| e.into_inner()).get((ino as usize).wrapping_sub(1)).copied()
    }

    fn node(&self, ino: u64) -> Option<&Node> {
        self.nodes.get((ino as usize).wrapping_sub(1))
    }
}

fn stamp(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // What lvrepo asks for (fs/src/fuse/mod.rs, `init`).
        let _ = config.set_max_write(MAX_IO as u32);
        let _ = config.set_max_readahead(MAX_IO as u32);
        let want = InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_OVER_IO_URING;
        let _ = config.add_capabilities(want & config.capabilities());
        self.zero_opendir = config.capabilities().contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.node(parent.0).and_then(|n| n.children.get(name.as_bytes())).and_then(|&c| self.attr(c)) {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
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
        reply: ReplyAttr,
    ) {
        let mut attrs = self.attrs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(a) = attrs.get_mut((ino.0 as usize).wrapping_sub(1)) else { return reply.error(Errno::ENOENT) };
        if let Some(m) = mode {
            a.perm = (m & 0o7777) as u16;
        }
        a.uid = uid.unwrap_or(a.uid);
        a.gid = gid.unwrap_or(a.gid);
        a.size = size.unwrap_or(a.size);
        a.atime = atime.map_or(a.atime, stamp);
        a.mtime = mtime.map_or(a.mtime, stamp);
        a.ctime = SystemTime::now();
        reply.attr(&TTL, a)
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino.0) {
            Some(n) if !n.target.is_empty() => reply.data(&n.target),
            _ => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // As lvrepo: the kernel then sends no OPEN or RELEASE at all.
        reply.error(Errno::ENOSYS)
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.attr(ino.0) {
            Some(a) if a.kind == FileType::RegularFile => {
                let n = a.size.saturating_sub(offset).min(u64::from(size)).min(MAX_IO as u64) as usize;
                reply.data(&ZEROS[..n])
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.zero_opendir {
            return reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR);
        }
        reply.error(Errno::ENOSYS)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(n) = self.node(ino.0) else { return reply.error(Errno::ENOENT) };
        let dots = [(".", ino.0), ("..", n.parent)];
        for (i, (name, d)) in dots.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*d), i as u64 + 1, FileType::Directory, name) {
                return reply.ok();
            }
        }
        for (i, (name, c)) in n.listing.iter().enumerate().skip((offset as usize).saturating_sub(2)) {
            let kind = self.attr(*c).map_or(FileType::RegularFile, |a| a.kind);
            if reply.add(INodeNo(*c), i as u64 + 3, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let Some(n) = self.node(ino.0) else { return reply.error(Errno::ENOENT) };
        for (i, name) in [".", ".."].iter().enumerate().skip(offset as usize) {
            let d = if i == 0 { ino.0 } else { n.parent };
            let Some(a) = self.attr(d) else { return reply.error(Errno::ENOENT) };
            if reply.add(INodeNo(d), i as u64 + 1, name, &TTL, &a, Generation(0)) {
                return reply.ok();
            }
        }
        for (i, (name, c)) in n.listing.iter().enumerate().skip((offset as usize).saturating_sub(2)) {
            let Some(a) = self.attr(*c) else { continue };
            if reply.add(INodeNo(*c), i as u64 + 3, OsStr::from_bytes(name), &TTL, &a, Generation(0)) {
                break;
            }
        }
        reply.ok()
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, name: &OsStr, _size: u32, reply: ReplyXattr) {
        // As lvrepo without --seclabel: SELinux labels unsupported, every
        // other name absent.
        if name.as_bytes() == b"security.selinux" {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        reply.error(Errno::from_i32(libc::ENODATA))
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.len() != 3 {
        eprintln!("usage: fuse-null SOURCE_DIR MOUNTPOINT");
        std::process::exit(2);
    }
    let fs = match NullFs::load(Path::new(&args[1])) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("fuse-null: reading {}: {e}", Path::new(&args[1]).display());
            std::process::exit(1);
        }
    };
    eprintln!("fuse-null: {} entries loaded", fs.nodes.len());
    let mut config = Config::default();
    config.mount_options = vec![MountOption::FSName("fuse-null".into()), MountOption::DefaultPermissions, MountOption::Dev, MountOption::Suid, MountOption::RW];
    config.acl = SessionACL::All;
    config.n_threads = Some(std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8));
    config.clone_fd = true;
    config.uring_handoff = true;
    let mp = Path::new(&args[2]);
    let r = Session::new(fs, mp, &config).and_then(|s| s.run());
    if let Err(e) = r {
        eprintln!("fuse-null: serving {}: {e}", mp.display());
        std::process::exit(1);
    }
}

//! FUSE over io_uring (Linux 6.14+, with the `fuse` module parameter
//! `enable_uring` set): the kernel queues each request on the ring queue of
//! the CPU that issued it, and each queue is served by threads pinned to that
//! CPU. A request and its reply then never cross CPUs, which removes the two
//! cross-CPU wake-ups of every `/dev/fuse` round trip; in virtual machines
//! (where waking an idle vCPU costs a host exit) that is most of its cost.
//!
//! Added to the vendored fuser (lvrepo patch, see PATCHES.md). Protocol
//! (Documentation/filesystems/fuse-io-uring.rst): after FUSE_INIT was answered
//! with `FUSE_OVER_IO_URING`, every queue must REGISTER an entry (a header
//! buffer and a payload buffer) before the kernel sends anything through the
//! ring; until then it holds requests back. A completed REGISTER or
//! COMMIT_AND_FETCH carries a request in the entry's buffers; the reply is
//! written into the same buffers and handed back with COMMIT_AND_FETCH, which
//! also waits for the next request. FORGET and INTERRUPT still come through
//! `/dev/fuse`, which the ordinary session threads keep reading.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use log::{debug, warn};
use parking_lot::Mutex;

/// `FUSE_IO_URING_CMD_REGISTER`: register an entry and fetch a request.
const CMD_REGISTER: u32 = 1;
/// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`: reply, then fetch the next request.
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// Size of `struct fuse_in_header`.
const IN_HEADER: usize = 40;
/// Size of `struct fuse_out_header`.
const OUT_HEADER: usize = 16;
/// `user_data` of the entry's command and of the wake-up poll.
const UD_ENTRY: u64 = 1;
const UD_WAKE: u64 = 2;

/// `struct fuse_uring_ent_in_out`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct EntInOut {
    flags: u64,
    /// The request's `unique`; echoed in the commit.
    commit_id: u64,
    /// Bytes valid in the payload buffer, in either direction.
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// `struct fuse_uring_req_header`: `in_out` holds the `fuse_in_header` of a
/// request and the `fuse_out_header` of its reply; `op_in` the opcode's fixed
/// argument struct (the kernel's `in_args[0]`); the remaining arguments come
/// in the payload buffer.
#[repr(C)]
struct Header {
    in_out: [u8; 128],
    op_in: [u8; 128],
    ent: EntInOut,
}
const _: () = assert!(std::mem::size_of::<Header>() == 288);
const _: () = assert!(std::mem::size_of::<EntInOut>() == 32);

/// The CPUs the kernel makes queues for: one per possible CPU, numbered as the CPUs.
pub(crate) fn possible_cpus() -> usize {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let last = s.trim().rsplit([',', '-']).next().and_then(|n| n.parse::<usize>().ok());
    last.map_or(1, |n| n + 1)
}

/// One ring entry and the io_uring that carries it, served by one thread.
pub(crate) struct Queue {
    qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    header: Box<Header>,
    /// Holds the payload buffer, which replies are written into.
    sink: Capture,
    /// `iov[0]` = header, `iov[1]` = payload; read by the kernel at REGISTER.
    iov: Box<[libc::iovec; 2]>,
    /// Written by [`Waker::wake`] to end the serving thread.
    wake: Arc<OwnedFd>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("qid", &self.qid).finish()
    }
}

// SAFETY: the raw pointers in `iov` point into the queue's own boxed buffers,
// which move with it; a queue is used by one thread at a time.
unsafe impl Send for Queue {}

/// Ends the threads serving a set of queues.
#[derive(Debug, Clone)]
pub(crate) struct Waker(Vec<Arc<OwnedFd>>);

impl Waker {
    pub(crate) fn wake(&self) {
        for fd in &self.0 {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live local buffer to an eventfd we own.
            let _ = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }
}

/// Set up `per_queue` entries for every possible CPU, each with its own ring
/// and a payload buffer of `payload` bytes. Nothing is registered yet: that
/// needs the kernel to have seen the INIT reply.
pub(crate) fn setup(per_queue: usize, payload: usize) -> io::Result<(Vec<Queue>, Waker)> {
    let mut queues = Vec::new();
    for qid in 0..possible_cpus() {
        for _ in 0..per_queue {
            let qid = u16::try_from(qid).map_err(|_| io::Error::other("too many CPUs"))?;
            queues.push(Queue::new(qid, payload)?);
        }
    }
    let waker = Waker(queues.iter().map(|q| q.wake.clone()).collect());
    Ok((queues, waker))
}

impl Queue {
    fn new(qid: u16, payload: usize) -> io::Result<Queue> {
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder().build(4)?;
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let mut header = Box::new(Header { in_out: [0; 128], op_in: [0; 128], ent: EntInOut::default() });
        let mut payload = vec![0u8; payload];
        let iov = Box::new([
            libc::iovec { iov_base: (&mut *header as *mut Header).cast(), iov_len: std::mem::size_of::<Header>() },
            libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() },
        ]);
        // The vector is never resized, so its buffer stays where `iov` says.
        let sink = Arc::new(Mutex::new(Sink { out: [0; OUT_HEADER], got: 0, payload, len: 0, overflow: false, open: false }));
        Ok(Queue { qid, ring, header, sink, iov, wake })
    }

    fn cmd(&self, op: u32, commit_id: u64, addr: Option<u64>, dev: RawFd) -> squeue::Entry128 {
        // struct fuse_uring_cmd_req { u64 flags; u64 commit_id; u16 qid; u8 padding[6]; }
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        let mut b = opcode::UringCmd80::new(types::Fd(dev), op).cmd(cmd);
        if let Some(a) = addr {
            b = b.addr(Some(a));
        }
        let e = b.build().user_data(UD_ENTRY);
        if addr.is_none() {
            return e;
        }
        // REGISTER also needs `sqe->len` = 2 (the iovec count), which the
        // builder has no setter for: patch it in the raw SQE.
        // SAFETY: `Entry128` is `repr(C)` over the 64-byte `io_uring_sqe`
        // followed by 64 command bytes, all plain data; `len` is the u32 at
        // byte 24 of the SQE.
        let mut raw: [u8; 128] = unsafe { std::mem::transmute(e) };
        raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
        // SAFETY: as above; every byte pattern is a valid `Entry128`.
        unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
    }

    fn push(&mut self, e: squeue::Entry128) -> io::Result<()> {
        // SAFETY: the buffers the entry names (`iov`, `header`, `payload`) are
        // owned by this queue and outlive the ring, which is dropped first
        // (field order) and cancels what is in flight.
        unsafe { self.ring.submission().push(&e) }.map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Serve requests until the connection ends or the waker fires.
    /// `dispatch` gets one request in `/dev/fuse` layout and returns the
    /// reply in `/dev/fuse` layout (out header first) through the
    /// [`Capture`] it is handed, which writes the reply's body straight into
    /// the entry's payload buffer (one copy of a READ's data in the daemon,
    /// not three).
    pub(crate) fn serve(mut self, dev: RawFd, pin: bool, handoff: bool, mut dispatch: impl FnMut(&[u8], &Capture)) {
        if pin {
            pin_to_cpu(usize::from(self.qid));
        }
        let poll = opcode::PollAdd::new(types::Fd(self.wake.as_raw_fd()), libc::POLLIN as u32).build().user_data(UD_WAKE);
        let reg = self.cmd(CMD_REGISTER, 0, Some(self.iov.as_ptr() as u64), dev);
        if self.push(poll.into()).and_then(|()| self.push(reg)).is_err() {
            return;
        }
        let mut buf = Vec::with_capacity(IN_HEADER + 128 + self.sink.lock().payload.len());
        let mut handoff = crate::handoff::Handoff::new(handoff && pin);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    warn!("io_uring queue {}: {e}", self.qid);
                    return;
                }
            }
            let Some(cqe) = self.ring.completion().next() else { continue };
            if cqe.user_data() == UD_WAKE {
                return;
            }
            if cqe.result() == -libc::EAGAIN {
                // The kernel has not processed the INIT reply yet.
                std::thread::sleep(std::time::Duration::from_millis(1));
                let reg = self.cmd(CMD_REGISTER, 0, Some(self.iov.as_ptr() as u64), dev);
                if self.push(reg).is_err() {
                    return;
                }
                continue;
            }
            if cqe.result() < 0 {
                // ENOTCONN/ECONNABORTED at unmount; anything else ends this queue too.
                debug!("io_uring queue {} ends: errno {}", self.qid, -cqe.result());
                return;
            }
            let ent = self.header.ent;
            match self.request(&mut buf, ent) {
                Some(req) => {
                    self.sink.lock().open();
                    dispatch(req, &self.sink);
                    self.put_reply(ent.commit_id);
                }
                None => self.put_error(libc::EIO, ent.commit_id),
            }
            let commit = self.cmd(CMD_COMMIT_AND_FETCH, ent.commit_id, None, dev);
            if self.push(commit).is_err() {
                return;
            }
            handoff.before_commit();
        }
    }

    /// Reassemble the request as `/dev/fuse` delivers it: in header, the
    /// opcode's fixed struct, then the rest. The in header's `len` counts all
    /// three, so the fixed struct is what is left after the payload.
    fn request<'a>(&self, buf: &'a mut Vec<u8>, ent: EntInOut) -> Option<&'a [u8]> {
        let len = u32::from_ne_bytes(self.header.in_out[0..4].try_into().ok()?) as usize;
        let payload = ent.payload_sz as usize;
        let op = len.checked_sub(IN_HEADER)?.checked_sub(payload)?;
        let sink = self.sink.lock();
        if op > self.header.op_in.len() || payload > sink.payload.len() {
            return None;
        }
        buf.clear();
        buf.extend_from_slice(&self.header.in_out[..IN_HEADER]);
        buf.extend_from_slice(&self.header.op_in[..op]);
        buf.extend_from_slice(&sink.payload[..payload]);
        Some(&buf[..])
    }

    /// Close the sink and put the reply it caught into the entry: the out
    /// header here, the body is in the payload buffer already. No reply,
    /// or one too long for the buffer, is EIO.
    fn put_reply(&mut self, unique: u64) {
        let (out, len) = {
            let mut sink = self.sink.lock();
            sink.open = false;
            if sink.got < OUT_HEADER || sink.overflow {
                (None, 0)
            } else {
                (Some(sink.out), sink.len)
            }
        };
        match out {
            Some(h) => {
                self.header.in_out[..OUT_HEADER].copy_from_slice(&h);
                self.header.ent.payload_sz = len as u32;
            }
            None => self.put_error(libc::EIO, unique),
        }
    }

    fn put_error(&mut self, errno: i32, unique: u64) {
        let r = error_reply(errno, &self.header.in_out);
        self.header.in_out[..OUT_HEADER].copy_from_slice(&r);
        self.header.in_out[8..16].copy_from_slice(&unique.to_ne_bytes());
        self.header.ent.payload_sz = 0;
    }
}

/// A bare error reply (`fuse_out_header`) to the request whose in header is `inh`.
fn error_reply(errno: i32, inh: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(OUT_HEADER);
    r.extend_from_slice(&(OUT_HEADER as u32).to_ne_bytes());
    r.extend_from_slice(&(-errno).to_ne_bytes());
    r.extend_from_slice(&inh[8..16]);
    r
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET bounds-checks
    // against the set's size; sched_setaffinity reads the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            debug!("io_uring queue {cpu}: not pinned: {}", io::Error::last_os_error());
        }
    }
}

/// Where a reply of a request that came through a ring goes: into the ring
/// entry's buffers, which [`Queue::serve`] then commits.
pub(crate) type Capture = Arc<Mutex<Sink>>;

/// A ring entry's reply, as it is written: the out header, and the body in
/// the entry's payload buffer (which the kernel reads at commit and fills
/// with the next request). Open only while the request is being
/// dispatched: a reply that comes later is dropped, never written into a
/// buffer the kernel owns again.
pub(crate) struct Sink {
    out: [u8; OUT_HEADER],
    /// Header bytes written so far.
    got: usize,
    /// The payload buffer; never resized (the kernel has its address).
    payload: Vec<u8>,
    /// Body bytes written so far.
    len: usize,
    overflow: bool,
    open: bool,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink").field("got", &self.got).field("len", &self.len).field("open", &self.open).finish()
    }
}

impl Sink {
    fn open(&mut self) {
        self.got = 0;
        self.len = 0;
        self.overflow = false;
        self.open = true;
    }

    /// Append reply bytes (header first, as `/dev/fuse` takes them).
    pub(crate) fn write(&mut self, mut d: &[u8]) {
        if !self.open {
            warn!("a reply to an io_uring request came after its callback returned; dropped");
            return;
        }
        if self.got < OUT_HEADER {
            let k = d.len().min(OUT_HEADER - self.got);
            self.out[self.got..self.got + k].copy_from_slice(&d[..k]);
            self.got += k;
            d = &d[k..];
        }
        if d.is_empty() {
            return;
        }
        match self.payload.get_mut(self.len..self.len + d.len()) {
            Some(dst) => {
                dst.copy_from_slice(d);
                self.len += d.len();
            }
            None => self.overflow = true,
        }
    }
}

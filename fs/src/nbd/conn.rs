//! The transmission phase of one connection: a few workers take turns on
//! the socket (leader/follower): the one holding the reader takes one
//! request off it (a WRITE's payload with it, so the stream stays in step),
//! lets it go (or keeps it, for a small request with nothing else queued,
//! and takes the next one itself), runs the request against the [`Export`]
//! and replies, out of
//! order, one reply at a time under the writer's lock (one `writev` of the
//! header and the data, which stays in the chunk cache's buffers). The
//! thread that read a request runs it: no hand-off to another thread per
//! request, so a client with one request in flight costs no thread wake-up.
//! Any request the server cannot run is answered with an error, never
//! dropped; a bad magic ends the connection (the stream cannot be trusted
//! after it).

use std::io::{IoSlice, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::handshake::{Session, BLOCK_MAX};
use super::proto::{self, structured_header, Request};
use super::{wire_error, Export};
use crate::overlay::ReadOut;

/// Worker threads per connection, the caller's included: the requests in
/// flight in the server (the rest wait in the socket, which bounds the
/// memory a client can pin).
const WORKERS: usize = 4;
/// Bytes of requests read ahead from the socket.
const READ_BUFFER: usize = 256 << 10;
/// The largest READ or WRITE a worker runs with the socket still held.
const KEEP_SOCKET_LEN: u32 = 64 << 10;
/// A worker keeps its write buffer for the next request up to this size.
const KEEP_PAYLOAD: usize = 4 << 20;
/// Most extents in one BLOCK_STATUS chunk.
const MAX_EXTENTS: usize = 2048;

/// The socket's reading end, shared by the workers.
struct Inbox<R> {
    reader: std::io::BufReader<R>,
    /// The stream ended (DISC, EOF, a broken stream): every worker stops.
    done: bool,
    error: Option<proto::ProtoError>,
}

/// A reply: a header and the read's data, or pieces (errors, block status).
enum Reply {
    Head { head: [u8; 28], len: usize, data: Option<ReadOut> },
    Pieces(Vec<Vec<u8>>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serve `session` until the client disconnects (DISC or EOF). `stop` makes
/// every later request fail with ESHUTDOWN.
pub fn transmit<R: Read + Send, W: Write + Send>(reader: R, writer: W, session: &Session, stop: &AtomicBool) -> Result<(), proto::ProtoError> {
    // Buffered: a client with many requests queued has them taken in a few
    // reads, not two per request (the handshake read nothing ahead).
    let inbox = Mutex::new(Inbox { reader: std::io::BufReader::with_capacity(READ_BUFFER, reader), done: false, error: None });
    let out = Mutex::new(writer);
    let wrote = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 1..WORKERS {
            scope.spawn(|| work(&inbox, &out, session, stop, &wrote));
        }
        work(&inbox, &out, session, stop, &wrote);
    });
    if wrote.load(Ordering::Relaxed) {
        // A disconnect is a natural point to make writes durable.
        if let Err(e) = session.export.flush() {
            tracing::error!(volume = %session.name, error = %e, "flush at disconnect failed");
        }
    }
    match inbox.into_inner().unwrap_or_else(|e| e.into_inner()).error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One worker: take a request, run it, reply; until the stream ends.
fn work<R: Read, W: Write>(inbox: &Mutex<Inbox<R>>, out: &Mutex<W>, session: &Session, stop: &AtomicBool, wrote: &AtomicBool) {
    let mut payload = Vec::new();
    let mut held = None;
    loop {
        let mut ib = match held.take() {
            Some(g) => g,
            None => lock(inbox),
        };
        if ib.done {
            return;
        }
        let req = match next_request(&mut ib.reader, out, session, stop, &mut payload) {
            Ok(Some(r)) => r,
            Ok(None) => {
                ib.done = true;
                return;
            }
            Err(e) => {
                ib.done = true;
                ib.error = Some(e);
                return;
            }
        };
        // Nothing else queued (one request in flight): a small READ or
        // WRITE runs with the socket still held, and this worker takes the
        // next request itself, so no other worker is woken only to wait on
        // the socket. With more queued, or a request that takes longer (a
        // large one, FLUSH, TRIM), the next worker takes over the socket at
        // once: a large WRITE's payload arrives past the buffer, so an empty
        // buffer does not mean the client has nothing more to send.
        let small = matches!(req.kind, proto::CMD_READ | proto::CMD_WRITE) && req.len <= KEEP_SOCKET_LEN;
        let keep = if small && ib.reader.buffer().is_empty() {
            Some(ib)
        } else {
            drop(ib);
            None
        };
        if matches!(req.kind, proto::CMD_WRITE | proto::CMD_WRITE_ZEROES | proto::CMD_TRIM) {
            wrote.store(true, Ordering::Relaxed);
        }
        let data = if req.kind == proto::CMD_WRITE { &payload[..req.len as usize] } else { &[][..] };
        let reply = run(&*session.export, session, &req, data);
        // A client gone while we reply: the reader sees EOF and ends.
        let _ = send(&mut *lock(out), &reply);
        drop(reply);
        if payload.len() > KEEP_PAYLOAD {
            payload = Vec::new();
        }
        held = keep;
    }
}

/// The next request to run (a WRITE's payload in `payload[..len]`);
/// `None` at DISC or EOF. Requests refused before they run (too large, the
/// server stopping) are answered here.
fn next_request<R: Read, W: Write>(reader: &mut R, out: &Mutex<W>, session: &Session, stop: &AtomicBool, payload: &mut Vec<u8>) -> Result<Option<Request>, proto::ProtoError> {
    loop {
        let mut h = [0u8; Request::LEN];
        match reader.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let req = Request::parse(&h)?;
        if req.kind == proto::CMD_WRITE {
            if req.len > BLOCK_MAX {
                proto::skip(reader, u64::from(req.len))?;
                reply_now(out, session, &req, proto::EINVAL, "write larger than the maximum block size")?;
                continue;
            }
            // Grown, never shrunk here: its bytes need no zeroing per request.
            let n = req.len as usize;
            if payload.len() < n {
                payload.resize(n, 0);
            }
            reader.read_exact(&mut payload[..n])?;
        }
        if req.kind == proto::CMD_DISC {
            return Ok(None);
        }
        if stop.load(Ordering::Relaxed) {
            reply_now(out, session, &req, proto::ESHUTDOWN, "server is shutting down")?;
            continue;
        }
        return Ok(Some(req));
    }
}

fn reply_now<W: Write>(out: &Mutex<W>, session: &Session, req: &Request, err: u32, msg: &str) -> std::io::Result<()> {
    send(&mut *lock(out), &error_reply(session, req, err, msg))
}

/// Write a reply whole, gathered (one writev where the stream takes it
/// all), then flush.
fn send<W: Write>(w: &mut W, reply: &Reply) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = match reply {
        Reply::Head { head, len, data } => {
            let mut v = Vec::with_capacity(2);
            v.push(IoSlice::new(&head[..*len]));
            if let Some(d) = data {
                v.extend(d.io_slices());
            }
            v
        }
        Reply::Pieces(pieces) => pieces.iter().map(|p| IoSlice::new(p)).collect(),
    };
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.flush()
}

/// A header-only reply (or one followed by `data`): `bytes` copied in.
fn head(bytes: &[u8], data: Option<ReadOut>) -> Reply {
    let mut h = [0u8; 28];
    h[..bytes.len()].copy_from_slice(bytes);
    Reply::Head { head: h, len: bytes.len(), data }
}

fn error_reply(session: &Session, req: &Request, err: u32, msg: &str) -> Reply {
    if session.structured {
        let p = proto::error_payload(err, msg);
        Reply::Pieces(vec![structured_header(proto::REPLY_FLAG_DONE, proto::REPLY_TYPE_ERROR, req.cookie, p.len() as u32).to_vec(), p])
    } else {
        head(&proto::simple_reply(err, req.cookie), None)
    }
}

fn ok_reply(session: &Session, req: &Request) -> Reply {
    if session.structured {
        head(&structured_header(proto::REPLY_FLAG_DONE, proto::REPLY_TYPE_NONE, req.cookie, 0), None)
    } else {
        head(&proto::simple_reply(0, req.cookie), None)
    }
}

/// Run one request (`data`: a WRITE's payload); its reply.
fn run(e: &dyn Export, session: &Session, req: &Request, data: &[u8]) -> Reply {
    use proto::*;
    let fail = |err: u32, msg: &str| error_reply(session, req, err, msg);
    if req.flags & !CMD_FLAGS_KNOWN != 0 {
        return fail(EINVAL, "unknown command flags");
    }
    let end = req.offset.checked_add(u64::from(req.len));
    let in_range = end.is_some_and(|end| end <= e.size());
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let done = |r: crate::Result<()>| match r {
        Ok(()) => ok_reply(session, req),
        Err(err) => {
            tracing::warn!(volume = %session.name, offset = req.offset, len = req.len, error = %err, "request failed");
            fail(wire_error(&err), &err.to_string())
        }
    };
    match req.kind {
        CMD_READ => {
            if !in_range {
                return fail(EINVAL, "read past the end of the volume");
            }
            if req.len > BLOCK_MAX {
                return fail(if session.structured { EOVERFLOW } else { EINVAL }, "read larger than the maximum block size");
            }
            match e.read_out(req.offset, req.len) {
                Ok(data) if session.structured => {
                    let mut h = [0u8; 28];
                    h[..20].copy_from_slice(&structured_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, req.cookie, 8 + data.len() as u32));
                    h[20..].copy_from_slice(&req.offset.to_be_bytes());
                    Reply::Head { head: h, len: 28, data: Some(data) }
                }
                Ok(data) => head(&simple_reply(0, req.cookie), Some(data)),
                Err(err) => {
                    tracing::error!(volume = %session.name, offset = req.offset, len = req.len, error = %err, "read failed");
                    fail(wire_error(&err), &err.to_string())
                }
            }
        }
        CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES if e.read_only() => fail(EPERM, "the volume is read-only"),
        CMD_WRITE if !in_range => fail(ENOSPC, "write past the end of the volume"),
        CMD_WRITE => done(e.write(req.offset, data, fua)),
        CMD_FLUSH => done(e.flush()),
        CMD_TRIM if !in_range => fail(EINVAL, "trim past the end of the volume"),
        CMD_TRIM => done(e.trim(req.offset, u64::from(req.len), fua)),
        CMD_WRITE_ZEROES if !in_range => fail(ENOSPC, "write past the end of the volume"),
        CMD_WRITE_ZEROES => done(e.zero(req.offset, u64::from(req.len), req.flags & CMD_FLAG_FAST_ZERO != 0, req.flags & CMD_FLAG_NO_HOLE != 0, fua)),
        CMD_BLOCK_STATUS => block_status(e, session, req, in_range),
        _ => fail(EINVAL, "unknown or unoffered command"),
    }
}

fn block_status(e: &dyn Export, session: &Session, req: &Request, in_range: bool) -> Reply {
    use proto::*;
    let fail = |err: u32, msg: &str| error_reply(session, req, err, msg);
    if !session.structured || session.contexts.is_empty() {
        return fail(EINVAL, "no meta context was negotiated");
    }
    if !in_range || req.len == 0 {
        return fail(EINVAL, "block status outside the volume");
    }
    let runs = match e.allocation(req.offset, u64::from(req.len)) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => return fail(EIO, "no allocation information"),
        Err(err) => return fail(wire_error(&err), &err.to_string()),
    };
    let one = req.flags & CMD_FLAG_REQ_ONE != 0;
    let mut out = Vec::new();
    for (i, ctx) in session.contexts.iter().enumerate() {
        let last = i + 1 == session.contexts.len();
        let mut p = ctx.to_be_bytes().to_vec();
        // Adjacent runs with the same status for this context are one extent.
        let mut extents: Vec<(u64, u32)> = Vec::new();
        for r in &runs {
            let flags = if *ctx != CONTEXT_BASE_ALLOCATION.1 {
                r.depth
            } else if r.hole {
                STATE_HOLE | STATE_ZERO
            } else if r.zero {
                STATE_ZERO
            } else {
                0
            };
            match extents.last_mut() {
                Some((len, f)) if *f == flags => *len += r.len,
                _ => extents.push((r.len, flags)),
            }
        }
        for (len, flags) in extents.into_iter().take(if one { 1 } else { MAX_EXTENTS }) {
            // Runs never pass the request, whose length fits 32 bits.
            p.extend_from_slice(&(len.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            p.extend_from_slice(&flags.to_be_bytes());
        }
        let flags = if last { REPLY_FLAG_DONE } else { 0 };
        out.push(structured_header(flags, REPLY_TYPE_BLOCK_STATUS, req.cookie, p.len() as u32).to_vec());
        out.push(p);
    }
    Reply::Pieces(out)
}

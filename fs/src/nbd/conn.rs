//! The transmission phase of one connection: a reader takes requests off
//! the socket (a WRITE's payload with it, so the stream stays in step), a
//! few workers run them against the [`Export`] and reply as they finish,
//! out of order, one reply at a time under the writer's lock. Any request
//! the server cannot run is answered with an error, never dropped; a bad
//! magic ends the connection (the stream cannot be trusted after it).

use std::io::{IoSlice, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::handshake::{Session, BLOCK_MAX};
use super::proto::{self, structured_header, Request};
use super::{wire_error, Export};

/// Requests in flight per connection (bounds the memory a client can pin).
const IN_FLIGHT: usize = 64;
/// Worker threads per connection.
const WORKERS: usize = 4;
/// Bytes of requests read ahead from the socket.
const READ_BUFFER: usize = 256 << 10;
/// Most extents in one BLOCK_STATUS chunk.
const MAX_EXTENTS: usize = 2048;

struct Job {
    req: Request,
    payload: Vec<u8>,
}

/// Serve `session` until the client disconnects (DISC or EOF). `stop` makes
/// every later request fail with ESHUTDOWN.
pub fn transmit<R: Read, W: Write + Send>(reader: R, writer: W, session: &Session, stop: &AtomicBool) -> Result<(), proto::ProtoError> {
    // Buffered: a client with many requests queued has them taken in a few
    // reads, not two per request (the handshake read nothing ahead).
    let mut reader = std::io::BufReader::with_capacity(READ_BUFFER, reader);
    let out = Mutex::new(writer);
    let export = session.export.clone();
    let wrote = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            let rx = rx.clone();
            let (out, export, wrote) = (&out, &export, &wrote);
            scope.spawn(move || loop {
                let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                if job.req.kind == proto::CMD_WRITE || job.req.kind == proto::CMD_WRITE_ZEROES || job.req.kind == proto::CMD_TRIM {
                    wrote.store(true, Ordering::Relaxed);
                }
                let reply = run(&**export, session, &job);
                let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
                // A client gone while we reply: the reader sees EOF and ends.
                let _ = write_pieces(&mut *w, &reply);
            });
        }
        let r = read_loop(&mut reader, &out, session, stop, &tx);
        drop(tx);
        r
    });
    if wrote.load(Ordering::Relaxed) {
        // A disconnect is a natural point to make writes durable.
        if let Err(e) = export.flush() {
            tracing::error!(volume = %session.name, error = %e, "flush at disconnect failed");
        }
    }
    result
}

fn read_loop<R: Read, W: Write>(reader: &mut R, out: &Mutex<W>, session: &Session, stop: &AtomicBool, tx: &mpsc::SyncSender<Job>) -> Result<(), proto::ProtoError> {
    loop {
        let mut h = [0u8; Request::LEN];
        match reader.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let req = Request::parse(&h)?;
        let mut payload = Vec::new();
        if req.kind == proto::CMD_WRITE {
            if req.len > BLOCK_MAX {
                proto::skip(reader, u64::from(req.len))?;
                reply_now(out, session, &req, proto::EINVAL, "write larger than the maximum block size")?;
                continue;
            }
            payload = vec![0u8; req.len as usize];
            reader.read_exact(&mut payload)?;
        }
        if req.kind == proto::CMD_DISC {
            return Ok(());
        }
        if stop.load(Ordering::Relaxed) {
            reply_now(out, session, &req, proto::ESHUTDOWN, "server is shutting down")?;
            continue;
        }
        if tx.send(Job { req, payload }).is_err() {
            return Ok(());
        }
    }
}

fn reply_now<W: Write>(out: &Mutex<W>, session: &Session, req: &Request, err: u32, msg: &str) -> std::io::Result<()> {
    let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
    write_pieces(&mut *w, &error_reply(session, req, err, msg))
}

/// Write a reply's pieces in order, gathered (one writev for a header and
/// its data, where the stream takes it all), then flush.
fn write_pieces<W: Write>(w: &mut W, pieces: &[Vec<u8>]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
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

fn error_reply(session: &Session, req: &Request, err: u32, msg: &str) -> Vec<Vec<u8>> {
    if session.structured {
        let p = proto::error_payload(err, msg);
        vec![structured_header(proto::REPLY_FLAG_DONE, proto::REPLY_TYPE_ERROR, req.cookie, p.len() as u32).to_vec(), p]
    } else {
        vec![proto::simple_reply(err, req.cookie).to_vec()]
    }
}

fn ok_reply(session: &Session, req: &Request) -> Vec<Vec<u8>> {
    if session.structured {
        vec![structured_header(proto::REPLY_FLAG_DONE, proto::REPLY_TYPE_NONE, req.cookie, 0).to_vec()]
    } else {
        vec![proto::simple_reply(0, req.cookie).to_vec()]
    }
}

/// Run one request; the reply's pieces, to be written in order.
fn run(e: &dyn Export, session: &Session, job: &Job) -> Vec<Vec<u8>> {
    use proto::*;
    let req = &job.req;
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
            match e.read(req.offset, req.len) {
                Ok(data) if session.structured => {
                    let mut h = structured_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, req.cookie, 8 + data.len() as u32).to_vec();
                    h.extend_from_slice(&req.offset.to_be_bytes());
                    vec![h, data]
                }
                Ok(data) => vec![simple_reply(0, req.cookie).to_vec(), data],
                Err(err) => {
                    tracing::error!(volume = %session.name, offset = req.offset, len = req.len, error = %err, "read failed");
                    fail(wire_error(&err), &err.to_string())
                }
            }
        }
        CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES if e.read_only() => fail(EPERM, "the volume is read-only"),
        CMD_WRITE if !in_range => fail(ENOSPC, "write past the end of the volume"),
        CMD_WRITE => done(e.write(req.offset, &job.payload, fua)),
        CMD_FLUSH => done(e.flush()),
        CMD_TRIM if !in_range => fail(EINVAL, "trim past the end of the volume"),
        CMD_TRIM => done(e.trim(req.offset, u64::from(req.len), fua)),
        CMD_WRITE_ZEROES if !in_range => fail(ENOSPC, "write past the end of the volume"),
        CMD_WRITE_ZEROES => done(e.zero(req.offset, u64::from(req.len), req.flags & CMD_FLAG_FAST_ZERO != 0, req.flags & CMD_FLAG_NO_HOLE != 0, fua)),
        CMD_BLOCK_STATUS => block_status(e, session, req, in_range),
        _ => fail(EINVAL, "unknown or unoffered command"),
    }
}

fn block_status(e: &dyn Export, session: &Session, req: &Request, in_range: bool) -> Vec<Vec<u8>> {
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
    out
}

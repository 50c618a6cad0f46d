//! The NBD wire format (fixed newstyle handshake, simple and structured
//! replies), as in the protocol document of the NetworkBlockDevice project:
//! constants, and the parsing of what a client sends, which is untrusted.
//! Parsers take bytes and return typed values or a [`ProtoError`]; they
//! never panic, whatever the bytes (a property test and a fuzz-style test in
//! this module's tests feed them random input).

use std::io::{self, Read, Write};

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const REPLY_MAGIC_OPT: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR + 1;
pub const REP_ERR_POLICY: u32 = REP_ERR + 2;
pub const REP_ERR_INVALID: u32 = REP_ERR + 3;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR + 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR + 7;
pub const REP_ERR_TOO_BIG: u32 = REP_ERR + 9;

// Info types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TF_HAS_FLAGS: u16 = 1 << 0;
pub const TF_READ_ONLY: u16 = 1 << 1;
pub const TF_SEND_FLUSH: u16 = 1 << 2;
pub const TF_SEND_FUA: u16 = 1 << 3;
pub const TF_SEND_TRIM: u16 = 1 << 5;
pub const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TF_SEND_DF: u16 = 1 << 7;
pub const TF_CAN_MULTI_CONN: u16 = 1 << 8;
pub const TF_SEND_FAST_ZERO: u16 = 1 << 11;

// Commands and their flags.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;
/// Every command flag this server understands.
pub const CMD_FLAGS_KNOWN: u16 = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE | CMD_FLAG_FAST_ZERO;

// Structured reply types and flags.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;

// Errors on the wire.
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const ENOMEM: u32 = 12;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;
pub const ESHUTDOWN: u32 = 108;

// base:allocation status bits.
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

/// Meta contexts this server offers, with their ids on the wire.
pub const CONTEXT_BASE_ALLOCATION: (&str, u32) = ("base:allocation", 1);
pub const CONTEXT_ALLOCATION_DEPTH: (&str, u32) = ("qemu:allocation-depth", 2);

/// The longest string (export name, query) the protocol allows.
pub const MAX_STRING: usize = 4096;
/// Option payloads larger than this are refused (and skipped, to stay in
/// step with the client).
pub const MAX_OPTION: u32 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("bad magic {0:#x}")]
    Magic(u64),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// One transmission-phase request header (28 bytes on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub offset: u64,
    pub len: u32,
}

impl Request {
    pub const LEN: usize = 28;

    pub fn parse(b: &[u8; Self::LEN]) -> Result<Request, ProtoError> {
        let magic = be32(&b[0..4]);
        if magic != REQUEST_MAGIC {
            return Err(ProtoError::Magic(u64::from(magic)));
        }
        Ok(Request { flags: be16(&b[4..6]), kind: be16(&b[6..8]), cookie: be64(&b[8..16]), offset: be64(&b[16..24]), len: be32(&b[24..28]) })
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.len.to_be_bytes());
        b
    }
}

pub fn be16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[..2]);
    u16::from_be_bytes(a)
}

pub fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

pub fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A cursor over an option's payload that fails instead of panicking.
pub struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b }
    }
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtoError> {
        if self.b.len() < n {
            return Err(ProtoError::Malformed(what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, ProtoError> {
        Ok(be16(self.take(2, what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, ProtoError> {
        Ok(be32(self.take(4, what)?))
    }
    /// A u32-length-prefixed string of at most [`MAX_STRING`] bytes.
    pub fn string(&mut self, what: &'static str) -> Result<&'a [u8], ProtoError> {
        let n = self.u32(what)? as usize;
        if n > MAX_STRING {
            return Err(ProtoError::Malformed(what));
        }
        self.take(n, what)
    }
    pub fn done(&self) -> bool {
        self.b.is_empty()
    }
}

/// The payload of OPT_INFO / OPT_GO: an export name and the info types asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: Vec<u8>,
    pub infos: Vec<u16>,
}

impl InfoRequest {
    pub fn parse(data: &[u8]) -> Result<InfoRequest, ProtoError> {
        let mut c = Cursor::new(data);
        let name = c.string("export name")?.to_vec();
        let n = c.u16("info count")? as usize;
        let mut infos = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            infos.push(c.u16("info type")?);
        }
        if !c.done() {
            return Err(ProtoError::Malformed("trailing bytes in an info request"));
        }
        Ok(InfoRequest { name, infos })
    }
}

/// The payload of OPT_LIST_META_CONTEXT / OPT_SET_META_CONTEXT.
#[derive(Debug, PartialEq, Eq)]
pub struct MetaRequest {
    pub name: Vec<u8>,
    pub queries: Vec<Vec<u8>>,
}

impl MetaRequest {
    pub fn parse(data: &[u8]) -> Result<MetaRequest, ProtoError> {
        let mut c = Cursor::new(data);
        let name = c.string("export name")?.to_vec();
        let n = c.u32("query count")? as usize;
        let mut queries = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            queries.push(c.string("query")?.to_vec());
        }
        if !c.done() {
            return Err(ProtoError::Malformed("trailing bytes in a meta context request"));
        }
        Ok(MetaRequest { name, queries })
    }
}

/// The contexts a query selects: an exact name, or a namespace (`base:`,
/// `qemu:`) which for LIST means every context in it.
pub fn contexts_for(query: &[u8], list: bool) -> Vec<(&'static str, u32)> {
    [CONTEXT_BASE_ALLOCATION, CONTEXT_ALLOCATION_DEPTH]
        .into_iter()
        .filter(|(name, _)| {
            let n = name.as_bytes();
            query == n || (list && query.ends_with(b":") && n.starts_with(query))
        })
        .collect()
}

/// Write one option reply.
pub fn write_opt_reply(w: &mut impl Write, opt: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut h = Vec::with_capacity(20 + data.len());
    h.extend_from_slice(&REPLY_MAGIC_OPT.to_be_bytes());
    h.extend_from_slice(&opt.to_be_bytes());
    h.extend_from_slice(&kind.to_be_bytes());
    h.extend_from_slice(&(data.len() as u32).to_be_bytes());
    h.extend_from_slice(data);
    w.write_all(&h)
}

/// A simple reply header (16 bytes), to be followed by READ data.
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// A structured reply chunk header (20 bytes), followed by `len` bytes.
pub fn structured_header(flags: u16, kind: u16, cookie: u64, len: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..20].copy_from_slice(&len.to_be_bytes());
    b
}

/// The payload of a structured error chunk: the error and a message.
pub fn error_payload(error: u32, msg: &str) -> Vec<u8> {
    let m = &msg.as_bytes()[..msg.len().min(MAX_STRING)];
    let mut p = Vec::with_capacity(6 + m.len());
    p.extend_from_slice(&error.to_be_bytes());
    p.extend_from_slice(&(m.len() as u16).to_be_bytes());
    p.extend_from_slice(m);
    p
}

/// Read and drop `n` bytes (a payload refused, to stay in step).
pub fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client closed inside a payload"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_round_trips_and_bad_magic_is_refused() {
        let r = Request { flags: CMD_FLAG_FUA, kind: CMD_WRITE, cookie: 7, offset: 1 << 40, len: u32::MAX };
        assert_eq!(Request::parse(&r.encode()).unwrap(), r);
        let mut b = r.encode();
        b[0] ^= 1;
        assert!(matches!(Request::parse(&b), Err(ProtoError::Magic(_))));
    }

    #[test]
    fn info_and_meta_requests_parse_exactly() {
        let mut d = Vec::new();
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"web");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        d.extend_from_slice(&INFO_NAME.to_be_bytes());
        assert_eq!(InfoRequest::parse(&d).unwrap(), InfoRequest { name: b"web".to_vec(), infos: vec![INFO_BLOCK_SIZE, INFO_NAME] });
        assert!(InfoRequest::parse(&d[..d.len() - 1]).is_err(), "short");
        let mut long = d.clone();
        long.push(0);
        assert!(InfoRequest::parse(&long).is_err(), "trailing byte");
        assert_eq!(contexts_for(b"base:", true), vec![CONTEXT_BASE_ALLOCATION]);
        assert_eq!(contexts_for(b"base:", false), vec![]);
        assert_eq!(contexts_for(b"qemu:allocation-depth", false), vec![CONTEXT_ALLOCATION_DEPTH]);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = InfoRequest::parse(&data);
            let _ = MetaRequest::parse(&data);
            if data.len() >= Request::LEN {
                let mut b = [0u8; Request::LEN];
                b.copy_from_slice(&data[..Request::LEN]);
                let _ = Request::parse(&b);
            }
        }
    }
}

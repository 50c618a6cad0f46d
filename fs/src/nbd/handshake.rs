//! The fixed newstyle handshake and option haggling, up to the
//! transmission phase. Every option is answered (unknown ones with
//! ERR_UNSUP) after its payload is read whole, so a client is never out of
//! step; a payload over [`proto::MAX_OPTION`] is skipped and refused.

use std::io::{Read, Write};
use std::sync::Arc;

use super::proto::{self, ProtoError};
use super::Export;

/// The exports a server offers, by name.
pub trait Exports: Send + Sync {
    /// The export called `name`; the empty name is the default export.
    fn find(&self, name: &[u8]) -> Option<(String, Arc<dyn Export>)>;
    fn names(&self) -> Vec<String>;
    /// Whether the server is stopping (new sessions are refused).
    fn shutting_down(&self) -> bool {
        false
    }
}

/// What a finished handshake agreed.
pub struct Session {
    pub name: String,
    pub export: Arc<dyn Export>,
    pub structured: bool,
    /// Selected meta contexts (their ids).
    pub contexts: Vec<u32>,
}

/// The smallest, preferred and largest request sizes offered.
pub const BLOCK_MIN: u32 = 1;
pub const BLOCK_PREFERRED: u32 = 4096;
pub const BLOCK_MAX: u32 = 32 << 20;

/// The transmission flags of `e`.
pub fn transmission_flags(e: &dyn Export) -> u16 {
    use proto::*;
    let mut f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_DF | TF_CAN_MULTI_CONN;
    if e.read_only() {
        f |= TF_READ_ONLY;
    } else {
        f |= TF_SEND_TRIM | TF_SEND_WRITE_ZEROES | TF_SEND_FAST_ZERO;
    }
    f
}

/// Run the handshake on `s`. `Ok(None)`: the client ended it (ABORT, or an
/// unknown name with EXPORT_NAME).
pub fn negotiate<S: Read + Write>(s: &mut S, exports: &dyn Exports) -> Result<Option<Session>, ProtoError> {
    use proto::*;
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    s.flush()?;
    let mut cf = [0u8; 4];
    s.read_exact(&mut cf)?;
    let client_flags = be32(&cf);
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(ProtoError::Malformed("unknown client flags"));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    let mut structured = false;
    let mut contexts: Vec<u32> = Vec::new();
    loop {
        let mut h = [0u8; 16];
        s.read_exact(&mut h)?;
        let magic = be64(&h[0..8]);
        if magic != IHAVEOPT {
            return Err(ProtoError::Magic(magic));
        }
        let opt = be32(&h[8..12]);
        let len = be32(&h[12..16]);
        if len > MAX_OPTION {
            skip(s, u64::from(len))?;
            write_opt_reply(s, opt, REP_ERR_TOO_BIG, b"option payload too large")?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        if exports.shutting_down() && opt != OPT_ABORT {
            write_opt_reply(s, opt, REP_ERR_SHUTDOWN, b"server is shutting down")?;
            continue;
        }
        match opt {
            OPT_EXPORT_NAME => {
                // No way to refuse but to hang up.
                let Some((name, export)) = exports.find(&data) else { return Ok(None) };
                let mut r = Vec::with_capacity(10 + 124);
                r.extend_from_slice(&export.size().to_be_bytes());
                r.extend_from_slice(&transmission_flags(&*export).to_be_bytes());
                if !no_zeroes {
                    r.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&r)?;
                s.flush()?;
                // Without GO, structured replies may still have been asked for.
                return Ok(Some(Session { name, export, structured, contexts }));
            }
            OPT_ABORT => {
                // The reply is optional; the client may have gone already.
                let _ = write_opt_reply(s, opt, REP_ACK, &[]);
                let _ = s.flush();
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    write_opt_reply(s, opt, REP_ERR_INVALID, b"LIST takes no data")?;
                } else {
                    for n in exports.names() {
                        let mut d = (n.len() as u32).to_be_bytes().to_vec();
                        d.extend_from_slice(n.as_bytes());
                        write_opt_reply(s, opt, REP_SERVER, &d)?;
                    }
                    write_opt_reply(s, opt, REP_ACK, &[])?;
                }
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    write_opt_reply(s, opt, REP_ERR_INVALID, b"STRUCTURED_REPLY takes no data")?;
                } else {
                    structured = true;
                    write_opt_reply(s, opt, REP_ACK, &[])?;
                }
            }
            OPT_INFO | OPT_GO => {
                let req = match InfoRequest::parse(&data) {
                    Ok(r) => r,
                    Err(_) => {
                        write_opt_reply(s, opt, REP_ERR_INVALID, b"malformed info request")?;
                        continue;
                    }
                };
                let Some((name, export)) = exports.find(&req.name) else {
                    write_opt_reply(s, opt, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                };
                send_info(s, opt, &name, &*export, &req.infos)?;
                write_opt_reply(s, opt, REP_ACK, &[])?;
                if opt == OPT_GO {
                    s.flush()?;
                    return Ok(Some(Session { name, export, structured, contexts }));
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = opt == OPT_SET_META_CONTEXT;
                if !structured {
                    write_opt_reply(s, opt, REP_ERR_INVALID, b"negotiate structured replies first")?;
                    continue;
                }
                let req = match MetaRequest::parse(&data) {
                    Ok(r) => r,
                    Err(_) => {
                        write_opt_reply(s, opt, REP_ERR_INVALID, b"malformed meta context request")?;
                        continue;
                    }
                };
                if exports.find(&req.name).is_none() {
                    write_opt_reply(s, opt, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                let mut chosen: Vec<(&str, u32)> = Vec::new();
                if req.queries.is_empty() && !set {
                    chosen = vec![CONTEXT_BASE_ALLOCATION, CONTEXT_ALLOCATION_DEPTH];
                }
                for q in &req.queries {
                    for c in contexts_for(q, !set) {
                        if !chosen.contains(&c) {
                            chosen.push(c);
                        }
                    }
                }
                for (n, id) in &chosen {
                    let mut d = id.to_be_bytes().to_vec();
                    d.extend_from_slice(n.as_bytes());
                    write_opt_reply(s, opt, REP_META_CONTEXT, &d)?;
                }
                if set {
                    contexts = chosen.iter().map(|c| c.1).collect();
                }
                write_opt_reply(s, opt, REP_ACK, &[])?;
            }
            OPT_STARTTLS => write_opt_reply(s, opt, REP_ERR_UNSUP, b"TLS is not offered; use a Unix socket or a tunnel")?,
            _ => write_opt_reply(s, opt, REP_ERR_UNSUP, b"unknown option")?,
        }
        s.flush()?;
    }
}

fn send_info(s: &mut impl Write, opt: u32, name: &str, e: &dyn Export, asked: &[u16]) -> Result<(), ProtoError> {
    use proto::*;
    let mut d = INFO_EXPORT.to_be_bytes().to_vec();
    d.extend_from_slice(&e.size().to_be_bytes());
    d.extend_from_slice(&transmission_flags(e).to_be_bytes());
    write_opt_reply(s, opt, REP_INFO, &d)?;
    // Sizes are always sent: the minimum is 1, so a client that did not ask
    // is not bound by them.
    let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    for v in [BLOCK_MIN, BLOCK_PREFERRED, BLOCK_MAX] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    write_opt_reply(s, opt, REP_INFO, &d)?;
    if asked.contains(&INFO_NAME) {
        let mut d = INFO_NAME.to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        write_opt_reply(s, opt, REP_INFO, &d)?;
    }
    if asked.contains(&INFO_DESCRIPTION) {
        let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
        d.extend_from_slice(format!("lvrepo volume {name}").as_bytes());
        write_opt_reply(s, opt, REP_INFO, &d)?;
    }
    Ok(())
}

//! The service's wire format. The client sends one request: a 4-byte
//! little-endian length with its stdin, stdout and stderr attached
//! (SCM_RIGHTS), then that many bytes of JSON ([`Request`]). The service
//! answers with one byte, the command's exit code, and closes. Everything
//! the command prints goes straight to the caller's own descriptors.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

/// Longest request accepted (argv of a command line).
const MAX_REQUEST: u32 = 1 << 20;

/// What the client asks: its command line (bytes, as the kernel gave it)
/// and the repository it named through `LVREPO_REPO`, made absolute.
#[derive(Serialize, Deserialize, Debug)]
pub struct Request {
    pub argv: Vec<Vec<u8>>,
    #[serde(default)]
    pub repo: Option<Vec<u8>>,
}

/// Send `req` with descriptors `fds` attached.
pub fn send(conn: &mut UnixStream, req: &Request, fds: &[RawFd; 3]) -> std::io::Result<()> {
    let body = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).ok().filter(|l| *l <= MAX_REQUEST).ok_or_else(|| std::io::Error::other("command line too long"))?;
    let head = len.to_le_bytes();
    let mut space = [0u8; 64];
    let fd_bytes = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let cmsg_len = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    let mut iov = libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() };
    // SAFETY: an all-zero msghdr is a valid empty one; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_len as _;
    // SAFETY: msg_control points at `space` (64 bytes, more than
    // CMSG_SPACE of three descriptors), so the first header and its data
    // fit; the header is filled before sendmsg reads it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), fd_bytes as usize);
    }
    // SAFETY: msg and what it points at (iov, head, space) live across the call.
    let sent = unsafe { libc::sendmsg(conn.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A short send of the header: the descriptors went with its first byte.
    conn.write_all(&head[sent as usize..])?;
    conn.write_all(&body)
}

/// Receive a request and the three descriptors sent with it (close-on-exec).
pub fn recv(conn: &mut UnixStream) -> std::io::Result<(Request, [OwnedFd; 3])> {
    let mut head = [0u8; 4];
    let mut space = [0u64; 8];
    let mut iov = libc::iovec { iov_base: head.as_mut_ptr().cast(), iov_len: head.len() };
    // SAFETY: an all-zero msghdr is a valid empty one; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space) as _;
    let got = loop {
        // SAFETY: msg points at `head` and `space`, both live and writable.
        let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into `space`
    // (msg_controllen says how much); each SCM_RIGHTS payload is an array
    // of descriptors now ours, taken into OwnedFd exactly once.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..n {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(std::io::Error::other("more descriptors than stdin, stdout and stderr"));
    }
    let fds: [OwnedFd; 3] = fds.try_into().map_err(|v: Vec<OwnedFd>| std::io::Error::other(format!("{} descriptors sent, not 3 (stdin, stdout, stderr)", v.len())))?;
    if got == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    conn.read_exact(&mut head[got..])?;
    let len = u32::from_le_bytes(head);
    if len > MAX_REQUEST {
        return Err(std::io::Error::other(format!("a request of {len} bytes")));
    }
    let mut body = vec![0u8; len as usize];
    conn.read_exact(&mut body)?;
    let req = serde_json::from_slice(&body).map_err(|e| std::io::Error::other(format!("bad request: {e}")))?;
    Ok((req, fds))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_request_arrives_with_working_descriptors() {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        // Three streams whose far ends this test keeps.
        let pairs: Vec<(UnixStream, UnixStream)> = (0..3).map(|_| UnixStream::pair().expect("pair")).collect();
        let fds = [pairs[0].0.as_raw_fd(), pairs[1].0.as_raw_fd(), pairs[2].0.as_raw_fd()];
        let argv: Vec<Vec<u8>> = vec![b"lvrepo".to_vec(), b"ls".to_vec(), b"web:/bad\xff".to_vec(), vec![b'x'; 100_000]];
        let sender = std::thread::spawn(move || super::send(&mut a, &super::Request { argv, repo: Some(b"/srv/r".to_vec()) }, &fds).expect("send"));
        let (req, got) = super::recv(&mut b).expect("recv");
        sender.join().expect("sender");
        assert_eq!(req.argv[2], b"web:/bad\xff");
        assert_eq!(req.argv[3].len(), 100_000);
        assert_eq!(req.repo.as_deref(), Some(&b"/srv/r"[..]));
        for (i, fd) in got.into_iter().enumerate() {
            std::fs::File::from(fd).write_all(format!("fd {i}").as_bytes()).expect("write through the received descriptor");
            let mut buf = [0u8; 4];
            (&pairs[i].1).read_exact(&mut buf).expect("read the far end");
            assert_eq!(&buf, format!("fd {i}").as_bytes());
        }
    }

    #[test]
    fn a_request_without_descriptors_is_refused() {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        a.write_all(&4u32.to_le_bytes()).and_then(|_| a.write_all(b"{}  ")).expect("write");
        let e = super::recv(&mut b).err().expect("refused");
        assert!(e.to_string().contains("0 descriptors sent"), "{e}");
    }
}

//! Accepting NBD connections on a Unix socket or a TCP address, one thread
//! per connection, and stopping cleanly: [`Server::stop`] refuses new
//! sessions (ERR_SHUTDOWN), answers later requests with ESHUTDOWN, gives
//! clients a moment to disconnect, then closes what is left; the caller
//! then flushes the export.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::handshake::{negotiate, Exports};
use crate::error::{Error, Result};

/// Where to listen.
#[derive(Clone, Debug)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(String),
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A connected client, either kind.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
        }
    }
    fn write_vectored(&mut self, b: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write_vectored(b),
            Stream::Tcp(s) => s.write_vectored(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

pub struct Server {
    listener: Listener,
    exports: Arc<dyn Exports>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, Stream>>>,
    next: AtomicU64,
}

impl Server {
    pub fn bind(at: &Listen, exports: Arc<dyn Exports>) -> Result<Server> {
        let listener = match at {
            Listen::Unix(p) => {
                // A socket left by a server that died is replaced; a live one is refused.
                if UnixStream::connect(p).is_ok() {
                    return Err(Error::io("binding", p, std::io::Error::new(std::io::ErrorKind::AddrInUse, "another server listens on this socket")));
                }
                let _ = std::fs::remove_file(p);
                Listener::Unix(UnixListener::bind(p).map_err(|e| Error::io("binding", p, e))?)
            }
            Listen::Tcp(a) => Listener::Tcp(TcpListener::bind(a).map_err(|e| Error::io("listening on", a.clone(), e))?),
        };
        Ok(Server { listener, exports, stop: Arc::new(AtomicBool::new(false)), conns: Arc::default(), next: AtomicU64::new(0) })
    }

    /// Clients connected now.
    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Close every client connection now (a rollback with --disconnect).
    pub fn disconnect_all(&self) {
        for s in self.conns.lock().unwrap_or_else(|e| e.into_inner()).values() {
            s.shutdown();
        }
    }

    /// Accept and serve until [`Server::stop`]; returns once every
    /// connection has ended.
    pub fn run(&self) {
        std::thread::scope(|scope| {
            loop {
                let accepted = match &self.listener {
                    Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
                    Listener::Tcp(l) => l.accept().map(|(s, _)| {
                        let _ = s.set_nodelay(true);
                        Stream::Tcp(s)
                    }),
                };
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
                let stream = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                if let Ok(c) = stream.try_clone() {
                    self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, c);
                }
                scope.spawn(move || {
                    self.serve_one(stream);
                    self.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                });
            }
        });
    }

    fn serve_one(&self, mut stream: Stream) {
        let session = match negotiate(&mut stream, &*self.exports) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::info!(error = %e, "handshake ended");
                return;
            }
        };
        tracing::info!(volume = %session.name, structured = session.structured, "client connected");
        let Ok(writer) = stream.try_clone() else { return };
        if let Err(e) = super::conn::transmit(stream, writer, &session, &self.stop) {
            tracing::warn!(volume = %session.name, error = %e, "connection ended with an error");
        }
        tracing::info!(volume = %session.name, "client disconnected");
    }

    /// Stop: refuse new work, wait up to `grace` for clients to leave, then
    /// close the rest and wake the accept loop.
    pub fn stop(&self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let t = Instant::now();
        while self.connections() > 0 && t.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.disconnect_all();
        // Wake accept(): shut the listening socket down (Linux returns
        // EINVAL from a blocked accept), or connect to it once.
        let fd = match &self.listener {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        };
        // SAFETY: shutdown on a socket descriptor we own; no memory passed.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        match &self.listener {
            Listener::Unix(l) => {
                if let Ok(a) = l.local_addr() {
                    if let Some(p) = a.as_pathname() {
                        let _ = UnixStream::connect(p);
                    }
                }
            }
            Listener::Tcp(l) => {
                if let Ok(a) = l.local_addr() {
                    let _ = TcpStream::connect(a);
                }
            }
        }
    }
}

//! The block front: block volumes served over NBD (the Network Block Device
//! protocol), beside the FUSE front and thin like it. The engine below is
//! the same: a volume is an image whose root holds one regular file (the
//! disk), a volume guest's overlay holds only the blocks it wrote, and its
//! checkpoints and rollbacks are the guest layer's.
//!
//! Layers: [`proto`] is the wire format (untrusted input parsed without
//! panics); [`handshake`] negotiates options; [`conn`] runs the transmission
//! phase (many requests in flight, replies out of order); [`server`] accepts
//! connections on a Unix socket or TCP and stops cleanly; an [`Export`] is
//! what is served: [`volume::OverlayVolume`] (a volume guest, read-write or
//! not) or [`volume::TreeVolume`] (an image or a checkpoint, read-only).

pub mod conn;
pub mod handshake;
pub mod proto;
pub mod server;
pub mod volume;

use crate::error::Result;
use crate::overlay::ReadOut;

/// One run of a volume's allocation map, as BLOCK_STATUS reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub len: u64,
    /// Nothing is stored here: reads return zeros (`base:allocation` hole+zero).
    pub hole: bool,
    /// Reads return zeros (`base:allocation` zero); implied by `hole`.
    pub zero: bool,
    /// Where the bytes come from: 0 nowhere (a hole in every layer), 1 the
    /// guest's overlay, 2 the image (`qemu:allocation-depth`).
    pub depth: u32,
}

/// What the NBD front serves: a byte range with block-device operations.
///
/// Contract, relied on by [`conn`]:
/// - `size` never changes while served; callers check every range against it.
/// - `read_out` returns exactly `len` bytes, or an error: never short, never
///   bytes it could not verify. They stay where they are (the chunk cache's
///   buffers) until the reply is written; `read` copies them into one buffer.
/// - `write`, `zero` and `trim` are refused on a read-only export
///   ([`crate::Error::ReadOnly`]); `fua` means the change is durable when the
///   call returns; `flush` makes every write that has completed durable, for
///   every connection (so the server may advertise multi-conn).
/// - `zero` makes the range read as zeros; with `no_hole` it stays allocated
///   (zeros are stored, as the spec's NO_HOLE asks), else nothing is stored.
///   With `fast` it must cost no more than a metadata change, and fails with
///   `Error::Posix(ENOTSUP)` instead. `trim` stores nothing for the range
///   (it reads as zeros after).
/// - `allocation` returns runs covering at least one byte from `off`, in
///   order, none past `off + len`.
pub trait Export: Send + Sync {
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    fn read_out(&self, off: u64, len: u32) -> Result<ReadOut>;
    fn read(&self, off: u64, len: u32) -> Result<Vec<u8>> {
        Ok(self.read_out(off, len)?.to_vec())
    }
    fn write(&self, off: u64, data: &[u8], fua: bool) -> Result<()>;
    fn flush(&self) -> Result<()>;
    fn trim(&self, off: u64, len: u64, fua: bool) -> Result<()>;
    fn zero(&self, off: u64, len: u64, fast: bool, no_hole: bool, fua: bool) -> Result<()>;
    fn allocation(&self, off: u64, len: u64) -> Result<Vec<Run>>;
}

/// The NBD error for an engine error: the one mapping from errno to the
/// protocol's small set.
pub fn wire_error(e: &crate::Error) -> u32 {
    match e.errno() {
        libc::EPERM | libc::EROFS | libc::EACCES => proto::EPERM,
        libc::ENOSPC | libc::EDQUOT => proto::ENOSPC,
        libc::EINVAL => proto::EINVAL,
        libc::ENOMEM => proto::ENOMEM,
        libc::EOVERFLOW => proto::EOVERFLOW,
        libc::ENOTSUP => proto::ENOTSUP,
        _ => proto::EIO,
    }
}

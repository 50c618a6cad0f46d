//! Hand-built tar streams, byte by byte.
//!
//! Why not the `tar` crate's builder: it refuses exactly the hostile input we
//! need to feed lvrepo (`..` components, absolute names, non-UTF-8 bytes are
//! awkward). Here the name bytes go into the header unchecked. Names longer
//! than 100 bytes use a GNU `L` long-name entry, as GNU tar does.

/// One ustar header's fields. `typeflag`: b'0' file, b'1' hardlink,
/// b'2' symlink, b'3' char dev, b'4' block dev, b'5' dir, b'6' fifo.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: u64,
    pub typeflag: u8,
    pub linkname: Vec<u8>,
    pub devmajor: u32,
    pub devminor: u32,
}

impl Header {
    /// A header with common defaults (root-owned, mtime 1_700_000_000).
    pub fn new(typeflag: u8, name: &[u8], mode: u32) -> Self {
        Header {
            name: name.to_vec(),
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1_700_000_000,
            typeflag,
            linkname: Vec::new(),
            devmajor: 0,
            devminor: 0,
        }
    }

    /// The 512-byte ustar block (name must already fit in 100 bytes).
    pub fn block(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put(&mut b[0..100], &self.name);
        octal(&mut b[100..108], self.mode as u64);
        octal(&mut b[108..116], self.uid as u64);
        octal(&mut b[116..124], self.gid as u64);
        octal(&mut b[124..136], self.size);
        octal(&mut b[136..148], self.mtime);
        b[156] = self.typeflag;
        put(&mut b[157..257], &self.linkname);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        put(&mut b[265..297], b"root");
        put(&mut b[297..329], b"root");
        octal(&mut b[329..337], self.devmajor as u64);
        octal(&mut b[337..345], self.devminor as u64);
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| x as u32).sum();
        let s = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(s.as_bytes());
        b
    }
}

fn put(dst: &mut [u8], src: &[u8]) {
    assert!(src.len() <= dst.len(), "field too long: {}", src.escape_ascii());
    dst[..src.len()].copy_from_slice(src);
}

fn octal(dst: &mut [u8], v: u64) {
    let w = dst.len() - 1;
    let s = format!("{v:0w$o}");
    assert!(s.len() <= w, "value {v} does not fit");
    dst[..w].copy_from_slice(s.as_bytes());
    dst[w] = 0;
}

/// An in-memory tar stream under construction.
#[derive(Default)]
pub struct RawTar {
    pub buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a header (with GNU long-name/long-link entries if needed) and data.
    pub fn entry(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.size = data.len() as u64;
        if h.typeflag != b'0' {
            assert!(data.is_empty() || h.typeflag == b'7', "only files carry data");
        }
        if h.linkname.len() > 100 {
            let mut v = h.linkname.clone();
            v.push(0);
            let l = Header::new(b'K', b"././@LongLink", 0);
            self.raw(l, &v);
            h.linkname.truncate(100);
        }
        if h.name.len() > 100 {
            let mut v = h.name.clone();
            v.push(0);
            let l = Header::new(b'L', b"././@LongLink", 0);
            self.raw(l, &v);
            h.name.truncate(100);
        }
        self.raw(h, data)
    }

    fn raw(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.size = data.len() as u64;
        self.buf.extend_from_slice(&h.block());
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.resize(self.buf.len() + pad, 0);
        self
    }

    /// A PAX extended header (`x`) for the next entry, its records as given.
    pub fn pax_header(&mut self, records: &[u8]) -> &mut Self {
        self.raw(Header::new(b'x', b"PaxHeaders/next", 0o644), records)
    }

    pub fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        self.entry(Header::new(b'0', name, 0o644), data)
    }

    pub fn dir(&mut self, name: &[u8]) -> &mut Self {
        self.entry(Header::new(b'5', name, 0o755), b"")
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        let mut h = Header::new(b'2', name, 0o777);
        h.linkname = target.to_vec();
        self.entry(h, b"")
    }

    pub fn hardlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        let mut h = Header::new(b'1', name, 0o644);
        h.linkname = target.to_vec();
        self.entry(h, b"")
    }

    pub fn device(&mut self, name: &[u8], chr: bool, major: u32, minor: u32) -> &mut Self {
        let mut h = Header::new(if chr { b'3' } else { b'4' }, name, 0o660);
        h.devmajor = major;
        h.devminor = minor;
        self.entry(h, b"")
    }

    pub fn fifo(&mut self, name: &[u8]) -> &mut Self {
        self.entry(Header::new(b'6', name, 0o644), b"")
    }

    /// The finished stream: entries plus the two zero end blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut v = self.buf.clone();
        v.resize(v.len() + 1024, 0);
        v
    }
}

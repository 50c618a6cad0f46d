//! Minimal canonical binary codec for tree and file-index objects.
//!
//! Integers are unsigned LEB128 in their shortest form; the decoder rejects
//! longer forms so that every value has exactly one encoding (a requirement for
//! content addressing: equal trees must hash equal).

use crate::error::{Error, Result};

pub fn put_uv(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_iv(out: &mut Vec<u8>, v: i64) {
    put_uv(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uv(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub fn err(&self, why: &'static str) -> Error {
        Error::Decode { what: self.what, why }
    }

    pub fn done(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.err("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| self.err("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn uv(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(self.err("varint overflows"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(self.err("non-canonical varint"));
                }
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    pub fn u32v(&mut self) -> Result<u32> {
        u32::try_from(self.uv()?).map_err(|_| self.err("value out of range"))
    }

    pub fn iv(&mut self) -> Result<i64> {
        let u = self.uv()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.uv()?).map_err(|_| self.err("length out of range"))?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut b = Vec::new();
            put_uv(&mut b, u);
            put_iv(&mut b, i);
            let mut r = Reader::new(&b, "test");
            prop_assert_eq!(r.uv().unwrap(), u);
            prop_assert_eq!(r.iv().unwrap(), i);
            prop_assert!(r.done());
        }
    }

    #[test]
    fn rejects_non_canonical() {
        assert!(Reader::new(&[0x80, 0x00], "t").uv().is_err());
        assert!(Reader::new(&[0xff; 11], "t").uv().is_err());
    }
}

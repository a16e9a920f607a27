//! Little-endian encoding of records shared by the journal and the checkpoint. Decoding never
//! panics: short or malformed input is a [`OsdError::Corrupt`] naming the structure.

use proto::fid::LuFid;

use crate::error::{OsdError, Result};
use crate::types::{Attr, Timespec};

/// Encoded size of an [`Attr`].
pub(crate) const ATTR_LEN: usize = 4 * 3 + 8 + 12 * 3 + 4 * 3 + 8;

pub(crate) struct Enc<'a>(pub(crate) &'a mut Vec<u8>);

impl Enc<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    pub(crate) fn fid(&mut self, f: &LuFid) {
        self.u64(f.seq());
        self.u32(f.oid());
        self.u32(f.ver());
    }
    fn ts(&mut self, t: &Timespec) {
        self.u64(t.sec.cast_unsigned());
        self.u32(t.nsec);
    }
    pub(crate) fn attr(&mut self, a: &Attr) {
        self.u32(a.mode);
        self.u32(a.uid);
        self.u32(a.gid);
        self.u64(a.size);
        self.ts(&a.atime);
        self.ts(&a.mtime);
        self.ts(&a.ctime);
        self.u32(a.nlink);
        self.u32(a.flags);
        self.u32(a.projid);
        self.u64(a.rdev);
    }
}

pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Dec<'a> {
        Dec { buf, pos: 0, what }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            OsdError::corrupt(self.what, format!("record truncated at byte {}", self.pos))
        })?;
        let s = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.arr::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub(crate) fn fid(&mut self) -> Result<LuFid> {
        let seq = self.u64()?;
        let oid = self.u32()?;
        let ver = self.u32()?;
        Ok(LuFid::new(seq, oid, ver))
    }
    fn ts(&mut self) -> Result<Timespec> {
        let sec = self.u64()?.cast_signed();
        let nsec = self.u32()?;
        Ok(Timespec { sec, nsec })
    }
    pub(crate) fn attr(&mut self) -> Result<Attr> {
        Ok(Attr {
            mode: self.u32()?,
            uid: self.u32()?,
            gid: self.u32()?,
            size: self.u64()?,
            blocks: 0,
            atime: self.ts()?,
            mtime: self.ts()?,
            ctime: self.ts()?,
            nlink: self.u32()?,
            flags: self.u32()?,
            projid: self.u32()?,
            rdev: self.u64()?,
        })
    }
    pub(crate) fn err(&self, detail: impl Into<String>) -> OsdError {
        OsdError::corrupt(self.what, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_round_trip_and_len() {
        let a = Attr {
            mode: 0o100644,
            uid: 1,
            gid: 2,
            size: 3,
            blocks: 0,
            atime: Timespec { sec: -5, nsec: 999_999_999 },
            mtime: Timespec { sec: 6, nsec: 7 },
            ctime: Timespec { sec: 8, nsec: 9 },
            nlink: 10,
            flags: 11,
            projid: 12,
            rdev: 13,
        };
        let mut v = Vec::new();
        Enc(&mut v).attr(&a);
        assert_eq!(v.len(), ATTR_LEN);
        assert_eq!(Dec::new(&v, "t").attr().unwrap(), a);
        assert!(Dec::new(&v[..10], "t").attr().is_err());
    }
}

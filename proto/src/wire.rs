//! The decoding and encoding discipline every wire structure follows.
//!
//! Structures are `#[repr(C)]` zerocopy types whose fields are explicit little-endian integers
//! (alignment 1), so a view can be taken of any byte slice, aligned or not, without copying.
//! [`Wire::decode`] checks the length and then the structure's own invariants ([`Wire::check`]).

use crate::error::{Result, WireError};
use zerocopy::{Immutable, KnownLayout, Unaligned};

pub use zerocopy::little_endian::{I32, I64, U16, U32, U64};
/// The zerocopy traits wire types implement, re-exported so users need not name zerocopy.
pub use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// A fixed-size Lustre wire structure.
pub trait Wire: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Copy {
    /// Lustre's name for the structure, used in errors.
    const NAME: &'static str;
    /// Size on the wire (equal to `size_of::<Self>()`).
    const SIZE: usize = core::mem::size_of::<Self>();

    /// Invariants beyond the length: magic numbers, versions, counts.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// A view of the structure at the start of `buf`, which may be longer (Lustre receivers
    /// accept buffers larger than the struct they know, for forward compatibility).
    fn decode(buf: &[u8]) -> Result<&Self> {
        let (v, _) = Self::ref_from_prefix(buf).map_err(|_| WireError::Truncated {
            what: Self::NAME,
            need: Self::SIZE,
            have: buf.len(),
        })?;
        v.check()?;
        Ok(v)
    }

    /// Like [`Wire::decode`], and also returns the bytes that follow the structure.
    fn decode_prefix(buf: &[u8]) -> Result<(&Self, &[u8])> {
        let v = Self::decode(buf)?;
        Ok((v, buf.get(Self::SIZE..).unwrap_or_default()))
    }

    /// A view of the structure that must fill `buf` exactly.
    fn decode_exact(buf: &[u8]) -> Result<&Self> {
        if buf.len() > Self::SIZE {
            return Err(WireError::Oversize { what: Self::NAME, len: buf.len(), max: Self::SIZE });
        }
        Self::decode(buf)
    }

    /// An owned copy of the structure at the start of `buf`.
    fn read(buf: &[u8]) -> Result<Self> {
        Self::decode(buf).copied()
    }

    /// Appends the wire bytes to `out`.
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    /// The wire bytes, owned.
    fn to_vec(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

/// Implements [`Wire`] with no checks beyond the length.
macro_rules! wire_plain {
    ($($t:ty => $name:literal),* $(,)?) => {
        $(impl $crate::wire::Wire for $t { const NAME: &'static str = $name; })*
    };
}
pub(crate) use wire_plain;

/// Rounds `n` up to a multiple of 8, the alignment of every ptlrpc buffer and llog record.
#[must_use]
pub const fn round_up8(n: usize) -> usize {
    (n + 7) & !7
}

/// The bytes of a NUL-terminated (or NUL-padded) C string field, without the NUL.
/// A field with no NUL is taken whole: Lustre writes some fields (`obd_uuid`) that way.
#[must_use]
pub fn cstr_bytes(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field.get(..end).unwrap_or_default()
}

/// A C string field as UTF-8 text.
pub fn cstr<'a>(what: &'static str, field: &'a [u8]) -> Result<&'a str> {
    core::str::from_utf8(cstr_bytes(field))
        .map_err(|_| WireError::BadString { what, detail: "not UTF-8" })
}

/// Copies `s` into a fixed-size C string field, NUL-padding the rest. The string must leave room
/// for at least one NUL and must not contain one.
pub fn set_cstr(what: &'static str, field: &mut [u8], s: &[u8]) -> Result<()> {
    if s.contains(&0) {
        return Err(WireError::BadString { what, detail: "embedded NUL" });
    }
    if s.len() >= field.len() {
        return Err(WireError::Oversize { what, len: s.len() + 1, max: field.len() });
    }
    field.fill(0);
    if let Some(dst) = field.get_mut(..s.len()) {
        dst.copy_from_slice(s);
    }
    Ok(())
}

/// A fixed-size array of `N` bytes holding `s` NUL-padded (for building structs inline).
pub fn cstr_array<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N]> {
    let mut a = [0u8; N];
    set_cstr(what, &mut a, s.as_bytes())?;
    Ok(a)
}

/// Slices `len` bytes at `off`, or reports truncation of `what`.
pub fn take<'a>(what: &'static str, buf: &'a [u8], off: usize, len: usize) -> Result<&'a [u8]> {
    let end = off.checked_add(len).ok_or(WireError::Oversize { what, len, max: buf.len() })?;
    buf.get(off..end).ok_or(WireError::Truncated { what, need: end, have: buf.len() })
}

/// An array of `count` wire structures starting at the front of `buf`.
pub fn decode_array<T: Wire>(buf: &[u8], count: usize) -> Result<&[T]> {
    let need = count.checked_mul(T::SIZE).ok_or(WireError::Oversize {
        what: T::NAME,
        len: count,
        max: buf.len() / T::SIZE.max(1),
    })?;
    let bytes = take(T::NAME, buf, 0, need)?;
    <[T]>::ref_from_bytes(bytes).map_err(|_| WireError::Truncated {
        what: T::NAME,
        need,
        have: buf.len(),
    })
}

/// The little-endian `u16` at `off`.
pub fn u16_at(what: &'static str, buf: &[u8], off: usize) -> Result<u16> {
    let b = take(what, buf, off, 2)?;
    Ok(u16::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// The little-endian `u32` at `off`.
pub fn u32_at(what: &'static str, buf: &[u8], off: usize) -> Result<u32> {
    let b = take(what, buf, off, 4)?;
    Ok(u32::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// The little-endian `u64` at `off`.
pub fn u64_at(what: &'static str, buf: &[u8], off: usize) -> Result<u64> {
    let b = take(what, buf, off, 8)?;
    Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

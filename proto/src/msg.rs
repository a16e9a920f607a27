//! `struct lustre_msg_v2`: the ptlrpc message envelope. A 32-byte header, `lm_bufcount`
//! buffer lengths (the header is padded to 8), then each buffer padded to 8. Buffer 0 is
//! always the `ptlrpc_body`.

use crate::body::PtlrpcBodyV3;
use crate::error::{Result, WireError};
use crate::wire::{U32, Wire, round_up8, take, u32_at, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `LUSTRE_MSG_MAGIC_V2`.
pub const LUSTRE_MSG_MAGIC_V2: u32 = 0x0BD0_0BD3;
/// `LUSTRE_MSG_MAGIC_V2_SWABBED`: a sender of the other byte order.
pub const LUSTRE_MSG_MAGIC_V2_SWABBED: u32 = 0xD30B_D00B;
/// `LUSTRE_MSG_MAGIC_V1`, long obsolete.
pub const LUSTRE_MSG_MAGIC_V1: u32 = 0x0BD0_0BD0;
/// `PTLRPC_MAX_BUFCOUNT`: the receive side keeps a 32-bit swab mask per message.
pub const PTLRPC_MAX_BUFCOUNT: usize = 32;
/// Largest message we accept (the LNet MTU).
pub const PTLRPC_MAX_MSG: usize = crate::lnet::LNET_MTU;
/// Reply offset when the request carries `MSGHDR_AT_SUPPORT`: room for an early reply
/// (header 40 + a 184-byte body) in front of the final reply.
pub const PTLRPC_REPLY_OFFSET_AT: u32 = 224;

/// `lm_flags` (`MSGHDR_*`).
pub mod msghdr {
    /// Adaptive timeouts: `lm_cksum` valid, replies at offset 224.
    pub const AT_SUPPORT: u32 = 0x1;
    /// 1.8 compatibility checksum flag, always set with AT.
    pub const CKSUM_INCOMPAT18: u32 = 0x2;
}

/// The fixed 32 bytes of `lustre_msg_v2`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LustreMsgV2 {
    /// Number of buffers (at least 1).
    pub lm_bufcount: U32,
    /// Security flavour (0 = null).
    pub lm_secflvr: U32,
    /// [`LUSTRE_MSG_MAGIC_V2`].
    pub lm_magic: U32,
    /// Size of the reply buffer the client posted.
    pub lm_repsize: U32,
    /// Early reply checksum.
    pub lm_cksum: U32,
    /// `msghdr` bits.
    pub lm_flags: U32,
    /// Opcode of a batch RPC (`lm_padding_2` in 2.15).
    pub lm_padding_2: U32,
    /// Padding.
    pub lm_padding_3: U32,
}
wire_plain!(LustreMsgV2 => "lustre_msg_v2");

/// Header length for `bufcount` buffers.
#[must_use]
pub const fn header_len(bufcount: usize) -> usize {
    round_up8(LustreMsgV2::SIZE + 4 * bufcount)
}

/// Total message length for buffers of these lengths.
#[must_use]
pub fn msg_len(lens: &[usize]) -> usize {
    header_len(lens.len()) + lens.iter().map(|&l| round_up8(l)).sum::<usize>()
}

/// A decoded view of a ptlrpc message.
#[derive(Debug, Clone, Copy)]
pub struct LustreMsg<'a> {
    raw: &'a [u8],
    hdr: LustreMsgV2,
    swabbed: bool,
}

fn get_len(raw: &[u8], i: usize, swabbed: bool) -> Result<usize> {
    let v = u32_at("lm_buflens", raw, LustreMsgV2::SIZE + 4 * i)?;
    Ok((if swabbed { v.swap_bytes() } else { v }) as usize)
}

impl<'a> LustreMsg<'a> {
    /// Decodes the envelope the way `lustre_unpack_msg_v2` does: known magic, 1 to 32
    /// buffers, every buffer (each rounded up to 8) inside the message.
    ///
    /// A message from a big-endian sender is decoded (its header is swabbed) and reported by
    /// [`LustreMsg::swabbed`]; the bodies are not swabbed, so the caller must refuse it.
    pub fn decode(raw: &'a [u8]) -> Result<LustreMsg<'a>> {
        const WHAT: &str = "lustre_msg_v2";
        if raw.len() > PTLRPC_MAX_MSG {
            return Err(WireError::Oversize { what: WHAT, len: raw.len(), max: PTLRPC_MAX_MSG });
        }
        let mut hdr = LustreMsgV2::read(raw)?;
        let swabbed = match hdr.lm_magic.get() {
            LUSTRE_MSG_MAGIC_V2 => false,
            LUSTRE_MSG_MAGIC_V2_SWABBED => true,
            LUSTRE_MSG_MAGIC_V1 => return Err(WireError::BadVersion { what: WHAT, got: 1 }),
            m => return Err(WireError::BadMagic { what: WHAT, got: m.into() }),
        };
        if swabbed {
            for f in [
                &mut hdr.lm_bufcount,
                &mut hdr.lm_secflvr,
                &mut hdr.lm_repsize,
                &mut hdr.lm_cksum,
                &mut hdr.lm_flags,
                &mut hdr.lm_padding_2,
            ] {
                *f = f.get().swap_bytes().into();
            }
            hdr.lm_magic = LUSTRE_MSG_MAGIC_V2.into();
        }
        let n = hdr.lm_bufcount.get() as usize;
        if n == 0 || n > PTLRPC_MAX_BUFCOUNT {
            return Err(WireError::BadValue { what: "lustre_msg_v2 lm_bufcount", got: n as u64 });
        }
        let mut need = header_len(n);
        take(WHAT, raw, 0, need)?;
        for i in 0..n {
            let len = get_len(raw, i, swabbed)?;
            if len > PTLRPC_MAX_MSG {
                return Err(WireError::Oversize {
                    what: "lustre_msg_v2 buffer",
                    len,
                    max: PTLRPC_MAX_MSG,
                });
            }
            need += round_up8(len);
            if need > raw.len() {
                return Err(WireError::Truncated { what: WHAT, need, have: raw.len() });
            }
        }
        Ok(LustreMsg { raw, hdr, swabbed })
    }

    /// The header (swabbed into our order if the sender was big-endian).
    #[must_use]
    pub fn header(&self) -> &LustreMsgV2 {
        &self.hdr
    }

    /// Whether the sender used the other byte order.
    #[must_use]
    pub fn swabbed(&self) -> bool {
        self.swabbed
    }

    /// Number of buffers.
    #[must_use]
    pub fn bufcount(&self) -> usize {
        self.hdr.lm_bufcount.get() as usize
    }

    /// Length of buffer `i`, if it exists.
    #[must_use]
    pub fn buflen(&self, i: usize) -> Option<usize> {
        if i >= self.bufcount() {
            return None;
        }
        get_len(self.raw, i, self.swabbed).ok()
    }

    /// Where buffer `i` (unpadded) lies in the message bytes, if it exists.
    #[must_use]
    pub fn buf_range(&self, i: usize) -> Option<core::ops::Range<usize>> {
        if i >= self.bufcount() {
            return None;
        }
        let mut off = header_len(self.bufcount());
        for j in 0..i {
            off += round_up8(get_len(self.raw, j, self.swabbed).ok()?);
        }
        let len = get_len(self.raw, i, self.swabbed).ok()?;
        Some(off..off + len)
    }

    /// Buffer `i` (unpadded), if it exists.
    #[must_use]
    pub fn buf(&self, i: usize) -> Option<&'a [u8]> {
        self.raw.get(self.buf_range(i)?)
    }

    /// Every buffer in order.
    pub fn bufs(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.bufcount()).filter_map(|i| self.buf(i))
    }

    /// The `ptlrpc_body` (v3, or v2 widened). Refuses swabbed senders.
    pub fn body(&self) -> Result<PtlrpcBodyV3> {
        if self.swabbed {
            return Err(WireError::Swabbed { what: "ptlrpc_body" });
        }
        PtlrpcBodyV3::decode_any(self.buf(0).unwrap_or_default())
    }

    /// Buffer `i`, required to exist with at least `min` bytes (for fixed-size fields).
    pub fn need(&self, what: &'static str, i: usize, min: usize) -> Result<&'a [u8]> {
        let b =
            self.buf(i).ok_or(WireError::Truncated { what, need: i + 1, have: self.bufcount() })?;
        if b.len() < min {
            return Err(WireError::Truncated { what, need: min, have: b.len() });
        }
        Ok(b)
    }

    /// The whole message.
    #[must_use]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// Header fields of a message being built (the rest are zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgHdr {
    /// `lm_flags`.
    pub flags: u32,
    /// `lm_repsize`.
    pub repsize: u32,
    /// `lm_cksum`.
    pub cksum: u32,
}

/// Encodes a message from its buffers (buffer 0 must be the body) into `out`.
pub fn encode(hdr: MsgHdr, bufs: &[&[u8]], out: &mut Vec<u8>) -> Result<()> {
    const WHAT: &str = "lustre_msg_v2";
    if bufs.is_empty() || bufs.len() > PTLRPC_MAX_BUFCOUNT {
        return Err(WireError::BadValue {
            what: "lustre_msg_v2 lm_bufcount",
            got: bufs.len() as u64,
        });
    }
    let total = msg_len(&bufs.iter().map(|b| b.len()).collect::<Vec<_>>());
    if total > PTLRPC_MAX_MSG {
        return Err(WireError::Oversize { what: WHAT, len: total, max: PTLRPC_MAX_MSG });
    }
    let start = out.len();
    out.reserve(total);
    LustreMsgV2 {
        lm_bufcount: u32::try_from(bufs.len()).unwrap_or(0).into(),
        lm_secflvr: 0.into(),
        lm_magic: LUSTRE_MSG_MAGIC_V2.into(),
        lm_repsize: hdr.repsize.into(),
        lm_cksum: hdr.cksum.into(),
        lm_flags: hdr.flags.into(),
        lm_padding_2: 0.into(),
        lm_padding_3: 0.into(),
    }
    .encode_into(out);
    for b in bufs {
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(0).to_le_bytes());
    }
    out.resize(start + header_len(bufs.len()), 0);
    for b in bufs {
        out.extend_from_slice(b);
        out.resize(out.len() + round_up8(b.len()) - b.len(), 0);
    }
    debug_assert_eq!(out.len() - start, total);
    Ok(())
}

/// Encodes a message into a new vector.
pub fn to_vec(hdr: MsgHdr, bufs: &[&[u8]]) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    encode(hdr, bufs, &mut v)?;
    Ok(v)
}

/// The early-reply checksum: `crc32_le(~0, body)` without final inversion (`lustre_msg_calc_cksum`).
#[must_use]
pub fn early_reply_cksum(body: &[u8]) -> u32 {
    crate::cksum::crc32_le(!0, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opcode::Opcode;

    #[test]
    fn layout_and_round_trip() {
        let body = PtlrpcBodyV3::request(Opcode::ObdPing).to_vec();
        let m = to_vec(MsgHdr { flags: 3, repsize: 300, cksum: 0 }, &[&body, b"abc", b""]).unwrap();
        // header 32 + 3*4 = 44 -> 48; body 184; "abc" -> 8; "" -> 0.
        assert_eq!(m.len(), 48 + 184 + 8);
        assert_eq!(&m[0..4], &3u32.to_le_bytes());
        assert_eq!(&m[8..12], &LUSTRE_MSG_MAGIC_V2.to_le_bytes());
        assert_eq!(&m[32..44], &[184, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        let d = LustreMsg::decode(&m).unwrap();
        assert_eq!(d.bufcount(), 3);
        assert_eq!(d.buf(1).unwrap(), b"abc");
        assert_eq!(d.buf(2).unwrap(), b"");
        assert!(d.buf(3).is_none());
        assert_eq!(d.body().unwrap().opc(), Opcode::ObdPing);
        // One-buffer header is 40 bytes; with a v3 body that is the 224-byte reply offset.
        assert_eq!(header_len(1) + 184, PTLRPC_REPLY_OFFSET_AT as usize);
    }

    #[test]
    fn rejects_bad_envelopes() {
        let body = PtlrpcBodyV3::request(Opcode::ObdPing).to_vec();
        let m = to_vec(MsgHdr::default(), &[&body]).unwrap();
        assert!(LustreMsg::decode(&m[..m.len() - 1]).is_err());
        let mut v1 = m.clone();
        v1[8..12].copy_from_slice(&LUSTRE_MSG_MAGIC_V1.to_le_bytes());
        assert!(matches!(LustreMsg::decode(&v1), Err(WireError::BadVersion { .. })));
        let mut zero = m.clone();
        zero[0..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(LustreMsg::decode(&zero).is_err());
        let mut many = m.clone();
        many[0..4].copy_from_slice(&33u32.to_le_bytes());
        assert!(LustreMsg::decode(&many).is_err());
        let mut lie = m.clone();
        lie[32..36].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(LustreMsg::decode(&lie).is_err());
    }

    #[test]
    fn swabbed_sender_detected() {
        let mut m = vec![0u8; 48 + 8];
        m[0..4].copy_from_slice(&1u32.to_be_bytes());
        m[8..12].copy_from_slice(&LUSTRE_MSG_MAGIC_V2.to_be_bytes());
        m[32..36].copy_from_slice(&8u32.to_be_bytes());
        let d = LustreMsg::decode(&m).unwrap();
        assert!(d.swabbed());
        assert_eq!(d.buflen(0), Some(8));
        assert!(matches!(d.body(), Err(WireError::Swabbed { .. })));
    }
}

//! Whole socklnd frames: `ksock_msg_hdr` + `lnet_hdr_nid4` + payload, where the payload of a
//! ptlrpc PUT is a `lustre_msg_v2`. [`Frame`] builds one; [`parse_frame`] takes one apart.

use crate::error::{Result, WireError};
use crate::lnet::{
    KsockMsgHdr, LnetBody, LnetHandleWire, LnetHdrNid4, LnetPut, PID_LUSTRE, ksock_msg_type,
};
use crate::msg::LustreMsg;
use crate::nid::Nid;
use crate::wire::{Wire, take};

/// Bytes of a NOOP frame.
pub const NOOP_LEN: usize = KsockMsgHdr::SIZE;
/// Bytes of the headers in front of an LNET frame's payload.
pub const LNET_HDRS_LEN: usize = KsockMsgHdr::SIZE + LnetHdrNid4::SIZE;

/// One frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The ksock header (type, ZC-ACK cookies).
    pub ksock: KsockMsgHdr,
    /// The LNet header (absent for NOOPs).
    pub lnet: Option<LnetHdrNid4>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A NOOP carrying ZC-ACK cookies (keepalive: `{0, 1}`).
    #[must_use]
    pub fn noop(c0: u64, c1: u64) -> Frame {
        Frame { ksock: KsockMsgHdr::noop(c0, c1), lnet: None, payload: Vec::new() }
    }

    /// An LNET frame from `src` to `dest` (both PID 12345) with `body` and `payload`; the
    /// header's payload length is set from the payload.
    pub fn lnet(dest: Nid, src: Nid, body: &LnetBody, payload: Vec<u8>) -> Result<Frame> {
        let len = u32::try_from(payload.len()).map_err(|_| WireError::Oversize {
            what: "lnet payload",
            len: payload.len(),
            max: crate::lnet::LNET_MTU,
        })?;
        let hdr = LnetHdrNid4::new((dest, PID_LUSTRE), (src, PID_LUSTRE), len, body);
        hdr.check()?;
        Ok(Frame { ksock: KsockMsgHdr::lnet(0, 0), lnet: Some(hdr), payload })
    }

    /// A ptlrpc message PUT to `portal` with `match_bits` (requests: the xid; replies: the
    /// request's xid or mbits) at `offset` (224 for final replies to AT-capable clients), with
    /// no ACK requested.
    pub fn ptlrpc_put(
        dest: Nid,
        src: Nid,
        portal: u32,
        match_bits: u64,
        offset: u32,
        msg: Vec<u8>,
    ) -> Result<Frame> {
        LustreMsg::decode(&msg)?;
        let put = LnetPut {
            ack_wmd: LnetHandleWire::NONE,
            match_bits: match_bits.into(),
            hdr_data: 0.into(),
            ptl_index: portal.into(),
            offset: offset.into(),
        };
        Frame::lnet(dest, src, &LnetBody::Put(put), msg)
    }

    /// Total bytes on the wire.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        KsockMsgHdr::SIZE + self.lnet.map_or(0, |_| LnetHdrNid4::SIZE) + self.payload.len()
    }

    /// Appends the wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.ksock.encode_into(out);
        if let Some(h) = &self.lnet {
            h.encode_into(out);
            out.extend_from_slice(&self.payload);
        }
    }

    /// The wire bytes.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.wire_len());
        self.encode(&mut v);
        v
    }
}

/// A frame taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedFrame<'a> {
    /// The ksock header.
    pub ksock: KsockMsgHdr,
    /// The LNet header and its decoded body, for LNET frames.
    pub lnet: Option<(LnetHdrNid4, LnetBody)>,
    /// The payload.
    pub payload: &'a [u8],
}

impl ParsedFrame<'_> {
    /// The ptlrpc message in a PUT's payload, if this frame carries one.
    pub fn ptlrpc(&self) -> Option<Result<LustreMsg<'_>>> {
        match self.lnet {
            Some((_, LnetBody::Put(p))) if p.ptl_index.get() != crate::lnet::RESERVED_PORTAL => {
                Some(LustreMsg::decode(self.payload))
            }
            _ => None,
        }
    }
}

/// Bytes the frame at the front of `buf` occupies, once its headers are available.
pub fn frame_len(buf: &[u8]) -> Result<usize> {
    let k = KsockMsgHdr::decode(buf)?;
    if k.ksh_type.get() == ksock_msg_type::NOOP {
        return Ok(NOOP_LEN);
    }
    let h = LnetHdrNid4::decode(take("lnet_hdr_nid4", buf, KsockMsgHdr::SIZE, LnetHdrNid4::SIZE)?)?;
    Ok(LNET_HDRS_LEN + h.payload_length.get() as usize)
}

/// Parses the frame at the front of `buf`, returning it and the bytes it took.
pub fn parse_frame(buf: &[u8]) -> Result<(ParsedFrame<'_>, usize)> {
    let n = frame_len(buf)?;
    let whole = take("ksock frame", buf, 0, n)?;
    let ksock = KsockMsgHdr::read(whole)?;
    if ksock.ksh_type.get() == ksock_msg_type::NOOP {
        return Ok((ParsedFrame { ksock, lnet: None, payload: &[] }, n));
    }
    let hdr =
        LnetHdrNid4::read(take("lnet_hdr_nid4", whole, KsockMsgHdr::SIZE, LnetHdrNid4::SIZE)?)?;
    let body = hdr.body()?;
    let payload = whole.get(LNET_HDRS_LEN..).unwrap_or_default();
    Ok((ParsedFrame { ksock, lnet: Some((hdr, body)), payload }, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::PtlrpcBodyV3;
    use crate::msg::{self, MsgHdr};
    use crate::opcode::Opcode;

    #[test]
    fn ptlrpc_frame_round_trip() {
        let c: Nid = "192.168.1.20@tcp".parse().unwrap();
        let s: Nid = "192.168.1.10@tcp".parse().unwrap();
        let body = PtlrpcBodyV3::request(Opcode::ObdPing).to_vec();
        let m = msg::to_vec(MsgHdr::default(), &[&body]).unwrap();
        let f = Frame::ptlrpc_put(s, c, crate::portal::MGS_REQUEST, 0x1000, 0, m.clone()).unwrap();
        let mut bytes = f.to_vec();
        bytes.extend_from_slice(&Frame::noop(0, 1).to_vec());
        let (p, n) = parse_frame(&bytes).unwrap();
        assert_eq!(n, 24 + 72 + m.len());
        assert_eq!(p.payload, &m[..]);
        assert_eq!(p.ptlrpc().unwrap().unwrap().body().unwrap().opc(), Opcode::ObdPing);
        let (noop, k) = parse_frame(&bytes[n..]).unwrap();
        assert_eq!(k, 24);
        assert!(noop.lnet.is_none());
        assert!(parse_frame(&bytes[..n - 1]).is_err());
    }
}

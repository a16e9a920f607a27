//! Building ptlrpc messages by format: set the fields you have by their `RMF_` id, and the
//! builder lays out every buffer of the format in order, filling the rest the way
//! `req_capsule` does (fixed-size fields zeroed at their size, variable fields empty), then
//! checks each buffer against its field's rules.
//!
//! ```
//! use proto::build::MsgBuilder;
//! use proto::opcode::Opcode;
//! use proto::fid::LuFid;
//! use proto::mdt::MdtBody;
//!
//! let body = MdtBody { mbo_fid1: LuFid::ROOT, ..Default::default() };
//! let msg = MsgBuilder::request(Opcode::MdsGetattr)?
//!     .wire("MDT_BODY", &body)?
//!     .build()?;
//! let m = proto::msg::LustreMsg::decode(&msg)?;
//! assert_eq!(m.bufcount(), 3); // body, MDT_BODY, CAPA1
//! # Ok::<(), proto::WireError>(())
//! ```

use crate::body::{PtlrpcBodyV3, msg_kind};
use crate::error::{Result, WireError};
use crate::msg::{self, MsgHdr, msghdr};
use crate::opcode::Opcode;
use crate::rmf::{self, Fmt, Side};
use crate::wire::Wire;

/// A message under construction for one side of a format.
#[derive(Debug, Clone)]
pub struct MsgBuilder {
    fmt: &'static Fmt,
    side: Side,
    body: PtlrpcBodyV3,
    bufs: Vec<Option<Vec<u8>>>,
    hdr: MsgHdr,
    count: Option<usize>,
    shrunk: Vec<usize>,
}

impl MsgBuilder {
    /// A request of `opc` laid out by the format a server applies to it.
    pub fn request(opc: Opcode) -> Result<MsgBuilder> {
        let fmt = rmf::request_format(opc).ok_or(WireError::BadValue {
            what: "opcode without a format",
            got: opc.raw().into(),
        })?;
        Ok(Self::request_fmt(fmt, opc))
    }

    /// A request of `opc` laid out by `fmt` (for REINT and intent refinements).
    #[must_use]
    pub fn request_fmt(fmt: &'static Fmt, opc: Opcode) -> MsgBuilder {
        MsgBuilder {
            fmt,
            side: Side::Request,
            body: PtlrpcBodyV3::request(opc),
            bufs: vec![None; fmt.len(Side::Request)],
            // Requests other than connects carry AT support (and the 1.8 compat bit).
            hdr: MsgHdr {
                flags: msghdr::AT_SUPPORT | msghdr::CKSUM_INCOMPAT18,
                ..MsgHdr::default()
            },
            count: None,
            shrunk: Vec::new(),
        }
    }

    /// The reply to a request with body `req`, laid out by `fmt`.
    #[must_use]
    pub fn reply(fmt: &'static Fmt, req: &PtlrpcBodyV3) -> MsgBuilder {
        MsgBuilder {
            fmt,
            side: Side::Reply,
            body: PtlrpcBodyV3::reply_to(req),
            bufs: vec![None; fmt.len(Side::Reply)],
            hdr: MsgHdr::default(),
            count: None,
            shrunk: Vec::new(),
        }
    }

    /// An error reply (`PTL_RPC_MSG_ERR`, body only) to `req` with `status` (a negative errno).
    pub fn error_reply(req: &PtlrpcBodyV3, status: i32) -> Result<Vec<u8>> {
        let mut b = PtlrpcBodyV3::reply_to(req);
        b.pb_type = msg_kind::ERR.into();
        b.pb_status = status.into();
        msg::to_vec(MsgHdr::default(), &[b.as_bytes_ref()])
    }

    /// The format.
    #[must_use]
    pub fn format(&self) -> &'static Fmt {
        self.fmt
    }

    /// The ptlrpc body, to set handle, xid-related fields, status, flags.
    pub fn body_mut(&mut self) -> &mut PtlrpcBodyV3 {
        &mut self.body
    }

    /// The message header fields (`lm_flags`, `lm_repsize`).
    pub fn hdr_mut(&mut self) -> &mut MsgHdr {
        &mut self.hdr
    }

    /// Sets field `id` to `bytes`.
    pub fn set(mut self, id: &str, bytes: impl Into<Vec<u8>>) -> Result<MsgBuilder> {
        let i = self.fmt.index_of(self.side, id).ok_or(WireError::Inconsistent {
            what: "msg builder",
            detail: "field not in this format",
        })?;
        if i == 0 {
            return Err(WireError::Inconsistent {
                what: "msg builder",
                detail: "set the body through body_mut",
            });
        }
        if let Some(slot) = self.bufs.get_mut(i) {
            *slot = Some(bytes.into());
        }
        Ok(self)
    }

    /// Sets field `id` to `bytes` shorter than the field's fixed size, as a server does when it
    /// shrinks a reply buffer to what it holds (`req_capsule_shrink`): an empty MDT_MD when
    /// there is no layout, say. The receiver reads such a field with the size the body names.
    pub fn set_sized(mut self, id: &str, bytes: impl Into<Vec<u8>>) -> Result<MsgBuilder> {
        self = self.set(id, bytes)?;
        if let Some(i) = self.fmt.index_of(self.side, id) {
            self.shrunk.push(i);
        }
        Ok(self)
    }

    /// Sets field `id` to a wire structure.
    pub fn wire<T: Wire>(self, id: &str, v: &T) -> Result<MsgBuilder> {
        self.set(id, v.as_bytes_ref().to_vec())
    }

    /// Sends only the first `n` buffers (as an older peer would).
    #[must_use]
    pub fn count(mut self, n: usize) -> MsgBuilder {
        self.count = Some(n);
        self
    }

    /// Lays out and checks the message.
    pub fn build(&self) -> Result<Vec<u8>> {
        let n = self.count.unwrap_or(self.bufs.len()).min(self.bufs.len()).max(1);
        let mut owned: Vec<Vec<u8>> = Vec::with_capacity(n);
        owned.push(self.body.as_bytes_ref().to_vec());
        for (i, (f, b)) in
            self.fmt.fields(self.side).zip(&self.bufs).enumerate().skip(1).take(n - 1)
        {
            let v = match b {
                Some(v) => v.clone(),
                None if f.flags & rmf::F_STRUCT_ARRAY != 0 => Vec::new(),
                None => vec![0u8; f.size.unwrap_or(0)],
            };
            if !self.shrunk.contains(&i) {
                f.check(&v)?;
            }
            owned.push(v);
        }
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        msg::to_vec(self.hdr, &refs)
    }
}

/// `as_bytes` under a name that does not clash with zerocopy's trait in callers' scope.
trait AsBytesRef {
    fn as_bytes_ref(&self) -> &[u8];
}

impl<T: Wire> AsBytesRef for T {
    fn as_bytes_ref(&self) -> &[u8] {
        zerocopy::IntoBytes::as_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::LustreMsg;

    #[test]
    fn connect_layout() {
        let m = MsgBuilder::request(Opcode::MdsConnect)
            .unwrap()
            .set("TGTUUID", b"lustre-MDT0000_UUID".as_slice())
            .unwrap()
            .build();
        // TGTUUID is 39 bytes minimum: a short name must be padded by the caller.
        assert!(m.is_err());
        let mut t = [0u8; 39];
        t[..19].copy_from_slice(b"lustre-MDT0000_UUID");
        let m = MsgBuilder::request(Opcode::MdsConnect)
            .unwrap()
            .set("TGTUUID", t.to_vec())
            .unwrap()
            .build()
            .unwrap();
        let d = LustreMsg::decode(&m).unwrap();
        let lens: Vec<usize> = (0..d.bufcount()).map(|i| d.buflen(i).unwrap()).collect();
        assert_eq!(lens, [184, 39, 39, 8, 192, 0]);
        assert!(MsgBuilder::request(Opcode::MdsConnect).unwrap().set("NOPE", vec![]).is_err());
    }

    #[test]
    fn error_reply_is_body_only() {
        let req = PtlrpcBodyV3::request(Opcode::MdsGetattr);
        let m = MsgBuilder::error_reply(&req, -107).unwrap();
        let d = LustreMsg::decode(&m).unwrap();
        assert_eq!(d.bufcount(), 1);
        let b = d.body().unwrap();
        assert_eq!(b.pb_type.get(), msg_kind::ERR);
        assert_eq!(b.pb_status.get(), -107);
    }
}

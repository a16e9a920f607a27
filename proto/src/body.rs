//! `struct ptlrpc_body_v3`: buffer 0 of every ptlrpc message.

use crate::error::{Result, WireError};
use crate::fid::LustreHandle;
use crate::opcode::Opcode;
use crate::wire::{I32, U16, U32, U64, Wire};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Low 16 bits of `pb_version`.
pub const PTLRPC_MSG_VERSION: u32 = 3;
/// Mask of the service part of `pb_version`.
pub const LUSTRE_VERSION_MASK: u32 = 0xffff_0000;

/// `pb_type` values.
pub mod msg_kind {
    /// A request.
    pub const REQUEST: u32 = 4711;
    /// An error reply packed before the handler ran (body only).
    pub const ERR: u32 = 4712;
    /// A reply.
    pub const REPLY: u32 = 4713;
}

/// `pb_flags` (`MSG_*`).
pub mod msg_flags {
    /// Sent before, no reply seen.
    pub const RESENT: u32 = 0x2;
    /// Replayed during recovery.
    pub const REPLAY: u32 = 0x4;
    /// Request replay finished, locks next.
    pub const REQ_REPLAY_DONE: u32 = 0x40;
    /// Lock replay finished.
    pub const LOCK_REPLAY_DONE: u32 = 0x80;
    /// `LUSTRE_IMP_FULL`, which 2.15 clients OR into MDS_GET_ROOT requests.
    pub const IMP_FULL_QUIRK: u32 = 0x9;
}

/// `pb_op_flags` on connects (`MSG_CONNECT_*`).
pub mod msg_connect {
    /// Target is recovering.
    pub const RECOVERING: u32 = 0x1;
    /// The target already had this client.
    pub const RECONNECT: u32 = 0x2;
    /// The target keeps uncommitted requests for replay.
    pub const REPLAYABLE: u32 = 0x4;
    /// Refused since 2.6.
    pub const LIBCLIENT: u32 = 0x10;
    /// First connection attempt.
    pub const INITIAL: u32 = 0x20;
    /// Next lustre_msg version.
    pub const NEXT_VER: u32 = 0x80;
    /// The client sends transnos on replay.
    pub const TRANSNO: u32 = 0x100;
}

/// `struct ptlrpc_body_v3` (184 B). Field names are those of 2.15; 2.17 renamed
/// `pb_padding1` to `pb_projid` and split `pb_padding64_2` into `pb_uid`/`pb_gid`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct PtlrpcBodyV3 {
    /// Export cookie (requests), new export cookie (connect replies).
    pub pb_handle: LustreHandle,
    /// `msg_kind`.
    pub pb_type: U32,
    /// `svc << 16 | 3`.
    pub pb_version: U32,
    /// The opcode.
    pub pb_opc: U32,
    /// 0, a negative errno, or a positive LDLM code.
    pub pb_status: I32,
    /// Highest xid for which the client has a reply.
    pub pb_last_xid: U64,
    /// Multiple-modify-RPC slot tag.
    pub pb_tag: U16,
    /// Padding.
    pub pb_padding0: U16,
    /// Padding in 2.15 (project id in 2.17).
    pub pb_padding1: U32,
    /// Highest transno known committed.
    pub pb_last_committed: U64,
    /// This request's transno.
    pub pb_transno: U64,
    /// `msg_flags`.
    pub pb_flags: U32,
    /// `msg_connect` on connects.
    pub pb_op_flags: U32,
    /// The client's connection generation.
    pub pb_conn_cnt: U32,
    /// Request: client timeout (s); reply: service estimate.
    pub pb_timeout: U32,
    /// Time the service spent (s).
    pub pb_service_time: U32,
    /// Lock LRU limit (LRU resize).
    pub pb_limit: U32,
    /// Server lock volume (LRU resize).
    pub pb_slv: U64,
    /// Versions for version-based recovery.
    pub pb_pre_versions: [U64; 4],
    /// Reply/bulk match bits when negotiated.
    pub pb_mbits: U64,
    /// Padding.
    pub pb_padding64_0: U64,
    /// Padding.
    pub pb_padding64_1: U64,
    /// Padding in 2.15 (uid and gid in 2.17).
    pub pb_padding64_2: U64,
    /// Job identifier for job stats, NUL-padded.
    pub pb_jobid: [u8; 32],
}

/// `struct ptlrpc_body_v2`: the first 152 bytes of v3, still accepted.
pub const PTLRPC_BODY_V2_SIZE: usize = 152;

impl Wire for PtlrpcBodyV3 {
    const NAME: &'static str = "ptlrpc_body";
    fn check(&self) -> Result<()> {
        match self.pb_type.get() {
            msg_kind::REQUEST | msg_kind::ERR | msg_kind::REPLY => {}
            t => return Err(WireError::BadValue { what: "ptlrpc_body pb_type", got: t.into() }),
        }
        if self.pb_version.get() & !LUSTRE_VERSION_MASK != PTLRPC_MSG_VERSION {
            return Err(WireError::BadVersion {
                what: "ptlrpc_body pb_version",
                got: self.pb_version.get(),
            });
        }
        Ok(())
    }
}

impl PtlrpcBodyV3 {
    /// Decodes a v3 body, or a v2 body (152 B) widened with zeros.
    pub fn decode_any(buf: &[u8]) -> Result<PtlrpcBodyV3> {
        if buf.len() >= Self::SIZE {
            return Self::read(buf);
        }
        if buf.len() < PTLRPC_BODY_V2_SIZE {
            return Err(WireError::Truncated {
                what: Self::NAME,
                need: PTLRPC_BODY_V2_SIZE,
                have: buf.len(),
            });
        }
        let mut b = <Self as zerocopy::FromZeros>::new_zeroed();
        if let Some(dst) = b.as_mut_bytes().get_mut(..buf.len()) {
            dst.copy_from_slice(buf);
        }
        b.check()?;
        Ok(b)
    }

    /// A request body for `opc`.
    #[must_use]
    pub fn request(opc: Opcode) -> PtlrpcBodyV3 {
        let mut b = <Self as zerocopy::FromZeros>::new_zeroed();
        b.pb_type = msg_kind::REQUEST.into();
        b.pb_version = opc.svc().map_or(PTLRPC_MSG_VERSION, |s| s.pb_version()).into();
        b.pb_opc = opc.raw().into();
        b
    }

    /// The reply body for a request body: same opcode, version and handle.
    #[must_use]
    pub fn reply_to(req: &PtlrpcBodyV3) -> PtlrpcBodyV3 {
        let mut b = <Self as zerocopy::FromZeros>::new_zeroed();
        b.pb_type = msg_kind::REPLY.into();
        b.pb_version = req.pb_version;
        b.pb_opc = req.pb_opc;
        b.pb_handle = req.pb_handle;
        b.pb_conn_cnt = req.pb_conn_cnt;
        b
    }

    /// The opcode.
    #[must_use]
    pub fn opc(&self) -> Opcode {
        Opcode::from(self.pb_opc.get())
    }

    /// The job id as text.
    #[must_use]
    pub fn jobid(&self) -> &[u8] {
        crate::wire::cstr_bytes(&self.pb_jobid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_offsets() {
        let mut b = PtlrpcBodyV3::request(Opcode::MdsConnect);
        b.pb_handle = LustreHandle::new(0x1122_3344_5566_7788);
        b.pb_status = (-107).into();
        b.pb_mbits = 0xaabb.into();
        b.pb_jobid[0] = b'j';
        let v = b.to_vec();
        assert_eq!(v.len(), 184);
        assert_eq!(&v[0..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&v[8..12], &4711u32.to_le_bytes());
        assert_eq!(&v[12..16], &0x10003u32.to_le_bytes());
        assert_eq!(&v[16..20], &38u32.to_le_bytes());
        assert_eq!(&v[20..24], &(-107i32).to_le_bytes());
        assert_eq!(&v[120..128], &0xaabbu64.to_le_bytes());
        assert_eq!(v[152], b'j');
        assert_eq!(PtlrpcBodyV3::decode_any(&v[..152]).unwrap().pb_opc.get(), 38);
        assert!(PtlrpcBodyV3::decode_any(&v[..151]).is_err());
    }
}

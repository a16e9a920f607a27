//! LDLM wire structures: resource and lock descriptors, policies, enqueue request and reply,
//! intents, LVBs, and the mode/type/flag constants.

use crate::error::{Result, WireError};
use crate::fid::{LdlmResId, LustreHandle};
use crate::wire::{U32, U64, Wire, decode_array, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Lock modes (`enum ldlm_mode`).
pub mod mode {
    /// Exclusive.
    pub const EX: u32 = 1;
    /// Protected write.
    pub const PW: u32 = 2;
    /// Protected read.
    pub const PR: u32 = 4;
    /// Concurrent write.
    pub const CW: u32 = 8;
    /// Concurrent read.
    pub const CR: u32 = 16;
    /// Null.
    pub const NL: u32 = 32;
    /// Group lock.
    pub const GROUP: u32 = 64;
    /// Commit-on-sharing.
    pub const COS: u32 = 128;
    /// Transaction lock (newer than 2.15).
    pub const TXN: u32 = 256;
    /// Every valid mode bit.
    pub const ALL: u32 = EX | PW | PR | CW | CR | NL | GROUP | COS | TXN;
}

/// Lock types (`enum ldlm_type`).
pub mod lock_type {
    /// Plain (MGS config locks).
    pub const PLAIN: u32 = 10;
    /// Byte-range extent (OST objects).
    pub const EXTENT: u32 = 11;
    /// POSIX/BSD file locks.
    pub const FLOCK: u32 = 12;
    /// Inode bits (MDT objects).
    pub const IBITS: u32 = 13;
}

/// Wire lock flags (the low 32 bits of `LDLM_FL_*`).
pub mod flags {
    #![allow(missing_docs)]
    pub const LOCK_CHANGED: u32 = 0x1;
    pub const BLOCK_GRANTED: u32 = 0x2;
    pub const BLOCK_CONV: u32 = 0x4;
    pub const BLOCK_WAIT: u32 = 0x8;
    pub const SPECULATIVE: u32 = 0x10;
    pub const AST_SENT: u32 = 0x20;
    pub const REPLAY: u32 = 0x100;
    pub const INTENT_ONLY: u32 = 0x200;
    pub const HAS_INTENT: u32 = 0x1000;
    pub const FLOCK_DEADLOCK: u32 = 0x8000;
    pub const DISCARD_DATA: u32 = 0x1_0000;
    pub const NO_TIMEOUT: u32 = 0x2_0000;
    pub const BLOCK_NOWAIT: u32 = 0x4_0000;
    pub const TEST_LOCK: u32 = 0x8_0000;
    pub const MATCH_LOCK: u32 = 0x10_0000;
    pub const CANCEL_ON_BLOCK: u32 = 0x80_0000;
    pub const COS_INCOMPAT: u32 = 0x100_0000;
    pub const CONVERTING: u32 = 0x200_0000;
    pub const LOCKAHEAD_OLD_RESERVED: u32 = 0x1000_0000;
    pub const NO_EXPANSION: u32 = 0x2000_0000;
    pub const DENY_ON_CONTENTION: u32 = 0x4000_0000;
    pub const AST_DISCARD_DATA: u32 = 0x8000_0000;
    /// The flags that may travel on the wire in either direction.
    pub const BLOCKED_MASK: u32 = BLOCK_GRANTED | BLOCK_CONV | BLOCK_WAIT;
}

/// Inode bits (`MDS_INODELOCK_*`).
pub mod ibits {
    /// Name lookup.
    pub const LOOKUP: u64 = 0x1;
    /// Size, links, timestamps.
    pub const UPDATE: u64 = 0x2;
    /// Open files.
    pub const OPEN: u64 = 0x4;
    /// Layout.
    pub const LAYOUT: u64 = 0x8;
    /// Permissions.
    pub const PERM: u64 = 0x10;
    /// Non-permission xattrs.
    pub const XATTR: u64 = 0x20;
    /// Data on MDT.
    pub const DOM: u64 = 0x40;
    /// All of them.
    pub const FULL: u64 = 0x7f;
}

/// Intent opcodes (`IT_*`).
pub mod it {
    #![allow(missing_docs)]
    pub const OPEN: u64 = 0x1;
    pub const CREAT: u64 = 0x2;
    pub const READDIR: u64 = 0x4;
    pub const GETATTR: u64 = 0x8;
    pub const LOOKUP: u64 = 0x10;
    pub const GETXATTR: u64 = 0x80;
    pub const LAYOUT: u64 = 0x400;
    pub const QUOTA_DQACQ: u64 = 0x800;
    pub const QUOTA_CONN: u64 = 0x1000;
    pub const GLIMPSE: u64 = 0x4000;
    pub const BRW: u64 = 0x8000;
}

/// Intent dispositions, returned in `lock_policy_res1` (`DISP_*`).
pub mod disp {
    #![allow(missing_docs)]
    pub const IT_EXECD: u64 = 0x1;
    pub const LOOKUP_EXECD: u64 = 0x2;
    pub const LOOKUP_NEG: u64 = 0x4;
    pub const LOOKUP_POS: u64 = 0x8;
    pub const OPEN_CREATE: u64 = 0x10;
    pub const OPEN_OPEN: u64 = 0x20;
    pub const ENQ_COMPLETE: u64 = 0x40_0000;
    pub const ENQ_OPEN_REF: u64 = 0x80_0000;
    pub const ENQ_CREATE_REF: u64 = 0x100_0000;
    pub const OPEN_LOCK: u64 = 0x200_0000;
    pub const OPEN_LEASE: u64 = 0x400_0000;
    pub const OPEN_STRIPE: u64 = 0x800_0000;
    pub const OPEN_DENY: u64 = 0x1000_0000;
}

/// Positive LDLM status codes in `pb_status` (`ELDLM_*`).
pub mod status {
    /// The reply's lock differs from the request's.
    pub const LOCK_CHANGED: i32 = 300;
    /// No lock was granted (the intent ran).
    pub const LOCK_ABORTED: i32 = 301;
    /// The lock was replaced.
    pub const LOCK_REPLACED: i32 = 302;
    /// No lock data.
    pub const NO_LOCK_DATA: i32 = 303;
    /// Would block.
    pub const LOCK_WOULDBLOCK: i32 = 304;
    /// The namespace exists.
    pub const NAMESPACE_EXISTS: i32 = 400;
    /// Bad namespace.
    pub const BAD_NAMESPACE: i32 = 401;
}

/// Whether two lock modes can be held at once on one resource (`lck_compat_array`).
#[must_use]
pub const fn modes_compatible(a: u32, b: u32) -> bool {
    const EX_C: u32 = mode::NL;
    const PW_C: u32 = EX_C | mode::CR;
    const PR_C: u32 = PW_C | mode::PR;
    const CW_C: u32 = PW_C | mode::CW;
    const CR_C: u32 = CW_C | mode::PR | mode::PW;
    const NL_C: u32 = CR_C | mode::EX | mode::GROUP;
    let compat = match a {
        mode::EX => EX_C,
        mode::PW => PW_C,
        mode::PR => PR_C,
        mode::CW => CW_C,
        mode::CR => CR_C,
        mode::NL => NL_C,
        mode::GROUP => mode::GROUP | mode::NL,
        mode::COS => mode::COS,
        _ => 0,
    };
    compat & b != 0
}

/// `struct ldlm_extent` (24 B).
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
pub struct LdlmExtent {
    /// First byte.
    pub start: U64,
    /// Last byte (inclusive); `u64::MAX` = EOF.
    pub end: U64,
    /// Group id for group locks.
    pub gid: U64,
}

/// `struct ldlm_inodebits` (24 B as 2.15 sends it; the policy union is 32 B).
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
pub struct LdlmInodebits {
    /// Bits wanted or held.
    pub bits: U64,
    /// Bits to try for (on enqueue) / to cancel (`cancel_bits`, on blocking ASTs).
    pub try_bits: U64,
    /// Group id.
    pub li_gid: U64,
}

/// `struct ldlm_flock_wire` (32 B).
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
pub struct LdlmFlockWire {
    /// First byte.
    pub lfw_start: U64,
    /// Last byte (inclusive).
    pub lfw_end: U64,
    /// Lock owner.
    pub lfw_owner: U64,
    /// Padding.
    pub lfw_padding: U32,
    /// Owner's pid.
    pub lfw_pid: U32,
}

wire_plain!(LdlmExtent => "ldlm_extent", LdlmInodebits => "ldlm_inodebits", LdlmFlockWire => "ldlm_flock_wire");

/// A lock policy, decoded according to the resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// PLAIN: no policy data.
    Plain,
    /// EXTENT.
    Extent(LdlmExtent),
    /// IBITS.
    Ibits(LdlmInodebits),
    /// FLOCK.
    Flock(LdlmFlockWire),
}

/// `union ldlm_wire_policy_data` (32 B).
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
pub struct LdlmWirePolicyData {
    /// The union's bytes; decode with [`LdlmWirePolicyData::decode`].
    pub raw: [u8; 32],
}
wire_plain!(LdlmWirePolicyData => "ldlm_wire_policy_data");

impl LdlmWirePolicyData {
    /// Wraps a policy.
    #[must_use]
    pub fn new(p: &Policy) -> LdlmWirePolicyData {
        let mut raw = [0u8; 32];
        let b: &[u8] = match p {
            Policy::Plain => &[],
            Policy::Extent(e) => e.as_bytes(),
            Policy::Ibits(i) => i.as_bytes(),
            Policy::Flock(f) => f.as_bytes(),
        };
        if let Some(dst) = raw.get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
        LdlmWirePolicyData { raw }
    }
    /// The policy for a resource of `lr_type`.
    pub fn decode(&self, lr_type: u32) -> Result<Policy> {
        Ok(match lr_type {
            lock_type::PLAIN => Policy::Plain,
            lock_type::EXTENT => {
                let e = LdlmExtent::read(&self.raw)?;
                if e.start.get() > e.end.get() {
                    return Err(WireError::Inconsistent {
                        what: "ldlm_extent",
                        detail: "start > end",
                    });
                }
                Policy::Extent(e)
            }
            lock_type::IBITS => Policy::Ibits(LdlmInodebits::read(&self.raw)?),
            lock_type::FLOCK => {
                let f = LdlmFlockWire::read(&self.raw)?;
                if f.lfw_start.get() > f.lfw_end.get() {
                    return Err(WireError::Inconsistent {
                        what: "ldlm_flock",
                        detail: "start > end",
                    });
                }
                Policy::Flock(f)
            }
            t => return Err(WireError::BadValue { what: "ldlm lr_type", got: t.into() }),
        })
    }
}

/// `struct ldlm_resource_desc` (40 B).
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
pub struct LdlmResourceDesc {
    /// `lock_type`.
    pub lr_type: U32,
    /// Padding.
    pub lr_pad: U32,
    /// Resource name.
    pub lr_name: LdlmResId,
}

impl Wire for LdlmResourceDesc {
    const NAME: &'static str = "ldlm_resource_desc";
    fn check(&self) -> Result<()> {
        match self.lr_type.get() {
            // 0: the zeroed descriptor of LDLM_CANCEL and of requests carrying early cancels;
            // an enqueue with it is refused by the server (-EFAULT), not by the decoder.
            0 | lock_type::PLAIN | lock_type::EXTENT | lock_type::FLOCK | lock_type::IBITS => {
                Ok(())
            }
            t => Err(WireError::BadValue { what: "ldlm_resource_desc lr_type", got: t.into() }),
        }
    }
}

/// `struct ldlm_lock_desc` (80 B).
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
pub struct LdlmLockDesc {
    /// The resource.
    pub l_resource: LdlmResourceDesc,
    /// Mode requested.
    pub l_req_mode: U32,
    /// Mode granted (0 until granted).
    pub l_granted_mode: U32,
    /// Policy data for the resource type.
    pub l_policy_data: LdlmWirePolicyData,
}

impl Wire for LdlmLockDesc {
    const NAME: &'static str = "ldlm_lock_desc";
    fn check(&self) -> Result<()> {
        self.l_resource.check()?;
        for m in [self.l_req_mode.get(), self.l_granted_mode.get()] {
            if m != 0 && (m & !mode::ALL != 0 || !m.is_power_of_two()) {
                return Err(WireError::BadValue { what: "ldlm_lock_desc mode", got: m.into() });
            }
        }
        Ok(())
    }
}

impl LdlmLockDesc {
    /// A descriptor for a lock of `req_mode` on `res` with `policy`.
    #[must_use]
    pub fn new(lr_type: u32, res: LdlmResId, req_mode: u32, policy: &Policy) -> LdlmLockDesc {
        LdlmLockDesc {
            l_resource: LdlmResourceDesc {
                lr_type: lr_type.into(),
                lr_pad: 0.into(),
                lr_name: res,
            },
            l_req_mode: req_mode.into(),
            l_granted_mode: 0.into(),
            l_policy_data: LdlmWirePolicyData::new(policy),
        }
    }
    /// The policy, decoded by the resource type.
    pub fn policy(&self) -> Result<Policy> {
        self.l_policy_data.decode(self.l_resource.lr_type.get())
    }
}

/// The fixed part of `struct ldlm_request` (88 B) without its handle array.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LdlmRequestHdr {
    /// `flags`.
    pub lock_flags: U32,
    /// Handles that follow (at least 1 on enqueue; cancels for ELC).
    pub lock_count: U32,
    /// The lock.
    pub lock_desc: LdlmLockDesc,
}
wire_plain!(LdlmRequestHdr => "ldlm_request");

/// Handles a `DLM_REQ` buffer has room for at its minimum size (104 B).
pub const LDLM_LOCKREQ_HANDLES: usize = 2;
/// Minimum `DLM_REQ` buffer: header plus two handles.
pub const LDLM_REQUEST_MIN: usize = 88 + 8 * LDLM_LOCKREQ_HANDLES;
/// Most handles we accept in one request (an ELC-laden request stays under a page).
pub const LDLM_MAX_HANDLES: usize = 512;

/// An `ldlm_request`, decoded: the header and its handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdlmRequest {
    /// `flags` bits.
    pub lock_flags: u32,
    /// The lock.
    pub lock_desc: LdlmLockDesc,
    /// `lock_count` handles: the client's cookie first on enqueue, server cookies on cancel.
    pub handles: Vec<LustreHandle>,
}

impl LdlmRequest {
    /// Decodes a DLM_REQ buffer: at least 104 bytes, `lock_count` handles that fit.
    pub fn decode(buf: &[u8]) -> Result<LdlmRequest> {
        if buf.len() < LDLM_REQUEST_MIN {
            return Err(WireError::Truncated {
                what: "ldlm_request",
                need: LDLM_REQUEST_MIN,
                have: buf.len(),
            });
        }
        let (h, rest) = LdlmRequestHdr::decode_prefix(buf)?;
        h.lock_desc.check()?;
        let n = h.lock_count.get() as usize;
        if n > LDLM_MAX_HANDLES {
            return Err(WireError::Oversize {
                what: "ldlm_request lock_count",
                len: n,
                max: LDLM_MAX_HANDLES,
            });
        }
        let handles = decode_array::<LustreHandle>(rest, n)?.to_vec();
        Ok(LdlmRequest { lock_flags: h.lock_flags.get(), lock_desc: h.lock_desc, handles })
    }

    /// Encoded length (never under the 104-byte minimum).
    #[must_use]
    pub fn wire_len(&self) -> usize {
        (88 + 8 * self.handles.len()).max(LDLM_REQUEST_MIN)
    }

    /// Appends the wire form, padding the handle array to the minimum size.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        LdlmRequestHdr {
            lock_flags: self.lock_flags.into(),
            lock_count: u32::try_from(self.handles.len()).unwrap_or(u32::MAX).into(),
            lock_desc: self.lock_desc,
        }
        .encode_into(out);
        for h in &self.handles {
            h.encode_into(out);
        }
        out.resize(start + self.wire_len(), 0);
    }

    /// The wire bytes.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.wire_len());
        self.encode(&mut v);
        v
    }
}

/// `struct ldlm_reply` (112 B).
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
pub struct LdlmReply {
    /// `flags` bits.
    pub lock_flags: U32,
    /// Padding.
    pub lock_padding: U32,
    /// The lock as granted (resource/mode/policy may differ with LOCK_CHANGED).
    pub lock_desc: LdlmLockDesc,
    /// The server's lock cookie.
    pub lock_handle: LustreHandle,
    /// Intent disposition (`disp`).
    pub lock_policy_res1: U64,
    /// Intent status (a negative errno).
    pub lock_policy_res2: U64,
}

impl Wire for LdlmReply {
    const NAME: &'static str = "ldlm_reply";
    fn check(&self) -> Result<()> {
        self.lock_desc.check()
    }
}

/// `struct ldlm_intent` (8 B).
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
pub struct LdlmIntent {
    /// `it` bits.
    pub opc: U64,
}
wire_plain!(LdlmIntent => "ldlm_intent");

/// `struct layout_intent` (24 B).
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
pub struct LayoutIntent {
    /// `LAYOUT_INTENT_*` operation.
    pub li_opc: U32,
    /// Flags.
    pub li_flags: U32,
    /// The extent the I/O needs instantiated.
    pub li_extent: [U64; 2],
}
wire_plain!(LayoutIntent => "layout_intent");

/// `struct ost_lvb` (56 B): the value block of an OST extent lock (object size and times).
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
pub struct OstLvb {
    /// Object size.
    pub lvb_size: U64,
    /// Modification time (s).
    pub lvb_mtime: U64,
    /// Access time (s).
    pub lvb_atime: U64,
    /// Change time (s).
    pub lvb_ctime: U64,
    /// 512-byte blocks.
    pub lvb_blocks: U64,
    /// Nanoseconds of mtime.
    pub lvb_mtime_ns: U32,
    /// Nanoseconds of atime.
    pub lvb_atime_ns: U32,
    /// Nanoseconds of ctime.
    pub lvb_ctime_ns: U32,
    /// Padding.
    pub lvb_padding: U32,
}

/// `struct ost_lvb_v1` (40 B), the LVB of clients without LVB_TYPE.
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
pub struct OstLvbV1 {
    /// Object size.
    pub lvb_size: U64,
    /// Modification time.
    pub lvb_mtime: U64,
    /// Access time.
    pub lvb_atime: U64,
    /// Change time.
    pub lvb_ctime: U64,
    /// Blocks.
    pub lvb_blocks: U64,
}

wire_plain!(OstLvb => "ost_lvb", OstLvbV1 => "ost_lvb_v1");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fid::LuFid;

    #[test]
    fn request_round_trip_and_minimum() {
        let r = LdlmRequest {
            lock_flags: flags::HAS_INTENT,
            lock_desc: LdlmLockDesc::new(
                lock_type::IBITS,
                LuFid::ROOT.res_id(),
                mode::CR,
                &Policy::Ibits(LdlmInodebits { bits: ibits::LOOKUP.into(), ..Default::default() }),
            ),
            handles: vec![LustreHandle::new(0xabc)],
        };
        let b = r.to_vec();
        assert_eq!(b.len(), 104);
        assert_eq!(&b[0..4], &0x1000u32.to_le_bytes());
        assert_eq!(&b[4..8], &1u32.to_le_bytes());
        assert_eq!(&b[8..12], &13u32.to_le_bytes());
        assert_eq!(&b[48..52], &16u32.to_le_bytes());
        assert_eq!(&b[56..64], &1u64.to_le_bytes());
        assert_eq!(&b[88..96], &0xabcu64.to_le_bytes());
        assert_eq!(LdlmRequest::decode(&b).unwrap(), r);
        assert!(LdlmRequest::decode(&b[..100]).is_err());
        let mut lying = b.clone();
        lying[4] = 9; // nine handles claimed, room for two
        assert!(LdlmRequest::decode(&lying).is_err());
    }

    #[test]
    fn compat_matrix() {
        use mode::*;
        assert!(modes_compatible(PR, PR));
        assert!(!modes_compatible(PR, PW));
        assert!(!modes_compatible(PW, PW));
        assert!(modes_compatible(CR, PW));
        assert!(modes_compatible(CW, CW));
        assert!(!modes_compatible(EX, CR));
        assert!(modes_compatible(NL, EX));
        for a in [EX, PW, PR, CW, CR, NL, GROUP] {
            for b in [EX, PW, PR, CW, CR, NL, GROUP] {
                assert_eq!(modes_compatible(a, b), modes_compatible(b, a), "{a} {b}");
            }
        }
    }
}

//! LNet and socklnd wire formats: the acceptor request, the socklnd hello (V1-V4), the ksock
//! message header, the LNet message header (nid4 and nid16 forms) and the ping payload.
//!
//! Sources of truth: `lnet-idl.h`, `socklnd.h` and `socklnd_proto.c` in lustre-release.

use crate::error::{Result, WireError};
use crate::nid::{LnetNid, Nid};
use crate::wire::{U16, U32, U64, Wire, decode_array, take, u16_at, u32_at, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `LNET_PROTO_ACCEPTOR_MAGIC`: first word of every actively opened LNet TCP connection.
pub const ACCEPTOR_MAGIC: u32 = 0xacce_7100;
/// `LNET_PROTO_ACCEPTOR_VERSION`: connection request carrying a nid4.
pub const ACCEPTOR_VERSION: u32 = 1;
/// `LNET_PROTO_ACCEPTOR_VERSION_16`: connection request carrying a 20-byte `lnet_nid`.
pub const ACCEPTOR_VERSION_16: u32 = 2;
/// `LNET_PROTO_MAGIC`: first word of a socklnd V2+ hello.
pub const PROTO_MAGIC: u32 = 0x4572_6963;
/// `LNET_PROTO_TCP_MAGIC`: first word of a socklnd V1 hello (inside an LNet header).
pub const PROTO_TCP_MAGIC: u32 = 0xeebc_0ded;
/// `LNET_PROTO_PING_MAGIC` ("ping").
pub const PROTO_PING_MAGIC: u32 = 0x7069_6e67;
/// The default acceptor port.
pub const ACCEPTOR_PORT: u16 = 988;
/// `LNET_PID_LUSTRE`: the PID of every kernel LNet node.
pub const PID_LUSTRE: u32 = 12345;
/// `LNET_PID_USERFLAG`: set in the PID of a peer that connected from an unprivileged port.
pub const PID_USERFLAG: u32 = 0x8000_0000;
/// `LNET_RESERVED_PORTAL`: portal 0, used by LNet itself (ping, discovery).
pub const RESERVED_PORTAL: u32 = 0;
/// `LNET_PROTO_PING_MATCHBITS`: match bits of the discovery ping GET.
pub const PING_MATCHBITS: u64 = 0x8000_0000_0000_0000;
/// `LNET_MTU`: the largest LNet payload.
pub const LNET_MTU: usize = 1 << 20;
/// `LNET_INTERFACES_NUM`: most IP addresses a hello may list.
pub const INTERFACES_NUM: u32 = 16;
/// `LNET_INTERFACES_MAX_DEFAULT`: most NIs a ping reply may list.
pub const INTERFACES_MAX: u32 = 200;

/// socklnd protocol versions (`KSOCK_PROTO_V*`).
pub mod ksock_version {
    /// V1: the hello is an LNet header; messages carry no ksock header.
    pub const V1: u32 = 1;
    /// V2: ksock message header, ZC-ACK only in NOOPs.
    pub const V2: u32 = 2;
    /// V3: ZC-ACK cookies piggy-backed on LNET messages; what 2.15 speaks over IPv4.
    pub const V3: u32 = 3;
    /// V4: 16-byte NIDs (2.16+, IPv6).
    pub const V4: u32 = 4;
}

/// Connection types (`SOCKLND_CONN_*`).
pub mod conn_type {
    /// "Lost the race, try again" in a reply.
    pub const NONE: i32 = -1;
    /// Untyped: all traffic on one socket.
    pub const ANY: i32 = 0;
    /// Small messages.
    pub const CONTROL: i32 = 1;
    /// Large incoming messages (from the sender's view: ZC-ACKs go here).
    pub const BULK_IN: i32 = 2;
    /// Large outgoing messages.
    pub const BULK_OUT: i32 = 3;

    /// The type the passive side echoes for an active side's `t`.
    #[must_use]
    pub const fn invert(t: i32) -> i32 {
        match t {
            BULK_IN => BULK_OUT,
            BULK_OUT => BULK_IN,
            other => other,
        }
    }
}

/// ksock message types.
pub mod ksock_msg_type {
    /// An empty message (keepalive or ZC-ACK).
    pub const NOOP: u32 = 0xc0;
    /// An LNet message follows.
    pub const LNET: u32 = 0xc1;
}

/// LNet message types (`enum lnet_msg_type`).
pub mod msg_type {
    /// Acknowledgement of a PUT.
    pub const ACK: u32 = 0;
    /// Data pushed to a portal.
    pub const PUT: u32 = 1;
    /// Data requested from a portal.
    pub const GET: u32 = 2;
    /// The data answering a GET.
    pub const REPLY: u32 = 3;
    /// socklnd V1 hello.
    pub const HELLO: u32 = 4;
}

/// Ping feature bits (`LNET_PING_FEAT_*`).
pub mod ping_feat {
    /// Just a ping.
    pub const BASE: u32 = 1;
    /// NI status words are valid (required by every receiver).
    pub const NI_STATUS: u32 = 2;
    /// Routing disabled.
    pub const RTE_DISABLED: u32 = 4;
    /// Multi-Rail aware.
    pub const MULTI_RAIL: u32 = 8;
    /// Supports discovery.
    pub const DISCOVERY: u32 = 0x10;
    /// Large (16-byte) addresses listed.
    pub const LARGE_ADDR: u32 = 0x20;
}

/// NI status words in a ping reply.
pub mod ni_status {
    /// `LNET_NI_STATUS_UP`.
    pub const UP: u32 = 0x15aa_c0de;
    /// `LNET_NI_STATUS_DOWN`.
    pub const DOWN: u32 = 0xdead_face;
}

fn magic_check(what: &'static str, got: u32, want: u32) -> Result<()> {
    if got == want {
        Ok(())
    } else if got == want.swap_bytes() {
        Err(WireError::Swabbed { what })
    } else {
        Err(WireError::BadMagic { what, got: got.into() })
    }
}

/// `struct lnet_acceptor_connreq` (16 B): sent first on every active connection.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetAcceptorConnreq {
    /// [`ACCEPTOR_MAGIC`].
    pub acr_magic: U32,
    /// [`ACCEPTOR_VERSION`].
    pub acr_version: U32,
    /// The target's NID: must be one of the acceptor's own.
    pub acr_nid: U64,
}

impl Wire for LnetAcceptorConnreq {
    const NAME: &'static str = "lnet_acceptor_connreq";
    fn check(&self) -> Result<()> {
        magic_check(Self::NAME, self.acr_magic.get(), ACCEPTOR_MAGIC)?;
        if self.acr_version.get() != ACCEPTOR_VERSION {
            return Err(WireError::BadVersion { what: Self::NAME, got: self.acr_version.get() });
        }
        Ok(())
    }
}

impl LnetAcceptorConnreq {
    /// A request to connect to `target`.
    #[must_use]
    pub fn new(target: Nid) -> Self {
        Self {
            acr_magic: ACCEPTOR_MAGIC.into(),
            acr_version: ACCEPTOR_VERSION.into(),
            acr_nid: target.into(),
        }
    }
    /// The target NID.
    #[must_use]
    pub fn target(&self) -> Nid {
        Nid(self.acr_nid.get())
    }
}

/// `struct lnet_acceptor_connreq_v2` (28 B): the large-NID form.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetAcceptorConnreqV2 {
    /// [`ACCEPTOR_MAGIC`].
    pub acr_magic: U32,
    /// [`ACCEPTOR_VERSION_16`].
    pub acr_version: U32,
    /// The target's NID.
    pub acr_nid: LnetNid,
}

impl Wire for LnetAcceptorConnreqV2 {
    const NAME: &'static str = "lnet_acceptor_connreq_v2";
    fn check(&self) -> Result<()> {
        magic_check(Self::NAME, self.acr_magic.get(), ACCEPTOR_MAGIC)?;
        if self.acr_version.get() != ACCEPTOR_VERSION_16 {
            return Err(WireError::BadVersion { what: Self::NAME, got: self.acr_version.get() });
        }
        self.acr_nid.check()
    }
}

/// Either form of the acceptor request, decoded from the front of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptorRequest {
    /// 1 or 2.
    pub version: u32,
    /// The target NID (the large form converted; IPv6 targets are refused).
    pub target: Nid,
}

impl AcceptorRequest {
    /// Bytes needed to decode the request whose first 8 bytes are `head`.
    pub fn wire_len(head: &[u8]) -> Result<usize> {
        const WHAT: &str = "lnet_acceptor_connreq";
        magic_check(WHAT, u32_at(WHAT, head, 0)?, ACCEPTOR_MAGIC)?;
        match u32_at(WHAT, head, 4)? {
            ACCEPTOR_VERSION => Ok(LnetAcceptorConnreq::SIZE),
            ACCEPTOR_VERSION_16 => Ok(LnetAcceptorConnreqV2::SIZE),
            v => Err(WireError::BadVersion { what: "lnet_acceptor_connreq", got: v }),
        }
    }
    /// Decodes either version. Returns the request and the bytes it took.
    pub fn decode(buf: &[u8]) -> Result<(AcceptorRequest, usize)> {
        let n = Self::wire_len(buf)?;
        if n == LnetAcceptorConnreq::SIZE {
            let r = LnetAcceptorConnreq::decode(buf)?;
            Ok((AcceptorRequest { version: ACCEPTOR_VERSION, target: r.target() }, n))
        } else {
            let r = LnetAcceptorConnreqV2::decode(buf)?;
            Ok((AcceptorRequest { version: ACCEPTOR_VERSION_16, target: r.acr_nid.to_nid4()? }, n))
        }
    }
}

/// `struct lnet_handle_wire`: a memory descriptor handle as carried in LNet headers.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LnetHandleWire {
    /// Interface cookie (the sender's incarnation, in Lustre).
    pub wh_interface_cookie: U64,
    /// Object cookie (which MD).
    pub wh_object_cookie: U64,
}

impl LnetHandleWire {
    /// `LNET_WIRE_HANDLE_COOKIE_NONE` in both words: "no ACK wanted".
    pub const NONE: LnetHandleWire = LnetHandleWire {
        wh_interface_cookie: U64::new(u64::MAX),
        wh_object_cookie: U64::new(u64::MAX),
    };
    /// A handle from its two cookies.
    #[must_use]
    pub fn new(interface: u64, object: u64) -> Self {
        Self { wh_interface_cookie: interface.into(), wh_object_cookie: object.into() }
    }
    /// Whether this is the "none" handle.
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.wh_object_cookie.get() == u64::MAX
    }
}

/// `struct ksock_hello_msg_nid4` (56 B, socklnd V2 and V3), without the trailing IP list.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct KsockHelloMsgNid4 {
    /// [`PROTO_MAGIC`].
    pub kshm_magic: U32,
    /// 2 or 3.
    pub kshm_version: U32,
    /// Sender's NID.
    pub kshm_src_nid: U64,
    /// Receiver's NID (`LNET_NID_ANY` when the active side does not know it).
    pub kshm_dst_nid: U64,
    /// Sender's PID.
    pub kshm_src_pid: U32,
    /// Receiver's PID.
    pub kshm_dst_pid: U32,
    /// Sender's incarnation: changes when the sender restarts.
    pub kshm_src_incarnation: U64,
    /// Receiver's incarnation as the sender knows it.
    pub kshm_dst_incarnation: U64,
    /// Connection type (`conn_type`).
    pub kshm_ctype: U32,
    /// Number of IPv4 addresses that follow (always 0 from current senders).
    pub kshm_nips: U32,
}
wire_plain!(KsockHelloMsgNid4 => "ksock_hello_msg_nid4");

/// `struct ksock_hello_msg` with 16-byte NIDs (80 B, socklnd V4).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct KsockHelloMsg {
    /// [`PROTO_MAGIC`].
    pub kshm_magic: U32,
    /// 4.
    pub kshm_version: U32,
    /// Sender's NID.
    pub kshm_src_nid: LnetNid,
    /// Receiver's NID.
    pub kshm_dst_nid: LnetNid,
    /// Sender's PID.
    pub kshm_src_pid: U32,
    /// Receiver's PID.
    pub kshm_dst_pid: U32,
    /// Sender's incarnation.
    pub kshm_src_incarnation: U64,
    /// Receiver's incarnation as the sender knows it.
    pub kshm_dst_incarnation: U64,
    /// Connection type.
    pub kshm_ctype: U32,
    /// Number of IPv4 addresses that follow.
    pub kshm_nips: U32,
}
wire_plain!(KsockHelloMsg => "ksock_hello_msg");

/// `struct lnet_magicversion`: the first 8 bytes of a V1 hello.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetMagicversion {
    /// [`PROTO_TCP_MAGIC`].
    pub magic: U32,
    /// 1.
    pub version_major: U16,
    /// 0.
    pub version_minor: U16,
}
wire_plain!(LnetMagicversion => "lnet_magicversion");

/// A socklnd hello of any version, decoded into one shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// socklnd version (`ksock_version`).
    pub version: u32,
    /// Sender's NID.
    pub src_nid: Nid,
    /// Receiver's NID.
    pub dst_nid: Nid,
    /// Sender's PID.
    pub src_pid: u32,
    /// Receiver's PID.
    pub dst_pid: u32,
    /// Sender's incarnation.
    pub src_incarnation: u64,
    /// Receiver's incarnation as the sender knows it.
    pub dst_incarnation: u64,
    /// Connection type (`conn_type`).
    pub ctype: i32,
    /// Number of IPv4 addresses that followed (they are read and dropped, as 2.15 does).
    pub nips: u32,
}

impl Hello {
    const WHAT: &'static str = "ksock_hello_msg";

    /// The version a hello starting with `head` (8 bytes) announces.
    pub fn peek_version(head: &[u8]) -> Result<u32> {
        take(Self::WHAT, head, 0, 8)?;
        let magic = u32_at(Self::WHAT, head, 0)?;
        if magic == PROTO_TCP_MAGIC {
            let major = u16_at(Self::WHAT, head, 4)?;
            if major != 1 {
                return Err(WireError::BadVersion { what: Self::WHAT, got: major.into() });
            }
            return Ok(ksock_version::V1);
        }
        magic_check(Self::WHAT, magic, PROTO_MAGIC)?;
        u32_at(Self::WHAT, head, 4)
    }

    /// Bytes of the fixed part of a hello of `version` (the IP list follows it).
    pub fn fixed_len(version: u32) -> Result<usize> {
        match version {
            ksock_version::V1 => Ok(LnetHdrNid4::SIZE),
            ksock_version::V2 | ksock_version::V3 => Ok(KsockHelloMsgNid4::SIZE),
            ksock_version::V4 => Ok(KsockHelloMsg::SIZE),
            v => Err(WireError::BadVersion { what: Self::WHAT, got: v }),
        }
    }

    /// Decodes a whole hello, including its IP list. Returns the hello and the bytes it took.
    pub fn decode(buf: &[u8]) -> Result<(Hello, usize)> {
        let version = Self::peek_version(buf)?;
        let fixed = Self::fixed_len(version)?;
        let hello = match version {
            ksock_version::V1 => {
                let h = LnetHdrNid4::decode(buf)?;
                if h.r#type.get() != msg_type::HELLO {
                    return Err(WireError::BadValue {
                        what: "V1 hello type",
                        got: h.r#type.get().into(),
                    });
                }
                let body = LnetHello::decode(&h.msg)?;
                let plen = h.payload_length.get();
                if plen % 4 != 0 {
                    return Err(WireError::Misaligned {
                        what: "V1 hello IP list",
                        value: plen as usize,
                        align: 4,
                    });
                }
                Hello {
                    version,
                    src_nid: Nid(h.src_nid.get()),
                    dst_nid: Nid::ANY,
                    src_pid: h.src_pid.get(),
                    dst_pid: 0,
                    src_incarnation: body.incarnation.get(),
                    dst_incarnation: 0,
                    ctype: body.r#type.get().cast_signed(),
                    nips: plen / 4,
                }
            }
            ksock_version::V2 | ksock_version::V3 => {
                let h = KsockHelloMsgNid4::decode(buf)?;
                Hello {
                    version,
                    src_nid: Nid(h.kshm_src_nid.get()),
                    dst_nid: Nid(h.kshm_dst_nid.get()),
                    src_pid: h.kshm_src_pid.get(),
                    dst_pid: h.kshm_dst_pid.get(),
                    src_incarnation: h.kshm_src_incarnation.get(),
                    dst_incarnation: h.kshm_dst_incarnation.get(),
                    ctype: h.kshm_ctype.get().cast_signed(),
                    nips: h.kshm_nips.get(),
                }
            }
            _ => {
                let h = KsockHelloMsg::decode(buf)?;
                Hello {
                    version,
                    src_nid: h.kshm_src_nid.to_nid4()?,
                    dst_nid: h.kshm_dst_nid.to_nid4()?,
                    src_pid: h.kshm_src_pid.get(),
                    dst_pid: h.kshm_dst_pid.get(),
                    src_incarnation: h.kshm_src_incarnation.get(),
                    dst_incarnation: h.kshm_dst_incarnation.get(),
                    ctype: h.kshm_ctype.get().cast_signed(),
                    nips: h.kshm_nips.get(),
                }
            }
        };
        if hello.nips > INTERFACES_NUM {
            return Err(WireError::Oversize {
                what: "hello IP list",
                len: hello.nips as usize,
                max: INTERFACES_NUM as usize,
            });
        }
        if !(conn_type::NONE..=conn_type::BULK_OUT).contains(&hello.ctype) {
            return Err(WireError::BadValue {
                what: "hello ctype",
                got: u64::from(hello.ctype.cast_unsigned()),
            });
        }
        if hello.src_nid.is_any() {
            return Err(WireError::BadValue { what: "hello src_nid", got: hello.src_nid.0 });
        }
        let total = fixed + hello.nips as usize * 4;
        take(Self::WHAT, buf, 0, total)?;
        Ok((hello, total))
    }

    /// Encodes the hello in its version's format (with no IP list).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        match self.version {
            ksock_version::V1 => {
                let mut h = LnetHdrNid4::new_zeroed_hdr();
                let mv = LnetMagicversion {
                    magic: PROTO_TCP_MAGIC.into(),
                    version_major: 1.into(),
                    version_minor: 0.into(),
                };
                h.dest_nid = U64::from_bytes(mv.as_bytes().try_into().unwrap_or([0; 8]));
                h.src_nid = self.src_nid.into();
                h.src_pid = self.src_pid.into();
                h.r#type = msg_type::HELLO.into();
                let body = LnetHello {
                    incarnation: self.src_incarnation.into(),
                    r#type: self.ctype.cast_unsigned().into(),
                };
                h.set_msg(body.as_bytes());
                h.encode_into(out);
            }
            ksock_version::V2 | ksock_version::V3 => KsockHelloMsgNid4 {
                kshm_magic: PROTO_MAGIC.into(),
                kshm_version: self.version.into(),
                kshm_src_nid: self.src_nid.into(),
                kshm_dst_nid: self.dst_nid.into(),
                kshm_src_pid: self.src_pid.into(),
                kshm_dst_pid: self.dst_pid.into(),
                kshm_src_incarnation: self.src_incarnation.into(),
                kshm_dst_incarnation: self.dst_incarnation.into(),
                kshm_ctype: self.ctype.cast_unsigned().into(),
                kshm_nips: 0.into(),
            }
            .encode_into(out),
            ksock_version::V4 => KsockHelloMsg {
                kshm_magic: PROTO_MAGIC.into(),
                kshm_version: self.version.into(),
                kshm_src_nid: LnetNid::from_nid4(self.src_nid),
                kshm_dst_nid: LnetNid::from_nid4(self.dst_nid),
                kshm_src_pid: self.src_pid.into(),
                kshm_dst_pid: self.dst_pid.into(),
                kshm_src_incarnation: self.src_incarnation.into(),
                kshm_dst_incarnation: self.dst_incarnation.into(),
                kshm_ctype: self.ctype.cast_unsigned().into(),
                kshm_nips: 0.into(),
            }
            .encode_into(out),
            v => return Err(WireError::BadVersion { what: Self::WHAT, got: v }),
        }
        Ok(())
    }
}

/// `struct ksock_msg_hdr` (24 B): precedes every socklnd V2+ message.
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
pub struct KsockMsgHdr {
    /// NOOP (0xc0) or LNET (0xc1).
    pub ksh_type: U32,
    /// Checksum of the message when non-zero.
    pub ksh_csum: U32,
    /// `[0]` non-zero: ZC-ACK requested with this cookie; `[1]` non-zero: this message ACKs
    /// cookie(s) (a range `[0]..=[1]` when `[0] < [1]` in a NOOP).
    pub ksh_zc_cookies: [U64; 2],
}

impl Wire for KsockMsgHdr {
    const NAME: &'static str = "ksock_msg_hdr";
    fn check(&self) -> Result<()> {
        match self.ksh_type.get() {
            ksock_msg_type::NOOP | ksock_msg_type::LNET => Ok(()),
            t => Err(WireError::BadValue { what: Self::NAME, got: t.into() }),
        }
    }
}

impl KsockMsgHdr {
    /// A NOOP carrying ZC-ACK cookies (`{0, 1}` is a keepalive).
    #[must_use]
    pub fn noop(c0: u64, c1: u64) -> Self {
        Self {
            ksh_type: ksock_msg_type::NOOP.into(),
            ksh_csum: 0.into(),
            ksh_zc_cookies: [c0.into(), c1.into()],
        }
    }
    /// The header of an LNET message.
    #[must_use]
    pub fn lnet(zc_request: u64, zc_ack: u64) -> Self {
        Self {
            ksh_type: ksock_msg_type::LNET.into(),
            ksh_csum: 0.into(),
            ksh_zc_cookies: [zc_request.into(), zc_ack.into()],
        }
    }
}

/// `struct _lnet_hdr_nid4` (72 B): the LNet header as socklnd V1-V3 carry it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetHdrNid4 {
    /// Destination NID.
    pub dest_nid: U64,
    /// Source NID.
    pub src_nid: U64,
    /// Destination PID.
    pub dest_pid: U32,
    /// Source PID.
    pub src_pid: U32,
    /// `msg_type`.
    pub r#type: U32,
    /// Bytes of payload that follow.
    pub payload_length: U32,
    /// The per-type union; decode it with [`LnetHdrNid4::body`].
    pub msg: [u8; 40],
}

impl Wire for LnetHdrNid4 {
    const NAME: &'static str = "lnet_hdr_nid4";
    fn check(&self) -> Result<()> {
        let t = self.r#type.get();
        if t > msg_type::HELLO {
            return Err(WireError::BadValue { what: Self::NAME, got: t.into() });
        }
        let len = self.payload_length.get() as usize;
        let max = match t {
            msg_type::PUT | msg_type::REPLY => LNET_MTU,
            msg_type::HELLO => INTERFACES_NUM as usize * 4,
            _ => 0,
        };
        if len > max {
            return Err(WireError::Oversize { what: "lnet_hdr payload_length", len, max });
        }
        Ok(())
    }
}

/// The per-type part of an LNet header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LnetBody {
    /// `struct lnet_ack`.
    Ack(LnetAck),
    /// `struct lnet_put`.
    Put(LnetPut),
    /// `struct lnet_get`.
    Get(LnetGet),
    /// `struct lnet_reply`.
    Reply(LnetReply),
    /// `struct lnet_hello` (V1 only).
    Hello(LnetHello),
}

impl LnetBody {
    /// The `msg_type` of this body.
    #[must_use]
    pub fn msg_type(&self) -> u32 {
        match self {
            LnetBody::Ack(_) => msg_type::ACK,
            LnetBody::Put(_) => msg_type::PUT,
            LnetBody::Get(_) => msg_type::GET,
            LnetBody::Reply(_) => msg_type::REPLY,
            LnetBody::Hello(_) => msg_type::HELLO,
        }
    }
    fn bytes(&self) -> &[u8] {
        match self {
            LnetBody::Ack(b) => b.as_bytes(),
            LnetBody::Put(b) => b.as_bytes(),
            LnetBody::Get(b) => b.as_bytes(),
            LnetBody::Reply(b) => b.as_bytes(),
            LnetBody::Hello(b) => b.as_bytes(),
        }
    }
}

impl LnetHdrNid4 {
    fn new_zeroed_hdr() -> Self {
        <Self as zerocopy::FromZeros>::new_zeroed()
    }

    fn set_msg(&mut self, body: &[u8]) {
        self.msg = [0; 40];
        if let Some(dst) = self.msg.get_mut(..body.len()) {
            dst.copy_from_slice(body);
        }
    }

    /// A header for `body` from `src` to `dest` announcing `payload_length` bytes of payload.
    #[must_use]
    pub fn new(dest: (Nid, u32), src: (Nid, u32), payload_length: u32, body: &LnetBody) -> Self {
        let mut h = Self::new_zeroed_hdr();
        h.dest_nid = dest.0.into();
        h.dest_pid = dest.1.into();
        h.src_nid = src.0.into();
        h.src_pid = src.1.into();
        h.r#type = body.msg_type().into();
        h.payload_length = payload_length.into();
        h.set_msg(body.bytes());
        h
    }

    /// The decoded per-type part.
    pub fn body(&self) -> Result<LnetBody> {
        Ok(match self.r#type.get() {
            msg_type::ACK => LnetBody::Ack(LnetAck::read(&self.msg)?),
            msg_type::PUT => LnetBody::Put(LnetPut::read(&self.msg)?),
            msg_type::GET => LnetBody::Get(LnetGet::read(&self.msg)?),
            msg_type::REPLY => LnetBody::Reply(LnetReply::read(&self.msg)?),
            msg_type::HELLO => LnetBody::Hello(LnetHello::read(&self.msg)?),
            t => return Err(WireError::BadValue { what: Self::NAME, got: t.into() }),
        })
    }
    /// Destination NID.
    #[must_use]
    pub fn dest(&self) -> Nid {
        Nid(self.dest_nid.get())
    }
    /// Source NID.
    #[must_use]
    pub fn src(&self) -> Nid {
        Nid(self.src_nid.get())
    }
}

/// `struct _lnet_hdr_nid16` (96 B): the LNet header with 20-byte NIDs (socklnd V4).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetHdrNid16 {
    /// Destination NID.
    pub dest_nid: LnetNid,
    /// Source NID.
    pub src_nid: LnetNid,
    /// Destination PID.
    pub dest_pid: U32,
    /// Source PID.
    pub src_pid: U32,
    /// `msg_type`.
    pub r#type: U32,
    /// Bytes of payload that follow.
    pub payload_length: U32,
    /// The per-type union.
    pub msg: [u8; 40],
}

impl Wire for LnetHdrNid16 {
    const NAME: &'static str = "lnet_hdr_nid16";
    fn check(&self) -> Result<()> {
        self.dest_nid.check()?;
        self.src_nid.check()?;
        if self.r#type.get() > msg_type::REPLY {
            return Err(WireError::BadValue { what: Self::NAME, got: self.r#type.get().into() });
        }
        if self.payload_length.get() as usize > LNET_MTU {
            return Err(WireError::Oversize {
                what: Self::NAME,
                len: self.payload_length.get() as usize,
                max: LNET_MTU,
            });
        }
        Ok(())
    }
}

impl LnetHdrNid16 {
    /// The nid4 form of this header, when both NIDs fit in 64 bits.
    pub fn to_nid4(&self) -> Result<LnetHdrNid4> {
        Ok(LnetHdrNid4 {
            dest_nid: self.dest_nid.to_nid4()?.into(),
            src_nid: self.src_nid.to_nid4()?.into(),
            dest_pid: self.dest_pid,
            src_pid: self.src_pid,
            r#type: self.r#type,
            payload_length: self.payload_length,
            msg: self.msg,
        })
    }
}

/// `struct lnet_ack` (28 B in a 40-byte union).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetAck {
    /// The PUT's `ack_wmd`.
    pub dst_wmd: LnetHandleWire,
    /// The PUT's match bits.
    pub match_bits: U64,
    /// Bytes the target accepted.
    pub mlength: U32,
}

/// `struct lnet_put` (40 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetPut {
    /// Where the ACK goes ([`LnetHandleWire::NONE`]: no ACK).
    pub ack_wmd: LnetHandleWire,
    /// Match bits.
    pub match_bits: U64,
    /// Out-of-band data for the target (0 from ptlrpc).
    pub hdr_data: U64,
    /// Portal index.
    pub ptl_index: U32,
    /// Offset into the target MD.
    pub offset: U32,
}

/// `struct lnet_get` (36 B in a 40-byte union).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetGet {
    /// Where the REPLY goes.
    pub return_wmd: LnetHandleWire,
    /// Match bits.
    pub match_bits: U64,
    /// Portal index.
    pub ptl_index: U32,
    /// Offset into the source MD.
    pub src_offset: U32,
    /// Most bytes the requester accepts.
    pub sink_length: U32,
}

/// `struct lnet_reply` (16 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetReply {
    /// The GET's `return_wmd`.
    pub dst_wmd: LnetHandleWire,
}

/// `struct lnet_hello` (12 B, socklnd V1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetHello {
    /// Sender's incarnation.
    pub incarnation: U64,
    /// Connection type.
    pub r#type: U32,
}

wire_plain!(
    LnetHandleWire => "lnet_handle_wire",
    LnetAck => "lnet_ack",
    LnetPut => "lnet_put",
    LnetGet => "lnet_get",
    LnetReply => "lnet_reply",
    LnetHello => "lnet_hello",
);

/// `struct lnet_ping_info` header (16 B); `pi_nnis` [`LnetNiStatus`] entries follow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetPingInfoHdr {
    /// [`PROTO_PING_MAGIC`].
    pub pi_magic: U32,
    /// `ping_feat` bits.
    pub pi_features: U32,
    /// The node's PID.
    pub pi_pid: U32,
    /// Number of NI entries.
    pub pi_nnis: U32,
}
wire_plain!(LnetPingInfoHdr => "lnet_ping_info");

/// `struct lnet_ni_status` (16 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LnetNiStatus {
    /// The NI's NID.
    pub ns_nid: U64,
    /// `ni_status::UP` or `DOWN`.
    pub ns_status: U32,
    /// Zero.
    pub ns_unused: U32,
}
wire_plain!(LnetNiStatus => "lnet_ni_status");

/// A ping reply payload, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingInfo {
    /// `ping_feat` bits.
    pub features: u32,
    /// The node's PID.
    pub pid: u32,
    /// NIs and their status; the first is always `0@lo`.
    pub nis: Vec<(Nid, u32)>,
}

impl PingInfo {
    /// Our own ping reply: `0@lo` first, then `nids`, all up; features BASE|NI_STATUS so that
    /// peers treat us as a non-Multi-Rail node and never push to us.
    #[must_use]
    pub fn for_nids(pid: u32, nids: &[Nid]) -> PingInfo {
        let mut nis = vec![(Nid::LO, ni_status::UP)];
        nis.extend(nids.iter().map(|&n| (n, ni_status::UP)));
        PingInfo { features: ping_feat::BASE | ping_feat::NI_STATUS, pid, nis }
    }

    /// Encoded size.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        LnetPingInfoHdr::SIZE + self.nis.len() * LnetNiStatus::SIZE
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        LnetPingInfoHdr {
            pi_magic: PROTO_PING_MAGIC.into(),
            pi_features: self.features.into(),
            pi_pid: self.pid.into(),
            pi_nnis: u32::try_from(self.nis.len()).unwrap_or(u32::MAX).into(),
        }
        .encode_into(out);
        for &(nid, status) in &self.nis {
            LnetNiStatus { ns_nid: nid.into(), ns_status: status.into(), ns_unused: 0.into() }
                .encode_into(out);
        }
    }

    /// Decodes and validates a ping reply the way `lnet_ping_info_validate` does: right magic,
    /// NI_STATUS set, 1..=200 NIs, and `0@lo` first. A reply truncated by the requester's
    /// buffer keeps the NIs that fit.
    pub fn decode(buf: &[u8]) -> Result<PingInfo> {
        let (h, rest) = LnetPingInfoHdr::decode_prefix(buf)?;
        magic_check("lnet_ping_info", h.pi_magic.get(), PROTO_PING_MAGIC)?;
        let features = h.pi_features.get();
        if features & ping_feat::NI_STATUS == 0 {
            return Err(WireError::Inconsistent {
                what: "lnet_ping_info",
                detail: "NI_STATUS feature missing",
            });
        }
        let n = h.pi_nnis.get();
        if !(1..=INTERFACES_MAX).contains(&n) {
            return Err(WireError::BadValue { what: "lnet_ping_info pi_nnis", got: n.into() });
        }
        let fit = (n as usize).min(rest.len() / LnetNiStatus::SIZE);
        if fit == 0 {
            return Err(WireError::Truncated {
                what: "lnet_ping_info",
                need: buf.len() + LnetNiStatus::SIZE,
                have: buf.len(),
            });
        }
        let nis: Vec<(Nid, u32)> = decode_array::<LnetNiStatus>(rest, fit)?
            .iter()
            .map(|s| (Nid(s.ns_nid.get()), s.ns_status.get()))
            .collect();
        if nis.first().map(|n| n.0) != Some(Nid::LO) {
            return Err(WireError::Inconsistent {
                what: "lnet_ping_info",
                detail: "first NI is not 0@lo",
            });
        }
        Ok(PingInfo { features, pid: h.pi_pid.get(), nis })
    }
}

// Layout facts from lnet-idl.h and socklnd.h (LNet has no wiretest.c of its own).
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<LnetAcceptorConnreq>() == 16);
    assert!(size_of::<LnetAcceptorConnreqV2>() == 28);
    assert!(size_of::<KsockHelloMsgNid4>() == 56);
    assert!(offset_of!(KsockHelloMsgNid4, kshm_src_incarnation) == 32);
    assert!(offset_of!(KsockHelloMsgNid4, kshm_ctype) == 48);
    assert!(size_of::<KsockHelloMsg>() == 80);
    assert!(offset_of!(KsockHelloMsg, kshm_src_pid) == 48);
    assert!(offset_of!(KsockHelloMsg, kshm_ctype) == 72);
    assert!(size_of::<KsockMsgHdr>() == 24);
    assert!(size_of::<LnetHdrNid4>() == 72);
    assert!(offset_of!(LnetHdrNid4, r#type) == 24);
    assert!(offset_of!(LnetHdrNid4, msg) == 32);
    assert!(size_of::<LnetHdrNid16>() == 96);
    assert!(offset_of!(LnetHdrNid16, msg) == 56);
    assert!(size_of::<LnetPut>() == 40);
    assert!(offset_of!(LnetPut, ptl_index) == 32);
    assert!(size_of::<LnetGet>() == 36);
    assert!(offset_of!(LnetGet, sink_length) == 32);
    assert!(size_of::<LnetAck>() == 28);
    assert!(size_of::<LnetReply>() == 16);
    assert!(size_of::<LnetHello>() == 12);
    assert!(size_of::<LnetMagicversion>() == 8);
    assert!(size_of::<LnetPingInfoHdr>() == 16);
    assert!(size_of::<LnetNiStatus>() == 16);
    assert!(size_of::<LnetNid>() == 20);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 72 bytes a real Lustre 2.17.0 kernel client sent to 10.0.2.100:988 for
    /// `lctl ping` (reference appendix), as little-endian 32-bit words.
    const REAL_CLIENT_OPEN: [u32; 18] = [
        0x0071ceac, 0x01000000, 0x6402000a, 0x00000200, 0x63697245, 0x03000000, 0x0f02000a,
        0x00000200, 0x6402000a, 0x00000200, 0x39300000, 0x00000000, 0xba075d34, 0x9000ea18,
        0x00000000, 0x00000000, 0x01000000, 0x00000000,
    ];

    fn real_client_bytes() -> Vec<u8> {
        // The appendix prints each 4-byte group as it appears on the wire, so the words above
        // are big-endian renderings of the byte stream.
        REAL_CLIENT_OPEN.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn golden_real_client_connreq_and_hello() {
        let b = real_client_bytes();
        let (req, n) = AcceptorRequest::decode(&b).unwrap();
        assert_eq!(n, 16);
        assert_eq!(req.version, 1);
        assert_eq!(req.target.to_string(), "10.0.2.100@tcp");
        let (h, m) = Hello::decode(&b[16..]).unwrap();
        assert_eq!(m, 56);
        assert_eq!(h.version, 3);
        assert_eq!(h.src_nid.to_string(), "10.0.2.15@tcp");
        assert_eq!(h.dst_nid.to_string(), "10.0.2.100@tcp");
        assert_eq!(h.src_pid, PID_LUSTRE);
        assert_eq!(h.dst_pid, 0);
        assert_eq!(h.dst_incarnation, 0);
        assert_eq!(h.ctype, conn_type::CONTROL);
        assert_eq!(h.nips, 0);
        // Our encoder produces the same shape for the same values.
        let mut out = LnetAcceptorConnreq::new(req.target).to_vec();
        h.encode(&mut out).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn hello_versions_round_trip() {
        for v in [1, 2, 3, 4] {
            let h = Hello {
                version: v,
                src_nid: "192.168.1.20@tcp".parse().unwrap(),
                dst_nid: if v == 1 { Nid::ANY } else { "192.168.1.10@tcp".parse().unwrap() },
                src_pid: PID_LUSTRE,
                dst_pid: 0,
                src_incarnation: 0x1234_5678_9abc,
                dst_incarnation: 0,
                ctype: conn_type::BULK_IN,
                nips: 0,
            };
            let mut b = Vec::new();
            h.encode(&mut b).unwrap();
            assert_eq!(b.len(), Hello::fixed_len(v).unwrap());
            let (d, n) = Hello::decode(&b).unwrap();
            assert_eq!(n, b.len());
            assert_eq!(d, h, "version {v}");
        }
    }

    #[test]
    fn golden_lnet_put_offsets() {
        let put = LnetPut {
            ack_wmd: LnetHandleWire::NONE,
            match_bits: 0x1122_3344_5566_7788.into(),
            hdr_data: 0.into(),
            ptl_index: 26.into(),
            offset: 224.into(),
        };
        let h = LnetHdrNid4::new(
            ("192.168.1.10@tcp".parse().unwrap(), PID_LUSTRE),
            ("192.168.1.20@tcp".parse().unwrap(), PID_LUSTRE),
            100,
            &LnetBody::Put(put),
        );
        let b = h.as_bytes();
        assert_eq!(&b[0..8], &[10, 1, 168, 192, 0, 0, 2, 0]);
        assert_eq!(&b[24..28], &1u32.to_le_bytes());
        assert_eq!(&b[28..32], &100u32.to_le_bytes());
        assert_eq!(&b[32..48], &[0xff; 16]);
        assert_eq!(&b[48..56], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[64..68], &26u32.to_le_bytes());
        assert_eq!(&b[68..72], &224u32.to_le_bytes());
        assert_eq!(LnetHdrNid4::decode(b).unwrap().body().unwrap(), LnetBody::Put(put));
    }

    #[test]
    fn ping_info_round_trip_and_validation() {
        let p = PingInfo::for_nids(PID_LUSTRE, &["192.168.1.10@tcp".parse().unwrap()]);
        let mut b = Vec::new();
        p.encode(&mut b);
        assert_eq!(b.len(), 48);
        assert_eq!(&b[0..4], &PROTO_PING_MAGIC.to_le_bytes());
        assert_eq!(PingInfo::decode(&b).unwrap(), p);
        let mut bad = b.clone();
        bad[16] = 1; // first NI no longer 0@lo
        assert!(PingInfo::decode(&bad).is_err());
        let mut nostatus = b.clone();
        nostatus[4] = 1;
        assert!(PingInfo::decode(&nostatus).is_err());
        assert!(PingInfo::decode(&b[..20]).is_err());
    }

    #[test]
    fn bad_magic_and_swab() {
        let mut b = LnetAcceptorConnreq::new(Nid::LO).to_vec();
        b[0..4].copy_from_slice(&ACCEPTOR_MAGIC.swap_bytes().to_le_bytes());
        assert!(matches!(AcceptorRequest::decode(&b), Err(WireError::Swabbed { .. })));
        b[0] = 0;
        assert!(matches!(AcceptorRequest::decode(&b), Err(WireError::BadMagic { .. })));
        assert!(matches!(
            KsockMsgHdr::decode(&[
                0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]),
            Err(WireError::BadValue { .. })
        ));
    }
}

//! Every top-level decoder of the crate, runnable on arbitrary bytes. The random-bytes test
//! (`tests/garbage.rs`) and the cargo-fuzz targets (`fuzz/`) drive these, so a decoder added
//! here is fuzzed and garbage-tested without further wiring.

use crate::acl::{Caller, PosixAcl};
use crate::body::PtlrpcBodyV3;
use crate::cfg::{CfgMarker, LovDesc, LustreCfg};
use crate::connect::ObdConnectData;
use crate::dir;
use crate::fid::LuFid;
use crate::frame;
use crate::ldlm::{LdlmReply, LdlmRequest};
use crate::llog::{self, LlogLogHdr, LlogRecIter};
use crate::lnet::{AcceptorRequest, Hello, KsockMsgHdr, LnetHdrNid4, LnetHdrNid16, PingInfo};
use crate::lov::{Layout, LovCompMd, LovForm, LovMd};
use crate::mdt::{self, MdtBody, ReintRec};
use crate::mgs::{MgsConfigBody, MgsTargetInfo};
use crate::msg::LustreMsg;
use crate::nid::{Net, Nid};
use crate::ost::{self, ObdStatfs, Obdo};
use crate::rmf::{self, Side};
use crate::wire::Wire;

/// A top-level decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// The acceptor connection request (either version).
    AcceptorRequest,
    /// A socklnd hello of any version.
    Hello,
    /// A whole socklnd frame (ksock header, LNet header, payload, ptlrpc message).
    Frame,
    /// A bare ksock header and LNet headers (nid4 and nid16).
    LnetHeaders,
    /// A ping reply payload.
    PingInfo,
    /// A ptlrpc message, checked against every request and reply format.
    LustreMsg,
    /// A ptlrpc body (v2 or v3).
    PtlrpcBody,
    /// Connect data of any length.
    ConnectData,
    /// An LDLM request and reply with their policies.
    Ldlm,
    /// A REINT record, and NAME buffers.
    Reint,
    /// MDT body, obdo, statfs, ioobj and niobufs.
    Bodies,
    /// File layouts (plain, composite, user and stored forms).
    Layout,
    /// An llog header and a chunk of records.
    Llog,
    /// A config record and its marker and lov descriptor.
    LustreCfg,
    /// MGS config body and target info.
    Mgs,
    /// A directory page.
    DirPage,
    /// NID, net and FID text forms.
    Text,
    /// A POSIX ACL xattr and the algorithms run on it.
    Acl,
}

impl Decoder {
    /// Every decoder.
    pub const ALL: &'static [Decoder] = &[
        Decoder::AcceptorRequest,
        Decoder::Hello,
        Decoder::Frame,
        Decoder::LnetHeaders,
        Decoder::PingInfo,
        Decoder::LustreMsg,
        Decoder::PtlrpcBody,
        Decoder::ConnectData,
        Decoder::Ldlm,
        Decoder::Reint,
        Decoder::Bodies,
        Decoder::Layout,
        Decoder::Llog,
        Decoder::LustreCfg,
        Decoder::Mgs,
        Decoder::DirPage,
        Decoder::Text,
        Decoder::Acl,
    ];

    /// Runs the decoder (and the accessors a consumer would call on its result) over `data`.
    /// Returns how many sub-decodes succeeded, so that callers can tell garbage from input
    /// that got through; it must never panic.
    pub fn run(self, data: &[u8]) -> usize {
        let ok = core::cell::Cell::new(0usize);
        let count = |r: bool| ok.set(ok.get() + usize::from(r));
        match self {
            Decoder::AcceptorRequest => count(AcceptorRequest::decode(data).is_ok()),
            Decoder::Hello => {
                count(Hello::peek_version(data).is_ok());
                if let Ok((h, n)) = Hello::decode(data) {
                    count(n <= data.len());
                    let mut out = Vec::new();
                    count(h.encode(&mut out).is_ok());
                }
            }
            Decoder::Frame => {
                let mut rest = data;
                while let Ok((f, n)) = frame::parse_frame(rest) {
                    count(true);
                    if let Some(Ok(m)) = f.ptlrpc() {
                        count(true);
                        ok.set(ok.get() + Decoder::LustreMsg.run(m.raw()));
                    }
                    rest = rest.get(n.max(1)..).unwrap_or_default();
                }
            }
            Decoder::LnetHeaders => {
                count(KsockMsgHdr::decode(data).is_ok());
                if let Ok(h) = LnetHdrNid4::decode(data) {
                    count(h.body().is_ok());
                }
                if let Ok(h4) = LnetHdrNid16::decode(data).and_then(LnetHdrNid16::to_nid4) {
                    count(h4.body().is_ok());
                }
            }
            Decoder::PingInfo => count(PingInfo::decode(data).is_ok()),
            Decoder::LustreMsg => {
                if let Ok(m) = LustreMsg::decode(data) {
                    count(true);
                    for b in m.bufs() {
                        count(!b.is_empty());
                    }
                    if let Ok(body) = m.body() {
                        count(true);
                        if let Some(f) = rmf::request_format(body.opc()) {
                            count(f.check(Side::Request, &m, f.len(Side::Request)).is_ok());
                        }
                    }
                    for f in rmf::formats() {
                        count(f.check(Side::Request, &m, 1).is_ok());
                        count(f.check(Side::Reply, &m, 1).is_ok());
                    }
                }
            }
            Decoder::PtlrpcBody => count(PtlrpcBodyV3::decode_any(data).is_ok()),
            Decoder::ConnectData => {
                if let Ok(d) = ObdConnectData::decode_any(data) {
                    count(d.flags2() != 0);
                }
            }
            Decoder::Ldlm => {
                if let Ok(r) = LdlmRequest::decode(data) {
                    count(r.lock_desc.policy().is_ok());
                    count(r.to_vec().len() >= crate::ldlm::LDLM_REQUEST_MIN);
                }
                if let Ok(r) = LdlmReply::decode(data) {
                    count(r.lock_desc.policy().is_ok());
                }
            }
            Decoder::Reint => {
                count(ReintRec::decode(data).is_ok());
                count(mdt::check_name(data).is_ok());
            }
            Decoder::Bodies => {
                count(MdtBody::decode(data).is_ok());
                count(Obdo::decode(data).is_ok());
                count(ObdStatfs::decode(data).is_ok());
                let n = data.first().copied().map_or(0, usize::from);
                count(ost::decode_niobufs(data.get(1..).unwrap_or_default(), n).is_ok());
            }
            Decoder::Layout => {
                for form in [LovForm::Stored, LovForm::User] {
                    count(LovMd::decode(data, form).is_ok());
                    count(LovCompMd::decode(data, form).is_ok());
                    if let Ok(Layout::Plain(l)) = Layout::decode(data, form) {
                        count(l.to_vec().is_ok());
                    }
                }
            }
            Decoder::Llog => {
                if let Ok(h) = LlogLogHdr::decode(data) {
                    count(h.is_live(1));
                }
                for r in LlogRecIter::new(data) {
                    count(r.is_ok());
                }
                count(llog::check_chunk(data).is_ok());
            }
            Decoder::LustreCfg => {
                if let Ok(c) = LustreCfg::decode(data) {
                    count(c.str(0).is_ok());
                    count(c.to_vec().is_ok());
                }
                count(CfgMarker::decode(data).is_ok());
                count(LovDesc::decode(data).is_ok());
            }
            Decoder::Mgs => {
                count(MgsConfigBody::decode(data).is_ok());
                if let Ok(t) = MgsTargetInfo::decode(data) {
                    count(!t.nids().is_empty());
                }
            }
            Decoder::DirPage => count(dir::parse_page(data).is_ok()),
            Decoder::Acl => {
                if let Ok(mut a) = PosixAcl::decode(data) {
                    count(a.validate().is_ok());
                    let c = Caller { fsuid: 1, fsgid: 1, groups: &[2] };
                    count(a.permits(0, 2, &c, 7));
                    count(a.equiv_mode(0o644).1);
                    a.chmod(0o750);
                    count(a.create_masq(0o777).1);
                    count(PosixAcl::decode(&a.encode()).is_ok());
                }
            }
            Decoder::Text => {
                if let Ok(s) = core::str::from_utf8(data) {
                    count(s.parse::<Nid>().is_ok());
                    count(s.parse::<Net>().is_ok());
                    count(s.parse::<LuFid>().is_ok());
                }
            }
        }
        ok.get()
    }
}

//! Bad input never takes the server down (design decision 11): a raw ptlrpc peer sends a
//! running all-in-one `rustre` requests before connect, with a wrong export handle, with too
//! few buffers, impossible FIDs, 256-byte names, unknown opcodes, malformed layouts and
//! undecodable messages. Each must get the errno a Lustre 2.15 target returns (the function of
//! lustre-release that decides it is named beside each case), or no reply where Lustre drops
//! the message; afterwards a normal client still mounts and works, and the server never
//! panicked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step fails the test"
)]

mod common;

use client::ns::user_layout;
use client::{Cred, Fs};
use common::{Server, TempDir, free_port};
use lnd::{AcceptMode, Config as LnetConfig, EventKind, Lnet, MatchEntry, MdOptions, MdSpec};
use lnd::{NiConfig, Node, Placement, ProcessId};
use proto::body::{PtlrpcBodyV3, msg_kind};
use proto::build::MsgBuilder;
use proto::connect::{self, ObdConnectData};
use proto::fid::{LuFid, LuSeqRange, LustreHandle, seq_op, seq_range_flags};
use proto::ldlm::{
    LdlmInodebits, LdlmIntent, LdlmLockDesc, LdlmReply, LdlmRequest, Policy, flags as lf, ibits,
    it, lock_type, mode, status,
};
use proto::mdt::{MdtBody, MdtRecCreate, MdtRecLink, MdtRecRename, MdtRecSetxattr, md};
use proto::msg::{LustreMsg, MsgHdr, PTLRPC_REPLY_OFFSET_AT, msghdr};
use proto::nid::Nid;
use proto::opcode::{Opcode, reint};
use proto::portal;
use proto::rmf;
use proto::wire::{FromZeros, IntoBytes, Wire};
use ptlrpc::portals::reply_portal_for;
use ptlrpc::{Import, ImportConfig, XidGen};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::rc::Rc;
use std::time::{Duration, Instant};

const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };
/// `-ENOTSUPP`: the kernel's 524, which Lustre's targets return for opcodes without a handler.
const ENOTSUPP: i32 = 524;
/// How long a request Lustre would drop is given to (not) get a reply.
const NO_REPLY_WAIT: Duration = Duration::from_secs(2);
/// How long a request that must be answered may take.
const RPC_WAIT: Duration = Duration::from_secs(10);

/// What the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// No reply within the wait.
    Silence,
    /// `pb_type` and `pb_status`, and for intent replies `lock_policy_res2`.
    Reply { kind: u32, status: i32, res2: Option<i32> },
}

/// What a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// No reply: Lustre drops the request before it has a body to answer.
    Dropped,
    /// This `pb_status`.
    Status(i32),
    /// An intent that was executed and failed: `pb_status` ELDLM_LOCK_ABORTED (301) and this
    /// errno in `lock_policy_res2`.
    Intent(i32),
}

impl Want {
    fn matches(self, got: Got) -> bool {
        match (self, got) {
            (Want::Dropped, Got::Silence) => true,
            (Want::Status(s), Got::Reply { status, .. }) => s == status,
            (Want::Intent(e), Got::Reply { status, res2, .. }) => {
                status == status::LOCK_ABORTED && res2 == Some(e)
            }
            _ => false,
        }
    }
}

/// One checked request: what it is, where Lustre decides its answer, what we got.
#[derive(Debug)]
struct Case {
    name: String,
    lustre: &'static str,
    want: Want,
    got: Got,
}

/// A raw ptlrpc peer: our own LNet node on one shard, sending hand-made requests.
struct Peer {
    lnet: Lnet,
    server: ProcessId,
    xids: Rc<XidGen>,
    uuid: String,
}

/// The body fields a connected client fills in.
fn body(opc: u32, handle: u64) -> PtlrpcBodyV3 {
    let mut b = PtlrpcBodyV3::request(Opcode::from(opc));
    b.pb_handle = LustreHandle::new(handle);
    b.pb_conn_cnt = 1.into();
    b.pb_timeout = 10.into();
    b
}

/// A message with AT support (the reply goes to offset 224) from a body and raw buffers.
fn raw_msg(mut b: PtlrpcBodyV3, xid: u64, bufs: &[&[u8]]) -> Vec<u8> {
    b.pb_mbits = xid.into();
    let hdr = MsgHdr {
        flags: msghdr::AT_SUPPORT | msghdr::CKSUM_INCOMPAT18,
        repsize: 64 << 10,
        cksum: 0,
    };
    let mut all: Vec<&[u8]> = vec![b.as_bytes()];
    all.extend_from_slice(bufs);
    proto::msg::to_vec(hdr, &all).unwrap()
}

fn res2_of(v: u64) -> i32 {
    i32::try_from(v.cast_signed()).unwrap_or(i32::MIN)
}

impl Peer {
    /// PUTs `msg` to `portal` with match bits `xid` and waits up to `wait` for the reply.
    async fn send_raw(&self, portal: u32, xid: u64, msg: Vec<u8>, wait: Duration) -> Got {
        let rp = reply_portal_for(portal).expect("request portal");
        let eq = self.lnet.event_queue();
        let size = (64 << 10) + PTLRPC_REPLY_OFFSET_AT as usize;
        let opts = MdOptions {
            op_put: true,
            threshold: Some(1),
            manage_remote: true,
            truncate: true,
            ..MdOptions::default()
        };
        let md = self
            .lnet
            .attach(rp, MatchEntry::bits(xid), MdSpec::new(vec![0u8; size]).options(opts), &eq)
            .unwrap();
        self.lnet
            .put_and_wait(msg, self.server, portal, xid, 0, false, RPC_WAIT)
            .await
            .expect("request sent");
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = futures_lite::future::or(async { Some(eq.next().await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await;
            let Some(ev) = ev else {
                let _ = self.lnet.unlink(md);
                return Got::Silence;
            };
            if ev.kind != EventKind::Put {
                continue;
            }
            let buf = ev.buffers.and_then(lnd::MdBuffers::into_vec).unwrap_or_default();
            let off = ev.offset as usize;
            let data = buf.get(off..off + ev.mlength as usize).unwrap_or_default().to_vec();
            let m = LustreMsg::decode(&data).expect("the server's reply decodes");
            let b = m.body().expect("the server's reply has a body");
            let res2 = (b.opc() == Opcode::LdlmEnqueue && b.pb_type.get() == msg_kind::REPLY)
                .then(|| m.buf(1).and_then(|x| LdlmReply::read(x).ok()))
                .flatten()
                .map(|r| res2_of(r.lock_policy_res2.get()));
            return Got::Reply { kind: b.pb_type.get(), status: b.pb_status.get(), res2 };
        }
    }

    /// Sends a request made of `body` and `bufs` (laid out as given, checked by no one).
    async fn send(&self, portal: u32, b: PtlrpcBodyV3, bufs: &[&[u8]]) -> Got {
        let xid = self.xids.next_xid();
        self.send_raw(portal, xid, raw_msg(b, xid, bufs), RPC_WAIT).await
    }

    /// Sends a request laid out by `MsgBuilder` (every buffer of its format).
    async fn send_built(&self, portal: u32, mut b: MsgBuilder, handle: u64) -> Got {
        let xid = self.xids.next_xid();
        {
            let body = b.body_mut();
            body.pb_handle = LustreHandle::new(handle);
            body.pb_conn_cnt = 1.into();
            body.pb_timeout = 10.into();
            body.pb_mbits = xid.into();
        }
        b.hdr_mut().repsize = 64 << 10;
        self.send_raw(portal, xid, b.build().unwrap(), RPC_WAIT).await
    }

    /// A connected import to `target_uuid`.
    async fn connect(&self, req: u32, rep: u32, uuid: &str, op: Opcode) -> Rc<Import> {
        let mut c = ImportConfig::new(self.server, req, rep, uuid, &self.uuid, op);
        c.conn_cookie = 0x00c0_ffee_0000_0001;
        c.timeout = RPC_WAIT;
        c.max_sends = 1;
        let imp = Import::new(self.lnet.clone(), c, self.xids.clone());
        let mut d = ObdConnectData::new_zeroed();
        d.ocd_version = ObdConnectData::version(2, 15, 8, 0).into();
        let (f, f2) = match op {
            Opcode::MgsConnect => (connect::MGC_CONNECT_FLAGS, connect::MGC_CONNECT_FLAGS2),
            Opcode::MdsConnect => (connect::MDC_CONNECT_FLAGS, connect::MDC_CONNECT_FLAGS2),
            _ => (connect::OSC_CONNECT_FLAGS, connect::OSC_CONNECT_FLAGS2),
        };
        d.ocd_connect_flags = f.into();
        d.ocd_connect_flags2 = f2.into();
        d.ocd_ibits_known = ibits::FULL.into();
        d.ocd_brw_size = (1u32 << 20).into();
        d.ocd_cksum_types = connect::cksum::CRC32C.into();
        d.ocd_max_easize = 65536.into();
        imp.connect(d).await.unwrap_or_else(|e| panic!("connect to {uuid}: {e}"));
        imp
    }
}

/// Names and FIDs the normal client made before the raw peer starts.
#[derive(Debug, Clone, Copy)]
struct Fixture {
    /// `/bad`, a directory owned by root.
    dir: LuFid,
    /// `/bad/f`, a regular file.
    file: LuFid,
}

fn name(len: usize, c: u8) -> Vec<u8> {
    let mut v = vec![c; len];
    v.push(0);
    v
}

fn getattr_body(fid: LuFid) -> MdtBody {
    MdtBody {
        mbo_fid1: fid,
        mbo_valid: md::FLGETATTR.into(),
        mbo_eadatasize: 65536.into(),
        mbo_suppgid: u32::MAX.into(),
        ..Default::default()
    }
}

fn create_rec(parent: LuFid, fid: LuFid, mode: u32) -> MdtRecCreate {
    MdtRecCreate {
        cr_opcode: reint::CREATE.into(),
        cr_suppgid1: u32::MAX.into(),
        cr_suppgid2: u32::MAX.into(),
        cr_fid1: parent,
        cr_fid2: fid,
        cr_time: 1.into(),
        cr_mode: mode.into(),
        ..Default::default()
    }
}

fn no_elc() -> Vec<u8> {
    LdlmRequest { lock_flags: 0, lock_desc: LdlmLockDesc::default(), handles: Vec::new() }.to_vec()
}

fn mkdir_msg(parent: LuFid, fid: LuFid, nm: Vec<u8>) -> MsgBuilder {
    MsgBuilder::request_fmt(rmf::format("MDS_REINT_CREATE_ACL").unwrap(), Opcode::MdsReint)
        .wire("REC_REINT", &create_rec(parent, fid, 0o040_755))
        .unwrap()
        .set("NAME", nm)
        .unwrap()
        .set("DLM_REQ", no_elc())
        .unwrap()
}

/// An IT_OPEN|IT_CREAT intent creating `nm` in `parent` as `fid`, asking for layout `lov`.
fn open_create_msg(parent: LuFid, fid: LuFid, nm: Vec<u8>, lov: Vec<u8>) -> MsgBuilder {
    let dlm = LdlmRequest {
        lock_flags: lf::HAS_INTENT,
        lock_desc: LdlmLockDesc::new(
            lock_type::IBITS,
            parent.res_id(),
            mode::CW,
            &Policy::Ibits(LdlmInodebits { bits: ibits::LOOKUP.into(), ..Default::default() }),
        ),
        handles: vec![LustreHandle::new(0x1234)],
    };
    let mut rec = create_rec(parent, fid, 0o100_644);
    rec.cr_opcode = reint::OPEN.into();
    let mut flags = proto::mdt::open::FMODE_READ
        | proto::mdt::open::FMODE_WRITE
        | proto::mdt::open::CREAT
        | proto::mdt::open::EXCL;
    if !lov.is_empty() {
        flags |= proto::mdt::open::HAS_EA;
    }
    rec.set_open_flags(flags);
    MsgBuilder::request_fmt(rmf::format("LDLM_INTENT_OPEN").unwrap(), Opcode::LdlmEnqueue)
        .set("DLM_REQ", dlm.to_vec())
        .unwrap()
        .wire("LDLM_INTENT", &LdlmIntent { opc: (it::OPEN | it::CREAT).into() })
        .unwrap()
        .wire("REC_REINT", &rec)
        .unwrap()
        .set("NAME", nm)
        .unwrap()
        .set("EADATA", lov)
        .unwrap()
}

fn setxattr_msg(fid: LuFid, xname: &str, value: Vec<u8>, uid: u32) -> MsgBuilder {
    let rec = MdtRecSetxattr {
        sx_opcode: reint::SETXATTR.into(),
        sx_fsuid: uid.into(),
        sx_fsgid: uid.into(),
        sx_suppgid1: u32::MAX.into(),
        sx_suppgid2: u32::MAX.into(),
        sx_fid: fid,
        sx_valid: (md::FLXATTR | md::FLCTIME).into(),
        sx_time: 1.into(),
        sx_size: u32::try_from(value.len()).unwrap().into(),
        ..Default::default()
    };
    let mut n = xname.as_bytes().to_vec();
    n.push(0);
    MsgBuilder::request_fmt(rmf::format("MDS_REINT_SETXATTR").unwrap(), Opcode::MdsReint)
        .wire("REC_REINT", &rec)
        .unwrap()
        .set("NAME", n)
        .unwrap()
        .set("EADATA", value)
        .unwrap()
}

/// A `lov_user_md_v1` asking for `stripe_size` on one stripe, with `magic`.
fn lum(magic: u32, stripe_size: u32) -> Vec<u8> {
    let mut v = user_layout(stripe_size, 1, -1);
    v[..4].copy_from_slice(&magic.to_le_bytes());
    v
}

/// Every bad request, in order; returns what each got.
#[allow(clippy::too_many_lines, reason = "one flat list of cases reads best")]
async fn scenario(p: &Rc<Peer>, fx: Fixture) -> Vec<Case> {
    let mut out = Vec::new();
    let mut check = |name: &str, lustre, want, got| {
        out.push(Case { name: name.to_string(), lustre, want, got });
    };
    let mds = portal::MDS_REQUEST;
    let root = LuFid::ROOT;
    let ga = |fid| getattr_body(fid);

    // ---- requests before connect, unknown export handles ----
    let g = p.send(mds, body(Opcode::MdsGetattr.raw(), 0), &[ga(root).as_bytes(), &[]]).await;
    check(
        "MDS_GETATTR before connect",
        "tgt_request_handle: !class_connected_export",
        Want::Status(-libc::ENOTCONN),
        g,
    );
    let g = p.send(portal::OST_REQUEST, body(Opcode::OstStatfs.raw(), 0), &[]).await;
    check(
        "OST_STATFS before connect",
        "tgt_request_handle: !class_connected_export",
        Want::Status(-libc::ENOTCONN),
        g,
    );
    let g = p
        .send_built(
            portal::MGS_REQUEST,
            MsgBuilder::request(Opcode::LlogOriginHandleCreate)
                .unwrap()
                .set("NAME", b"rustre-client\0".to_vec())
                .unwrap(),
            0,
        )
        .await;
    check(
        "LLOG_ORIGIN_HANDLE_CREATE before connect",
        "tgt_request_handle: !class_connected_export",
        Want::Status(-libc::ENOTCONN),
        g,
    );

    let mdc = p.connect(mds, portal::MDC_REPLY, "rustre-MDT0000_UUID", Opcode::MdsConnect).await;
    let ost = p
        .connect(portal::OST_REQUEST, portal::OSC_REPLY, "rustre-OST0000_UUID", Opcode::OstConnect)
        .await;
    let mgc = p.connect(portal::MGS_REQUEST, portal::MGC_REPLY, "MGS", Opcode::MgsConnect).await;
    let (h, oh, gh) = (mdc.export_handle(), ost.export_handle(), mgc.export_handle());
    let wrong = h ^ 0x5a5a_5a5a_0000_0000;
    for (what, opc, bufs) in [
        ("MDS_GETATTR with a wrong export handle", Opcode::MdsGetattr, 2),
        ("OBD_PING with a wrong export handle", Opcode::ObdPing, 0),
        ("MDS_DISCONNECT with a wrong export handle", Opcode::MdsDisconnect, 0),
    ] {
        let gab = ga(root);
        let v: Vec<&[u8]> = [gab.as_bytes(), &[][..]].into_iter().take(bufs).collect();
        let g = p.send(mds, body(opc.raw(), wrong), &v).await;
        check(
            what,
            "ptlrpc_server_handle_req_in: class_conn2export finds none; tgt_request_handle",
            Want::Status(-libc::ENOTCONN),
            g,
        );
    }

    // ---- too few buffers for the format ----
    let g = p.send(mds, body(Opcode::MdsGetattr.raw(), h), &[]).await;
    check(
        "MDS_GETATTR without MDT_BODY",
        "mdt_getattr: no object (tgt_request_preprocess skipped the absent body)",
        Want::Status(-libc::EPROTO),
        g,
    );
    let g = p.send(mds, body(Opcode::MdsReint.raw(), h), &[]).await;
    check(
        "MDS_REINT without REC_REINT",
        "mdt_reint_opcode: req_capsule_client_get(RMF_REC_REINT) is NULL",
        Want::Status(-libc::EFAULT),
        g,
    );
    let rec = create_rec(fx.dir, LuFid::new(0x2_0000_0400, 0x7777, 0), 0o040_755);
    let g = p.send(mds, body(Opcode::MdsReint.raw(), h), &[rec.as_bytes()]).await;
    check(
        "REINT_CREATE without NAME",
        "mdt_create_unpack: mdt_name_unpack",
        Want::Status(-libc::EPROTO),
        g,
    );
    let g = p.send(mds, body(Opcode::LdlmEnqueue.raw(), h), &[]).await;
    check(
        "LDLM_ENQUEUE without DLM_REQ",
        "tgt_request_preprocess: HAS_KEY and no RMF_DLM_REQ",
        Want::Status(-libc::EFAULT),
        g,
    );
    let g = p.send(mds, body(Opcode::LdlmEnqueue.raw(), h), &[&[0u8; 16]]).await;
    check(
        "LDLM_ENQUEUE with a 16-byte DLM_REQ",
        "tgt_request_preprocess: lustre_msg_buf shorter than ldlm_request",
        Want::Status(-libc::EFAULT),
        g,
    );
    let dlm = LdlmRequest {
        lock_flags: 0,
        lock_desc: LdlmLockDesc::new(
            lock_type::IBITS,
            root.res_id(),
            mode::PR,
            &Policy::Ibits(LdlmInodebits::default()),
        ),
        handles: vec![LustreHandle::new(0x1111)],
    };
    let g = p
        .send_built(
            mds,
            MsgBuilder::request(Opcode::LdlmEnqueue).unwrap().set("DLM_REQ", dlm.to_vec()).unwrap(),
            h,
        )
        .await;
    check(
        "LDLM_ENQUEUE of an IBITS lock without bits",
        "tgt_request_preprocess: lock without inodebits",
        Want::Status(-libc::EPROTO),
        g,
    );

    // ---- impossible FIDs ----
    for (what, fid, want, lustre) in [
        (
            "MDS_GETATTR of FID [0x0:0x5:0x0]",
            LuFid::new(0, 5, 0),
            Want::Status(-libc::EINVAL),
            "tgt_mdt_body_unpack: !fid_is_sane",
        ),
        (
            "MDS_GETATTR of FID [0x200000400:0x1:0x7] (a version on a normal FID)",
            LuFid::new(0x2_0000_0400, 1, 7),
            Want::Status(-libc::EINVAL),
            "tgt_mdt_body_unpack: !fid_is_sane",
        ),
        (
            "MDS_GETATTR of the zero FID",
            LuFid::ZERO,
            Want::Status(-libc::EPROTO),
            "tgt_mdt_body_unpack skips a zero FID; mdt_getattr: no object",
        ),
        (
            "MDS_GETATTR of a sane FID that does not exist",
            LuFid::new(0x2_0000_0400, 0xfff_fff0, 0),
            Want::Status(-libc::ENOENT),
            "tgt_mdt_body_unpack: HAS_BODY and !lu_object_exists",
        ),
    ] {
        let g = p
            .send_built(
                mds,
                MsgBuilder::request(Opcode::MdsGetattr)
                    .unwrap()
                    .wire("MDT_BODY", &ga(fid))
                    .unwrap(),
                h,
            )
            .await;
        check(what, lustre, want, g);
    }
    let dlm = LdlmRequest {
        lock_flags: lf::HAS_INTENT,
        lock_desc: LdlmLockDesc::new(
            lock_type::IBITS,
            LuFid::new(0, 5, 0).res_id(),
            mode::CR,
            &Policy::Ibits(LdlmInodebits { bits: ibits::UPDATE.into(), ..Default::default() }),
        ),
        handles: vec![LustreHandle::new(0x4321)],
    };
    let g = p
        .send_built(
            mds,
            MsgBuilder::request_fmt(
                rmf::format("LDLM_INTENT_GETATTR").unwrap(),
                Opcode::LdlmEnqueue,
            )
            .set("DLM_REQ", dlm.to_vec())
            .unwrap()
            .wire("LDLM_INTENT", &LdlmIntent { opc: it::GETATTR.into() })
            .unwrap()
            .wire("MDT_BODY", &ga(LuFid::new(0, 5, 0)))
            .unwrap(),
            h,
        )
        .await;
    check(
        "IT_GETATTR intent on FID [0x0:0x5:0x0]",
        "mdt_intent_opc: mdt_body_unpack: !fid_is_sane",
        Want::Status(-libc::EINVAL),
        g,
    );

    // A sequence of our own for the FIDs of objects we try to create.
    let seq = seq_of(p, h).await;
    let mut oid = 100;
    let mut fid = || {
        oid += 1;
        LuFid::new(seq, oid, 0)
    };

    // ---- 256-byte names ----
    let g = p.send_built(mds, mkdir_msg(fx.dir, fid(), name(256, b'd')), h).await;
    check(
        "REINT_CREATE (mkdir) of a 256-byte name",
        "mdd_create_sanity_check: mdd_name_check",
        Want::Status(-libc::ENAMETOOLONG),
        g,
    );
    let g = p.send_built(mds, mkdir_msg(fx.dir, fid(), name(255, b'd')), h).await;
    check("REINT_CREATE (mkdir) of a 255-byte name", "succeeds", Want::Status(0), g);
    let g = p.send_built(mds, open_create_msg(fx.dir, fid(), name(256, b'o'), Vec::new()), h).await;
    check(
        "IT_OPEN|IT_CREAT of a 256-byte name",
        "mdt_intent_open: lock_policy_res2 from mdd_create_sanity_check",
        Want::Intent(-libc::ENAMETOOLONG),
        g,
    );
    let link = MdtRecLink {
        lk_opcode: reint::LINK.into(),
        lk_suppgid1: u32::MAX.into(),
        lk_suppgid2: u32::MAX.into(),
        lk_fid1: fx.file,
        lk_fid2: fx.dir,
        lk_time: 1.into(),
        ..Default::default()
    };
    let g = p
        .send_built(
            mds,
            MsgBuilder::request_fmt(rmf::format("MDS_REINT_LINK").unwrap(), Opcode::MdsReint)
                .wire("REC_REINT", &link)
                .unwrap()
                .set("NAME", name(256, b'l'))
                .unwrap()
                .set("DLM_REQ", no_elc())
                .unwrap(),
            h,
        )
        .await;
    check(
        "REINT_LINK to a 256-byte name",
        "mdd_link_sanity_check: mdd_name_check",
        Want::Status(-libc::ENAMETOOLONG),
        g,
    );
    let rn = MdtRecRename {
        rn_opcode: reint::RENAME.into(),
        rn_suppgid1: u32::MAX.into(),
        rn_suppgid2: u32::MAX.into(),
        rn_fid1: fx.dir,
        rn_fid2: fx.dir,
        rn_time: 1.into(),
        ..Default::default()
    };
    let g = p
        .send_built(
            mds,
            MsgBuilder::request_fmt(rmf::format("MDS_REINT_RENAME").unwrap(), Opcode::MdsReint)
                .wire("REC_REINT", &rn)
                .unwrap()
                .set("NAME", b"f\0".to_vec())
                .unwrap()
                .set("SYMTGT", name(256, b'r'))
                .unwrap()
                .set("DLM_REQ", no_elc())
                .unwrap(),
            h,
        )
        .await;
    check(
        "REINT_RENAME to a 256-byte name",
        "mdd_rename_sanity_check: mdd_name_check",
        Want::Status(-libc::ENAMETOOLONG),
        g,
    );

    // ---- unknown opcodes ----
    for (what, prt, handle, opc) in [
        ("opcode 12345 to the MDT", mds, h, 12345),
        ("obsolete MDS_PIN (42) to the MDT", mds, h, 42),
        ("opcode 12345 to an OST", portal::OST_REQUEST, oh, 12345),
        ("opcode 12345 to the MGS", portal::MGS_REQUEST, gh, 12345),
    ] {
        let g = p.send(prt, body(opc, handle), &[]).await;
        check(what, "tgt_handler_find_check", Want::Status(-ENOTSUPP), g);
    }
    let mut rec = create_rec(fx.dir, fid(), 0o040_755);
    rec.cr_opcode = 99.into();
    let g = p.send(mds, body(Opcode::MdsReint.raw(), h), &[rec.as_bytes(), &[]]).await;
    check(
        "MDS_REINT with sub-opcode 99",
        "mdt_reint_opcode: opc >= REINT_MAX",
        Want::Status(-libc::EFAULT),
        g,
    );
    let dlm = LdlmRequest {
        lock_flags: lf::HAS_INTENT,
        lock_desc: LdlmLockDesc::new(
            lock_type::IBITS,
            fx.dir.res_id(),
            mode::CR,
            &Policy::Ibits(LdlmInodebits { bits: ibits::LOOKUP.into(), ..Default::default() }),
        ),
        handles: vec![LustreHandle::new(0x5678)],
    };
    let g = p
        .send_built(
            mds,
            MsgBuilder::request_fmt(rmf::format("LDLM_INTENT").unwrap(), Opcode::LdlmEnqueue)
                .set("DLM_REQ", dlm.to_vec())
                .unwrap()
                .wire("LDLM_INTENT", &LdlmIntent { opc: 0x10_0000.into() })
                .unwrap(),
            h,
        )
        .await;
    check(
        "LDLM_ENQUEUE with unknown intent 0x100000",
        "mdt_intent_opc: unknown intent code",
        Want::Status(-libc::EPROTO),
        g,
    );

    // ---- malformed layouts ----
    let bad_layouts: [(&'static str, Vec<u8>); 4] = [
        ("7 garbage bytes", b"garbage".to_vec()),
        ("a wrong magic", lum(0xdead_beef, 1 << 20)),
        ("a stripe size not a multiple of 64 KiB", lum(proto::lov::magic::V1, (1 << 20) + 4096)),
        ("a LOV_MAGIC_V3 layout cut short", lum(proto::lov::magic::V3, 1 << 20)),
    ];
    for (i, (what, v)) in bad_layouts.iter().enumerate() {
        let xn = if i % 2 == 0 { "lustre.lov" } else { "trusted.lov" };
        let g = p.send_built(mds, setxattr_msg(fx.dir, xn, v.clone(), 0), h).await;
        check(
            &format!("setxattr {xn} of a directory with {what}"),
            "lod_dir_declare_xattr_set: lod_verify_striping",
            Want::Status(-libc::EINVAL),
            g,
        );
        let nm = name(8, b'a' + u8::try_from(i).unwrap());
        let g = p.send_built(mds, open_create_msg(fx.dir, fid(), nm, v.clone()), h).await;
        check(
            &format!("IT_OPEN|IT_CREAT asking for a layout with {what}"),
            "lod_qos_parse_config: lod_verify_striping (lock_policy_res2)",
            Want::Intent(-libc::EINVAL),
            g,
        );
    }
    let g = p
        .send_built(mds, setxattr_msg(fx.dir, "trusted.lov", user_layout(1 << 20, 1, -1), 500), h)
        .await;
    check(
        "setxattr trusted.lov by a user without CAP_SYS_ADMIN",
        "mdt_reint_setxattr: trusted.* needs CAP_SYS_ADMIN",
        Want::Status(-libc::EPERM),
        g,
    );

    // ---- messages that do not decode: dropped without a reply ----
    let good = || raw_msg(body(Opcode::ObdPing.raw(), h), 0, &[]);
    let unpack = "sptlrpc_svc_unwrap_request: __lustre_unpack_msg fails, SECSVC_DROP";
    let body_unpack = "ptlrpc_server_handle_req_in: lustre_unpack_req_ptlrpc_body fails, err_req";
    let mut garbage: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    let mut m = good();
    m[8..12].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    garbage.push(("a wrong lm_magic", unpack, m));
    let mut m = good();
    m[8..12].copy_from_slice(&0x0BD0_0BD0u32.to_le_bytes());
    garbage.push(("lustre_msg v1 magic", unpack, m));
    let mut m = good();
    m.truncate(100);
    garbage.push(("a message cut inside its body", unpack, m));
    let mut m = good();
    m[0..4].copy_from_slice(&0u32.to_le_bytes());
    garbage.push(("lm_bufcount 0", unpack, m));
    let mut m = good();
    m[0..4].copy_from_slice(&1000u32.to_le_bytes());
    garbage.push(("lm_bufcount 1000", unpack, m));
    garbage.push(("1 KiB of noise", unpack, (0..1024u32).map(|i| (i * 7 + 3) as u8).collect()));
    let short = proto::msg::to_vec(
        MsgHdr { flags: msghdr::AT_SUPPORT, repsize: 4096, cksum: 0 },
        &[&body(Opcode::ObdPing.raw(), h).as_bytes()[..100]],
    )
    .unwrap();
    garbage.push(("a 100-byte ptlrpc_body", body_unpack, short));
    let mut b = body(Opcode::ObdPing.raw(), h);
    b.pb_version = 0x1_0007.into();
    garbage.push(("pb_version with a wrong message version", body_unpack, raw_msg(b, 0, &[])));
    let mut b = body(Opcode::ObdPing.raw(), h);
    b.pb_type = msg_kind::REPLY.into();
    let wrong_type = "ptlrpc_server_handle_req_in: wrong packet type, err_req";
    garbage.push(("pb_type REPLY", wrong_type, raw_msg(b, 0, &[])));
    // All at once: each waits the same while for a reply that must not come.
    let sends: Vec<_> = garbage
        .into_iter()
        .map(|(what, lustre, msg)| {
            let xid = p.xids.next_xid();
            let p = p.clone();
            let t =
                glommio::spawn_local(async move { p.send_raw(mds, xid, msg, NO_REPLY_WAIT).await });
            (what, lustre, t)
        })
        .collect();
    for (what, lustre, task) in sends {
        let g = task.await;
        check(&format!("a request with {what} (dropped)"), lustre, Want::Dropped, g);
    }
    // Still connected: the export answers.
    let g = p.send(mds, body(Opcode::ObdPing.raw(), h), &[]).await;
    check("OBD_PING after all of it", "ping", Want::Status(0), g);
    let g = p.send(portal::OST_REQUEST, body(Opcode::OstStatfs.raw(), oh), &[]).await;
    check("OST_STATFS after all of it", "ofd_statfs_hdl", Want::Status(0), g);
    out
}

/// The sequence a SEQ_QUERY gives us.
async fn seq_of(p: &Peer, h: u64) -> u64 {
    let xid = p.xids.next_xid();
    let mut b = MsgBuilder::request(Opcode::SeqQuery)
        .unwrap()
        .set("SEQ_OPC", seq_op::ALLOC_META.to_le_bytes().to_vec())
        .unwrap()
        .wire("SEQ_RANGE", &LuSeqRange::new(0, 0, 0, seq_range_flags::MDT))
        .unwrap();
    {
        let body = b.body_mut();
        body.pb_handle = LustreHandle::new(h);
        body.pb_conn_cnt = 1.into();
        body.pb_timeout = 10.into();
        body.pb_mbits = xid.into();
    }
    let t = ptlrpc::client::Target {
        id: p.server,
        request_portal: portal::SEQ_METADATA,
        reply_portal: portal::MDC_REPLY,
        timeout: RPC_WAIT,
        reply_size: 4096,
        jobid: "",
        rep_mbits: false,
    };
    let rep = ptlrpc::client::exchange(&p.lnet, &t, b, None, xid).await.unwrap();
    assert_eq!(rep.status(), 0);
    LuSeqRange::read(rep.buf("seq range", 1, 24).unwrap()).unwrap().lsr_start.get()
}

/// A loopback NID of our own on `port` (not one a client of this test uses).
fn our_nid(port: u16) -> Nid {
    for i in (2..=254u8).rev() {
        let a = Ipv4Addr::new(127, 0, 1, i);
        if TcpListener::bind(SocketAddrV4::new(a, port)).is_ok() {
            return format!("{a}@tcp").parse().unwrap();
        }
    }
    panic!("no free loopback address");
}

/// Runs `scenario` on a one-shard LNet node of our own, as peer `uuid`.
fn run_scenario<F, Fut>(port: u16, uuid: &str, scenario: F) -> Vec<Case>
where
    F: FnOnce(Rc<Peer>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<Case>> + 'static,
{
    let nid = our_nid(port);
    let mut lc = LnetConfig::new(vec![NiConfig::new(nid, port).unwrap()]);
    lc.port = port;
    lc.placement = Placement::Unbound(1);
    lc.accept = AcceptMode::All;
    // SAFETY: geteuid has no preconditions.
    lc.connect_privileged = unsafe { libc::geteuid() } == 0;
    lc.routes = ptlrpc::lnet_routes();
    lc.timeout = Duration::from_secs(10);
    lc.discovery_timeout = Duration::from_secs(10);
    let (tx, rx) = std::sync::mpsc::channel();
    let uuid = uuid.to_string();
    let node = Node::start(lc, move |lnet: Lnet| async move {
        let p = Rc::new(Peer {
            lnet: lnet.clone(),
            server: ProcessId::lustre("127.0.0.1@tcp".parse().unwrap()),
            xids: Rc::new(XidGen::new(0, 1, 1_000_000)),
            uuid,
        });
        let _ = tx.send(scenario(p).await);
    })
    .unwrap();
    let r = rx.recv_timeout(Duration::from_secs(180));
    node.stop();
    let _ = node.join();
    r.expect("the raw peer finished (it panicked or hung otherwise)")
}

fn run_peer(port: u16, fx: Fixture) -> Vec<Case> {
    run_scenario(port, "badinput-0000-0000-0000-000000000000", move |p| async move {
        scenario(&p, fx).await
    })
}

/// Prints every case and fails the test if one got another answer than Lustre's.
fn check_cases(cases: &[Case]) {
    let mut bad = Vec::new();
    for k in cases {
        let ok = k.want.matches(k.got);
        eprintln!(
            "{} {:<70} want {:?}, got {:?}  [{}]",
            if ok { "ok " } else { "BAD" },
            k.name,
            k.want,
            k.got,
            k.lustre
        );
        if !ok {
            bad.push(k.name.clone());
        }
    }
    assert!(bad.is_empty(), "{} case(s) got the wrong answer: {bad:?}", bad.len());
}

#[test]
fn bad_requests_get_lustres_errno_and_the_server_keeps_serving() {
    let t = Instant::now();
    let dir = TempDir::new("badinput");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    let (dfid, _) =
        c.run(|fs: Rc<Fs>| async move { fs.mkdir("/bad", 0o755, &[], ROOT).await }).unwrap();
    let ffid = c.create("/bad/f", 0o644, Vec::new(), ROOT).unwrap();
    c.umount().unwrap();

    let cases = run_peer(srv.port, Fixture { dir: dfid, file: ffid });
    check_cases(&cases);

    // A normal client still mounts and works; nothing bad was created.
    let c = srv.mount();
    c.mkdir("/after", 0o755, ROOT).unwrap();
    let names: Vec<String> = c.ls("/bad", ROOT).unwrap().into_iter().map(|e| e.name).collect();
    let want_dir = String::from_utf8(vec![b'd'; 255]).unwrap();
    assert!(names.contains(&want_dir), "the 255-byte mkdir is listed: {names:?}");
    assert!(names.contains(&"f".to_string()));
    assert_eq!(names.len(), 4, "only ., .., f and the 255-byte directory: {names:?}");
    assert!(c.ls("/", ROOT).unwrap().iter().any(|e| e.name == "after"));
    c.umount().unwrap();
    let log = srv.log_text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    let mut srv = srv;
    assert!(srv.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the server exited");
    srv.stop();
    eprintln!("{} cases in {:?}", cases.len(), t.elapsed());
}

// ---- The OST's BRW path --------------------------------------------------------------------

/// Objects the normal client made for the BRW cases.
#[derive(Debug, Clone, Copy)]
struct OstFixture {
    /// OST index of both objects.
    ost: u32,
    /// The object of `/ost/f`, which no case may change.
    untouched: LuFid,
    /// The object of `/ost/g`, which a write without lock or grant fills.
    lockless: LuFid,
}

fn ioobj(fid: LuFid, bufcnt: u32, mds: u32) -> Vec<u8> {
    let mut o = proto::ost::ObdIoobj::new_zeroed();
    o.ioo_oid = proto::fid::OstId::from_fid(fid);
    o.set_md_count(mds);
    o.ioo_bufcnt = bufcnt.into();
    o.as_bytes().to_vec()
}

fn niobufs(list: &[(u64, u32, u32)]) -> Vec<u8> {
    list.iter()
        .flat_map(|&(off, len, flags)| {
            proto::ost::NiobufRemote {
                rnb_offset: off.into(),
                rnb_len: len.into(),
                rnb_flags: flags.into(),
            }
            .as_bytes()
            .to_vec()
        })
        .collect()
}

fn brw_obdo(fid: LuFid, flags: Option<u32>) -> Vec<u8> {
    let mut oa = proto::ost::Obdo { o_oi: proto::fid::OstId::from_fid(fid), ..Default::default() };
    let mut valid = md::FLID | md::FLGROUP;
    if let Some(f) = flags {
        oa.o_flags = f.into();
        valid |= md::FLFLAGS;
    }
    oa.o_valid = valid.into();
    oa.as_bytes().to_vec()
}

/// One BRW request: the body, ioobj, niobufs and short-I/O buffers as given, and `bulk`
/// posted as a GET source at the request's match bits.
struct Brw<'a> {
    portal: u32,
    oa: Vec<u8>,
    ioo: Vec<u8>,
    nbs: Vec<u8>,
    short_io: &'a [u8],
    bulk: Option<Vec<u8>>,
}

impl Peer {
    async fn brw_write(&self, h: u64, w: Brw<'_>) -> Got {
        let xid = self.xids.next_xid();
        let beq = self.lnet.event_queue();
        let md = w.bulk.map(|b| {
            self.lnet
                .attach(
                    portal::OST_BULK,
                    MatchEntry::bits(xid),
                    MdSpec::new(b).options(ptlrpc::server::get_source_opts()),
                    &beq,
                )
                .unwrap()
        });
        let b = body(Opcode::OstWrite.raw(), h);
        let msg = raw_msg(b, xid, &[&w.oa, &w.ioo, &w.nbs, &[], w.short_io]);
        let got = self.send_raw(w.portal, xid, msg, RPC_WAIT).await;
        if let Some(md) = md {
            let _ = self.lnet.unlink(md);
        }
        got
    }
}

async fn ost_scenario(p: &Rc<Peer>, fx: OstFixture) -> Vec<Case> {
    use proto::ost::brw;
    use proto::ost::obd_fl;
    const EPROTO: i32 = -libc::EPROTO;
    let uuid = format!("rustre-OST{:04x}_UUID", fx.ost);
    let ost = p.connect(portal::OST_REQUEST, portal::OSC_REPLY, &uuid, Opcode::OstConnect).await;
    let h = ost.export_handle();
    let f = fx.untouched;
    let w = brw::WRITE;
    let page = |n: usize| vec![0x5au8; n];
    let mut cases = Vec::new();
    let mut case = |name: &str, lustre: &'static str, want: Want, got: Got| {
        cases.push(Case { name: name.into(), lustre, want, got });
    };
    let plain = |fid: LuFid, nbs: &[(u64, u32, u32)], bulk: Option<Vec<u8>>| Brw {
        portal: portal::OST_IO,
        oa: brw_obdo(fid, None),
        ioo: ioobj(fid, u32::try_from(nbs.len()).unwrap(), 1),
        nbs: niobufs(nbs),
        short_io: &[],
        bulk,
    };

    let got = p.brw_write(h, plain(f, &[(0, 8192, w)], Some(page(4096)))).await;
    case(
        "write: niobufs reach past the end of the client's bulk",
        "target_bulk_io: truncated bulk GET, no reply",
        Want::Dropped,
        got,
    );
    let got = p.brw_write(h, plain(f, &[(0, 8192, w), (4096, 4096, w)], Some(page(12288)))).await;
    case(
        "write: overlapping niobufs",
        "niobufs must increase (ldiskfs assumes it)",
        Want::Status(EPROTO),
        got,
    );
    let got = p.brw_write(h, plain(f, &[(8192, 4096, w), (0, 4096, w)], Some(page(8192)))).await;
    case("write: niobufs out of order", "niobufs must increase", Want::Status(EPROTO), got);
    let got = p.brw_write(h, plain(f, &[(0, 0, w)], Some(page(0)))).await;
    case("write: zero-length niobuf", "niobufs must cover bytes", Want::Status(EPROTO), got);
    let missing = LuFid::new(f.seq(), f.oid() + 100_000, 0);
    let got = p.brw_write(h, plain(missing, &[(0, 4096, w)], Some(page(4096)))).await;
    case(
        "write: an object that does not exist",
        "ofd_preprw_write",
        Want::Status(-libc::ENOENT),
        got,
    );
    // All zeros: MDT0's group, object id 0.
    let zero = LuFid::new(0, 0, 0);
    let got = p.brw_write(h, plain(zero, &[(0, 4096, w)], Some(page(4096)))).await;
    case("write: object id 0", "tgt_validate_obdo", Want::Status(EPROTO), got);
    let mut req = plain(f, &[(0, 4096, w)], Some(page(4096)));
    req.portal = portal::OST_REQUEST;
    let got = p.brw_write(h, req).await;
    case(
        "write: sent to the OST_REQUEST portal",
        "tgt_brw_write: wrong portal",
        Want::Status(EPROTO),
        got,
    );
    let mut req = plain(f, &[(0, 4096, w)], Some(page(4096)));
    req.ioo = [ioobj(f, 1, 1), ioobj(f, 1, 1)].concat();
    let got = p.brw_write(h, req).await;
    case("write: two obd_ioobj", "tgt_io_data_unpack: too many ioobjs", Want::Status(EPROTO), got);
    let mut req = plain(f, &[(0, 4096, w)], Some(page(4096)));
    req.ioo = ioobj(f, 2, 1);
    let got = p.brw_write(h, req).await;
    case(
        "write: ioo_bufcnt 2, one niobuf",
        "tgt_brw_write: niobuf count",
        Want::Status(EPROTO),
        got,
    );
    let mut req = plain(f, &[(0, 4096, w)], Some(page(4096)));
    req.ioo = ioobj(f, 1, 3);
    let got = p.brw_write(h, req).await;
    case(
        "write: ioo_max_brw not a power of two",
        "tgt_io_data_unpack: bad ioobj max",
        Want::Status(EPROTO),
        got,
    );
    let too_many = u32::try_from((proto::ost::PTLRPC_MAX_BRW_PAGES + 1) * 4096).unwrap();
    let got = p.brw_write(h, plain(f, &[(0, too_many, w)], None)).await;
    case(
        "write: more pages than PTLRPC_MAX_BRW_PAGES",
        "osd_map_remote_to_local",
        Want::Status(-libc::EOVERFLOW),
        got,
    );
    let got = p.brw_write(h, plain(f, &[(0, 2 << 20, w)], Some(page(2 << 20)))).await;
    case(
        "write: more bytes than the negotiated 1 MiB BRW size",
        "(Rustre: a request's memory is bounded by ocd_brw_size)",
        Want::Status(-libc::EOVERFLOW),
        got,
    );
    let s = brw::SRVLOCK;
    let got =
        p.brw_write(h, plain(f, &[(0, 4096, w | s), (4096, 4096, w)], Some(page(8192)))).await;
    case("write: SRVLOCK on some niobufs only", "tgt_brw_lock", Want::Status(-libc::EFAULT), got);
    let mut req = plain(f, &[(0, 4096, w)], None);
    req.oa = brw_obdo(f, Some(obd_fl::SHORT_IO));
    req.short_io = &[1u8; 100];
    let got = p.brw_write(h, req).await;
    case(
        "write: short I/O of another length than the niobufs",
        "tgt_brw_write",
        Want::Status(EPROTO),
        got,
    );

    // No lock and no grant: Lustre stores it (the client's lock is its own business; the OST
    // finds the space itself).
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    let got = p.brw_write(h, plain(fx.lockless, &[(0, 8192, w)], Some(data))).await;
    case("write: without a lock or grant, space free", "tgt_grant_check", Want::Status(0), got);
    cases
}

#[test]
fn bad_brw_requests_get_lustres_errno_and_store_nothing() {
    use proto::mdt::open as of;
    let dir = TempDir::new("badbrw");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    c.mkdir("/ost", 0o755, ROOT).unwrap();
    let rw = of::FMODE_READ | of::FMODE_WRITE | of::CREAT;
    let mk = |p: &str| {
        let f = c.open(p, rw, 0o644, user_layout(1 << 20, 1, 0), ROOT).unwrap();
        let s = f.layout.as_ref().unwrap().stripes[0];
        c.close(f).unwrap();
        s
    };
    let (a, b) = (mk("/ost/f"), mk("/ost/g"));
    c.umount().unwrap();
    let fx = OstFixture { ost: a.ost, untouched: a.fid, lockless: b.fid };

    let cases =
        run_scenario(srv.port, "badinput-0000-0000-0000-0000000000b5", move |p| async move {
            ost_scenario(&p, fx).await
        });
    check_cases(&cases);

    // Nothing was stored by the refused requests; the lockless write was, byte for byte; a
    // normal client still reads and writes.
    let c = srv.mount();
    let f = c.open("/ost/f", of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
    assert_eq!(c.size(&f).unwrap(), 0, "no refused write left data");
    c.close(f).unwrap();
    let g = c.open("/ost/g", of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
    let want: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.read(&g, 0, 10_000).unwrap(), want);
    c.close(g).unwrap();
    let h = c.open("/ost/after", rw, 0o644, Vec::new(), ROOT).unwrap();
    c.write(&h, 0, vec![7u8; 300_000]).unwrap();
    c.close(h).unwrap();
    let h = c.open("/ost/after", of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
    assert_eq!(c.read(&h, 0, 300_000).unwrap(), vec![7u8; 300_000]);
    c.close(h).unwrap();
    c.umount().unwrap();
    let log = srv.log_text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    let mut srv = srv;
    assert!(srv.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the server exited");
    srv.stop();
}

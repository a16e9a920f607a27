//! A protocol-correct synthetic conversation between a Lustre client (127.0.0.1) and servers
//! (127.0.0.2:988), built only with proto's encoders and written as a pcap.
//!
//! Shared by `examples/lustre-pcap.rs` and `tests/tshark.rs`.

use pcap_file::pcap::{PcapPacket, PcapWriter};
use proto::body::msg_connect;
use proto::build::MsgBuilder;
use proto::cfg::{CfgTarget, ClientLogSpec};
use proto::connect::{self, ObdConnectData, flags as ocf, flags2 as ocf2};
use proto::dir::{DirEntry, build_page, luda};
use proto::fid::{LdlmResId, LuFid, LuSeqRange, LustreHandle, OstId, seq_op, seq_range_flags};
use proto::frame::Frame;
use proto::ldlm::{
    self, LdlmInodebits, LdlmIntent, LdlmLockDesc, LdlmReply, LdlmRequest, Policy, disp, ibits, it,
    lock_type, mode,
};
use proto::llog::{LlogLogid, LlogdBody, llh_flags};
use proto::lnet::{
    AcceptorRequest, Hello, KsockMsgHdr, LnetAcceptorConnreq, LnetAck, LnetBody, LnetGet,
    LnetHandleWire, LnetPut, LnetReply, PID_LUSTRE, PING_MATCHBITS, PingInfo, conn_type,
    ksock_version,
};
use proto::lov::{LovMd, LovOstDataV1, magic, pattern};
use proto::mdt::{
    self, MdtBody, MdtIoepoch, MdtRecCreate, MdtRecRename, MdtRecSetattr, MdtRecUnlink, md,
};
use proto::msg::{LustreMsg, PTLRPC_REPLY_OFFSET_AT, msghdr};
use proto::nid::Nid;
use proto::opcode::{Opcode, reint};
use proto::ost::{NiobufRemote, ObdIoobj, Obdo, brw, obd_fl};
use proto::portal;
use proto::rmf;
use proto::wire::{Wire, cstr_array};
use std::io::Write;
use std::time::Duration;

/// The opcodes the conversation exercises, each as a request and a reply.
pub(crate) const OPCODES: &[Opcode] = &[
    Opcode::MgsConnect,
    Opcode::LdlmEnqueue,
    Opcode::LlogOriginHandleCreate,
    Opcode::LlogOriginHandleReadHeader,
    Opcode::LlogOriginHandleNextBlock,
    Opcode::MdsConnect,
    Opcode::MdsGetRoot,
    Opcode::MdsGetattr,
    Opcode::SeqQuery,
    Opcode::MdsReint,
    Opcode::MdsReadpage,
    Opcode::MdsClose,
    Opcode::OstConnect,
    Opcode::OstWrite,
    Opcode::OstRead,
    Opcode::OstPunch,
    Opcode::ObdPing,
    Opcode::LdlmBlCallback,
    Opcode::LdlmCancel,
];

/// The client's NID.
pub(crate) const CLIENT_IP: [u8; 4] = [127, 0, 0, 1];
/// The servers' NID.
pub(crate) const SERVER_IP: [u8; 4] = [127, 0, 0, 2];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn tcp_checksum(src: [u8; 4], dst: [u8; 4], seg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            sum += u32::from(w);
        }
    };
    add(&src);
    add(&dst);
    add(&[0, 6]);
    add(&u16::try_from(seg.len()).unwrap_or(u16::MAX).to_be_bytes());
    add(seg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One TCP connection's sequence numbers.
struct Conn {
    cport: u16,
    cseq: u32,
    sseq: u32,
}

/// Writes segments of the conversation.
struct Capture<W: Write> {
    w: PcapWriter<W>,
    t: Duration,
    conns: Vec<Conn>,
    frames: usize,
}

impl<W: Write> Capture<W> {
    fn segment(&mut self, conn: usize, from_client: bool, payload: &[u8]) -> Res<()> {
        let c = &mut self.conns[conn];
        let (src, dst, sport, dport, seq, ack) = if from_client {
            (CLIENT_IP, SERVER_IP, c.cport, 988, c.cseq, c.sseq)
        } else {
            (SERVER_IP, CLIENT_IP, 988, c.cport, c.sseq, c.cseq)
        };
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let cs = tcp_checksum(src, dst, &tcp);
        tcp[16..18].copy_from_slice(&cs.to_be_bytes());
        let total = u16::try_from(20 + tcp.len())?;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let ics = ip_checksum(&ip);
        ip[10..12].copy_from_slice(&ics.to_be_bytes());
        let mut frame = vec![
            2,
            0,
            0,
            0,
            0,
            if from_client { 2 } else { 1 },
            2,
            0,
            0,
            0,
            0,
            if from_client { 1 } else { 2 },
            8,
            0,
        ];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&tcp);
        let n = u32::try_from(payload.len())?;
        if from_client {
            c.cseq = c.cseq.wrapping_add(n);
        } else {
            c.sseq = c.sseq.wrapping_add(n);
        }
        self.t += Duration::from_micros(250);
        self.w.write_packet(&PcapPacket::new(self.t, u32::try_from(frame.len())?, &frame))?;
        self.frames += 1;
        Ok(())
    }
}

/// Which socket a message goes on, the way a kernel peer with typed connections chooses.
const CONTROL: usize = 0;
const BULK_OUT: usize = 1; // client -> server large messages
const BULK_IN: usize = 2; // server -> client large messages

struct Conversation<W: Write> {
    cap: Capture<W>,
    client: Nid,
    server: Nid,
    xid: u64,
    server_xid: u64,
    next_cookie: u64,
}

/// Export cookies handed out by the servers.
const MGS_EXPORT: u64 = 0x5a5a_0000_0000_0001;
const MDT_EXPORT: u64 = 0x5a5a_0000_0000_0002;
const OST_EXPORT: u64 = 0x5a5a_0000_0000_0003;
/// The client's own connection cookie (`imp_dlm_handle`), used by servers for callbacks.
const CLIENT_CONN: u64 = 0xc11e_0000_0000_0001;

impl<W: Write> Conversation<W> {
    fn client_msg(&mut self, body: &LnetBody, payload: Vec<u8>) -> Res<()> {
        let conn = if payload.len() < 1024 { CONTROL } else { BULK_OUT };
        let f = Frame::lnet(self.server, self.client, body, payload)?;
        self.cap.segment(conn, true, &f.to_vec())
    }

    fn server_msg(&mut self, body: &LnetBody, payload: Vec<u8>) -> Res<()> {
        let conn = if payload.len() < 1024 { CONTROL } else { BULK_IN };
        let f = Frame::lnet(self.client, self.server, body, payload)?;
        self.cap.segment(conn, false, &f.to_vec())
    }

    fn put_body(portal: u32, mbits: u64, offset: u32, ack: Option<LnetHandleWire>) -> LnetBody {
        LnetBody::Put(LnetPut {
            ack_wmd: ack.unwrap_or(LnetHandleWire::NONE),
            match_bits: mbits.into(),
            hdr_data: 0.into(),
            ptl_index: portal.into(),
            offset: offset.into(),
        })
    }

    /// Sends a request built by `b` (its xid in match bits) to `portal`; returns the xid and
    /// the encoded request.
    fn request(
        &mut self,
        portal: u32,
        mut b: MsgBuilder,
        handle: u64,
        connect: bool,
    ) -> Res<(u64, Vec<u8>)> {
        self.xid += 128;
        let xid = self.xid;
        {
            let body = b.body_mut();
            body.pb_handle = LustreHandle::new(handle);
            body.pb_conn_cnt = 1.into();
            body.pb_timeout = 10.into();
            body.pb_last_xid = (xid - 128).into();
            body.pb_mbits = xid.into();
            body.pb_jobid = cstr_array("pb_jobid", "rustre.0").map_err(|e| e.to_string())?;
            if connect {
                body.pb_op_flags = (msg_connect::INITIAL | msg_connect::NEXT_VER).into();
            }
        }
        if connect {
            b.hdr_mut().flags = 0;
        }
        b.hdr_mut().repsize = 4096;
        let m = b.build()?;
        self.client_msg(&Self::put_body(portal, xid, 0, None), m.clone())?;
        Ok((xid, m))
    }

    /// Sends the reply `b` to the client's `reply_portal` for request `req`.
    fn reply(&mut self, reply_portal: u32, req: &[u8], mut b: MsgBuilder) -> Res<()> {
        let r = LustreMsg::decode(req)?;
        let rb = r.body()?;
        let xid = rb.pb_mbits.get();
        let offset = if r.header().lm_flags.get() & msghdr::AT_SUPPORT != 0 {
            PTLRPC_REPLY_OFFSET_AT
        } else {
            0
        };
        b.body_mut().pb_last_committed = 0x10.into();
        let m = b.build()?;
        self.server_msg(&Self::put_body(reply_portal, xid, offset, None), m)
    }

    fn fmt(id: &str) -> Res<&'static rmf::Fmt> {
        rmf::format(id).ok_or_else(|| format!("no format {id}").into())
    }

    fn cookie(&mut self) -> u64 {
        self.next_cookie += 1;
        self.next_cookie
    }
}

fn uuid39(s: &str) -> Res<Vec<u8>> {
    Ok(cstr_array::<39>("uuid", s).map_err(|e| e.to_string())?.to_vec())
}

fn ocd(flags: u64, flags2: u64) -> ObdConnectData {
    let mut d = <ObdConnectData as zerocopy::FromZeros>::new_zeroed();
    d.ocd_connect_flags = flags.into();
    d.ocd_connect_flags2 = flags2.into();
    d.ocd_version = ObdConnectData::version(2, 15, 8, 0).into();
    d.ocd_ibits_known = ibits::FULL.into();
    d.ocd_brw_size = (1u32 << 20).into();
    d.ocd_cksum_types = (connect::cksum::CRC32C | connect::cksum::ADLER).into();
    d
}

/// Builds the conversation into `w`. Returns the number of packets written.
pub(crate) fn write<W: Write>(w: W) -> Res<usize> {
    let mut cv = Conversation {
        cap: Capture {
            w: PcapWriter::new(w)?,
            t: Duration::from_secs(1_763_000_000),
            conns: vec![
                Conn { cport: 1023, cseq: 1000, sseq: 50_000 },
                Conn { cport: 1022, cseq: 2000, sseq: 60_000 },
                Conn { cport: 1021, cseq: 3000, sseq: 70_000 },
            ],
            frames: 0,
        },
        client: Nid::tcp(CLIENT_IP),
        server: Nid::tcp(SERVER_IP),
        xid: 1_763_000_000u64 << 20,
        server_xid: 1_763_000_123u64 << 20,
        next_cookie: 0x10c4_0000_0000_0000,
    };
    let (c, s) = (cv.client, cv.server);

    // -- LNet: acceptor request and hello on each typed connection, both ways.
    for (conn, ctype) in [
        (CONTROL, conn_type::CONTROL),
        (BULK_OUT, conn_type::BULK_OUT),
        (BULK_IN, conn_type::BULK_IN),
    ] {
        let mut open = LnetAcceptorConnreq::new(s).to_vec();
        let hello = |src, dst, ctype, inc| Hello {
            version: ksock_version::V3,
            src_nid: src,
            dst_nid: dst,
            src_pid: PID_LUSTRE,
            dst_pid: PID_LUSTRE,
            src_incarnation: inc,
            dst_incarnation: 0,
            ctype,
            nips: 0,
        };
        hello(c, s, ctype, 0x1111).encode(&mut open)?;
        AcceptorRequest::decode(&open)?;
        cv.cap.segment(conn, true, &open)?;
        let mut back = Vec::new();
        let mut h = hello(s, c, conn_type::invert(ctype), 0x2222);
        h.dst_incarnation = 0x1111;
        h.encode(&mut back)?;
        cv.cap.segment(conn, false, &back)?;
    }

    // -- LNet discovery ping, both directions.
    let ping_get = |wmd: u64| {
        LnetBody::Get(LnetGet {
            return_wmd: LnetHandleWire::new(0x1111, wmd),
            match_bits: PING_MATCHBITS.into(),
            ptl_index: 0.into(),
            src_offset: 0.into(),
            sink_length: 4096.into(),
        })
    };
    cv.client_msg(&ping_get(1), Vec::new())?;
    let mut pi = Vec::new();
    PingInfo::for_nids(PID_LUSTRE, &[s]).encode(&mut pi);
    cv.server_msg(&LnetBody::Reply(LnetReply { dst_wmd: LnetHandleWire::new(0x1111, 1) }), pi)?;
    cv.server_msg(&ping_get(2), Vec::new())?;
    let mut pi = Vec::new();
    PingInfo::for_nids(PID_LUSTRE, &[c]).encode(&mut pi);
    cv.client_msg(&LnetBody::Reply(LnetReply { dst_wmd: LnetHandleWire::new(0x1111, 2) }), pi)?;

    // -- MGS_CONNECT.
    let conn_handle = LustreHandle::new(CLIENT_CONN);
    let b = MsgBuilder::request(Opcode::MgsConnect)?
        .set("TGTUUID", uuid39("MGS")?)?
        .set("CLUUID", uuid39("c0ffee00-1111-2222-3333-444455556666")?)?
        .wire("CONN", &conn_handle)?
        .wire("CONNECT_DATA", &ocd(connect::MGC_CONNECT_FLAGS, connect::MGC_CONNECT_FLAGS2))?;
    let (_, req) = cv.request(portal::MGS_REQUEST, b, 0, true)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let mut rep = MsgBuilder::reply(Conversation::<W>::fmt("CONNECT")?, &rb).wire(
        "CONNECT_DATA",
        &ocd(connect::MGC_CONNECT_FLAGS & !ocf::BARRIER, connect::MGC_CONNECT_FLAGS2),
    )?;
    rep.body_mut().pb_handle = LustreHandle::new(MGS_EXPORT);
    cv.reply(portal::MGC_REPLY, &req, rep)?;

    // -- LDLM_ENQUEUE: PLAIN CR on the config resource {"rustre", 0}.
    let res = LdlmResId::mgs_config("rustre", 0)?;
    let client_lock = cv.cookie();
    let enq = LdlmRequest {
        lock_flags: 0,
        lock_desc: LdlmLockDesc::new(lock_type::PLAIN, res, mode::CR, &Policy::Plain),
        handles: vec![LustreHandle::new(client_lock)],
    };
    let b = MsgBuilder::request(Opcode::LdlmEnqueue)?.set("DLM_REQ", enq.to_vec())?;
    let (_, req) = cv.request(portal::MGS_REQUEST, b, MGS_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let mut granted = enq.lock_desc;
    granted.l_granted_mode = mode::CR.into();
    let server_lock = cv.cookie();
    let dlm_rep = LdlmReply {
        lock_desc: granted,
        lock_handle: LustreHandle::new(server_lock),
        ..Default::default()
    };
    let rep = MsgBuilder::reply(Conversation::<W>::fmt("LDLM_ENQUEUE_LVB")?, &rb)
        .wire("DLM_REP", &dlm_rep)?
        .set("DLM_LVB", Vec::new())?;
    cv.reply(portal::MGC_REPLY, &req, rep)?;

    // -- The client config log over llog RPCs.
    let spec = ClientLogSpec {
        fsname: "rustre".into(),
        stripe_size: 1 << 20,
        stripe_count: 1,
        mdts: vec![CfgTarget { svname: "rustre-MDT0000".into(), index: 0, nids: vec![s] }],
        osts: vec![CfgTarget { svname: "rustre-OST0000".into(), index: 0, nids: vec![s] }],
        version: ObdConnectData::version(2, 15, 8, 0),
        time: 1_763_000_000,
    };
    let log = spec.to_log()?;
    let logid = LlogLogid {
        lgl_oi: OstId::from_fid(LuFid::new(proto::fid::seq::LLOG_NAME, 7, 0)),
        lgl_ogen: 0.into(),
    };
    let b = MsgBuilder::request(Opcode::LlogOriginHandleCreate)?
        .wire("LLOGD_BODY", &LlogdBody::default())?
        .set("NAME", b"rustre-client\0".to_vec())?;
    let (_, req) = cv.request(portal::MGS_REQUEST, b, MGS_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let body = LlogdBody {
        lgd_logid: logid,
        lgd_llh_flags: llh_flags::IS_PLAIN.into(),
        ..Default::default()
    };
    cv.reply(
        portal::MGC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("LLOG_ORIGIN_HANDLE_CREATE")?, &rb)
            .wire("LLOGD_BODY", &body)?,
    )?;

    let b = MsgBuilder::request(Opcode::LlogOriginHandleReadHeader)?.wire("LLOGD_BODY", &body)?;
    let (_, req) = cv.request(portal::MGS_REQUEST, b, MGS_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    cv.reply(
        portal::MGC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("LLOG_ORIGIN_HANDLE_READ_HEADER")?, &rb)
            .wire("LLOG_LOG_HDR", &log.header)?,
    )?;

    let (chunk, last, next_off) = log.chunk_at(8192).ok_or("empty log")?;
    let mut nb = body;
    nb.lgd_index = 1.into();
    nb.lgd_cur_offset = 8192.into();
    nb.lgd_len = 8192.into();
    let b = MsgBuilder::request(Opcode::LlogOriginHandleNextBlock)?.wire("LLOGD_BODY", &nb)?;
    let (_, req) = cv.request(portal::MGS_REQUEST, b, MGS_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let mut rbody = nb;
    rbody.lgd_saved_index = last.into();
    rbody.lgd_cur_offset = next_off.into();
    cv.reply(
        portal::MGC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("LLOG_ORIGIN_HANDLE_NEXT_BLOCK")?, &rb)
            .wire("LLOGD_BODY", &rbody)?
            .set("EADATA", chunk)?,
    )?;
    // End of log: a REPLY with -EBADR that still carries the body.
    let mut nb2 = nb;
    nb2.lgd_index = (last + 1).into();
    nb2.lgd_cur_offset = next_off.into();
    let b = MsgBuilder::request(Opcode::LlogOriginHandleNextBlock)?.wire("LLOGD_BODY", &nb2)?;
    let (_, req) = cv.request(portal::MGS_REQUEST, b, MGS_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let mut end = MsgBuilder::reply(Conversation::<W>::fmt("LLOG_ORIGIN_HANDLE_NEXT_BLOCK")?, &rb)
        .wire("LLOGD_BODY", &nb2)?
        .set("EADATA", Vec::new())?;
    end.body_mut().pb_status = (-53).into();
    cv.reply(portal::MGC_REPLY, &req, end)?;

    // -- MDS_CONNECT.
    let b = MsgBuilder::request(Opcode::MdsConnect)?
        .set("TGTUUID", uuid39("rustre-MDT0000_UUID")?)?
        .set("CLUUID", uuid39("c0ffee00-aaaa-bbbb-cccc-ddddeeeeffff")?)?
        .wire("CONN", &conn_handle)?
        .wire("CONNECT_DATA", &ocd(connect::MDC_CONNECT_FLAGS, connect::MDC_CONNECT_FLAGS2))?;
    let (_, req) = cv.request(portal::MDS_REQUEST, b, 0, true)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let granted = ocf::FID
        | ocf::ATTRFID
        | ocf::FULL20
        | ocf::VERSION
        | ocf::IBITS
        | ocf::AT
        | ocf::FLAGS2
        | ocf::BULK_MBITS
        | ocf::LOV_V3
        | ocf::MAX_EASIZE;
    let mut d =
        ocd(granted & connect::MDC_CONNECT_FLAGS, ocf2::REP_MBITS & connect::MDC_CONNECT_FLAGS2);
    d.ocd_max_easize = 65536.into();
    let mut rep =
        MsgBuilder::reply(Conversation::<W>::fmt("MDS_CONNECT")?, &rb).wire("CONNECT_DATA", &d)?;
    rep.body_mut().pb_handle = LustreHandle::new(MDT_EXPORT);
    cv.reply(portal::MDC_REPLY, &req, rep)?;

    // -- MDS_GET_ROOT.
    let b = MsgBuilder::request(Opcode::MdsGetRoot)?.set("NAME", Vec::new())?;
    let (_, req) = cv.request(portal::MDS_REQUEST, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let root = MdtBody { mbo_fid1: LuFid::ROOT, mbo_valid: md::FLID.into(), ..Default::default() };
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("MDS_GET_ROOT")?, &rb).wire("MDT_BODY", &root)?,
    )?;

    // -- MDS_GETATTR on the root (2.15 clients send it to the readpage portal).
    let q = MdtBody {
        mbo_fid1: LuFid::ROOT,
        mbo_valid: (md::FLGETATTR | md::FLEASIZE | md::FLDIREA).into(),
        mbo_eadatasize: 4096.into(),
        ..Default::default()
    };
    let b = MsgBuilder::request(Opcode::MdsGetattr)?.wire("MDT_BODY", &q)?;
    let (_, req) = cv.request(portal::MDS_READPAGE, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let attrs = MdtBody {
        mbo_fid1: LuFid::ROOT,
        mbo_valid: (md::FLGETATTR & !md::FLBTIME).into(),
        mbo_mode: 0o40755.into(),
        mbo_nlink: 2.into(),
        mbo_size: 4096.into(),
        mbo_mtime: 1_763_000_000.into(),
        mbo_ctime: 1_763_000_000.into(),
        mbo_atime: 1_763_000_000.into(),
        ..Default::default()
    };
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("MDS_GETATTR")?, &rb)
            .wire("MDT_BODY", &attrs)?
            .set_sized("MDT_MD", Vec::new())?,
    )?;

    // -- SEQ_QUERY: the client's first create needs a FID sequence.
    let b = MsgBuilder::request(Opcode::SeqQuery)?
        .set("SEQ_OPC", seq_op::ALLOC_META.to_le_bytes().to_vec())?
        .wire("SEQ_RANGE", &LuSeqRange::new(0, 0, 0, seq_range_flags::MDT))?;
    let (_, req) = cv.request(portal::SEQ_METADATA, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let seq_base = proto::fid::seq::NORMAL + 0x10;
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("SEQ_QUERY")?, &rb)
            .wire("SEQ_RANGE", &LuSeqRange::new(seq_base, seq_base + 1, 0, seq_range_flags::MDT))?,
    )?;

    // -- LDLM_ENQUEUE with IT_OPEN|IT_CREAT: create and open "file".
    let file = LuFid::new(seq_base, 1, 0);
    let ost_obj = LuFid::new(0x1_0000_0000 | 0x400, 1, 0);
    let enq = LdlmRequest {
        lock_flags: ldlm::flags::HAS_INTENT,
        lock_desc: LdlmLockDesc::new(
            lock_type::IBITS,
            LuFid::ROOT.res_id(),
            mode::CW,
            &Policy::Ibits(LdlmInodebits { bits: ibits::LOOKUP.into(), ..Default::default() }),
        ),
        handles: vec![LustreHandle::new(cv.cookie())],
    };
    let mut rec = MdtRecCreate {
        cr_opcode: reint::OPEN.into(),
        cr_fid1: LuFid::ROOT,
        cr_fid2: file,
        cr_mode: 0o100644.into(),
        cr_time: 1_763_000_001.into(),
        cr_umask: 0o022.into(),
        ..Default::default()
    };
    rec.set_open_flags(
        mdt::open::FMODE_READ | mdt::open::FMODE_WRITE | mdt::open::CREAT | mdt::open::TRUNC,
    );
    let b =
        MsgBuilder::request_fmt(Conversation::<W>::fmt("LDLM_INTENT_OPEN")?, Opcode::LdlmEnqueue)
            .set("DLM_REQ", enq.to_vec())?
            .wire("LDLM_INTENT", &LdlmIntent { opc: (it::OPEN | it::CREAT).into() })?
            .wire("REC_REINT", &rec)?
            .set("NAME", b"file\0".to_vec())?
            .set("EADATA", Vec::new())?;
    let (_, req) = cv.request(portal::MDS_REQUEST, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let layout = LovMd {
        magic: magic::V1,
        pattern: pattern::RAID0,
        oi: OstId::from_fid(file),
        stripe_size: 1 << 20,
        stripe_count: 1,
        layout_gen: 0,
        pool: String::new(),
        objects: vec![LovOstDataV1 {
            l_ost_oi: OstId::from_fid(ost_obj),
            l_ost_gen: 0.into(),
            l_ost_idx: 0.into(),
        }],
    }
    .to_vec()?;
    let mut granted = enq.lock_desc;
    granted.l_resource.lr_name = file.res_id();
    granted.l_granted_mode = mode::CW.into();
    let dlm_rep = LdlmReply {
        lock_flags: ldlm::flags::LOCK_CHANGED.into(),
        lock_desc: granted,
        lock_handle: LustreHandle::new(cv.cookie()),
        lock_policy_res1: (disp::IT_EXECD
            | disp::LOOKUP_EXECD
            | disp::LOOKUP_NEG
            | disp::OPEN_CREATE
            | disp::OPEN_OPEN)
            .into(),
        ..Default::default()
    };
    let open_handle = LustreHandle::new(cv.cookie());
    let child = MdtBody {
        mbo_fid1: file,
        mbo_open_handle: open_handle,
        mbo_valid: (md::FLID
            | md::FLMODE
            | md::FLTYPE
            | md::FLNLINK
            | md::FLEASIZE
            | md::FLHANDLE
            | md::FLSIZE)
            .into(),
        mbo_mode: 0o100644.into(),
        mbo_nlink: 1.into(),
        mbo_eadatasize: u32::try_from(layout.len())?.into(),
        ..Default::default()
    };
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("LDLM_INTENT_OPEN")?, &rb)
            .wire("DLM_REP", &dlm_rep)?
            .wire("MDT_BODY", &child)?
            .set("MDT_MD", layout.clone())?
            // No Data-on-MDT: a 2.15 server shrinks the inline niobuf to nothing.
            .set_sized("NIOBUF_INLINE", Vec::new())?,
    )?;

    // -- MDS_REINT create: mkdir "dir".
    let dir = LuFid::new(seq_base, 2, 0);
    let mk = MdtRecCreate {
        cr_opcode: reint::CREATE.into(),
        cr_fid1: LuFid::ROOT,
        cr_fid2: dir,
        cr_mode: 0o40755.into(),
        cr_time: 1_763_000_002.into(),
        cr_umask: 0o022.into(),
        ..Default::default()
    };
    let b =
        MsgBuilder::request_fmt(Conversation::<W>::fmt("MDS_REINT_CREATE_ACL")?, Opcode::MdsReint)
            .wire("REC_REINT", &mk)?
            .set("NAME", b"dir\0".to_vec())?
            .set("EADATA", Vec::new())?;
    let (_, req) = cv.request(portal::MDS_REQUEST, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let mut made = MdtBody {
        mbo_fid1: dir,
        mbo_valid: (md::FLID | md::FLMODE | md::FLTYPE | md::FLNLINK).into(),
        mbo_mode: 0o40755.into(),
        mbo_nlink: 2.into(),
        ..Default::default()
    };
    made.mbo_fid2 = LuFid::ROOT;
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("MDS_REINT_CREATE_ACL")?, &rb)
            .wire("MDT_BODY", &made)?,
    )?;

    // -- MDS_REINT rename: "dir" -> "dir2".
    let rn = MdtRecRename {
        rn_opcode: reint::RENAME.into(),
        rn_fid1: LuFid::ROOT,
        rn_fid2: LuFid::ROOT,
        rn_time: 1_763_000_003.into(),
        rn_mode: 0o40755.into(),
        ..Default::default()
    };
    let b = MsgBuilder::request_fmt(Conversation::<W>::fmt("MDS_REINT_RENAME")?, Opcode::MdsReint)
        .wire("REC_REINT", &rn)?
        .set("NAME", b"dir\0".to_vec())?
        .set("SYMTGT", b"dir2\0".to_vec())?;
    let (_, req) = cv.request(portal::MDS_REQUEST, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("MDS_REINT_RENAME")?, &rb)
            .wire("MDT_BODY", &made)?
            .set_sized("MDT_MD", Vec::new())?,
    )?;

    // -- MDS_READPAGE of the root, with its bulk PUT to the client's MDS bulk portal.
    let rd = MdtBody {
        mbo_fid1: LuFid::ROOT,
        mbo_valid: md::FLID.into(),
        mbo_size: 0.into(),
        mbo_nlink: 4096.into(),
        mbo_mode: (luda::FID | luda::TYPE).into(),
        ..Default::default()
    };
    let b = MsgBuilder::request(Opcode::MdsReadpage)?.wire("MDT_BODY", &rd)?;
    let (xid, req) = cv.request(portal::MDS_READPAGE, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let entries = [
        DirEntry { fid: LuFid::ROOT, hash: 0x10, name: b".".to_vec(), mode_type: Some(0o040000) },
        DirEntry { fid: LuFid::ROOT, hash: 0x20, name: b"..".to_vec(), mode_type: Some(0o040000) },
        DirEntry { fid: dir, hash: 0x30, name: b"dir2".to_vec(), mode_type: Some(0o040000) },
        DirEntry { fid: file, hash: 0x40, name: b"file".to_vec(), mode_type: Some(0o100000) },
    ];
    let (page, _) = build_page(&entries, None, luda::FID | luda::TYPE | luda::BIT64HASH)?;
    let ack = LnetHandleWire::new(0x2222, 0x77);
    cv.server_msg(
        &Conversation::<W>::put_body(portal::MDS_BULK, rb.pb_mbits.get(), 0, Some(ack)),
        page,
    )?;
    cv.client_msg(
        &LnetBody::Ack(LnetAck { dst_wmd: ack, match_bits: xid.into(), mlength: 4096.into() }),
        Vec::new(),
    )?;
    let done = MdtBody {
        mbo_fid1: LuFid::ROOT,
        mbo_size: proto::dir::MDS_DIR_END_OFF.into(),
        mbo_nlink: 4096.into(),
        ..Default::default()
    };
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("MDS_READPAGE")?, &rb).wire("MDT_BODY", &done)?,
    )?;

    // -- OST_CONNECT.
    let b = MsgBuilder::request(Opcode::OstConnect)?
        .set("TGTUUID", uuid39("rustre-OST0000_UUID")?)?
        .set("CLUUID", uuid39("c0ffee00-aaaa-bbbb-cccc-ddddeeeeffff")?)?
        .wire("CONN", &conn_handle)?
        .wire("CONNECT_DATA", &ocd(connect::OSC_CONNECT_FLAGS, connect::OSC_CONNECT_FLAGS2))?;
    let (_, req) = cv.request(portal::OST_REQUEST, b, 0, true)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let mut d = ocd(
        connect::OSC_CONNECT_FLAGS
            & (ocf::GRANT
                | ocf::VERSION
                | ocf::AT
                | ocf::FID
                | ocf::FULL20
                | ocf::CKSUM
                | ocf::BRW_SIZE
                | ocf::MAXBYTES
                | ocf::BULK_MBITS
                | ocf::FLAGS2),
        0,
    );
    d.ocd_grant = (32u32 << 20).into();
    d.ocd_maxbytes = (1u64 << 44).into();
    let mut rep =
        MsgBuilder::reply(Conversation::<W>::fmt("OST_CONNECT")?, &rb).wire("CONNECT_DATA", &d)?;
    rep.body_mut().pb_handle = LustreHandle::new(OST_EXPORT);
    cv.reply(portal::OSC_REPLY, &req, rep)?;

    // -- OST_WRITE: 8 KiB with a CRC32C; the server GETs the data from the client.
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut oa = Obdo {
        o_valid: (md::FLID | md::FLGROUP | md::FLBLOCKS | md::FLGRANT | md::FLCKSUM | md::FLFLAGS)
            .into(),
        o_oi: OstId::from_fid(ost_obj),
        o_flags: obd_fl::CKSUM_CRC32C.into(),
        ..Default::default()
    };
    oa.set_cksum(crc32c_of(&data));
    let mut ioo =
        ObdIoobj { ioo_oid: OstId::from_fid(ost_obj), ioo_bufcnt: 1.into(), ..Default::default() };
    ioo.set_md_count(1);
    let nb =
        NiobufRemote { rnb_offset: 0.into(), rnb_len: 8192.into(), rnb_flags: brw::WRITE.into() };
    let b = MsgBuilder::request(Opcode::OstWrite)?
        .wire("OST_BODY", &oa)?
        .wire("OBD_IOOBJ", &ioo)?
        .wire("NIOBUF_REMOTE", &nb)?;
    let (xid, req) = cv.request(portal::OST_IO, b, OST_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let wmd = LnetHandleWire::new(0x2222, 0x88);
    cv.server_msg(
        &LnetBody::Get(LnetGet {
            return_wmd: wmd,
            match_bits: xid.into(),
            ptl_index: portal::OST_BULK.into(),
            src_offset: 0.into(),
            sink_length: 8192.into(),
        }),
        Vec::new(),
    )?;
    cv.client_msg(&LnetBody::Reply(LnetReply { dst_wmd: wmd }), data.clone())?;
    let rep_oa = Obdo {
        o_valid: (md::FLGRANT | md::FLCKSUM).into(),
        o_oi: OstId::from_fid(ost_obj),
        o_grant: (32u64 << 20).into(),
        ..Default::default()
    };
    cv.reply(
        portal::OSC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("OST_BRW_WRITE")?, &rb)
            .wire("OST_BODY", &rep_oa)?
            .set("RCS", 0i32.to_le_bytes().to_vec())?,
    )?;

    // -- OST_READ: the server PUTs the data with an ACK requested.
    let nb =
        NiobufRemote { rnb_offset: 0.into(), rnb_len: 8192.into(), rnb_flags: brw::READ.into() };
    let mut roa = oa;
    roa.set_cksum(0);
    let b = MsgBuilder::request(Opcode::OstRead)?
        .wire("OST_BODY", &roa)?
        .wire("OBD_IOOBJ", &ioo)?
        .wire("NIOBUF_REMOTE", &nb)?;
    let (xid, req) = cv.request(portal::OST_IO, b, OST_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let ack = LnetHandleWire::new(0x2222, 0x99);
    cv.server_msg(&Conversation::<W>::put_body(portal::OST_BULK, xid, 0, Some(ack)), data.clone())?;
    cv.client_msg(
        &LnetBody::Ack(LnetAck { dst_wmd: ack, match_bits: xid.into(), mlength: 8192.into() }),
        Vec::new(),
    )?;
    let mut got = oa;
    got.o_valid = (md::FLCKSUM | md::FLFLAGS).into();
    cv.reply(
        portal::OSC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("OST_BRW_READ")?, &rb).wire("OST_BODY", &got)?,
    )?;

    // -- OST_PUNCH: truncate to 4096.
    let p = Obdo {
        o_valid: (md::FLID | md::FLSIZE | md::FLBLOCKS).into(),
        o_oi: OstId::from_fid(ost_obj),
        o_size: 4096.into(),
        o_blocks: u64::MAX.into(),
        ..Default::default()
    };
    let b = MsgBuilder::request(Opcode::OstPunch)?.wire("OST_BODY", &p)?;
    let (_, req) = cv.request(portal::OST_IO, b, OST_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    cv.reply(
        portal::OSC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("OST_PUNCH")?, &rb).wire("OST_BODY", &p)?,
    )?;

    // -- MDS_CLOSE of "file", with the size the client wrote.
    let sa = MdtRecSetattr {
        sa_opcode: reint::SETATTR.into(),
        sa_fid: file,
        sa_valid: (mdt::attr::SIZE | mdt::attr::MTIME | mdt::attr::MTIME_SET).into(),
        sa_size: 4096.into(),
        sa_mtime: 1_763_000_004.into(),
        sa_bias: mdt::bias::DATA_MODIFIED.into(),
        ..Default::default()
    };
    let b = MsgBuilder::request(Opcode::MdsClose)?
        .wire("MDT_EPOCH", &MdtIoepoch { mio_open_handle: open_handle, ..Default::default() })?
        .wire("REC_REINT", &sa)?;
    let (_, req) = cv.request(portal::MDS_READPAGE, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("MDS_CLOSE")?, &rb)
            .wire("MDT_BODY", &child)?
            .set_sized("MDT_MD", Vec::new())?,
    )?;

    // -- MDS_REINT unlink "file": the last link, so the reply carries the layout.
    let ul = MdtRecUnlink {
        ul_opcode: reint::UNLINK.into(),
        ul_fid1: LuFid::ROOT,
        ul_fid2: file,
        ul_time: 1_763_000_005.into(),
        ul_mode: 0o100644.into(),
        ..Default::default()
    };
    let b = MsgBuilder::request_fmt(Conversation::<W>::fmt("MDS_REINT_UNLINK")?, Opcode::MdsReint)
        .wire("REC_REINT", &ul)?
        .set("NAME", b"file\0".to_vec())?;
    let (_, req) = cv.request(portal::MDS_REQUEST, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    let mut gone = child;
    gone.mbo_nlink = 0.into();
    cv.reply(
        portal::MDC_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("MDS_REINT_UNLINK")?, &rb)
            .wire("MDT_BODY", &gone)?
            .set("MDT_MD", layout)?,
    )?;

    // -- OBD_PING to the MDT.
    let b = MsgBuilder::request(Opcode::ObdPing)?;
    let (_, req) = cv.request(portal::MDS_REQUEST, b, MDT_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    cv.reply(portal::MDC_REPLY, &req, MsgBuilder::reply(Conversation::<W>::fmt("OBD_PING")?, &rb))?;

    // -- LDLM_BL_CALLBACK from the MGS: the config changed, give the lock back.
    cv.server_xid += 128;
    let sx = cv.server_xid;
    let bl = LdlmRequest {
        lock_flags: 0,
        lock_desc: {
            let mut d = LdlmLockDesc::new(lock_type::PLAIN, res, mode::CR, &Policy::Plain);
            d.l_granted_mode = mode::CR.into();
            d
        },
        handles: vec![LustreHandle::new(client_lock), LustreHandle::new(server_lock)],
    };
    let mut b = MsgBuilder::request(Opcode::LdlmBlCallback)?.set("DLM_REQ", bl.to_vec())?;
    b.body_mut().pb_handle = conn_handle;
    b.body_mut().pb_mbits = sx.into();
    let m = b.build()?;
    cv.server_msg(&Conversation::<W>::put_body(portal::LDLM_CB_REQUEST, sx, 0, None), m.clone())?;
    let rb = LustreMsg::decode(&m)?.body()?;
    let cb_rep = MsgBuilder::reply(Conversation::<W>::fmt("LDLM_BL_CALLBACK")?, &rb).build()?;
    cv.client_msg(
        &Conversation::<W>::put_body(portal::LDLM_CB_REPLY, sx, PTLRPC_REPLY_OFFSET_AT, None),
        cb_rep,
    )?;

    // -- LDLM_CANCEL of that lock.
    let cancel = LdlmRequest {
        lock_flags: 0,
        lock_desc: bl.lock_desc,
        handles: vec![LustreHandle::new(server_lock)],
    };
    let b = MsgBuilder::request(Opcode::LdlmCancel)?.set("DLM_REQ", cancel.to_vec())?;
    let (_, req) = cv.request(portal::LDLM_CANCEL_REQUEST, b, MGS_EXPORT, false)?;
    let rb = LustreMsg::decode(&req)?.body()?;
    cv.reply(
        portal::LDLM_CANCEL_REPLY,
        &req,
        MsgBuilder::reply(Conversation::<W>::fmt("LDLM_CANCEL")?, &rb),
    )?;

    // -- A keepalive NOOP.
    cv.cap.segment(CONTROL, true, &KsockMsgHdr::noop(0, 1).to_vec())?;
    Ok(cv.cap.frames)
}

fn crc32c_of(data: &[u8]) -> u32 {
    // Standard CRC32C (Castagnoli), bitwise: the test needs no speed.
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
        }
    }
    !c
}

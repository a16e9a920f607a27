//! What every target does the same way: connect (export creation and flag negotiation), export
//! admission (unknown handles, resends, in-flight bounds), pings, disconnects, lock cancels,
//! error replies; then the target's own handlers.

use crate::ldlm::ExportId;
use crate::shard::{Shard, TargetId, drop_export_everywhere};
use crate::store::TargetKind;
use proto::body::PtlrpcBodyV3;
use proto::build::MsgBuilder;
use proto::connect::{ObdConnectData, cksum, flags as ocf, flags2 as ocf2};
use proto::ldlm::LdlmRequest;
use proto::opcode::Opcode;
use proto::rmf;
use proto::wire::{Wire, cstr};
use ptlrpc::error::errno;
use ptlrpc::export::{Admit, ConnectReq};
use ptlrpc::{Incoming, server};
use std::rc::Rc;
use std::time::Instant;

/// The Lustre version we announce (2.15.8).
pub const OCD_VERSION: u32 = ObdConnectData::version(2, 15, 8, 0);
/// `-ENOTSUPP` (524): Lustre's answer to an opcode a target has no handler for.
pub const ENOTSUPP: i32 = 524;

/// What a handler produced.
#[derive(Debug)]
pub enum Outcome {
    /// Send this reply (and keep it for resends).
    Reply(Vec<u8>),
    /// Send an error reply with this negative errno.
    Error(i32),
    /// Send nothing (a resend whose original is still being processed answers it).
    Dropped,
}

impl From<Result<Vec<u8>, i32>> for Outcome {
    fn from(r: Result<Vec<u8>, i32>) -> Outcome {
        match r {
            Ok(v) => Outcome::Reply(v),
            Err(e) => Outcome::Error(if e > 0 { -e } else { e }),
        }
    }
}

/// A request being handled, with what admission learned.
#[derive(Debug)]
pub struct Req<'a> {
    /// The request.
    pub inc: &'a Incoming,
    /// The target.
    pub target: TargetId,
    /// The export cookie.
    pub export: u64,
    /// The client's connection cookie (for callbacks).
    pub conn: u64,
    /// Negotiated connect flags.
    pub flags: u64,
    /// Negotiated flags2.
    pub flags2: u64,
    /// Changes are committed before replying (`sync_journal`).
    pub sync: bool,
}

/// Flags each kind of target grants (a subset of what the client asks).
#[must_use]
pub fn supported_flags(kind: TargetKind) -> (u64, u64, u64) {
    let base = ocf::VERSION
        | ocf::AT
        | ocf::FULL20
        | ocf::FLAGS2
        | ocf::BULK_MBITS
        | ocf::IMP_RECOV
        | ocf::LVB_TYPE;
    match kind {
        TargetKind::Mgs => (base, ocf2::REP_MBITS, ocf::FULL20),
        TargetKind::Mdt => (
            base | ocf::FID
                | ocf::ATTRFID
                | ocf::IBITS
                | ocf::LOV_V3
                | ocf::MAX_EASIZE
                | ocf::CANCELSET
                | ocf::NANOSEC_TIME
                | ocf::BIT64HASH
                | ocf::XATTR
                | ocf::UMASK
                | ocf::ACL
                | ocf::MAXBYTES
                | ocf::OPEN_BY_FID
                | ocf::DISP_STRIPE
                | ocf::FLOCK_DEAD
                | ocf::UNLINK_CLOSE,
            ocf2::REP_MBITS | ocf2::GETATTR_PFID | ocf2::LOCK_CONVERT,
            ocf::FULL20 | ocf::FID | ocf::ATTRFID,
        ),
        TargetKind::Ost => (
            base | ocf::FID
                | ocf::MDS
                | ocf::INDEX
                | ocf::SKIP_ORPHAN
                | ocf::GRANT
                | ocf::SRVLOCK
                | ocf::BRW_SIZE
                | ocf::CKSUM
                | ocf::MAXBYTES
                | ocf::CANCELSET
                | ocf::GRANT_PARAM
                | ocf::SHORTIO
                | ocf::NANOSEC_TIME
                | ocf::OBDOPACK,
            ocf2::REP_MBITS,
            ocf::FULL20,
        ),
    }
}

/// Sends an error reply for a request; like any reply it goes to `pb_mbits` when the export
/// negotiated REP_MBITS (`ptlrpc_send_error` sends through `ptlrpc_send_reply`).
pub async fn send_error(sh: &Rc<Shard>, inc: &Incoming, e: i32, rep_mbits: bool) {
    sh.stats.errors.set(sh.stats.errors.get() + 1);
    match server::error_reply(&inc.body, e) {
        Ok(r) => {
            if let Err(x) = server::send_reply(&sh.lnet, inc, r, rep_mbits).await {
                log::debug!("error reply to {} lost: {x}", inc.peer);
            }
        }
        Err(x) => log::error!("cannot pack error reply: {x}"),
    }
}

/// Handles one request from start to reply.
pub async fn handle(sh: Rc<Shard>, inc: Incoming, arrival: crate::mgmt::Arrival) {
    let start = Instant::now();
    sh.stats.active.set(sh.stats.active.get() + 1);
    let opc = inc.opc();
    let (outcome, rep_mbits) =
        if matches!(opc, Opcode::MgsConnect | Opcode::MdsConnect | Opcode::OstConnect) {
            (connect(&sh, &inc), false)
        } else {
            serve(&sh, &inc).await
        };
    crate::mgmt::account(&sh, &inc, &arrival, start, &outcome);
    match outcome {
        Outcome::Reply(r) => {
            if let Err(e) = server::send_reply(&sh.lnet, &inc, r, rep_mbits).await {
                log::debug!("reply to {} for {opc} lost: {e}", inc.peer);
            }
        }
        Outcome::Error(e) => send_error(&sh, &inc, e, rep_mbits).await,
        Outcome::Dropped => log::debug!("resend of xid {} from {} in progress", inc.xid, inc.peer),
    }
    sh.stats.active.set(sh.stats.active.get().saturating_sub(1));
    sh.stats
        .busy_us
        .set(sh.stats.busy_us.get() + u64::try_from(start.elapsed().as_micros()).unwrap_or(0));
}

fn connect(sh: &Rc<Shard>, inc: &Incoming) -> Outcome {
    let r = (|| -> Result<Vec<u8>, i32> {
        let m = inc.msg().map_err(|_| -errno::EPROTO)?;
        let fmt = rmf::request_format(inc.opc()).ok_or(-errno::EPROTO)?;
        fmt.check(rmf::Side::Request, &m, 5).map_err(|_| -errno::EPROTO)?;
        let tgt_uuid = cstr("tgtuuid", m.buf(1).unwrap_or_default()).map_err(|_| -errno::EPROTO)?;
        let target = sh.target_by_uuid(tgt_uuid).ok_or(-errno::ENODEV)?;
        let kind_ok = matches!(
            (inc.opc(), target.kind),
            (Opcode::MgsConnect, TargetKind::Mgs)
                | (Opcode::MdsConnect, TargetKind::Mdt)
                | (Opcode::OstConnect, TargetKind::Ost)
        );
        if !kind_ok {
            return Err(-errno::EPROTO);
        }
        let cl_uuid =
            cstr("cluuid", m.buf(2).unwrap_or_default()).map_err(|_| -errno::EPROTO)?.to_string();
        let remote = proto::fid::LustreHandle::read(m.buf(3).unwrap_or_default())
            .map_err(|_| -errno::EPROTO)?
            .get();
        let data =
            ObdConnectData::decode_any(m.buf(4).unwrap_or_default()).map_err(|_| -errno::EPROTO)?;
        let (sup, sup2, required) = supported_flags(target.kind);
        let req = ConnectReq {
            client_uuid: &cl_uuid,
            remote,
            peer: inc.peer.nid,
            conn_cnt: inc.body.pb_conn_cnt.get(),
            op_flags: inc.body.pb_op_flags.get(),
            data,
        };
        let tab = sh.export_table(target).ok_or(-errno::ENODEV)?;
        let now = sh.now_ms();
        let old = tab.borrow().iter().find(|e| e.client_uuid == cl_uuid).map(|e| e.cookie);
        let (c, flags, flags2) = tab.borrow_mut().connect(&req, sup, sup2, required, now)?;
        if let Some(old) = old.filter(|o| *o != c.cookie()) {
            // A restarted client replaced its export: its old locks go.
            sh.exports.borrow_mut().remove(&old);
            let sh2 = sh.clone();
            glommio::spawn_local(async move { drop_export_everywhere(&sh2, old).await }).detach();
        }
        sh.exports.borrow_mut().insert(c.cookie(), target);
        let mut d = grant_data(sh, target, &data);
        d.ocd_connect_flags = flags.into();
        d.ocd_connect_flags2 = flags2.into();
        if target.kind == TargetKind::Ost {
            let new_conn = matches!(c, ptlrpc::export::Connected::New(_));
            crate::ost::on_connect(sh, target.index, c.cookie(), new_conn, &mut d);
        }
        let mut b = MsgBuilder::reply(fmt, &inc.body)
            .wire("CONNECT_DATA", &d)
            .map_err(|_| -errno::EPROTO)?;
        b.body_mut().pb_handle = proto::LustreHandle::new(c.cookie());
        b.body_mut().pb_op_flags = c.reply_op_flags().into();
        log::info!(
            "{}: client {cl_uuid} connected from {} (export {:#x})",
            target.name(&sh.cfg.fsname),
            inc.peer,
            c.cookie()
        );
        b.build().map_err(|_| -errno::EPROTO)
    })();
    r.into()
}

/// The connect data a target returns (flags are filled in by the caller).
fn grant_data(sh: &Shard, t: TargetId, asked: &ObdConnectData) -> ObdConnectData {
    let mut d = *asked;
    d.ocd_version = OCD_VERSION.into();
    d.ocd_index = t.index.into();
    d.ocd_ibits_known = (asked.ocd_ibits_known.get() & proto::ldlm::ibits::FULL).into();
    d.ocd_brw_size = asked.ocd_brw_size.get().clamp(4096, 4 << 20).into();
    let ck = asked.ocd_cksum_types.get() & (cksum::CRC32C | cksum::ADLER | cksum::CRC32);
    d.ocd_cksum_types =
        (if ck == 0 { cksum::CRC32C & asked.ocd_cksum_types.get() } else { ck }).into();
    d.ocd_max_easize = 65536.into();
    d.ocd_instance = u32::try_from(sh.salt & 0xffff).unwrap_or(1).max(1).into();
    d.ocd_maxbytes = osd_nvme::types::MAX_OBJECT_BYTES.into();
    d.ocd_maxmodrpcs = 8.into();
    d.ocd_transno = 0.into();
    // The OST fills in grant once the export exists (crate::ost::on_connect).
    if t.kind == TargetKind::Ost {
        d.ocd_brw_size =
            asked.ocd_brw_size.get().clamp(4096, crate::ost::io::MAX_BRW_SIZE as u32).into();
    } else {
        d.ocd_grant = 0.into();
    }
    d
}

/// Admission and dispatch of everything but connects. Returns the outcome and whether the
/// reply should use `pb_mbits` (REP_MBITS negotiated).
async fn serve(sh: &Rc<Shard>, inc: &Incoming) -> (Outcome, bool) {
    let cookie = inc.body.pb_handle.get();
    let Some(target) = sh.exports.borrow().get(&cookie).copied() else {
        // No export: a request before connect, or after eviction or a server restart.
        return (Outcome::Error(-errno::ENOTCONN), false);
    };
    let Some(tab) = sh.export_table(target) else { return (Outcome::Error(-errno::ENODEV), false) };
    let now = sh.now_ms();
    let admitted = tab.borrow_mut().admit(cookie, inc.peer.nid, inc.xid, inc.is_resent(), now);
    let (conn, flags, flags2) = match tab.borrow().get(cookie) {
        Some(e) => (e.remote, e.flags, e.flags2),
        None => (0, 0, 0),
    };
    let rep_mbits = flags2 & ocf2::REP_MBITS != 0;
    match admitted {
        Err(e) => return (Outcome::Error(e), rep_mbits),
        Ok(Admit::Resend(saved)) => return (Outcome::Reply(saved), rep_mbits),
        Ok(Admit::InProgress) => return (Outcome::Dropped, rep_mbits),
        Ok(Admit::Process) => {}
    }
    let req = Req { inc, target, export: cookie, conn, flags, flags2, sync: sh.cfg.sync_journal };
    let outcome = dispatch(sh, &req).await;
    if matches!(outcome, Outcome::Error(e) if e == -ENOTSUPP) {
        crate::ratelog::warn(
            "unsupported opcode",
            &format!(
                "{}: {:?} ({}) from {} is not supported",
                target.name(&sh.cfg.fsname),
                inc.opc(),
                inc.body.pb_opc.get(),
                inc.peer
            ),
        );
    }
    let keep = match &outcome {
        Outcome::Reply(r) => Some(r.clone()),
        Outcome::Error(_) | Outcome::Dropped => None,
    };
    if let Some(tab) = sh.export_table(target) {
        tab.borrow_mut().done(cookie, inc.xid, keep);
    }
    (outcome, rep_mbits)
}

async fn dispatch(sh: &Rc<Shard>, req: &Req<'_>) -> Outcome {
    let inc = req.inc;
    if let Err(e) = preprocess(inc) {
        return Outcome::Error(e);
    }
    match inc.opc() {
        Opcode::ObdPing => return reply_empty(inc, "OBD_PING").into(),
        Opcode::MgsDisconnect | Opcode::MdsDisconnect | Opcode::OstDisconnect => {
            if let Some(tab) = sh.export_table(req.target) {
                tab.borrow_mut().remove(req.export);
            }
            sh.exports.borrow_mut().remove(&req.export);
            drop_export_everywhere(sh, req.export).await;
            return reply_empty(inc, "MDS_DISCONNECT").into();
        }
        Opcode::LdlmCancel => return cancel(sh, req).await.into(),
        Opcode::LdlmConvert => return convert(sh, req).await.into(),
        _ => {}
    }
    match req.target.kind {
        TargetKind::Mgs => crate::mgs::service::handle(sh, req).await,
        TargetKind::Mdt => crate::mdt::service::handle(sh, req).await,
        TargetKind::Ost => crate::ost::handle(sh, req).await,
    }
}

/// What `tgt_request_preprocess` checks for handlers with HAS_KEY (LDLM_ENQUEUE,
/// LDLM_CONVERT) on every target: a DLM_REQ (-EFAULT without one), and inode bits in an IBITS
/// lock (-EPROTO: a lock without bits makes no sense).
fn preprocess(inc: &Incoming) -> Result<(), i32> {
    if !matches!(inc.opc(), Opcode::LdlmEnqueue | Opcode::LdlmConvert) {
        return Ok(());
    }
    let m = inc.msg().map_err(|_| -errno::EPROTO)?;
    let dlm = m.buf(1).filter(|b| b.len() >= 104).ok_or(-errno::EFAULT)?;
    if inc.opc() == Opcode::LdlmEnqueue {
        // ldlm_handle_enqueue0: a lock type outside PLAIN..IBITS, or a mode that is not one
        // of EX..COS, is -EFAULT (read raw: the decoder would refuse them as malformed).
        let word = |o: usize| {
            dlm.get(o..o + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes)
        };
        let (lr_type, req_mode) = (word(8), word(48));
        if !(proto::ldlm::lock_type::PLAIN..=proto::ldlm::lock_type::IBITS).contains(&lr_type)
            || req_mode == 0
            || req_mode > proto::ldlm::mode::COS
            || !req_mode.is_power_of_two()
        {
            return Err(-errno::EFAULT);
        }
    }
    let r = LdlmRequest::decode(dlm).map_err(|_| -errno::EPROTO)?;
    let d = r.lock_desc;
    // ldlm_handle_enqueue0: a lock type outside PLAIN..IBITS is -EFAULT.
    if d.l_resource.lr_type.get() == 0 {
        return Err(-errno::EFAULT);
    }
    if d.l_resource.lr_type.get() == proto::ldlm::lock_type::IBITS
        && let Ok(proto::ldlm::Policy::Ibits(b)) = d.policy()
        && b.bits.get() | b.try_bits.get() == 0
    {
        return Err(-errno::EPROTO);
    }
    Ok(())
}

/// A reply with no buffers but the body.
pub fn reply_empty(inc: &Incoming, fmt: &str) -> Result<Vec<u8>, i32> {
    let f = rmf::format(fmt).ok_or(-errno::EPROTO)?;
    MsgBuilder::reply(f, &inc.body).count(1).build().map_err(|_| -errno::EPROTO)
}

/// LDLM_CANCEL: each handle is a server lock cookie; its owner shard cancels it.
async fn cancel(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let r = LdlmRequest::decode(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    cancel_handles(sh, req.export, r.handles.iter().map(|h| h.get())).await;
    reply_empty(req.inc, "LDLM_CANCEL")
}

/// LDLM_CONVERT (`ldlm_handle_convert0`): a client gives back some bits of a granted IBITS
/// lock. A lock already gone is `ELDLM_NO_LOCK_DATA` in `pb_status`; a mode other than the
/// granted one is -EPROTO.
async fn convert(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let r = LdlmRequest::decode(m.buf(1).ok_or(-errno::EFAULT)?).map_err(|_| -errno::EPROTO)?;
    let cookie = r.handles.first().map(|h| h.get()).ok_or(-errno::EPROTO)?;
    let bits = match r.lock_desc.policy() {
        Ok(proto::ldlm::Policy::Ibits(b)) => b.bits.get(),
        _ => return Err(-errno::EPROTO),
    };
    let mode = r.lock_desc.l_req_mode.get();
    let export = req.export;
    let (owner, _) = crate::ldlm::service::cookie_owner(cookie);
    let got = if owner < sh.n {
        sh.mesh
            .call(sh, owner, move |x: Rc<Shard>| async move {
                let cur = x.ldlm.with_ns(crate::ldlm::service::cookie_owner(cookie).1, |ns| {
                    ns.lock(cookie).cloned()
                });
                match cur.flatten() {
                    None => Ok(None),
                    Some(l) if l.export != ExportId(export) => Ok(None),
                    Some(l) if l.granted_mode != mode => Err(-errno::EPROTO),
                    Some(_) => {
                        crate::ldlm::service::convert(&x, cookie, ExportId(export), mode, bits)
                            .map(Some)
                            .map_err(|_| -errno::EPROTO)
                    }
                }
            })
            .await
            .map_err(|_| -errno::ESHUTDOWN)??
    } else {
        None
    };
    let f = rmf::format("LDLM_CONVERT").ok_or(-errno::EPROTO)?;
    let mut rep = proto::ldlm::LdlmReply {
        lock_flags: r.lock_flags.into(),
        lock_desc: r.lock_desc,
        ..Default::default()
    };
    if let Some(l) = &got {
        rep.lock_handle = proto::LustreHandle::new(l.remote);
        rep.lock_desc.l_policy_data = proto::ldlm::LdlmWirePolicyData::new(&l.policy.to_wire());
    }
    let mut b =
        MsgBuilder::reply(f, &req.inc.body).wire("DLM_REP", &rep).map_err(|_| -errno::EPROTO)?;
    if got.is_none() {
        b.body_mut().pb_status = proto::ldlm::status::NO_LOCK_DATA.into();
    }
    b.build().map_err(|_| -errno::EPROTO)
}

/// Cancels the server locks named by `cookies` on behalf of `export` (LDLM_CANCEL and early
/// lock cancels carried in other requests). Unknown cookies are ignored, as Lustre does.
pub async fn cancel_handles(sh: &Rc<Shard>, export: u64, cookies: impl Iterator<Item = u64>) {
    for c in cookies {
        if c == 0 {
            continue;
        }
        let (owner, _) = crate::ldlm::service::cookie_owner(c);
        if owner >= sh.n {
            continue;
        }
        let r = sh
            .mesh
            .call(sh, owner, move |x: Rc<Shard>| async move {
                let _ = crate::ldlm::service::cancel(&x, c, Some(ExportId(export)));
            })
            .await;
        if r.is_err() {
            log::debug!("shard {owner} gone while cancelling {c:#x}");
        }
    }
}

/// Sets reply transno and last committed from a target's OSD.
pub fn set_transno(body: &mut PtlrpcBodyV3, transno: u64, last_committed: u64) {
    body.pb_transno = transno.into();
    body.pb_last_committed = last_committed.into();
}

//! The MGS service: MGS_CONNECT (generic), config locks, the llog RPCs serving generated
//! logs, MGS_CONFIG_READ (the minimal answer), and MGS_TARGET_REG. The database and the
//! config lock namespace live on shard 0; other shards call there.

use super::db::{MgsDb, Registered};
use crate::ldlm::service::{AstTarget, NsSlot, enqueue, enqueue_queued};
use crate::ldlm::{EnqueueReq, ExportId, LockPolicy};
use crate::shard::Shard;
use crate::store::AnyOsd;
use crate::target::{ENOTSUPP, Outcome, Req};
use lnd::ProcessId;
use osd_nvme::{Attr, AttrMask, LuFid, ObjType, Osd};
use proto::build::MsgBuilder;
use proto::fid::{LdlmResId, OstId, seq};
use proto::ldlm::{LdlmReply, LdlmRequest, flags as lflags, mode};
use proto::llog::{LlogLogid, LlogdBody, PlainLog, llh_flags};
use proto::mgs::{MgsConfigBody, MgsConfigRes, MgsTargetInfo, cfg_type, ldd_flags};
use proto::opcode::Opcode;
use proto::portal;
use proto::rmf;
use proto::wire::{FromZeros, IntoBytes, Wire, cstr};
use ptlrpc::error::errno;
use ptlrpc::export::{ExportLimits, ExportTable};
use ptlrpc::server;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The MGS database object on shard 0's MGS OSD.
const DB_FID: LuFid = LuFid::new(seq::LOCAL_FILE, 100, 0);
/// Logs kept open (CREATE .. NEXT_BLOCK) at once.
const OPEN_LOGS: usize = 256;

/// The MGS on one shard.
#[derive(Debug)]
pub struct MgsShard {
    /// Exports of MGC clients homed here.
    pub exports: RefCell<ExportTable>,
    /// The database and logs (shard 0).
    pub state: Option<MgsState>,
}

/// The MGS's state on shard 0.
#[derive(Debug)]
pub struct MgsState {
    /// The configuration database.
    pub db: RefCell<MgsDb>,
    osd: AnyOsd,
    /// Logs handed out by LLOG_ORIGIN_HANDLE_CREATE, by logid oid.
    logs: RefCell<HashMap<u32, (String, Rc<PlainLog>)>>,
    next_log: std::cell::Cell<u32>,
    /// The config lock namespace.
    pub slot: NsSlot,
}

impl MgsShard {
    /// The MGS part of shard `shard`; shard 0 gets the database from `osd`.
    pub async fn open(
        shard: usize,
        salt: u64,
        osd: Option<AnyOsd>,
        slot: Option<NsSlot>,
        fsname: &str,
        stripe_size: u64,
        stripe_count: i32,
    ) -> Result<MgsShard, String> {
        let exports = RefCell::new(ExportTable::new(
            u16::try_from(shard).unwrap_or(0),
            slot.unwrap_or(63),
            salt,
            ExportLimits::default(),
        ));
        let state = match (osd, slot) {
            (Some(osd), Some(slot)) => {
                let mut db: MgsDb = read_db(&osd).await?.unwrap_or_default();
                if !db.fs.contains_key(fsname) {
                    db.create_fs(fsname, stripe_size, stripe_count, now_secs())
                        .map_err(|e| format!("MGS: bad fsname {fsname:?} ({e})"))?;
                    write_db(&osd, &db).await?;
                }
                Some(MgsState {
                    db: RefCell::new(db),
                    osd,
                    logs: RefCell::new(HashMap::new()),
                    next_log: std::cell::Cell::new(1),
                    slot,
                })
            }
            _ => None,
        };
        Ok(MgsShard { exports, state })
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

async fn read_db(osd: &AnyOsd) -> Result<Option<MgsDb>, String> {
    let attr = match osd.attr_get(&DB_FID).await {
        Ok(a) => a,
        Err(_) => return Ok(None),
    };
    let mut buf = vec![0u8; usize::try_from(attr.size).map_err(|_| "MGS db too large")?];
    let n = osd.read(&DB_FID, 0, &mut [&mut buf]).await.map_err(|e| format!("MGS db read: {e}"))?;
    buf.truncate(n);
    let text = String::from_utf8(buf).map_err(|_| "MGS db is not text")?;
    MgsDb::decode(&text).map(Some)
}

async fn write_db(osd: &AnyOsd, db: &MgsDb) -> Result<(), String> {
    let text = db.encode();
    let exists = osd.exists(&DB_FID).await;
    let mut th = osd.trans_create();
    if !exists {
        th.declare_create(&DB_FID);
    }
    th.declare_punch(&DB_FID, 0, u64::MAX);
    th.declare_write(&DB_FID, 0, text.len() as u64);
    th.declare_attr_set(&DB_FID);
    th.set_sync();
    osd.trans_start(&mut th).await.map_err(|e| format!("MGS db: {e}"))?;
    let r: osd_nvme::Result<()> = async {
        if !exists {
            osd.create(
                &mut th,
                &DB_FID,
                ObjType::Regular,
                &Attr { mode: 0o100600, ..Attr::default() },
            )
            .await?;
        }
        osd.punch(&mut th, &DB_FID, 0, u64::MAX).await?;
        osd.write(&mut th, &DB_FID, 0, &[text.as_bytes()]).await?;
        osd.attr_set(
            &mut th,
            &DB_FID,
            AttrMask::SIZE,
            &Attr { size: text.len() as u64, ..Attr::default() },
        )
        .await?;
        Ok(())
    }
    .await;
    osd.trans_stop(th).await.map_err(|e| format!("MGS db: {e}"))?;
    r.map_err(|e| format!("MGS db: {e}"))
}

fn state(sh: &Shard) -> Result<&MgsState, i32> {
    sh.mgs.as_ref().and_then(|m| m.state.as_ref()).ok_or(-errno::ENODEV)
}

/// Handles an MGS request.
pub async fn handle(sh: &Rc<Shard>, req: &Req<'_>) -> Outcome {
    let r = match req.inc.opc() {
        Opcode::LdlmEnqueue => config_lock(sh, req).await,
        Opcode::LlogOriginHandleCreate => llog_create(sh, req).await,
        Opcode::LlogOriginHandleReadHeader => llog_read_header(sh, req).await,
        Opcode::LlogOriginHandleNextBlock => llog_next_block(sh, req).await,
        Opcode::MgsConfigRead => config_read(sh, req).await,
        Opcode::MgsTargetReg => target_reg(sh, req).await,
        _ => Err(-ENOTSUPP),
    };
    r.into()
}

fn fmt(id: &str) -> Result<&'static rmf::Fmt, i32> {
    rmf::format(id).ok_or(-errno::EPROTO)
}

async fn config_lock(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let dlm = LdlmRequest::decode(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    let desc = dlm.lock_desc;
    if desc.l_resource.lr_type.get() != proto::ldlm::lock_type::PLAIN {
        return Err(-errno::EINVAL);
    }
    let remote = dlm.handles.first().map_or(0, |h| h.get());
    let er = EnqueueReq {
        export: ExportId(req.export),
        remote,
        res: desc.l_resource.lr_name,
        mode: desc.l_req_mode.get(),
        policy: LockPolicy::Plain,
        flags: dlm.lock_flags,
    };
    let ast = AstTarget { peer: req.inc.peer, conn: req.conn, home: sh.id };
    let lock = sh
        .mesh
        .call(sh, 0, move |z: Rc<Shard>| async move {
            let slot = state(&z)?.slot;
            enqueue_queued(&z, slot, er, ast).await.map_err(|e| match e {
                crate::ldlm::LdlmError::WouldBlock => -errno::EAGAIN,
                crate::ldlm::LdlmError::TooManyLocks => -errno::ENOMEM,
                _ => -errno::EINVAL,
            })
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)??;
    let mut granted = desc;
    granted.l_granted_mode = lock.granted_mode.into();
    let blocked = if lock.is_granted() { 0 } else { lflags::BLOCK_GRANTED };
    let rep = LdlmReply {
        lock_flags: (dlm.lock_flags & lflags::AST_DISCARD_DATA | blocked).into(),
        lock_desc: granted,
        lock_handle: proto::LustreHandle::new(lock.cookie),
        ..Default::default()
    };
    MsgBuilder::reply(fmt("LDLM_ENQUEUE_LVB")?, &req.inc.body)
        .wire("DLM_REP", &rep)
        .and_then(|b| b.set("DLM_LVB", Vec::new()))
        .and_then(|b| b.build())
        .map_err(|_| -errno::EPROTO)
}

fn logid(oid: u32) -> LlogLogid {
    LlogLogid { lgl_oi: OstId::from_fid(LuFid::new(seq::LLOG_NAME, oid, 0)), lgl_ogen: 0.into() }
}

async fn llog_create(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let name =
        cstr("log name", m.buf(2).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?.to_string();
    if name.is_empty() || name.len() > 64 {
        return Err(-errno::EINVAL);
    }
    let oid = sh
        .mesh
        .call(sh, 0, move |z: Rc<Shard>| async move {
            let st = state(&z)?;
            let log = st.db.borrow().log(&name)?;
            let oid = st.next_log.get();
            st.next_log.set(oid.wrapping_add(1).max(1));
            let mut logs = st.logs.borrow_mut();
            if logs.len() >= OPEN_LOGS
                && let Some(&old) = logs.keys().min()
            {
                logs.remove(&old);
            }
            logs.insert(oid, (name, Rc::new(log)));
            Ok::<u32, i32>(oid)
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)??;
    let body = LlogdBody {
        lgd_logid: logid(oid),
        lgd_llh_flags: llh_flags::IS_PLAIN.into(),
        ..Default::default()
    };
    MsgBuilder::reply(fmt("LLOG_ORIGIN_HANDLE_CREATE")?, &req.inc.body)
        .wire("LLOGD_BODY", &body)
        .and_then(|b| b.build())
        .map_err(|_| -errno::EPROTO)
}

fn request_logid(req: &Req<'_>) -> Result<(LlogdBody, u32), i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let body = LlogdBody::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    let fid = body.lgd_logid.lgl_oi.as_fid();
    if fid.seq() != seq::LLOG_NAME {
        return Err(-errno::ENOENT);
    }
    Ok((body, fid.oid()))
}

async fn open_log(sh: &Rc<Shard>, oid: u32) -> Result<Rc<PlainLog>, i32> {
    // The log (a few KiB) is copied out of shard 0.
    let bytes = sh
        .mesh
        .call(sh, 0, move |z: Rc<Shard>| async move {
            let st = state(&z)?;
            let logs = st.logs.borrow();
            let (_, log) = logs.get(&oid).ok_or(-errno::ENOENT)?;
            Ok::<(Vec<u8>, Vec<u8>, u32), i32>((
                log.header.as_bytes().to_vec(),
                log.chunks.clone(),
                log.last_index,
            ))
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)??;
    let header = proto::llog::LlogLogHdr::read(&bytes.0).map_err(|_| -errno::EIO)?;
    Ok(Rc::new(PlainLog { header, chunks: bytes.1, last_index: bytes.2 }))
}

async fn llog_read_header(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let (_, oid) = request_logid(req)?;
    let log = open_log(sh, oid).await?;
    MsgBuilder::reply(fmt("LLOG_ORIGIN_HANDLE_READ_HEADER")?, &req.inc.body)
        .wire("LLOG_LOG_HDR", &log.header)
        .and_then(|b| b.build())
        .map_err(|_| -errno::EPROTO)
}

async fn llog_next_block(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let (mut body, oid) = request_logid(req)?;
    let log = open_log(sh, oid).await?;
    let f = fmt("LLOG_ORIGIN_HANDLE_NEXT_BLOCK")?;
    let found = if body.lgd_index.get() > log.last_index {
        None
    } else {
        log.chunk_at(body.lgd_cur_offset.get())
    };
    match found {
        Some((chunk, last, next)) => {
            body.lgd_saved_index = last.into();
            body.lgd_cur_offset = next.into();
            body.lgd_len = u32::try_from(chunk.len()).unwrap_or(0).into();
            MsgBuilder::reply(f, &req.inc.body)
                .wire("LLOGD_BODY", &body)
                .and_then(|b| b.set("EADATA", chunk))
                .and_then(|b| b.build())
                .map_err(|_| -errno::EPROTO)
        }
        None => {
            // End of log: a normal reply with -EBADR that still carries the body.
            let mut b = MsgBuilder::reply(f, &req.inc.body)
                .wire("LLOGD_BODY", &body)
                .and_then(|b| b.set("EADATA", Vec::new()))
                .map_err(|_| -errno::EPROTO)?;
            b.body_mut().pb_status = (-errno::EBADR).into();
            b.build().map_err(|_| -errno::EPROTO)
        }
    }
}

async fn config_read(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let body = MgsConfigBody::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    if body.mcb_type.get() != cfg_type::RECOVER && body.mcb_type.get() != cfg_type::PARAMS {
        return Err(-errno::EINVAL);
    }
    // Imperative recovery is not implemented: the log is empty (offset == size), sent as a
    // zero-length bulk PUT, which is all a client needs to carry on.
    let base = server::bulk_match_bits(req.inc, 1);
    server::bulk_put(&sh.lnet, req.inc.peer, portal::MGS_BULK, base, vec![Vec::new()])
        .await
        .map_err(|_| -errno::EIO)?;
    let res = MgsConfigRes { mcr_offset: body.mcb_offset, mcr_size: body.mcb_offset };
    MsgBuilder::reply(fmt("MGS_CONFIG_READ")?, &req.inc.body)
        .wire("MGS_CONFIG_RES", &res)
        .and_then(|b| b.build())
        .map_err(|_| -errno::EPROTO)
}

async fn target_reg(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let mti = MgsTargetInfo::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EINVAL)?;
    let (reg, mti) = register_on_shard0(sh, mti).await?;
    let mut rep = mti;
    rep.mti_stripe_index = reg.index.into();
    rep.mti_svname = proto::wire::cstr_array("svname", &reg.svname).map_err(|_| -errno::EINVAL)?;
    rep.mti_flags = (rep.mti_flags.get()
        & !(ldd_flags::VIRGIN | ldd_flags::UPDATE | ldd_flags::NEED_INDEX | ldd_flags::WRITECONF))
        .into();
    MsgBuilder::reply(fmt("MGS_TARGET_REG")?, &req.inc.body)
        .wire("MGS_TARGET_INFO", &rep)
        .and_then(|b| b.build())
        .map_err(|_| -errno::EPROTO)
}

/// Registers a target on shard 0 (from MGS_TARGET_REG or a local target at start-up), persists
/// the database, and when the configuration changed revokes every config lock so clients
/// re-read their logs.
pub async fn register_on_shard0(
    sh: &Rc<Shard>,
    mti: MgsTargetInfo,
) -> Result<(Registered, MgsTargetInfo), i32> {
    sh.mesh
        .call(sh, 0, move |z: Rc<Shard>| async move {
            let st = state(&z)?;
            let reg = st.db.borrow_mut().register(&mti, now_secs())?;
            if reg.changed {
                let db = st.db.borrow().clone();
                write_db(&st.osd, &db).await.map_err(|e| {
                    log::error!("{e}");
                    -errno::EIO
                })?;
                log::info!(
                    "MGS: registered {} ({})",
                    reg.svname,
                    mti.nids().iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                );
                let fsname = cstr("fsname", &mti.mti_fsname).unwrap_or_default().to_string();
                revoke_config(&z, &fsname).await;
            }
            Ok::<(Registered, MgsTargetInfo), i32>((reg, mti))
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)?
}

/// Takes and drops an EX lock on the file system's config resource: every client holding the
/// CR lock gets a blocking callback, cancels, and re-reads its configuration.
async fn revoke_config(z: &Rc<Shard>, fsname: &str) {
    let Ok(slot) = state(z).map(|s| s.slot) else { return };
    let Ok(res) = LdlmResId::mgs_config(fsname, u64::from(cfg_type::CONFIG)) else { return };
    let remote = z.xids.next_xid();
    let req = EnqueueReq {
        export: crate::ldlm::service::LOCAL,
        remote,
        res,
        mode: mode::EX,
        policy: LockPolicy::Plain,
        flags: 0,
    };
    match enqueue(z, slot, req, None).await {
        Ok(l) => {
            let _ = crate::ldlm::service::cancel(z, l.cookie, None);
        }
        Err(e) => log::warn!("MGS: config lock revocation for {fsname}: {e}"),
    }
}

/// The `mgs_target_info` a target registers with (None for the MGS itself).
pub fn target_info(
    fsname: &str,
    kind: crate::store::TargetKind,
    index: u32,
    nids: &[proto::Nid],
) -> Result<Option<MgsTargetInfo>, String> {
    let (flags, tag) = match kind {
        crate::store::TargetKind::Mdt => (ldd_flags::SV_TYPE_MDT, "MDT"),
        crate::store::TargetKind::Ost => (ldd_flags::SV_TYPE_OST, "OST"),
        crate::store::TargetKind::Mgs => return Ok(None),
    };
    let mut mti = MgsTargetInfo::new_zeroed();
    mti.mti_flags = flags.into();
    mti.mti_stripe_index = index.into();
    mti.mti_lustre_ver = super::db::MGS_LUSTRE_VERSION.into();
    mti.mti_fsname = proto::wire::cstr_array("fsname", fsname).map_err(|e| e.to_string())?;
    mti.mti_svname = proto::wire::cstr_array("svname", &format!("{fsname}-{tag}{index:04x}"))
        .map_err(|e| e.to_string())?;
    mti.set_nids(nids).map_err(|e| e.to_string())?;
    Ok(Some(mti))
}

/// Registers this node's own targets with its local MGS (the in-process form of
/// MGS_TARGET_REG).
pub async fn register_local(
    sh: &Rc<Shard>,
    targets: &[(crate::store::TargetKind, u32)],
    nids: &[proto::Nid],
) -> Result<(), String> {
    for &(kind, index) in targets {
        let Some(mti) = target_info(&sh.cfg.fsname, kind, index, nids)? else { continue };
        register_on_shard0(sh, mti)
            .await
            .map_err(|e| format!("registering {} {index}: errno {e}", kind.as_str()))?;
    }
    Ok(())
}

/// A remote MGS's process id.
#[must_use]
pub fn mgs_process(nid: proto::Nid) -> ProcessId {
    ProcessId::lustre(nid)
}

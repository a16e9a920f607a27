//! The object storage target (OST): objects spread over shards by FID, served on every shard.
//!
//! * this module: what the MDT needs of OSTs (precreation, destruction, truncation, the list
//!   of OSTs), request dispatch and the checks every OST request gets (`tgt_validate_obdo`);
//! * [`io`]: OST_READ and OST_WRITE (`tgt_brw_read`, `tgt_brw_write`, `ofd_preprw`,
//!   `ofd_commitrw`): niobufs, bulk, short I/O, checksums;
//! * [`grant`]: grant accounting (`tgt_grant.c`);
//! * [`dlm`]: extent locks on objects, glimpses and their LVBs (`ofd_intent_policy`,
//!   `ofd_lvbo_*`), and the server's own locks for `OBD_BRW_SRVLOCK` I/O;
//! * [`attr`]: OST_GETATTR, OST_SETATTR, OST_PUNCH, OST_SYNC.
//!
//! An object and its lock resource live on shard [`ost_shard_of`] its FID; requests arrive
//! on the shard of the client's connection and reach the object's shard over the mesh.

pub mod attr;
pub mod dlm;
pub mod grant;
pub mod io;

pub use dlm::lvb_for_lock;

use crate::ldlm::service::NsSlot;
use crate::shard::Shard;
use crate::store::{AnyOsd, TargetKind};
use crate::target::{ENOTSUPP, Outcome, Req};
use osd_nvme::{Attr, AttrMask, LuFid, ObjType, Osd, OsdError};
use proto::build::MsgBuilder;
use proto::connect::ObdConnectData;
use proto::mdt::md;
use proto::opcode::Opcode;
use proto::ost::{ObdStatfs, Obdo};
use proto::rmf;
use proto::wire::Wire;
use ptlrpc::error::errno;
use ptlrpc::export::{ExportLimits, ExportTable};
use std::cell::RefCell;
use std::rc::Rc;

/// One shard's part of an OST.
#[derive(Debug)]
pub struct OstShard {
    /// OST index.
    pub index: u32,
    /// The shard's OSD.
    pub osd: AnyOsd,
    /// Exports of clients homed here.
    pub exports: RefCell<ExportTable>,
    /// Lock namespace slot.
    pub slot: NsSlot,
    /// Sequences whose precreation or orphan cleanup runs now (on their home shard).
    busy_seqs: RefCell<std::collections::HashSet<u64>>,
    /// Grant of the clients homed here.
    pub grants: RefCell<grant::Grants>,
    /// Counters (`obdfilter.*.stats`).
    pub stats: OstStats,
}

/// Counters of one OST on one shard.
#[derive(Debug, Default)]
pub struct OstStats {
    /// OST_READ requests served.
    pub reads: std::cell::Cell<u64>,
    /// Bytes read.
    pub read_bytes: std::cell::Cell<u64>,
    /// OST_WRITE requests served.
    pub writes: std::cell::Cell<u64>,
    /// Bytes written.
    pub write_bytes: std::cell::Cell<u64>,
    /// Writes refused for a bad bulk checksum.
    pub cksum_errors: std::cell::Cell<u64>,
    /// BRWs whose bulk transfer failed (no reply sent; the client resends).
    pub bulk_errors: std::cell::Cell<u64>,
    /// Glimpse callbacks sent.
    pub glimpse_asts: std::cell::Cell<u64>,
}

/// Per-sequence last created object id (`LAST_ID` of an OFD), on each OST shard: key the
/// sequence (big-endian), value the id (little-endian).
pub const LAST_IDS: LuFid = LuFid::new(proto::fid::seq::LOCAL_FILE, 0x300, 0);

/// Most objects one OST_CREATE precreates (Lustre's `OST_MAX_PRECREATE` is 20 000; our MDTs
/// ask for far fewer at a time).
pub const MAX_PRECREATE: u64 = 4096;

/// Creates the OST's local files on a shard's OSD if missing (format and upgrade).
pub async fn init_shard(osd: &AnyOsd) -> Result<(), String> {
    if osd.exists(&LAST_IDS).await {
        return Ok(());
    }
    let mut th = osd.trans_create();
    th.declare_create(&LAST_IDS);
    th.set_sync();
    osd.trans_start(&mut th).await.map_err(|e| format!("LAST_ID index: {e}"))?;
    let r = osd
        .create(&mut th, &LAST_IDS, ObjType::Index, &Attr { mode: 0o100600, ..Attr::default() })
        .await;
    osd.trans_stop(th).await.map_err(|e| format!("LAST_ID index: {e}"))?;
    r.map_err(|e| format!("LAST_ID index: {e}"))
}

impl OstShard {
    /// Shard `shard`'s part of OST `index` on `osd`.
    #[must_use]
    pub fn new(index: u32, shard: usize, salt: u64, osd: AnyOsd, slot: NsSlot) -> OstShard {
        OstShard {
            index,
            osd,
            exports: RefCell::new(ExportTable::new(
                u16::try_from(shard).unwrap_or(0),
                slot,
                salt,
                ExportLimits::default(),
            )),
            slot,
            busy_seqs: RefCell::new(std::collections::HashSet::new()),
            grants: RefCell::new(grant::Grants::new(grant::GrantParams::default())),
            stats: OstStats::default(),
        }
    }

    /// A client's export is gone: its grant returns to the pool.
    pub fn forget_export(&self, cookie: u64) {
        self.grants.borrow_mut().discard(cookie);
    }
}

/// The shard of an OST object: a fixed hash of its FID, so objects of one file spread.
#[must_use]
pub fn ost_shard_of(fid: &LuFid, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let h = (u64::from(fid.oid()) ^ (fid.seq() << 17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    usize::try_from((h >> 32) % n as u64).unwrap_or(0)
}

pub(crate) fn errno_of(e: &OsdError) -> i32 {
    -e.errno()
}

fn local_ost(sh: &Shard, index: u32) -> bool {
    sh.cfg.targets.iter().any(|t| t.kind == TargetKind::Ost && t.index == index)
}

/// The OSTs of the file system, by index.
pub async fn known_osts(sh: &Rc<Shard>) -> Vec<u32> {
    if sh.cfg.local_mgs() {
        let fsname = sh.cfg.fsname.clone();
        let r = sh
            .mesh
            .call(sh, 0, move |z: Rc<Shard>| async move {
                let Some(st) = z.mgs.as_ref().and_then(|m| m.state.as_ref()) else {
                    return Vec::new();
                };
                let db = st.db.borrow();
                db.fs
                    .get(&fsname)
                    .map(|f| {
                        f.targets
                            .values()
                            .filter(|t| t.kind == crate::mgs::db::Kind::Ost)
                            .map(|t| t.index)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .await;
        r.unwrap_or_default()
    } else {
        let mut v: Vec<u32> =
            sh.cfg.targets.iter().filter(|t| t.kind == TargetKind::Ost).map(|t| t.index).collect();
        v.extend(sh.cluster.borrow().osts.iter().map(|o| o.0));
        v.sort_unstable();
        v.dedup();
        v
    }
}

pub(crate) async fn on_object<R: Send + 'static, F, Fut>(
    sh: &Rc<Shard>,
    ost: u32,
    fid: LuFid,
    f: F,
) -> Result<R, i32>
where
    F: FnOnce(Rc<Shard>, u32, LuFid) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<R, i32>> + 'static,
{
    if !local_ost(sh, ost) {
        return Err(-errno::ENODEV);
    }
    let s = ost_shard_of(&fid, sh.n);
    sh.mesh.call(sh, s, move |x: Rc<Shard>| f(x, ost, fid)).await.map_err(|_| -errno::ESHUTDOWN)?
}

pub(crate) fn ost_part(sh: &Shard, index: u32) -> Result<&OstShard, i32> {
    sh.ost(index).ok_or(-errno::ENODEV)
}

async fn punch(osd: &AnyOsd, fid: LuFid, size: u64) -> Result<(), i32> {
    let mut th = osd.trans_create();
    th.declare_punch(&fid, size, u64::MAX);
    th.declare_attr_set(&fid);
    osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
    let r = async {
        osd.punch(&mut th, &fid, size, u64::MAX).await?;
        osd.attr_set(&mut th, &fid, AttrMask::SIZE, &Attr { size, ..Attr::default() }).await
    }
    .await;
    osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
    r.map_err(|e| errno_of(&e))
}

/// The shard that keeps a sequence's `LAST_ID` and serialises its precreation.
#[must_use]
pub fn seq_home(seq: u64, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    usize::try_from(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40).unwrap_or(0) % n
}

/// Whether an MDT may create objects in `seq` on an OST: the normal sequences our MDTs
/// allocate for their object pools.
fn seq_allowed(seq: u64) -> bool {
    (proto::fid::seq::NORMAL..(1 << 62)).contains(&seq)
}

async fn last_id(osd: &AnyOsd, seq: u64) -> Result<u64, i32> {
    match osd.index_lookup(&LAST_IDS, &seq.to_be_bytes()).await {
        Ok(v) => Ok(v.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)),
        Err(OsdError::NoKey) => Ok(0),
        Err(e) => Err(errno_of(&e)),
    }
}

async fn set_last_id(osd: &AnyOsd, seq: u64, id: u64) -> Result<(), i32> {
    let key = seq.to_be_bytes();
    let exists = osd.index_lookup(&LAST_IDS, &key).await.is_ok();
    let mut th = osd.trans_create();
    if exists {
        th.declare_index_delete(&LAST_IDS, 8);
    }
    th.declare_index_insert(&LAST_IDS, 8, 8);
    th.set_sync();
    osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
    let r = async {
        if exists {
            osd.index_delete(&mut th, &LAST_IDS, &key).await?;
        }
        osd.index_insert(&mut th, &LAST_IDS, &key, &id.to_le_bytes()).await
    }
    .await;
    osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
    r.map_err(|e| errno_of(&e))
}

/// Creates (or destroys, for orphan cleanup) the objects `ids` of `seq` on their owner
/// shards, one synchronous transaction per shard.
async fn objects_on_shards(
    sh: &Rc<Shard>,
    ost: u32,
    seq: u64,
    ids: std::ops::RangeInclusive<u64>,
    create: bool,
) -> Result<(), i32> {
    let mut by_shard: Vec<Vec<LuFid>> = vec![Vec::new(); sh.n];
    for id in ids {
        let fid = LuFid::new(seq, u32::try_from(id).map_err(|_| -errno::EOVERFLOW)?, 0);
        by_shard[ost_shard_of(&fid, sh.n)].push(fid);
    }
    for (s, fids) in by_shard.into_iter().enumerate().filter(|(_, f)| !f.is_empty()) {
        sh.mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                let osd = &ost_part(&x, ost)?.osd;
                let mut todo = Vec::with_capacity(fids.len());
                for f in fids {
                    if osd.exists(&f).await == create {
                        continue; // already there (or gone): a replayed batch
                    }
                    todo.push(f);
                }
                for chunk in todo.chunks(256) {
                    let mut th = osd.trans_create();
                    for f in chunk {
                        if create {
                            th.declare_create(f);
                        } else {
                            th.declare_destroy(f);
                        }
                    }
                    th.set_sync();
                    osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
                    let mut r = Ok(());
                    for f in chunk {
                        r = if create {
                            osd.create(
                                &mut th,
                                f,
                                ObjType::Regular,
                                &Attr { mode: 0o100666, nlink: 1, ..Attr::default() },
                            )
                            .await
                        } else {
                            osd.destroy(&mut th, f).await
                        };
                        if r.is_err() {
                            break;
                        }
                    }
                    osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
                    r.map_err(|e| errno_of(&e))?;
                }
                Ok::<(), i32>(())
            })
            .await
            .map_err(|_| -errno::ESHUTDOWN)??;
    }
    Ok(())
}

/// OST_CREATE's work (ofd's precreate and orphan cleanup) for one MDT sequence on OST `ost`:
/// with `orphan_keep`, destroys the objects after that id that the MDT never used and
/// returns the new last id; otherwise creates objects up to `want` (at most
/// [`MAX_PRECREATE`] more than exist) and returns the last one created. Objects become
/// durable before `LAST_ID` moves, so a crash leaves at worst objects past `LAST_ID`, which
/// the next precreation adopts.
pub async fn precreate(
    sh: &Rc<Shard>,
    ost: u32,
    seq: u64,
    want: u64,
    orphan_keep: Option<u64>,
) -> Result<u64, i32> {
    if !seq_allowed(seq) {
        return Err(-errno::EINVAL);
    }
    if !local_ost(sh, ost) {
        return Err(-errno::ENODEV);
    }
    let _count = crate::mgmt::OstOpTimer::new(sh, ost, "create");
    let home = seq_home(seq, sh.n);
    sh.mesh
        .call(sh, home, move |x: Rc<Shard>| async move {
            // One precreation per sequence at a time (its MDT shard serialises too; this
            // covers resends racing the original).
            loop {
                if ost_part(&x, ost)?.busy_seqs.borrow_mut().insert(seq) {
                    break;
                }
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
            let r = async {
                let osd = &ost_part(&x, ost)?.osd;
                let last = last_id(osd, seq).await?;
                if let Some(keep) = orphan_keep {
                    if keep < last {
                        objects_on_shards(&x, ost, seq, keep + 1..=last, false).await?;
                        set_last_id(osd, seq, keep).await?;
                        log::info!(
                            "OST{ost:04x}: destroyed {} orphan objects of sequence {seq:#x}",
                            last - keep
                        );
                        return Ok(keep);
                    }
                    return Ok(last);
                }
                let target = want.min(last + MAX_PRECREATE).min(u64::from(u32::MAX));
                if target <= last {
                    return Ok(last);
                }
                objects_on_shards(&x, ost, seq, last + 1..=target, true).await?;
                set_last_id(osd, seq, target).await?;
                Ok(target)
            }
            .await;
            if let Ok(p) = ost_part(&x, ost) {
                p.busy_seqs.borrow_mut().remove(&seq);
            }
            r
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)?
}

/// Whether an object exists (on its owner shard).
pub async fn object_exists(sh: &Rc<Shard>, ost: u32, fid: LuFid) -> bool {
    on_object(sh, ost, fid, |x, ost, fid| async move {
        Ok::<bool, i32>(ost_part(&x, ost)?.osd.exists(&fid).await)
    })
    .await
    .unwrap_or(false)
}

/// Destroys one OST object (OST_DESTROY, or the in-process path of the MDT).
pub async fn destroy_object(sh: &Rc<Shard>, ost: u32, fid: LuFid) -> Result<(), i32> {
    let _count = crate::mgmt::OstOpTimer::new(sh, ost, "destroy");
    on_object(sh, ost, fid, |x, ost, fid| async move {
        let osd = &ost_part(&x, ost)?.osd;
        let mut th = osd.trans_create();
        th.declare_destroy(&fid);
        osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
        let r = osd.destroy(&mut th, &fid).await;
        osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
        match r {
            Ok(()) | Err(OsdError::NoObject(_)) => Ok(()),
            Err(e) => Err(errno_of(&e)),
        }
    })
    .await
}

/// Truncates one OST object to `size` for the MDT (setattr of the size, open with O_TRUNC),
/// under a server PW lock from `size` to the end, as an `OBD_FL_SRVLOCK` punch takes it:
/// clients caching that range flush and drop it first (a truncate to 0 lets them discard
/// their dirty pages), so no one keeps reading or writing back what was cut.
pub async fn punch_object(sh: &Rc<Shard>, ost: u32, fid: LuFid, size: u64) -> Result<(), i32> {
    on_object(sh, ost, fid, move |x, ost, fid| async move {
        let flags = if size == 0 { proto::ldlm::flags::AST_DISCARD_DATA } else { 0 };
        let lock =
            dlm::srv_lock(&x, ost, fid, proto::ldlm::mode::PW, (size, dlm::EOF), flags).await?;
        let r = punch(&ost_part(&x, ost)?.osd, fid, size).await;
        dlm::srv_unlock(&x, lock);
        r
    })
    .await
}

/// The grant part of an OST connect (`ofd_parse_connect_data`, `tgt_grant_connect`): the
/// backend's allocation parameters for GRANT_PARAM clients and the client's initial grant.
/// `d` is the reply's connect data with the negotiated flags already in it.
pub fn on_connect(sh: &Shard, index: u32, cookie: u64, new_conn: bool, d: &mut ObdConnectData) {
    let Some(part) = sh.ost(index) else { return };
    let mut g = part.grants.borrow_mut();
    let p = g.params();
    let f = d.flags();
    let grant_param = f & proto::connect::flags::GRANT_PARAM != 0;
    if grant_param {
        d.ocd_grant_blkbits = u8::try_from(p.blockbits).unwrap_or(12);
        d.ocd_grant_inobits = p.inobits;
        d.ocd_grant_tax_kb = u16::try_from(p.extent_tax >> 10).unwrap_or(u16::MAX).into();
        d.ocd_grant_max_blks = u32::try_from(p.max_extent_blks).unwrap_or(u32::MAX).into();
    }
    let brw = u64::from(d.ocd_brw_size.get().max(4096));
    if f & proto::connect::flags::GRANT == 0 || f & proto::connect::flags::RDONLY != 0 {
        g.register(cookie, brw, grant_param);
        d.ocd_grant = 0.into();
        return;
    }
    let got = g.connect(cookie, u64::from(d.ocd_grant.get()), brw, grant_param, new_conn);
    d.ocd_grant = u32::try_from(got).unwrap_or(u32::MAX).into();
}

/// The usage of every shard's region of OST `index`, in shard order.
async fn shard_statfs(sh: &Rc<Shard>, index: u32) -> Result<Vec<osd_nvme::StatFs>, i32> {
    let mut out = Vec::with_capacity(sh.n);
    for s in 0..sh.n {
        let st = sh
            .mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                ost_part(&x, index)?.osd.statfs().await.map_err(|e| errno_of(&e))
            })
            .await
            .map_err(|_| -errno::ESHUTDOWN)??;
        out.push(st);
    }
    Ok(out)
}

/// Reads the free space of every shard's region of OST `index` and gives this shard its
/// share to promise as grant (see [`grant`]).
pub async fn refresh_grant_space(sh: &Rc<Shard>, index: u32) -> Result<(), i32> {
    let mut min_free = u64::MAX;
    for st in shard_statfs(sh, index).await? {
        min_free = min_free.min(st.bavail.saturating_mul(u64::from(st.bsize.max(1))));
    }
    let now = sh.now_ms();
    ost_part(sh, index)?.grants.borrow_mut().refresh(min_free, sh.n, now);
    Ok(())
}

/// Keeps every local OST's grant space fresh on this shard (connects hand out grant from it
/// without waiting).
pub async fn grant_refresher(sh: Rc<Shard>) {
    loop {
        for index in sh.osts.iter().map(|o| o.index).collect::<Vec<_>>() {
            if let Err(e) = refresh_grant_space(&sh, index).await {
                log::debug!("OST{index:04x}: grant space refresh failed: {e}");
            }
        }
        glommio::timer::sleep(std::time::Duration::from_millis(grant::STATFS_MAX_AGE_MS)).await;
        if sh.lnet.is_stopping() {
            return;
        }
    }
}

/// The OST's usage: every shard's OSD summed.
pub async fn ost_statfs(sh: &Rc<Shard>, index: u32) -> Result<ObdStatfs, i32> {
    let mut tot = osd_nvme::StatFs::default();
    for st in shard_statfs(sh, index).await? {
        tot.blocks += st.blocks;
        tot.bfree += st.bfree;
        tot.bavail += st.bavail;
        tot.files += st.files;
        tot.ffree += st.ffree;
        tot.bsize = tot.bsize.max(st.bsize);
    }
    let mut o: ObdStatfs = proto::wire::FromZeros::new_zeroed();
    o.os_type = 0x0BD0_0BD0u64.into();
    o.os_blocks = tot.blocks.into();
    o.os_bfree = tot.bfree.into();
    o.os_bavail = tot.bavail.into();
    o.os_files = tot.files.into();
    o.os_ffree = tot.ffree.into();
    o.os_bsize = tot.bsize.max(4096).into();
    o.os_namelen = 255.into();
    o.os_maxbytes = osd_nvme::types::MAX_OBJECT_BYTES.into();
    proto::wire::set_cstr(
        "fsid",
        &mut o.os_fsid,
        format!("{}-OST{index:04x}_UUID", sh.cfg.fsname).as_bytes(),
    )
    .map_err(|_| -errno::EINVAL)?;
    Ok(o)
}

pub(crate) fn fmt(id: &str) -> Result<&'static rmf::Fmt, i32> {
    rmf::format(id).ok_or(-errno::EPROTO)
}

/// Handles an OST request.
pub async fn handle(sh: &Rc<Shard>, req: &Req<'_>) -> Outcome {
    let index = req.target.index;
    let r = match req.inc.opc() {
        Opcode::OstStatfs => {
            async {
                let o = ost_statfs(sh, index).await?;
                MsgBuilder::reply(fmt("OST_STATFS")?, &req.inc.body)
                    .wire("OBD_STATFS", &o)
                    .and_then(|b| b.build())
                    .map_err(|_| -errno::EPROTO)
            }
            .await
        }
        Opcode::OstRead => return io::read(sh, req).await,
        Opcode::OstWrite => return io::write(sh, req).await,
        Opcode::OstGetattr => attr::getattr(sh, req).await,
        Opcode::OstSetattr => attr::setattr(sh, req).await,
        Opcode::OstPunch => attr::punch(sh, req).await,
        Opcode::OstSync => attr::sync(sh, req).await,
        Opcode::OstCreate => create(sh, req).await,
        Opcode::OstDestroy => destroy(sh, req).await,
        Opcode::LdlmEnqueue => dlm::enqueue(sh, req).await,
        _ => Err(-ENOTSUPP),
    };
    r.into()
}

/// The OST body of a request with its object, checked as `tgt_ost_body_unpack` and
/// `tgt_validate_obdo` check it: no body (or a short one) is -EFAULT; `OBD_MD_FLID` with
/// object id 0, or a sequence that is not IDIF, MDT0's, echo or a normal one, is -EPROTO; an
/// ost_id `ostid_to_fid` cannot convert is -EBADF; and handlers Lustre marks HAS_BODY
/// (GETATTR, SETATTR, READ, WRITE, PUNCH, SYNC) need `OBD_MD_FLID` (-EPROTO). The body's
/// `o_oi` comes back as the FID, as Lustre rewrites it; the FID is `None` without FLID.
pub(crate) fn ost_body(req: &Req<'_>, has_body: bool) -> Result<(Obdo, Option<LuFid>), i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let b = m.buf(1).filter(|b| b.len() >= Obdo::SIZE).ok_or(-errno::EFAULT)?;
    let mut oa = Obdo::read(b).map_err(|_| -errno::EFAULT)?;
    let oi = oa.o_oi;
    let (seq, id) = (oi.ostid_seq(), oi.ostid_id());
    let valid = oa.o_valid.get();
    if valid & md::FLID != 0 && id == 0 {
        return Err(-errno::EPROTO);
    }
    use proto::fid::seq as fs;
    let seq_ok = (fs::IDIF..=fs::IDIF_MAX).contains(&seq)
        || seq == fs::OST_MDT0
        || seq >= fs::NORMAL
        || seq == fs::ECHO;
    if !seq_ok {
        return Err(-errno::EPROTO);
    }
    let fid = oi.ostid_to_fid(req.target.index).ok_or(-errno::EBADF)?;
    oa.o_oi = proto::fid::OstId::from_fid(fid);
    oa.o_valid = (valid | md::FLGROUP).into();
    if valid & md::FLID == 0 {
        return if has_body { Err(-errno::EPROTO) } else { Ok((oa, None)) };
    }
    Ok((oa, Some(fid)))
}

fn request_obdo(req: &Req<'_>) -> Result<Obdo, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    Obdo::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)
}

pub(crate) fn obdo_reply(req: &Req<'_>, f: &str, oa: &Obdo) -> Result<Vec<u8>, i32> {
    MsgBuilder::reply(fmt(f)?, &req.inc.body)
        .wire("OST_BODY", oa)
        .and_then(|b| b.build())
        .map_err(|_| -errno::EPROTO)
}

/// OST_CREATE from an MDT: precreate objects of its sequence up to the id in `o_oi`, or
/// with `OBD_FL_DELORPHAN` destroy the ones after it. The reply's `o_oi` names the last
/// object that exists.
async fn create(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    if req.flags & proto::connect::flags::MDS == 0 {
        return Err(-errno::EPERM); // only MDTs create objects
    }
    let oa = request_obdo(req)?;
    let fid = oa.o_oi.as_fid();
    let valid = oa.o_valid.get();
    let orphan = valid & md::FLFLAGS != 0 && oa.o_flags.get() & proto::ost::obd_fl::DELORPHAN != 0;
    let last = precreate(
        sh,
        req.target.index,
        fid.seq(),
        u64::from(fid.oid()),
        orphan.then_some(u64::from(fid.oid())),
    )
    .await?;
    let mut r = oa;
    r.o_oi = proto::fid::OstId::from_fid(LuFid::new(
        fid.seq(),
        u32::try_from(last).map_err(|_| -errno::EOVERFLOW)?,
        0,
    ));
    r.o_valid = (md::FLID | md::FLGROUP).into();
    obdo_reply(req, "OST_CREATE", &r)
}

/// OST_DESTROY: removes an object (the MDT does this when a file's last link goes).
async fn destroy(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let (oa, fid) = ost_body(req, false)?;
    let fid = fid.ok_or(-errno::EPROTO)?;
    if !object_exists(sh, req.target.index, fid).await {
        return Err(-errno::ENOENT);
    }
    destroy_object(sh, req.target.index, fid).await?;
    obdo_reply(req, "OST_DESTROY", &oa)
}

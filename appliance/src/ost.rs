//! The object storage target (OST): objects spread over shards by FID, served on every shard.
//! This module holds what the MDT needs of OSTs (object creation, destruction, truncation,
//! the list of OSTs) and the OST's non-bulk RPCs.

use crate::ldlm::service::NsSlot;
use crate::shard::Shard;
use crate::store::{AnyOsd, TargetKind};
use crate::target::{ENOTSUPP, Outcome, Req};
use osd_nvme::{Attr, AttrMask, LuFid, ObjType, Osd, OsdError};
use proto::build::MsgBuilder;
use proto::connect::ObdConnectData;
use proto::lov::{LovForm, LovMd};
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
        }
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

fn errno_of(e: &OsdError) -> i32 {
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
        v.sort_unstable();
        v
    }
}

async fn on_object<R: Send + 'static, F, Fut>(
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

fn ost_part(sh: &Shard, index: u32) -> Result<&OstShard, i32> {
    sh.ost(index).ok_or(-errno::ENODEV)
}

/// Creates an empty OST object (the in-process form of OST_CREATE precreation).
pub async fn create_object(sh: &Rc<Shard>, ost: u32, fid: LuFid) -> Result<(), i32> {
    on_object(sh, ost, fid, |x, ost, fid| async move {
        let osd = &ost_part(&x, ost)?.osd;
        if osd.exists(&fid).await {
            return Ok(());
        }
        let mut th = osd.trans_create();
        th.declare_create(&fid);
        if x.cfg.sync_journal {
            th.set_sync();
        }
        osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
        let r = osd
            .create(
                &mut th,
                &fid,
                ObjType::Regular,
                &Attr { mode: 0o100666, nlink: 1, ..Attr::default() },
            )
            .await;
        osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
        r.map_err(|e| errno_of(&e))
    })
    .await
}

fn layout_objects(layout: &[u8]) -> Vec<(u32, LuFid)> {
    match LovMd::decode(layout, LovForm::Stored) {
        Ok(l) => l
            .objects
            .iter()
            .filter_map(|o| {
                o.l_ost_oi.to_fid(o.l_ost_idx.get()).ok().map(|f| (o.l_ost_idx.get(), f))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Destroys the OST objects of a layout (the last link of a file went).
pub async fn destroy_layout_objects(sh: &Rc<Shard>, layout: &[u8]) {
    for (ost, fid) in layout_objects(layout) {
        let r = on_object(sh, ost, fid, |x, ost, fid| async move {
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
        .await;
        if let Err(e) = r {
            log::warn!("OST{ost:04x}: destroying {fid}: errno {e}");
        }
    }
}

/// Truncates a file's OST objects to file size `size`.
pub async fn truncate_objects(sh: &Rc<Shard>, layout: &[u8], size: u64) {
    let Ok(l) = LovMd::decode(layout, LovForm::Stored) else { return };
    let count = u64::from(l.stripe_count.max(1));
    let ss = u64::from(l.stripe_size.max(1));
    for (i, o) in l.objects.iter().enumerate() {
        let Ok(fid) = o.l_ost_oi.to_fid(o.l_ost_idx.get()) else { continue };
        // The object size that file size `size` leaves on stripe `i`.
        let stripe = size / ss;
        let full_rounds = stripe / count;
        let within = size % ss;
        let i = i as u64;
        let osize = match (stripe % count).cmp(&i) {
            std::cmp::Ordering::Greater => (full_rounds + 1) * ss,
            std::cmp::Ordering::Equal => full_rounds * ss + within,
            std::cmp::Ordering::Less => full_rounds * ss,
        };
        let _ = on_object(sh, o.l_ost_idx.get(), fid, move |x, ost, fid| async move {
            punch(&ost_part(&x, ost)?.osd, fid, osize).await
        })
        .await;
    }
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

/// Fills the grant fields of an OST's connect reply.
pub fn fill_grant(_sh: &Shard, _index: u32, d: &mut ObdConnectData) {
    d.ocd_grant = (32u32 << 20).into();
    d.ocd_grant_blkbits = 12;
    d.ocd_grant_inobits = 8;
    d.ocd_grant_tax_kb = 4.into();
    d.ocd_grant_max_blks = 1024.into();
}

/// The OST's usage: every shard's OSD summed.
pub async fn ost_statfs(sh: &Rc<Shard>, index: u32) -> Result<ObdStatfs, i32> {
    let mut tot = osd_nvme::StatFs::default();
    for s in 0..sh.n {
        let st = sh
            .mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                ost_part(&x, index)?.osd.statfs().await.map_err(|e| errno_of(&e))
            })
            .await
            .map_err(|_| -errno::ESHUTDOWN)??;
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

fn fmt(id: &str) -> Result<&'static rmf::Fmt, i32> {
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
        Opcode::OstGetattr => getattr(sh, req).await,
        _ => Err(-ENOTSUPP),
    };
    r.into()
}

async fn getattr(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let oa = Obdo::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    let fid = oa.o_oi.to_fid(index).map_err(|_| -errno::EINVAL)?;
    if !fid.is_sane() {
        return Err(-errno::EINVAL);
    }
    let a = on_object(sh, index, fid, |x, ost, fid| async move {
        ost_part(&x, ost)?.osd.attr_get(&fid).await.map_err(|e| errno_of(&e))
    })
    .await?;
    let mut r = oa;
    r.o_valid =
        (md::FLID | md::FLSIZE | md::FLBLOCKS | md::FLMTIME | md::FLATIME | md::FLCTIME).into();
    r.o_size = a.size.into();
    r.o_blocks = a.blocks.into();
    r.o_mtime = u64::try_from(a.mtime.sec).unwrap_or(0).into();
    r.o_atime = u64::try_from(a.atime.sec).unwrap_or(0).into();
    r.o_ctime = u64::try_from(a.ctime.sec).unwrap_or(0).into();
    MsgBuilder::reply(fmt("OST_GETATTR")?, &req.inc.body)
        .wire("OST_BODY", &r)
        .and_then(|b| b.build())
        .map_err(|_| -errno::EPROTO)
}

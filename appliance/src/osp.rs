//! OSP: an MDT's proxy of each OST (Lustre's osp device). It hands out OST objects for new
//! files from precreated pools, cleans up the objects a crash left unused, and destroys or
//! truncates objects for the MDT: directly when the OST runs in this process, over
//! OST_CREATE / OST_DESTROY / OST_PUNCH otherwise. Both paths run the same OST code
//! ([`crate::ost::precreate`]), so the semantics are one.
//!
//! Every MDT shard owns its own object sequence on each OST (allocated from the MDT's
//! sequence space, so it never collides), so shards never coordinate to name objects:
//!
//! * `reserved` (persisted synchronously on the MDT shard, with the sequence) bounds every id
//!   ever handed out; it moves [`RESERVE`] ids at a time.
//! * `created` is what the OST has made durable (its `LAST_ID`, precreated [`BATCH`] at a
//!   time, past `reserved`); an id is handed out only when it is at most both, so a layout
//!   never names an object that might not exist.
//! * After a restart the first request for an OST is an orphan cleanup (`OBD_FL_DELORPHAN`
//!   with `reserved`): the OST destroys the precreated objects past it, and allocation resumes
//!   after what the OST kept. Objects in `(last used, reserved]` survive as empty orphans, at
//!   most [`RESERVE`] per OST per crash (Lustre records the exact last id used in each create
//!   transaction; our creates commit on the file's shard, not the allocating one).

use crate::mdt::{OST_OBJID_BASE, mdt};
use crate::shard::Shard;
use osd_nvme::{LuFid, Osd};
use proto::build::MsgBuilder;
use proto::connect::{ObdConnectData, flags as ocf};
use proto::fid::{OstId, seq};
use proto::lov::{LovForm, LovMd};
use proto::mdt::md;
use proto::nid::Nid;
use proto::opcode::Opcode;
use proto::ost::{Obdo, obd_fl};
use proto::portal;
use proto::wire::{FromZeros, Wire};
use ptlrpc::{Import, ImportConfig};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Objects asked of the OST per precreation.
pub const BATCH: u64 = 128;
/// Ids recorded as used ahead of handing them out (one synchronous MDT write per this many).
/// Smaller than [`BATCH`], so most precreated objects lie past `reserved` and an orphan
/// cleanup can remove them; at most this many leak per OST per crash.
pub const RESERVE: u64 = 32;
/// Last object id of a sequence before the MDT shard moves to a new one.
const MAX_OID: u64 = 0xffff_0000;

/// One OST's pool on one MDT shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pool {
    seq: u64,
    next: u64,
    reserved: u64,
    created: u64,
    cleaned: bool,
}

impl Pool {
    fn take(&mut self) -> Option<LuFid> {
        if self.cleaned && self.next <= self.created && self.next <= self.reserved {
            let id = u32::try_from(self.next).ok()?;
            self.next += 1;
            Some(LuFid::new(self.seq, id, 0))
        } else {
            None
        }
    }
}

/// An MDT shard's OSP state: a pool per OST, and a gate per OST so one refill runs at a time.
#[derive(Debug, Default)]
pub struct Osp {
    pools: RefCell<HashMap<u32, Pool>>,
    gates: RefCell<HashMap<u32, Rc<glommio::sync::Semaphore>>>,
}

impl Osp {
    fn take(&self, ost: u32) -> Option<LuFid> {
        self.pools.borrow_mut().get_mut(&ost).and_then(Pool::take)
    }
    fn gate(&self, ost: u32) -> Rc<glommio::sync::Semaphore> {
        self.gates
            .borrow_mut()
            .entry(ost)
            .or_insert_with(|| Rc::new(glommio::sync::Semaphore::new(1)))
            .clone()
    }
    /// Objects ready to hand out for `ost` (for statistics).
    #[must_use]
    pub fn ready(&self, ost: u32) -> u64 {
        self.pools
            .borrow()
            .get(&ost)
            .map_or(0, |p| (p.created.min(p.reserved) + 1).saturating_sub(p.next))
    }
}

fn pool_fid(ost: u32) -> LuFid {
    LuFid::new(seq::LOCAL_FILE, OST_OBJID_BASE + ost, 0)
}

fn errno_of(e: &osd_nvme::OsdError) -> i32 {
    -e.errno()
}

/// Reads a pool's persistent part (`seq`, `reserved`), or starts a new sequence.
async fn load(sh: &Rc<Shard>, index: u32, ost: u32) -> Result<Pool, i32> {
    let m = mdt(sh, index)?;
    let fid = pool_fid(ost);
    let osd = &m.store.osd;
    if osd.exists(&fid).await {
        let mut b = [0u8; 16];
        let n = osd.read(&fid, 0, &mut [&mut b]).await.map_err(|e| errno_of(&e))?;
        if n == 16 {
            let (s, r) = b.split_at(8);
            let s = u64::from_le_bytes(s.try_into().unwrap_or_default());
            let r = u64::from_le_bytes(r.try_into().unwrap_or_default());
            if s >= seq::NORMAL {
                return Ok(Pool { seq: s, next: r + 1, reserved: r, created: 0, cleaned: false });
            }
        }
        log::warn!("MDT{index:04x}: OST{ost:04x} object pool record is damaged; new sequence");
    }
    new_sequence(sh, index, ost).await
}

async fn new_sequence(sh: &Rc<Shard>, index: u32, ost: u32) -> Result<Pool, i32> {
    let s = mdt(sh, index)?.alloc_seq(sh.id, sh.n).await?;
    let p = Pool { seq: s, next: 1, reserved: 0, created: 0, cleaned: true };
    persist(sh, index, ost, &p).await?;
    log::info!("MDT{index:04x} shard {}: OST{ost:04x} objects in sequence {s:#x}", sh.id);
    Ok(p)
}

async fn persist(sh: &Rc<Shard>, index: u32, ost: u32, p: &Pool) -> Result<(), i32> {
    let m = mdt(sh, index)?;
    let osd = &m.store.osd;
    let fid = pool_fid(ost);
    let exists = osd.exists(&fid).await;
    let mut th = osd.trans_create();
    if !exists {
        th.declare_create(&fid);
    }
    th.declare_write(&fid, 0, 16);
    th.set_sync();
    osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&p.seq.to_le_bytes());
    b[8..].copy_from_slice(&p.reserved.to_le_bytes());
    let r = async {
        if !exists {
            osd.create(
                &mut th,
                &fid,
                osd_nvme::ObjType::Regular,
                &osd_nvme::Attr { mode: 0o100600, ..osd_nvme::Attr::default() },
            )
            .await?;
        }
        osd.write(&mut th, &fid, 0, &[&b]).await
    }
    .await;
    osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
    r.map(|_| ()).map_err(|e| errno_of(&e))
}

/// One object of OST `ost` for a new file's layout, from this MDT shard's pool.
pub async fn alloc(sh: &Rc<Shard>, index: u32, ost: u32) -> Result<LuFid, i32> {
    if let Some(f) = mdt(sh, index)?.osp.take(ost) {
        return Ok(f);
    }
    let gate = mdt(sh, index)?.osp.gate(ost);
    let _permit = gate.acquire_permit(1).await.map_err(|_| -libc::ESHUTDOWN)?;
    for _ in 0..4 {
        if let Some(f) = mdt(sh, index)?.osp.take(ost) {
            return Ok(f);
        }
        refill(sh, index, ost).await?;
    }
    Err(-libc::ENOSPC)
}

async fn refill(sh: &Rc<Shard>, index: u32, ost: u32) -> Result<(), i32> {
    let current = mdt(sh, index)?.osp.pools.borrow().get(&ost).copied();
    let mut p = match current {
        Some(p) => p,
        None => load(sh, index, ost).await?,
    };
    if !p.cleaned {
        let kept = ost_create(sh, index, ost, p.seq, p.reserved, true).await?;
        // Ids past what the OST kept were never handed out (ids go out only once created).
        p.created = kept.min(p.reserved);
        p.next = p.created + 1;
        p.cleaned = true;
    }
    if p.next > MAX_OID {
        p = new_sequence(sh, index, ost).await?;
    }
    if p.next > p.reserved {
        p.reserved = p.next + RESERVE - 1;
        persist(sh, index, ost, &p).await?;
    }
    if p.next > p.created {
        let want = p.next + BATCH - 1;
        p.created = ost_create(sh, index, ost, p.seq, want, false).await?;
        if p.created < p.next {
            mdt(sh, index)?.osp.pools.borrow_mut().insert(ost, p);
            return Err(-libc::ENOSPC);
        }
    }
    mdt(sh, index)?.osp.pools.borrow_mut().insert(ost, p);
    Ok(())
}

fn local_ost(sh: &Shard, ost: u32) -> bool {
    sh.ost(ost).is_some()
}

/// Precreation or orphan cleanup on OST `ost` for `seq`: in-process or over OST_CREATE.
async fn ost_create(
    sh: &Rc<Shard>,
    index: u32,
    ost: u32,
    seq: u64,
    id: u64,
    orphan: bool,
) -> Result<u64, i32> {
    if local_ost(sh, ost) {
        return crate::ost::precreate(sh, ost, seq, id, orphan.then_some(id)).await;
    }
    let oid = u32::try_from(id).map_err(|_| -libc::EOVERFLOW)?;
    let mut oa: Obdo = FromZeros::new_zeroed();
    oa.o_oi = OstId::from_fid(LuFid::new(seq, oid, 0));
    oa.o_valid = md::FLGROUP.into();
    if orphan {
        oa.o_valid = (md::FLGROUP | md::FLFLAGS).into();
        oa.o_flags = obd_fl::DELORPHAN.into();
    }
    let rep = remote(sh, index, ost, Opcode::OstCreate, oa, portal::OST_CREATE).await?;
    let got = rep.o_oi.as_fid();
    if got.seq() != seq {
        return Err(-libc::EPROTO);
    }
    Ok(u64::from(got.oid()))
}

/// The NIDs of OST `ost`: from the local MGS's database, or from the configuration the
/// MGC follows.
pub async fn ost_nids(sh: &Rc<Shard>, ost: u32) -> Vec<Nid> {
    if sh.cfg.local_mgs() {
        let fsname = sh.cfg.fsname.clone();
        return sh
            .mesh
            .call(sh, 0, move |z: Rc<Shard>| async move {
                let Some(st) = z.mgs.as_ref().and_then(|m| m.state.as_ref()) else {
                    return Vec::new();
                };
                let db = st.db.borrow();
                db.fs
                    .get(&fsname)
                    .and_then(|f| f.targets.get(&(crate::mgs::db::Kind::Ost, ost)))
                    .map(|t| t.nids.clone())
                    .unwrap_or_default()
            })
            .await
            .unwrap_or_default();
    }
    sh.cluster.borrow().osts.iter().find(|o| o.0 == ost).map(|o| o.1.clone()).unwrap_or_default()
}

/// The shard that holds the MDT's import of OST `ost` (one export per MDT on each OST, as in
/// Lustre, so one import per process).
fn import_shard(sh: &Shard, ost: u32) -> usize {
    usize::try_from(ost).unwrap_or(0) % sh.n.max(1)
}

/// Sends an OST request carrying one obdo from the shard that owns the import, connecting
/// first when needed, and returns the reply's obdo.
async fn remote(
    sh: &Rc<Shard>,
    index: u32,
    ost: u32,
    opc: Opcode,
    oa: Obdo,
    request_portal: u32,
) -> Result<Obdo, i32> {
    let home = import_shard(sh, ost);
    sh.mesh
        .call(sh, home, move |x: Rc<Shard>| async move {
            let imp = import(&x, index, ost).await?;
            let b = MsgBuilder::request(opc)
                .and_then(|b| b.wire("OST_BODY", &oa))
                .map_err(|_| -libc::EPROTO)?;
            let rep = imp
                .rpc_via(Some((request_portal, portal::OSC_REPLY)), b, None)
                .await
                .map_err(|e| -e.errno())?;
            if rep.status() < 0 {
                return Err(rep.status());
            }
            let body = rep.buf("ost_body", 1, Obdo::SIZE).map_err(|_| -libc::EPROTO)?;
            Obdo::read(body).map_err(|_| -libc::EPROTO)
        })
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

async fn import(sh: &Rc<Shard>, index: u32, ost: u32) -> Result<Rc<Import>, i32> {
    if let Some(i) = sh.ost_imports.borrow().get(&(index, ost))
        && i.is_connected()
    {
        return Ok(i.clone());
    }
    let nid = *ost_nids(sh, ost).await.first().ok_or(-libc::ENODEV)?;
    let fs = &sh.cfg.fsname;
    let mut c = ImportConfig::new(
        lnd::ProcessId::lustre(nid),
        portal::OST_REQUEST,
        portal::OSC_REPLY,
        &format!("{fs}-OST{ost:04x}_UUID"),
        &format!("{fs}-MDT{index:04x}-mdtlov_UUID"),
        Opcode::OstConnect,
    );
    c.conn_cookie = sh.salt ^ (u64::from(index) << 32 | u64::from(ost)) | 1;
    c.timeout = Duration::from_secs(10);
    c.reply_size = 16 << 10;
    let imp = Import::new(sh.lnet.clone(), c, sh.xids.clone());
    let mut d: ObdConnectData = FromZeros::new_zeroed();
    d.ocd_connect_flags = (ocf::VERSION
        | ocf::INDEX
        | ocf::AT
        | ocf::MDS
        | ocf::SKIP_ORPHAN
        | ocf::FID
        | ocf::FULL20
        | ocf::FLAGS2
        | ocf::LVB_TYPE
        | ocf::BULK_MBITS
        | ocf::IMP_RECOV)
        .into();
    d.ocd_connect_flags2 = proto::connect::flags2::REP_MBITS.into();
    d.ocd_version = crate::mgs::db::MGS_LUSTRE_VERSION.into();
    d.ocd_index = ost.into();
    d.ocd_group = index.into();
    imp.connect(d).await.map_err(|e| {
        crate::ratelog::warn("osp connect", &format!("MDT{index:04x}: OST{ost:04x} at {nid}: {e}"));
        -e.errno()
    })?;
    log::info!("MDT{index:04x}: connected to OST{ost:04x} at {nid}");
    sh.ost_imports.borrow_mut().insert((index, ost), imp.clone());
    Ok(imp)
}

/// The objects of a stored layout, with their OSTs.
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

fn object_obdo(fid: LuFid) -> Obdo {
    let mut oa: Obdo = FromZeros::new_zeroed();
    oa.o_oi = OstId::from_fid(fid);
    oa.o_valid = (md::FLID | md::FLGROUP).into();
    oa
}

/// Destroys the OST objects of a layout (a file's last link went). An unreachable OST keeps
/// the object (logged): it is an orphan, not a loss.
pub async fn destroy_layout_objects(sh: &Rc<Shard>, index: u32, layout: &[u8]) {
    for (ost, fid) in layout_objects(layout) {
        let r = if local_ost(sh, ost) {
            crate::ost::destroy_object(sh, ost, fid).await
        } else {
            remote(sh, index, ost, Opcode::OstDestroy, object_obdo(fid), portal::OST_REQUEST)
                .await
                .map(|_| ())
        };
        match r {
            Ok(()) | Err(-2) => {}
            Err(e) => log::warn!("OST{ost:04x}: destroying {fid}: errno {e}"),
        }
    }
}

/// Truncates a file's OST objects to file size `size` (RAID-0: each stripe keeps its share).
pub async fn truncate_objects(sh: &Rc<Shard>, index: u32, layout: &[u8], size: u64) {
    let Ok(l) = LovMd::decode(layout, LovForm::Stored) else { return };
    let count = u64::from(l.stripe_count.max(1));
    let ss = u64::from(l.stripe_size.max(1));
    for (i, o) in l.objects.iter().enumerate() {
        let ost = o.l_ost_idx.get();
        let Ok(fid) = o.l_ost_oi.to_fid(ost) else { continue };
        let osize = object_size(size, ss, count, i as u64);
        let r = if local_ost(sh, ost) {
            crate::ost::punch_object(sh, ost, fid, osize).await
        } else {
            // The OST locks the cut range itself (OBD_FL_SRVLOCK), so caching clients let go.
            let mut oa = object_obdo(fid);
            oa.o_valid = (md::FLID | md::FLGROUP | md::FLSIZE | md::FLBLOCKS | md::FLFLAGS).into();
            oa.o_flags = proto::ost::obd_fl::SRVLOCK.into();
            oa.o_size = osize.into();
            oa.o_blocks = u64::MAX.into();
            remote(sh, index, ost, Opcode::OstPunch, oa, portal::OST_REQUEST).await.map(|_| ())
        };
        if let Err(e) = r {
            log::warn!("OST{ost:04x}: truncating {fid} to {osize}: errno {e}");
        }
    }
}

/// The size stripe `i` of `count` (stripe size `ss`) has in a file of `size` bytes.
#[must_use]
pub fn object_size(size: u64, ss: u64, count: u64, i: u64) -> u64 {
    let stripe = size / ss;
    let full_rounds = stripe / count;
    let within = size % ss;
    match (stripe % count).cmp(&i) {
        std::cmp::Ordering::Greater => (full_rounds + 1) * ss,
        std::cmp::Ordering::Equal => full_rounds * ss + within,
        std::cmp::Ordering::Less => full_rounds * ss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_shares_of_a_size() {
        // 3 stripes of 4: sizes 0..=13.
        let sizes: Vec<Vec<u64>> =
            (0..14).map(|s| (0..3).map(|i| object_size(s, 4, 3, i)).collect()).collect();
        assert_eq!(sizes[0], vec![0, 0, 0]);
        assert_eq!(sizes[3], vec![3, 0, 0]);
        assert_eq!(sizes[4], vec![4, 0, 0]);
        assert_eq!(sizes[9], vec![4, 4, 1]);
        assert_eq!(sizes[13], vec![5, 4, 4]);
        for (s, v) in sizes.iter().enumerate() {
            assert_eq!(v.iter().sum::<u64>(), s as u64);
        }
    }

    #[test]
    fn pools_hand_out_only_created_and_reserved_ids() {
        let mut p = Pool { seq: seq::NORMAL + 7, next: 1, reserved: 2, created: 3, cleaned: true };
        assert_eq!(p.take().map(|f| f.oid()), Some(1));
        assert_eq!(p.take().map(|f| f.oid()), Some(2));
        assert_eq!(p.take(), None, "past reserved");
        p.reserved = 10;
        assert_eq!(p.take().map(|f| f.oid()), Some(3));
        assert_eq!(p.take(), None, "past created");
        p.created = 10;
        p.cleaned = false;
        assert_eq!(p.take(), None, "not before orphan cleanup");
    }
}

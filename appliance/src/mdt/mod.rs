//! The metadata target (MDT), partitioned across shards DNE-style (decision 4).
//!
//! * An object lives on the shard its FID names: sequences below `FID_SEQ_NORMAL` (the root,
//!   local files) on shard 0, others on `(seq - NORMAL) % nshards`. Each shard hands out
//!   sequences of its own (SEQ_QUERY), so a client's new objects live on the shard its
//!   sequence came from, and a name lives with its parent directory.
//! * An operation is a list of [`subop::SubOp`]s per shard. The home shard of the client
//!   (where its requests arrive) coordinates: it takes LDLM locks on every object touched
//!   (which also calls back clients' cached locks), validates each shard's part, and applies
//!   it. When more than one shard is involved it first writes an intent record (durably), applies
//!   each part with a marker that makes it idempotent, then drops the record; a shard that
//!   restarts finishes the operations its records name before serving (see [`replay`]).

pub mod flock;
pub mod layout;
pub mod ops;
pub mod service;
pub mod store;
pub mod subop;

use crate::ldlm::service::NsSlot;
use crate::shard::Shard;
use crate::store::AnyOsd;
use osd_nvme::{Attr, LuFid, ObjType, Osd, Timespec};
use proto::fid::seq;
use ptlrpc::export::{ExportLimits, ExportTable};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use store::{MdtStore, ORPHANS, errno_of, key_fid};
use subop::{SubOp, decode_parts, encode_parts};

/// The sequence counter of a shard (next `k`; sequences are `NORMAL + k * n + shard`).
const SEQ_COUNTER: LuFid = LuFid::new(seq::LOCAL_FILE, 1, 0);
/// Intent records of operations this shard coordinates.
const INTENTS: LuFid = LuFid::new(seq::LOCAL_FILE, 2, 0);
/// Parts of other shards' operations applied here (idempotency markers).
const MARKERS: LuFid = LuFid::new(seq::LOCAL_FILE, 3, 0);
/// The intent id counter.
const INTENT_COUNTER: LuFid = LuFid::new(seq::LOCAL_FILE, 4, 0);
/// OST object id counters (one object per OST: `LOCAL_FILE:0x100 + ost:0`).
pub const OST_OBJID_BASE: u32 = 0x100;

/// The shard that owns an MDT object.
#[must_use]
pub fn shard_of(fid: &LuFid, n: usize) -> usize {
    let s = fid.seq();
    if s < seq::NORMAL || n <= 1 {
        0
    } else {
        usize::try_from((s - seq::NORMAL) % n as u64).unwrap_or(0)
    }
}

/// An open file handle (on the home shard of the client that opened it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFile {
    /// The file.
    pub fid: LuFid,
    /// Open flags.
    pub flags: u64,
    /// The export that opened it.
    pub export: u64,
}

/// Counters behind `mdt.*.md_stats`.
#[derive(Debug, Default)]
pub struct MdStats {
    /// Per operation name: (samples, sum of microseconds, min, max, sum of squares).
    pub ops: RefCell<std::collections::BTreeMap<&'static str, [u64; 5]>>,
}

impl MdStats {
    /// Records one operation taking `us` microseconds.
    pub fn add(&self, op: &'static str, us: u64) {
        let mut m = self.ops.borrow_mut();
        let e = m.entry(op).or_insert([0, 0, u64::MAX, 0, 0]);
        e[0] += 1;
        e[1] += us;
        e[2] = e[2].min(us);
        e[3] = e[3].max(us);
        e[4] = e[4].saturating_add(us.saturating_mul(us));
    }
}

/// One shard's part of an MDT.
#[derive(Debug)]
pub struct MdtShard {
    /// MDT index.
    pub index: u32,
    /// The shard's objects.
    pub store: MdtStore,
    /// Exports of clients homed here.
    pub exports: RefCell<ExportTable>,
    /// The shard's lock namespace for this MDT.
    pub slot: NsSlot,
    /// Open handles of clients homed here.
    pub opens: RefCell<HashMap<u64, OpenFile>>,
    next_open: Cell<u64>,
    next_seq: Cell<u64>,
    next_intent: Cell<u64>,
    /// Operation counters.
    pub stats: MdStats,
    /// Refuse changes (`set_param mdt.*.readonly=1`).
    pub readonly: Cell<bool>,
    /// OST object pools of this shard.
    pub osp: crate::osp::Osp,
}

fn now_ts() -> Timespec {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timespec { sec: i64::try_from(d.as_secs()).unwrap_or(0), nsec: d.subsec_nanos() }
}

async fn read_u64(osd: &AnyOsd, fid: &LuFid) -> Result<u64, i32> {
    let mut b = [0u8; 8];
    osd.read(fid, 0, &mut [&mut b]).await.map_err(|e| errno_of(&e))?;
    Ok(u64::from_le_bytes(b))
}

async fn write_u64(osd: &AnyOsd, fid: &LuFid, v: u64, sync: bool) -> Result<(), i32> {
    let mut th = osd.trans_create();
    th.declare_write(fid, 0, 8);
    if sync {
        th.set_sync();
    }
    osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
    let r = osd.write(&mut th, fid, 0, &[&v.to_le_bytes()]).await;
    osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
    r.map(|_| ()).map_err(|e| errno_of(&e))
}

impl MdtShard {
    /// Opens (and on first use initialises) shard `shard`'s part of MDT `index` on `osd`.
    pub async fn open(
        index: u32,
        shard: usize,
        salt: u64,
        osd: AnyOsd,
        slot: NsSlot,
    ) -> Result<MdtShard, String> {
        let store = MdtStore::new(osd.clone());
        let e = |x: i32| format!("MDT{index:04x} shard {shard}: init: errno {x}");
        // Local objects.
        let locals = [
            (SEQ_COUNTER, ObjType::Regular),
            (INTENTS, ObjType::Index),
            (MARKERS, ObjType::Index),
            (INTENT_COUNTER, ObjType::Regular),
            (ORPHANS, ObjType::Index),
        ];
        let mut missing = Vec::new();
        for (f, t) in locals {
            if !osd.exists(&f).await {
                missing.push((f, t));
            }
        }
        if !missing.is_empty() {
            let mut th = osd.trans_create();
            for (f, t) in &missing {
                th.declare_create(f);
                if *t == ObjType::Regular {
                    th.declare_write(f, 0, 8);
                }
            }
            th.set_sync();
            osd.trans_start(&mut th).await.map_err(|x| e(errno_of(&x)))?;
            for (f, t) in &missing {
                osd.create(&mut th, f, *t, &Attr { mode: 0o100600, ..Attr::default() })
                    .await
                    .map_err(|x| e(errno_of(&x)))?;
                if *t == ObjType::Regular {
                    osd.write(&mut th, f, 0, &[&1u64.to_le_bytes()])
                        .await
                        .map_err(|x| e(errno_of(&x)))?;
                }
            }
            osd.trans_stop(th).await.map_err(|x| e(errno_of(&x)))?;
        }
        // The root directory lives on shard 0.
        if shard == 0 && !osd.exists(&LuFid::ROOT).await {
            let t = now_ts();
            let attr =
                Attr { mode: 0o40755, nlink: 2, atime: t, mtime: t, ctime: t, ..Attr::default() };
            let op = SubOp::Create {
                fid: LuFid::ROOT,
                ty: ObjType::Dir,
                attr,
                parent: LuFid::ROOT,
                xattrs: Vec::new(),
                symlink: Vec::new(),
            };
            store.apply(&[op], true, None).await.map_err(e)?;
            log::info!("MDT{index:04x}: created the root directory {}", LuFid::ROOT);
        }
        // Files unlinked while open before a restart have no opener any more.
        let orphans = osd.index_iter(&ORPHANS, 0, 100_000).await.map_err(|x| e(errno_of(&x)))?;
        for ent in orphans.entries {
            if let Some(f) = key_fid(&ent.key) {
                let _ = store.destroy_orphan(&f).await;
            }
        }
        let next_seq = read_u64(&osd, &SEQ_COUNTER).await.map_err(e)?;
        let next_intent = read_u64(&osd, &INTENT_COUNTER).await.map_err(e)?;
        Ok(MdtShard {
            index,
            store,
            exports: RefCell::new(ExportTable::new(
                u16::try_from(shard).unwrap_or(0),
                slot,
                salt,
                ExportLimits::default(),
            )),
            slot,
            opens: RefCell::new(HashMap::new()),
            next_open: Cell::new(salt << 20),
            next_seq: Cell::new(next_seq.max(1)),
            osp: crate::osp::Osp::default(),
            next_intent: Cell::new(next_intent.max(1)),
            stats: MdStats::default(),
            readonly: Cell::new(false),
        })
    }

    /// Allocates a FID sequence for a client (SEQ_QUERY) from this shard's range.
    pub async fn alloc_seq(&self, shard: usize, n: usize) -> Result<u64, i32> {
        let k = self.next_seq.get();
        self.next_seq.set(k + 1);
        // The counter's current value, not k + 1: a later allocation may have started first.
        write_u64(&self.store.osd, &SEQ_COUNTER, self.next_seq.get(), true).await?;
        Ok(seq::NORMAL + k * n as u64 + shard as u64)
    }

    /// A new open handle cookie.
    pub fn new_open_handle(&self) -> u64 {
        let h = self.next_open.get().wrapping_add(1);
        self.next_open.set(h);
        h
    }

    /// Forgets an evicted export's open files here (their objects' open counts drop on their
    /// owner shards at the next close of each, or at restart).
    pub fn forget_export(&self, export: u64) {
        self.opens.borrow_mut().retain(|_, o| o.export != export);
    }

    async fn next_intent_id(&self) -> Result<u64, i32> {
        let id = self.next_intent.get();
        self.next_intent.set(id + 1);
        Ok(id)
    }
}

/// The MDT partition of `index` on `sh`.
pub fn mdt(sh: &Shard, index: u32) -> Result<&MdtShard, i32> {
    sh.mdt(index).ok_or(-libc::ENODEV)
}

fn marker_key(coord: usize, id: u64) -> Vec<u8> {
    let mut k = u16::try_from(coord).unwrap_or(u16::MAX).to_be_bytes().to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Validates `ops` on shard `s` (the caller holds the locks).
pub async fn validate_on(sh: &Rc<Shard>, index: u32, s: usize, ops: Vec<SubOp>) -> Result<(), i32> {
    sh.mesh
        .call(sh, s, move |x: Rc<Shard>| async move { mdt(&x, index)?.store.validate(&ops).await })
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

/// Applies `ops` on shard `s`; with a marker, only once.
pub async fn apply_on(
    sh: &Rc<Shard>,
    index: u32,
    s: usize,
    ops: Vec<SubOp>,
    marker: Option<(usize, u64)>,
) -> Result<store::Applied, i32> {
    sh.mesh
        .call(sh, s, move |x: Rc<Shard>| async move {
            let m = mdt(&x, index)?;
            let extra = match marker {
                Some((c, id)) => {
                    let k = marker_key(c, id);
                    if m.store.osd.index_lookup(&MARKERS, &k).await.is_ok() {
                        return Ok(store::Applied::default());
                    }
                    Some((&MARKERS, k, Vec::new()))
                }
                None => None,
            };
            let a = m.store.apply(&ops, x.cfg.sync_journal, extra).await?;
            destroy_layouts(&x, index, &a.destroyed).await;
            Ok(a)
        })
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

/// Removes the OST objects of destroyed files.
pub async fn destroy_layouts(sh: &Rc<Shard>, index: u32, destroyed: &[(LuFid, Vec<u8>)]) {
    for (_, layout) in destroyed {
        if !layout.is_empty() {
            crate::osp::destroy_layout_objects(sh, index, layout).await;
        }
    }
}

/// Runs a multi-part operation: validate every part, then apply them (atomically per shard,
/// and with an intent record when more than one shard takes part). The caller holds the
/// locks. Returns the largest transno and the combined results.
pub async fn execute(
    sh: &Rc<Shard>,
    index: u32,
    parts: Vec<(usize, Vec<SubOp>)>,
) -> Result<store::Applied, i32> {
    let parts: Vec<(usize, Vec<SubOp>)> =
        parts.into_iter().filter(|(_, ops)| !ops.is_empty()).collect();
    let mut out = store::Applied::default();
    if parts.len() <= 1 {
        for (s, ops) in parts {
            validate_on(sh, index, s, ops.clone()).await?;
            let a = apply_on(sh, index, s, ops, None).await?;
            out.transno = out.transno.max(a.transno);
            out.destroyed.extend(a.destroyed);
        }
        return Ok(out);
    }
    for (s, ops) in &parts {
        validate_on(sh, index, *s, ops.clone()).await?;
    }
    // The intent record makes the operation survive a crash between the parts.
    let m = mdt(sh, index)?;
    let id = m.next_intent_id().await?;
    write_u64(&m.store.osd, &INTENT_COUNTER, id + 1, false).await?;
    let rec = encode_parts(&parts);
    {
        let osd = &m.store.osd;
        let mut th = osd.trans_create();
        th.declare_index_insert(&INTENTS, 8, rec.len());
        th.set_sync();
        osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
        let r = osd.index_insert(&mut th, &INTENTS, &id.to_be_bytes(), &rec).await;
        osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
        r.map_err(|e| errno_of(&e))?;
    }
    let mut failed = None;
    for (s, ops) in parts.clone() {
        match apply_on(sh, index, s, ops, Some((sh.id, id))).await {
            Ok(a) => {
                out.transno = out.transno.max(a.transno);
                out.destroyed.extend(a.destroyed);
            }
            Err(e) => {
                // Validated under locks, so only I/O trouble lands here: the record stays and
                // the operation is finished at the next start.
                log::error!("MDT{index:04x}: part on shard {s} of intent {id} failed: errno {e}");
                failed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    finish_intent(sh, index, id, &parts).await;
    Ok(out)
}

async fn finish_intent(sh: &Rc<Shard>, index: u32, id: u64, parts: &[(usize, Vec<SubOp>)]) {
    if let Ok(m) = mdt(sh, index) {
        let osd = &m.store.osd;
        let mut th = osd.trans_create();
        th.declare_index_delete(&INTENTS, 8);
        if osd.trans_start(&mut th).await.is_ok() {
            let _ = osd.index_delete(&mut th, &INTENTS, &id.to_be_bytes()).await;
            let _ = osd.trans_stop(th).await;
        }
    }
    let coord = sh.id;
    for (s, _) in parts {
        let k = marker_key(coord, id);
        let _ = sh
            .mesh
            .call(sh, *s, move |x: Rc<Shard>| async move {
                if let Ok(m) = mdt(&x, index) {
                    let osd = &m.store.osd;
                    let mut th = osd.trans_create();
                    th.declare_index_delete(&MARKERS, k.len());
                    if osd.trans_start(&mut th).await.is_ok() {
                        let _ = osd.index_delete(&mut th, &MARKERS, &k).await;
                        let _ = osd.trans_stop(th).await;
                    }
                }
            })
            .await;
    }
}

/// Finishes the cross-shard operations this shard coordinated before a crash: every part is
/// applied (each at most once, thanks to the markers), then the record goes. Runs at start,
/// before the shard serves requests.
pub async fn replay(sh: &Rc<Shard>, index: u32) -> Result<usize, String> {
    let m = mdt(sh, index).map_err(|e| format!("errno {e}"))?;
    let page = m.store.osd.index_iter(&INTENTS, 0, 100_000).await.map_err(|e| e.to_string())?;
    let mut done = 0;
    for ent in page.entries {
        let id = u64::from_be_bytes(
            ent.key.get(..8).and_then(|k| k.try_into().ok()).unwrap_or_default(),
        );
        let Some(parts) = decode_parts(&ent.value) else {
            log::error!("MDT{index:04x}: intent {id} does not decode; dropped");
            finish_intent(sh, index, id, &[]).await;
            continue;
        };
        for (s, ops) in parts.clone() {
            apply_on(sh, index, s, ops, Some((sh.id, id)))
                .await
                .map_err(|e| format!("replaying intent {id} on shard {s}: errno {e}"))?;
        }
        finish_intent(sh, index, id, &parts).await;
        done += 1;
    }
    if done > 0 {
        log::info!(
            "MDT{index:04x} shard {}: finished {done} cross-shard operations from the intent log",
            sh.id
        );
    }
    Ok(done)
}

//! The LDLM on a shard: the namespaces of every local target's partition, lock waiting for
//! server-side users, blocking and completion callbacks to clients, and eviction of clients
//! that do not give locks back.

use super::ns::{
    Ast, EnqueueReq, Enqueued, ExportId, FlockDone, Glimpsed, LdlmError, Lock, Namespace, NsLimits,
};
use crate::shard::Shard;
use glommio::channels::local_channel::{LocalSender, new_bounded};
use lnd::ProcessId;
use proto::build::MsgBuilder;
use proto::fid::LustreHandle;
use proto::ldlm::{LdlmLockDesc, LdlmRequest, OstLvb, OstLvbV1, flags as lf};
use proto::opcode::Opcode;
use proto::portal;
use proto::wire::Wire;
use ptlrpc::client::{Target, exchange};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// The server's own locks (taken by the MDT and MGS around updates, and by the OST for
/// `OBD_BRW_SRVLOCK` I/O) belong to this export.
pub const LOCAL: ExportId = super::ns::LOCAL_EXPORT;

/// A namespace slot on a shard (6 bits of every lock cookie name it).
pub type NsSlot = u8;

/// Who to call back about a client's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AstTarget {
    /// The client.
    pub peer: ProcessId,
    /// The client's connection cookie: callbacks carry it in `pb_handle`.
    pub conn: u64,
    /// The shard where the client's export lives (for eviction).
    pub home: usize,
}

/// The shard that owns a lock cookie, and its namespace slot.
#[must_use]
pub fn cookie_owner(cookie: u64) -> (usize, NsSlot) {
    (usize::try_from(cookie >> 54).unwrap_or(0), ((cookie >> 48) & 0x3f) as u8)
}

/// The LDLM state of one shard.
#[derive(Debug)]
pub struct LdlmShard {
    nss: RefCell<Vec<Namespace>>,
    targets: RefCell<HashMap<u64, AstTarget>>,
    waiters: RefCell<HashMap<u64, LocalSender<()>>>,
    limits: NsLimits,
}

impl LdlmShard {
    /// No namespaces yet.
    #[must_use]
    pub fn new(limits: NsLimits) -> LdlmShard {
        LdlmShard {
            nss: RefCell::new(Vec::new()),
            targets: RefCell::new(HashMap::new()),
            waiters: RefCell::new(HashMap::new()),
            limits,
        }
    }

    /// Adds a namespace on shard `shard`; returns its slot.
    pub fn add_namespace(&self, name: &str, shard: usize) -> NsSlot {
        let mut nss = self.nss.borrow_mut();
        let slot = u8::try_from(nss.len()).unwrap_or(u8::MAX) & 0x3f;
        let tag = u16::try_from((shard << 6) | usize::from(slot)).unwrap_or(0);
        nss.push(Namespace::new(name, tag, self.limits));
        slot
    }

    /// Reads a namespace.
    pub fn with_ns<R>(&self, slot: NsSlot, f: impl FnOnce(&Namespace) -> R) -> Option<R> {
        self.nss.borrow().get(usize::from(slot)).map(f)
    }

    /// Changes a namespace (`set_param ldlm.namespaces.*.lru_size`).
    pub fn with_ns_mut<R>(&self, slot: NsSlot, f: impl FnOnce(&mut Namespace) -> R) -> Option<R> {
        self.nss.borrow_mut().get_mut(usize::from(slot)).map(f)
    }

    /// Every namespace's name, lock count, resource count, unused count and limits.
    #[must_use]
    pub fn summary(&self) -> Vec<(String, usize, usize, usize, NsLimits)> {
        self.nss
            .borrow()
            .iter()
            .map(|n| {
                (
                    n.name().to_string(),
                    n.lock_count(),
                    n.resource_count(),
                    n.unused_count(),
                    n.limits(),
                )
            })
            .collect()
    }
}

/// Enqueues a lock on this shard and waits until it is granted (clients in the way are asked
/// for their locks; one that does not answer within the AST timeout is evicted). Client locks
/// carry an [`AstTarget`] for later callbacks.
pub async fn enqueue(
    sh: &Rc<Shard>,
    slot: NsSlot,
    req: EnqueueReq,
    ast: Option<AstTarget>,
) -> Result<Lock, LdlmError> {
    enqueue_inner(sh, slot, req, ast, true).await
}

/// Enqueues a client's lock and returns at once, granted or queued: a queued lock is granted
/// later by a completion AST to the client (Lustre's flow for a blocked enqueue, whose reply
/// carries `LDLM_FL_BLOCK_GRANTED`).
pub async fn enqueue_queued(
    sh: &Rc<Shard>,
    slot: NsSlot,
    req: EnqueueReq,
    ast: AstTarget,
) -> Result<Lock, LdlmError> {
    enqueue_inner(sh, slot, req, Some(ast), false).await
}

async fn enqueue_inner(
    sh: &Rc<Shard>,
    slot: NsSlot,
    req: EnqueueReq,
    ast: Option<AstTarget>,
    wait: bool,
) -> Result<Lock, LdlmError> {
    let mut out = Vec::new();
    let now = sh.now_ms();
    let r =
        sh.ldlm.with_ns_mut(slot, |ns| ns.enqueue(req, now, &mut out)).ok_or(LdlmError::Invalid)?;
    let cookie = match r {
        Ok(Enqueued::Granted(c)) | Ok(Enqueued::Waiting(c)) => c,
        Err(e) => {
            process_asts(sh, slot, out);
            return Err(e);
        }
    };
    if let Some(t) = ast {
        sh.ldlm.targets.borrow_mut().insert(cookie, t);
    }
    if let Ok(Enqueued::Waiting(_)) = r
        && !wait
    {
        process_asts(sh, slot, out);
        return sh
            .ldlm
            .with_ns(slot, |ns| ns.lock(cookie).cloned())
            .flatten()
            .ok_or(LdlmError::NoSuchLock);
    }
    if let Ok(Enqueued::Waiting(_)) = r {
        let (tx, rx) = new_bounded(1);
        sh.ldlm.waiters.borrow_mut().insert(cookie, tx);
        process_asts(sh, slot, out);
        // Woken by the completion AST of this lock, or by its removal (eviction).
        rx.recv().await;
        sh.ldlm.waiters.borrow_mut().remove(&cookie);
    } else {
        process_asts(sh, slot, out);
    }
    sh.ldlm
        .with_ns(slot, |ns| ns.lock(cookie).cloned())
        .flatten()
        .filter(Lock::is_granted)
        .ok_or(LdlmError::NoSuchLock)
}

/// Enqueues a FLOCK request on this shard (the MDT's flock and fcntl locks): granted, an
/// unlock done, a test answered, or queued for a completion AST to `ast` later. Flock holders
/// get no blocking AST, so only a queued request needs its client's address.
pub fn flock_enqueue(
    sh: &Rc<Shard>,
    slot: NsSlot,
    req: EnqueueReq,
    ast: AstTarget,
) -> Result<FlockDone, LdlmError> {
    let mut out = Vec::new();
    let now = sh.now_ms();
    let r = sh
        .ldlm
        .with_ns_mut(slot, |ns| ns.enqueue_flock(req, now, &mut out))
        .ok_or(LdlmError::Invalid)?;
    if let Ok(FlockDone::Waiting(l)) = &r {
        sh.ldlm.targets.borrow_mut().insert(l.cookie, ast);
    }
    process_asts(sh, slot, out);
    r
}

/// A glimpse enqueue on this shard (`ofd_intent_policy`'s RESCAN): granted at once when
/// nothing conflicts (the client then holds it like any lock), otherwise no lock and the
/// locks to glimpse.
pub fn glimpse_enqueue(
    sh: &Rc<Shard>,
    slot: NsSlot,
    req: EnqueueReq,
    ast: AstTarget,
) -> Result<Glimpsed, LdlmError> {
    let mut out = Vec::new();
    let now = sh.now_ms();
    let r =
        sh.ldlm.with_ns_mut(slot, |ns| ns.glimpse(req, now, &mut out)).ok_or(LdlmError::Invalid)?;
    if let Ok(Glimpsed::Granted(c)) = &r {
        sh.ldlm.targets.borrow_mut().insert(*c, ast);
    }
    process_asts(sh, slot, out);
    r
}

/// Converts a granted IBITS lock on this shard to fewer bits (LDLM_CONVERT) and lets the
/// waiters it blocked in. Returns the lock as converted.
pub fn convert(
    sh: &Rc<Shard>,
    cookie: u64,
    export: ExportId,
    mode: u32,
    bits: u64,
) -> Result<Lock, LdlmError> {
    let (_, slot) = cookie_owner(cookie);
    let mut out = Vec::new();
    let now = sh.now_ms();
    let r = sh
        .ldlm
        .with_ns_mut(slot, |ns| {
            ns.convert(cookie, export, mode, bits, now, &mut out)?;
            ns.lock(cookie).cloned().ok_or(LdlmError::NoSuchLock)
        })
        .ok_or(LdlmError::NoSuchLock)?;
    process_asts(sh, slot, out);
    r
}

/// Cancels a lock on this shard (a client's LDLM_CANCEL or ELC, or a server lock's release).
pub fn cancel(sh: &Rc<Shard>, cookie: u64, export: Option<ExportId>) -> Result<(), LdlmError> {
    let (_, slot) = cookie_owner(cookie);
    let mut out = Vec::new();
    let now = sh.now_ms();
    let r = sh
        .ldlm
        .with_ns_mut(slot, |ns| ns.cancel(cookie, export, now, &mut out))
        .ok_or(LdlmError::NoSuchLock)?;
    sh.ldlm.targets.borrow_mut().remove(&cookie);
    process_asts(sh, slot, out);
    r.map(|_| ())
}

/// Drops every lock of `export` in every namespace of this shard (eviction, disconnect).
pub fn drop_export(sh: &Rc<Shard>, export: ExportId) -> usize {
    let n = sh.ldlm.nss.borrow().len();
    let mut total = 0;
    for slot in 0..n {
        let slot = u8::try_from(slot).unwrap_or(0);
        let mut out = Vec::new();
        let now = sh.now_ms();
        total +=
            sh.ldlm.with_ns_mut(slot, |ns| ns.cancel_export(export, now, &mut out)).unwrap_or(0);
        process_asts(sh, slot, out);
    }
    // Callback addresses of the locks that went (queued FLOCK requests hold one until they
    // are granted).
    sh.ldlm.targets.borrow_mut().retain(|&c, _| {
        sh.ldlm.with_ns(cookie_owner(c).1, |ns| ns.lock(c).is_some()).unwrap_or(false)
    });
    let waiters: Vec<u64> = sh.ldlm.waiters.borrow().keys().copied().collect();
    // Waiting enqueues of the evicted export return (their lock is gone).
    for c in waiters {
        let (_, slot) = cookie_owner(c);
        let gone = sh.ldlm.with_ns(slot, |ns| ns.lock(c).is_none()).unwrap_or(true);
        if gone && let Some(tx) = sh.ldlm.waiters.borrow_mut().remove(&c) {
            let _ = tx.try_send(());
        }
    }
    total
}

fn process_asts(sh: &Rc<Shard>, slot: NsSlot, out: Vec<Ast>) {
    for ast in out {
        match ast {
            Ast::Completion(l) => {
                let w = sh.ldlm.waiters.borrow_mut().remove(&l.cookie);
                // A granted FLOCK lock is never called back again (and may be merged away).
                let flock = l.policy.lock_type() == proto::ldlm::lock_type::FLOCK;
                let t = if flock {
                    sh.ldlm.targets.borrow_mut().remove(&l.cookie)
                } else {
                    sh.ldlm.targets.borrow().get(&l.cookie).copied()
                };
                if let Some(tx) = w {
                    let _ = tx.try_send(());
                } else if let Some(t) = t {
                    let sh = sh.clone();
                    glommio::spawn_local(async move { send_completion(&sh, slot, &l, t, 0).await })
                        .detach();
                }
            }
            Ast::FlockAborted { lock, deadlock } => {
                // `ldlm_flock_cancel_on_deadlock`: the waiter learns by a completion AST in
                // mode 0 (with FLOCK_DEADLOCK when it would have waited forever).
                let t = sh.ldlm.targets.borrow_mut().remove(&lock.cookie);
                if let Some(t) = t {
                    let fl = lf::AST_SENT | if deadlock { lf::FLOCK_DEADLOCK } else { 0 };
                    let sh = sh.clone();
                    glommio::spawn_local(
                        async move { send_completion(&sh, slot, &lock, t, fl).await },
                    )
                    .detach();
                }
            }
            Ast::Blocking(l) => {
                if l.export == LOCAL {
                    // A server lock is released by the operation holding it, shortly.
                    continue;
                }
                let t = sh.ldlm.targets.borrow().get(&l.cookie).copied();
                if let Some(t) = t {
                    let sh = sh.clone();
                    glommio::spawn_local(async move { send_blocking(&sh, slot, &l, t).await })
                        .detach();
                }
            }
        }
    }
}

fn desc_of(l: &Lock) -> LdlmLockDesc {
    let mut d = LdlmLockDesc::new(l.policy.lock_type(), l.res, l.req_mode, &l.policy.to_wire());
    d.l_granted_mode = l.granted_mode.into();
    d
}

async fn callback(
    sh: &Rc<Shard>,
    t: AstTarget,
    opc: Opcode,
    b: MsgBuilder,
) -> ptlrpc::Result<ptlrpc::Reply> {
    let mut b = b;
    b.body_mut().pb_handle = LustreHandle::new(t.conn);
    let xid = sh.xids.next_xid();
    let tgt = Target {
        id: t.peer,
        request_portal: portal::LDLM_CB_REQUEST,
        reply_portal: portal::LDLM_CB_REPLY,
        timeout: Duration::from_secs(sh.cfg.ldlm_timeout.clamp(1, 30)),
        reply_size: 4096,
        jobid: "",
        rep_mbits: false,
    };
    let _ = opc;
    exchange(&sh.lnet, &tgt, b, None, xid).await
}

async fn send_blocking(sh: &Rc<Shard>, slot: NsSlot, l: &Lock, t: AstTarget) {
    let req = LdlmRequest {
        // LDLM_FL_AST_MASK of the lock: DISCARD_DATA when the lock in the way asked for it.
        lock_flags: l.bl_flags,
        lock_desc: desc_of(l),
        handles: vec![LustreHandle::new(l.remote), LustreHandle::new(l.cookie)],
    };
    let b = match MsgBuilder::request(Opcode::LdlmBlCallback)
        .and_then(|b| b.set("DLM_REQ", req.to_vec()))
    {
        Ok(b) => b,
        Err(e) => return log::error!("blocking AST: {e}"),
    };
    match callback(sh, t, Opcode::LdlmBlCallback, b).await {
        Ok(r) if r.status() == -22 => {
            // The client does not know the lock: it is gone on its side.
            let _ = cancel(sh, l.cookie, None);
        }
        Ok(_) => {}
        Err(e) => {
            log::warn!("blocking AST to {} for lock {:#x} failed: {e}; evicting", t.peer, l.cookie);
            evict(sh, t.home, l.export).await;
        }
    }
    let _ = slot;
}

async fn send_completion(sh: &Rc<Shard>, slot: NsSlot, l: &Lock, t: AstTarget, lock_flags: u32) {
    let req = LdlmRequest {
        lock_flags,
        lock_desc: desc_of(l),
        handles: vec![LustreHandle::new(l.remote), LustreHandle::new(l.cookie)],
    };
    // ldlm_server_completion_ast: the LVB goes with the grant (an OST lock's `ost_lvb`).
    let lvb = crate::ost::lvb_for_lock(sh, slot, l).await.unwrap_or_default();
    let b = match MsgBuilder::request(Opcode::LdlmCpCallback)
        .and_then(|b| b.set("DLM_REQ", req.to_vec()))
        .and_then(|b| b.set("DLM_LVB", lvb))
    {
        Ok(b) => b,
        Err(e) => return log::error!("completion AST: {e}"),
    };
    if let Err(e) = callback(sh, t, Opcode::LdlmCpCallback, b).await {
        log::warn!("completion AST to {} failed: {e}; evicting", t.peer);
        evict(sh, t.home, l.export).await;
    }
}

/// What a client answered to a glimpse callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlimpseReply {
    /// Its LVB (`ost_lvb`, or the 40-byte v1 widened).
    Lvb(OstLvb),
    /// It has the lock but nothing to say (`-ELDLM_NO_LOCK_DATA`), or did not know the lock
    /// (-EINVAL, and the lock was dropped), or it was evicted for not answering.
    Nothing,
}

/// Sends LDLM_GL_CALLBACK for each lock (`ldlm_server_glimpse_ast`, no glimpse descriptor:
/// extent locks need none) at once and collects the LVBs (`ldlm_cb_interpret`): a client that
/// does not answer is evicted, one that does not know the lock loses it.
pub async fn glimpse_locks(sh: &Rc<Shard>, locks: Vec<Lock>) -> Vec<GlimpseReply> {
    let mut pending = Vec::with_capacity(locks.len());
    for l in locks {
        let t = sh.ldlm.targets.borrow().get(&l.cookie).copied();
        let sh = sh.clone();
        pending.push(glommio::spawn_local(async move {
            match t {
                Some(t) => send_glimpse(&sh, &l, t).await,
                None => GlimpseReply::Nothing,
            }
        }));
    }
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(p.await);
    }
    out
}

async fn send_glimpse(sh: &Rc<Shard>, l: &Lock, t: AstTarget) -> GlimpseReply {
    let req = LdlmRequest {
        lock_flags: 0,
        lock_desc: desc_of(l),
        handles: vec![LustreHandle::new(l.remote)],
    };
    let b = match MsgBuilder::request(Opcode::LdlmGlCallback)
        .and_then(|b| b.set("DLM_REQ", req.to_vec()))
    {
        Ok(b) => b,
        Err(e) => {
            log::error!("glimpse AST: {e}");
            return GlimpseReply::Nothing;
        }
    };
    match callback(sh, t, Opcode::LdlmGlCallback, b).await {
        Ok(r) if r.status() == 0 => {
            let lvb = r.buf("dlm_lvb", 1, 0).ok().and_then(|b| {
                OstLvb::read(b).ok().or_else(|| {
                    OstLvbV1::read(b).ok().map(|v| OstLvb {
                        lvb_size: v.lvb_size,
                        lvb_mtime: v.lvb_mtime,
                        lvb_atime: v.lvb_atime,
                        lvb_ctime: v.lvb_ctime,
                        lvb_blocks: v.lvb_blocks,
                        ..OstLvb::default()
                    })
                })
            });
            lvb.map_or(GlimpseReply::Nothing, GlimpseReply::Lvb)
        }
        Ok(r) if r.status() == -22 => {
            // The client does not know the lock: gone on its side (a normal race).
            let _ = cancel(sh, l.cookie, None);
            GlimpseReply::Nothing
        }
        Ok(r) => {
            log::debug!("glimpse AST to {} for {:#x}: status {}", t.peer, l.cookie, r.status());
            GlimpseReply::Nothing
        }
        Err(e) => {
            log::warn!("glimpse AST to {} for lock {:#x} failed: {e}; evicting", t.peer, l.cookie);
            evict(sh, t.home, l.export).await;
            GlimpseReply::Nothing
        }
    }
}

/// Asks an export's home shard to evict it (which drops its locks on every shard).
pub async fn evict(sh: &Rc<Shard>, home: usize, export: ExportId) {
    let r = sh
        .mesh
        .call(sh, home, move |h: Rc<Shard>| async move {
            crate::shard::evict_export(&h, export.0).await
        })
        .await;
    if r.is_err() {
        log::warn!("shard {home} unreachable to evict export {:#x}", export.0);
    }
}

/// Runs forever: evicts clients that leave blocking callbacks unanswered.
pub async fn watchdog(sh: Rc<Shard>) {
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        if sh.lnet.is_stopping() {
            return;
        }
        let now = sh.now_ms();
        let n = sh.ldlm.nss.borrow().len();
        let mut overdue = Vec::new();
        for slot in 0..n {
            let slot = u8::try_from(slot).unwrap_or(0);
            overdue.extend(sh.ldlm.with_ns(slot, |ns| ns.overdue(now)).unwrap_or_default());
        }
        overdue.sort();
        overdue.dedup();
        for e in overdue {
            if e == LOCAL {
                continue;
            }
            let home = crate::shard::export_home(e.0);
            log::warn!("client export {:#x} did not cancel a lock in time: evicting", e.0);
            evict(&sh, home, e).await;
        }
    }
}

//! Extent locks on OST objects: client enqueues (granted with their extent grown, or queued
//! behind conflicting holders, who get blocking callbacks, and granted later by a completion
//! callback), glimpses (`ofd_intent_policy`), the lock value block (`ofd_lvbo_*`), and the
//! server's own locks around `OBD_BRW_SRVLOCK` I/O and truncates (`tgt_extent_lock`).
//!
//! A resource is named as Lustre names an OST object (`ost_fid_build_resid`): `[seq, oid |
//! ver << 32, 0, 0]` for FIDs, `[object id, 0, 0, 0]` for IDIF objects. It lives in the lock
//! namespace of the shard that owns the object, so the enqueue runs there.

use super::{Req, on_object, ost_part};
use crate::ldlm::service::{
    AstTarget, GlimpseReply, NsSlot, cancel, enqueue_queued, glimpse_enqueue, glimpse_locks,
};
use crate::ldlm::{EnqueueReq, ExportId, Glimpsed, LOCAL_EXPORT, LdlmError, Lock, LockPolicy};
use crate::shard::Shard;
use crate::store::AnyOsd;
use crate::target::cancel_handles;
use osd_nvme::{LuFid, Osd};
use proto::build::MsgBuilder;
use proto::fid::{LdlmResId, OstId};
use proto::ldlm::{
    LdlmLockDesc, LdlmReply, LdlmRequest, OstLvb, OstLvbV1, Policy, flags as lf, lock_type, mode,
    status,
};
use proto::wire::IntoBytes;
use ptlrpc::error::errno;
use std::rc::Rc;

/// `OBD_OBJECT_EOF`.
pub const EOF: u64 = u64::MAX;
/// The server page size `tgt_extent_lock` aligns its locks to.
const PAGE: u64 = 4096;

/// The object a resource names on OST `ost` (`ost_fid_from_resid`).
#[must_use]
pub fn fid_of_res(res: &LdlmResId, ost: u32) -> Option<LuFid> {
    let [a, b, _, _] = res.words();
    if b == 0 {
        // An old-style name: legacy object id `a` of MDT0's group.
        return OstId::legacy(a, 0).ostid_to_fid(ost);
    }
    Some(LuFid::new(a, (b & 0xffff_ffff) as u32, (b >> 32) as u32))
}

/// The LVB of an object as its attributes give it (`ofd_lvbo_init`): size, blocks and the
/// three times in seconds. No object: -ENOENT, as the enqueue that needs it gets.
pub async fn object_lvb(osd: &AnyOsd, fid: LuFid) -> Result<OstLvb, i32> {
    let a = osd.attr_get(&fid).await.map_err(|e| super::errno_of(&e))?;
    let secs = |t: osd_nvme::types::Timespec| t.sec.max(0).cast_unsigned();
    Ok(OstLvb {
        lvb_size: a.size.into(),
        lvb_mtime: secs(a.mtime).into(),
        lvb_atime: secs(a.atime).into(),
        lvb_ctime: secs(a.ctime).into(),
        lvb_blocks: a.blocks.into(),
        ..OstLvb::default()
    })
}

/// `ofd_lvbo_update` with `increase_only`: what a glimpsed client knows only raises the LVB.
fn merge_lvb(into: &mut OstLvb, other: &OstLvb) {
    into.lvb_size = into.lvb_size.get().max(other.lvb_size.get()).into();
    into.lvb_mtime = into.lvb_mtime.get().max(other.lvb_mtime.get()).into();
    into.lvb_atime = into.lvb_atime.get().max(other.lvb_atime.get()).into();
    into.lvb_ctime = into.lvb_ctime.get().max(other.lvb_ctime.get()).into();
    into.lvb_blocks = into.lvb_blocks.get().max(other.lvb_blocks.get()).into();
}

/// The LVB as sent to a client: `ost_lvb` (56 B) to clients that negotiated LVB_TYPE, the
/// 40-byte `ost_lvb_v1` to older ones (`ofd_lvbo_size`).
fn lvb_bytes(lvb: &OstLvb, v2: bool) -> Vec<u8> {
    if v2 {
        return lvb.as_bytes().to_vec();
    }
    OstLvbV1 {
        lvb_size: lvb.lvb_size,
        lvb_mtime: lvb.lvb_mtime,
        lvb_atime: lvb.lvb_atime,
        lvb_ctime: lvb.lvb_ctime,
        lvb_blocks: lvb.lvb_blocks,
    }
    .as_bytes()
    .to_vec()
}

/// The LVB a completion callback carries for a lock of namespace `slot` on this shard, if the
/// namespace is an OST's (`ldlm_server_completion_ast` fills it with `ldlm_lvbo_fill`).
pub async fn lvb_for_lock(sh: &Rc<Shard>, slot: NsSlot, l: &Lock) -> Option<Vec<u8>> {
    let part = sh.osts.iter().find(|o| o.slot == slot)?;
    let fid = fid_of_res(&l.res, part.index)?;
    object_lvb(&part.osd, fid).await.ok().map(|v| lvb_bytes(&v, true))
}

/// Takes a server lock on an object for I/O (`tgt_extent_lock`), on the object's shard:
/// `start` rounded down and `end` up to pages (`end` before `start` or EOF: to the end),
/// waiting for clients holding conflicting locks to give them back (they get blocking
/// callbacks; with `flags` `LDLM_FL_AST_DISCARD_DATA` they may drop their cached pages).
/// Any failure is -EIO, as in Lustre. Release it with [`srv_unlock`].
pub async fn srv_lock(
    x: &Rc<Shard>,
    ost: u32,
    fid: LuFid,
    lock_mode: u32,
    (start, end): (u64, u64),
    flags: u32,
) -> Result<u64, i32> {
    let slot = ost_part(x, ost)?.slot;
    let s = start & !(PAGE - 1);
    let e = if end == EOF || end < start { EOF } else { end | (PAGE - 1) };
    let req = EnqueueReq {
        export: LOCAL_EXPORT,
        remote: x.xids.next_xid(),
        res: fid.ost_res_id(),
        mode: lock_mode,
        policy: LockPolicy::Extent { start: s, end: e, gid: 0 },
        flags,
    };
    crate::ldlm::service::enqueue(x, slot, req, None)
        .await
        .map(|l| l.cookie)
        .map_err(|_| -errno::EIO)
}

/// Releases a lock taken with [`srv_lock`] (on the same shard).
pub fn srv_unlock(x: &Rc<Shard>, cookie: u64) {
    if let Err(e) = cancel(x, cookie, Some(LOCAL_EXPORT)) {
        log::debug!("server lock {cookie:#x} already gone: {e}");
    }
}

/// What an enqueue came to on the object's shard.
enum Enqueued {
    /// A lock, granted or queued (with the LVB as it was at the enqueue).
    Lock(Lock, OstLvb),
    /// A glimpse that took no lock: the LVB, merged with what holders reported.
    Aborted(OstLvb),
}

fn ldlm_errno(e: LdlmError) -> i32 {
    match e {
        // A GROUP lock request that may not wait (ldlm_extent_compat_queue).
        LdlmError::WouldBlock => -errno::EAGAIN,
        // ldlm_reclaim_full: too many locks, the client retries later.
        LdlmError::TooManyLocks => -errno::EINPROGRESS,
        LdlmError::NoSuchLock => -errno::ENOENT,
        LdlmError::Invalid => -errno::EINVAL,
        LdlmError::Deadlock => -libc::EDEADLK,
    }
}

/// LDLM_ENQUEUE on an OST (`ldlm_handle_enqueue0` with `ofd_intent_policy`): an extent
/// lock, or with `LDLM_FL_HAS_INTENT` a glimpse. The reply is `DLM_REP` and the object's
/// LVB in `DLM_LVB`; a glimpse that takes no lock answers `ELDLM_LOCK_ABORTED` (301) with
/// the LVB.
pub async fn enqueue(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let dlm = LdlmRequest::decode(m.buf(1).ok_or(-errno::EFAULT)?).map_err(|_| -errno::EPROTO)?;
    // ldlm_request_cancel(LDLM_ENQUEUE_CANCEL_OFF): early cancels ride in handles[1..].
    if dlm.handles.len() > 1 {
        cancel_handles(sh, req.export, dlm.handles.iter().skip(1).map(|h| h.get())).await;
    }
    let d = dlm.lock_desc;
    if d.l_resource.lr_type.get() != lock_type::EXTENT {
        // An OST namespace only ever holds extent locks.
        return Err(-errno::EPROTO);
    }
    let Ok(Policy::Extent(ext)) = d.policy() else { return Err(-errno::EPROTO) };
    let lock_mode = d.l_req_mode.get();
    let ost = req.target.index;
    // lvbo_init finds no object for a name that cannot be one either.
    let fid = fid_of_res(&d.l_resource.lr_name, ost)
        .filter(|f| f.is_sane() && !f.is_zero())
        .ok_or(-errno::ENOENT)?;
    let wflags = dlm.lock_flags;
    let glimpse = wflags & lf::HAS_INTENT != 0;
    // BLOCK_NOWAIT only stops a GROUP request from waiting for another group in Lustre.
    let mut ns_flags = wflags & (lf::NO_EXPANSION | lf::AST_DISCARD_DATA);
    if lock_mode == mode::GROUP {
        ns_flags |= wflags & lf::BLOCK_NOWAIT;
    }
    let er = EnqueueReq {
        export: ExportId(req.export),
        remote: dlm.handles.first().map_or(0, |h| h.get()),
        res: fid.ost_res_id(),
        mode: lock_mode,
        policy: LockPolicy::Extent {
            start: ext.start.get(),
            end: ext.end.get(),
            gid: ext.gid.get(),
        },
        flags: ns_flags,
    };
    let ast = AstTarget { peer: req.inc.peer, conn: req.conn, home: sh.id };
    let agl = wflags & lf::BLOCK_NOWAIT != 0;
    let done = on_object(sh, ost, fid, move |x, ost, fid| async move {
        let (osd, slot) = {
            let p = ost_part(&x, ost)?;
            (p.osd.clone(), p.slot)
        };
        // lvbo_init's -ENOENT for a missing object comes before any lock.
        let lvb = object_lvb(&osd, fid).await?;
        if !glimpse {
            let l = enqueue_queued(&x, slot, er, ast).await.map_err(ldlm_errno)?;
            // The LVB as of the grant (a queued lock gets it in its completion AST).
            let lvb = if l.is_granted() { object_lvb(&osd, fid).await.unwrap_or(lvb) } else { lvb };
            return Ok(Enqueued::Lock(l, lvb));
        }
        match glimpse_enqueue(&x, slot, er, ast).map_err(ldlm_errno)? {
            Glimpsed::Granted(cookie) => {
                let l = x
                    .ldlm
                    .with_ns(slot, |ns| ns.lock(cookie).cloned())
                    .flatten()
                    .ok_or(-errno::ENOENT)?;
                Ok(Enqueued::Lock(l, lvb))
            }
            // AGL (BLOCK_NOWAIT): no glimpse callbacks; the LVB as it is.
            Glimpsed::Blocked(_) if agl => Ok(Enqueued::Aborted(lvb)),
            Glimpsed::Blocked(trees) => {
                let victims = glimpse_victims(trees, lvb.lvb_size.get());
                if victims.is_empty() {
                    return Ok(Enqueued::Aborted(lvb));
                }
                if let Ok(p) = ost_part(&x, ost) {
                    p.stats.glimpse_asts.set(p.stats.glimpse_asts.get() + victims.len() as u64);
                }
                let mut merged = lvb;
                for r in glimpse_locks(&x, victims).await {
                    if let GlimpseReply::Lvb(v) = r {
                        merge_lvb(&mut merged, &v);
                    }
                }
                // ... and what the disk says by now.
                if let Ok(now) = object_lvb(&osd, fid).await {
                    merge_lvb(&mut merged, &now);
                }
                Ok(Enqueued::Aborted(merged))
            }
        }
    })
    .await?;
    let v2 = req.flags & proto::connect::flags::LVB_TYPE != 0;
    let f = super::fmt("LDLM_ENQUEUE_LVB")?;
    match done {
        Enqueued::Lock(l, lvb) => {
            let mut flags = wflags;
            if l.policy != l.req_policy || glimpse {
                // The grant differs from the request (grown), or a glimpse became a lock
                // (ELDLM_LOCK_REPLACED).
                flags |= lf::LOCK_CHANGED;
            }
            if !l.is_granted() {
                flags |= lf::BLOCK_GRANTED | lf::NO_TIMEOUT;
            }
            if l.bl_ast_at.is_some() {
                flags |= lf::AST_SENT;
            }
            let mut desc =
                LdlmLockDesc::new(lock_type::EXTENT, l.res, l.req_mode, &l.policy.to_wire());
            desc.l_granted_mode = l.granted_mode.into();
            let rep = LdlmReply {
                lock_flags: flags.into(),
                lock_padding: 0.into(),
                lock_desc: desc,
                lock_handle: proto::LustreHandle::new(l.cookie),
                lock_policy_res1: 0.into(),
                lock_policy_res2: 0.into(),
            };
            MsgBuilder::reply(f, &req.inc.body)
                .wire("DLM_REP", &rep)
                .and_then(|b| b.set_sized("DLM_LVB", lvb_bytes(&lvb, v2)))
                .and_then(|b| b.build())
                .map_err(|_| -errno::EPROTO)
        }
        Enqueued::Aborted(lvb) => {
            // ofd_intent_policy packs a zeroed DLM_REP and the LVB; no lock.
            let mut b = MsgBuilder::reply(f, &req.inc.body)
                .wire("DLM_REP", &LdlmReply::default())
                .and_then(|b| b.set_sized("DLM_LVB", lvb_bytes(&lvb, v2)))
                .map_err(|_| -errno::EPROTO)?;
            b.body_mut().pb_status = status::LOCK_ABORTED.into();
            b.build().map_err(|_| -errno::EPROTO)
        }
    }
}

/// Whom to glimpse (`ofd_intent_cb`): in each interval tree (every mode but PR), from the
/// highest extent down until one ends at or below the size already known, each client once,
/// and after a lock that may grow (no `LDLM_FL_NO_EXPANSION`: the client writes there) no
/// further in that tree. The server's own locks answer for themselves (the disk is current).
fn glimpse_victims(trees: Vec<Vec<Lock>>, size: u64) -> Vec<Lock> {
    let mut out: Vec<Lock> = Vec::new();
    for tree in trees {
        for l in tree {
            let end = match l.policy {
                LockPolicy::Extent { end, .. } => end,
                _ => continue,
            };
            if end <= size {
                break;
            }
            let active = l.req_flags & lf::NO_EXPANSION == 0;
            if l.export != LOCAL_EXPORT && !out.iter().any(|o| o.export == l.export) {
                out.push(l);
            }
            if active {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(export: u64, start: u64, end: u64, m: u32, flags: u32) -> Lock {
        Lock {
            cookie: export * 100 + start,
            remote: 1,
            export: ExportId(export),
            res: LuFid::new(0x2_0000_0400, 1, 0).ost_res_id(),
            req_mode: m,
            granted_mode: m,
            policy: LockPolicy::Extent { start, end, gid: 0 },
            req_policy: LockPolicy::Extent { start, end, gid: 0 },
            req_flags: flags,
            bl_ast_at: None,
            bl_flags: 0,
            last_used: 0,
        }
    }

    #[test]
    fn glimpse_asks_the_writer_beyond_the_size() {
        let mb = 1u64 << 20;
        // Two writers, the top one active: only it is asked.
        let pw = vec![lock(2, 4 * mb, EOF, mode::PW, 0), lock(1, 0, 4 * mb - 1, mode::PW, 0)];
        let v = glimpse_victims(vec![pw.clone()], 0);
        assert_eq!(v.iter().map(|l| l.export.0).collect::<Vec<_>>(), vec![2]);
        // Locks ending at or below the known size are not asked.
        assert!(glimpse_victims(vec![vec![lock(1, 0, 4095, mode::PW, 0)]], 8192).is_empty());
        // Lockahead-style (NO_EXPANSION) locks do not stop the walk; each client once.
        let la = vec![
            lock(3, 8 * mb, 9 * mb - 1, mode::PW, lf::NO_EXPANSION),
            lock(3, 6 * mb, 7 * mb - 1, mode::PW, lf::NO_EXPANSION),
            lock(4, 2 * mb, 3 * mb - 1, mode::PW, lf::NO_EXPANSION),
        ];
        let v = glimpse_victims(vec![la], 0);
        assert_eq!(v.iter().map(|l| l.export.0).collect::<Vec<_>>(), vec![3, 4]);
        // The server's own locks are never called back.
        assert!(glimpse_victims(vec![vec![lock(0, 0, EOF, mode::PW, 0)]], 0).is_empty());
    }

    #[test]
    fn resource_names_round_trip() {
        let f = LuFid::new(0x2_0000_0401, 9, 0);
        assert_eq!(fid_of_res(&f.ost_res_id(), 0), Some(f));
        let idif = LuFid::new(0x1_0002_0000, 77, 0);
        assert_eq!(fid_of_res(&idif.ost_res_id(), 2), Some(idif));
    }
}

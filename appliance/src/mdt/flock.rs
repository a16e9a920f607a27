//! LDLM_ENQUEUE of FLOCK locks on the MDT: the POSIX record locks and BSD `flock` locks of
//! clients (`ll_file_flock` through `mdc_enqueue`), on the resource of the file's FID with
//! `LDLM_FLOCK` in its fourth word. The rules are the namespace's
//! ([`crate::ldlm::Namespace::enqueue_flock`]); this turns a request into one and the outcome
//! into the reply `ldlm_handle_enqueue0` sends.

use super::{mdt, shard_of};
use crate::ldlm::service::{AstTarget, flock_enqueue};
use crate::ldlm::{EnqueueReq, ExportId, FlockDone, LdlmError, Lock, LockPolicy};
use crate::shard::Shard;
use crate::target::Req;
use proto::build::MsgBuilder;
use proto::ldlm::{LdlmLockDesc, LdlmReply, LdlmRequest, flags as lf, lock_type, mode};
use proto::rmf;
use ptlrpc::error::errno;
use std::rc::Rc;

fn errno_of(e: LdlmError) -> i32 {
    match e {
        // BLOCK_NOWAIT (F_SETLK) against another owner's lock.
        LdlmError::WouldBlock => -errno::EAGAIN,
        LdlmError::Deadlock => -libc::EDEADLK,
        LdlmError::TooManyLocks => -errno::ENOMEM,
        LdlmError::NoSuchLock => -errno::ENOENT,
        LdlmError::Invalid => -errno::EINVAL,
    }
}

/// Serves a FLOCK enqueue: the lock lives with the file's object, on its shard.
pub(super) async fn enqueue(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    dlm: &LdlmRequest,
) -> Result<Vec<u8>, i32> {
    let d = dlm.lock_desc;
    let res = d.l_resource.lr_name;
    let fid = res.fid();
    if !fid.is_sane() || res.words()[3] != u64::from(lock_type::FLOCK) {
        return Err(-errno::EINVAL);
    }
    let policy = match d.policy() {
        Ok(p @ proto::ldlm::Policy::Flock(_)) => LockPolicy::from_wire(&p),
        _ => return Err(-errno::EPROTO),
    };
    let er = EnqueueReq {
        export: ExportId(req.export),
        remote: dlm.handles.first().map_or(0, |h| h.get()),
        res,
        mode: d.l_req_mode.get(),
        policy,
        flags: dlm.lock_flags & (lf::BLOCK_NOWAIT | lf::TEST_LOCK),
    };
    let ast = AstTarget { peer: req.inc.peer, conn: req.conn, home: sh.id };
    let index = req.target.index;
    let done = sh
        .mesh
        .call(sh, shard_of(&fid, sh.n), move |x: Rc<Shard>| async move {
            let slot = mdt(&x, index)?.slot;
            flock_enqueue(&x, slot, er, ast).map_err(errno_of)
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)??;
    let rep = reply_of(dlm, &done);
    let f = rmf::format("LDLM_ENQUEUE").ok_or(-errno::EPROTO)?;
    MsgBuilder::reply(f, &req.inc.body)
        .wire("DLM_REP", &rep)
        .and_then(|x| x.set_sized("DLM_LVB", Vec::new()))
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

fn desc(l: &Lock, req_mode: u32, granted_mode: u32) -> LdlmLockDesc {
    let mut d = LdlmLockDesc::new(lock_type::FLOCK, l.res, req_mode, &l.policy.to_wire());
    d.l_granted_mode = granted_mode.into();
    d
}

/// The reply: a grant carries the request's lock as granted; a queued request
/// `BLOCK_GRANTED` (its grant comes by completion AST); a test `LOCK_CHANGED` with the mode,
/// range and pid of the lock in the way in the descriptor, or mode NL when nothing is.
fn reply_of(dlm: &LdlmRequest, done: &FlockDone) -> LdlmReply {
    let (flags, d, cookie) = match done {
        FlockDone::Granted(l) => (0, desc(l, l.req_mode, l.granted_mode), l.cookie),
        FlockDone::Waiting(l) => (lf::BLOCK_GRANTED, desc(l, l.req_mode, 0), l.cookie),
        FlockDone::Tested(Some(g)) => {
            // The requester's owner with the holder's range and pid, as Lustre rewrites them.
            let mut d = desc(g, g.granted_mode, 0);
            if let (
                LockPolicy::Flock { start, end, pid, .. },
                Ok(proto::ldlm::Policy::Flock(mut w)),
            ) = (g.policy, dlm.lock_desc.policy())
            {
                w.lfw_start = start.into();
                w.lfw_end = end.into();
                w.lfw_pid = pid.into();
                d.l_policy_data =
                    proto::ldlm::LdlmWirePolicyData::new(&proto::ldlm::Policy::Flock(w));
            }
            d.l_resource = dlm.lock_desc.l_resource;
            (lf::LOCK_CHANGED, d, 0)
        }
        FlockDone::Tested(None) => {
            let mut d = dlm.lock_desc;
            d.l_req_mode = mode::NL.into();
            (lf::LOCK_CHANGED, d, 0)
        }
    };
    LdlmReply {
        lock_flags: flags.into(),
        lock_desc: d,
        lock_handle: proto::LustreHandle::new(cookie),
        ..Default::default()
    }
}

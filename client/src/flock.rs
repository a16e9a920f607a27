//! POSIX record locks (`fcntl` F_GETLK/F_SETLK/F_SETLKW, OFD locks) and BSD `flock` locks,
//! taken as a Lustre client takes them (`ll_file_flock` through `mdc_enqueue`): LDLM FLOCK
//! enqueues on the MDT, on the file's FID resource with `LDLM_FLOCK` in its fourth word, the
//! policy `ldlm_flock_wire` carrying the range, the lock owner and the pid.
//!
//! * F_RDLCK/F_WRLCK are PR/PW; F_SETLK adds `BLOCK_NOWAIT` (another owner's lock in the way:
//!   EAGAIN); F_GETLK is `TEST_LOCK` and grants nothing; F_UNLCK is an enqueue in mode NL,
//!   which cuts the owner's locks on the server (they are merged and split there).
//! * F_SETLKW that has to wait is queued on the MDT; the grant comes by completion AST (mode 0:
//!   the server ended the wait, `-EDEADLK`). An interrupted wait sends the unlock of the range
//!   it asked for, as Lustre's F_CANCELLK does: the server drops the queued request, or the
//!   range if the grant won the race (so an interrupted upgrade also drops the owner's older
//!   lock on that range, as on Lustre).
//! * The servers hold the locks, so unlike Lustre's client nothing is mirrored in a local lock
//!   list; the client only remembers which owners may hold locks on a file, so that a close
//!   unlocks what it must and no more RPCs than that.

use crate::error::{Error, Result};
use crate::fs::Fs;
use proto::build::MsgBuilder;
use proto::fid::{LdlmResId, LuFid, LustreHandle};
use proto::ldlm::{
    LdlmFlockWire, LdlmLockDesc, LdlmReply, LdlmRequest, Policy, flags as lf, lock_type, mode,
};
use proto::opcode::Opcode;
use proto::wire::Wire;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

/// `OFFSET_MAX`: the last byte of a lock "to the end of the file", as the kernel sends it.
pub const OFFSET_MAX: u64 = 0x7fff_ffff_ffff_ffff;

/// `F_RDLCK`.
pub const F_RDLCK: i32 = 0;
/// `F_WRLCK`.
pub const F_WRLCK: i32 = 1;
/// `F_UNLCK`.
pub const F_UNLCK: i32 = 2;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlockKind {
    /// A shared lock (F_RDLCK, LOCK_SH): LDLM PR.
    Read,
    /// An exclusive lock (F_WRLCK, LOCK_EX): LDLM PW.
    Write,
    /// Release (F_UNLCK, LOCK_UN): LDLM NL.
    Unlock,
}

impl FlockKind {
    /// From an `l_type` of `struct flock`.
    pub fn from_fcntl(t: i32) -> Result<FlockKind> {
        match t {
            F_RDLCK => Ok(FlockKind::Read),
            F_WRLCK => Ok(FlockKind::Write),
            F_UNLCK => Ok(FlockKind::Unlock),
            _ => Err(Error::new(libc::EINVAL).ctx(format!("lock type {t}"))),
        }
    }
    /// As an `l_type`.
    #[must_use]
    pub fn fcntl(self) -> i32 {
        match self {
            FlockKind::Read => F_RDLCK,
            FlockKind::Write => F_WRLCK,
            FlockKind::Unlock => F_UNLCK,
        }
    }
    fn ldlm_mode(self) -> u32 {
        match self {
            FlockKind::Read => mode::PR,
            FlockKind::Write => mode::PW,
            FlockKind::Unlock => mode::NL,
        }
    }
}

/// A lock request on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlockReq {
    /// The lock owner: locks of one owner never conflict (for fcntl locks the kernel's owner
    /// of the process's file table, for flock and OFD locks the open file's).
    pub owner: u64,
    /// The requesting process (what F_GETLK reports to others).
    pub pid: u32,
    /// First byte.
    pub start: u64,
    /// Last byte ([`OFFSET_MAX`] or more: to the end of the file).
    pub end: u64,
    /// Read, write or unlock.
    pub kind: FlockKind,
}

impl FlockReq {
    /// A request as FUSE passes it (`fuse_lk_in`).
    pub fn from_fuse(owner: u64, start: u64, end: u64, typ: i32, pid: u32) -> Result<FlockReq> {
        if start > end {
            return Err(Error::new(libc::EINVAL).ctx("lock range ends before it starts"));
        }
        Ok(FlockReq { owner, pid, start, end, kind: FlockKind::from_fcntl(typ)? })
    }
}

/// The lock that stands in the way of a tested request (F_GETLK's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlockHolder {
    /// Read or write.
    pub kind: FlockKind,
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
    /// The holder's pid (on its own node).
    pub pid: u32,
}

/// Which owners may hold locks on which files, and through which open files they were taken.
#[derive(Debug, Default)]
pub struct FlockTable {
    held: HashSet<(LuFid, u64)>,
    by_open: HashMap<u64, HashSet<(LuFid, u64)>>,
}

/// The LDLM resource of a file's flock locks (`res_id.name[3] = LDLM_FLOCK` in
/// `mdc_enqueue_base`): apart from the file's IBITS resource.
#[must_use]
pub fn flock_res(fid: LuFid) -> LdlmResId {
    let mut w = fid.res_id().words();
    w[3] = u64::from(lock_type::FLOCK);
    LdlmResId::new(w)
}

/// How often a waiting F_SETLKW looks whether its caller has a signal pending.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Unlocks are retried this many times: a lock left behind would block others until the
/// client goes (Lustre's mdc resends unlocks that time out or are interrupted, for the same
/// reason).
const UNLOCK_TRIES: u32 = 3;

/// Resolves once thread `tid` has a signal pending that it does not block, or is gone: the
/// FUSE interrupt that fuser does not pass on (it answers FUSE_INTERRUPT with ENOSYS, after
/// which the kernel waits for our answer however the caller is signalled, SIGKILL included).
pub async fn signal_pending(tid: u32) {
    if tid == 0 {
        return std::future::pending().await;
    }
    loop {
        glommio::timer::sleep(SIGNAL_POLL).await;
        let Ok(s) = std::fs::read_to_string(format!("/proc/{tid}/status")) else { return };
        let mask = |name: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        if (mask("SigPnd:") | mask("ShdPnd:")) & !mask("SigBlk:") != 0 {
            return;
        }
    }
}

impl Fs {
    async fn flock_enqueue(
        &self,
        fid: LuFid,
        r: &FlockReq,
        flags: u32,
        handle: u64,
    ) -> Result<LdlmReply> {
        let policy = Policy::Flock(LdlmFlockWire {
            lfw_start: r.start.into(),
            lfw_end: r.end.into(),
            lfw_owner: r.owner.into(),
            lfw_padding: 0.into(),
            lfw_pid: r.pid.into(),
        });
        let req = LdlmRequest {
            lock_flags: flags,
            lock_desc: LdlmLockDesc::new(
                lock_type::FLOCK,
                flock_res(fid),
                r.kind.ldlm_mode(),
                &policy,
            ),
            handles: vec![LustreHandle::new(handle)],
        };
        let b = MsgBuilder::request(Opcode::LdlmEnqueue)?.set("DLM_REQ", req.to_vec())?;
        let mdc = self.mdc(0)?;
        let rep = self.call(&mdc, b, None, None).await?;
        Ok(LdlmReply::read(rep.buf("ldlm_reply", 1, 112)?)?)
    }

    /// F_GETLK: the first lock of another owner in the way of `r`, if any.
    pub async fn flock_test(&self, fid: LuFid, r: FlockReq) -> Result<Option<FlockHolder>> {
        if r.kind == FlockKind::Unlock {
            return Err(Error::new(libc::EINVAL).ctx("F_GETLK of F_UNLCK"));
        }
        let h = self.locks.new_handle();
        let rep = self.flock_enqueue(fid, &r, lf::TEST_LOCK, h).await?;
        let d = rep.lock_desc;
        let kind = match d.l_req_mode.get() {
            mode::PR => FlockKind::Read,
            mode::PW => FlockKind::Write,
            _ => return Ok(None),
        };
        let Ok(Policy::Flock(w)) = d.policy() else {
            return Err(Error::new(libc::EPROTO).ctx("test lock reply without a flock policy"));
        };
        Ok(Some(FlockHolder {
            kind,
            start: w.lfw_start.get(),
            end: w.lfw_end.get(),
            pid: w.lfw_pid.get(),
        }))
    }

    /// F_SETLK (`wait` false: EAGAIN when another owner's lock is in the way) or F_SETLKW
    /// (waits as long as it takes).
    pub async fn flock_set(&self, fid: LuFid, r: FlockReq, wait: bool) -> Result<()> {
        self.flock_set_until(fid, r, wait, std::future::pending()).await
    }

    /// F_SETLK/F_SETLKW whose wait ends with EINTR when `interrupted` resolves first (the
    /// request is withdrawn on the server first).
    pub async fn flock_set_until(
        &self,
        fid: LuFid,
        r: FlockReq,
        wait: bool,
        interrupted: impl Future<Output = ()>,
    ) -> Result<()> {
        if r.kind == FlockKind::Unlock {
            return self.flock_unlock(fid, r).await;
        }
        let handle = self.locks.new_handle();
        self.locks.expect_completion(handle);
        let flags = if wait { 0 } else { lf::BLOCK_NOWAIT };
        let rep = match self.flock_enqueue(fid, &r, flags, handle).await {
            Ok(rep) => rep,
            Err(e) => {
                self.locks.forget_completion(handle);
                return Err(e);
            }
        };
        // Granted or queued, the owner may hold locks on the file from now on.
        self.flocks.borrow_mut().held.insert((fid, r.owner));
        if rep.lock_flags.get() & lf::BLOCKED_MASK == 0 {
            self.locks.forget_completion(handle);
            return Ok(());
        }
        let granted = async {
            loop {
                if let Some(c) = self.locks.wait_completion(handle, Duration::from_secs(3600)).await
                {
                    return Some(c.mode);
                }
                if !self.locks.is_pending(handle) {
                    return None;
                }
            }
        };
        let got = futures_lite::future::or(granted, async {
            interrupted.await;
            None
        })
        .await;
        self.locks.forget_completion(handle);
        match got {
            Some(m) if m != 0 => Ok(()),
            // A completion AST in mode 0: the server ended the wait (deadlock).
            Some(_) => Err(Error::new(libc::EDEADLK).ctx("flock wait")),
            None => {
                // Interrupted: withdraw the request (or undo its grant if that won the race).
                self.flock_unlock(fid, FlockReq { kind: FlockKind::Unlock, ..r }).await?;
                Err(Error::new(libc::EINTR).ctx("flock wait"))
            }
        }
    }

    async fn flock_unlock(&self, fid: LuFid, r: FlockReq) -> Result<()> {
        let mut last = Error::new(libc::EIO);
        for _ in 0..UNLOCK_TRIES {
            let h = self.locks.new_handle();
            match self.flock_enqueue(fid, &r, 0, h).await {
                Ok(_) => {
                    if r.start == 0 && r.end >= OFFSET_MAX {
                        self.flocks.borrow_mut().held.remove(&(fid, r.owner));
                    }
                    return Ok(());
                }
                Err(e) if e.errno == libc::EINVAL || e.errno == libc::EPROTO => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last.ctx("flock unlock"))
    }

    /// Notes that `owner` takes locks on `fid` through open file `open` (an id of the
    /// caller's), so that [`Fs::flock_close_open`] drops them.
    pub fn flock_note_open(&self, open: u64, fid: LuFid, owner: u64) {
        self.flocks.borrow_mut().by_open.entry(open).or_default().insert((fid, owner));
    }

    /// Drops every lock of `owner` on `fid`, if it may hold any (a close by a process drops
    /// its POSIX locks on the file, whichever descriptor took them).
    pub async fn flock_close_owner(&self, fid: LuFid, owner: u64) -> Result<()> {
        if !self.flocks.borrow().held.contains(&(fid, owner)) {
            return Ok(());
        }
        let all = FlockReq { owner, pid: 0, start: 0, end: u64::MAX, kind: FlockKind::Unlock };
        self.flock_unlock(fid, all).await
    }

    /// Drops the locks taken through open file `open`, which is being released (its flock
    /// and OFD locks go with it; POSIX locks went with the close already).
    pub async fn flock_close_open(&self, open: u64) -> Result<()> {
        let owners = self.flocks.borrow_mut().by_open.remove(&open).unwrap_or_default();
        let mut r = Ok(());
        for (fid, owner) in owners {
            if let Err(e) = self.flock_close_owner(fid, owner).await {
                r = Err(e);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fcntl_types_and_resource() {
        assert_eq!(FlockKind::from_fcntl(1).unwrap(), FlockKind::Write);
        assert_eq!(FlockKind::Read.fcntl(), 0);
        assert!(FlockKind::from_fcntl(7).is_err());
        assert!(FlockReq::from_fuse(1, 10, 5, F_RDLCK, 1).is_err());
        let fid = LuFid::new(0x2_0000_0400, 3, 0);
        let r = flock_res(fid);
        assert_eq!(r.words(), [0x2_0000_0400, 3, 0, 12]);
        assert_eq!(r.fid(), fid);
        assert_ne!(r, fid.res_id(), "apart from the IBITS resource");
    }
}

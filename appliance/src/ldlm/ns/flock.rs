//! FLOCK locks: POSIX record locks and BSD `flock` locks, as `ldlm_process_flock_lock`
//! (lustre/ldlm/ldlm_flock.c) keeps them on the MDT.
//!
//! * A lock owner is the client's `lfw_owner` *and* the export: locks of one owner never
//!   conflict with each other. Locks of different owners conflict when their byte ranges
//!   overlap and their modes (PR for F_RDLCK, PW for F_WRLCK) are incompatible.
//! * An owner's locks are kept disjoint: a grant merges the owner's locks of the same mode that
//!   overlap or adjoin it, and cuts (or splits in two) its locks of another mode under it. An
//!   unlock is an enqueue in mode NL that cuts the owner's locks the same way and keeps nothing.
//! * `TEST_LOCK` (F_GETLK) grants nothing: it answers with the first conflicting lock.
//! * A blocked request waits without any blocking AST (flock holders are never asked to give
//!   up) and is granted by a completion AST when the locks in its way go. Before it waits, and
//!   again each time the queue is looked at, the owners it waits for are followed: if they lead
//!   back to its own owner, it would wait forever (`-EDEADLK`).
//! * Locks are never revoked, so they stay out of the LRU; they go with an unlock, an
//!   LDLM_CANCEL of a waiting request, or their export.

use super::{Ast, EnqueueReq, ExportId, LdlmError, Lock, Namespace, Resource};
use crate::ldlm::policy::LockPolicy;
use proto::ldlm::{flags, lock_type, mode};
use std::collections::{HashMap, HashSet};

/// How a FLOCK enqueue ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlockDone {
    /// Granted (an unlock: done, in mode NL). The lock is the request as granted; its cookie
    /// may already have been merged into another lock of its owner, as in Lustre.
    Granted(Lock),
    /// Queued behind another owner's lock; a completion AST will grant it.
    Waiting(Lock),
    /// `TEST_LOCK`: the first conflicting lock (mode, range and pid), if any.
    Tested(Option<Lock>),
}

/// A lock owner: the client's owner cookie on one export.
type Owner = (ExportId, u64);

fn flock_of(p: &LockPolicy) -> Option<(u64, u64, u64, u32)> {
    match *p {
        LockPolicy::Flock { start, end, owner, pid } => Some((start, end, owner, pid)),
        _ => None,
    }
}

fn owner_of(l: &Lock) -> Owner {
    (l.export, flock_of(&l.policy).map_or(0, |f| f.2))
}

fn range_of(l: &Lock) -> (u64, u64) {
    flock_of(&l.policy).map_or((0, 0), |f| (f.0, f.1))
}

fn with_range(p: LockPolicy, start: u64, end: u64) -> LockPolicy {
    match p {
        LockPolicy::Flock { owner, pid, .. } => LockPolicy::Flock { start, end, owner, pid },
        other => other,
    }
}

/// Whether granted flock lock `g` stands in the way of owner `who` wanting `mode` on
/// `[start, end]`.
fn in_the_way(g: &Lock, who: Owner, req_mode: u32, (start, end): (u64, u64)) -> bool {
    let (s, e) = range_of(g);
    owner_of(g) != who
        && s <= end
        && start <= e
        && !proto::ldlm::modes_compatible(g.granted_mode, req_mode)
}

/// Whether two granted flock locks may not both be held (an invariant check).
pub(super) fn flock_conflict(a: &Lock, b: &Lock) -> bool {
    if owner_of(a) == owner_of(b) {
        // One owner's locks never overlap.
        let ((s1, e1), (s2, e2)) = (range_of(a), range_of(b));
        return s1 <= e2 && s2 <= e1;
    }
    in_the_way(a, owner_of(b), b.granted_mode, range_of(b))
}

impl Namespace {
    /// Enqueues a FLOCK request (`ldlm_process_flock_lock` at enqueue): an unlock (mode NL),
    /// a test (`TEST_LOCK`), or a PR/PW lock that is granted, refused (`BLOCK_NOWAIT`:
    /// [`LdlmError::WouldBlock`]; a wait that could never end: [`LdlmError::Deadlock`]) or
    /// queued.
    pub fn enqueue_flock(
        &mut self,
        req: EnqueueReq,
        now: u64,
        out: &mut Vec<Ast>,
    ) -> Result<FlockDone, LdlmError> {
        self.stats.enqueues += 1;
        let Some((start, end, owner, _)) = flock_of(&req.policy) else {
            return Err(LdlmError::Invalid);
        };
        if start > end || !matches!(req.mode, mode::PR | mode::PW | mode::NL) {
            return Err(LdlmError::Invalid);
        }
        let who = (req.export, owner);
        let test = req.flags & flags::TEST_LOCK != 0;
        if let Some(c) = self.by_remote(req.export, req.remote)
            && let Some(l) = self.locks.get(&c)
            && !l.is_granted()
        {
            // A resend of a request still waiting.
            return Ok(FlockDone::Waiting(l.clone()));
        }
        if !test && req.mode != mode::NL && self.locks.len() >= self.limits.hard_limit {
            return Err(LdlmError::TooManyLocks);
        }
        match self.resources.get(&req.res) {
            Some(r) if r.ltype != lock_type::FLOCK => return Err(LdlmError::Invalid),
            Some(_) => {}
            None if test || req.mode == mode::NL => {}
            None => {
                self.resources
                    .insert(req.res, Resource { ltype: lock_type::FLOCK, ..Resource::default() });
            }
        }
        let cookie = self.alloc_cookie();
        let lock = Lock::requested(cookie, &req, now);
        let blocker = if req.mode == mode::NL {
            None
        } else {
            self.first_in_the_way(&lock).and_then(|c| self.locks.get(&c).cloned())
        };
        if test {
            return Ok(FlockDone::Tested(blocker));
        }
        if let Some(b) = blocker {
            if req.flags & flags::BLOCK_NOWAIT != 0 {
                self.drop_if_unused(&req.res);
                return Err(LdlmError::WouldBlock);
            }
            if self.waits_for(owner_of(&b), who) {
                self.drop_if_unused(&req.res);
                return Err(LdlmError::Deadlock);
            }
            self.stats.blocked += 1;
            self.locks.insert(cookie, lock.clone());
            self.by_remote.insert((req.export, req.remote), cookie);
            self.flock_blocker.insert(cookie, owner_of(&b));
            if let Some(r) = self.resources.get_mut(&req.res) {
                r.waiting.push_back(cookie);
            }
            return Ok(FlockDone::Waiting(lock));
        }
        if req.mode == mode::NL {
            self.cancel_equal_waiter(&lock, out);
        }
        self.stats.granted_now += 1;
        let freed = self.flock_grant(lock.clone());
        if freed {
            self.reprocess_flock(req.res, now, out);
        }
        self.drop_if_unused(&req.res);
        Ok(FlockDone::Granted(Lock { granted_mode: req.mode, ..lock }))
    }

    /// The first granted lock (lowest start, as Lustre's interval tree walks them) of another
    /// owner in the way of `l`.
    fn first_in_the_way(&self, l: &Lock) -> Option<u64> {
        let r = self.resources.get(&l.res)?;
        r.granted
            .iter()
            .filter_map(|c| self.locks.get(c))
            .filter(|g| in_the_way(g, owner_of(l), l.req_mode, range_of(l)))
            .min_by_key(|g| (range_of(g), g.cookie))
            .map(|g| g.cookie)
    }

    /// Whether `from` waits, directly or through other waiting owners, for `to`
    /// (`ldlm_flock_deadlock`, which follows one chain; this follows every waiting request of
    /// an owner, since threads of one process share an owner and may each wait).
    fn waits_for(&self, from: Owner, to: Owner) -> bool {
        let mut edges: HashMap<Owner, Vec<Owner>> = HashMap::new();
        for (c, blocker) in &self.flock_blocker {
            if let Some(l) = self.locks.get(c) {
                edges.entry(owner_of(l)).or_default().push(*blocker);
            }
        }
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(o) = stack.pop() {
            if o == to {
                return true;
            }
            if seen.insert(o)
                && let Some(next) = edges.get(&o)
            {
                stack.extend(next.iter().copied());
            }
        }
        false
    }

    /// An unlock of exactly the range a request of the same owner waits for cancels that
    /// request (Lustre's F_CANCELLK path): it learns so by a completion AST in mode 0.
    fn cancel_equal_waiter(&mut self, unlock: &Lock, out: &mut Vec<Ast>) {
        let Some(r) = self.resources.get(&unlock.res) else { return };
        let found = r.waiting.iter().copied().find(|c| {
            self.locks
                .get(c)
                .is_some_and(|w| owner_of(w) == owner_of(unlock) && range_of(w) == range_of(unlock))
        });
        if let Some(c) = found
            && let Some(l) = self.remove(c)
        {
            self.stats.cancels += 1;
            out.push(Ast::FlockAborted { lock: l, deadlock: false });
        }
    }

    /// Removes a resource left with no lock.
    fn drop_if_unused(&mut self, res: &proto::fid::LdlmResId) {
        if self.resources.get(res).is_some_and(|r| r.granted.is_empty() && r.waiting.is_empty()) {
            self.resources.remove(res);
        }
    }

    /// Grants `l` (not on any list): merges it with its owner's locks of the same mode that
    /// overlap or adjoin it and cuts its owner's locks of other modes under it; an unlock (NL)
    /// only cuts. Returns whether another owner's request may have become grantable (a lock
    /// was cut or changed mode).
    fn flock_grant(&mut self, l: Lock) -> bool {
        let who = owner_of(&l);
        let m = l.req_mode;
        let (start, end) = range_of(&l);
        // Same-mode neighbours merge even when they only adjoin.
        let (lo, hi) = if m == mode::NL {
            (start, end)
        } else {
            (start.saturating_sub(1), end.saturating_add(1))
        };
        let Some(r) = self.resources.get(&l.res) else { return false };
        let mut own: Vec<(u64, u64, u64)> = r
            .granted
            .iter()
            .filter_map(|c| self.locks.get(c))
            .filter(|g| owner_of(g) == who)
            .filter_map(|g| {
                let (s, e) = range_of(g);
                (s <= hi && lo <= e).then_some((s, e, g.cookie))
            })
            .collect();
        own.sort_unstable();
        let (mut s, mut e) = (start, end);
        let mut carrier: Option<u64> = None;
        let mut freed = m == mode::NL && !own.is_empty();
        for (ls, le, c) in own {
            let Some(lm) = self.locks.get(&c).map(|x| x.granted_mode) else { continue };
            if lm == m {
                s = s.min(ls);
                e = e.max(le);
                match carrier {
                    Some(_) => {
                        self.remove(c);
                    }
                    None => carrier = Some(c),
                }
                if let Some(k) = carrier.and_then(|k| self.locks.get_mut(&k)) {
                    k.policy = with_range(k.policy, s, e);
                }
                continue;
            }
            if !(ls <= e && s <= le) {
                continue;
            }
            freed = true;
            if s <= ls {
                if e < le {
                    self.set_range(c, e + 1, le);
                } else {
                    self.remove(c);
                }
                continue;
            }
            if e >= le {
                self.set_range(c, ls, s - 1);
                continue;
            }
            // The new range lies inside this lock: it splits in two around it.
            let cookie = self.alloc_cookie();
            let Some(old) = self.locks.get(&c).cloned() else { continue };
            let below = Lock {
                cookie,
                // Never named by the client: a split-off piece has no handle of its own.
                remote: 0,
                policy: with_range(old.policy, ls, s - 1),
                req_policy: with_range(old.policy, ls, s - 1),
                ..old
            };
            self.set_range(c, e + 1, le);
            self.locks.insert(cookie, below);
            if let Some(r) = self.resources.get_mut(&l.res) {
                r.granted.push(cookie);
            }
            break;
        }
        if m != mode::NL && carrier.is_none() {
            let c = l.cookie;
            let res = l.res;
            self.locks.insert(c, Lock { granted_mode: m, ..l });
            // Cutting the owner's last lock above may have dropped the resource.
            self.resources
                .entry(res)
                .or_insert_with(|| Resource { ltype: lock_type::FLOCK, ..Resource::default() })
                .granted
                .push(c);
        }
        freed
    }

    fn set_range(&mut self, cookie: u64, start: u64, end: u64) {
        if let Some(l) = self.locks.get_mut(&cookie) {
            l.policy = with_range(l.policy, start, end);
        }
    }

    /// Grants every waiting request on `res` that nothing is in the way of any more, with a
    /// completion AST each, until a pass grants nothing; a request still blocked is checked
    /// for deadlock against the owner now in its way (and refused by completion AST with
    /// `LDLM_FL_FLOCK_DEADLOCK` if it would wait forever).
    pub(super) fn reprocess_flock(
        &mut self,
        res: proto::fid::LdlmResId,
        now: u64,
        out: &mut Vec<Ast>,
    ) {
        loop {
            let Some(r) = self.resources.get(&res) else { return };
            let queue: Vec<u64> = r.waiting.iter().copied().collect();
            let mut granted_any = false;
            for c in queue {
                let Some(w) = self.locks.get(&c).cloned() else { continue };
                match self.first_in_the_way(&w) {
                    None => {
                        if let Some(r) = self.resources.get_mut(&res) {
                            r.waiting.retain(|&x| x != c);
                        }
                        self.flock_blocker.remove(&c);
                        if self.by_remote.get(&(w.export, w.remote)) == Some(&c) {
                            self.by_remote.remove(&(w.export, w.remote));
                        }
                        self.locks.remove(&c);
                        self.flock_grant(Lock { last_used: now, ..w.clone() });
                        self.stats.cp_asts += 1;
                        out.push(Ast::Completion(Lock { granted_mode: w.req_mode, ..w }));
                        granted_any = true;
                    }
                    Some(b) => {
                        let Some(blocker) = self.locks.get(&b).map(owner_of) else { continue };
                        // Does the owner now in its way wait (through others) for it?
                        self.flock_blocker.remove(&c);
                        if self.waits_for(blocker, owner_of(&w)) {
                            if let Some(l) = self.remove(c) {
                                out.push(Ast::FlockAborted { lock: l, deadlock: true });
                            }
                        } else {
                            self.flock_blocker.insert(c, blocker);
                        }
                    }
                }
            }
            if !granted_any {
                self.drop_if_unused(&res);
                return;
            }
        }
    }

    /// An owner's granted ranges on a resource, in order, with their modes (tests and the
    /// management view).
    #[must_use]
    pub fn flock_ranges(
        &self,
        res: &proto::fid::LdlmResId,
        export: ExportId,
        owner: u64,
    ) -> Vec<(u32, u64, u64)> {
        let mut v: Vec<(u32, u64, u64)> = self
            .granted_on(res)
            .filter(|l| owner_of(l) == (export, owner))
            .map(|l| {
                let (s, e) = range_of(l);
                (l.granted_mode, s, e)
            })
            .collect();
        v.sort_by_key(|x| (x.1, x.2));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldlm::ns::NsLimits;
    use proto::fid::{LdlmResId, LuFid};
    use proto::ldlm::mode::{NL, PR, PW};

    fn res() -> LdlmResId {
        let mut w = LuFid::new(0x2_0000_0400, 7, 0).res_id().words();
        w[3] = u64::from(lock_type::FLOCK);
        LdlmResId::new(w)
    }

    /// A request of owner `owner` on export `e` (pid = owner).
    fn fl(e: u64, owner: u64, remote: u64, m: u32, start: u64, end: u64) -> EnqueueReq {
        EnqueueReq {
            export: ExportId(e),
            remote,
            res: res(),
            mode: m,
            policy: LockPolicy::Flock { start, end, owner, pid: owner as u32 },
            flags: 0,
        }
    }

    fn nowait(mut r: EnqueueReq) -> EnqueueReq {
        r.flags = flags::BLOCK_NOWAIT;
        r
    }

    fn test(mut r: EnqueueReq) -> EnqueueReq {
        r.flags = flags::TEST_LOCK;
        r
    }

    struct T {
        ns: Namespace,
        out: Vec<Ast>,
        remote: u64,
        now: u64,
    }

    impl T {
        fn new() -> T {
            T {
                ns: Namespace::new("mdt", 0, NsLimits::default()),
                out: Vec::new(),
                remote: 0,
                now: 0,
            }
        }
        fn go(&mut self, mut r: EnqueueReq) -> Result<FlockDone, LdlmError> {
            self.remote += 1;
            self.now += 1;
            r.remote = self.remote;
            let x = self.ns.enqueue_flock(r, self.now, &mut self.out);
            self.ns.check_invariants().unwrap();
            x
        }
        fn granted(&mut self, r: EnqueueReq) {
            assert!(matches!(self.go(r.clone()), Ok(FlockDone::Granted(_))), "{r:?}");
        }
        fn waiting(&mut self, r: EnqueueReq) -> u64 {
            match self.go(r.clone()) {
                Ok(FlockDone::Waiting(l)) => l.cookie,
                other => panic!("{r:?}: {other:?}"),
            }
        }
        fn ranges(&self, e: u64, owner: u64) -> Vec<(u32, u64, u64)> {
            self.ns.flock_ranges(&res(), ExportId(e), owner)
        }
    }

    #[test]
    fn an_owners_locks_merge_when_they_touch() {
        let mut t = T::new();
        t.granted(fl(1, 1, 0, PW, 0, 9));
        t.granted(fl(1, 1, 0, PW, 10, 19));
        assert_eq!(t.ranges(1, 1), [(PW, 0, 19)], "adjacent ranges of one mode merge");
        t.granted(fl(1, 1, 0, PW, 30, 39));
        assert_eq!(t.ranges(1, 1), [(PW, 0, 19), (PW, 30, 39)]);
        t.granted(fl(1, 1, 0, PW, 20, 29));
        assert_eq!(t.ranges(1, 1), [(PW, 0, 39)], "the gap filled: one lock");
        // Inside an existing lock of the same mode: nothing changes.
        t.granted(fl(1, 1, 0, PW, 5, 6));
        assert_eq!(t.ranges(1, 1), [(PW, 0, 39)]);
        assert_eq!(t.ns.lock_count(), 1);
        // Another mode adjoining does not merge.
        t.granted(fl(1, 1, 0, PR, 40, 49));
        assert_eq!(t.ranges(1, 1), [(PW, 0, 39), (PR, 40, 49)]);
        assert!(t.out.is_empty(), "flock grants send no AST: {:?}", t.out);
    }

    #[test]
    fn unlock_splits_and_frees_the_middle() {
        let mut t = T::new();
        t.granted(fl(1, 1, 0, PW, 0, 99));
        // F_UNLCK of 40-59: two locks remain.
        t.granted(fl(1, 1, 0, NL, 40, 59));
        assert_eq!(t.ranges(1, 1), [(PW, 0, 39), (PW, 60, 99)]);
        // Another owner (on another client) may lock the hole, not the rest.
        t.granted(nowait(fl(2, 9, 0, PW, 40, 59)));
        assert_eq!(t.go(nowait(fl(2, 9, 0, PW, 0, 9))), Err(LdlmError::WouldBlock));
        assert_eq!(t.go(nowait(fl(2, 9, 0, PR, 95, 120))), Err(LdlmError::WouldBlock));
        // Unlocks trim both ends and remove what they cover.
        t.granted(fl(1, 1, 0, NL, 30, 69));
        assert_eq!(t.ranges(1, 1), [(PW, 0, 29), (PW, 70, 99)]);
        t.granted(fl(1, 1, 0, NL, 0, u64::MAX));
        assert!(t.ranges(1, 1).is_empty());
        // Unlocking what is not held is fine.
        t.granted(fl(1, 1, 0, NL, 0, 10));
        assert_eq!(t.ranges(2, 9), [(PW, 40, 59)]);
        t.granted(fl(2, 9, 0, NL, 0, u64::MAX));
        assert_eq!(t.ns.lock_count(), 0);
        assert_eq!(t.ns.resource_count(), 0, "an empty resource goes");
    }

    #[test]
    fn a_mode_change_splits_the_owners_lock() {
        let mut t = T::new();
        t.granted(fl(1, 1, 0, PR, 0, 99));
        t.granted(fl(1, 1, 0, PW, 10, 19));
        assert_eq!(t.ranges(1, 1), [(PR, 0, 9), (PW, 10, 19), (PR, 20, 99)]);
        // Back to PR: the three merge again.
        t.granted(fl(1, 1, 0, PR, 10, 19));
        assert_eq!(t.ranges(1, 1), [(PR, 0, 99)]);
        // Readers share; a writer of another owner does not get in.
        t.granted(fl(2, 2, 0, PR, 50, 150));
        assert_eq!(t.go(nowait(fl(3, 3, 0, PW, 99, 99))), Err(LdlmError::WouldBlock));
        // The same owner cookie on another export is another owner.
        assert_eq!(t.go(nowait(fl(2, 1, 0, PW, 0, 0))), Err(LdlmError::WouldBlock));
    }

    #[test]
    fn test_lock_reports_the_holder_and_grants_nothing() {
        let mut t = T::new();
        t.granted(fl(1, 1, 0, PR, 0, 9));
        t.granted(fl(1, 7, 0, PW, 10, 19));
        let n = t.ns.lock_count();
        match t.go(test(fl(2, 2, 0, PW, 5, 100))) {
            Ok(FlockDone::Tested(Some(g))) => {
                assert_eq!(g.granted_mode, PR, "the first lock in the way, by start");
                assert_eq!(g.policy, LockPolicy::Flock { start: 0, end: 9, owner: 1, pid: 1 });
            }
            other => panic!("{other:?}"),
        }
        match t.go(test(fl(2, 2, 0, PR, 5, 100))) {
            Ok(FlockDone::Tested(Some(g))) => {
                assert_eq!((g.granted_mode, range_of(&g)), (PW, (10, 19)));
                assert_eq!(flock_of(&g.policy).map(|f| f.3), Some(7), "the holder's pid");
            }
            other => panic!("{other:?}"),
        }
        // Readers do not stop readers; an owner never conflicts with itself.
        assert_eq!(t.go(test(fl(2, 2, 0, PR, 0, 9))), Ok(FlockDone::Tested(None)));
        assert_eq!(t.go(test(fl(1, 7, 0, PW, 10, 19))), Ok(FlockDone::Tested(None)));
        assert_eq!(t.go(test(fl(1, 1, 0, PW, 0, 9))), Ok(FlockDone::Tested(None)));
        assert_eq!(t.ns.lock_count(), n);
        assert!(t.out.is_empty());
    }

    #[test]
    fn a_waiter_is_granted_by_completion_ast_when_the_holder_unlocks() {
        let mut t = T::new();
        t.granted(fl(1, 1, 0, PW, 0, 99));
        let w = t.waiting(fl(2, 2, 0, PW, 50, 59));
        let w2 = t.waiting(fl(3, 3, 0, PR, 0, 0));
        assert!(t.out.is_empty(), "no blocking AST to a flock holder");
        // Unlocking elsewhere lets nobody in.
        t.granted(fl(1, 1, 0, NL, 10, 19));
        assert!(t.out.is_empty());
        // Unlocking 50-59 lets the writer in.
        t.granted(fl(1, 1, 0, NL, 40, 59));
        assert!(
            matches!(&t.out[..], [Ast::Completion(l)] if l.cookie == w && l.granted_mode == PW),
            "{:?}",
            t.out
        );
        assert_eq!(t.ranges(2, 2), [(PW, 50, 59)]);
        t.out.clear();
        // The holder closes the file: everything goes, the reader gets in.
        t.granted(fl(1, 1, 0, NL, 0, u64::MAX));
        assert!(matches!(&t.out[..], [Ast::Completion(l)] if l.cookie == w2));
        assert_eq!(t.ranges(3, 3), [(PR, 0, 0)]);
    }

    #[test]
    fn cancel_of_a_waiting_request_and_eviction() {
        let mut t = T::new();
        t.granted(fl(1, 1, 0, PW, 0, 9));
        let w = t.waiting(fl(2, 2, 0, PW, 0, 0));
        // LDLM_CANCEL of the waiting request (an interrupted F_SETLKW): it just goes.
        t.ns.cancel(w, Some(ExportId(2)), 10, &mut t.out).unwrap();
        t.ns.check_invariants().unwrap();
        assert!(t.out.is_empty());
        // An unlock of exactly its range cancels a waiter too (F_CANCELLK), by CP AST.
        let w = t.waiting(fl(2, 2, 0, PW, 5, 6));
        t.granted(fl(2, 2, 0, NL, 5, 6));
        assert!(
            matches!(&t.out[..], [Ast::FlockAborted { lock, deadlock: false }] if lock.cookie == w),
            "{:?}",
            t.out
        );
        t.out.clear();
        // The holder's client is evicted: its locks go and the waiter is granted.
        let w = t.waiting(fl(2, 2, 0, PR, 3, 3));
        assert_eq!(t.ns.cancel_export(ExportId(1), 20, &mut t.out), 1);
        t.ns.check_invariants().unwrap();
        assert!(matches!(&t.out[..], [Ast::Completion(l)] if l.cookie == w));
        assert_eq!(t.ranges(2, 2), [(PR, 3, 3)]);
    }

    #[test]
    fn deadlocks_are_refused() {
        let mut t = T::new();
        t.granted(fl(1, 1, 0, PW, 0, 0));
        t.granted(fl(2, 2, 0, PW, 1, 1));
        // 1 waits for 2; 2 asking for 1's byte would wait forever.
        t.waiting(fl(1, 1, 0, PW, 1, 1));
        assert_eq!(t.go(fl(2, 2, 0, PW, 0, 0)), Err(LdlmError::Deadlock));
        // Through a third owner: 2 waits for 3's byte; 3 asking for 1's byte would close
        // the circle 3 -> 1 -> 2 -> 3.
        t.granted(fl(3, 3, 0, PW, 2, 2));
        t.waiting(fl(2, 2, 0, PW, 2, 2));
        assert_eq!(t.go(fl(3, 3, 0, PW, 0, 0)), Err(LdlmError::Deadlock));
        // A non-blocking request never deadlocks; it just fails.
        assert_eq!(t.go(nowait(fl(3, 3, 0, PW, 0, 0))), Err(LdlmError::WouldBlock));
    }

    #[test]
    fn a_deadlock_that_appears_later_ends_the_wait() {
        let mut t = T::new();
        t.granted(fl(3, 3, 0, PR, 1, 1));
        t.granted(fl(2, 2, 0, PR, 1, 1));
        t.granted(fl(1, 1, 0, PW, 0, 0));
        // 2 waits for 1.
        t.waiting(fl(2, 2, 0, PW, 0, 0));
        // 1 wants byte 1: first in its way is 3 (not waiting): it waits.
        let w = t.waiting(fl(1, 1, 0, PW, 1, 1));
        // 3 lets go: now 2 is in 1's way, and 2 waits for 1.
        t.granted(fl(3, 3, 0, NL, 0, u64::MAX));
        assert!(
            matches!(&t.out[..], [Ast::FlockAborted { lock, deadlock: true }] if lock.cookie == w),
            "{:?}",
            t.out
        );
    }

    /// Random requests of four owners on a small file against a model of who holds which
    /// byte: grants (at once or by completion AST) and unlocks leave each owner exactly the
    /// bytes the model says, merged into the fewest locks, and no two owners in conflict.
    #[test]
    fn random_requests_match_a_byte_model() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        const LEN: u64 = 24;
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut t = T::new();
            // model[owner][byte] = mode held (0: none).
            let mut model = [[0u32; LEN as usize]; 4];
            let apply = |model: &mut [[u32; LEN as usize]; 4], l: &Lock| {
                let (s, e) = range_of(l);
                let o = usize::try_from(owner_of(l).1).unwrap();
                for b in s..=e.min(LEN - 1) {
                    model[o][b as usize] = if l.req_mode == NL { 0 } else { l.req_mode };
                }
            };
            let mut log = Vec::new();
            for step in 0..300 {
                let o = rng.random_range(0..4u64);
                let s = rng.random_range(0..LEN);
                let e = (s + rng.random_range(0..6u64)).min(LEN - 1);
                let m = [PR, PW, NL][rng.random_range(0..3)];
                let mut r = fl(o, o, 0, m, s, e);
                r.flags = if rng.random_bool(0.7) { flags::BLOCK_NOWAIT } else { 0 };
                let x = t.go(r.clone());
                log.push(format!("{r:?} -> {x:?}"));
                match x {
                    Ok(FlockDone::Granted(l)) => apply(&mut model, &l),
                    Ok(FlockDone::Waiting(_))
                    | Err(LdlmError::WouldBlock | LdlmError::Deadlock) => {}
                    other => panic!("seed {seed} step {step}: {other:?}"),
                }
                for a in std::mem::take(&mut t.out) {
                    log.push(format!("  {a:?}"));
                    if let Ast::Completion(l) = a {
                        apply(&mut model, &l);
                    }
                }
                for (o, bytes) in model.iter().enumerate() {
                    let held = t.ranges(o as u64, o as u64);
                    let mut got = [0u32; LEN as usize];
                    for &(m, s, e) in &held {
                        for b in s..=e {
                            got[b as usize] = m;
                        }
                    }
                    assert_eq!(&got, bytes, "seed {seed} step {step} owner {o}: {held:?} {log:#?}");
                    for w in held.windows(2) {
                        assert!(
                            w[0].0 != w[1].0 || w[0].2 + 1 < w[1].1,
                            "seed {seed} step {step}: unmerged {held:?}"
                        );
                    }
                }
            }
            // Everyone unlocks: every waiter is granted or refused, none left behind.
            for round in 0..8 {
                for o in 0..4u64 {
                    let _ = t.go(fl(o, o, 0, NL, 0, u64::MAX));
                }
                t.out.clear();
                if t.ns.lock_count() == 0 {
                    break;
                }
                assert!(round < 7, "seed {seed}: {} locks left", t.ns.lock_count());
            }
        }
    }
}

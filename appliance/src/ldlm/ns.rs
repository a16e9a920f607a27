//! A lock namespace: the resources of one target on one shard, their granted and waiting
//! locks, and the rules that grant, block and revoke them.
//!
//! This is a state machine with no I/O: calls take the time in milliseconds and append the
//! callbacks they cause to an output list ([`Ast`]); the service sends them. That keeps it
//! deterministic under test and in the simulator.

use super::policy::{ExtentView, LockPolicy, conflicts, extent_policy};
use proto::fid::LdlmResId;
use proto::ldlm::{flags, lock_type, mode};
use std::collections::{BTreeMap, HashMap, VecDeque};

mod flock;
pub use flock::FlockDone;

/// Which client a lock belongs to: the service's export id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExportId(pub u64);

/// The server's own locks (taken around its own updates, or for `OBD_BRW_SRVLOCK` I/O).
pub const LOCAL_EXPORT: ExportId = ExportId(0);

/// Limits of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsLimits {
    /// Locks the namespace aims to stay under: above it, the least recently used granted locks
    /// are asked back with blocking callbacks (`ldlm.namespaces.*.lru_size` on the server).
    pub lru_size: usize,
    /// Locks beyond which new enqueues are refused with `-ENOMEM` until clients give some back.
    pub hard_limit: usize,
    /// Milliseconds a client has to cancel a lock after its blocking callback before it is
    /// evicted (`ldlm_timeout`-like).
    pub ast_timeout_ms: u64,
}

impl Default for NsLimits {
    fn default() -> Self {
        NsLimits { lru_size: 100_000, hard_limit: 150_000, ast_timeout_ms: 100_000 }
    }
}

/// One lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The server's handle cookie.
    pub cookie: u64,
    /// The client's handle cookie for this lock.
    pub remote: u64,
    /// The owning export.
    pub export: ExportId,
    /// The resource.
    pub res: LdlmResId,
    /// Mode requested.
    pub req_mode: u32,
    /// Mode granted (0 while waiting).
    pub granted_mode: u32,
    /// The part of the resource granted (or requested, while waiting); extents may have grown.
    pub policy: LockPolicy,
    /// The part requested.
    pub req_policy: LockPolicy,
    /// Wire flags of the request.
    pub req_flags: u32,
    /// When a blocking callback was sent, if one was.
    pub bl_ast_at: Option<u64>,
    /// Flags the blocking callback carries (`LDLM_FL_DISCARD_DATA` when the lock in the way
    /// was asked for with `LDLM_FL_AST_DISCARD_DATA`: a truncate to 0 needs no flush).
    pub bl_flags: u32,
    /// When the lock was granted or last matched by a request.
    pub last_used: u64,
}

impl Lock {
    /// A lock as `req` asks for it, not granted yet.
    fn requested(cookie: u64, req: &EnqueueReq, now: u64) -> Lock {
        Lock {
            cookie,
            remote: req.remote,
            export: req.export,
            res: req.res,
            req_mode: req.mode,
            granted_mode: 0,
            policy: req.policy,
            req_policy: req.policy,
            req_flags: req.flags,
            bl_ast_at: None,
            bl_flags: 0,
            last_used: now,
        }
    }

    /// Whether the lock is granted.
    #[must_use]
    pub fn is_granted(&self) -> bool {
        self.granted_mode != 0
    }
}

/// A callback the namespace needs sent to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ast {
    /// LDLM_BL_CALLBACK: give the lock back (a conflicting request waits, or the namespace is
    /// over its LRU size).
    Blocking(Lock),
    /// LDLM_CP_CALLBACK: a waiting lock is now granted.
    Completion(Lock),
    /// LDLM_CP_CALLBACK in mode 0: a waiting FLOCK request ends without a grant, because it
    /// would wait forever (`deadlock`: `LDLM_FL_FLOCK_DEADLOCK`) or its owner unlocked the
    /// range it waited for.
    FlockAborted {
        /// The request, no longer in the namespace.
        lock: Lock,
        /// Ended by deadlock detection.
        deadlock: bool,
    },
}

/// The result of a glimpse enqueue (`ofd_intent_policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glimpsed {
    /// Nothing in the way: the lock is granted like any other (`ELDLM_LOCK_REPLACED`).
    Granted(u64),
    /// Something conflicts: no lock. The granted locks of every mode but PR, one list per
    /// interval tree in Lustre's order, each from the highest extent down: the candidates for
    /// glimpse callbacks.
    Blocked(Vec<Vec<Lock>>),
}

/// The result of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Granted now.
    Granted(u64),
    /// Queued behind conflicting locks; a completion callback will grant it.
    Waiting(u64),
}

/// Why a lock request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LdlmError {
    /// It conflicts and the client asked not to wait (`BLOCK_NOWAIT`, `TEST_LOCK`).
    #[error("lock would block")]
    WouldBlock,
    /// The namespace is at its hard limit.
    #[error("too many locks")]
    TooManyLocks,
    /// No such lock (or not the caller's).
    #[error("no such lock")]
    NoSuchLock,
    /// The request is inconsistent (mode, type or policy).
    #[error("invalid lock request")]
    Invalid,
    /// A FLOCK request would wait for an owner that waits for it (`-EDEADLK`).
    #[error("lock deadlock")]
    Deadlock,
}

/// A lock request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueReq {
    /// Who asks.
    pub export: ExportId,
    /// The client's handle cookie.
    pub remote: u64,
    /// The resource.
    pub res: LdlmResId,
    /// Mode wanted.
    pub mode: u32,
    /// Part of the resource wanted.
    pub policy: LockPolicy,
    /// Wire flags (BLOCK_NOWAIT, TEST_LOCK, NO_EXPANSION, ...).
    pub flags: u32,
}

#[derive(Debug, Default)]
struct Resource {
    ltype: u32,
    granted: Vec<u64>,
    waiting: VecDeque<u64>,
}

/// Counters of a namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsStats {
    /// Enqueue requests.
    pub enqueues: u64,
    /// Locks granted at once.
    pub granted_now: u64,
    /// Locks that had to wait.
    pub blocked: u64,
    /// Cancels.
    pub cancels: u64,
    /// Blocking callbacks issued.
    pub bl_asts: u64,
    /// Completion callbacks issued.
    pub cp_asts: u64,
    /// Exports whose locks were dropped by eviction.
    pub evictions: u64,
}

/// A lock namespace.
#[derive(Debug)]
pub struct Namespace {
    name: String,
    limits: NsLimits,
    /// Cookie generator: `shard << 48 | counter`, so cookies are unique across shards.
    cookie_base: u64,
    next: u64,
    locks: HashMap<u64, Lock>,
    resources: HashMap<LdlmResId, Resource>,
    by_remote: HashMap<(ExportId, u64), u64>,
    /// Granted locks by last use, for LRU revocation.
    lru: BTreeMap<(u64, u64), ()>,
    /// Waiting FLOCK requests and the owner (export, owner cookie) each waits for: the edges
    /// deadlock detection follows.
    flock_blocker: HashMap<u64, (ExportId, u64)>,
    stats: NsStats,
}

impl Namespace {
    /// A namespace named `name` (Lustre's namespace name, e.g. `mdt-rustre-MDT0000_UUID`) on
    /// shard `shard`.
    #[must_use]
    pub fn new(name: impl Into<String>, shard: u16, limits: NsLimits) -> Namespace {
        Namespace {
            name: name.into(),
            limits,
            cookie_base: u64::from(shard) << 48,
            next: 0,
            locks: HashMap::new(),
            resources: HashMap::new(),
            by_remote: HashMap::new(),
            lru: BTreeMap::new(),
            flock_blocker: HashMap::new(),
            stats: NsStats::default(),
        }
    }

    /// The namespace's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Locks held or waiting.
    #[must_use]
    pub fn lock_count(&self) -> usize {
        self.locks.len()
    }
    /// Resources with at least one lock.
    #[must_use]
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }
    /// Granted locks with no blocking callback pending: what a client could drop at once
    /// (`lock_unused_count` from the server's view).
    #[must_use]
    pub fn unused_count(&self) -> usize {
        self.locks.values().filter(|l| l.is_granted() && l.bl_ast_at.is_none()).count()
    }
    /// Counters.
    #[must_use]
    pub fn stats(&self) -> NsStats {
        self.stats
    }
    /// The limits.
    #[must_use]
    pub fn limits(&self) -> NsLimits {
        self.limits
    }
    /// Changes the limits (`set_param ldlm.namespaces.*.lru_size=N`); takes effect at the
    /// next enqueue.
    pub fn set_limits(&mut self, limits: NsLimits) {
        self.limits = limits;
    }
    /// A lock by cookie.
    #[must_use]
    pub fn lock(&self, cookie: u64) -> Option<&Lock> {
        self.locks.get(&cookie)
    }
    /// The server cookie of an export's lock by the client's cookie (a resent enqueue).
    #[must_use]
    pub fn by_remote(&self, export: ExportId, remote: u64) -> Option<u64> {
        self.by_remote.get(&(export, remote)).copied()
    }
    /// Granted locks on a resource.
    pub fn granted_on(&self, res: &LdlmResId) -> impl Iterator<Item = &Lock> {
        self.resources
            .get(res)
            .into_iter()
            .flat_map(|r| r.granted.iter())
            .filter_map(|c| self.locks.get(c))
    }

    fn alloc_cookie(&mut self) -> u64 {
        self.next += 1;
        self.cookie_base | (self.next & 0xffff_ffff_ffff)
    }

    /// Whether `l` (not yet on any list of `res`) conflicts with a granted lock, or with a
    /// waiting lock ahead of it (fairness: a new request does not overtake waiters).
    fn conflicting(
        &self,
        res: &Resource,
        mode: u32,
        pol: &LockPolicy,
        ahead: Option<usize>,
    ) -> (Vec<u64>, bool) {
        let mut granted = Vec::new();
        for c in &res.granted {
            if let Some(g) = self.locks.get(c)
                && conflicts(mode, pol, g.granted_mode, &g.policy)
            {
                granted.push(*c);
            }
        }
        let n = ahead.unwrap_or(res.waiting.len());
        let waiting = res
            .waiting
            .iter()
            .take(n)
            .filter_map(|c| self.locks.get(c))
            .any(|w| conflicts(mode, pol, w.req_mode, &w.req_policy));
        (granted, waiting)
    }

    fn send_blocking(&mut self, cookies: &[u64], now: u64, out: &mut Vec<Ast>, by_flags: u32) {
        for c in cookies {
            if let Some(l) = self.locks.get_mut(c)
                && l.bl_ast_at.is_none()
            {
                l.bl_ast_at = Some(now);
                if by_flags & flags::AST_DISCARD_DATA != 0 {
                    l.bl_flags |= flags::DISCARD_DATA;
                }
                self.stats.bl_asts += 1;
                out.push(Ast::Blocking(l.clone()));
            }
        }
    }

    fn grant(&mut self, cookie: u64, now: u64) {
        // Extents grow into free space before they are granted (`ldlm_extent_policy`); the
        // server's own locks never grow.
        let grown = {
            let Some(l) = self.locks.get(&cookie) else { return };
            match (l.req_policy, self.resources.get(&l.res)) {
                (LockPolicy::Extent { start, end, .. }, Some(r))
                    if l.export != LOCAL_EXPORT && l.req_mode != mode::GROUP =>
                {
                    let view = |c: &u64| -> Option<ExtentView> {
                        let o = self.locks.get(c)?;
                        let (
                            LockPolicy::Extent { start, end, .. },
                            LockPolicy::Extent { start: rs, end: re, .. },
                        ) = (o.policy, o.req_policy)
                        else {
                            return None;
                        };
                        Some(ExtentView {
                            mode: if o.is_granted() { o.granted_mode } else { o.req_mode },
                            start,
                            end,
                            req_start: rs,
                            req_end: re,
                            same_export: o.export == l.export,
                        })
                    };
                    let granted: Vec<ExtentView> =
                        r.granted.iter().filter(|&&c| c != cookie).filter_map(view).collect();
                    let waiting: Vec<ExtentView> =
                        r.waiting.iter().filter(|&&c| c != cookie).filter_map(view).collect();
                    Some(extent_policy(
                        l.req_mode,
                        (start, end),
                        l.req_flags & flags::NO_EXPANSION != 0,
                        &granted,
                        &waiting,
                    ))
                }
                _ => None,
            }
        };
        let Some(l) = self.locks.get_mut(&cookie) else { return };
        if let (Some((s, e)), LockPolicy::Extent { gid, .. }) = (grown, l.req_policy) {
            l.policy = LockPolicy::Extent { start: s, end: e, gid };
        }
        l.granted_mode = l.req_mode;
        l.last_used = now;
        self.lru.insert((now, cookie), ());
        if let Some(r) = self.resources.get_mut(&l.res) {
            r.granted.push(cookie);
        }
    }

    /// Enqueues a lock. A compatible request is granted at once (extents grown into free
    /// space); a conflicting one sends blocking callbacks to the holders in the way and waits,
    /// unless the client asked not to wait.
    pub fn enqueue(
        &mut self,
        req: EnqueueReq,
        now: u64,
        out: &mut Vec<Ast>,
    ) -> Result<Enqueued, LdlmError> {
        self.stats.enqueues += 1;
        if !req.mode.is_power_of_two()
            || req.mode & mode::ALL == 0
            // FLOCK requests follow rules of their own: `enqueue_flock`.
            || req.policy.lock_type() == lock_type::FLOCK
        {
            return Err(LdlmError::Invalid);
        }
        if let LockPolicy::Extent { start, end, .. } = req.policy
            && start > end
        {
            return Err(LdlmError::Invalid);
        }
        if let Some(existing) = self.by_remote(req.export, req.remote) {
            // A resend of an enqueue we already processed: answer with the same lock.
            return Ok(match self.locks.get(&existing) {
                Some(l) if l.is_granted() => Enqueued::Granted(existing),
                _ => Enqueued::Waiting(existing),
            });
        }
        if self.locks.len() >= self.limits.hard_limit {
            self.revoke_lru(now, out);
            return Err(LdlmError::TooManyLocks);
        }
        let ltype = req.policy.lock_type();
        let res = self
            .resources
            .entry(req.res)
            .or_insert_with(|| Resource { ltype, ..Resource::default() });
        if res.ltype != ltype {
            if res.granted.is_empty() && res.waiting.is_empty() {
                res.ltype = ltype;
            } else {
                return Err(LdlmError::Invalid);
            }
        }
        let res = self.resources.get(&req.res).ok_or(LdlmError::Invalid)?;
        let (in_way, waiters_ahead) = self.conflicting(res, req.mode, &req.policy, None);
        let blocked = !in_way.is_empty() || waiters_ahead;
        if blocked && req.flags & (flags::BLOCK_NOWAIT | flags::TEST_LOCK) != 0 {
            if self
                .resources
                .get(&req.res)
                .is_some_and(|r| r.granted.is_empty() && r.waiting.is_empty())
            {
                self.resources.remove(&req.res);
            }
            return Err(LdlmError::WouldBlock);
        }
        let cookie = self.alloc_cookie();
        self.locks.insert(cookie, Lock::requested(cookie, &req, now));
        self.by_remote.insert((req.export, req.remote), cookie);
        let result = if blocked {
            self.stats.blocked += 1;
            if let Some(r) = self.resources.get_mut(&req.res) {
                r.waiting.push_back(cookie);
            }
            self.send_blocking(&in_way, now, out, req.flags);
            Enqueued::Waiting(cookie)
        } else {
            self.stats.granted_now += 1;
            self.grant(cookie, now);
            Enqueued::Granted(cookie)
        };
        if self.locks.len() > self.limits.lru_size {
            self.revoke_lru(now, out);
        }
        Ok(result)
    }

    /// A glimpse enqueue (`ofd_intent_policy`): granted like any request when nothing
    /// granted or waiting conflicts with it (Lustre's `LDLM_PROCESS_RESCAN` grant), otherwise
    /// never queued; the caller then gets the granted locks of every mode but PR, per interval
    /// tree from the highest extent down, to choose whom to glimpse. A resent glimpse whose
    /// lock was granted gets that lock again.
    pub fn glimpse(
        &mut self,
        req: EnqueueReq,
        now: u64,
        out: &mut Vec<Ast>,
    ) -> Result<Glimpsed, LdlmError> {
        if let Some(existing) = self.by_remote(req.export, req.remote)
            && self.locks.get(&existing).is_some_and(Lock::is_granted)
        {
            return Ok(Glimpsed::Granted(existing));
        }
        let blocked = self.resources.get(&req.res).is_some_and(|r| {
            r.ltype == req.policy.lock_type() && {
                let (g, w) = self.conflicting(r, req.mode, &req.policy, None);
                !g.is_empty() || w
            }
        });
        if !blocked {
            return match self.enqueue(req, now, out)? {
                Enqueued::Granted(c) => Ok(Glimpsed::Granted(c)),
                // Unreachable (nothing conflicts), but never leave a waiting glimpse behind.
                Enqueued::Waiting(c) => {
                    let _ = self.cancel(c, None, now, out);
                    Ok(Glimpsed::Blocked(Vec::new()))
                }
            };
        }
        let Some(r) = self.resources.get(&req.res) else {
            return Ok(Glimpsed::Blocked(Vec::new()));
        };
        let mut trees = Vec::new();
        for m in super::policy::TREE_ORDER.into_iter().filter(|&m| m != mode::PR) {
            let mut v: Vec<Lock> = r
                .granted
                .iter()
                .filter_map(|c| self.locks.get(c))
                .filter(|l| l.granted_mode == m)
                .cloned()
                .collect();
            v.sort_by_key(|l| match l.policy {
                LockPolicy::Extent { start, end, .. } => std::cmp::Reverse((start, end)),
                _ => std::cmp::Reverse((0, 0)),
            });
            if !v.is_empty() {
                trees.push(v);
            }
        }
        Ok(Glimpsed::Blocked(trees))
    }

    /// Asks for the least recently used granted locks back until the namespace is under its
    /// LRU size (counting locks already asked for).
    fn revoke_lru(&mut self, now: u64, out: &mut Vec<Ast>) {
        let pending = self.locks.values().filter(|l| l.bl_ast_at.is_some()).count();
        let excess = self.locks.len().saturating_sub(self.limits.lru_size).saturating_sub(pending);
        let victims: Vec<u64> = self
            .lru
            .keys()
            .map(|&(_, c)| c)
            .filter(|c| self.locks.get(c).is_some_and(|l| l.bl_ast_at.is_none()))
            .take(excess)
            .collect();
        self.send_blocking(&victims, now, out, 0);
    }

    /// Marks a granted lock as used now (a request matched it).
    pub fn touch(&mut self, cookie: u64, now: u64) {
        if let Some(l) = self.locks.get_mut(&cookie)
            && l.is_granted()
        {
            self.lru.remove(&(l.last_used, cookie));
            l.last_used = now;
            self.lru.insert((now, cookie), ());
        }
    }

    fn remove(&mut self, cookie: u64) -> Option<Lock> {
        let l = self.locks.remove(&cookie)?;
        // Granted FLOCK locks are not indexed (merges and splits leave several per handle).
        if self.by_remote.get(&(l.export, l.remote)) == Some(&cookie) {
            self.by_remote.remove(&(l.export, l.remote));
        }
        self.flock_blocker.remove(&cookie);
        self.lru.remove(&(l.last_used, cookie));
        if let Some(r) = self.resources.get_mut(&l.res) {
            r.granted.retain(|&c| c != cookie);
            r.waiting.retain(|&c| c != cookie);
            if r.granted.is_empty() && r.waiting.is_empty() {
                self.resources.remove(&l.res);
            }
        }
        Some(l)
    }

    /// Grants every waiting lock on `res` that no longer conflicts, in order.
    fn reprocess(&mut self, res: LdlmResId, now: u64, out: &mut Vec<Ast>) {
        if self.resources.get(&res).is_some_and(|r| r.ltype == lock_type::FLOCK) {
            return self.reprocess_flock(res, now, out);
        }
        loop {
            let Some(r) = self.resources.get(&res) else { return };
            let mut grant_now = None;
            for (i, c) in r.waiting.iter().enumerate() {
                let Some(w) = self.locks.get(c) else { continue };
                let (in_way, ahead) = self.conflicting(r, w.req_mode, &w.req_policy, Some(i));
                if in_way.is_empty() && !ahead {
                    grant_now = Some(*c);
                    break;
                }
            }
            let Some(c) = grant_now else {
                // Still blocked: make sure every holder in the way has been asked.
                let mut asks = Vec::new();
                if let Some(r) = self.resources.get(&res) {
                    for c in &r.waiting {
                        if let Some(w) = self.locks.get(c) {
                            asks.extend(self.conflicting(r, w.req_mode, &w.req_policy, Some(0)).0);
                        }
                    }
                }
                self.send_blocking(&asks, now, out, 0);
                return;
            };
            if let Some(r) = self.resources.get_mut(&res) {
                r.waiting.retain(|&x| x != c);
            }
            self.grant(c, now);
            self.stats.cp_asts += 1;
            if let Some(l) = self.locks.get(&c) {
                out.push(Ast::Completion(l.clone()));
            }
        }
    }

    /// Cancels a lock (LDLM_CANCEL, early lock cancel, or a client giving it back). With
    /// `export` set, only that export's lock may be cancelled.
    pub fn cancel(
        &mut self,
        cookie: u64,
        export: Option<ExportId>,
        now: u64,
        out: &mut Vec<Ast>,
    ) -> Result<Lock, LdlmError> {
        match self.locks.get(&cookie) {
            Some(l) if export.is_none_or(|e| e == l.export) => {}
            _ => return Err(LdlmError::NoSuchLock),
        }
        let l = self.remove(cookie).ok_or(LdlmError::NoSuchLock)?;
        self.stats.cancels += 1;
        self.reprocess(l.res, now, out);
        Ok(l)
    }

    /// Changes a granted IBITS lock to fewer bits (LDLM_CONVERT, used by clients that
    /// negotiated LOCK_CONVERT), then lets waiters in.
    pub fn convert(
        &mut self,
        cookie: u64,
        export: ExportId,
        new_mode: u32,
        new_bits: u64,
        now: u64,
        out: &mut Vec<Ast>,
    ) -> Result<(), LdlmError> {
        let l = self
            .locks
            .get_mut(&cookie)
            .filter(|l| l.export == export && l.is_granted())
            .ok_or(LdlmError::NoSuchLock)?;
        match l.policy {
            LockPolicy::Ibits { bits } if new_bits != 0 && new_bits & !bits == 0 => {
                l.policy = LockPolicy::Ibits { bits: new_bits };
                l.req_policy = l.policy;
            }
            _ => return Err(LdlmError::Invalid),
        }
        // 2.15 clients convert only to fewer bits in the same mode.
        if new_mode != 0 && new_mode != l.granted_mode {
            return Err(LdlmError::Invalid);
        }
        l.bl_ast_at = None;
        let res = l.res;
        self.reprocess(res, now, out);
        Ok(())
    }

    /// Drops every lock of an export (eviction or disconnect) and lets waiters in.
    pub fn cancel_export(&mut self, export: ExportId, now: u64, out: &mut Vec<Ast>) -> usize {
        let mine: Vec<u64> =
            self.locks.values().filter(|l| l.export == export).map(|l| l.cookie).collect();
        let mut touched = Vec::new();
        for c in &mine {
            if let Some(l) = self.remove(*c) {
                touched.push(l.res);
            }
        }
        touched.sort_by_key(|r| r.words());
        touched.dedup();
        for r in touched {
            self.reprocess(r, now, out);
        }
        if !mine.is_empty() {
            self.stats.evictions += 1;
        }
        mine.len()
    }

    /// Exports holding a lock whose blocking callback went unanswered for longer than the
    /// AST timeout: the service evicts them.
    #[must_use]
    pub fn overdue(&self, now: u64) -> Vec<ExportId> {
        let mut v: Vec<ExportId> = self
            .locks
            .values()
            .filter(|l| {
                l.bl_ast_at.is_some_and(|t| now.saturating_sub(t) > self.limits.ast_timeout_ms)
            })
            .map(|l| l.export)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Checks the namespace's invariants (tests and debug builds call this after each step).
    pub fn check_invariants(&self) -> Result<(), String> {
        for (res, r) in &self.resources {
            for c in &r.granted {
                let l = self.locks.get(c).ok_or(format!("granted lock {c:#x} missing"))?;
                if !l.is_granted() || l.res != *res {
                    return Err(format!("lock {c:#x} on the wrong list"));
                }
            }
            // No two granted locks conflict (an owner's FLOCK locks do not even overlap).
            for (i, a) in r.granted.iter().enumerate() {
                for b in r.granted.iter().skip(i + 1) {
                    let (la, lb) = (&self.locks[a], &self.locks[b]);
                    let clash = if r.ltype == lock_type::FLOCK {
                        flock::flock_conflict(la, lb)
                    } else {
                        conflicts(la.granted_mode, &la.policy, lb.granted_mode, &lb.policy)
                    };
                    if clash {
                        return Err(format!("granted locks {a:#x} and {b:#x} conflict"));
                    }
                }
            }
            for c in &r.waiting {
                if self.locks.get(c).is_none_or(Lock::is_granted) {
                    return Err(format!("waiting lock {c:#x} missing or granted"));
                }
            }
        }
        for l in self.locks.values() {
            let listed = self.resources.get(&l.res).is_some_and(|r| {
                if l.is_granted() {
                    r.granted.contains(&l.cookie)
                } else {
                    r.waiting.contains(&l.cookie)
                }
            });
            if !listed {
                return Err(format!("lock {:#x} on no list of its resource", l.cookie));
            }
        }
        // Every lock is indexed by its client handle, but granted FLOCK locks.
        let indexed = self
            .locks
            .values()
            .filter(|l| !(l.is_granted() && l.policy.lock_type() == lock_type::FLOCK))
            .count();
        if self.by_remote.len() != indexed
            || self.by_remote.values().any(|c| !self.locks.contains_key(c))
        {
            return Err("remote index out of step".into());
        }
        if self.flock_blocker.keys().any(|c| self.locks.get(c).is_none_or(Lock::is_granted)) {
            return Err("deadlock edge of a lock not waiting".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldlm::policy::EOF;
    use proto::fid::LuFid;
    use proto::ldlm::mode::*;

    fn res() -> LdlmResId {
        LuFid::new(0x2_0000_0400, 1, 0).res_id()
    }
    fn ibits(e: u64, remote: u64, m: u32, bits: u64) -> EnqueueReq {
        EnqueueReq {
            export: ExportId(e),
            remote,
            res: res(),
            mode: m,
            policy: LockPolicy::Ibits { bits },
            flags: 0,
        }
    }
    fn ext(e: u64, remote: u64, m: u32, s: u64, end: u64) -> EnqueueReq {
        EnqueueReq {
            export: ExportId(e),
            remote,
            res: res(),
            mode: m,
            policy: LockPolicy::Extent { start: s, end, gid: 0 },
            flags: 0,
        }
    }

    #[test]
    fn conflict_sends_blocking_ast_and_cancel_grants() {
        let mut ns = Namespace::new("mdt", 1, NsLimits::default());
        let mut out = Vec::new();
        let a = ns.enqueue(ibits(1, 10, PR, 0x3), 0, &mut out).unwrap();
        let Enqueued::Granted(a) = a else { panic!() };
        assert!(out.is_empty());
        // A different bit is compatible.
        assert!(matches!(
            ns.enqueue(ibits(2, 20, EX, 0x4), 1, &mut out).unwrap(),
            Enqueued::Granted(_)
        ));
        // An overlapping EX waits and the holder gets a blocking AST once.
        let Enqueued::Waiting(b) = ns.enqueue(ibits(2, 21, EX, 0x1), 2, &mut out).unwrap() else {
            panic!()
        };
        assert!(matches!(&out[..], [Ast::Blocking(l)] if l.cookie == a));
        out.clear();
        assert!(matches!(
            ns.enqueue(ibits(3, 30, EX, 0x2), 3, &mut out).unwrap(),
            Enqueued::Waiting(_)
        ));
        assert!(out.is_empty(), "no second AST for the same lock");
        ns.check_invariants().unwrap();
        // The holder cancels: the first waiter is granted with a completion AST.
        ns.cancel(a, Some(ExportId(1)), 4, &mut out).unwrap();
        assert!(out.iter().any(|x| matches!(x, Ast::Completion(l) if l.cookie == b)));
        ns.check_invariants().unwrap();
        // Another export cannot cancel someone else's lock.
        assert_eq!(ns.cancel(b, Some(ExportId(9)), 5, &mut out), Err(LdlmError::NoSuchLock));
    }

    #[test]
    fn nowait_and_resend() {
        let mut ns = Namespace::new("mdt", 0, NsLimits::default());
        let mut out = Vec::new();
        let Enqueued::Granted(a) = ns.enqueue(ibits(1, 10, EX, 1), 0, &mut out).unwrap() else {
            panic!()
        };
        let mut r = ibits(2, 20, EX, 1);
        r.flags = flags::BLOCK_NOWAIT;
        assert_eq!(ns.enqueue(r, 1, &mut out), Err(LdlmError::WouldBlock));
        assert_eq!(
            ns.enqueue(ibits(1, 10, EX, 1), 2, &mut out),
            Ok(Enqueued::Granted(a)),
            "resend"
        );
        assert_eq!(ns.lock_count(), 1);
    }

    #[test]
    fn many_writers_on_disjoint_extents() {
        let mut ns = Namespace::new("ost", 0, NsLimits::default());
        let mut out = Vec::new();
        let mb = 1u64 << 20;
        // The first writer grows to the whole object; the second must take it back first.
        let Enqueued::Granted(a) = ns.enqueue(ext(1, 1, PW, 0, mb - 1), 0, &mut out).unwrap()
        else {
            panic!()
        };
        assert_eq!(ns.lock(a).unwrap().policy, LockPolicy::Extent { start: 0, end: EOF, gid: 0 });
        let Enqueued::Waiting(b) = ns.enqueue(ext(2, 2, PW, mb, 2 * mb - 1), 1, &mut out).unwrap()
        else {
            panic!()
        };
        assert!(matches!(&out[..], [Ast::Blocking(l)] if l.cookie == a));
        out.clear();
        ns.cancel(a, None, 2, &mut out).unwrap();
        // b is granted and grows over the whole (now free) object.
        assert!(ns.lock(b).unwrap().is_granted());
        // Client 1 comes back for its first megabyte: it waits for b, which is asked back.
        out.clear();
        let Enqueued::Waiting(c) = ns.enqueue(ext(1, 3, PW, 0, mb - 1), 3, &mut out).unwrap()
        else {
            panic!()
        };
        ns.cancel(b, None, 4, &mut out).unwrap();
        assert!(ns.lock(c).unwrap().is_granted());
        // Writers that ask not to grow their extents all hold disjoint ranges at once.
        let mut ns = Namespace::new("ost", 0, NsLimits::default());
        for i in 0..8u64 {
            let mut r = ext(i, i, PW, i * mb, (i + 1) * mb - 1);
            r.flags = flags::NO_EXPANSION;
            assert!(
                matches!(ns.enqueue(r, i, &mut out).unwrap(), Enqueued::Granted(_)),
                "writer {i}"
            );
        }
        assert_eq!(ns.lock_count(), 8);
        ns.check_invariants().unwrap();
    }

    #[test]
    fn eviction_of_unresponsive_holder() {
        let mut ns =
            Namespace::new("mdt", 0, NsLimits { ast_timeout_ms: 1000, ..NsLimits::default() });
        let mut out = Vec::new();
        ns.enqueue(ibits(1, 1, EX, 1), 0, &mut out).unwrap();
        ns.enqueue(ibits(2, 2, EX, 1), 10, &mut out).unwrap();
        assert!(ns.overdue(500).is_empty());
        assert_eq!(ns.overdue(2000), vec![ExportId(1)]);
        out.clear();
        assert_eq!(ns.cancel_export(ExportId(1), 2000, &mut out), 1);
        assert!(matches!(&out[..], [Ast::Completion(l)] if l.export == ExportId(2)));
        ns.check_invariants().unwrap();
    }

    #[test]
    fn lru_size_revokes_oldest() {
        let mut ns =
            Namespace::new("mdt", 0, NsLimits { lru_size: 4, hard_limit: 6, ast_timeout_ms: 1000 });
        let mut out = Vec::new();
        for i in 0..5u64 {
            let r = EnqueueReq {
                res: LuFid::new(0x2_0000_0400, i as u32 + 1, 0).res_id(),
                ..ibits(1, i, PR, 1)
            };
            ns.enqueue(r, i, &mut out).unwrap();
        }
        assert!(matches!(&out[..], [Ast::Blocking(l)] if l.remote == 0), "{out:?}");
        let r =
            EnqueueReq { res: LuFid::new(0x2_0000_0400, 99, 0).res_id(), ..ibits(1, 99, PR, 1) };
        ns.enqueue(r.clone(), 9, &mut out).unwrap();
        let r2 = EnqueueReq { remote: 100, ..r };
        assert_eq!(ns.enqueue(r2, 10, &mut out), Err(LdlmError::TooManyLocks));
    }

    /// Random operations never break the invariants (no conflicting grants; queues and
    /// indexes agree), and every waiter is eventually granted once holders cancel.
    #[test]
    fn random_operations_keep_invariants() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        for seed in 0..50u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut ns = Namespace::new("ost", 0, NsLimits::default());
            let mut out = Vec::new();
            let mut remote = 0;
            for step in 0..400u64 {
                if rng.random_bool(0.6) {
                    remote += 1;
                    let m = [PR, PW, CR, CW, EX][rng.random_range(0..5)];
                    let s = rng.random_range(0..16u64) * 4096;
                    let r = if rng.random_bool(0.5) {
                        ext(
                            rng.random_range(0..4),
                            remote,
                            m,
                            s,
                            s + rng.random_range(1..4u64) * 4096 - 1,
                        )
                    } else {
                        ibits(rng.random_range(0..4), remote, m, rng.random_range(1..8))
                    };
                    let r = EnqueueReq {
                        res: LuFid::new(
                            0x2_0000_0400,
                            u32::from(rng.random_bool(0.5)) + 1,
                            u32::from(matches!(r.policy, LockPolicy::Ibits { .. })),
                        )
                        .res_id(),
                        ..r
                    };
                    let _ = ns.enqueue(r, step, &mut out);
                } else if let Some(c) =
                    ns.locks.keys().copied().nth(rng.random_range(0..ns.lock_count().max(1)))
                {
                    ns.cancel(c, None, step, &mut out).unwrap();
                }
                ns.check_invariants().unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            }
            // Cancel every granted lock repeatedly: all waiters drain.
            while let Some(c) = ns.locks.values().find(|l| l.is_granted()).map(|l| l.cookie) {
                ns.cancel(c, None, 1000, &mut out).unwrap();
            }
            assert_eq!(ns.lock_count(), 0, "seed {seed}: waiters left behind");
        }
    }
}

//! The client's side of the LDLM: the locks it holds, which target each came from, and the
//! caches each protects (dropped when the lock goes: a blocking callback, a cancel, the LRU).

use proto::fid::LdlmResId;
use proto::ldlm::Policy;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

/// Which import a lock belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tgt {
    /// The MGS (config locks).
    Mgc,
    /// An MDT.
    Mdc(u32),
    /// An OST.
    Osc(u32),
}

/// A lock the client holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLock {
    /// Our cookie.
    pub handle: u64,
    /// The server's cookie.
    pub remote: u64,
    /// Where it came from.
    pub target: Tgt,
    /// The resource.
    pub res: LdlmResId,
    /// Granted mode.
    pub mode: u32,
    /// Granted policy.
    pub policy: Policy,
    /// Last use (for the LRU).
    pub last_used: Instant,
    /// A blocking callback asked for it back.
    pub cancelling: bool,
}

/// What callbacks said about an enqueue still in flight.
#[derive(Debug, Default, Clone)]
struct Pending {
    /// The mode a completion AST granted.
    granted: Option<u32>,
    /// The LVB the completion AST carried.
    lvb: Option<Vec<u8>>,
    /// The policy the completion AST granted (an extent grows when it is granted).
    policy: Option<Policy>,
    /// A blocking AST came: give the lock back as soon as the enqueue is done with it.
    blocked: bool,
}

/// A grant that came by completion AST.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Granted mode.
    pub mode: u32,
    /// The LVB it carried (`DLM_LVB`), if any.
    pub lvb: Option<Vec<u8>>,
    /// The granted policy it carried: a waiting extent lock is grown when it is granted, so
    /// this can be wider than the enqueue reply's (`ldlm_handle_cp_callback` takes it).
    pub policy: Option<Policy>,
}

/// The lock table.
#[derive(Debug)]
pub struct ClientLdlm {
    locks: RefCell<HashMap<u64, ClientLock>>,
    /// Enqueues in flight, by our cookie: what callbacks said about them before the lock
    /// entered the table (a completion AST may come before the enqueue's reply, and a
    /// blocking AST right after the grant).
    pending: RefCell<HashMap<u64, Pending>>,
    next: Cell<u64>,
    /// Most locks kept before the least recently used are given back
    /// (`ldlm.namespaces.*.lru_size`).
    pub lru_size: Cell<usize>,
    /// Locks an operation is using (Lustre's reader/writer references): a cancel waits until
    /// they are let go, so what the operation learnt or cached under the lock is written back
    /// before the lock goes.
    users: RefCell<HashMap<u64, u32>>,
}

/// A use of a lock, let go on drop (however the operation ends).
#[derive(Debug)]
pub struct LockUse<'a> {
    ldlm: &'a ClientLdlm,
    handle: u64,
}

impl Drop for LockUse<'_> {
    fn drop(&mut self) {
        let mut u = self.ldlm.users.borrow_mut();
        if let Some(n) = u.get_mut(&self.handle) {
            *n -= 1;
            if *n == 0 {
                u.remove(&self.handle);
            }
        }
    }
}

impl ClientLdlm {
    /// An empty table; cookies start from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> ClientLdlm {
        ClientLdlm {
            locks: RefCell::new(HashMap::new()),
            pending: RefCell::new(HashMap::new()),
            next: Cell::new(seed),
            lru_size: Cell::new(10_000),
            users: RefCell::new(HashMap::new()),
        }
    }
    /// Uses a lock until the returned guard drops.
    pub fn hold(&self, handle: u64) -> LockUse<'_> {
        *self.users.borrow_mut().entry(handle).or_insert(0) += 1;
        LockUse { ldlm: self, handle }
    }
    /// Whether an operation is using the lock.
    #[must_use]
    pub fn in_use(&self, handle: u64) -> bool {
        self.users.borrow().contains_key(&handle)
    }
    /// A new cookie for a lock about to be enqueued.
    pub fn new_handle(&self) -> u64 {
        let h = self.next.get().wrapping_add(1);
        self.next.set(h);
        h
    }
    /// Notes an enqueue in flight: its grant may come by completion AST, and callbacks may
    /// name it before its reply is processed.
    pub fn expect_completion(&self, handle: u64) {
        self.pending.borrow_mut().insert(handle, Pending::default());
    }
    /// A completion AST for `handle` granted `mode` and `policy` (with `lvb`); false if no
    /// such enqueue or lock.
    pub fn completed(
        &self,
        handle: u64,
        mode: u32,
        policy: Option<Policy>,
        lvb: Option<Vec<u8>>,
    ) -> bool {
        if let Some(p) = self.pending.borrow_mut().get_mut(&handle) {
            p.granted = Some(mode);
            p.policy = policy;
            p.lvb = lvb;
            return true;
        }
        self.locks.borrow().contains_key(&handle)
    }
    /// Whether `handle` is an enqueue in flight.
    #[must_use]
    pub fn is_pending(&self, handle: u64) -> bool {
        self.pending.borrow().contains_key(&handle)
    }
    /// Waits for the completion AST of `handle` (`None` after `timeout`). The enqueue stays
    /// pending until [`ClientLdlm::forget_completion`].
    pub async fn wait_completion(
        &self,
        handle: u64,
        timeout: std::time::Duration,
    ) -> Option<Completion> {
        let start = Instant::now();
        loop {
            let got = self.pending.borrow().get(&handle).and_then(|p| {
                p.granted.map(|mode| Completion { mode, lvb: p.lvb.clone(), policy: p.policy })
            });
            if got.is_some() {
                return got;
            }
            if start.elapsed() >= timeout || !self.is_pending(handle) {
                return None;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    /// Ends an enqueue in flight (its lock is in the table now, or it failed); true if a
    /// blocking AST asked for the lock meanwhile, so the caller gives it back.
    pub fn forget_completion(&self, handle: u64) -> bool {
        self.pending.borrow_mut().remove(&handle).is_some_and(|p| p.blocked)
    }
    /// Records a granted lock.
    pub fn insert(&self, l: ClientLock) {
        self.locks.borrow_mut().insert(l.handle, l);
    }
    /// Removes a lock (it was cancelled or is unknown to the server).
    pub fn remove(&self, handle: u64) -> Option<ClientLock> {
        self.locks.borrow_mut().remove(&handle)
    }
    /// A lock by our cookie.
    #[must_use]
    pub fn get(&self, handle: u64) -> Option<ClientLock> {
        self.locks.borrow().get(&handle).cloned()
    }
    /// Marks a lock used now.
    pub fn touch(&self, handle: u64) {
        if let Some(l) = self.locks.borrow_mut().get_mut(&handle) {
            l.last_used = Instant::now();
        }
    }
    /// Marks a lock as being given back; false if it is unknown.
    pub fn mark_cancelling(&self, handle: u64) -> bool {
        if let Some(l) = self.locks.borrow_mut().get_mut(&handle) {
            l.cancelling = true;
            return true;
        }
        // Granted, but the enqueue has not recorded it yet: it gives it back when it does.
        if let Some(p) = self.pending.borrow_mut().get_mut(&handle) {
            p.blocked = true;
            return true;
        }
        false
    }
    /// Whether a blocking AST for `handle` found it still pending (and the enqueue gives it
    /// back itself).
    #[must_use]
    pub fn blocked_while_pending(&self, handle: u64) -> bool {
        self.pending.borrow().get(&handle).is_some_and(|p| p.blocked)
    }
    /// Number of locks.
    #[must_use]
    pub fn len(&self) -> usize {
        self.locks.borrow().len()
    }
    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.locks.borrow().is_empty()
    }
    /// Locks to give back to stay under the LRU size, oldest first.
    #[must_use]
    pub fn lru_victims(&self) -> Vec<u64> {
        let locks = self.locks.borrow();
        let over = locks.len().saturating_sub(self.lru_size.get());
        if over == 0 {
            return Vec::new();
        }
        let mut v: Vec<(&Instant, u64)> = locks
            .values()
            .filter(|l| !l.cancelling && l.target != Tgt::Mgc)
            .map(|l| (&l.last_used, l.handle))
            .collect();
        v.sort();
        v.into_iter().take(over).map(|(_, h)| h).collect()
    }
    /// Every lock of a target (eviction drops them all).
    #[must_use]
    pub fn of_target(&self, t: Tgt) -> Vec<u64> {
        self.locks.borrow().values().filter(|l| l.target == t).map(|l| l.handle).collect()
    }
    /// Granted locks on a resource (to match before enqueueing).
    #[must_use]
    pub fn on_resource(&self, res: &LdlmResId) -> Vec<ClientLock> {
        self.locks.borrow().values().filter(|l| l.res == *res && !l.cancelling).cloned().collect()
    }
}

//! Lock policies and the conflict rules of each lock type.

use proto::ldlm::{LdlmExtent, LdlmFlockWire, LdlmInodebits, Policy, lock_type, modes_compatible};

/// `OBD_OBJECT_EOF`: the end of every object.
pub const EOF: u64 = u64::MAX;
/// Largest extent a PW/CW lock grows to on a contended resource (`LDLM_MAX_GROWN_EXTENT`).
pub const MAX_GROWN_EXTENT: u64 = 32 << 20;

/// What part of a resource a lock covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockPolicy {
    /// The whole resource (PLAIN locks).
    Plain,
    /// A byte range, inclusive (EXTENT locks).
    Extent {
        /// First byte.
        start: u64,
        /// Last byte ([`EOF`] for the end of the object).
        end: u64,
        /// Group id (GROUP locks).
        gid: u64,
    },
    /// Inode bits (IBITS locks).
    Ibits {
        /// Bits the lock covers.
        bits: u64,
    },
    /// A POSIX/BSD byte range lock (FLOCK).
    Flock {
        /// First byte.
        start: u64,
        /// Last byte.
        end: u64,
        /// Lock owner.
        owner: u64,
        /// Owner's pid.
        pid: u32,
    },
}

impl LockPolicy {
    /// The policy of a wire lock descriptor.
    #[must_use]
    pub fn from_wire(p: &Policy) -> LockPolicy {
        match p {
            Policy::Plain => LockPolicy::Plain,
            Policy::Extent(e) => {
                LockPolicy::Extent { start: e.start.get(), end: e.end.get(), gid: e.gid.get() }
            }
            Policy::Ibits(i) => LockPolicy::Ibits { bits: i.bits.get() },
            Policy::Flock(f) => LockPolicy::Flock {
                start: f.lfw_start.get(),
                end: f.lfw_end.get(),
                owner: f.lfw_owner.get(),
                pid: f.lfw_pid.get(),
            },
        }
    }

    /// The wire form.
    #[must_use]
    pub fn to_wire(&self) -> Policy {
        match *self {
            LockPolicy::Plain => Policy::Plain,
            LockPolicy::Extent { start, end, gid } => {
                Policy::Extent(LdlmExtent { start: start.into(), end: end.into(), gid: gid.into() })
            }
            LockPolicy::Ibits { bits } => {
                Policy::Ibits(LdlmInodebits { bits: bits.into(), ..Default::default() })
            }
            LockPolicy::Flock { start, end, owner, pid } => Policy::Flock(LdlmFlockWire {
                lfw_start: start.into(),
                lfw_end: end.into(),
                lfw_owner: owner.into(),
                lfw_padding: 0.into(),
                lfw_pid: pid.into(),
            }),
        }
    }

    /// The lock type this policy belongs to.
    #[must_use]
    pub fn lock_type(&self) -> u32 {
        match self {
            LockPolicy::Plain => lock_type::PLAIN,
            LockPolicy::Extent { .. } => lock_type::EXTENT,
            LockPolicy::Ibits { .. } => lock_type::IBITS,
            LockPolicy::Flock { .. } => lock_type::FLOCK,
        }
    }

    /// Whether two policies of the same type cover some common part of the resource.
    #[must_use]
    pub fn overlaps(&self, other: &LockPolicy) -> bool {
        match (*self, *other) {
            (LockPolicy::Plain, LockPolicy::Plain) => true,
            (
                LockPolicy::Extent { start: a, end: b, .. },
                LockPolicy::Extent { start: c, end: d, .. },
            )
            | (
                LockPolicy::Flock { start: a, end: b, .. },
                LockPolicy::Flock { start: c, end: d, .. },
            ) => a <= d && c <= b,
            (LockPolicy::Ibits { bits: x }, LockPolicy::Ibits { bits: y }) => x & y != 0,
            _ => true,
        }
    }
}

/// Whether a lock of `mode_a`/`pol_a` and one of `mode_b`/`pol_b` on one resource conflict.
/// Group locks of the same group never conflict with each other.
#[must_use]
pub fn conflicts(mode_a: u32, pol_a: &LockPolicy, mode_b: u32, pol_b: &LockPolicy) -> bool {
    use proto::ldlm::mode::GROUP;
    if mode_a == GROUP
        && mode_b == GROUP
        && let (LockPolicy::Extent { gid: g1, .. }, LockPolicy::Extent { gid: g2, .. }) =
            (pol_a, pol_b)
    {
        return g1 != g2;
    }
    !modes_compatible(mode_a, mode_b) && pol_a.overlaps(pol_b)
}

/// Another lock on a resource as the extent policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentView {
    /// Granted mode (granted locks) or requested mode (waiting ones).
    pub mode: u32,
    /// Its extent now (granted: as granted, possibly grown; waiting: as requested).
    pub start: u64,
    /// Last byte of its extent now.
    pub end: u64,
    /// The extent its owner asked for.
    pub req_start: u64,
    /// Last byte of the extent its owner asked for.
    pub req_end: u64,
    /// Whether it belongs to the same client as the lock being granted.
    pub same_export: bool,
}

/// Lustre's interval trees, one per mode, in `lock_mode_to_index` order: the order the
/// granted pass visits them in (it matters for the contention count).
pub(crate) const TREE_ORDER: [u32; 8] = {
    use proto::ldlm::mode::{COS, CR, CW, EX, GROUP, NL, PR, PW};
    [EX, PW, PR, CW, CR, NL, GROUP, COS]
};

/// The extent a lock is granted, as `ldlm_extent_policy` computes it: the largest extent
/// containing the request that overlaps no conflicting granted lock
/// (`ldlm_extent_internal_policy_granted`), trimmed by conflicting waiting requests
/// (`ldlm_extent_internal_policy_waiting`), limited on contended resources and aligned to the
/// request (`ldlm_extent_internal_policy_fixup`). Requests for the whole object, and
/// `LDLM_FL_NO_EXPANSION` requests (only aligned), do not grow; the caller skips the server's
/// own locks, which Lustre never grows either.
#[must_use]
pub fn extent_policy(
    req_mode: u32,
    (req_start, req_end): (u64, u64),
    no_expansion: bool,
    granted: &[ExtentView],
    waiting: &[ExtentView],
) -> (u64, u64) {
    if req_start == 0 && req_end == EOF {
        return (req_start, req_end);
    }
    if no_expansion {
        return fixup(req_mode, (req_start, req_end), (req_start, req_end), 0);
    }
    // Granted locks: expand within the gaps of every incompatible mode's tree.
    let (mut lo, mut hi) = (0u64, EOF);
    let mut conflicting = 0usize;
    for tree_mode in TREE_ORDER {
        if modes_compatible(tree_mode, req_mode) {
            continue;
        }
        let tree: Vec<&ExtentView> = granted.iter().filter(|g| g.mode == tree_mode).collect();
        conflicting += tree.len();
        if conflicting > 4 {
            lo = req_start;
        }
        // interval_expand: from the request outwards to the nearest lock on each side, but
        // only on a side the limiter still leaves room on.
        let mut ext = (req_start, req_end);
        if lo < req_start {
            ext.0 = tree.iter().filter(|g| g.end < req_start).map(|g| g.end + 1).max().unwrap_or(0);
        }
        if hi > req_end {
            ext.1 =
                tree.iter().filter(|g| g.start > req_end).map(|g| g.start - 1).min().unwrap_or(EOF);
        }
        lo = lo.max(ext.0);
        hi = hi.min(ext.1);
        if lo == req_start && hi == req_end {
            break;
        }
    }
    let (lo, hi) = fixup(req_mode, (req_start, req_end), (lo, hi), conflicting);
    // Waiting requests: do not grow into what they will need.
    let mut new = (lo, hi);
    let mut conflicting = 0usize;
    for w in waiting {
        if new == (req_start, req_end) {
            return new;
        }
        if modes_compatible(w.mode, req_mode) && !w.same_export {
            continue;
        }
        conflicting += 1;
        if conflicting > 4 {
            new.0 = req_start;
        }
        if w.end < new.0 || w.start > new.1 {
            continue;
        }
        if w.req_end >= req_start && w.req_start <= req_end {
            // Both want the same bytes: one of them waits whatever we grant.
            continue;
        }
        if w.start < req_start && new.0 != req_start {
            new.0 = if w.end >= req_start { req_start } else { (w.end + 1).min(req_start) };
        }
        if w.end > req_end {
            new.1 = if w.start <= req_end {
                w.req_start.saturating_sub(1).max(req_end)
            } else {
                (w.start - 1).max(req_end)
            };
        }
    }
    fixup(req_mode, (req_start, req_end), new, conflicting)
}

/// `ldlm_extent_internal_policy_fixup`: on a contended resource a write lock grows at most
/// [`MAX_GROWN_EXTENT`]; then the grant is cut back to the request's own alignment (at least
/// a page), so no page is ever covered by two write locks.
fn fixup(
    req_mode: u32,
    (req_start, req_end): (u64, u64),
    new: (u64, u64),
    conflicting: usize,
) -> (u64, u64) {
    use proto::ldlm::mode::{CW, PW};
    let (start, mut end) = new;
    if conflicting > 32
        && (req_mode == PW || req_mode == CW)
        && req_end < req_start.saturating_add(MAX_GROWN_EXTENT)
    {
        end = end.min(req_start.saturating_add(MAX_GROWN_EXTENT));
    }
    if start == 0 && end == EOF {
        return (start, end);
    }
    let mut mask: u64 = 4096;
    let align = req_end.wrapping_add(1) | req_start;
    if align != 0 && align & (mask - 1) == 0 {
        while align & mask == 0 {
            mask <<= 1;
        }
    }
    let m = mask - 1;
    let new_start = (start.wrapping_sub(1) | m).wrapping_add(1);
    let new_end = (end.wrapping_add(1) & !m).wrapping_sub(1);
    // Alignment never cuts into the request (Lustre asserts it).
    (new_start.min(req_start), new_end.max(req_end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ldlm::mode::*;

    #[test]
    fn ibits_conflict_only_on_shared_bits() {
        let a = LockPolicy::Ibits { bits: 0x1 };
        let b = LockPolicy::Ibits { bits: 0x2 };
        assert!(!conflicts(EX, &a, EX, &b));
        assert!(conflicts(EX, &a, PR, &LockPolicy::Ibits { bits: 0x3 }));
        assert!(!conflicts(PR, &a, CR, &a));
    }

    fn g(mode: u32, start: u64, end: u64) -> ExtentView {
        ExtentView { mode, start, end, req_start: start, req_end: end, same_export: false }
    }

    #[test]
    fn extents_grow_to_neighbours() {
        let ext = |s, e| LockPolicy::Extent { start: s, end: e, gid: 0 };
        assert!(!conflicts(PW, &ext(0, 4095), PW, &ext(4096, 8191)));
        assert!(conflicts(PW, &ext(0, 4096), PW, &ext(4096, 8191)));
        let mb = 1u64 << 20;
        // Alone: the whole object.
        assert_eq!(extent_policy(PW, (mb, 2 * mb - 1), false, &[], &[]), (0, EOF));
        // Another writer holds [0, 1M): grow from 1M to EOF.
        assert_eq!(
            extent_policy(PW, (2 * mb, 3 * mb - 1), false, &[g(PW, 0, mb - 1)], &[]),
            (mb, EOF)
        );
        // Readers do not limit readers.
        assert_eq!(extent_policy(PR, (0, 4095), false, &[g(PR, 8192, 16383)], &[]), (0, EOF));
        // Writer below and above: stop at both, aligned.
        let gr = [g(PW, 0, 2 * mb - 1), g(PW, 8 * mb, 9 * mb - 1)];
        assert_eq!(extent_policy(PW, (4 * mb, 5 * mb - 1), false, &gr, &[]), (2 * mb, 8 * mb - 1));
        // NO_EXPANSION keeps the request (aligned).
        assert_eq!(extent_policy(PW, (mb, 2 * mb - 1), true, &[], &[]), (mb, 2 * mb - 1));
        // The whole object is never changed.
        assert_eq!(extent_policy(PW, (0, EOF), false, &gr, &[]), (0, EOF));
    }

    #[test]
    fn waiting_writers_keep_their_range() {
        let mb = 1u64 << 20;
        // Writer B waits for [0, 1M) while we are granted [2M, 3M): we grow up but not down
        // past what B asked for (it ends below our request).
        let w = [g(PW, 0, mb - 1)];
        assert_eq!(extent_policy(PW, (2 * mb, 3 * mb - 1), false, &[], &w), (mb, EOF));
        // A waiter above us: we stop before its request.
        let w = [g(PW, 8 * mb, 9 * mb - 1)];
        assert_eq!(extent_policy(PW, (2 * mb, 3 * mb - 1), false, &[], &w), (0, 8 * mb - 1));
        // A compatible waiter of another client does not limit us.
        let w = [g(PR, 8 * mb, 9 * mb - 1)];
        assert_eq!(extent_policy(PR, (2 * mb, 3 * mb - 1), false, &[], &w), (0, EOF));
    }

    #[test]
    fn contended_resources_do_not_grow_down_or_far() {
        let mb = 1u64 << 20;
        // Five granted writers below: the start stays at the request's.
        let gr: Vec<ExtentView> = (0..5u64).map(|i| g(PW, i * mb, (i + 1) * mb - 1)).collect();
        let (s, e) = extent_policy(PW, (10 * mb, 11 * mb - 1), false, &gr, &[]);
        assert_eq!((s, e), (10 * mb, EOF));
        // More than 32 writers: at most 32 MiB of growth past the start.
        let gr: Vec<ExtentView> = (0..40u64).map(|i| g(PW, i * mb, (i + 1) * mb - 1)).collect();
        let (s, e) = extent_policy(PW, (100 * mb, 101 * mb - 1), false, &gr, &[]);
        assert_eq!((s, e), (100 * mb, 132 * mb - 1));
    }
}

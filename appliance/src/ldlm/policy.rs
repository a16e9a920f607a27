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

/// Grows a requested extent as far as the locks in `others` allow, the way Lustre's
/// `ldlm_extent_policy` does: up to the nearest conflicting lock on each side, never past a
/// conflicting waiting request, limited on contended resources, and aligned to the request's
/// own alignment so that neighbouring clients get tidy ranges.
///
/// `others` yields `(mode, extent)` of every other granted or waiting lock on the resource.
#[must_use]
pub fn grow_extent(
    req_mode: u32,
    req_start: u64,
    req_end: u64,
    others: impl Iterator<Item = (u32, u64, u64)>,
) -> (u64, u64) {
    let (mut start, mut end) = (0u64, EOF);
    let mut conflicting = 0usize;
    for (mode, s, e) in others {
        if modes_compatible(mode, req_mode) {
            continue;
        }
        conflicting += 1;
        if conflicting > 4 {
            start = req_start;
        }
        if e < req_start {
            start = start.max(e.saturating_add(1));
        } else if s > req_end {
            end = end.min(s - 1);
        } else {
            // Overlaps the request itself: the caller handles the conflict; growth cannot
            // go past the request on the side of this lock.
            if s < req_start {
                start = req_start;
            }
            if e > req_end {
                end = req_end;
            }
        }
    }
    use proto::ldlm::mode::{CW, PW};
    if conflicting > 32
        && (req_mode == PW || req_mode == CW)
        && req_end < req_start.saturating_add(MAX_GROWN_EXTENT)
    {
        end = end.min(req_start.saturating_add(MAX_GROWN_EXTENT));
    }
    if start == 0 && end == EOF {
        return (start, end);
    }
    // Align the grant to the largest power of two (at least a page) the request is aligned to.
    let mut mask: u64 = 4096;
    let align = req_end.wrapping_add(1) | req_start;
    if align != 0 && align & (mask - 1) == 0 {
        while align & mask == 0 {
            mask <<= 1;
        }
    }
    let m = mask - 1;
    let new_start = if start == 0 { 0 } else { ((start - 1) | m).wrapping_add(1) };
    let new_end = if end == EOF { EOF } else { (end.wrapping_add(1) & !m).wrapping_sub(1) };
    // Alignment must never cut into the request.
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

    #[test]
    fn extents_grow_to_neighbours() {
        let ext = |s, e| LockPolicy::Extent { start: s, end: e, gid: 0 };
        assert!(!conflicts(PW, &ext(0, 4095), PW, &ext(4096, 8191)));
        assert!(conflicts(PW, &ext(0, 4096), PW, &ext(4096, 8191)));
        // Alone: the whole object.
        assert_eq!(grow_extent(PW, 1 << 20, (2 << 20) - 1, std::iter::empty()), (0, EOF));
        // Another writer holds [0, 1M): grow from 1M to EOF.
        assert_eq!(
            grow_extent(PW, 2 << 20, (3 << 20) - 1, [(PW, 0, (1 << 20) - 1)].into_iter()),
            (1 << 20, EOF)
        );
        // Readers do not limit readers.
        assert_eq!(grow_extent(PR, 0, 4095, [(PR, 8192, 16383)].into_iter()), (0, EOF));
        // Writer below and above: stop at both, aligned.
        let (s, e) = grow_extent(
            PW,
            4 << 20,
            (5 << 20) - 1,
            [(PW, 0, (2 << 20) - 1), (PW, 8 << 20, (9 << 20) - 1)].into_iter(),
        );
        assert_eq!((s, e), (2 << 20, (8 << 20) - 1));
    }
}

//! POSIX ACLs as Lustre carries them: the `posix_acl_xattr` format (the value of the
//! `system.posix_acl_access` and `system.posix_acl_default` xattrs, and of the `ACL` buffer of
//! getattr, intent and open replies), and the POSIX.1e algorithms run on it: the permission
//! check, the mode an ACL implies, the rewrite of a chmod, and the mix of a directory's default
//! ACL with a new object's mode.
//!
//! The format is a little-endian `u32` version (2) followed by entries of `tag: u16`,
//! `perm: u16`, `id: u32`. Lustre's MDT stores the bytes the client sent and runs the same
//! algorithms on them (`mdd_acl.c`); the kernel's rules for a valid ACL (`posix_acl_valid`)
//! decide what is accepted.
//!
//! ```
//! use proto::acl::{Caller, PosixAcl, permission};
//!
//! // Owner rw-, user 65534 r--, group ---, mask r--, other ---.
//! let acl = PosixAcl::decode(&[
//!     2, 0, 0, 0, //
//!     1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, //
//!     2, 0, 4, 0, 0xfe, 0xff, 0, 0, //
//!     4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, //
//!     0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, //
//!     0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
//! ])?;
//! acl.validate()?;
//! let nobody = Caller { fsuid: 65534, fsgid: 65534, groups: &[] };
//! let (mode, _) = acl.equiv_mode(0o100600);
//! assert_eq!(mode, 0o100640);
//! assert!(permission(mode, 0, 0, Some(&acl), &nobody, 4));
//! assert!(!permission(mode, 0, 0, Some(&acl), &nobody, 2));
//! # Ok::<(), proto::WireError>(())
//! ```

use crate::error::{Result, WireError};

/// The access ACL's xattr name.
pub const XATTR_NAME_ACL_ACCESS: &str = "system.posix_acl_access";
/// The default ACL's xattr name (directories only).
pub const XATTR_NAME_ACL_DEFAULT: &str = "system.posix_acl_default";
/// `POSIX_ACL_XATTR_VERSION`: the only version of the format.
pub const POSIX_ACL_XATTR_VERSION: u32 = 2;
/// Size of the header (`a_version`).
pub const HEADER_SIZE: usize = 4;
/// Size of one entry (`posix_acl_xattr_entry`).
pub const ENTRY_SIZE: usize = 8;
/// `LUSTRE_POSIX_ACL_MAX_ENTRIES`: the most entries a client that did not negotiate
/// `OBD_CONNECT_LARGE_ACL` takes in a reply (its ACL buffer is
/// `LUSTRE_POSIX_ACL_MAX_SIZE_OLD` bytes). Rustre does not offer large ACLs, so this is the
/// most it stores.
pub const MAX_ENTRIES: usize = 32;
/// `LUSTRE_POSIX_ACL_MAX_SIZE_OLD`.
pub const MAX_SIZE: usize = HEADER_SIZE + MAX_ENTRIES * ENTRY_SIZE;
/// `ACL_UNDEFINED_ID`: the id of entries that name no one.
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// Entry tags (`e_tag`).
pub mod tag {
    /// The owner (`ACL_USER_OBJ`).
    pub const USER_OBJ: u16 = 0x01;
    /// A named user (`ACL_USER`).
    pub const USER: u16 = 0x02;
    /// The owning group (`ACL_GROUP_OBJ`).
    pub const GROUP_OBJ: u16 = 0x04;
    /// A named group (`ACL_GROUP`).
    pub const GROUP: u16 = 0x08;
    /// The most any group-class entry grants (`ACL_MASK`).
    pub const MASK: u16 = 0x10;
    /// Everyone else (`ACL_OTHER`).
    pub const OTHER: u16 = 0x20;
}

/// Permission bits of an entry (`ACL_READ` and so on; the same values as `MAY_*` and the
/// `S_IRWXO` bits).
pub mod perm {
    /// Read.
    pub const READ: u16 = 4;
    /// Write.
    pub const WRITE: u16 = 2;
    /// Execute or search.
    pub const EXECUTE: u16 = 1;
}

/// One entry (`posix_acl_xattr_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    /// `e_tag`.
    pub tag: u16,
    /// `e_perm`.
    pub perm: u16,
    /// `e_id`: a uid or gid for named entries, [`ACL_UNDEFINED_ID`] for the others.
    pub id: u32,
}

impl AclEntry {
    fn new(tag: u16, perm: u32) -> AclEntry {
        AclEntry { tag, perm: u16::try_from(perm & 7).unwrap_or(0), id: ACL_UNDEFINED_ID }
    }
}

/// An ACL, entries in their stored order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PosixAcl {
    /// The entries.
    pub entries: Vec<AclEntry>,
}

/// Who asks: the credentials a request carries.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// fsuid.
    pub fsuid: u32,
    /// fsgid.
    pub fsgid: u32,
    /// Supplementary groups the request names.
    pub groups: &'a [u32],
}

impl Caller<'_> {
    /// `lustre_in_group_p`: the fsgid or one of the supplementary groups.
    #[must_use]
    pub fn in_group(&self, g: u32) -> bool {
        self.fsgid == g || self.groups.contains(&g)
    }
}

const WHAT: &str = "posix_acl_xattr";

impl PosixAcl {
    /// Reads the xattr format: the version and whole entries (at most [`MAX_ENTRIES`]). The
    /// entries are not checked; [`PosixAcl::validate`] does that. Zero entries is valid and
    /// means "no ACL" (a set of it removes the ACL).
    pub fn decode(b: &[u8]) -> Result<PosixAcl> {
        let (head, rest) = b.split_first_chunk::<HEADER_SIZE>().ok_or(WireError::Truncated {
            what: WHAT,
            need: HEADER_SIZE,
            have: b.len(),
        })?;
        let version = u32::from_le_bytes(*head);
        if version != POSIX_ACL_XATTR_VERSION {
            return Err(WireError::BadVersion { what: WHAT, got: version });
        }
        if !rest.len().is_multiple_of(ENTRY_SIZE) {
            return Err(WireError::Misaligned { what: WHAT, value: rest.len(), align: ENTRY_SIZE });
        }
        let n = rest.len() / ENTRY_SIZE;
        if n > MAX_ENTRIES {
            return Err(WireError::Oversize { what: WHAT, len: n, max: MAX_ENTRIES });
        }
        let entries = rest
            .chunks_exact(ENTRY_SIZE)
            .filter_map(|e| {
                let (t, r) = e.split_first_chunk::<2>()?;
                let (p, r) = r.split_first_chunk::<2>()?;
                let (i, _) = r.split_first_chunk::<4>()?;
                Some(AclEntry {
                    tag: u16::from_le_bytes(*t),
                    perm: u16::from_le_bytes(*p),
                    id: u32::from_le_bytes(*i),
                })
            })
            .collect();
        Ok(PosixAcl { entries })
    }

    /// Reads and validates: what an MDT accepts in a setxattr.
    pub fn parse(b: &[u8]) -> Result<PosixAcl> {
        let a = PosixAcl::decode(b)?;
        if !a.is_empty() {
            a.validate()?;
        }
        Ok(a)
    }

    /// The xattr bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_SIZE + self.entries.len() * ENTRY_SIZE);
        v.extend_from_slice(&POSIX_ACL_XATTR_VERSION.to_le_bytes());
        for e in &self.entries {
            v.extend_from_slice(&e.tag.to_le_bytes());
            v.extend_from_slice(&e.perm.to_le_bytes());
            v.extend_from_slice(&e.id.to_le_bytes());
        }
        v
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The minimal ACL equivalent to a mode (owner, owning group, other).
    #[must_use]
    pub fn from_mode(mode: u32) -> PosixAcl {
        PosixAcl {
            entries: vec![
                AclEntry::new(tag::USER_OBJ, mode >> 6),
                AclEntry::new(tag::GROUP_OBJ, mode >> 3),
                AclEntry::new(tag::OTHER, mode),
            ],
        }
    }

    /// The kernel's `posix_acl_valid`, and libacl's order: one owner entry, named users
    /// sorted by uid without repeats, one owning-group entry, named groups sorted by gid, a
    /// mask (required when there are named entries), one other entry, in that order; only
    /// rwx permission bits; named entries name an id.
    pub fn validate(&self) -> Result<()> {
        let bad = |detail| Err(WireError::Inconsistent { what: WHAT, detail });
        // Which tags may come next.
        #[derive(PartialEq)]
        enum State {
            Owner,
            Users,
            Groups,
            Other,
            Done,
        }
        let mut state = State::Owner;
        let mut named = false;
        let mut last_id: Option<u32> = None;
        for e in &self.entries {
            if e.perm & !7 != 0 {
                return Err(WireError::BadValue { what: WHAT, got: u64::from(e.perm) });
            }
            match e.tag {
                tag::USER_OBJ if state == State::Owner => state = State::Users,
                tag::USER | tag::GROUP => {
                    let want = if e.tag == tag::USER { State::Users } else { State::Groups };
                    if state != want {
                        return bad("named entry out of order");
                    }
                    if e.id == ACL_UNDEFINED_ID {
                        return bad("named entry without an id");
                    }
                    if last_id.is_some_and(|l| e.id <= l) {
                        return bad("named entries not sorted or repeated");
                    }
                    last_id = Some(e.id);
                    named = true;
                }
                tag::GROUP_OBJ if state == State::Users => {
                    state = State::Groups;
                    last_id = None;
                }
                tag::MASK if state == State::Groups => state = State::Other,
                tag::OTHER if state == State::Other || (state == State::Groups && !named) => {
                    state = State::Done;
                }
                tag::USER_OBJ | tag::GROUP_OBJ | tag::MASK | tag::OTHER => {
                    return bad("entry out of order or repeated");
                }
                t => return Err(WireError::BadValue { what: WHAT, got: u64::from(t) }),
            }
        }
        if state == State::Done { Ok(()) } else { bad("owner, group or other entry missing") }
    }

    fn find(&self, t: u16) -> Option<&AclEntry> {
        self.entries.iter().find(|e| e.tag == t)
    }

    /// `posix_acl_equiv_mode`: the mode with its rwx bits taken from the ACL (the group bits
    /// from the mask when there is one), and whether the ACL says no more than that mode.
    #[must_use]
    pub fn equiv_mode(&self, mode: u32) -> (u32, bool) {
        let mut bits = 0u32;
        let mut equiv = true;
        let mut mask = None;
        for e in &self.entries {
            let p = u32::from(e.perm & 7);
            match e.tag {
                tag::USER_OBJ => bits |= p << 6,
                tag::GROUP_OBJ => bits |= p << 3,
                tag::OTHER => bits |= p,
                tag::MASK => {
                    mask = Some(p);
                    equiv = false;
                }
                _ => equiv = false,
            }
        }
        if let Some(m) = mask {
            bits = (bits & !0o070) | (m << 3);
        }
        ((mode & !0o777) | bits, equiv)
    }

    /// `posix_acl_chmod`: after a chmod, the owner, other and mask (or owning-group, when
    /// there is no mask) entries take the new mode's bits.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.find(tag::MASK).is_some();
        for e in &mut self.entries {
            match e.tag {
                tag::USER_OBJ => e.perm = perm_of(mode >> 6),
                tag::OTHER => e.perm = perm_of(mode),
                tag::MASK => e.perm = perm_of(mode >> 3),
                tag::GROUP_OBJ if !has_mask => e.perm = perm_of(mode >> 3),
                _ => {}
            }
        }
    }

    /// `posix_acl_create_masq`: a new object's ACL from its parent's default ACL (`self`,
    /// rewritten in place) and the mode it was created with. Each class's entry is cut down
    /// to the mode's bits and the mode to the entry's. Returns the resulting mode and whether
    /// the ACL says no more than it.
    pub fn create_masq(&mut self, mode: u32) -> (u32, bool) {
        let mut m = mode;
        let mut equiv = true;
        let has_mask = self.find(tag::MASK).is_some();
        for e in &mut self.entries {
            let p = u32::from(e.perm);
            match e.tag {
                tag::USER_OBJ => {
                    let p = p & ((m >> 6) | !7);
                    e.perm = perm_of(p);
                    m &= (p << 6) | !0o700;
                }
                tag::OTHER => {
                    let p = p & (m | !7);
                    e.perm = perm_of(p);
                    m &= p | !0o007;
                }
                tag::MASK => {
                    equiv = false;
                    let p = p & ((m >> 3) | !7);
                    e.perm = perm_of(p);
                    m &= (p << 3) | !0o070;
                }
                tag::GROUP_OBJ if !has_mask => {
                    let p = p & ((m >> 3) | !7);
                    e.perm = perm_of(p);
                    m &= (p << 3) | !0o070;
                }
                tag::USER | tag::GROUP => equiv = false,
                _ => {}
            }
        }
        (m, equiv)
    }

    /// `posix_acl_permission`: the owner entry for the owner; the caller's named user entry,
    /// masked; else the first group entry (owning or named) of the caller's that grants
    /// `want`, masked; else, when no group entry matched at all, other. `want` is `MAY_*`
    /// bits.
    #[must_use]
    pub fn permits(&self, file_uid: u32, file_gid: u32, c: &Caller<'_>, want: u32) -> bool {
        let want = perm_of(want);
        let mask = self.find(tag::MASK).map_or(7, |e| e.perm);
        let grants = |p: u16| p & want == want;
        let mut group_matched = false;
        for e in &self.entries {
            match e.tag {
                tag::USER_OBJ if file_uid == c.fsuid => return grants(e.perm),
                tag::USER if e.id == c.fsuid => return grants(e.perm & mask),
                tag::GROUP_OBJ | tag::GROUP => {
                    let g = if e.tag == tag::GROUP_OBJ { file_gid } else { e.id };
                    if c.in_group(g) {
                        group_matched = true;
                        // The first group entry that grants it decides, masked.
                        if grants(e.perm) {
                            return grants(e.perm & mask);
                        }
                    }
                }
                tag::OTHER => return !group_matched && grants(e.perm),
                _ => {}
            }
        }
        false
    }
}

fn perm_of(bits: u32) -> u16 {
    u16::try_from(bits & 7).unwrap_or(0)
}

/// The whole POSIX permission check of `want` (`MAY_*` bits) on an object with `mode`, owner
/// `uid`, group `gid` and access ACL `acl`, as `__mdd_permission_internal` runs it: root
/// (CAP_DAC_OVERRIDE) may do anything but execute what no one may execute; the owner gets the
/// owner bits; others go through the ACL when there is one and the mode has group bits (the
/// mask); without it, the group or other bits.
#[must_use]
pub fn permission(
    mode: u32,
    uid: u32,
    gid: u32,
    acl: Option<&PosixAcl>,
    c: &Caller<'_>,
    want: u32,
) -> bool {
    const S_IFMT: u32 = 0o170000;
    const S_IFDIR: u32 = 0o040000;
    let want = want & 7;
    if c.fsuid == 0 {
        return want & 1 == 0 || mode & S_IFMT == S_IFDIR || mode & 0o111 != 0;
    }
    let bits = if uid == c.fsuid {
        mode >> 6
    } else {
        if mode & 0o070 != 0
            && let Some(a) = acl.filter(|a| !a.is_empty())
        {
            return a.permits(uid, gid, c, want);
        }
        if c.in_group(gid) { mode >> 3 } else { mode }
    };
    bits & want == want
}

/// Whether the caller's check of an object could depend on its access ACL (so the ACL need
/// be fetched at all): not root, not the owner, and the mode has group bits.
#[must_use]
pub fn acl_matters(mode: u32, uid: u32, c: &Caller<'_>) -> bool {
    c.fsuid != 0 && c.fsuid != uid && mode & 0o070 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: u16, p: u16, id: u32) -> AclEntry {
        AclEntry { tag: t, perm: p, id }
    }
    const U: u32 = ACL_UNDEFINED_ID;

    fn acl(v: &[(u16, u16, u32)]) -> PosixAcl {
        PosixAcl { entries: v.iter().map(|&(t, p, i)| e(t, p, i)).collect() }
    }

    /// `user::rw- user:1000:rwx group::r-- group:50:-wx mask::r-x other::---`
    fn sample() -> PosixAcl {
        acl(&[
            (tag::USER_OBJ, 6, U),
            (tag::USER, 7, 1000),
            (tag::GROUP_OBJ, 4, U),
            (tag::GROUP, 3, 50),
            (tag::MASK, 5, U),
            (tag::OTHER, 0, U),
        ])
    }

    #[test]
    fn golden_bytes() {
        // What `setfacl -m u:1000:rwx,g:50:wx,m::rx,o::-` leaves in the xattr of a 0640 file
        // on tmpfs (read back with os.getxattr).
        let b = sample().encode();
        assert_eq!(
            b,
            [
                2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 2, 0, 7, 0, 0xe8, 3, 0, 0, 4, 0, 4, 0,
                255, 255, 255, 255, 8, 0, 3, 0, 50, 0, 0, 0, 0x10, 0, 5, 0, 255, 255, 255, 255,
                0x20, 0, 0, 0, 255, 255, 255, 255
            ]
        );
        assert_eq!(PosixAcl::parse(&b).unwrap(), sample());
    }

    #[test]
    fn malformed_blobs_are_refused() {
        assert!(matches!(PosixAcl::decode(&[2, 0]), Err(WireError::Truncated { .. })));
        assert!(matches!(PosixAcl::decode(&[1, 0, 0, 0]), Err(WireError::BadVersion { .. })));
        let mut b = sample().encode();
        b.push(0);
        assert!(matches!(PosixAcl::decode(&b), Err(WireError::Misaligned { .. })));
        let big = PosixAcl { entries: vec![e(tag::USER, 7, 1); MAX_ENTRIES + 1] };
        assert!(matches!(PosixAcl::decode(&big.encode()), Err(WireError::Oversize { .. })));
        assert!(PosixAcl::parse(&2u32.to_le_bytes()).unwrap().is_empty());
        let refused = [
            // no other
            acl(&[(tag::USER_OBJ, 6, U), (tag::GROUP_OBJ, 4, U)]),
            // no owner
            acl(&[(tag::GROUP_OBJ, 4, U), (tag::OTHER, 4, U)]),
            // named user without a mask
            acl(&[
                (tag::USER_OBJ, 6, U),
                (tag::USER, 4, 7),
                (tag::GROUP_OBJ, 4, U),
                (tag::OTHER, 4, U),
            ]),
            // unsorted named users
            acl(&[
                (tag::USER_OBJ, 6, U),
                (tag::USER, 4, 9),
                (tag::USER, 4, 7),
                (tag::GROUP_OBJ, 4, U),
                (tag::MASK, 4, U),
                (tag::OTHER, 4, U),
            ]),
            // repeated named group
            acl(&[
                (tag::USER_OBJ, 6, U),
                (tag::GROUP_OBJ, 4, U),
                (tag::GROUP, 4, 7),
                (tag::GROUP, 4, 7),
                (tag::MASK, 4, U),
                (tag::OTHER, 4, U),
            ]),
            // group before user
            acl(&[(tag::GROUP_OBJ, 4, U), (tag::USER_OBJ, 6, U), (tag::OTHER, 4, U)]),
            // bad permission bits
            acl(&[(tag::USER_OBJ, 8, U), (tag::GROUP_OBJ, 4, U), (tag::OTHER, 4, U)]),
            // unknown tag
            acl(&[(tag::USER_OBJ, 6, U), (0x40, 4, U), (tag::GROUP_OBJ, 4, U), (tag::OTHER, 4, U)]),
            // named user with no id
            acl(&[
                (tag::USER_OBJ, 6, U),
                (tag::USER, 4, U),
                (tag::GROUP_OBJ, 4, U),
                (tag::MASK, 4, U),
                (tag::OTHER, 4, U),
            ]),
        ];
        for a in refused {
            assert!(PosixAcl::parse(&a.encode()).is_err(), "{a:?}");
        }
        assert!(PosixAcl::from_mode(0o640).validate().is_ok());
        // A mask without named entries is valid.
        let m = acl(&[
            (tag::USER_OBJ, 6, U),
            (tag::GROUP_OBJ, 4, U),
            (tag::MASK, 0, U),
            (tag::OTHER, 0, U),
        ]);
        assert!(m.validate().is_ok());
    }

    #[test]
    fn equivalent_mode() {
        assert_eq!(PosixAcl::from_mode(0o751).equiv_mode(0o104000), (0o104751, true));
        assert_eq!(sample().equiv_mode(0o100777), (0o100650, false));
    }

    #[test]
    fn chmod_rewrites_owner_mask_and_other() {
        let mut a = sample();
        a.chmod(0o100741);
        assert_eq!(a.equiv_mode(0).0, 0o741);
        let g = a.find(tag::GROUP_OBJ).unwrap().perm;
        assert_eq!(g, 4, "the owning group entry stays when there is a mask");
        let mut b = PosixAcl::from_mode(0o644);
        b.chmod(0o600);
        assert_eq!(b, PosixAcl::from_mode(0o600));
    }

    #[test]
    fn create_masq_cuts_both_ways() {
        let mut a = sample();
        let (m, equiv) = a.create_masq(0o100644);
        assert!(!equiv);
        // owner rw- & rw-, mask r-x & r-- -> r--, other --- & r-- -> ---.
        assert_eq!(m, 0o100640);
        assert_eq!(a.equiv_mode(0).0, 0o640);
        assert_eq!(
            a.find(tag::USER).unwrap().perm,
            7,
            "named entries are kept, the mask limits them"
        );
        let mut b = PosixAcl::from_mode(0o755);
        assert_eq!(b.create_masq(0o40777), (0o40755, true));
    }

    #[test]
    fn permission_algorithm() {
        let a = sample();
        let (mode, _) = a.equiv_mode(0o100000);
        let who = |fsuid, fsgid, groups: &'static [u32]| Caller { fsuid, fsgid, groups };
        let p = |c: &Caller<'_>, want| permission(mode, 10, 20, Some(&a), c, want);
        // Owner: owner entry (rw-).
        assert!(p(&who(10, 99, &[]), 6));
        assert!(!p(&who(10, 99, &[]), 1));
        // Named user rwx, masked by r-x.
        assert!(p(&who(1000, 99, &[]), 5));
        assert!(!p(&who(1000, 99, &[]), 2));
        // Owning group r--.
        assert!(p(&who(7, 20, &[]), 4));
        assert!(!p(&who(7, 20, &[]), 1));
        // Named group -wx masked by r-x: x only; through a supplementary group.
        assert!(p(&who(7, 99, &[50]), 1));
        assert!(!p(&who(7, 99, &[50]), 2));
        // In two groups: either entry may grant; together they do not add up.
        assert!(p(&who(7, 20, &[50]), 4));
        assert!(p(&who(7, 20, &[50]), 1));
        assert!(!p(&who(7, 20, &[50]), 5));
        // A group matched but denied: other does not apply even if it would grant.
        let mut o = a.clone();
        o.entries.last_mut().unwrap().perm = 7;
        assert!(!permission(mode, 10, 20, Some(&o), &who(7, 20, &[]), 2));
        assert!(permission(mode, 10, 20, Some(&o), &who(7, 21, &[]), 2));
        // Other ---.
        assert!(!p(&who(7, 99, &[]), 4));
        // Root: anything but execute when no one may execute.
        assert!(p(&who(0, 0, &[]), 6));
        assert!(p(&who(0, 0, &[]), 1), "the mask's x lets root execute");
        assert!(!permission(0o100640, 10, 20, Some(&a), &who(0, 0, &[]), 1));
        // No group bits in the mode (mask ---): the ACL is not consulted.
        assert!(!permission(mode & !0o070, 10, 20, Some(&a), &who(1000, 99, &[]), 4));
        // Without an ACL: plain mode bits.
        assert!(permission(0o100640, 10, 20, None, &who(7, 20, &[]), 4));
        assert!(!permission(0o100640, 10, 20, None, &who(7, 21, &[]), 4));
        assert!(acl_matters(0o640, 10, &who(7, 20, &[])));
        assert!(!acl_matters(0o640, 10, &who(10, 20, &[])));
        assert!(!acl_matters(0o604, 10, &who(7, 20, &[])));
    }
}

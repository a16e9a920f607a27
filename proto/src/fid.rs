//! Identifiers: `lu_fid`, `ost_id`, `lustre_handle`, `ldlm_res_id`, `lu_seq_range`, `obd_uuid`.

use crate::error::{Result, WireError};
use crate::wire::{U32, U64, Wire, wire_plain};
use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Reserved FID sequences (`enum fid_seq`).
pub mod seq {
    /// Legacy OST objects of MDT0 (`ost_id` with seq 0).
    pub const OST_MDT0: u64 = 0;
    /// Legacy llog objects.
    pub const LLOG: u64 = 1;
    /// Echo client objects.
    pub const ECHO: u64 = 2;
    /// Named llog objects.
    pub const LLOG_NAME: u64 = 10;
    /// First IGIF sequence (inode/generation FIDs of 1.8 file systems).
    pub const IGIF: u64 = 12;
    /// Last IGIF sequence.
    pub const IGIF_MAX: u64 = 0xffff_ffff;
    /// First IDIF sequence (OST objects named by index and object id).
    pub const IDIF: u64 = 0x1_0000_0000;
    /// Last IDIF sequence.
    pub const IDIF_MAX: u64 = 0x1_ffff_ffff;
    /// First sequence of the FID space proper.
    pub const START: u64 = 0x2_0000_0000;
    /// Local files of a target.
    pub const LOCAL_FILE: u64 = 0x2_0000_0001;
    /// `.lustre`.
    pub const DOT_LUSTRE: u64 = 0x2_0000_0002;
    /// Named local objects.
    pub const LOCAL_NAME: u64 = 0x2_0000_0003;
    /// Special objects.
    pub const SPECIAL: u64 = 0x2_0000_0004;
    /// Quota.
    pub const QUOTA: u64 = 0x2_0000_0005;
    /// Global quota.
    pub const QUOTA_GLB: u64 = 0x2_0000_0006;
    /// The root directory's sequence.
    pub const ROOT: u64 = 0x2_0000_0007;
    /// Layout objects.
    pub const LAYOUT_RBTREE: u64 = 0x2_0000_0008;
    /// Where normal allocation starts.
    pub const NORMAL: u64 = 0x2_0000_0400;
    /// The "default" sequence of a layout template (`FID_SEQ_LOV_DEFAULT`).
    pub const LOV_DEFAULT: u64 = u64::MAX;
}

/// Object ids of the IDIF (legacy MDT0) namespace are below this (`IDIF_MAX_OID`, 2^48).
pub const IDIF_MAX_OID: u64 = 1 << 48;

/// Oids a client uses from one metadata sequence (`LUSTRE_METADATA_SEQ_MAX_WIDTH`).
pub const SEQ_META_WIDTH: u64 = 0x20000;
/// Oids an OST uses from one data sequence (`LUSTRE_DATA_SEQ_MAX_WIDTH`).
pub const SEQ_DATA_WIDTH: u64 = 0x1_0000_0000 - 1;

/// `struct lu_fid` (16 B): a Lustre file identifier.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LuFid {
    /// Sequence.
    pub f_seq: U64,
    /// Object id within the sequence.
    pub f_oid: U32,
    /// Version (0 for files; stripe index for striped directories).
    pub f_ver: U32,
}
wire_plain!(LuFid => "lu_fid");

impl LuFid {
    /// The root directory `[0x200000007:0x1:0x0]`.
    pub const ROOT: LuFid = LuFid::new(seq::ROOT, 1, 0);
    /// `.lustre` `[0x200000002:0x1:0x0]`.
    pub const DOT_LUSTRE: LuFid = LuFid::new(seq::DOT_LUSTRE, 1, 0);
    /// The zero FID (no object).
    pub const ZERO: LuFid = LuFid::new(0, 0, 0);

    /// A FID from its parts.
    #[must_use]
    pub const fn new(seq: u64, oid: u32, ver: u32) -> LuFid {
        LuFid { f_seq: U64::new(seq), f_oid: U32::new(oid), f_ver: U32::new(ver) }
    }
    /// Sequence.
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.f_seq.get()
    }
    /// Object id.
    #[must_use]
    pub fn oid(&self) -> u32 {
        self.f_oid.get()
    }
    /// Version.
    #[must_use]
    pub fn ver(&self) -> u32 {
        self.f_ver.get()
    }
    /// Whether this is the zero FID.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.seq() == 0 && self.oid() == 0
    }
    /// Whether the FID is one a client or target may name an object by: a normal FID
    /// (sequence at or above `FID_SEQ_NORMAL`, oid non-zero), the root, `.lustre`, an IDIF, an
    /// IGIF, or a reserved local sequence. `fid_is_sane()` in Lustre.
    #[must_use]
    pub fn is_sane(&self) -> bool {
        let s = self.seq();
        (s >= seq::NORMAL && self.oid() != 0)
            || (seq::START..seq::NORMAL).contains(&s)
            || (seq::IGIF..=seq::IGIF_MAX).contains(&s)
            || (seq::IDIF..=seq::IDIF_MAX).contains(&s)
            || s == seq::LLOG
            || s == seq::LLOG_NAME
    }
    /// The LDLM resource name of the object: `[seq, oid | ver << 32, 0, 0]`.
    #[must_use]
    pub fn res_id(&self) -> LdlmResId {
        LdlmResId::new([self.seq(), u64::from(self.oid()) | (u64::from(self.ver()) << 32), 0, 0])
    }
    /// The LDLM resource name of an OST object (`ost_fid_build_resid`, which clients compute
    /// as `osc_build_res_name`): IDIF objects (legacy MDT0 objects) are named by their
    /// legacy ost_id, `[object id, 0, 0, 0]`; every other object by its FID, as
    /// [`LuFid::res_id`].
    #[must_use]
    pub fn ost_res_id(&self) -> LdlmResId {
        if (seq::IDIF..=seq::IDIF_MAX).contains(&self.seq()) {
            let id = (u64::from(self.ver()) << 48)
                | ((self.seq() & 0xffff) << 32)
                | u64::from(self.oid());
            return LdlmResId::new([id, seq::OST_MDT0, 0, 0]);
        }
        self.res_id()
    }
}

impl fmt::Debug for LuFid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for LuFid {
    /// Lustre's `DFID` form: `[0x200000007:0x1:0x0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}:{:#x}:{:#x}]", self.seq(), self.oid(), self.ver())
    }
}

impl core::str::FromStr for LuFid {
    type Err = WireError;
    /// Parses `[seq:oid:ver]` (brackets optional, hex with or without `0x`).
    fn from_str(s: &str) -> Result<LuFid> {
        const WHAT: &str = "fid";
        let t = s.trim().trim_start_matches('[').trim_end_matches(']');
        let mut it = t.split(':');
        let mut next = || -> Result<u64> {
            let p =
                it.next().ok_or(WireError::BadString { what: WHAT, detail: "need seq:oid:ver" })?;
            let p = p.trim().trim_start_matches("0x");
            u64::from_str_radix(p, 16)
                .map_err(|_| WireError::BadString { what: WHAT, detail: "bad hex" })
        };
        let (seq, oid, ver) = (next()?, next()?, next()?);
        let oid = u32::try_from(oid)
            .map_err(|_| WireError::BadString { what: WHAT, detail: "oid > 32 bits" })?;
        let ver = u32::try_from(ver)
            .map_err(|_| WireError::BadString { what: WHAT, detail: "ver > 32 bits" })?;
        Ok(LuFid::new(seq, oid, ver))
    }
}

/// `struct ost_id` (16 B): a union of `{oi_id, oi_seq}` (legacy) and an `lu_fid`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct OstId {
    /// The 16 bytes of the union.
    pub oi: [u8; 16],
}
wire_plain!(OstId => "ost_id");

impl OstId {
    /// An ost_id holding a FID (the form new servers use throughout).
    #[must_use]
    pub fn from_fid(fid: LuFid) -> OstId {
        let mut oi = [0u8; 16];
        oi.copy_from_slice(fid.as_bytes());
        OstId { oi }
    }
    /// The legacy `{oi_id, oi_seq}` form.
    #[must_use]
    pub fn legacy(id: u64, seq: u64) -> OstId {
        let mut oi = [0u8; 16];
        oi[..8].copy_from_slice(&id.to_le_bytes());
        oi[8..].copy_from_slice(&seq.to_le_bytes());
        OstId { oi }
    }
    /// The union read as a FID.
    #[must_use]
    pub fn as_fid(&self) -> LuFid {
        LuFid::read_from_bytes(&self.oi).unwrap_or_default()
    }
    /// The union read as legacy `(oi_id, oi_seq)`.
    #[must_use]
    pub fn as_legacy(&self) -> (u64, u64) {
        let (a, b) = self.oi.split_at(8);
        (
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(b.try_into().unwrap_or_default()),
        )
    }
    /// The sequence the union names (`ostid_seq`): the legacy form's group 0 and the IDIF
    /// FIDs both mean MDT0's legacy objects (0).
    #[must_use]
    pub fn ostid_seq(&self) -> u64 {
        let (_, oi_seq) = self.as_legacy();
        if oi_seq == seq::OST_MDT0 {
            return seq::OST_MDT0;
        }
        if oi_seq == seq::LOV_DEFAULT {
            return seq::LOV_DEFAULT;
        }
        let f = self.as_fid();
        if (seq::IDIF..=seq::IDIF_MAX).contains(&f.seq()) {
            return seq::OST_MDT0;
        }
        f.seq()
    }
    /// The object id the union names (`ostid_id`).
    #[must_use]
    pub fn ostid_id(&self) -> u64 {
        let (oi_id, oi_seq) = self.as_legacy();
        if oi_seq == seq::OST_MDT0 {
            return oi_id & (IDIF_MAX_OID - 1);
        }
        if oi_seq == seq::LOV_DEFAULT {
            return oi_id;
        }
        let f = self.as_fid();
        if (seq::IDIF..=seq::IDIF_MAX).contains(&f.seq()) {
            return (u64::from(f.ver()) << 48) | ((f.seq() & 0xffff) << 32) | u64::from(f.oid());
        }
        u64::from(f.oid())
    }
    /// The object's FID on OST `ost_idx` exactly as Lustre's `ostid_to_fid` makes it: MDT0's
    /// legacy objects (either form) become IDIF FIDs of this OST; other FIDs pass through,
    /// but must have version 0. `None` where Lustre returns -EBADF.
    #[must_use]
    pub fn ostid_to_fid(&self, ost_idx: u32) -> Option<LuFid> {
        if ost_idx > 0xffff {
            return None;
        }
        let s = self.ostid_seq();
        if s == seq::OST_MDT0 {
            let oid = self.ostid_id();
            if oid >= IDIF_MAX_OID {
                return None;
            }
            let f_seq = seq::IDIF | (u64::from(ost_idx) << 16) | ((oid >> 32) & 0xffff);
            return Some(LuFid::new(f_seq, (oid & 0xffff_ffff) as u32, (oid >> 48) as u32));
        }
        if s == seq::LOV_DEFAULT {
            // Lustre leaves the FID untouched (and unset) for the template sequence.
            return Some(LuFid::default());
        }
        let f = self.as_fid();
        if f.ver() != 0 {
            return None;
        }
        Some(f)
    }
    /// The object's FID whichever form the union holds: legacy ids with sequence 0 (MDT0's
    /// OST objects) become IDIF FIDs of OST `ost_idx`, as `ostid_to_fid()` does.
    pub fn to_fid(&self, ost_idx: u32) -> Result<LuFid> {
        let (id, s) = self.as_legacy();
        if s == seq::OST_MDT0 {
            if id >> 48 != 0 {
                return Err(WireError::BadValue {
                    what: "ost_id (IDIF object id too large)",
                    got: id,
                });
            }
            let f_seq = seq::IDIF | (u64::from(ost_idx) << 16) | ((id >> 32) & 0xffff);
            return Ok(LuFid::new(f_seq, (id & 0xffff_ffff) as u32, 0));
        }
        Ok(self.as_fid())
    }
}

/// `struct lustre_handle` (8 B): an opaque cookie naming an export, an open file or a lock.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LustreHandle {
    /// The cookie; 0 means "none".
    pub cookie: U64,
}
wire_plain!(LustreHandle => "lustre_handle");

impl LustreHandle {
    /// A handle with this cookie.
    #[must_use]
    pub const fn new(cookie: u64) -> LustreHandle {
        LustreHandle { cookie: U64::new(cookie) }
    }
    /// The cookie.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.cookie.get()
    }
}

/// `struct ldlm_res_id` (32 B): an LDLM resource name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LdlmResId {
    /// Four words whose meaning depends on the namespace.
    pub name: [U64; 4],
}
wire_plain!(LdlmResId => "ldlm_res_id");

impl LdlmResId {
    /// A resource name from four words.
    #[must_use]
    pub fn new(name: [u64; 4]) -> LdlmResId {
        LdlmResId { name: name.map(U64::new) }
    }
    /// The four words.
    #[must_use]
    pub fn words(&self) -> [u64; 4] {
        self.name.map(|w| w.get())
    }
    /// The MGS config resource of a log: the file system name (up to its first 8 bytes,
    /// `"params"` for the params log) in word 0 and the config type in word 1.
    pub fn mgs_config(fsname: &str, config_type: u64) -> Result<LdlmResId> {
        let b = fsname.as_bytes();
        if b.is_empty() || b.len() > 8 {
            return Err(WireError::BadString {
                what: "mgs resource name",
                detail: "fsname must be 1-8 bytes",
            });
        }
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(b) {
            *d = *s;
        }
        Ok(LdlmResId::new([u64::from_le_bytes(w), config_type, 0, 0]))
    }
    /// The FID this resource names (for FID-named resources).
    #[must_use]
    pub fn fid(&self) -> LuFid {
        let [s, o, _, _] = self.words();
        LuFid::new(s, (o & 0xffff_ffff) as u32, (o >> 32) as u32)
    }
}

/// `struct lu_seq_range` (24 B): a FID sequence range `[start, end)` on a target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LuSeqRange {
    /// First sequence.
    pub lsr_start: U64,
    /// One past the last sequence.
    pub lsr_end: U64,
    /// Index of the target that owns the range.
    pub lsr_index: U32,
    /// `LU_SEQ_RANGE_MDT` (0) or `LU_SEQ_RANGE_OST` (1).
    pub lsr_flags: U32,
}

impl Wire for LuSeqRange {
    const NAME: &'static str = "lu_seq_range";
}

/// `lsr_flags` values.
pub mod seq_range_flags {
    /// An MDT range.
    pub const MDT: u32 = 0;
    /// An OST range.
    pub const OST: u32 = 1;
    /// Any.
    pub const ANY: u32 = 3;
}

/// SEQ_QUERY operations (`enum seq_op`).
pub mod seq_op {
    /// Allocate a super-sequence (controller to server).
    pub const ALLOC_SUPER: u32 = 0;
    /// Allocate a metadata sequence (client to MDT).
    pub const ALLOC_META: u32 = 1;
}

/// FLD_QUERY operations (`enum fld_op`).
pub mod fld_op {
    /// Create an entry.
    pub const CREATE: u32 = 0;
    /// Delete an entry.
    pub const DELETE: u32 = 1;
    /// Look up which target owns a sequence.
    pub const LOOKUP: u32 = 2;
    /// Read the FLDB.
    pub const READ: u32 = 3;
}

impl LuSeqRange {
    /// A range on target `index`.
    #[must_use]
    pub fn new(start: u64, end: u64, index: u32, flags: u32) -> LuSeqRange {
        LuSeqRange {
            lsr_start: start.into(),
            lsr_end: end.into(),
            lsr_index: index.into(),
            lsr_flags: flags.into(),
        }
    }
    /// Whether the range is non-empty and ordered.
    #[must_use]
    pub fn is_sane(&self) -> bool {
        self.lsr_end.get() >= self.lsr_start.get()
    }
}

/// `struct obd_uuid` (40 B): a NUL-padded UUID string.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ObdUuid {
    /// The string.
    pub uuid: [u8; 40],
}
wire_plain!(ObdUuid => "obd_uuid");

impl ObdUuid {
    /// A UUID from text (at most 39 bytes).
    pub fn new(s: &str) -> Result<ObdUuid> {
        Ok(ObdUuid { uuid: crate::wire::cstr_array("obd_uuid", s)? })
    }
    /// The text.
    pub fn as_str(&self) -> Result<&str> {
        crate::wire::cstr("obd_uuid", &self.uuid)
    }
}

const _: () = assert!(core::mem::size_of::<LuFid>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fid_text_and_res() {
        assert_eq!(LuFid::ROOT.to_string(), "[0x200000007:0x1:0x0]");
        assert_eq!(
            "[0x200000400:0x2a:0x0]".parse::<LuFid>().unwrap(),
            LuFid::new(0x2_0000_0400, 0x2a, 0)
        );
        assert!("[0x1:0x2]".parse::<LuFid>().is_err());
        assert_eq!(
            LuFid::new(0x2_0000_0400, 5, 1).res_id().words(),
            [0x2_0000_0400, (1 << 32) | 5, 0, 0]
        );
        assert_eq!(LuFid::new(0x2_0000_0400, 5, 1).res_id().fid(), LuFid::new(0x2_0000_0400, 5, 1));
        assert!(LuFid::ROOT.is_sane());
        assert!(!LuFid::ZERO.is_sane());
        assert!(!LuFid::new(seq::NORMAL, 0, 0).is_sane());
    }

    #[test]
    fn mgs_resource() {
        let r = LdlmResId::mgs_config("lustre", 0).unwrap();
        assert_eq!(r.as_bytes()[..8], *b"lustre\0\0");
        assert!(LdlmResId::mgs_config("toolongname", 0).is_err());
    }

    #[test]
    fn idif() {
        let o = OstId::legacy(0x1_0000_0005, 0);
        assert_eq!(o.to_fid(3).unwrap(), LuFid::new(0x1_0003_0001, 5, 0));
        assert_eq!(o.ostid_to_fid(3), Some(LuFid::new(0x1_0003_0001, 5, 0)));
        // The IDIF FID form of the same object names the same id and resource.
        let f = LuFid::new(0x1_0003_0001, 5, 0);
        let o2 = OstId::from_fid(f);
        assert_eq!((o2.ostid_seq(), o2.ostid_id()), (0, 0x1_0000_0005));
        assert_eq!(f.ost_res_id().words(), [0x1_0000_0005, 0, 0, 0]);
        // A normal FID: its own sequence and oid; a version makes it invalid (-EBADF).
        let n = LuFid::new(0x2_0000_0401, 7, 0);
        let on = OstId::from_fid(n);
        assert_eq!((on.ostid_seq(), on.ostid_id()), (0x2_0000_0401, 7));
        assert_eq!(on.ostid_to_fid(0), Some(n));
        assert_eq!(n.ost_res_id(), n.res_id());
        assert_eq!(OstId::from_fid(LuFid::new(0x2_0000_0401, 7, 1)).ostid_to_fid(0), None);
        // Legacy ids are masked to 48 bits, as ostid_id does.
        assert_eq!(OstId::legacy(IDIF_MAX_OID + 3, 0).ostid_id(), 3);
    }
}

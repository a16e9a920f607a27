//! File layouts: `lov_mds_md_v1`/`v3` (and the `lov_user_md` forms clients send), composite
//! layouts `lov_comp_md_v1` with their entries, and the directory layout `lmv_mds_md_v1`.

use crate::error::{Result, WireError};
use crate::fid::{LuFid, OstId};
use crate::wire::{U16, U32, U64, Wire, cstr, decode_array, u32_at, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Layout magics.
pub mod magic {
    /// `LOV_MAGIC_V1`.
    pub const V1: u32 = 0x0BD1_0BD0;
    /// `LOV_MAGIC_V3` (with a pool name).
    pub const V3: u32 = 0x0BD3_0BD0;
    /// `LOV_MAGIC_SPECIFIC` (user md naming OSTs).
    pub const SPECIFIC: u32 = 0x0BD5_0BD0;
    /// `LOV_MAGIC_COMP_V1` (PFL/FLR).
    pub const COMP_V1: u32 = 0x0BD6_0BD0;
    /// `LOV_MAGIC_FOREIGN`.
    pub const FOREIGN: u32 = 0x0BD7_0BD0;
    /// `LOV_MAGIC_SEL`.
    pub const SEL: u32 = 0x0BD8_0BD0;
    /// `LMV_MAGIC_V1`.
    pub const LMV_V1: u32 = 0x0CD2_0CD0;
    /// `LMV_MAGIC_STRIPE`.
    pub const LMV_STRIPE: u32 = 0x0CD4_0CD0;
    /// `LMV_USER_MAGIC`.
    pub const LMV_USER: u32 = 0x0CD3_0CD0;
}

/// Layout patterns (`LOV_PATTERN_*`).
pub mod pattern {
    /// RAID-0 striping.
    pub const RAID0: u32 = 0x1;
    /// Mirrored (unused).
    pub const RAID1: u32 = 0x2;
    /// Data on MDT.
    pub const MDT: u32 = 0x100;
    /// Several stripes per OST.
    pub const OVERSTRIPING: u32 = 0x200;
    /// Compressed.
    pub const COMPRESS: u32 = 0x800;
    /// Layout has holes (lost objects).
    pub const F_HOLE: u32 = 0x4000_0000;
    /// Released by HSM.
    pub const F_RELEASED: u32 = 0x8000_0000;
}

/// Component entry flags (`LCME_FL_*`).
pub mod lcme_fl {
    #![allow(missing_docs)]
    pub const STALE: u32 = 0x1;
    pub const PREF_RD: u32 = 0x2;
    pub const PREF_WR: u32 = 0x4;
    pub const OFFLINE: u32 = 0x8;
    pub const INIT: u32 = 0x10;
    pub const NOSYNC: u32 = 0x20;
    pub const EXTENSION: u32 = 0x40;
}

/// Smallest stripe size (`LOV_MIN_STRIPE_SIZE`); every stripe size is a multiple of it.
pub const LOV_MIN_STRIPE_SIZE: u32 = 64 * 1024;
/// Largest stripe count (`LOV_MAX_STRIPE_COUNT`).
pub const LOV_MAX_STRIPE_COUNT: u16 = 2000;
/// `lmm_stripe_count` meaning "all OSTs" in a user layout (-1).
pub const LOV_ALL_STRIPES: u16 = 0xffff;
/// `lmm_stripe_offset` meaning "any OST" in a user layout (-1).
pub const LOV_OFFSET_DEFAULT: u16 = 0xffff;
/// Pool name length including its NUL (`LOV_MAXPOOLNAME + 1`).
pub const LOV_POOLNAMEL: usize = 16;
/// Most components one composite layout may have.
pub const LOV_MAX_COMPONENTS: u16 = 1024;

/// `struct lov_ost_data_v1` (24 B): one stripe object.
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
pub struct LovOstDataV1 {
    /// The OST object.
    pub l_ost_oi: OstId,
    /// Generation of the OST index.
    pub l_ost_gen: U32,
    /// Which OST.
    pub l_ost_idx: U32,
}

/// `struct lov_mds_md_v1` header (32 B); stripes follow.
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
pub struct LovMdsMdV1 {
    /// [`magic::V1`].
    pub lmm_magic: U32,
    /// `pattern` bits.
    pub lmm_pattern: U32,
    /// The file's FID (as an ost_id).
    pub lmm_oi: OstId,
    /// Stripe size in bytes.
    pub lmm_stripe_size: U32,
    /// Stripes that follow.
    pub lmm_stripe_count: U16,
    /// Layout generation (user md: stripe offset).
    pub lmm_layout_gen: U16,
}

/// `struct lov_mds_md_v3` header (48 B): v1 plus a pool name; stripes follow.
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
pub struct LovMdsMdV3 {
    /// [`magic::V3`].
    pub lmm_magic: U32,
    /// `pattern` bits.
    pub lmm_pattern: U32,
    /// The file's FID.
    pub lmm_oi: OstId,
    /// Stripe size in bytes.
    pub lmm_stripe_size: U32,
    /// Stripes that follow.
    pub lmm_stripe_count: U16,
    /// Layout generation (user md: stripe offset).
    pub lmm_layout_gen: U16,
    /// OST pool name, NUL-padded.
    pub lmm_pool_name: [u8; LOV_POOLNAMEL],
}

/// `struct lov_comp_md_entry_v1` (48 B).
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
pub struct LovCompMdEntryV1 {
    /// Component id.
    pub lcme_id: U32,
    /// `lcme_fl` bits.
    pub lcme_flags: U32,
    /// `[start, end)` of the file this component covers.
    pub lcme_extent: [U64; 2],
    /// Offset of the component's v1/v3 blob from the start of the composite header.
    pub lcme_offset: U32,
    /// Size of that blob.
    pub lcme_size: U32,
    /// Layout generation.
    pub lcme_layout_gen: U32,
    /// Last modification time.
    pub lcme_timestamp: U64,
    /// Padding (2.17: dstripe, cstripe, compr, bits).
    pub lcme_padding_1: U32,
}

/// `struct lov_comp_md_v1` header (32 B); entries follow.
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
pub struct LovCompMdV1 {
    /// [`magic::COMP_V1`].
    pub lcm_magic: U32,
    /// Total size including blobs.
    pub lcm_size: U32,
    /// Layout generation.
    pub lcm_layout_gen: U32,
    /// Flags (FLR state).
    pub lcm_flags: U16,
    /// Entries that follow.
    pub lcm_entry_count: U16,
    /// Mirrors minus one.
    pub lcm_mirror_count: U16,
    /// Padding.
    pub lcm_padding1: [u8; 6],
    /// Padding.
    pub lcm_padding2: U64,
}

/// `struct lmv_mds_md_v1` header (56 B); stripe FIDs follow.
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
pub struct LmvMdsMdV1 {
    /// [`magic::LMV_V1`] or [`magic::LMV_STRIPE`].
    pub lmv_magic: U32,
    /// Stripes.
    pub lmv_stripe_count: U32,
    /// MDT of the master stripe.
    pub lmv_master_mdt_index: U32,
    /// Name hash function.
    pub lmv_hash_type: U32,
    /// Layout version.
    pub lmv_layout_version: U32,
    /// Migration offset.
    pub lmv_migrate_offset: U32,
    /// Migration hash type.
    pub lmv_migrate_hash: U32,
    /// Padding.
    pub lmv_padding2: U32,
    /// Padding.
    pub lmv_padding3: U64,
    /// Pool name.
    pub lmv_pool_name: [u8; LOV_POOLNAMEL],
}

wire_plain!(
    LovOstDataV1 => "lov_ost_data_v1",
    LovMdsMdV1 => "lov_mds_md_v1",
    LovMdsMdV3 => "lov_mds_md_v3",
    LovCompMdEntryV1 => "lov_comp_md_entry_v1",
    LovCompMdV1 => "lov_comp_md_v1",
    LmvMdsMdV1 => "lmv_mds_md_v1",
);

/// A plain (v1/v3) layout, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LovMd {
    /// [`magic::V1`] or [`magic::V3`].
    pub magic: u32,
    /// `pattern` bits.
    pub pattern: u32,
    /// The file's FID.
    pub oi: OstId,
    /// Stripe size in bytes.
    pub stripe_size: u32,
    /// Stripe count; in a user layout 0 = default and 0xffff = all OSTs.
    pub stripe_count: u16,
    /// Layout generation; in a user layout, the first OST (0xffff = any).
    pub layout_gen: u16,
    /// Pool name (v3 only).
    pub pool: String,
    /// Stripe objects (empty in a user layout that only sets parameters).
    pub objects: Vec<LovOstDataV1>,
}

/// Whether a layout buffer is a stored layout (every stripe present) or a user request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LovForm {
    /// Written by a server: `stripe_count` objects follow the header.
    Stored,
    /// Sent by a client to set striping (`lov_user_md`): objects may be absent, stripe count and
    /// offset may be the -1 wildcards, and stripe size 0 means "default".
    User,
}

impl LovMd {
    fn header_len(magic: u32) -> usize {
        if magic == magic::V3 || magic == magic::SPECIFIC {
            LovMdsMdV3::SIZE
        } else {
            LovMdsMdV1::SIZE
        }
    }

    /// Decodes a v1 or v3 layout.
    pub fn decode(buf: &[u8], form: LovForm) -> Result<LovMd> {
        const WHAT: &str = "lov_mds_md";
        let m = u32_at(WHAT, buf, 0)?;
        let (h, pool) = match m {
            magic::V1 => (LovMdsMdV1::read(buf)?, String::new()),
            magic::V3 | magic::SPECIFIC if m == magic::V3 || form == LovForm::User => {
                let v3 = LovMdsMdV3::decode(buf)?;
                let pool = cstr("lov pool name", &v3.lmm_pool_name)?.to_string();
                let v1 = LovMdsMdV1::read(buf)?;
                (v1, pool)
            }
            _ if m.swap_bytes() == magic::V1 || m.swap_bytes() == magic::V3 => {
                return Err(WireError::Swabbed { what: WHAT });
            }
            _ => return Err(WireError::BadMagic { what: WHAT, got: m.into() }),
        };
        let pattern = h.lmm_pattern.get();
        let base = pattern & !(pattern::F_HOLE | pattern::F_RELEASED);
        if form == LovForm::Stored || base != 0 {
            let kind = base & !pattern::OVERSTRIPING & !pattern::COMPRESS;
            if kind != pattern::RAID0 && kind != pattern::MDT {
                return Err(WireError::BadValue { what: "lov pattern", got: pattern.into() });
            }
        }
        let ss = h.lmm_stripe_size.get();
        let default_ok = form == LovForm::User && ss == 0;
        if !default_ok && (ss == 0 || ss % LOV_MIN_STRIPE_SIZE != 0) {
            return Err(WireError::Misaligned {
                what: "lov stripe size",
                value: ss as usize,
                align: LOV_MIN_STRIPE_SIZE as usize,
            });
        }
        let count = h.lmm_stripe_count.get();
        if count != LOV_ALL_STRIPES && count > LOV_MAX_STRIPE_COUNT {
            return Err(WireError::Oversize {
                what: "lov stripe count",
                len: count.into(),
                max: LOV_MAX_STRIPE_COUNT.into(),
            });
        }
        let rest = buf.get(Self::header_len(m)..).unwrap_or_default();
        let released = pattern & pattern::F_RELEASED != 0;
        let objects = match form {
            LovForm::Stored if released || base == pattern::MDT => Vec::new(),
            LovForm::Stored => {
                if count == LOV_ALL_STRIPES {
                    return Err(WireError::BadValue {
                        what: "stored lov stripe count",
                        got: count.into(),
                    });
                }
                decode_array::<LovOstDataV1>(rest, count.into())?.to_vec()
            }
            LovForm::User => {
                // A user layout either carries no objects or (SPECIFIC) one per stripe.
                let n = if m == magic::SPECIFIC {
                    usize::from(count)
                } else {
                    rest.len().min(usize::from(count) * LovOstDataV1::SIZE) / LovOstDataV1::SIZE
                };
                decode_array::<LovOstDataV1>(rest, n)?.to_vec()
            }
        };
        Ok(LovMd {
            magic: if m == magic::SPECIFIC { magic::V3 } else { m },
            pattern,
            oi: h.lmm_oi,
            stripe_size: ss,
            stripe_count: count,
            layout_gen: h.lmm_layout_gen.get(),
            pool,
            objects,
        })
    }

    /// Encoded size.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        Self::header_len(self.magic) + self.objects.len() * LovOstDataV1::SIZE
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let v1 = LovMdsMdV1 {
            lmm_magic: self.magic.into(),
            lmm_pattern: self.pattern.into(),
            lmm_oi: self.oi,
            lmm_stripe_size: self.stripe_size.into(),
            lmm_stripe_count: self.stripe_count.into(),
            lmm_layout_gen: self.layout_gen.into(),
        };
        match self.magic {
            magic::V1 => v1.encode_into(out),
            magic::V3 => {
                v1.encode_into(out);
                out.extend_from_slice(&crate::wire::cstr_array::<LOV_POOLNAMEL>(
                    "lov pool name",
                    &self.pool,
                )?);
            }
            m => return Err(WireError::BadMagic { what: "lov_mds_md", got: m.into() }),
        }
        for o in &self.objects {
            o.encode_into(out);
        }
        Ok(())
    }

    /// The wire bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(self.wire_len());
        self.encode(&mut v)?;
        Ok(v)
    }

    /// The file FID recorded in the layout.
    #[must_use]
    pub fn fid(&self) -> LuFid {
        self.oi.as_fid()
    }
}

/// One component of a composite layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LovComp {
    /// The entry.
    pub entry: LovCompMdEntryV1,
    /// Its plain layout (absent for an uninstantiated extension component with no blob).
    pub md: Option<LovMd>,
}

/// A composite layout (`LOV_MAGIC_COMP_V1`), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LovCompMd {
    /// The header.
    pub header: LovCompMdV1,
    /// The components, in order.
    pub comps: Vec<LovComp>,
}

impl LovCompMd {
    /// Decodes a composite layout, checking every entry's blob lies inside the buffer.
    pub fn decode(buf: &[u8], form: LovForm) -> Result<LovCompMd> {
        const WHAT: &str = "lov_comp_md_v1";
        let (h, rest) = LovCompMdV1::decode_prefix(buf)?;
        if h.lcm_magic.get() != magic::COMP_V1 {
            return Err(WireError::BadMagic { what: WHAT, got: h.lcm_magic.get().into() });
        }
        let size = h.lcm_size.get() as usize;
        if size > buf.len() {
            return Err(WireError::Truncated { what: WHAT, need: size, have: buf.len() });
        }
        let n = h.lcm_entry_count.get();
        if n == 0 || n > LOV_MAX_COMPONENTS {
            return Err(WireError::BadValue { what: "lov_comp_md_v1 entry count", got: n.into() });
        }
        let entries = decode_array::<LovCompMdEntryV1>(rest, n.into())?;
        let table_end = LovCompMdV1::SIZE + usize::from(n) * LovCompMdEntryV1::SIZE;
        let mut comps = Vec::with_capacity(entries.len());
        for e in entries {
            let (off, len) = (e.lcme_offset.get() as usize, e.lcme_size.get() as usize);
            let [start, end] = e.lcme_extent.map(|x| x.get());
            if start > end {
                return Err(WireError::Inconsistent {
                    what: WHAT,
                    detail: "component extent start > end",
                });
            }
            let md = if len == 0 {
                None
            } else {
                if off < table_end || off.checked_add(len).is_none_or(|e| e > size) {
                    return Err(WireError::Inconsistent {
                        what: WHAT,
                        detail: "component blob outside the layout",
                    });
                }
                let blob = buf.get(off..off + len).ok_or(WireError::Truncated {
                    what: WHAT,
                    need: off + len,
                    have: buf.len(),
                })?;
                Some(LovMd::decode(blob, form)?)
            };
            comps.push(LovComp { entry: *e, md });
        }
        Ok(LovCompMd { header: *h, comps })
    }

    /// Encodes the layout, computing offsets and sizes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let n = self.comps.len();
        let mut blobs = Vec::new();
        let mut off = LovCompMdV1::SIZE + n * LovCompMdEntryV1::SIZE;
        let mut entries = Vec::with_capacity(n);
        for c in &self.comps {
            let mut e = c.entry;
            let blob = match &c.md {
                Some(md) => md.to_vec()?,
                None => Vec::new(),
            };
            e.lcme_offset = u32::try_from(off)
                .map_err(|_| WireError::Oversize {
                    what: "lov_comp_md_v1",
                    len: off,
                    max: u32::MAX as usize,
                })?
                .into();
            e.lcme_size = u32::try_from(blob.len()).unwrap_or(u32::MAX).into();
            off += blob.len();
            blobs.extend_from_slice(&blob);
            entries.push(e);
        }
        let mut h = self.header;
        h.lcm_magic = magic::COMP_V1.into();
        h.lcm_size = u32::try_from(off).unwrap_or(u32::MAX).into();
        h.lcm_entry_count = u16::try_from(n)
            .map_err(|_| WireError::Oversize {
                what: "lov_comp_md_v1 entries",
                len: n,
                max: usize::from(LOV_MAX_COMPONENTS),
            })?
            .into();
        let mut out = h.to_vec();
        for e in &entries {
            e.encode_into(&mut out);
        }
        out.extend_from_slice(&blobs);
        Ok(out)
    }
}

/// Any file layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// v1 or v3.
    Plain(LovMd),
    /// Composite.
    Comp(LovCompMd),
}

impl Layout {
    /// Decodes a layout of any supported magic.
    pub fn decode(buf: &[u8], form: LovForm) -> Result<Layout> {
        match u32_at("lov_mds_md", buf, 0)? {
            magic::COMP_V1 => Ok(Layout::Comp(LovCompMd::decode(buf, form)?)),
            _ => Ok(Layout::Plain(LovMd::decode(buf, form)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(count: u16) -> LovMd {
        LovMd {
            magic: magic::V1,
            pattern: pattern::RAID0,
            oi: OstId::from_fid(LuFid::new(0x2_0000_0400, 1, 0)),
            stripe_size: 1 << 20,
            stripe_count: count,
            layout_gen: 0,
            pool: String::new(),
            objects: (0..count)
                .map(|i| LovOstDataV1 {
                    l_ost_oi: OstId::from_fid(LuFid::new(0x1_0000_0000 + u64::from(i), 7, 0)),
                    l_ost_gen: 0.into(),
                    l_ost_idx: u32::from(i).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn v1_v3_round_trip() {
        let mut l = plain(2);
        let b = l.to_vec().unwrap();
        assert_eq!(b.len(), 32 + 48);
        assert_eq!(&b[0..4], &magic::V1.to_le_bytes());
        assert_eq!(&b[28..30], &2u16.to_le_bytes());
        assert_eq!(LovMd::decode(&b, LovForm::Stored).unwrap(), l);
        assert!(LovMd::decode(&b[..70], LovForm::Stored).is_err());
        l.magic = magic::V3;
        l.pool = "flash".into();
        let b = l.to_vec().unwrap();
        assert_eq!(b.len(), 48 + 48);
        assert_eq!(&b[32..37], b"flash");
        assert_eq!(LovMd::decode(&b, LovForm::Stored).unwrap(), l);
    }

    #[test]
    fn user_layout_wildcards_and_bad_sizes() {
        let mut u = plain(0);
        u.stripe_count = LOV_ALL_STRIPES;
        u.layout_gen = LOV_OFFSET_DEFAULT;
        let b = u.to_vec().unwrap();
        let d = LovMd::decode(&b, LovForm::User).unwrap();
        assert_eq!(d.stripe_count, LOV_ALL_STRIPES);
        assert!(d.objects.is_empty());
        assert!(LovMd::decode(&b, LovForm::Stored).is_err());
        u.stripe_size = 1000;
        assert!(LovMd::decode(&u.to_vec().unwrap(), LovForm::User).is_err());
    }

    #[test]
    fn composite_round_trip() {
        let c = LovCompMd {
            header: LovCompMdV1::default(),
            comps: vec![
                LovComp {
                    entry: LovCompMdEntryV1 {
                        lcme_id: 1.into(),
                        lcme_flags: lcme_fl::INIT.into(),
                        lcme_extent: [0.into(), (64u64 << 20).into()],
                        ..Default::default()
                    },
                    md: Some(plain(1)),
                },
                LovComp {
                    entry: LovCompMdEntryV1 {
                        lcme_id: 2.into(),
                        lcme_extent: [(64u64 << 20).into(), u64::MAX.into()],
                        ..Default::default()
                    },
                    md: Some(plain(2)),
                },
            ],
        };
        let b = c.encode().unwrap();
        let d = LovCompMd::decode(&b, LovForm::Stored).unwrap();
        assert_eq!(d.comps.len(), 2);
        assert_eq!(d.comps[1].md, Some(plain(2)));
        let mut bad = b.clone();
        bad[32 + 24..32 + 28].copy_from_slice(&5000u32.to_le_bytes());
        assert!(LovCompMd::decode(&bad, LovForm::Stored).is_err());
    }
}

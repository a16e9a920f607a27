//! Directory pages: `lu_dirpage` and `lu_dirent`, as MDS_READPAGE returns them in 4 KiB pages.

use crate::error::{Result, WireError};
use crate::fid::LuFid;
use crate::wire::{U16, U32, U64, Wire, round_up8, take, u16_at, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Page size of directory pages on the wire (`LU_PAGE_SIZE`).
pub const LU_PAGE_SIZE: usize = 4096;
/// `hash_end` of the last page of a directory (`MDS_DIR_END_OFF`).
pub const MDS_DIR_END_OFF: u64 = 0xffff_ffff_ffff_fffe;

/// `ldp_flags`.
pub mod ldf {
    /// The page has no entries.
    pub const EMPTY: u32 = 1;
    /// The last entry's hash equals `hash_end` (a hash collision spans pages).
    pub const COLLIDE: u32 = 2;
}

/// `lde_attrs` (`LUDA_*`).
pub mod luda {
    /// The FID is valid.
    pub const FID: u32 = 0x1;
    /// A `luda_type` follows the name.
    pub const TYPE: u32 = 0x2;
    /// Hashes are 64-bit.
    pub const BIT64HASH: u32 = 0x4;
}

/// `struct lu_dirpage` header (24 B).
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
pub struct LuDirpage {
    /// Hash of the first entry.
    pub ldp_hash_start: U64,
    /// Hash of the first entry of the next page, or [`MDS_DIR_END_OFF`].
    pub ldp_hash_end: U64,
    /// `ldf` bits.
    pub ldp_flags: U32,
    /// Padding.
    pub ldp_pad0: U32,
}

/// `struct lu_dirent` fixed part (32 B); the name follows.
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
pub struct LuDirent {
    /// The entry's FID.
    pub lde_fid: LuFid,
    /// The entry's hash.
    pub lde_hash: U64,
    /// Record length (0 on the last entry of a page).
    pub lde_reclen: U16,
    /// Name length.
    pub lde_namelen: U16,
    /// `luda` bits.
    pub lde_attrs: U32,
}
wire_plain!(LuDirpage => "lu_dirpage", LuDirent => "lu_dirent");

/// Record size of an entry (`lu_dirent_calc_size`).
#[must_use]
pub fn dirent_size(namelen: usize, attrs: u32) -> usize {
    let size = if attrs & luda::TYPE != 0 {
        ((LuDirent::SIZE + namelen + 1 + 1) & !1) + 2
    } else {
        LuDirent::SIZE + namelen + 1
    };
    round_up8(size)
}

/// A directory entry, decoded or to be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The FID.
    pub fid: LuFid,
    /// The hash (the readdir cookie).
    pub hash: u64,
    /// The name.
    pub name: Vec<u8>,
    /// `S_IFMT` bits of the entry's mode when known (`luda_type` carries `DTTOIF(type)`).
    pub mode_type: Option<u16>,
}

/// Builds one 4 KiB directory page from entries in hash order, the way `mdd_dir_page_build`
/// does. `next_hash` is the hash of the entry after the last one given (None at end of
/// directory). Returns the page and how many entries it took.
pub fn build_page(
    entries: &[DirEntry],
    next_hash: Option<u64>,
    attrs: u32,
) -> Result<(Vec<u8>, usize)> {
    let mut page = vec![0u8; LU_PAGE_SIZE];
    let mut off = LuDirpage::SIZE;
    let mut taken = 0;
    let mut last_off = None;
    for e in entries {
        if e.name.is_empty() || e.name.len() > crate::mdt::NAME_MAX {
            return Err(WireError::BadString { what: "lu_dirent name", detail: "length" });
        }
        let size = dirent_size(e.name.len(), attrs);
        if off + size > LU_PAGE_SIZE {
            break;
        }
        let d = LuDirent {
            lde_fid: e.fid,
            lde_hash: e.hash.into(),
            lde_reclen: u16::try_from(size).unwrap_or(0).into(),
            lde_namelen: u16::try_from(e.name.len()).unwrap_or(0).into(),
            lde_attrs: (attrs | luda::FID).into(),
        };
        let slot = page.get_mut(off..off + size).ok_or(WireError::Oversize {
            what: "lu_dirpage",
            len: off + size,
            max: LU_PAGE_SIZE,
        })?;
        let (head, rest) = slot.split_at_mut(LuDirent::SIZE);
        head.copy_from_slice(d.as_bytes());
        if let Some(n) = rest.get_mut(..e.name.len()) {
            n.copy_from_slice(&e.name);
        }
        if attrs & luda::TYPE != 0 {
            let t = (e.name.len() + 1) & !1;
            if let Some(tt) = rest.get_mut(t..t + 2) {
                tt.copy_from_slice(&e.mode_type.unwrap_or(0).to_le_bytes());
            }
        }
        last_off = Some(off);
        off += size;
        taken += 1;
    }
    let hash_end = match entries.get(taken) {
        Some(e) => e.hash,
        None => next_hash.unwrap_or(MDS_DIR_END_OFF),
    };
    let mut hdr = LuDirpage {
        ldp_hash_start: entries.first().map_or(0, |e| e.hash).into(),
        ldp_hash_end: hash_end.into(),
        ldp_flags: 0.into(),
        ldp_pad0: 0.into(),
    };
    match last_off {
        Some(lo) => {
            // The last entry's reclen is 0: that is how readers find the end of a page.
            if let Some(r) = page.get_mut(lo + 24..lo + 26) {
                r.copy_from_slice(&[0, 0]);
            }
            if entries.get(taken - 1).map(|e| e.hash) == Some(hash_end) {
                hdr.ldp_flags = ldf::COLLIDE.into();
            }
        }
        None if entries.is_empty() => hdr.ldp_flags = ldf::EMPTY.into(),
        None => {
            let len = entries.first().map_or(0, |e| dirent_size(e.name.len(), attrs));
            return Err(WireError::Oversize {
                what: "lu_dirent",
                len,
                max: LU_PAGE_SIZE - LuDirpage::SIZE,
            });
        }
    }
    if let Some(h) = page.get_mut(..LuDirpage::SIZE) {
        h.copy_from_slice(hdr.as_bytes());
    }
    Ok((page, taken))
}

/// Parses one directory page as a client does: entries until one with `reclen == 0`.
pub fn parse_page(page: &[u8]) -> Result<(LuDirpage, Vec<DirEntry>)> {
    const WHAT: &str = "lu_dirpage";
    let hdr = LuDirpage::read(page)?;
    let mut out = Vec::new();
    if hdr.ldp_flags.get() & ldf::EMPTY != 0 {
        return Ok((hdr, out));
    }
    let mut off = LuDirpage::SIZE;
    let body = take(WHAT, page, 0, page.len().min(LU_PAGE_SIZE))?;
    loop {
        let d = LuDirent::read(take(WHAT, body, off, LuDirent::SIZE)?)?;
        let namelen = usize::from(d.lde_namelen.get());
        let attrs = d.lde_attrs.get();
        let need = dirent_size(namelen, attrs);
        let reclen = usize::from(d.lde_reclen.get());
        if reclen != 0 && reclen < need {
            return Err(WireError::Inconsistent {
                what: "lu_dirent",
                detail: "reclen shorter than the name",
            });
        }
        if namelen == 0 {
            return Err(WireError::BadValue { what: "lu_dirent namelen", got: 0 });
        }
        let name = take(WHAT, body, off + LuDirent::SIZE, namelen)?.to_vec();
        let mode_type = if attrs & luda::TYPE != 0 {
            Some(u16_at(WHAT, body, off + LuDirent::SIZE + ((namelen + 1) & !1))?)
        } else {
            None
        };
        out.push(DirEntry { fid: d.lde_fid, hash: d.lde_hash.get(), name, mode_type });
        if reclen == 0 {
            break;
        }
        off += reclen;
        if off + LuDirent::SIZE > body.len() {
            return Err(WireError::Inconsistent {
                what: "lu_dirpage",
                detail: "no end-of-page entry",
            });
        }
    }
    Ok((hdr, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(i: u64, name: &str) -> DirEntry {
        DirEntry {
            fid: LuFid::new(0x2_0000_0400, i as u32, 0),
            hash: i * 100,
            name: name.into(),
            mode_type: Some(0o100000),
        }
    }

    #[test]
    fn sizes_match_lustre() {
        // sizeof(lu_dirent) 32 + name 1 + NUL = 34, rounded to 2 = 34, + 2 = 36, to 8 = 40.
        assert_eq!(dirent_size(1, luda::TYPE), 40);
        assert_eq!(dirent_size(6, luda::TYPE), 48);
        assert_eq!(dirent_size(1, 0), 40);
        assert_eq!(dirent_size(7, 0), 40);
    }

    #[test]
    fn build_and_parse_pages() {
        let names: Vec<String> = (0..200).map(|i| format!("file-{i:04}")).collect();
        let entries: Vec<DirEntry> =
            names.iter().enumerate().map(|(i, n)| ent(i as u64 + 1, n)).collect();
        let attrs = luda::FID | luda::TYPE | luda::BIT64HASH;
        let (page, n) = build_page(&entries, None, attrs).unwrap();
        assert!(n > 10 && n < 200);
        let (hdr, got) = parse_page(&page).unwrap();
        assert_eq!(got.len(), n);
        assert_eq!(got, entries[..n]);
        assert_eq!(hdr.ldp_hash_start.get(), entries[0].hash);
        assert_eq!(hdr.ldp_hash_end.get(), entries[n].hash);
        let (page, m) = build_page(&entries[n..n + 3], None, attrs).unwrap();
        assert_eq!(m, 3);
        assert_eq!(parse_page(&page).unwrap().0.ldp_hash_end.get(), MDS_DIR_END_OFF);
        let (empty, _) = build_page(&[], None, attrs).unwrap();
        let (h, e) = parse_page(&empty).unwrap();
        assert_eq!(h.ldp_flags.get(), ldf::EMPTY);
        assert!(e.is_empty());
    }
}

//! OST wire structures: `obdo` (the whole of `ost_body`), `ost_layout`, `obd_ioobj`,
//! `niobuf_remote`, `obd_statfs`, and the BRW, obdo-flag and checksum constants.

use crate::error::{Result, WireError};
use crate::fid::{LustreHandle, OstId};
use crate::wire::{U32, U64, Wire, decode_array, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `OBD_FL_*` bits of `o_flags`.
pub mod obd_fl {
    #![allow(missing_docs)]
    pub const INLINEDATA: u32 = 0x1;
    pub const OBDMDEXISTS: u32 = 0x2;
    pub const DELORPHAN: u32 = 0x4;
    pub const NORPC: u32 = 0x8;
    pub const IDONLY: u32 = 0x10;
    pub const RECREATE_OBJS: u32 = 0x20;
    pub const DEBUG_CHECK: u32 = 0x40;
    pub const NO_PRJQUOTA: u32 = 0x80;
    pub const NO_USRQUOTA: u32 = 0x100;
    pub const NO_GRPQUOTA: u32 = 0x200;
    pub const CREATE_CROW: u32 = 0x400;
    pub const SRVLOCK: u32 = 0x800;
    pub const CKSUM_CRC32: u32 = 0x1000;
    pub const CKSUM_ADLER: u32 = 0x2000;
    pub const CKSUM_CRC32C: u32 = 0x4000;
    pub const CKSUM_T10IP512: u32 = 0x5000;
    pub const CKSUM_T10IP4K: u32 = 0x6000;
    pub const CKSUM_T10CRC512: u32 = 0x7000;
    pub const CKSUM_T10CRC4K: u32 = 0x8000;
    pub const CKSUM_RSVD3: u32 = 0x1_0000;
    pub const SHRINK_GRANT: u32 = 0x2_0000;
    pub const MMAP: u32 = 0x4_0000;
    pub const RECOV_RESEND: u32 = 0x8_0000;
    pub const NOSPC_BLK: u32 = 0x10_0000;
    pub const FLUSH: u32 = 0x20_0000;
    pub const SHORT_IO: u32 = 0x40_0000;
    pub const ROOT_SQUASH: u32 = 0x80_0000;
    /// The bits of `o_flags` that carry the checksum type.
    pub const CKSUM_MASK: u32 = 0xf000;
}

/// `OBD_BRW_*` bits of `rnb_flags`.
pub mod brw {
    #![allow(missing_docs)]
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const NDELAY: u32 = 0x4;
    pub const SYNC: u32 = 0x8;
    pub const CHECK: u32 = 0x10;
    pub const FROM_GRANT: u32 = 0x20;
    pub const GRANTED: u32 = 0x40;
    pub const NOCACHE: u32 = 0x80;
    pub const NOQUOTA: u32 = 0x100;
    pub const SRVLOCK: u32 = 0x200;
    pub const ASYNC: u32 = 0x400;
    pub const MEMALLOC: u32 = 0x800;
    pub const OVER_USRQUOTA: u32 = 0x1000;
    pub const OVER_GRPQUOTA: u32 = 0x2000;
    pub const SOFT_SYNC: u32 = 0x4000;
    pub const OVER_PRJQUOTA: u32 = 0x8000;
    pub const RDMA_ONLY: u32 = 0x2_0000;
    pub const SYS_RESOURCE: u32 = 0x4_0000;
}

/// `o_flags` checksum value for an `ocd_cksum_types` bit, and back.
#[must_use]
pub fn cksum_type_to_obd_fl(t: u32) -> u32 {
    use crate::connect::cksum;
    match t {
        cksum::CRC32 => obd_fl::CKSUM_CRC32,
        cksum::ADLER => obd_fl::CKSUM_ADLER,
        cksum::CRC32C => obd_fl::CKSUM_CRC32C,
        cksum::T10IP512 => obd_fl::CKSUM_T10IP512,
        cksum::T10IP4K => obd_fl::CKSUM_T10IP4K,
        cksum::T10CRC512 => obd_fl::CKSUM_T10CRC512,
        cksum::T10CRC4K => obd_fl::CKSUM_T10CRC4K,
        _ => 0,
    }
}

/// The `ocd_cksum_types` bit for the checksum type in `o_flags` (0 if none or unknown).
#[must_use]
pub fn obd_fl_to_cksum_type(o_flags: u32) -> u32 {
    use crate::connect::cksum;
    match o_flags & obd_fl::CKSUM_MASK {
        obd_fl::CKSUM_CRC32 => cksum::CRC32,
        obd_fl::CKSUM_ADLER => cksum::ADLER,
        obd_fl::CKSUM_CRC32C => cksum::CRC32C,
        obd_fl::CKSUM_T10IP512 => cksum::T10IP512,
        obd_fl::CKSUM_T10IP4K => cksum::T10IP4K,
        obd_fl::CKSUM_T10CRC512 => cksum::T10CRC512,
        obd_fl::CKSUM_T10CRC4K => cksum::T10CRC4K,
        _ => 0,
    }
}

/// `struct ost_layout` (28 B).
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
pub struct OstLayout {
    /// Stripe size.
    pub ol_stripe_size: U32,
    /// Stripe count.
    pub ol_stripe_count: U32,
    /// Component start.
    pub ol_comp_start: U64,
    /// Component end.
    pub ol_comp_end: U64,
    /// Component id.
    pub ol_comp_id: U32,
}
wire_plain!(OstLayout => "ost_layout");

/// `struct obdo` (208 B): object attributes; `struct ost_body` is exactly one obdo.
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
pub struct Obdo {
    /// `OBD_MD_*` bits saying which fields are valid.
    pub o_valid: U64,
    /// The object.
    pub o_oi: OstId,
    /// Parent (MDT file) sequence.
    pub o_parent_seq: U64,
    /// Size (PUNCH/SYNC: start offset).
    pub o_size: U64,
    /// Modification time.
    pub o_mtime: U64,
    /// Access time.
    pub o_atime: U64,
    /// Change time.
    pub o_ctime: U64,
    /// Blocks (PUNCH/SYNC: end offset; BRW: dirty bytes).
    pub o_blocks: U64,
    /// Grant.
    pub o_grant: U64,
    /// Block size.
    pub o_blksize: U32,
    /// Mode (BRW: undirty bytes).
    pub o_mode: U32,
    /// Owner.
    pub o_uid: U32,
    /// Group.
    pub o_gid: U32,
    /// `obd_fl` bits.
    pub o_flags: U32,
    /// Link count (BRW: checksum).
    pub o_nlink: U32,
    /// Parent oid.
    pub o_parent_oid: U32,
    /// Misc (BRW: dropped grant).
    pub o_misc: U32,
    /// IO epoch.
    pub o_ioepoch: U64,
    /// Stripe index in the file's layout.
    pub o_stripe_idx: U32,
    /// Parent version.
    pub o_parent_ver: U32,
    /// Lock handle.
    pub o_handle: LustreHandle,
    /// The file's layout for this object.
    pub o_layout: OstLayout,
    /// Layout version.
    pub o_layout_version: U32,
    /// High word of uid.
    pub o_uid_h: U32,
    /// High word of gid.
    pub o_gid_h: U32,
    /// Data version (BRW: grant used).
    pub o_data_version: U64,
    /// Project id.
    pub o_projid: U32,
    /// Padding.
    pub o_padding_4: U32,
    /// Padding.
    pub o_padding_5: U64,
    /// Padding.
    pub o_padding_6: U64,
}
wire_plain!(Obdo => "obdo");

/// `struct ost_body` (208 B).
pub type OstBody = Obdo;

impl Obdo {
    /// The BRW checksum (stored in `o_nlink`).
    #[must_use]
    pub fn cksum(&self) -> u32 {
        self.o_nlink.get()
    }
    /// Sets the BRW checksum.
    pub fn set_cksum(&mut self, c: u32) {
        self.o_nlink = c.into();
    }
}

/// `struct obd_ioobj` (24 B): one object of a BRW and how many niobufs it has.
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
pub struct ObdIoobj {
    /// The object.
    pub ioo_oid: OstId,
    /// The high 16 bits hold the number of bulk MDs minus one.
    pub ioo_max_brw: U32,
    /// Number of niobufs for this object.
    pub ioo_bufcnt: U32,
}
wire_plain!(ObdIoobj => "obd_ioobj");

impl ObdIoobj {
    /// Number of bulk MDs the client posted (`ioobj_max_brw_get`).
    #[must_use]
    pub fn md_count(&self) -> u32 {
        (self.ioo_max_brw.get() >> 16) + 1
    }
    /// Sets the number of bulk MDs.
    pub fn set_md_count(&mut self, n: u32) {
        self.ioo_max_brw = (n.saturating_sub(1) << 16).into();
    }
}

/// `struct niobuf_remote` (16 B): one contiguous byte range of a BRW.
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
pub struct NiobufRemote {
    /// File offset.
    pub rnb_offset: U64,
    /// Length.
    pub rnb_len: U32,
    /// `brw` bits.
    pub rnb_flags: U32,
}
wire_plain!(NiobufRemote => "niobuf_remote");

/// The page size bulk fragments are cut at (`PAGE_SIZE` of x86-64 clients and of this
/// server): both sides of a bulk must cut alike for their MDs to match.
pub const BULK_PAGE: u64 = 4096;
/// `LNET_MAX_IOV`: fragments one bulk MD holds.
pub const LNET_MAX_IOV: usize = 256;
/// `LNET_MTU`: bytes one bulk MD holds.
pub const LNET_MTU: u64 = 1 << 20;
/// `PTLRPC_BULK_OPS_COUNT`: MDs one bulk may use (and the xid step of a client).
pub const PTLRPC_BULK_OPS_COUNT: usize = 64;
/// `PTLRPC_MAX_BRW_PAGES`: pages one BRW may move (64 MiB of 4 KiB pages).
pub const PTLRPC_MAX_BRW_PAGES: usize = 16384;
/// `IOOBJ_MAX_BRW_BITS`: where `ioo_max_brw` keeps the MD count.
pub const IOOBJ_MAX_BRW_BITS: u32 = 16;

/// The most niobufs one BRW may carry (`tgt_io_data_unpack` refuses more than
/// `PTLRPC_MAX_BRW_PAGES`).
pub const MAX_NIOBUFS: usize = PTLRPC_MAX_BRW_PAGES;

/// The bulk fragments of a list of byte ranges: each range cut at page boundaries, as
/// `osc_brw_prep_request` adds client pages and `ofd_preprw` maps a niobuf to local pages.
/// Yields `(file offset, length)`.
pub fn bulk_fragments(
    ranges: impl IntoIterator<Item = (u64, u64)>,
) -> impl Iterator<Item = (u64, u32)> {
    ranges.into_iter().flat_map(|(off, len)| {
        let end = off.saturating_add(len);
        let mut pos = off;
        core::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let next = ((pos / BULK_PAGE) + 1).saturating_mul(BULK_PAGE).min(end);
            let frag = (pos, u32::try_from(next - pos).unwrap_or(u32::MAX));
            pos = next;
            Some(frag)
        })
    })
}

/// How bulk fragments of these lengths group into MDs (`__ptlrpc_prep_bulk_page`): a new MD
/// starts at every `LNET_MAX_IOV`-th fragment of the whole bulk and whenever the current MD
/// would pass `LNET_MTU` bytes. Returns each MD's byte count. A client posts one MD per entry
/// with consecutive match bits; the server moves data with one GET or PUT per entry.
#[must_use]
pub fn bulk_md_lengths(frag_lens: impl IntoIterator<Item = u32>) -> Vec<u64> {
    let mut mds: Vec<u64> = Vec::new();
    for (i, len) in frag_lens.into_iter().enumerate() {
        let len = u64::from(len);
        match mds.last_mut() {
            Some(cur) if i % LNET_MAX_IOV != 0 && *cur + len <= LNET_MTU => *cur += len,
            _ => mds.push(len),
        }
    }
    mds
}

/// Decodes `count` niobufs and checks each: non-empty, no overflow, offsets increasing and
/// non-overlapping, as `tgt_brw_*` requires.
pub fn decode_niobufs(buf: &[u8], count: usize) -> Result<&[NiobufRemote]> {
    if count > MAX_NIOBUFS {
        return Err(WireError::Oversize {
            what: "niobuf_remote count",
            len: count,
            max: MAX_NIOBUFS,
        });
    }
    let nbs = decode_array::<NiobufRemote>(buf, count)?;
    let mut next = 0u64;
    for nb in nbs {
        let off = nb.rnb_offset.get();
        let len = u64::from(nb.rnb_len.get());
        if len == 0 {
            return Err(WireError::Inconsistent { what: "niobuf_remote", detail: "zero length" });
        }
        let end = off
            .checked_add(len)
            .ok_or(WireError::Inconsistent { what: "niobuf_remote", detail: "offset overflow" })?;
        if off < next {
            return Err(WireError::Inconsistent {
                what: "niobuf_remote",
                detail: "overlapping or unordered",
            });
        }
        next = end;
    }
    Ok(nbs)
}

/// `os_state` bits of `obd_statfs`.
pub mod os_state {
    /// Degraded RAID.
    pub const DEGRADED: u32 = 0x1;
    /// Read-only.
    pub const READONLY: u32 = 0x2;
    /// No new objects.
    pub const NOCREATE: u32 = 0x4;
    /// Out of space.
    pub const ENOSPC: u32 = 0x20;
    /// Out of inodes.
    pub const ENOINO: u32 = 0x40;
    /// Summed over targets.
    pub const SUM: u32 = 0x100;
    /// Non-rotational.
    pub const NONROT: u32 = 0x200;
}

/// `struct obd_statfs` (144 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ObdStatfs {
    /// File system type magic.
    pub os_type: U64,
    /// Total blocks.
    pub os_blocks: U64,
    /// Free blocks.
    pub os_bfree: U64,
    /// Blocks available to non-root.
    pub os_bavail: U64,
    /// Total inodes.
    pub os_files: U64,
    /// Free inodes.
    pub os_ffree: U64,
    /// File system id (UUID text).
    pub os_fsid: [u8; 40],
    /// Block size (must be non-zero).
    pub os_bsize: U32,
    /// Longest name.
    pub os_namelen: U32,
    /// Largest file.
    pub os_maxbytes: U64,
    /// `os_state` bits.
    pub os_state: U32,
    /// Precreated objects.
    pub os_fprecreated: U32,
    /// Granted space in KiB.
    pub os_granted: U32,
    /// Spare.
    pub os_spare3: U32,
    /// Spare.
    pub os_spare4: U32,
    /// Spare.
    pub os_spare5: U32,
    /// Spare.
    pub os_spare6: U32,
    /// Spare.
    pub os_spare7: U32,
    /// Spare.
    pub os_spare8: U32,
    /// Spare.
    pub os_spare9: U32,
}

impl Wire for ObdStatfs {
    const NAME: &'static str = "obd_statfs";
    fn check(&self) -> Result<()> {
        if self.os_bsize.get() == 0 {
            return Err(WireError::BadValue { what: "obd_statfs os_bsize", got: 0 });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn niobuf_checks() {
        let nb = |o: u64, l: u32| NiobufRemote {
            rnb_offset: o.into(),
            rnb_len: l.into(),
            rnb_flags: brw::WRITE.into(),
        };
        let good: Vec<u8> = [nb(0, 4096), nb(8192, 4096)].iter().flat_map(|n| n.to_vec()).collect();
        assert_eq!(decode_niobufs(&good, 2).unwrap().len(), 2);
        assert!(decode_niobufs(&good, 3).is_err(), "past the end of the buffer");
        let overlap: Vec<u8> =
            [nb(0, 8192), nb(4096, 4096)].iter().flat_map(|n| n.to_vec()).collect();
        assert!(decode_niobufs(&overlap, 2).is_err());
        let wrap: Vec<u8> = nb(u64::MAX - 10, 4096).to_vec();
        assert!(decode_niobufs(&wrap, 1).is_err());
        assert!(decode_niobufs(&nb(0, 0).to_vec(), 1).is_err());
    }

    #[test]
    fn bulk_layout_cuts_pages_and_mds_as_ptlrpc_does() {
        // A niobuf starting mid-page: a short first fragment, then whole pages.
        let f: Vec<_> = bulk_fragments([(100, 10_000)]).collect();
        assert_eq!(f, vec![(100, 3996), (4096, 4096), (8192, 1908)]);
        // 2 MiB of whole pages: two MDs of 256 fragments (1 MiB) each.
        let lens: Vec<u32> = bulk_fragments([(0, 2 << 20)]).map(|x| x.1).collect();
        assert_eq!(bulk_md_lengths(lens), vec![1 << 20, 1 << 20]);
        // The 257th fragment opens a new MD even when the first ones were short.
        let lens = vec![100u32; 300];
        assert_eq!(bulk_md_lengths(lens), vec![25_600, 4400]);
        // Large fragments (64 KiB pages of other clients) close an MD at 1 MiB.
        let lens = vec![65_536u32; 20];
        assert_eq!(bulk_md_lengths(lens), vec![1 << 20, 4 * 65_536]);
        assert!(bulk_md_lengths(Vec::new()).is_empty());
    }

    #[test]
    fn brw_cksum_field_and_md_count() {
        let mut o = Obdo::default();
        o.set_cksum(0xdead_beef);
        assert_eq!(&o.to_vec()[100..104], &0xdead_beefu32.to_le_bytes());
        let mut io = ObdIoobj::default();
        io.set_md_count(4);
        assert_eq!(io.ioo_max_brw.get(), 3 << 16);
        assert_eq!(io.md_count(), 4);
        assert_eq!(
            obd_fl_to_cksum_type(cksum_type_to_obd_fl(crate::connect::cksum::CRC32C)),
            crate::connect::cksum::CRC32C
        );
    }
}

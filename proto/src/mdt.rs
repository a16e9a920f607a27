//! MDT wire structures: `mdt_body`, `mdt_ioepoch`, the `mdt_rec_*` reint records, and the
//! attribute, setattr, open and bias flag sets.

use crate::error::{Result, WireError};
use crate::fid::{LuFid, LustreHandle};
use crate::opcode::reint;
use crate::wire::{U16, U32, U64, Wire, u32_at, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `OBD_MD_*` validity bits (`mbo_valid`, `o_valid`).
pub mod md {
    #![allow(missing_docs)]
    pub const FLID: u64 = 0x1;
    pub const FLATIME: u64 = 0x2;
    pub const FLMTIME: u64 = 0x4;
    pub const FLCTIME: u64 = 0x8;
    pub const FLSIZE: u64 = 0x10;
    pub const FLBLOCKS: u64 = 0x20;
    pub const FLBLKSZ: u64 = 0x40;
    pub const FLMODE: u64 = 0x80;
    pub const FLTYPE: u64 = 0x100;
    pub const FLUID: u64 = 0x200;
    pub const FLGID: u64 = 0x400;
    pub const FLFLAGS: u64 = 0x800;
    pub const DOM_SIZE: u64 = 0x1000;
    pub const FLNLINK: u64 = 0x2000;
    pub const FLPARENT: u64 = 0x4000;
    pub const LAYOUT_VERSION: u64 = 0x8000;
    pub const FLRDEV: u64 = 0x1_0000;
    pub const FLEASIZE: u64 = 0x2_0000;
    pub const LINKNAME: u64 = 0x4_0000;
    pub const FLHANDLE: u64 = 0x8_0000;
    pub const FLCKSUM: u64 = 0x10_0000;
    pub const FLPRJQUOTA: u64 = 0x40_0000;
    pub const FLGROUP: u64 = 0x100_0000;
    pub const FLFID: u64 = 0x200_0000;
    pub const FLGRANT: u64 = 0x800_0000;
    pub const FLDIREA: u64 = 0x1000_0000;
    pub const FLUSRQUOTA: u64 = 0x2000_0000;
    pub const FLGRPQUOTA: u64 = 0x4000_0000;
    pub const FLMODEASIZE: u64 = 0x8000_0000;
    pub const MDS: u64 = 1 << 32;
    pub const MEA: u64 = 1 << 34;
    pub const TSTATE: u64 = 1 << 35;
    pub const FLXATTR: u64 = 1 << 36;
    pub const FLXATTRLS: u64 = 1 << 37;
    pub const FLXATTRRM: u64 = 1 << 38;
    pub const FLACL: u64 = 1 << 39;
    pub const FLAGSTATFS: u64 = 1 << 40;
    pub const FLCROSSREF: u64 = 1 << 44;
    pub const FLGETATTRLOCK: u64 = 1 << 45;
    pub const FLOBJCOUNT: u64 = 1 << 46;
    pub const FLDATAVERSION: u64 = 1 << 52;
    pub const CLOSE_INTENT_EXECED: u64 = 1 << 53;
    pub const DEFAULT_MEA: u64 = 1 << 54;
    pub const FLOSTLAYOUT: u64 = 1 << 55;
    pub const FLPROJID: u64 = 1 << 56;
    pub const SECCTX: u64 = 1 << 57;
    pub const FLLAZYSIZE: u64 = 1 << 58;
    pub const FLLAZYBLOCKS: u64 = 1 << 59;
    pub const FLBTIME: u64 = 1 << 60;
    pub const ENCCTX: u64 = 1 << 61;
    pub const NAMEHASH: u64 = 1 << 62;
    /// `OBD_MD_FLGETATTR`: what a getattr returns.
    pub const FLGETATTR: u64 = FLID
        | FLATIME
        | FLMTIME
        | FLCTIME
        | FLSIZE
        | FLBLKSZ
        | FLMODE
        | FLTYPE
        | FLUID
        | FLGID
        | FLFLAGS
        | FLNLINK
        | FLPARENT
        | FLRDEV
        | FLGROUP
        | FLPROJID
        | FLBTIME;
}

/// `MDS_ATTR_*` bits of `sa_valid`.
pub mod attr {
    #![allow(missing_docs)]
    pub const MODE: u64 = 0x1;
    pub const UID: u64 = 0x2;
    pub const GID: u64 = 0x4;
    pub const SIZE: u64 = 0x8;
    pub const ATIME: u64 = 0x10;
    pub const MTIME: u64 = 0x20;
    pub const CTIME: u64 = 0x40;
    pub const ATIME_SET: u64 = 0x80;
    pub const MTIME_SET: u64 = 0x100;
    pub const FORCE: u64 = 0x200;
    pub const ATTR_FLAG: u64 = 0x400;
    pub const KILL_SUID: u64 = 0x800;
    pub const KILL_SGID: u64 = 0x1000;
    pub const CTIME_SET: u64 = 0x2000;
    pub const FROM_OPEN: u64 = 0x4000;
    pub const BLOCKS: u64 = 0x8000;
    pub const PROJID: u64 = 0x1_0000;
    pub const LSIZE: u64 = 0x2_0000;
    pub const LBLOCKS: u64 = 0x4_0000;
    pub const OVERRIDE: u64 = 0x200_0000;
}

/// Open flags (`MDS_FMODE_*`, `MDS_OPEN_*`; octal in Lustre's headers).
pub mod open {
    #![allow(missing_docs)]
    pub const FMODE_READ: u64 = 0o1;
    pub const FMODE_WRITE: u64 = 0o2;
    pub const FMODE_EXEC: u64 = 0o4;
    pub const CREATED: u64 = 0o10;
    pub const CREAT: u64 = 0o100;
    pub const EXCL: u64 = 0o200;
    pub const TRUNC: u64 = 0o1000;
    pub const APPEND: u64 = 0o2000;
    pub const SYNC: u64 = 0o10000;
    pub const DIRECTORY: u64 = 0o200000;
    pub const BY_FID: u64 = 0o40000000;
    pub const DELAY_CREATE: u64 = 0o100000000;
    pub const OWNEROVERRIDE: u64 = 0o200000000;
    pub const LOCK: u64 = 0o4000000000;
    pub const HAS_EA: u64 = 0o10000000000;
    pub const HAS_OBJS: u64 = 0o20000000000;
    pub const NORESTORE: u64 = 0o100000000000;
    pub const NEWSTRIPE: u64 = 0o200000000000;
    pub const VOLATILE: u64 = 0o400000000000;
    pub const LEASE: u64 = 0o1000000000000;
    pub const RELEASE: u64 = 0o2000000000000;
    pub const RESYNC: u64 = 0o4000000000000;
    pub const PCC: u64 = 0o10000000000000;
}

/// `enum mds_op_bias` bits (`cr_bias`, `sa_bias`, ...).
pub mod bias {
    #![allow(missing_docs)]
    pub const CROSS_REF: u32 = 1 << 1;
    pub const PERM_BYPASS: u32 = 1 << 3;
    pub const QUOTA_IGNORE: u32 = 1 << 5;
    pub const KEEP_ORPHAN: u32 = 1 << 7;
    pub const RECOV_OPEN: u32 = 1 << 8;
    pub const DATA_MODIFIED: u32 = 1 << 9;
    pub const CREATE_VOLATILE: u32 = 1 << 10;
    pub const OWNEROVERRIDE: u32 = 1 << 11;
    pub const HSM_RELEASE: u32 = 1 << 12;
    pub const CLOSE_MIGRATE: u32 = 1 << 13;
    pub const CLOSE_LAYOUT_SWAP: u32 = 1 << 14;
    pub const CLOSE_LAYOUT_MERGE: u32 = 1 << 15;
    pub const CLOSE_RESYNC_DONE: u32 = 1 << 16;
    pub const CLOSE_LAYOUT_SPLIT: u32 = 1 << 17;
    pub const TRUNC_KEEP_LEASE: u32 = 1 << 18;
    pub const PCC_ATTACH: u32 = 1 << 19;
    pub const CLOSE_UPDATE_TIMES: u32 = 1 << 20;
    pub const SETSTRIPE_CREATE: u32 = 1 << 21;
    pub const RENAME_MIGRATE: u32 = 1 << 22;
    pub const NEW_OPEN: u32 = 1 << 23;
    pub const FID_OP: u32 = 1 << 24;
    pub const MIGRATE_NSONLY: u32 = 1 << 25;
}

/// The name length limit (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// `struct mdt_body` (216 B).
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
pub struct MdtBody {
    /// The object (or directory).
    pub mbo_fid1: LuFid,
    /// A second object (child, target).
    pub mbo_fid2: LuFid,
    /// Open handle (with FLHANDLE).
    pub mbo_open_handle: LustreHandle,
    /// `md` bits saying which fields are valid.
    pub mbo_valid: U64,
    /// Size (READPAGE: start hash).
    pub mbo_size: U64,
    /// Modification time.
    pub mbo_mtime: U64,
    /// Access time.
    pub mbo_atime: U64,
    /// Change time.
    pub mbo_ctime: U64,
    /// 512-byte blocks.
    pub mbo_blocks: U64,
    /// Data version.
    pub mbo_version: U64,
    /// Transient state.
    pub mbo_t_state: U64,
    /// Effective uid.
    pub mbo_fsuid: U32,
    /// Effective gid.
    pub mbo_fsgid: U32,
    /// Capabilities.
    pub mbo_capability: U32,
    /// Mode and type.
    pub mbo_mode: U32,
    /// Owner.
    pub mbo_uid: U32,
    /// Group.
    pub mbo_gid: U32,
    /// Inode flags.
    pub mbo_flags: U32,
    /// Device number.
    pub mbo_rdev: U32,
    /// Link count (READPAGE: byte count).
    pub mbo_nlink: U32,
    /// Layout generation.
    pub mbo_layout_gen: U32,
    /// Supplementary group.
    pub mbo_suppgid: U32,
    /// Layout (EA) size in MDT_MD; the largest the client takes, in requests.
    pub mbo_eadatasize: U32,
    /// ACL size.
    pub mbo_aclsize: U32,
    /// Largest layout size.
    pub mbo_max_mdsize: U32,
    /// Unused.
    pub mbo_unused3: U32,
    /// High 32 bits of uid.
    pub mbo_uid_h: U32,
    /// High 32 bits of gid.
    pub mbo_gid_h: U32,
    /// Project id.
    pub mbo_projid: U32,
    /// Data-on-MDT size.
    pub mbo_dom_size: U64,
    /// Data-on-MDT blocks.
    pub mbo_dom_blocks: U64,
    /// Birth time.
    pub mbo_btime: U64,
    /// Padding (xattr_absent in 2.17).
    pub mbo_padding_9: U64,
    /// Padding.
    pub mbo_padding_10: U64,
}
wire_plain!(MdtBody => "mdt_body");

/// `struct mdt_ioepoch` (24 B): the MDT_EPOCH buffer of a close.
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
pub struct MdtIoepoch {
    /// The open handle being closed.
    pub mio_open_handle: LustreHandle,
    /// Unused.
    pub mio_unused1: U64,
    /// Unused.
    pub mio_unused2: U32,
    /// Padding.
    pub mio_padding: U32,
}
wire_plain!(MdtIoepoch => "mdt_ioepoch");

/// `struct mdt_rec_setattr` (136 B).
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
pub struct MdtRecSetattr {
    /// REINT_SETATTR.
    pub sa_opcode: U32,
    /// Capabilities.
    pub sa_cap: U32,
    /// Caller's fsuid.
    pub sa_fsuid: U32,
    /// High word.
    pub sa_fsuid_h: U32,
    /// Caller's fsgid.
    pub sa_fsgid: U32,
    /// High word.
    pub sa_fsgid_h: U32,
    /// Supplementary group.
    pub sa_suppgid: U32,
    /// High word.
    pub sa_suppgid_h: U32,
    /// Padding.
    pub sa_padding_1: U32,
    /// Padding.
    pub sa_padding_1_h: U32,
    /// The object.
    pub sa_fid: LuFid,
    /// `attr` bits.
    pub sa_valid: U64,
    /// New owner.
    pub sa_uid: U32,
    /// New group.
    pub sa_gid: U32,
    /// New size.
    pub sa_size: U64,
    /// New blocks.
    pub sa_blocks: U64,
    /// New mtime.
    pub sa_mtime: U64,
    /// New atime.
    pub sa_atime: U64,
    /// New ctime.
    pub sa_ctime: U64,
    /// Inode flags.
    pub sa_attr_flags: U32,
    /// New mode.
    pub sa_mode: U32,
    /// `bias` bits.
    pub sa_bias: U32,
    /// Project id.
    pub sa_projid: U32,
    /// Padding.
    pub sa_padding_4: U32,
    /// Padding.
    pub sa_padding_5: U32,
}
wire_plain!(MdtRecSetattr => "mdt_rec_setattr");

/// `struct mdt_rec_create` (136 B), also used for REINT_OPEN.
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
pub struct MdtRecCreate {
    /// REINT_CREATE or REINT_OPEN.
    pub cr_opcode: U32,
    /// Capabilities.
    pub cr_cap: U32,
    /// Caller's fsuid.
    pub cr_fsuid: U32,
    /// High word.
    pub cr_fsuid_h: U32,
    /// Caller's fsgid.
    pub cr_fsgid: U32,
    /// High word.
    pub cr_fsgid_h: U32,
    /// Supplementary group 1.
    pub cr_suppgid1: U32,
    /// High word.
    pub cr_suppgid1_h: U32,
    /// Supplementary group 2.
    pub cr_suppgid2: U32,
    /// High word.
    pub cr_suppgid2_h: U32,
    /// Parent directory.
    pub cr_fid1: LuFid,
    /// The new object (or the object to open by FID).
    pub cr_fid2: LuFid,
    /// Old open handle (replay).
    pub cr_open_handle_old: LustreHandle,
    /// Time of the operation.
    pub cr_time: U64,
    /// Device number.
    pub cr_rdev: U64,
    /// IO epoch.
    pub cr_ioepoch: U64,
    /// Padding.
    pub cr_padding_1: U64,
    /// Mode and type.
    pub cr_mode: U32,
    /// `bias` bits.
    pub cr_bias: U32,
    /// Low 32 bits of the open flags.
    pub cr_flags_l: U32,
    /// High 32 bits of the open flags.
    pub cr_flags_h: U32,
    /// Caller's umask.
    pub cr_umask: U32,
    /// Padding.
    pub cr_padding_4: U32,
}
wire_plain!(MdtRecCreate => "mdt_rec_create");

impl MdtRecCreate {
    /// The 64-bit open flags.
    #[must_use]
    pub fn open_flags(&self) -> u64 {
        u64::from(self.cr_flags_l.get()) | (u64::from(self.cr_flags_h.get()) << 32)
    }
    /// Sets the 64-bit open flags.
    pub fn set_open_flags(&mut self, f: u64) {
        self.cr_flags_l = ((f & 0xffff_ffff) as u32).into();
        self.cr_flags_h = ((f >> 32) as u32).into();
    }
}

/// `struct mdt_rec_link` (136 B).
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
pub struct MdtRecLink {
    /// REINT_LINK.
    pub lk_opcode: U32,
    /// Capabilities.
    pub lk_cap: U32,
    /// Caller's fsuid.
    pub lk_fsuid: U32,
    /// High word.
    pub lk_fsuid_h: U32,
    /// Caller's fsgid.
    pub lk_fsgid: U32,
    /// High word.
    pub lk_fsgid_h: U32,
    /// Supplementary group 1.
    pub lk_suppgid1: U32,
    /// High word.
    pub lk_suppgid1_h: U32,
    /// Supplementary group 2.
    pub lk_suppgid2: U32,
    /// High word.
    pub lk_suppgid2_h: U32,
    /// The object to link.
    pub lk_fid1: LuFid,
    /// The directory to link into.
    pub lk_fid2: LuFid,
    /// Time of the operation.
    pub lk_time: U64,
    /// Padding.
    pub lk_padding_1: U64,
    /// Padding.
    pub lk_padding_2: U64,
    /// Padding.
    pub lk_padding_3: U64,
    /// Padding.
    pub lk_padding_4: U64,
    /// `bias` bits.
    pub lk_bias: U32,
    /// Padding.
    pub lk_padding_5: U32,
    /// Padding.
    pub lk_padding_6: U32,
    /// Padding.
    pub lk_padding_7: U32,
    /// Padding.
    pub lk_padding_8: U32,
    /// Padding.
    pub lk_padding_9: U32,
}
wire_plain!(MdtRecLink => "mdt_rec_link");

/// `struct mdt_rec_unlink` (136 B).
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
pub struct MdtRecUnlink {
    /// REINT_UNLINK.
    pub ul_opcode: U32,
    /// Capabilities.
    pub ul_cap: U32,
    /// Caller's fsuid.
    pub ul_fsuid: U32,
    /// High word.
    pub ul_fsuid_h: U32,
    /// Caller's fsgid.
    pub ul_fsgid: U32,
    /// High word.
    pub ul_fsgid_h: U32,
    /// Supplementary group 1.
    pub ul_suppgid1: U32,
    /// High word.
    pub ul_suppgid1_h: U32,
    /// Supplementary group 2.
    pub ul_suppgid2: U32,
    /// High word.
    pub ul_suppgid2_h: U32,
    /// Parent directory.
    pub ul_fid1: LuFid,
    /// The child, when the client knows it.
    pub ul_fid2: LuFid,
    /// Time of the operation.
    pub ul_time: U64,
    /// Padding.
    pub ul_padding_2: U64,
    /// Padding.
    pub ul_padding_3: U64,
    /// Padding.
    pub ul_padding_4: U64,
    /// Padding.
    pub ul_padding_5: U64,
    /// `bias` bits.
    pub ul_bias: U32,
    /// Mode of the child (S_IFDIR for rmdir).
    pub ul_mode: U32,
    /// Padding.
    pub ul_padding_6: U32,
    /// Padding.
    pub ul_padding_7: U32,
    /// Padding.
    pub ul_padding_8: U32,
    /// Padding.
    pub ul_padding_9: U32,
}
wire_plain!(MdtRecUnlink => "mdt_rec_unlink");

/// `struct mdt_rec_rename` (136 B).
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
pub struct MdtRecRename {
    /// REINT_RENAME.
    pub rn_opcode: U32,
    /// Capabilities.
    pub rn_cap: U32,
    /// Caller's fsuid.
    pub rn_fsuid: U32,
    /// High word.
    pub rn_fsuid_h: U32,
    /// Caller's fsgid.
    pub rn_fsgid: U32,
    /// High word.
    pub rn_fsgid_h: U32,
    /// Supplementary group 1.
    pub rn_suppgid1: U32,
    /// High word.
    pub rn_suppgid1_h: U32,
    /// Supplementary group 2.
    pub rn_suppgid2: U32,
    /// High word.
    pub rn_suppgid2_h: U32,
    /// Source directory.
    pub rn_fid1: LuFid,
    /// Target directory.
    pub rn_fid2: LuFid,
    /// Time of the operation.
    pub rn_time: U64,
    /// Padding.
    pub rn_padding_1: U64,
    /// Padding.
    pub rn_padding_2: U64,
    /// Padding.
    pub rn_padding_3: U64,
    /// Padding.
    pub rn_padding_4: U64,
    /// `bias` bits.
    pub rn_bias: U32,
    /// Mode of the source.
    pub rn_mode: U32,
    /// Padding.
    pub rn_padding_5: U32,
    /// Padding.
    pub rn_padding_6: U32,
    /// Padding.
    pub rn_padding_7: U32,
    /// Padding.
    pub rn_padding_8: U32,
}
wire_plain!(MdtRecRename => "mdt_rec_rename");

/// `struct mdt_rec_setxattr` (136 B).
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
pub struct MdtRecSetxattr {
    /// REINT_SETXATTR.
    pub sx_opcode: U32,
    /// Capabilities.
    pub sx_cap: U32,
    /// Caller's fsuid.
    pub sx_fsuid: U32,
    /// High word.
    pub sx_fsuid_h: U32,
    /// Caller's fsgid.
    pub sx_fsgid: U32,
    /// High word.
    pub sx_fsgid_h: U32,
    /// Supplementary group 1.
    pub sx_suppgid1: U32,
    /// High word.
    pub sx_suppgid1_h: U32,
    /// Supplementary group 2.
    pub sx_suppgid2: U32,
    /// High word.
    pub sx_suppgid2_h: U32,
    /// The object.
    pub sx_fid: LuFid,
    /// Padding.
    pub sx_padding_1: U64,
    /// Padding.
    pub sx_padding_2: U32,
    /// Padding.
    pub sx_padding_3: U32,
    /// FLXATTR (set) or FLXATTRRM (remove).
    pub sx_valid: U64,
    /// Time of the operation.
    pub sx_time: U64,
    /// Padding.
    pub sx_padding_5: U64,
    /// Padding.
    pub sx_padding_6: U64,
    /// Padding.
    pub sx_padding_7: U64,
    /// Value length.
    pub sx_size: U32,
    /// XATTR_CREATE / XATTR_REPLACE.
    pub sx_flags: U32,
    /// Padding.
    pub sx_padding_8: U32,
    /// Padding.
    pub sx_padding_9: U32,
    /// Padding.
    pub sx_padding_10: U32,
    /// Padding.
    pub sx_padding_11: U32,
}
wire_plain!(MdtRecSetxattr => "mdt_rec_setxattr");

/// `struct mdt_rec_resync` (136 B).
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
pub struct MdtRecResync {
    /// REINT_RESYNC.
    pub rs_opcode: U32,
    /// Capabilities.
    pub rs_cap: U32,
    /// Caller's fsuid.
    pub rs_fsuid: U32,
    /// High word.
    pub rs_fsuid_h: U32,
    /// Caller's fsgid.
    pub rs_fsgid: U32,
    /// High word.
    pub rs_fsgid_h: U32,
    /// Supplementary group 1.
    pub rs_suppgid1: U32,
    /// High word.
    pub rs_suppgid1_h: U32,
    /// Supplementary group 2.
    pub rs_suppgid2: U32,
    /// High word.
    pub rs_suppgid2_h: U32,
    /// The file.
    pub rs_fid: LuFid,
    /// Padding.
    pub rs_padding0: [u8; 16],
    /// Lease handle.
    pub rs_lease_handle: LustreHandle,
    /// Padding.
    pub rs_padding1: U64,
    /// Padding.
    pub rs_padding2: U64,
    /// Padding.
    pub rs_padding3: U64,
    /// Padding.
    pub rs_padding4: U64,
    /// `bias` bits.
    pub rs_bias: U32,
    /// Padding.
    pub rs_padding5: U32,
    /// Padding.
    pub rs_padding6: U32,
    /// Padding.
    pub rs_padding7: U32,
    /// Padding.
    pub rs_padding8: U32,
    /// Mirror id.
    pub rs_mirror_id: U16,
    /// Padding.
    pub rs_padding9: U16,
}
wire_plain!(MdtRecResync => "mdt_rec_resync");

/// `struct mdt_rec_reint` (136 B): the generic view every record shares.
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
pub struct MdtRecReint {
    /// REINT sub-opcode.
    pub rr_opcode: U32,
    /// Capabilities.
    pub rr_cap: U32,
    /// Caller's fsuid.
    pub rr_fsuid: U32,
    /// High word.
    pub rr_fsuid_h: U32,
    /// Caller's fsgid.
    pub rr_fsgid: U32,
    /// High word.
    pub rr_fsgid_h: U32,
    /// Supplementary group 1.
    pub rr_suppgid1: U32,
    /// High word.
    pub rr_suppgid1_h: U32,
    /// Supplementary group 2.
    pub rr_suppgid2: U32,
    /// High word.
    pub rr_suppgid2_h: U32,
    /// First FID.
    pub rr_fid1: LuFid,
    /// Second FID.
    pub rr_fid2: LuFid,
    /// Modification time.
    pub rr_mtime: U64,
    /// Access time.
    pub rr_atime: U64,
    /// Change time.
    pub rr_ctime: U64,
    /// Size.
    pub rr_size: U64,
    /// Blocks.
    pub rr_blocks: U64,
    /// `bias` bits.
    pub rr_bias: U32,
    /// Mode.
    pub rr_mode: U32,
    /// Flags.
    pub rr_flags: U32,
    /// Flags high word.
    pub rr_flags_h: U32,
    /// Umask.
    pub rr_umask: U32,
    /// Mirror id.
    pub rr_mirror_id: U16,
    /// Padding.
    pub rr_padding_4: U16,
}
wire_plain!(MdtRecReint => "mdt_rec_reint");

/// Size of every REC_REINT record.
pub const REC_REINT_SIZE: usize = 136;

/// A REC_REINT buffer decoded by its sub-opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReintRec {
    /// REINT_SETATTR.
    Setattr(MdtRecSetattr),
    /// REINT_CREATE.
    Create(MdtRecCreate),
    /// REINT_LINK.
    Link(MdtRecLink),
    /// REINT_UNLINK (and RMENTRY).
    Unlink(MdtRecUnlink),
    /// REINT_RENAME (and MIGRATE).
    Rename(MdtRecRename),
    /// REINT_OPEN.
    Open(MdtRecCreate),
    /// REINT_SETXATTR.
    Setxattr(MdtRecSetxattr),
    /// REINT_RESYNC.
    Resync(MdtRecResync),
}

impl ReintRec {
    /// Decodes a REC_REINT buffer by its first word.
    pub fn decode(buf: &[u8]) -> Result<ReintRec> {
        let op = u32_at("mdt_rec_reint", buf, 0)?;
        Ok(match op {
            reint::SETATTR => ReintRec::Setattr(MdtRecSetattr::read(buf)?),
            reint::CREATE => ReintRec::Create(MdtRecCreate::read(buf)?),
            reint::LINK => ReintRec::Link(MdtRecLink::read(buf)?),
            reint::UNLINK | reint::RMENTRY => ReintRec::Unlink(MdtRecUnlink::read(buf)?),
            reint::RENAME | reint::MIGRATE => ReintRec::Rename(MdtRecRename::read(buf)?),
            reint::OPEN => ReintRec::Open(MdtRecCreate::read(buf)?),
            reint::SETXATTR => ReintRec::Setxattr(MdtRecSetxattr::read(buf)?),
            reint::RESYNC => ReintRec::Resync(MdtRecResync::read(buf)?),
            other => {
                return Err(WireError::BadValue {
                    what: "mdt_rec_reint opcode",
                    got: other.into(),
                });
            }
        })
    }

    /// The record's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ReintRec::Setattr(r) => r.as_bytes(),
            ReintRec::Create(r) | ReintRec::Open(r) => r.as_bytes(),
            ReintRec::Link(r) => r.as_bytes(),
            ReintRec::Unlink(r) => r.as_bytes(),
            ReintRec::Rename(r) => r.as_bytes(),
            ReintRec::Setxattr(r) => r.as_bytes(),
            ReintRec::Resync(r) => r.as_bytes(),
        }
    }
}

/// Checks a NAME buffer: NUL-terminated, 1..=255 bytes before the NUL, no `/`.
/// Returns the name without its NUL.
pub fn check_name(buf: &[u8]) -> Result<&[u8]> {
    const WHAT: &str = "name";
    let (last, name) =
        buf.split_last().ok_or(WireError::Truncated { what: WHAT, need: 2, have: 0 })?;
    if *last != 0 {
        return Err(WireError::BadString { what: WHAT, detail: "not NUL-terminated" });
    }
    if name.is_empty() {
        return Err(WireError::BadString { what: WHAT, detail: "empty" });
    }
    if name.len() > NAME_MAX {
        return Err(WireError::Oversize { what: WHAT, len: name.len(), max: NAME_MAX });
    }
    if name.contains(&0) || name.contains(&b'/') {
        return Err(WireError::BadString { what: WHAT, detail: "NUL or '/' inside" });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reint_dispatch() {
        let mut c = MdtRecCreate { cr_opcode: reint::OPEN.into(), ..Default::default() };
        c.set_open_flags(open::FMODE_READ | open::CREAT | open::LEASE);
        assert_eq!(c.open_flags(), open::FMODE_READ | open::CREAT | open::LEASE);
        let b = c.to_vec();
        assert_eq!(b.len(), 136);
        assert!(matches!(ReintRec::decode(&b).unwrap(), ReintRec::Open(_)));
        let mut bad = b.clone();
        bad[0] = 99;
        assert!(ReintRec::decode(&bad).is_err());
        assert!(ReintRec::decode(&b[..100]).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(check_name(b"f\0").unwrap(), b"f");
        assert!(check_name(b"f").is_err());
        assert!(check_name(b"\0").is_err());
        assert!(check_name(b"a/b\0").is_err());
        let mut long = vec![b'x'; 256];
        long.push(0);
        assert!(check_name(&long).is_err());
        long.remove(0);
        assert!(check_name(&long).is_ok());
    }
}

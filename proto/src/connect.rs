//! `struct obd_connect_data` and the connect flags (`OBD_CONNECT_*`, `OBD_CONNECT2_*`).

use crate::error::{Result, WireError};
use crate::wire::{U16, U32, U64, Wire};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `OBD_CONNECT_*` bits of `ocd_connect_flags`.
pub mod flags {
    #![allow(missing_docs)]
    pub const RDONLY: u64 = 0x1;
    pub const INDEX: u64 = 0x2;
    pub const MDS: u64 = 0x4;
    pub const GRANT: u64 = 0x8;
    pub const SRVLOCK: u64 = 0x10;
    pub const VERSION: u64 = 0x20;
    pub const REQPORTAL: u64 = 0x40;
    pub const ACL: u64 = 0x80;
    pub const XATTR: u64 = 0x100;
    pub const LARGE_ACL: u64 = 0x200;
    pub const OLD_FALLOC: u64 = 0x400;
    pub const TRANSNO: u64 = 0x800;
    pub const IBITS: u64 = 0x1000;
    pub const BARRIER: u64 = 0x2000;
    pub const ATTRFID: u64 = 0x4000;
    pub const NODEVOH: u64 = 0x8000;
    pub const RMT_CLIENT: u64 = 0x1_0000;
    pub const RMT_CLIENT_FORCE: u64 = 0x2_0000;
    pub const BRW_SIZE: u64 = 0x4_0000;
    pub const QUOTA64: u64 = 0x8_0000;
    pub const MDS_CAPA: u64 = 0x10_0000;
    pub const OSS_CAPA: u64 = 0x20_0000;
    pub const CANCELSET: u64 = 0x40_0000;
    pub const SOM: u64 = 0x80_0000;
    pub const AT: u64 = 0x100_0000;
    pub const LRU_RESIZE: u64 = 0x200_0000;
    pub const MDS_MDS: u64 = 0x400_0000;
    pub const REAL: u64 = 0x800_0000;
    pub const CHANGE_QS: u64 = 0x1000_0000;
    pub const CKSUM: u64 = 0x2000_0000;
    pub const FID: u64 = 0x4000_0000;
    pub const VBR: u64 = 0x8000_0000;
    pub const LOV_V3: u64 = 1 << 32;
    pub const GRANT_SHRINK: u64 = 1 << 33;
    pub const SKIP_ORPHAN: u64 = 1 << 34;
    pub const MAX_EASIZE: u64 = 1 << 35;
    pub const FULL20: u64 = 1 << 36;
    pub const LAYOUTLOCK: u64 = 1 << 37;
    pub const BIT64HASH: u64 = 1 << 38;
    pub const MAXBYTES: u64 = 1 << 39;
    pub const IMP_RECOV: u64 = 1 << 40;
    pub const JOBSTATS: u64 = 1 << 41;
    pub const UMASK: u64 = 1 << 42;
    pub const EINPROGRESS: u64 = 1 << 43;
    pub const GRANT_PARAM: u64 = 1 << 44;
    pub const HPREQ_CHECK1: u64 = 1 << 45;
    pub const LVB_TYPE: u64 = 1 << 46;
    pub const NANOSEC_TIME: u64 = 1 << 47;
    pub const LIGHTWEIGHT: u64 = 1 << 48;
    pub const SHORTIO: u64 = 1 << 49;
    pub const PINGLESS: u64 = 1 << 50;
    pub const FLOCK_DEAD: u64 = 1 << 51;
    pub const DISP_STRIPE: u64 = 1 << 52;
    pub const OPEN_BY_FID: u64 = 1 << 53;
    pub const LFSCK: u64 = 1 << 54;
    pub const UNLINK_CLOSE: u64 = 1 << 56;
    pub const MULTIMODRPCS: u64 = 1 << 57;
    pub const DIR_STRIPE: u64 = 1 << 58;
    pub const SUBTREE: u64 = 1 << 59;
    pub const LOCKAHEAD_OLD: u64 = 1 << 60;
    pub const BULK_MBITS: u64 = 1 << 61;
    pub const OBDOPACK: u64 = 1 << 62;
    pub const FLAGS2: u64 = 1 << 63;
}

/// `OBD_CONNECT2_*` bits of `ocd_connect_flags2`.
pub mod flags2 {
    #![allow(missing_docs)]
    pub const FILE_SECCTX: u64 = 0x1;
    pub const LOCKAHEAD: u64 = 0x2;
    pub const DIR_MIGRATE: u64 = 0x4;
    pub const SUM_STATFS: u64 = 0x8;
    pub const OVERSTRIPING: u64 = 0x10;
    pub const FLR: u64 = 0x20;
    pub const WBC_INTENTS: u64 = 0x40;
    pub const LOCK_CONVERT: u64 = 0x80;
    pub const ARCHIVE_ID_ARRAY: u64 = 0x100;
    pub const INC_XID: u64 = 0x200;
    pub const SELINUX_POLICY: u64 = 0x400;
    pub const LSOM: u64 = 0x800;
    pub const PCC: u64 = 0x1000;
    pub const CRUSH: u64 = 0x2000;
    pub const ASYNC_DISCARD: u64 = 0x4000;
    pub const ENCRYPT: u64 = 0x8000;
    pub const FIDMAP: u64 = 0x1_0000;
    pub const GETATTR_PFID: u64 = 0x2_0000;
    pub const LSEEK: u64 = 0x4_0000;
    pub const DOM_LVB: u64 = 0x8_0000;
    pub const REP_MBITS: u64 = 0x10_0000;
    pub const MODE_CONVERT: u64 = 0x20_0000;
    pub const BATCH_RPC: u64 = 0x40_0000;
    pub const PCCRO: u64 = 0x80_0000;
    pub const MNE_TYPE: u64 = 0x100_0000;
    pub const LOCK_CONTENTION: u64 = 0x200_0000;
    pub const ATOMIC_OPEN_LOCK: u64 = 0x400_0000;
    pub const ENCRYPT_NAME: u64 = 0x800_0000;
    pub const LARGE_NID: u64 = 1 << 32;
}

/// Checksum types (`OBD_CKSUM_*`) for `ocd_cksum_types`.
pub mod cksum {
    /// CRC32 (IEEE polynomial, seed ~0, no final inversion).
    pub const CRC32: u32 = 0x1;
    /// Adler-32.
    pub const ADLER: u32 = 0x2;
    /// CRC32C (Castagnoli).
    pub const CRC32C: u32 = 0x4;
    /// Reserved.
    pub const RESERVED: u32 = 0x8;
    /// T10-PI IP checksum, 512 B sectors.
    pub const T10IP512: u32 = 0x10;
    /// T10-PI IP checksum, 4 KiB sectors.
    pub const T10IP4K: u32 = 0x20;
    /// T10-PI CRC, 512 B sectors.
    pub const T10CRC512: u32 = 0x40;
    /// T10-PI CRC, 4 KiB sectors.
    pub const T10CRC4K: u32 = 0x80;
    /// Every type.
    pub const ALL: u32 = CRC32 | ADLER | CRC32C | T10IP512 | T10IP4K | T10CRC512 | T10CRC4K;
}

/// What a 2.15 MGC sends (`lustre_start_mgc`).
pub const MGC_CONNECT_FLAGS: u64 = 0xa000_4110_0100_2020;
/// What a 2.15 MGC sends in flags2 (REP_MBITS).
pub const MGC_CONNECT_FLAGS2: u64 = 0x10_0000;
/// What a 2.15 MDC sends (`client_common_fill_super`), before optional ACL/XATTR bits.
pub const MDC_CONNECT_FLAGS: u64 = 0xae7e_5a7b_e374_d038;
/// What a 2.15 MDC sends in flags2.
pub const MDC_CONNECT_FLAGS2: u64 = 0x41e_7fbc;
/// What a 2.15 OSC sends.
pub const OSC_CONNECT_FLAGS: u64 = 0xa046_5af2_e364_0078;
/// What a 2.15 OSC sends in flags2.
pub const OSC_CONNECT_FLAGS2: u64 = 0x14_0202;

/// `struct obd_connect_data` (192 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ObdConnectData {
    /// `flags` bits.
    pub ocd_connect_flags: U64,
    /// `major << 24 | minor << 16 | patch << 8 | fix`.
    pub ocd_version: U32,
    /// Grant in bytes (OSTs).
    pub ocd_grant: U32,
    /// Target index.
    pub ocd_index: U32,
    /// Largest bulk RPC in bytes.
    pub ocd_brw_size: U32,
    /// Inode bits both sides know.
    pub ocd_ibits_known: U64,
    /// log2 of the OST block size (grant).
    pub ocd_grant_blkbits: u8,
    /// log2 of the OST inode size (grant).
    pub ocd_grant_inobits: u8,
    /// Extent tax in KiB (grant).
    pub ocd_grant_tax_kb: U16,
    /// Largest extent in blocks (grant).
    pub ocd_grant_max_blks: U32,
    /// Last committed transno on connect.
    pub ocd_transno: U64,
    /// MDS group on an OST.
    pub ocd_group: U32,
    /// `cksum` bits.
    pub ocd_cksum_types: U32,
    /// Largest layout (EA) size.
    pub ocd_max_easize: U32,
    /// Target instance (restart count).
    pub ocd_instance: U32,
    /// Largest file size.
    pub ocd_maxbytes: U64,
    /// Modifying RPCs in flight.
    pub ocd_maxmodrpcs: U16,
    /// Padding (connection policy in 2.17).
    pub padding0: U16,
    /// Padding.
    pub padding1: U32,
    /// `flags2` bits.
    pub ocd_connect_flags2: U64,
    /// Padding (compression type in 2.17).
    pub padding3: U64,
    /// Zero padding to 192 bytes.
    pub padding_rest: [U64; 12],
}

/// Largest `obd_connect_data` a 2.15 client accepts in a reply.
pub const OBD_CONNECT_DATA_MAX: usize = 320;

impl Wire for ObdConnectData {
    const NAME: &'static str = "obd_connect_data";
}

impl ObdConnectData {
    /// Lustre's version word.
    #[must_use]
    pub const fn version(major: u32, minor: u32, patch: u32, fix: u32) -> u32 {
        (major << 24) | (minor << 16) | (patch << 8) | fix
    }

    /// Decodes connect data of any length a peer may send: shorter than 192 bytes is widened
    /// with zeros (older peers), longer up to [`OBD_CONNECT_DATA_MAX`] is truncated.
    pub fn decode_any(buf: &[u8]) -> Result<ObdConnectData> {
        if buf.len() > OBD_CONNECT_DATA_MAX {
            return Err(WireError::Oversize {
                what: Self::NAME,
                len: buf.len(),
                max: OBD_CONNECT_DATA_MAX,
            });
        }
        if buf.len() < 8 {
            return Err(WireError::Truncated { what: Self::NAME, need: 8, have: buf.len() });
        }
        let mut d = <Self as zerocopy::FromZeros>::new_zeroed();
        let n = buf.len().min(Self::SIZE);
        if let (Some(dst), Some(src)) = (d.as_mut_bytes().get_mut(..n), buf.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(d)
    }

    /// Connect flags.
    #[must_use]
    pub fn flags(&self) -> u64 {
        self.ocd_connect_flags.get()
    }
    /// Connect flags 2 (valid only with `FLAGS2`).
    #[must_use]
    pub fn flags2(&self) -> u64 {
        if self.flags() & flags::FLAGS2 != 0 { self.ocd_connect_flags2.get() } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_fields() {
        let mut d = <ObdConnectData as zerocopy::FromZeros>::new_zeroed();
        d.ocd_connect_flags = MGC_CONNECT_FLAGS.into();
        d.ocd_version = ObdConnectData::version(2, 15, 8, 0).into();
        d.ocd_ibits_known = 0x7f.into();
        d.ocd_cksum_types = cksum::CRC32C.into();
        d.ocd_maxmodrpcs = 8.into();
        d.ocd_connect_flags2 = MGC_CONNECT_FLAGS2.into();
        let b = d.to_vec();
        assert_eq!(b.len(), 192);
        assert_eq!(&b[8..12], &[0, 8, 15, 2]);
        assert_eq!(&b[24..32], &0x7fu64.to_le_bytes());
        assert_eq!(&b[52..56], &4u32.to_le_bytes());
        assert_eq!(&b[72..74], &8u16.to_le_bytes());
        assert_eq!(&b[80..88], &MGC_CONNECT_FLAGS2.to_le_bytes());
        assert_eq!(ObdConnectData::decode_any(&b[..88]).unwrap().flags2(), MGC_CONNECT_FLAGS2);
        assert!(ObdConnectData::decode_any(&[0; 321]).is_err());
        // The MGC flags decompose as the reference lists them.
        assert_eq!(
            MGC_CONNECT_FLAGS,
            flags::VERSION
                | flags::BARRIER
                | flags::AT
                | flags::FULL20
                | flags::IMP_RECOV
                | flags::LVB_TYPE
                | flags::BULK_MBITS
                | flags::FLAGS2
        );
    }
}

//! MGS structures: `mgs_config_body`/`mgs_config_res` (MGS_CONFIG_READ) and
//! `mgs_target_info` (MGS_TARGET_REG).

use crate::error::{Result, WireError};
use crate::nid::Nid;
use crate::wire::{U16, U32, U64, Wire, cstr, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `enum mgs_cfg_type`.
pub mod cfg_type {
    /// Client/server configuration log.
    pub const CONFIG: u16 = 0;
    /// Security log.
    pub const SPTLRPC: u16 = 1;
    /// Imperative recovery (`-cliir`).
    pub const RECOVER: u16 = 2;
    /// Params log.
    pub const PARAMS: u16 = 3;
    /// Nodemap.
    pub const NODEMAP: u16 = 4;
    /// Barrier.
    pub const BARRIER: u16 = 5;
}

/// `LDD_F_*` target flags in `mti_flags`.
pub mod ldd_flags {
    #![allow(missing_docs)]
    pub const SV_TYPE_MDT: u32 = 0x0001;
    pub const SV_TYPE_OST: u32 = 0x0002;
    pub const SV_TYPE_MGS: u32 = 0x0004;
    pub const SV_ALL: u32 = 0x0008;
    pub const NEED_INDEX: u32 = 0x0010;
    pub const VIRGIN: u32 = 0x0020;
    pub const UPDATE: u32 = 0x0040;
    pub const REWRITE_LDD: u32 = 0x0080;
    pub const WRITECONF: u32 = 0x0100;
    pub const PARAM: u32 = 0x0400;
    pub const NO_PRIMNODE: u32 = 0x1000;
    pub const IR_CAPABLE: u32 = 0x2000;
    pub const ERROR: u32 = 0x4000;
    pub const PARAM2: u32 = 0x8000;
    pub const NO_LOCAL_LOGS: u32 = 0x1_0000;
}

/// `MTI_NAME_MAXLEN`.
pub const MTI_NAME_MAXLEN: usize = 64;
/// `MTI_PARAM_MAXLEN`.
pub const MTI_PARAM_MAXLEN: usize = 4096;
/// `MTI_NIDS_MAX`.
pub const MTI_NIDS_MAX: usize = 32;

/// `struct mgs_config_body` (80 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MgsConfigBody {
    /// Log name.
    pub mcb_name: [u8; MTI_NAME_MAXLEN],
    /// Next index wanted.
    pub mcb_offset: U64,
    /// `cfg_type`.
    pub mcb_type: U16,
    /// Nodemap pass.
    pub mcb_nm_cur_pass: u8,
    /// log2 of the unit size (PAGE_SHIFT).
    pub mcb_bits: u8,
    /// Units of bulk the client posted.
    pub mcb_units: U32,
}

impl Wire for MgsConfigBody {
    const NAME: &'static str = "mgs_config_body";
    fn check(&self) -> Result<()> {
        if self.mcb_type.get() > cfg_type::BARRIER {
            return Err(WireError::BadValue {
                what: "mgs_config_body type",
                got: self.mcb_type.get().into(),
            });
        }
        if !(12..=20).contains(&self.mcb_bits) {
            return Err(WireError::BadValue {
                what: "mgs_config_body bits",
                got: self.mcb_bits.into(),
            });
        }
        cstr(Self::NAME, &self.mcb_name)?;
        Ok(())
    }
}

/// `struct mgs_config_res` (16 B).
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
pub struct MgsConfigRes {
    /// Index of the last entry sent.
    pub mcr_offset: U64,
    /// Size of the log.
    pub mcr_size: U64,
}
wire_plain!(MgsConfigRes => "mgs_config_res");

/// `struct mgs_target_info` (4544 B): a target registering with the MGS.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MgsTargetInfo {
    /// Lustre version of the target.
    pub mti_lustre_ver: U32,
    /// Target index.
    pub mti_stripe_index: U32,
    /// Config version.
    pub mti_config_ver: U32,
    /// `ldd_flags`.
    pub mti_flags: U32,
    /// NIDs in `mti_nids`.
    pub mti_nid_count: U32,
    /// Running instance.
    pub mti_instance: U32,
    /// File system name.
    pub mti_fsname: [u8; MTI_NAME_MAXLEN],
    /// Service name (`lustre-OST0001`).
    pub mti_svname: [u8; MTI_NAME_MAXLEN],
    /// Target UUID.
    pub mti_uuid: [u8; 40],
    /// The target's NIDs.
    pub mti_nids: [U64; MTI_NIDS_MAX],
    /// Parameters (`key=value` separated by spaces).
    pub mti_params: [u8; MTI_PARAM_MAXLEN],
}

impl Wire for MgsTargetInfo {
    const NAME: &'static str = "mgs_target_info";
    fn check(&self) -> Result<()> {
        if self.mti_nid_count.get() as usize > MTI_NIDS_MAX {
            return Err(WireError::Oversize {
                what: "mgs_target_info nids",
                len: self.mti_nid_count.get() as usize,
                max: MTI_NIDS_MAX,
            });
        }
        if self.mti_flags.get()
            & (ldd_flags::SV_TYPE_MDT | ldd_flags::SV_TYPE_OST | ldd_flags::SV_TYPE_MGS)
            == 0
        {
            return Err(WireError::BadValue {
                what: "mgs_target_info flags (no target type)",
                got: self.mti_flags.get().into(),
            });
        }
        cstr("mti_fsname", &self.mti_fsname)?;
        cstr("mti_svname", &self.mti_svname)?;
        Ok(())
    }
}

impl MgsTargetInfo {
    /// The target's NIDs.
    #[must_use]
    pub fn nids(&self) -> Vec<Nid> {
        self.mti_nids.iter().take(self.mti_nid_count.get() as usize).map(|n| Nid(n.get())).collect()
    }
    /// Sets the target's NIDs (at most 32).
    pub fn set_nids(&mut self, nids: &[Nid]) -> Result<()> {
        if nids.len() > MTI_NIDS_MAX {
            return Err(WireError::Oversize {
                what: "mgs_target_info nids",
                len: nids.len(),
                max: MTI_NIDS_MAX,
            });
        }
        for (slot, n) in self.mti_nids.iter_mut().zip(nids) {
            *slot = n.0.into();
        }
        self.mti_nid_count = u32::try_from(nids.len()).unwrap_or(0).into();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_info_nids() {
        let mut t = <MgsTargetInfo as zerocopy::FromZeros>::new_zeroed();
        t.mti_flags = ldd_flags::SV_TYPE_OST.into();
        t.set_nids(&["127.0.0.2@tcp".parse().unwrap()]).unwrap();
        let b = t.to_vec();
        assert_eq!(b.len(), 4544);
        let d = MgsTargetInfo::decode(&b).unwrap();
        assert_eq!(d.nids()[0].to_string(), "127.0.0.2@tcp");
        let mut bad = b.clone();
        bad[16] = 40;
        assert!(MgsTargetInfo::decode(&bad).is_err());
    }
}

//! `struct lustre_cfg` (configuration records in llogs), its commands, `cfg_marker`, and the
//! `lov_desc`/`lmv_desc` blobs carried by `setup` of a lov or lmv.

use crate::error::{Result, WireError};
use crate::nid::Nid;
use crate::wire::{I64, U32, U64, Wire, round_up8, take, u32_at, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `LUSTRE_CFG_VERSION`.
pub const LUSTRE_CFG_VERSION: u32 = 0x1cf6_0001;
/// `LUSTRE_CFG_MAX_BUFCOUNT`.
pub const LUSTRE_CFG_MAX_BUFCOUNT: usize = 8;
/// Largest buffer we accept in a record (a record must fit in an 8 KiB llog chunk).
pub const LUSTRE_CFG_MAX_BUFLEN: usize = 8192;

/// Configuration commands (`enum lcfg_command_type`).
pub mod cmd {
    #![allow(missing_docs)]
    pub const ATTACH: u32 = 0x00cf001;
    pub const DETACH: u32 = 0x00cf002;
    pub const SETUP: u32 = 0x00cf003;
    pub const CLEANUP: u32 = 0x00cf004;
    pub const ADD_UUID: u32 = 0x00cf005;
    pub const DEL_UUID: u32 = 0x00cf006;
    pub const MOUNTOPT: u32 = 0x00cf007;
    pub const DEL_MOUNTOPT: u32 = 0x00cf008;
    pub const SET_TIMEOUT: u32 = 0x00cf009;
    pub const SET_UPCALL: u32 = 0x00cf00a;
    pub const ADD_CONN: u32 = 0x00cf00b;
    pub const DEL_CONN: u32 = 0x00cf00c;
    pub const LOV_ADD_OBD: u32 = 0x00cf00d;
    pub const LOV_DEL_OBD: u32 = 0x00cf00e;
    pub const PARAM: u32 = 0x00cf00f;
    pub const MARKER: u32 = 0x00cf010;
    pub const LOG_START: u32 = 0x00ce011;
    pub const LOG_END: u32 = 0x00ce012;
    pub const LOV_ADD_INA: u32 = 0x00ce013;
    pub const ADD_MDC: u32 = 0x00cf014;
    pub const DEL_MDC: u32 = 0x00cf015;
    pub const SPTLRPC_CONF: u32 = 0x00ce016;
    pub const POOL_NEW: u32 = 0x00ce020;
    pub const POOL_ADD: u32 = 0x00ce021;
    pub const POOL_REM: u32 = 0x00ce022;
    pub const POOL_DEL: u32 = 0x00ce023;
    pub const SET_LDLM_TIMEOUT: u32 = 0x00ce030;
    pub const PRE_CLEANUP: u32 = 0x00cf031;
    pub const SET_PARAM: u32 = 0x00ce032;
    pub const NODEMAP_ADD: u32 = 0x00ce040;
    pub const NODEMAP_DEL: u32 = 0x00ce041;
    pub const NODEMAP_ADD_RANGE: u32 = 0x00ce042;
    pub const NODEMAP_DEL_RANGE: u32 = 0x00ce043;
    pub const NODEMAP_ADD_UIDMAP: u32 = 0x00ce044;
    pub const NODEMAP_DEL_UIDMAP: u32 = 0x00ce045;
    pub const NODEMAP_ADD_GIDMAP: u32 = 0x00ce046;
    pub const NODEMAP_DEL_GIDMAP: u32 = 0x00ce047;
    pub const NODEMAP_ACTIVATE: u32 = 0x00ce048;
    pub const NODEMAP_ADMIN: u32 = 0x00ce049;
    pub const NODEMAP_ADD_PROJIDMAP: u32 = 0x00ce04a;
    pub const NODEMAP_DEL_PROJIDMAP: u32 = 0x00ce04b;
    pub const NODEMAP_TRUSTED: u32 = 0x00ce050;
    pub const NODEMAP_SQUASH_UID: u32 = 0x00ce051;
    pub const NODEMAP_SQUASH_GID: u32 = 0x00ce052;
    pub const NODEMAP_ADD_SHKEY: u32 = 0x00ce053;
    pub const NODEMAP_DEL_SHKEY: u32 = 0x00ce054;
    pub const NODEMAP_TEST_NID: u32 = 0x00ce055;
    pub const NODEMAP_TEST_ID: u32 = 0x00ce056;
    pub const NODEMAP_SET_FILESET: u32 = 0x00ce057;
    pub const NODEMAP_DENY_UNKNOWN: u32 = 0x00ce058;
    pub const NODEMAP_MAP_MODE: u32 = 0x00ce059;
    pub const NODEMAP_AUDIT_MODE: u32 = 0x00ce05a;
    pub const NODEMAP_SET_SEPOL: u32 = 0x00ce05b;
    pub const NODEMAP_FORBID_ENCRYPT: u32 = 0x00ce05c;
    pub const NODEMAP_SQUASH_PROJID: u32 = 0x00ce05d;

    /// Every command with Lustre's lctl name.
    pub const NAMES: &[(u32, &str)] = &[
        (ATTACH, "attach"),
        (DETACH, "detach"),
        (SETUP, "setup"),
        (CLEANUP, "cleanup"),
        (ADD_UUID, "add_uuid"),
        (DEL_UUID, "del_uuid"),
        (MOUNTOPT, "mount_option"),
        (DEL_MOUNTOPT, "del_mount_option"),
        (SET_TIMEOUT, "set_timeout"),
        (SET_UPCALL, "set_upcall"),
        (ADD_CONN, "add_conn"),
        (DEL_CONN, "del_conn"),
        (LOV_ADD_OBD, "lov_modify_tgts add"),
        (LOV_DEL_OBD, "lov_modify_tgts del"),
        (PARAM, "param"),
        (MARKER, "marker"),
        (LOG_START, "log_start"),
        (LOG_END, "log_end"),
        (LOV_ADD_INA, "lov_add_ina"),
        (ADD_MDC, "modify_mdc_tgts add"),
        (DEL_MDC, "modify_mdc_tgts del"),
        (SPTLRPC_CONF, "sptlrpc_conf"),
        (POOL_NEW, "pool_new"),
        (POOL_ADD, "pool_add"),
        (POOL_REM, "pool_rem"),
        (POOL_DEL, "pool_del"),
        (SET_LDLM_TIMEOUT, "set_ldlm_timeout"),
        (PRE_CLEANUP, "pre_cleanup"),
        (SET_PARAM, "set_param"),
        (NODEMAP_ADD, "nodemap_add"),
        (NODEMAP_DEL, "nodemap_del"),
        (NODEMAP_ADD_RANGE, "nodemap_add_range"),
        (NODEMAP_DEL_RANGE, "nodemap_del_range"),
        (NODEMAP_ADD_UIDMAP, "nodemap_add_uidmap"),
        (NODEMAP_DEL_UIDMAP, "nodemap_del_uidmap"),
        (NODEMAP_ADD_GIDMAP, "nodemap_add_gidmap"),
        (NODEMAP_DEL_GIDMAP, "nodemap_del_gidmap"),
        (NODEMAP_ACTIVATE, "nodemap_activate"),
        (NODEMAP_ADMIN, "nodemap_admin"),
        (NODEMAP_ADD_PROJIDMAP, "nodemap_add_projidmap"),
        (NODEMAP_DEL_PROJIDMAP, "nodemap_del_projidmap"),
        (NODEMAP_TRUSTED, "nodemap_trusted"),
        (NODEMAP_SQUASH_UID, "nodemap_squash_uid"),
        (NODEMAP_SQUASH_GID, "nodemap_squash_gid"),
        (NODEMAP_ADD_SHKEY, "nodemap_add_shkey"),
        (NODEMAP_DEL_SHKEY, "nodemap_del_shkey"),
        (NODEMAP_TEST_NID, "nodemap_test_nid"),
        (NODEMAP_TEST_ID, "nodemap_test_id"),
        (NODEMAP_SET_FILESET, "nodemap_set_fileset"),
        (NODEMAP_DENY_UNKNOWN, "nodemap_deny_unknown"),
        (NODEMAP_MAP_MODE, "nodemap_map_mode"),
        (NODEMAP_AUDIT_MODE, "nodemap_audit_mode"),
        (NODEMAP_SET_SEPOL, "nodemap_set_sepol"),
        (NODEMAP_FORBID_ENCRYPT, "nodemap_forbid_encrypt"),
        (NODEMAP_SQUASH_PROJID, "nodemap_squash_projid"),
    ];

    /// The lctl name of a command.
    #[must_use]
    pub fn name(c: u32) -> Option<&'static str> {
        NAMES.iter().find(|(n, _)| *n == c).map(|(_, s)| *s)
    }
}

/// The fixed part of `struct lustre_cfg` (32 B); `lcfg_buflens[bufcount]` follow.
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
pub struct LustreCfgHdr {
    /// [`LUSTRE_CFG_VERSION`].
    pub lcfg_version: U32,
    /// `cmd`.
    pub lcfg_command: U32,
    /// Numeric argument.
    pub lcfg_num: U32,
    /// Flags.
    pub lcfg_flags: U32,
    /// A NID argument (ADD_UUID).
    pub lcfg_nid: U64,
    /// Unused (was the NAL).
    pub lcfg_nal: U32,
    /// Buffers that follow.
    pub lcfg_bufcount: U32,
}
wire_plain!(LustreCfgHdr => "lustre_cfg");

/// A configuration record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LustreCfg {
    /// `cmd`.
    pub command: u32,
    /// Numeric argument.
    pub num: u32,
    /// Flags.
    pub flags: u32,
    /// NID argument.
    pub nid: Nid,
    /// Buffers; buffer 0 is the device name. Strings include their NUL.
    pub bufs: Vec<Vec<u8>>,
}

impl LustreCfg {
    /// A record with string buffers (each written with its NUL).
    #[must_use]
    pub fn new(command: u32, strs: &[&str]) -> LustreCfg {
        LustreCfg {
            command,
            num: 0,
            flags: 0,
            nid: Nid(0),
            bufs: strs.iter().map(|s| s.bytes().chain([0]).collect()).collect(),
        }
    }

    /// Header length: 32 + 4 per buffer, rounded to 8.
    #[must_use]
    pub fn header_len(bufcount: usize) -> usize {
        round_up8(LustreCfgHdr::SIZE + 4 * bufcount)
    }

    /// Encoded length.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        Self::header_len(self.bufs.len())
            + self.bufs.iter().map(|b| round_up8(b.len())).sum::<usize>()
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.bufs.len() > LUSTRE_CFG_MAX_BUFCOUNT {
            return Err(WireError::Oversize {
                what: "lustre_cfg bufcount",
                len: self.bufs.len(),
                max: LUSTRE_CFG_MAX_BUFCOUNT,
            });
        }
        let start = out.len();
        LustreCfgHdr {
            lcfg_version: LUSTRE_CFG_VERSION.into(),
            lcfg_command: self.command.into(),
            lcfg_num: self.num.into(),
            lcfg_flags: self.flags.into(),
            lcfg_nid: self.nid.0.into(),
            lcfg_nal: 0.into(),
            lcfg_bufcount: u32::try_from(self.bufs.len()).unwrap_or(0).into(),
        }
        .encode_into(out);
        for b in &self.bufs {
            out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
        }
        out.resize(start + Self::header_len(self.bufs.len()), 0);
        for b in &self.bufs {
            out.extend_from_slice(b);
            out.resize(out.len() + round_up8(b.len()) - b.len(), 0);
        }
        Ok(())
    }

    /// The wire bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(self.wire_len());
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Decodes a record body (`lustre_cfg_sanity_check` plus buffer bounds).
    pub fn decode(buf: &[u8]) -> Result<LustreCfg> {
        const WHAT: &str = "lustre_cfg";
        let h = LustreCfgHdr::decode(buf)?;
        if h.lcfg_version.get() != LUSTRE_CFG_VERSION {
            if h.lcfg_version.get().swap_bytes() == LUSTRE_CFG_VERSION {
                return Err(WireError::Swabbed { what: WHAT });
            }
            return Err(WireError::BadVersion { what: WHAT, got: h.lcfg_version.get() });
        }
        let n = h.lcfg_bufcount.get() as usize;
        if n >= LUSTRE_CFG_MAX_BUFCOUNT {
            return Err(WireError::Oversize {
                what: "lustre_cfg bufcount",
                len: n,
                max: LUSTRE_CFG_MAX_BUFCOUNT - 1,
            });
        }
        let mut off = Self::header_len(n);
        take(WHAT, buf, 0, off)?;
        let mut bufs = Vec::with_capacity(n);
        for i in 0..n {
            let len = u32_at(WHAT, buf, LustreCfgHdr::SIZE + 4 * i)? as usize;
            if len > LUSTRE_CFG_MAX_BUFLEN {
                return Err(WireError::Oversize {
                    what: "lustre_cfg buffer",
                    len,
                    max: LUSTRE_CFG_MAX_BUFLEN,
                });
            }
            bufs.push(take(WHAT, buf, off, len)?.to_vec());
            off += round_up8(len);
        }
        Ok(LustreCfg {
            command: h.lcfg_command.get(),
            num: h.lcfg_num.get(),
            flags: h.lcfg_flags.get(),
            nid: Nid(h.lcfg_nid.get()),
            bufs,
        })
    }

    /// Buffer `i` as a string without its NUL.
    pub fn str(&self, i: usize) -> Result<&str> {
        let b = self.bufs.get(i).ok_or(WireError::Truncated {
            what: "lustre_cfg buffer",
            need: i + 1,
            have: self.bufs.len(),
        })?;
        crate::wire::cstr("lustre_cfg buffer", b)
    }
}

/// `cm_flags` bits.
pub mod cm_flags {
    /// Start of a marked section.
    pub const START: u32 = 0x01;
    /// End of a marked section.
    pub const END: u32 = 0x02;
    /// Section cancelled.
    pub const SKIP: u32 = 0x04;
    /// Upgraded from 1.4.6.
    pub const UPGRADE146: u32 = 0x08;
    /// Excluded.
    pub const EXCLUDE: u32 = 0x10;
}

/// `MTI_NAME_MAXLEN`.
pub const MTI_NAME_MAXLEN: usize = 64;

/// `struct cfg_marker` (160 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct CfgMarker {
    /// Config step (version).
    pub cm_step: U32,
    /// `cm_flags`.
    pub cm_flags: U32,
    /// Lustre version.
    pub cm_vers: U32,
    /// Padding.
    pub cm_padding: U32,
    /// Creation time.
    pub cm_createtime: I64,
    /// Cancel time.
    pub cm_canceltime: I64,
    /// Target name.
    pub cm_tgtname: [u8; MTI_NAME_MAXLEN],
    /// Comment.
    pub cm_comment: [u8; MTI_NAME_MAXLEN],
}
wire_plain!(CfgMarker => "cfg_marker");

impl CfgMarker {
    /// A marker for `step` with `flags` naming `tgtname` and `comment`.
    pub fn new(
        step: u32,
        flags: u32,
        vers: u32,
        time: i64,
        tgtname: &str,
        comment: &str,
    ) -> Result<CfgMarker> {
        Ok(CfgMarker {
            cm_step: step.into(),
            cm_flags: flags.into(),
            cm_vers: vers.into(),
            cm_padding: 0.into(),
            cm_createtime: time.into(),
            cm_canceltime: 0.into(),
            cm_tgtname: crate::wire::cstr_array("cm_tgtname", tgtname)?,
            cm_comment: crate::wire::cstr_array("cm_comment", comment)?,
        })
    }
}

/// `LOV_DESC_MAGIC`, stored in `ld_active_tgt_count`'s place by the MGS.
pub const LOV_DESC_MAGIC: u32 = 0xB0CC_DE5C;

/// `struct lov_desc` (88 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LovDesc {
    /// Number of OSTs.
    pub ld_tgt_count: U32,
    /// Active OSTs (the MGS writes [`LOV_DESC_MAGIC`] here).
    pub ld_active_tgt_count: U32,
    /// Default stripe count.
    pub ld_default_stripe_count: U32,
    /// Default pattern.
    pub ld_pattern: U32,
    /// Default stripe size.
    pub ld_default_stripe_size: U64,
    /// Default stripe offset (-1 = any).
    pub ld_default_stripe_offset: I64,
    /// Padding.
    pub ld_padding_0: U32,
    /// QoS max age.
    pub ld_qos_maxage: U32,
    /// Padding.
    pub ld_padding_1: U32,
    /// Padding.
    pub ld_padding_2: U32,
    /// The lov's UUID.
    pub ld_uuid: [u8; 40],
}

/// `struct lmv_desc` (88 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LmvDesc {
    /// Number of MDTs.
    pub ld_tgt_count: U32,
    /// Active MDTs.
    pub ld_active_tgt_count: U32,
    /// Default stripe count.
    pub ld_default_stripe_count: U32,
    /// Pattern.
    pub ld_pattern: U32,
    /// Default hash size.
    pub ld_default_hash_size: U64,
    /// Padding.
    pub ld_padding_1: U64,
    /// Padding.
    pub ld_padding_2: U32,
    /// QoS max age.
    pub ld_qos_maxage: U32,
    /// Padding.
    pub ld_padding_3: U32,
    /// Padding.
    pub ld_padding_4: U32,
    /// The lmv's UUID.
    pub ld_uuid: [u8; 40],
}
wire_plain!(LovDesc => "lov_desc", LmvDesc => "lmv_desc");

/// One target as a configuration log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgTarget {
    /// Service name, `fsname-MDT0000` or `fsname-OST0001`.
    pub svname: String,
    /// Target index.
    pub index: u32,
    /// NIDs the target is reachable at (the first is the primary).
    pub nids: Vec<Nid>,
}

impl CfgTarget {
    /// The target's UUID (`svname_UUID`).
    #[must_use]
    pub fn uuid(&self) -> String {
        format!("{}_UUID", self.svname)
    }
}

fn cstring(s: &str) -> Vec<u8> {
    s.bytes().chain([0]).collect()
}

impl LustreCfg {
    /// A record with raw buffers; an empty buffer 0 means "no device name".
    #[must_use]
    pub fn with_bufs(command: u32, bufs: Vec<Vec<u8>>) -> LustreCfg {
        LustreCfg { command, num: 0, flags: 0, nid: Nid(0), bufs }
    }
    /// `marker`: buffer 0 empty, buffer 1 the `cfg_marker`.
    #[must_use]
    pub fn marker(m: &CfgMarker) -> LustreCfg {
        Self::with_bufs(cmd::MARKER, vec![Vec::new(), m.to_vec()])
    }
    /// `attach DEV TYPE UUID`.
    #[must_use]
    pub fn attach(dev: &str, ty: &str, uuid: &str) -> LustreCfg {
        Self::new(cmd::ATTACH, &[dev, ty, uuid])
    }
    /// `setup DEV ARGS...`.
    #[must_use]
    pub fn setup(dev: &str, args: &[&str]) -> LustreCfg {
        let mut bufs = vec![cstring(dev)];
        bufs.extend(args.iter().map(|a| cstring(a)));
        Self::with_bufs(cmd::SETUP, bufs)
    }
    /// `setup DEV DESC` for a lov or lmv, with the binary descriptor in buffer 1.
    #[must_use]
    pub fn setup_desc(dev: &str, desc: &[u8]) -> LustreCfg {
        Self::with_bufs(cmd::SETUP, vec![cstring(dev), desc.to_vec()])
    }
    /// `add_uuid UUID` with the NID in `lcfg_nid` (no device name).
    #[must_use]
    pub fn add_uuid(uuid: &str, nid: Nid) -> LustreCfg {
        let mut c = Self::with_bufs(cmd::ADD_UUID, vec![Vec::new(), cstring(uuid)]);
        c.nid = nid;
        c
    }
    /// `mount_option PROFILE LOV LMV` (no device name).
    #[must_use]
    pub fn mount_opt(profile: &str, lov: &str, lmv: &str) -> LustreCfg {
        Self::with_bufs(
            cmd::MOUNTOPT,
            vec![Vec::new(), cstring(profile), cstring(lov), cstring(lmv)],
        )
    }
    /// `add_mdc LMV MDT_UUID INDEX GEN MDC_UUID`.
    #[must_use]
    pub fn add_mdc(lmv: &str, mdt_uuid: &str, index: u32, gen_: u32, mdc_uuid: &str) -> LustreCfg {
        Self::new(cmd::ADD_MDC, &[lmv, mdt_uuid, &index.to_string(), &gen_.to_string(), mdc_uuid])
    }
    /// `lov_modify_tgts add LOV OST_UUID INDEX GEN`.
    #[must_use]
    pub fn lov_add_obd(lov: &str, ost_uuid: &str, index: u32, gen_: u32) -> LustreCfg {
        Self::new(cmd::LOV_ADD_OBD, &[lov, ost_uuid, &index.to_string(), &gen_.to_string()])
    }
}

/// What a client configuration log (`fsname-client`) describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLogSpec {
    /// File system name (1-8 characters).
    pub fsname: String,
    /// Default stripe size for the lov descriptor.
    pub stripe_size: u64,
    /// Default stripe count.
    pub stripe_count: u32,
    /// MDTs.
    pub mdts: Vec<CfgTarget>,
    /// OSTs.
    pub osts: Vec<CfgTarget>,
    /// Lustre version the MGS claims in markers.
    pub version: u32,
    /// Creation time written in markers and the log header.
    pub time: i64,
}

impl ClientLogSpec {
    /// The name of the client lov device.
    #[must_use]
    pub fn lov_name(&self) -> String {
        format!("{}-clilov", self.fsname)
    }
    /// The name of the client lmv device.
    #[must_use]
    pub fn lmv_name(&self) -> String {
        format!("{}-clilmv", self.fsname)
    }

    /// The records of the log in order, each step wrapped in markers the way the MGS writes
    /// them: lov setup, lmv setup, mount options, then one "add mdc" per MDT and one "add osc"
    /// per OST.
    pub fn records(&self) -> Result<Vec<LustreCfg>> {
        let mut out = Vec::new();
        let mut step = 0u32;
        let mut section = |out: &mut Vec<LustreCfg>,
                           tgt: &str,
                           comment: &str,
                           body: Vec<LustreCfg>|
         -> Result<()> {
            step += 1;
            out.push(LustreCfg::marker(&CfgMarker::new(
                step,
                cm_flags::START,
                self.version,
                self.time,
                tgt,
                comment,
            )?));
            out.extend(body);
            out.push(LustreCfg::marker(&CfgMarker::new(
                step,
                cm_flags::END,
                self.version,
                self.time,
                tgt,
                comment,
            )?));
            Ok(())
        };
        let (lov, lmv) = (self.lov_name(), self.lmv_name());
        let lov_desc = LovDesc {
            ld_tgt_count: 0.into(),
            ld_active_tgt_count: LOV_DESC_MAGIC.into(),
            ld_default_stripe_count: self.stripe_count.into(),
            ld_pattern: crate::lov::pattern::RAID0.into(),
            ld_default_stripe_size: self.stripe_size.into(),
            ld_default_stripe_offset: (-1).into(),
            ld_padding_0: 0.into(),
            ld_qos_maxage: 5.into(),
            ld_padding_1: 0.into(),
            ld_padding_2: 0.into(),
            ld_uuid: crate::wire::cstr_array("ld_uuid", &format!("{lov}_UUID"))?,
        };
        section(
            &mut out,
            &lov,
            "lov setup",
            vec![
                LustreCfg::attach(&lov, "lov", &format!("{lov}_UUID")),
                LustreCfg::setup_desc(&lov, &lov_desc.to_vec()),
            ],
        )?;
        let lmv_desc = LmvDesc {
            ld_tgt_count: 0.into(),
            ld_active_tgt_count: 0.into(),
            ld_default_stripe_count: 0.into(),
            ld_pattern: 0.into(),
            ld_default_hash_size: 0.into(),
            ld_padding_1: 0.into(),
            ld_padding_2: 0.into(),
            ld_qos_maxage: 0.into(),
            ld_padding_3: 0.into(),
            ld_padding_4: 0.into(),
            ld_uuid: crate::wire::cstr_array("ld_uuid", &format!("{lmv}_UUID"))?,
        };
        section(
            &mut out,
            &lmv,
            "lmv setup",
            vec![
                LustreCfg::attach(&lmv, "lmv", &format!("{lmv}_UUID")),
                LustreCfg::setup_desc(&lmv, &lmv_desc.to_vec()),
            ],
        )?;
        let profile = format!("{}-client", self.fsname);
        section(
            &mut out,
            &profile,
            "mount opts",
            vec![LustreCfg::mount_opt(&profile, &lov, &lmv)],
        )?;
        for t in &self.mdts {
            let primary = t.nids.first().ok_or(WireError::Inconsistent {
                what: "client log",
                detail: "MDT without a NID",
            })?;
            let node = primary.to_string();
            let mdc = format!("{}-mdc", t.svname);
            let mut body: Vec<LustreCfg> =
                t.nids.iter().map(|&n| LustreCfg::add_uuid(&node, n)).collect();
            body.push(LustreCfg::attach(&mdc, "mdc", &format!("{lmv}_UUID")));
            body.push(LustreCfg::setup(&mdc, &[&t.uuid(), &node]));
            body.push(LustreCfg::add_mdc(&lmv, &t.uuid(), t.index, 1, &format!("{mdc}_UUID")));
            section(&mut out, &t.svname, "add mdc", body)?;
        }
        for t in &self.osts {
            let primary = t.nids.first().ok_or(WireError::Inconsistent {
                what: "client log",
                detail: "OST without a NID",
            })?;
            let node = primary.to_string();
            let osc = format!("{}-osc", t.svname);
            let mut body: Vec<LustreCfg> =
                t.nids.iter().map(|&n| LustreCfg::add_uuid(&node, n)).collect();
            body.push(LustreCfg::attach(&osc, "osc", &format!("{lov}_UUID")));
            body.push(LustreCfg::setup(&osc, &[&t.uuid(), &node]));
            body.push(LustreCfg::lov_add_obd(&lov, &t.uuid(), t.index, 1));
            section(&mut out, &t.svname, "add osc", body)?;
        }
        Ok(out)
    }

    /// The whole log as an llog.
    pub fn to_log(&self) -> Result<crate::llog::PlainLog> {
        let mut log = crate::llog::PlainLog::new("MGS", u64::try_from(self.time).unwrap_or(0))?;
        for r in self.records()? {
            log.append(crate::llog::rec_type::OBD_CFG, &r.to_vec()?)?;
        }
        Ok(log)
    }
}

/// What a client learns from its configuration log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientLog {
    /// Default stripe size from the lov descriptor.
    pub stripe_size: u64,
    /// Default stripe count.
    pub stripe_count: u32,
    /// MDTs: (index, target UUID, NIDs).
    pub mdts: Vec<(u32, String, Vec<Nid>)>,
    /// OSTs: (index, target UUID, NIDs).
    pub osts: Vec<(u32, String, Vec<Nid>)>,
}

impl ClientLog {
    /// Interprets the records of a client log as `class_process_config` would, ignoring
    /// sections a marker cancelled (`SKIP`) and commands a client does not act on.
    pub fn from_records(recs: &[LustreCfg]) -> Result<ClientLog> {
        let mut out = ClientLog::default();
        let mut node_nids: std::collections::HashMap<String, Vec<Nid>> =
            std::collections::HashMap::new();
        // device name -> (target uuid, node uuid)
        let mut setups: std::collections::HashMap<String, (String, String)> =
            std::collections::HashMap::new();
        let mut skip = false;
        for r in recs {
            if r.command == cmd::MARKER {
                if let Some(m) = r.bufs.get(1).and_then(|b| CfgMarker::read(b).ok()) {
                    let f = m.cm_flags.get();
                    if f & cm_flags::START != 0 {
                        skip = f & cm_flags::SKIP != 0;
                    } else if f & cm_flags::END != 0 {
                        skip = false;
                    }
                }
                continue;
            }
            if skip {
                continue;
            }
            match r.command {
                cmd::ADD_UUID => {
                    let v = node_nids.entry(r.str(1)?.to_string()).or_default();
                    if !v.contains(&r.nid) {
                        v.push(r.nid);
                    }
                }
                cmd::SETUP => {
                    let dev = r.str(0)?.to_string();
                    if dev.ends_with("-clilov") {
                        if let Some(d) = r.bufs.get(1).and_then(|b| LovDesc::read(b).ok()) {
                            out.stripe_size = d.ld_default_stripe_size.get();
                            out.stripe_count = d.ld_default_stripe_count.get();
                        }
                    } else if r.bufs.len() >= 3 {
                        setups.insert(dev, (r.str(1)?.to_string(), r.str(2)?.to_string()));
                    }
                }
                cmd::ADD_MDC => {
                    let uuid = r.str(1)?.to_string();
                    let index: u32 = r.str(2)?.parse().map_err(|_| WireError::BadString {
                        what: "add_mdc index",
                        detail: "not a number",
                    })?;
                    out.mdts.push((index, uuid, Vec::new()));
                }
                cmd::LOV_ADD_OBD => {
                    let uuid = r.str(1)?.to_string();
                    let index: u32 = r.str(2)?.parse().map_err(|_| WireError::BadString {
                        what: "lov_add_obd index",
                        detail: "not a number",
                    })?;
                    out.osts.retain(|o| o.0 != index);
                    out.osts.push((index, uuid, Vec::new()));
                }
                cmd::LOV_DEL_OBD => {
                    let uuid = r.str(1)?.to_string();
                    out.osts.retain(|o| o.1 != uuid);
                }
                _ => {}
            }
        }
        // Resolve each target's NIDs through the setup of the device that names it.
        for (_, uuid, nids) in out.mdts.iter_mut().chain(out.osts.iter_mut()) {
            if let Some((_, node)) = setups.values().find(|(t, _)| t == uuid)
                && let Some(n) = node_nids.get(node)
            {
                nids.clone_from(n);
            }
        }
        out.mdts.sort_by_key(|t| t.0);
        out.osts.sort_by_key(|t| t.0);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_log_has_every_section() {
        let spec = ClientLogSpec {
            fsname: "rustre".into(),
            stripe_size: 1 << 20,
            stripe_count: 1,
            mdts: vec![CfgTarget {
                svname: "rustre-MDT0000".into(),
                index: 0,
                nids: vec!["127.0.0.2@tcp".parse().unwrap()],
            }],
            osts: vec![
                CfgTarget {
                    svname: "rustre-OST0000".into(),
                    index: 0,
                    nids: vec!["127.0.0.2@tcp".parse().unwrap()],
                },
                CfgTarget {
                    svname: "rustre-OST0001".into(),
                    index: 1,
                    nids: vec!["127.0.0.3@tcp".parse().unwrap()],
                },
            ],
            version: ObdConnectDataVersion::V2_15_8,
            time: 1_700_000_000,
        };
        let recs = spec.records().unwrap();
        let cmds: Vec<u32> = recs.iter().map(|r| r.command).collect();
        assert_eq!(cmds.iter().filter(|&&c| c == cmd::MARKER).count(), 2 * 6);
        assert_eq!(cmds.iter().filter(|&&c| c == cmd::LOV_ADD_OBD).count(), 2);
        assert_eq!(recs[1], LustreCfg::attach("rustre-clilov", "lov", "rustre-clilov_UUID"));
        let log = spec.to_log().unwrap();
        let (chunk, last, _) = log.chunk_at(8192).unwrap();
        assert_eq!(last, log.last_index);
        let parsed = ClientLog::from_records(&recs).unwrap();
        assert_eq!(parsed.stripe_size, 1 << 20);
        assert_eq!(
            parsed.mdts,
            vec![(0, "rustre-MDT0000_UUID".to_string(), vec!["127.0.0.2@tcp".parse().unwrap()])]
        );
        assert_eq!(
            parsed.osts[1],
            (1, "rustre-OST0001_UUID".to_string(), vec!["127.0.0.3@tcp".parse().unwrap()])
        );
        let decoded: Vec<LustreCfg> = crate::llog::LlogRecIter::new(&chunk)
            .map(|r| LustreCfg::decode(r.unwrap().body).unwrap())
            .collect();
        assert_eq!(decoded, recs);
    }

    /// Lustre version words used in tests.
    struct ObdConnectDataVersion;
    impl ObdConnectDataVersion {
        const V2_15_8: u32 = (2 << 24) | (15 << 16) | (8 << 8);
    }

    #[test]
    fn cfg_round_trip_and_layout() {
        let mut c = LustreCfg::new(cmd::ADD_UUID, &["lustre-clilmv", "192.168.1.10@tcp"]);
        c.nid = "192.168.1.10@tcp".parse().unwrap();
        let b = c.to_vec().unwrap();
        // Header 32 + 2*4 = 40 (already 8-aligned); "lustre-clilmv\0" = 14 -> 16.
        assert_eq!(&b[0..4], &LUSTRE_CFG_VERSION.to_le_bytes());
        assert_eq!(&b[28..32], &2u32.to_le_bytes());
        assert_eq!(&b[32..36], &14u32.to_le_bytes());
        assert_eq!(&b[40..54], b"lustre-clilmv\0");
        assert_eq!(b.len(), 40 + 16 + 24);
        let d = LustreCfg::decode(&b).unwrap();
        assert_eq!(d, c);
        assert_eq!(d.str(1).unwrap(), "192.168.1.10@tcp");
        let mut lying = b.clone();
        lying[32] = 200; // buffer claims more than there is
        assert!(LustreCfg::decode(&lying).is_err());
        assert_eq!(cmd::name(cmd::MARKER), Some("marker"));
    }
}

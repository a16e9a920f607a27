//! ptlrpc opcodes (`pb_opc`), as named in `lustre_idl.h`.
//!
//! [`Opcode::from`] never fails: an opcode we do not know is `Opcode::Unknown(n)`, so a decoder
//! can carry it up to the service, which answers with Lustre's error for it.

/// The service an opcode belongs to, which fixes `pb_version` (`svc << 16 | 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Svc {
    /// `LUSTRE_OBD_VERSION`: connect, disconnect, ping.
    Obd,
    /// `LUSTRE_MDS_VERSION`: MDS, SEQ and FLD.
    Mds,
    /// `LUSTRE_OST_VERSION`.
    Ost,
    /// `LUSTRE_DLM_VERSION`.
    Dlm,
    /// `LUSTRE_LOG_VERSION`.
    Log,
    /// `LUSTRE_MGS_VERSION`.
    Mgs,
}

impl Svc {
    /// The `pb_version` a request of this service carries.
    #[must_use]
    pub const fn pb_version(self) -> u32 {
        let svc = match self {
            Svc::Obd => 1,
            Svc::Mds => 2,
            Svc::Ost => 3,
            Svc::Dlm => 4,
            Svc::Log => 5,
            Svc::Mgs => 6,
        };
        (svc << 16) | crate::body::PTLRPC_MSG_VERSION
    }
}

macro_rules! opcodes {
    ($($(#[$m:meta])* $v:ident = $n:literal, $name:literal, $svc:ident;)*) => {
        /// A ptlrpc opcode.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Opcode {
            $($(#[$m])* $v,)*
            /// An opcode this crate does not name.
            Unknown(u32),
        }

        impl From<u32> for Opcode {
            fn from(n: u32) -> Opcode {
                match n {
                    $($n => Opcode::$v,)*
                    other => Opcode::Unknown(other),
                }
            }
        }

        impl Opcode {
            /// Every named opcode, in numeric order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$v,)*];

            /// The number on the wire.
            #[must_use]
            pub const fn raw(self) -> u32 {
                match self {
                    $(Opcode::$v => $n,)*
                    Opcode::Unknown(n) => n,
                }
            }

            /// Lustre's name (`"MDS_REINT"`), or `"UNKNOWN"`.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Opcode::$v => $name,)*
                    Opcode::Unknown(_) => "UNKNOWN",
                }
            }

            /// The service whose `pb_version` requests of this opcode carry.
            #[must_use]
            pub const fn svc(self) -> Option<Svc> {
                match self {
                    $(Opcode::$v => Some(Svc::$svc),)*
                    Opcode::Unknown(_) => None,
                }
            }
        }
    };
}

opcodes! {
    OstGetattr = 1, "OST_GETATTR", Ost;
    OstSetattr = 2, "OST_SETATTR", Ost;
    OstRead = 3, "OST_READ", Ost;
    OstWrite = 4, "OST_WRITE", Ost;
    OstCreate = 5, "OST_CREATE", Ost;
    OstDestroy = 6, "OST_DESTROY", Ost;
    OstGetInfo = 7, "OST_GET_INFO", Ost;
    OstConnect = 8, "OST_CONNECT", Obd;
    OstDisconnect = 9, "OST_DISCONNECT", Obd;
    OstPunch = 10, "OST_PUNCH", Ost;
    /// Obsolete.
    OstOpen = 11, "OST_OPEN", Ost;
    /// Obsolete.
    OstClose = 12, "OST_CLOSE", Ost;
    OstStatfs = 13, "OST_STATFS", Ost;
    OstSync = 16, "OST_SYNC", Ost;
    OstSetInfo = 17, "OST_SET_INFO", Ost;
    /// Not used since 2.4.
    OstQuotacheck = 18, "OST_QUOTACHECK", Ost;
    OstQuotactl = 19, "OST_QUOTACTL", Ost;
    /// Not used since 2.4.
    OstQuotaAdjustQunit = 20, "OST_QUOTA_ADJUST_QUNIT", Ost;
    OstLadvise = 21, "OST_LADVISE", Ost;
    OstFallocate = 22, "OST_FALLOCATE", Ost;
    OstSeek = 23, "OST_SEEK", Ost;
    MdsGetattr = 33, "MDS_GETATTR", Mds;
    MdsGetattrName = 34, "MDS_GETATTR_NAME", Mds;
    MdsClose = 35, "MDS_CLOSE", Mds;
    MdsReint = 36, "MDS_REINT", Mds;
    MdsReadpage = 37, "MDS_READPAGE", Mds;
    MdsConnect = 38, "MDS_CONNECT", Obd;
    MdsDisconnect = 39, "MDS_DISCONNECT", Obd;
    MdsGetRoot = 40, "MDS_GET_ROOT", Mds;
    MdsStatfs = 41, "MDS_STATFS", Mds;
    /// Obsolete.
    MdsPin = 42, "MDS_PIN", Mds;
    /// Obsolete.
    MdsUnpin = 43, "MDS_UNPIN", Mds;
    MdsSync = 44, "MDS_SYNC", Mds;
    /// Obsolete since 2.8.
    MdsDoneWriting = 45, "MDS_DONE_WRITING", Mds;
    MdsSetInfo = 46, "MDS_SET_INFO", Mds;
    /// Not used since 2.4.
    MdsQuotacheck = 47, "MDS_QUOTACHECK", Mds;
    MdsQuotactl = 48, "MDS_QUOTACTL", Mds;
    MdsGetxattr = 49, "MDS_GETXATTR", Mds;
    /// Obsolete: setting an xattr is REINT_SETXATTR.
    MdsSetxattr = 50, "MDS_SETXATTR", Mds;
    MdsWritepage = 51, "MDS_WRITEPAGE", Mds;
    /// Obsolete.
    MdsIsSubdir = 52, "MDS_IS_SUBDIR", Mds;
    MdsGetInfo = 53, "MDS_GET_INFO", Mds;
    MdsHsmStateGet = 54, "MDS_HSM_STATE_GET", Mds;
    MdsHsmStateSet = 55, "MDS_HSM_STATE_SET", Mds;
    MdsHsmAction = 56, "MDS_HSM_ACTION", Mds;
    MdsHsmProgress = 57, "MDS_HSM_PROGRESS", Mds;
    MdsHsmRequest = 58, "MDS_HSM_REQUEST", Mds;
    MdsHsmCtRegister = 59, "MDS_HSM_CT_REGISTER", Mds;
    MdsHsmCtUnregister = 60, "MDS_HSM_CT_UNREGISTER", Mds;
    MdsSwapLayouts = 61, "MDS_SWAP_LAYOUTS", Mds;
    MdsRmfid = 62, "MDS_RMFID", Mds;
    /// Newer than 2.15.
    MdsBatch = 63, "MDS_BATCH", Mds;
    /// Newer than 2.15.
    MdsHsmDataVersion = 64, "MDS_HSM_DATA_VERSION", Mds;
    LdlmEnqueue = 101, "LDLM_ENQUEUE", Dlm;
    LdlmConvert = 102, "LDLM_CONVERT", Dlm;
    LdlmCancel = 103, "LDLM_CANCEL", Dlm;
    LdlmBlCallback = 104, "LDLM_BL_CALLBACK", Dlm;
    LdlmCpCallback = 105, "LDLM_CP_CALLBACK", Dlm;
    LdlmGlCallback = 106, "LDLM_GL_CALLBACK", Dlm;
    LdlmSetInfo = 107, "LDLM_SET_INFO", Dlm;
    MgsConnect = 250, "MGS_CONNECT", Obd;
    MgsDisconnect = 251, "MGS_DISCONNECT", Obd;
    MgsException = 252, "MGS_EXCEPTION", Mgs;
    MgsTargetReg = 253, "MGS_TARGET_REG", Mgs;
    MgsTargetDel = 254, "MGS_TARGET_DEL", Mgs;
    MgsSetInfo = 255, "MGS_SET_INFO", Mgs;
    MgsConfigRead = 256, "MGS_CONFIG_READ", Mgs;
    ObdPing = 400, "OBD_PING", Obd;
    /// Obsolete.
    ObdLogCancel = 401, "OBD_LOG_CANCEL", Obd;
    /// Obsolete.
    ObdQcCallback = 402, "OBD_QC_CALLBACK", Obd;
    ObdIdxRead = 403, "OBD_IDX_READ", Obd;
    LlogOriginHandleCreate = 501, "LLOG_ORIGIN_HANDLE_CREATE", Log;
    LlogOriginHandleNextBlock = 502, "LLOG_ORIGIN_HANDLE_NEXT_BLOCK", Log;
    LlogOriginHandleReadHeader = 503, "LLOG_ORIGIN_HANDLE_READ_HEADER", Log;
    /// Obsolete.
    LlogOriginHandleWriteRec = 504, "LLOG_ORIGIN_HANDLE_WRITE_REC", Log;
    /// Obsolete.
    LlogOriginHandleClose = 505, "LLOG_ORIGIN_HANDLE_CLOSE", Log;
    /// Obsolete.
    LlogOriginConnect = 506, "LLOG_ORIGIN_CONNECT", Log;
    /// Obsolete.
    LlogCatInfo = 507, "LLOG_CATINFO", Log;
    LlogOriginHandlePrevBlock = 508, "LLOG_ORIGIN_HANDLE_PREV_BLOCK", Log;
    LlogOriginHandleDestroy = 509, "LLOG_ORIGIN_HANDLE_DESTROY", Log;
    QuotaDqacq = 601, "QUOTA_DQACQ", Mds;
    QuotaDqrel = 602, "QUOTA_DQREL", Mds;
    SeqQuery = 700, "SEQ_QUERY", Mds;
    SecCtxInit = 801, "SEC_CTX_INIT", Obd;
    SecCtxInitCont = 802, "SEC_CTX_INIT_CONT", Obd;
    SecCtxFini = 803, "SEC_CTX_FINI", Obd;
    FldQuery = 900, "FLD_QUERY", Mds;
    FldRead = 901, "FLD_READ", Mds;
    OutUpdate = 1000, "OUT_UPDATE", Mds;
    LfsckNotify = 1101, "LFSCK_NOTIFY", Obd;
    LfsckQuery = 1102, "LFSCK_QUERY", Obd;
}

impl core::fmt::Display for Opcode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Opcode::Unknown(n) => write!(f, "UNKNOWN({n})"),
            o => f.write_str(o.name()),
        }
    }
}

/// `REINT_*` sub-opcodes: the first `u32` of a `REC_REINT` buffer.
pub mod reint {
    /// Set attributes.
    pub const SETATTR: u32 = 1;
    /// Create a file, directory, symlink or node.
    pub const CREATE: u32 = 2;
    /// Hard link.
    pub const LINK: u32 = 3;
    /// Unlink or rmdir.
    pub const UNLINK: u32 = 4;
    /// Rename.
    pub const RENAME: u32 = 5;
    /// Open (inside an IT_OPEN intent).
    pub const OPEN: u32 = 6;
    /// Set or remove an xattr.
    pub const SETXATTR: u32 = 7;
    /// Remove a name without touching the object.
    pub const RMENTRY: u32 = 8;
    /// Migrate a file between MDTs.
    pub const MIGRATE: u32 = 9;
    /// Resync a mirrored file.
    pub const RESYNC: u32 = 10;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknown() {
        for &o in Opcode::ALL {
            assert_eq!(Opcode::from(o.raw()), o);
            assert!(o.svc().is_some());
        }
        assert_eq!(Opcode::from(36).name(), "MDS_REINT");
        assert_eq!(Opcode::from(12345), Opcode::Unknown(12345));
        assert_eq!(Opcode::Unknown(7777).to_string(), "UNKNOWN(7777)");
        assert_eq!(Opcode::MgsConfigRead.svc().unwrap().pb_version(), 0x60003);
        assert_eq!(Opcode::MdsConnect.svc().unwrap().pb_version(), 0x10003);
        assert_eq!(Opcode::SeqQuery.svc().unwrap().pb_version(), 0x20003);
    }
}

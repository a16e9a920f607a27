//! Request and reply buffer layouts: which buffers, in which order, each ptlrpc request and
//! reply carries (`RQF_*` formats of `RMF_*` fields in `lustre/ptlrpc/layout.c`).
//!
//! The table itself is generated from layout.c (`tools/gen_rmf.py`) into `rmf_table.rs`; this
//! module looks formats up, maps opcodes (and REINT sub-opcodes and intents) to formats the
//! way Lustre's servers do, and checks a message's buffers against a format.

use crate::error::{Result, WireError};
use crate::ldlm::it;
use crate::msg::LustreMsg;
use crate::opcode::{Opcode, reint};

#[path = "rmf_table.rs"]
mod table;

/// The field is a NUL-terminated string (`RMF_F_STRING`).
pub const F_STRING: u8 = 1;
/// Size is not checked against `size` (`RMF_F_NO_SIZE_CHECK`).
pub const F_NO_SIZE_CHECK: u8 = 2;
/// The field is an array of `size`-byte structs (`RMF_F_STRUCT_ARRAY`).
pub const F_STRUCT_ARRAY: u8 = 4;

/// A message field (`struct req_msg_field`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rmf {
    /// The `RMF_` suffix (`"MDT_BODY"`).
    pub id: &'static str,
    /// Lustre's field name (`"mdt_body"`).
    pub name: &'static str,
    /// `F_*` bits.
    pub flags: u8,
    /// Fixed (minimum) size, or None for variable.
    pub size: Option<usize>,
}

impl Rmf {
    /// Checks a buffer against the field's size rules, as `__req_capsule_get` does.
    pub fn check(&self, buf: &[u8]) -> Result<()> {
        if let Some(size) = self.size {
            if self.flags & F_STRUCT_ARRAY != 0 {
                if size != 0 && !buf.len().is_multiple_of(size) {
                    return Err(WireError::Misaligned {
                        what: self.name,
                        value: buf.len(),
                        align: size,
                    });
                }
            } else if self.flags & F_NO_SIZE_CHECK == 0 && buf.len() < size {
                return Err(WireError::Truncated { what: self.name, need: size, have: buf.len() });
            }
        }
        if self.flags & F_STRING != 0 && !buf.is_empty() && buf.last() != Some(&0) {
            return Err(WireError::BadString { what: self.name, detail: "not NUL-terminated" });
        }
        Ok(())
    }
}

/// A request format (`struct req_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fmt {
    /// The `RQF_` suffix (`"MDS_REINT_CREATE"`).
    pub id: &'static str,
    /// Lustre's format name.
    pub name: &'static str,
    /// Request fields (indexes into the field table); the first is always the body.
    pub client: &'static [usize],
    /// Reply fields.
    pub server: &'static [usize],
}

/// Which side of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request (`RCL_CLIENT`).
    Request,
    /// The reply (`RCL_SERVER`).
    Reply,
}

impl Fmt {
    fn idx(&self, side: Side) -> &'static [usize] {
        match side {
            Side::Request => self.client,
            Side::Reply => self.server,
        }
    }

    /// The fields of one side, in buffer order.
    pub fn fields(&self, side: Side) -> impl Iterator<Item = &'static Rmf> + '_ {
        self.idx(side).iter().filter_map(|&i| table::FIELDS.get(i))
    }

    /// Buffer index of field `id` on `side`.
    #[must_use]
    pub fn index_of(&self, side: Side, id: &str) -> Option<usize> {
        self.fields(side).position(|f| f.id == id)
    }

    /// Number of fields on `side`.
    #[must_use]
    pub fn len(&self, side: Side) -> usize {
        self.idx(side).len()
    }

    /// Whether `side` has no fields besides the body.
    #[must_use]
    pub fn is_empty(&self, side: Side) -> bool {
        self.len(side) <= 1
    }

    /// Checks a message against this format: at least `required` buffers present (older
    /// peers may omit trailing optional fields; newer ones may append fields we do not know),
    /// and every present buffer that the format names obeys its field's size rules.
    pub fn check(&self, side: Side, msg: &LustreMsg<'_>, required: usize) -> Result<()> {
        if msg.bufcount() < required.min(self.len(side)) {
            return Err(WireError::Truncated {
                what: self.name,
                need: required,
                have: msg.bufcount(),
            });
        }
        for (i, f) in self.fields(side).enumerate() {
            match msg.buf(i) {
                Some(b) => f.check(b)?,
                None => break,
            }
        }
        Ok(())
    }
}

/// Every format.
#[must_use]
pub fn formats() -> &'static [Fmt] {
    table::FORMATS
}

/// Every field.
#[must_use]
pub fn fields() -> &'static [Rmf] {
    table::FIELDS
}

/// The format with `RQF_` suffix `id`.
#[must_use]
pub fn format(id: &str) -> Option<&'static Fmt> {
    table::FORMATS.iter().find(|f| f.id == id)
}

/// The field with `RMF_` suffix `id`.
#[must_use]
pub fn field(id: &str) -> Option<&'static Rmf> {
    table::FIELDS.iter().find(|f| f.id == id)
}

/// The format a server first applies to a request of `opc` (before any REINT or intent
/// refinement), as Lustre's handler tables do. None for opcodes no server serves.
#[must_use]
pub fn request_format(opc: Opcode) -> Option<&'static Fmt> {
    use Opcode as O;
    let id = match opc {
        O::ObdPing => "OBD_PING",
        O::ObdIdxRead => "OBD_IDX_READ",
        O::SecCtxInit | O::SecCtxInitCont | O::SecCtxFini => "SEC_CTX",
        O::MgsConnect => "CONNECT",
        O::MgsDisconnect | O::MdsDisconnect => "MDS_DISCONNECT",
        O::MgsTargetReg => "MGS_TARGET_REG",
        O::MgsSetInfo => "MGS_SET_INFO",
        O::MgsConfigRead => "MGS_CONFIG_READ",
        O::SeqQuery => "SEQ_QUERY",
        O::FldQuery => "FLD_QUERY",
        O::FldRead => "FLD_READ",
        O::MdsQuotactl => "MDS_QUOTACTL",
        O::OstQuotactl => "OST_QUOTACTL",
        O::QuotaDqacq => "QUOTA_DQACQ",
        O::MdsGetRoot => "MDS_GET_ROOT",
        O::MdsStatfs => "MDS_STATFS",
        O::MdsSync => "MDS_SYNC",
        O::MdsGetattr => "MDS_GETATTR",
        O::MdsGetxattr => "MDS_GETXATTR",
        O::MdsGetattrName => "MDS_GETATTR_NAME",
        O::MdsReint => "MDS_REINT",
        O::MdsConnect => "MDS_CONNECT",
        O::MdsGetInfo => "MDS_GET_INFO",
        O::MdsSetInfo => "MDT_SET_INFO",
        O::LdlmEnqueue => "LDLM_ENQUEUE",
        O::LdlmConvert => "LDLM_CONVERT",
        O::LdlmCancel => "LDLM_CANCEL",
        O::LdlmBlCallback => "LDLM_BL_CALLBACK",
        O::LdlmCpCallback => "LDLM_CP_CALLBACK",
        O::LdlmGlCallback => "LDLM_GL_CALLBACK",
        O::MdsClose => "MDS_CLOSE",
        O::MdsReadpage => "MDS_READPAGE",
        O::MdsHsmAction => "MDS_HSM_ACTION",
        O::MdsHsmProgress => "MDS_HSM_PROGRESS",
        O::MdsHsmCtRegister => "MDS_HSM_CT_REGISTER",
        O::MdsHsmCtUnregister => "MDS_HSM_CT_UNREGISTER",
        O::MdsHsmStateGet => "MDS_HSM_STATE_GET",
        O::MdsHsmStateSet => "MDS_HSM_STATE_SET",
        O::MdsHsmRequest => "MDS_HSM_REQUEST",
        O::MdsSwapLayouts => "MDS_SWAP_LAYOUTS",
        O::MdsRmfid => "MDS_RMFID",
        O::LlogOriginHandleCreate => "LLOG_ORIGIN_HANDLE_CREATE",
        O::LlogOriginHandleNextBlock => "LLOG_ORIGIN_HANDLE_NEXT_BLOCK",
        O::LlogOriginHandlePrevBlock => "LLOG_ORIGIN_HANDLE_PREV_BLOCK",
        O::LlogOriginHandleReadHeader => "LLOG_ORIGIN_HANDLE_READ_HEADER",
        O::OstConnect => "OST_CONNECT",
        O::OstDisconnect => "OST_DISCONNECT",
        O::OstGetattr => "OST_GETATTR",
        O::OstSetattr => "OST_SETATTR",
        O::OstCreate => "OST_CREATE",
        O::OstPunch => "OST_PUNCH",
        O::OstFallocate => "OST_FALLOCATE",
        O::OstSeek => "OST_SEEK",
        O::OstSync => "OST_SYNC",
        O::OstDestroy => "OST_DESTROY",
        O::OstRead => "OST_BRW_READ",
        O::OstWrite => "OST_BRW_WRITE",
        O::OstStatfs => "OST_STATFS",
        O::OstGetInfo => "OST_GET_INFO",
        O::OstSetInfo => "OBD_SET_INFO",
        O::OstLadvise => "OST_LADVISE",
        O::LfsckNotify => "LFSCK_NOTIFY",
        O::LfsckQuery => "LFSCK_QUERY",
        O::OutUpdate => "OUT_UPDATE",
        _ => return None,
    };
    format(id)
}

/// The format of an MDS_REINT request by its sub-opcode (`mdt_reint_opcode`).
#[must_use]
pub fn reint_format(op: u32) -> Option<&'static Fmt> {
    format(match op {
        reint::SETATTR => "MDS_REINT_SETATTR",
        reint::CREATE => "MDS_REINT_CREATE",
        reint::LINK => "MDS_REINT_LINK",
        reint::UNLINK | reint::RMENTRY => "MDS_REINT_UNLINK",
        reint::RENAME => "MDS_REINT_RENAME",
        reint::OPEN => "MDS_REINT_OPEN",
        reint::SETXATTR => "MDS_REINT_SETXATTR",
        reint::MIGRATE => "MDS_REINT_MIGRATE",
        reint::RESYNC => "MDS_REINT_RESYNC",
        _ => return None,
    })
}

/// The format of a REINT_CREATE by what it creates: symlinks carry their target in SYMTGT,
/// everything else an EADATA (layout or ACL).
#[must_use]
pub fn reint_create_format(mode: u32) -> Option<&'static Fmt> {
    const S_IFMT: u32 = 0o170000;
    const S_IFLNK: u32 = 0o120000;
    format(if mode & S_IFMT == S_IFLNK { "MDS_REINT_CREATE_SYM" } else { "MDS_REINT_CREATE_ACL" })
}

/// The format of an LDLM_ENQUEUE with an intent of `opc` (`mdt_intent_fixups` and the OST
/// intent handler).
#[must_use]
pub fn intent_format(opc: u64) -> Option<&'static Fmt> {
    format(if opc & (it::OPEN | it::CREAT) != 0 {
        "LDLM_INTENT_OPEN"
    } else if opc & (it::GETATTR | it::LOOKUP) != 0 {
        "LDLM_INTENT_GETATTR"
    } else if opc & it::LAYOUT != 0 {
        "LDLM_INTENT_LAYOUT"
    } else if opc & it::GETXATTR != 0 {
        "LDLM_INTENT_GETXATTR"
    } else if opc & (it::QUOTA_DQACQ | it::QUOTA_CONN) != 0 {
        "LDLM_INTENT_QUOTA"
    } else if opc & (it::GLIMPSE | it::BRW) != 0 {
        "LDLM_INTENT"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_reference() {
        // Spot checks against the reference's buffer-order table.
        let ids = |f: &Fmt, s| f.fields(s).map(|r| r.id).collect::<Vec<_>>();
        let connect = format("MDS_CONNECT").unwrap();
        assert_eq!(
            ids(connect, Side::Request),
            ["PTLRPC_BODY", "TGTUUID", "CLUUID", "CONN", "CONNECT_DATA", "SELINUX_POL"]
        );
        assert_eq!(ids(connect, Side::Reply), ["PTLRPC_BODY", "CONNECT_DATA"]);
        let open = format("LDLM_INTENT_OPEN").unwrap();
        assert_eq!(
            ids(open, Side::Request),
            [
                "PTLRPC_BODY",
                "DLM_REQ",
                "LDLM_INTENT",
                "REC_REINT",
                "CAPA1",
                "CAPA2",
                "NAME",
                "EADATA",
                "FILE_SECCTX_NAME",
                "FILE_SECCTX",
                "SELINUX_POL",
                "FILE_ENCCTX"
            ]
        );
        let brw = format("OST_BRW_WRITE").unwrap();
        assert_eq!(
            ids(brw, Side::Request),
            ["PTLRPC_BODY", "OST_BODY", "OBD_IOOBJ", "NIOBUF_REMOTE", "CAPA1", "SHORT_IO"]
        );
        assert_eq!(ids(brw, Side::Reply), ["PTLRPC_BODY", "OST_BODY", "RCS"]);
        let f = field("TGTUUID").unwrap();
        assert_eq!(f.size, Some(39));
        assert_eq!(field("DLM_REQ").unwrap().size, Some(104));
        assert_eq!(field("MDT_BODY").unwrap().size, Some(216));
        assert_eq!(field("REC_REINT").unwrap().size, Some(136));
        for f in formats() {
            assert_eq!(f.fields(Side::Request).next().unwrap().id, "PTLRPC_BODY", "{}", f.id);
        }
    }

    #[test]
    fn every_named_opcode_with_a_server_has_a_format() {
        for &o in Opcode::ALL {
            if let Some(f) = request_format(o) {
                assert!(!f.client.is_empty());
            }
        }
        assert_eq!(reint_format(reint::RENAME).unwrap().id, "MDS_REINT_RENAME");
        assert_eq!(intent_format(it::OPEN | it::CREAT).unwrap().id, "LDLM_INTENT_OPEN");
        assert_eq!(intent_format(it::LOOKUP).unwrap().id, "LDLM_INTENT_GETATTR");
        assert_eq!(reint_create_format(0o120777).unwrap().id, "MDS_REINT_CREATE_SYM");
    }
}

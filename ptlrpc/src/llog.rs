//! Reading a configuration log from an MGS over an import (LLOG_ORIGIN_HANDLE_CREATE, then
//! READ_HEADER, then NEXT_BLOCK until -EBADR), as both a client's MGC and a server target's
//! MGC do.

use crate::client::Import;
use crate::error::{Result, RpcError, errno};
use proto::build::MsgBuilder;
use proto::cfg::LustreCfg;
use proto::llog::{LlogLogHdr, LlogRecIter, LlogdBody, rec_type};
use proto::opcode::Opcode;
use proto::wire::Wire;

/// Chunk size asked for per NEXT_BLOCK (an llog chunk).
const CHUNK: u32 = 8192;
/// Blocks read before giving up on a runaway log.
const MAX_BLOCKS: usize = 4096;

/// The live `lustre_cfg` records of log `name`, in order. A missing log is
/// `RpcError::Status(-ENOENT)`.
pub async fn read_config_log(mgc: &Import, name: &str) -> Result<Vec<LustreCfg>> {
    let mut nm = name.as_bytes().to_vec();
    nm.push(0);
    let b = MsgBuilder::request(Opcode::LlogOriginHandleCreate)?
        .wire("LLOGD_BODY", &LlogdBody::default())?
        .set("NAME", nm)?;
    let rep = mgc.rpc(b, None).await?.ok()?;
    let body = LlogdBody::read(rep.buf("llogd_body", 1, 48)?)?;
    let b = MsgBuilder::request(Opcode::LlogOriginHandleReadHeader)?.wire("LLOGD_BODY", &body)?;
    let rep = mgc.rpc(b, None).await?.ok()?;
    let hdr = LlogLogHdr::read(rep.buf("llog_log_hdr", 1, 8192)?)?;
    let mut recs = Vec::new();
    let mut q = body;
    q.lgd_index = 1.into();
    q.lgd_cur_offset = u64::from(CHUNK).into();
    q.lgd_len = CHUNK.into();
    for _ in 0..MAX_BLOCKS {
        let b = MsgBuilder::request(Opcode::LlogOriginHandleNextBlock)?.wire("LLOGD_BODY", &q)?;
        let rep = mgc.rpc(b, None).await?;
        if rep.status() == -errno::EBADR {
            return Ok(recs);
        }
        let rep = rep.ok()?;
        let rb = LlogdBody::read(rep.buf("llogd_body", 1, 48)?)?;
        let chunk = rep.buf("llog chunk", 2, 0)?;
        for r in LlogRecIter::new(chunk) {
            let r = r?;
            let idx = r.hdr.lrh_index.get();
            if r.hdr.lrh_type.get() == rec_type::OBD_CFG
                && hdr.is_live(idx)
                && idx >= q.lgd_index.get()
            {
                recs.push(LustreCfg::decode(r.body)?);
            }
        }
        q.lgd_index = (rb.lgd_saved_index.get() + 1).into();
        q.lgd_cur_offset = rb.lgd_cur_offset;
    }
    Err(RpcError::BadReply("config log too long"))
}

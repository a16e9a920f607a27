//! The server side of ptlrpc: decoding an incoming request, the reply rules, and bulk.

use crate::error::{Result, RpcError};
use crate::portals::reply_portal_for;
use lnd::{Lnet, MdOptions, MdSpec, ProcessId};
use proto::body::{PtlrpcBodyV3, msg_kind};
use proto::build::MsgBuilder;
use proto::msg::{LustreMsg, PTLRPC_REPLY_OFFSET_AT, msghdr};
use proto::nid::Nid;
use proto::opcode::Opcode;
use std::time::Duration;

/// How long a reply or bulk transfer may take before it is abandoned.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A request as a service handles it.
#[derive(Debug)]
pub struct Incoming {
    /// The sender.
    pub peer: ProcessId,
    /// Our NID it was addressed to.
    pub self_nid: Nid,
    /// Its xid (the match bits it came with).
    pub xid: u64,
    /// The portal it arrived on.
    pub portal: u32,
    /// The message bytes.
    pub data: Vec<u8>,
    /// The decoded body.
    pub body: PtlrpcBodyV3,
    /// `lm_flags` of the request.
    pub lm_flags: u32,
}

/// A request that cannot be served, and whether it can be answered.
#[derive(Debug)]
pub enum Refused {
    /// Not even the envelope decodes: LNet-level garbage, dropped (counted).
    Drop(RpcError),
    /// The body decodes but the request is bad: answer with an error reply.
    Answer(Box<Incoming>, i32),
}

impl Incoming {
    /// Decodes an LNet request. Garbage is dropped; a request with a readable body but a
    /// broken message gets an error reply.
    pub fn decode(r: lnd::Request) -> std::result::Result<Incoming, Refused> {
        let mut r = r;
        let data = std::mem::take(&mut r.data);
        let (peer, xid, portal, self_nid) = (r.initiator, r.match_bits, r.portal, r.self_nid);
        drop(r); // repost the request buffer at once
        let m = match LustreMsg::decode(&data) {
            Ok(m) => m,
            Err(e) => return Err(Refused::Drop(e.into())),
        };
        let lm_flags = m.header().lm_flags.get();
        let body = match m.body() {
            Ok(b) => b,
            Err(e) => return Err(Refused::Drop(e.into())),
        };
        if body.pb_type.get() != msg_kind::REQUEST {
            return Err(Refused::Drop(RpcError::BadReply("not a request")));
        }
        Ok(Incoming { peer, self_nid, xid, portal, data, body, lm_flags })
    }

    /// The message (decoded again; cheap).
    pub fn msg(&self) -> Result<LustreMsg<'_>> {
        Ok(LustreMsg::decode(&self.data)?)
    }

    /// The opcode.
    #[must_use]
    pub fn opc(&self) -> Opcode {
        self.body.opc()
    }

    /// Where the final reply goes in the client's buffer: 224 when the client supports
    /// adaptive timeouts (room for an early reply in front), else 0.
    #[must_use]
    pub fn reply_offset(&self) -> u32 {
        if self.lm_flags & msghdr::AT_SUPPORT != 0 { PTLRPC_REPLY_OFFSET_AT } else { 0 }
    }

    /// The match bits of the reply: `pb_mbits` when the export negotiated REP_MBITS (never for
    /// connects), else the xid.
    #[must_use]
    pub fn reply_match_bits(&self, rep_mbits: bool) -> u64 {
        let connect =
            matches!(self.opc(), Opcode::MdsConnect | Opcode::OstConnect | Opcode::MgsConnect);
        if rep_mbits && !connect && self.body.pb_mbits.get() != 0 {
            self.body.pb_mbits.get()
        } else {
            self.xid
        }
    }

    /// Whether the client resent it.
    #[must_use]
    pub fn is_resent(&self) -> bool {
        self.body.pb_flags.get() & proto::body::msg_flags::RESENT != 0
    }
}

/// Packs an error reply (`PTL_RPC_MSG_ERR`, body only) with a negative errno.
pub fn error_reply(body: &PtlrpcBodyV3, status: i32) -> Result<Vec<u8>> {
    Ok(MsgBuilder::error_reply(body, status)?)
}

/// Sends `reply` for `req` to the client's reply portal.
pub async fn send_reply(
    lnet: &Lnet,
    req: &Incoming,
    reply: Vec<u8>,
    rep_mbits: bool,
) -> Result<()> {
    let portal = reply_portal_for(req.portal)
        .ok_or(RpcError::BadReply("request portal has no reply portal"))?;
    lnet.put_and_wait(
        reply,
        req.peer,
        portal,
        req.reply_match_bits(rep_mbits),
        req.reply_offset(),
        false,
        REPLY_TIMEOUT,
    )
    .await?;
    Ok(())
}

/// The bulk match bits of a request: the base of `count` consecutive MDs ending at
/// `pb_mbits` (or the xid).
#[must_use]
pub fn bulk_match_bits(req: &Incoming, count: u32) -> u64 {
    let last = if req.body.pb_mbits.get() != 0 { req.body.pb_mbits.get() } else { req.xid };
    last.saturating_sub(u64::from(count.saturating_sub(1)))
}

/// The match bits of a BRW's bulk as `ptlrpc_start_bulk_transfer` computes them: the RPC
/// carries the match bits of its last MD (`pb_mbits` with BULK_MBITS, else the xid); the
/// first is that value with the low bits of `max_brw` (the client's MD limit from
/// `ioo_max_brw`, a power of two) cleared. Returns the first match bits and how many MDs the
/// client posted.
#[must_use]
pub fn bulk_mbits_range(req: &Incoming, max_brw: u32, bulk_mbits: bool) -> (u64, u32) {
    let last =
        if bulk_mbits && req.body.pb_mbits.get() != 0 { req.body.pb_mbits.get() } else { req.xid };
    let mask = u64::from(max_brw.max(1).next_power_of_two()) - 1;
    let base = last & !mask;
    (base, u32::try_from(last - base + 1).unwrap_or(u32::MAX))
}

/// Why a bulk transfer of a BRW failed (the server then sends no reply, as
/// `tgt_brw_read`/`tgt_brw_write` set `rq_no_reply`, and the client resends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkError {
    /// The network operation failed or timed out (`target_bulk_io`: -ETIMEDOUT).
    Network(String),
    /// An MD delivered fewer bytes than the server expected ("truncated bulk", -ETIMEDOUT in
    /// Lustre too).
    Truncated {
        /// Which MD.
        md: usize,
        /// Bytes expected.
        want: usize,
        /// Bytes moved.
        got: usize,
    },
    /// The client posted fewer MDs than the data needs.
    TooFewMds {
        /// MDs the data needs.
        need: usize,
        /// MDs the client posted.
        posted: u32,
    },
}

impl std::fmt::Display for BulkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BulkError::Network(e) => write!(f, "network error on bulk: {e}"),
            BulkError::Truncated { md, want, got } => {
                write!(f, "truncated bulk: MD {md} moved {got} of {want} bytes")
            }
            BulkError::TooFewMds { need, posted } => {
                write!(f, "bulk needs {need} MDs, the client posted {posted}")
            }
        }
    }
}

/// Fetches a BRW's data from the client (OST_WRITE, `ptlrpc_start_bulk_transfer` with a GET
/// sink): one GET per buffer (`bufs[i]` sized to MD `i`) from match bits `base + i`, and a
/// 0-length GET for every further MD the client posted (up to `posted`), so every client MD
/// is consumed. Each MD must deliver its whole buffer. All within `timeout`.
pub async fn brw_bulk_get(
    lnet: &Lnet,
    peer: ProcessId,
    portal: u32,
    (base, posted): (u64, u32),
    bufs: Vec<Vec<u8>>,
    timeout: Duration,
) -> std::result::Result<Vec<Vec<u8>>, BulkError> {
    let need = bufs.len();
    if need > posted as usize {
        return Err(BulkError::TooFewMds { need, posted });
    }
    let wants: Vec<usize> = bufs.iter().map(Vec::len).collect();
    let mut pending = Vec::with_capacity(posted as usize);
    let all = bufs.into_iter().chain(std::iter::repeat_with(Vec::new)).take(posted as usize);
    for (i, b) in all.enumerate() {
        let mb = base + i as u64;
        pending.push(glommio::spawn_local({
            let lnet = lnet.clone();
            async move { lnet.get_and_wait(b, peer, portal, mb, 0, timeout).await }
        }));
    }
    let mut out = Vec::with_capacity(need);
    let mut err = None;
    for (i, p) in pending.into_iter().enumerate() {
        match p.await {
            Ok((buf, got)) => {
                let want = wants.get(i).copied().unwrap_or(0);
                if got != want && err.is_none() {
                    err = Some(BulkError::Truncated { md: i, want, got });
                }
                if i < need {
                    out.push(buf);
                }
            }
            Err(e) => {
                if err.is_none() {
                    err = Some(BulkError::Network(e.to_string()));
                }
            }
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Sends a BRW's data to the client (OST_READ, a PUT source with ACKs): one PUT per buffer to
/// match bits `base + i`, then a 0-length PUT for every further MD the client posted (a read
/// that ended early still consumes them all: the client waits for every MD).
pub async fn brw_bulk_put(
    lnet: &Lnet,
    peer: ProcessId,
    portal: u32,
    (base, posted): (u64, u32),
    bufs: Vec<Vec<u8>>,
    timeout: Duration,
) -> std::result::Result<(), BulkError> {
    let need = bufs.len();
    if need > posted as usize {
        return Err(BulkError::TooFewMds { need, posted });
    }
    let mut pending = Vec::with_capacity(posted as usize);
    let all = bufs.into_iter().chain(std::iter::repeat_with(Vec::new)).take(posted as usize);
    for (i, b) in all.enumerate() {
        let mb = base + i as u64;
        pending.push(glommio::spawn_local({
            let lnet = lnet.clone();
            async move { lnet.put_and_wait(b, peer, portal, mb, 0, true, timeout).await }
        }));
    }
    let mut err = None;
    for p in pending {
        if let Err(e) = p.await
            && err.is_none()
        {
            err = Some(BulkError::Network(e.to_string()));
        }
    }
    err.map_or(Ok(()), Err)
}

/// Fetches bulk data from the client (OST_WRITE): one GET per client MD into `bufs`, in
/// order, from `portal` with consecutive match bits from `base`. Returns the buffers and the
/// bytes received into each.
pub async fn bulk_get(
    lnet: &Lnet,
    peer: ProcessId,
    portal: u32,
    base: u64,
    bufs: Vec<Vec<u8>>,
) -> Result<Vec<(Vec<u8>, usize)>> {
    let mut out = Vec::with_capacity(bufs.len());
    let mut pending = Vec::new();
    for (i, b) in bufs.into_iter().enumerate() {
        let mb = base + i as u64;
        pending.push(glommio::spawn_local({
            let lnet = lnet.clone();
            async move { lnet.get_and_wait(b, peer, portal, mb, 0, REPLY_TIMEOUT).await }
        }));
    }
    for p in pending {
        out.push(p.await?);
    }
    Ok(out)
}

/// Sends bulk data to the client (OST_READ, MDS_READPAGE): one PUT per buffer with an ACK
/// requested, to `portal` with consecutive match bits from `base`. A zero-length buffer is
/// sent as a 0-byte PUT (the client waits until every MD it posted is consumed).
pub async fn bulk_put(
    lnet: &Lnet,
    peer: ProcessId,
    portal: u32,
    base: u64,
    bufs: Vec<Vec<u8>>,
) -> Result<()> {
    let mut pending = Vec::new();
    for (i, b) in bufs.into_iter().enumerate() {
        let mb = base + i as u64;
        pending.push(glommio::spawn_local({
            let lnet = lnet.clone();
            async move { lnet.put_and_wait(b, peer, portal, mb, 0, true, REPLY_TIMEOUT).await }
        }));
    }
    for p in pending {
        p.await?;
    }
    Ok(())
}

/// Options for request buffers of a service portal.
#[derive(Debug, Clone, Copy)]
pub struct ServiceBuffers {
    /// Buffers posted per shard.
    pub count: usize,
    /// Largest request accepted (bigger ones are dropped by LNet).
    pub size: usize,
}

/// Posts request buffers for a service on `portal` of this shard.
pub fn request_queue(lnet: &Lnet, portal: u32, b: ServiceBuffers) -> Result<lnd::RequestQueue> {
    Ok(lnet.request_queue(portal, b.count, b.size)?)
}

/// MD options for a source of a GET (client side of a write bulk).
#[must_use]
pub fn get_source_opts() -> MdOptions {
    MdOptions { op_get: true, threshold: Some(1), ..MdOptions::default() }
}

/// MD options for a sink of a PUT (client side of a read bulk).
#[must_use]
pub fn put_sink_opts() -> MdOptions {
    MdOptions { op_put: true, threshold: Some(1), truncate: true, ..MdOptions::default() }
}

/// An MD spec over one buffer.
#[must_use]
pub fn md(buf: Vec<u8>, opts: MdOptions, user: u64) -> MdSpec {
    MdSpec::new(buf).options(opts).user(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(xid: u64, mbits: u64) -> Incoming {
        let mut body = PtlrpcBodyV3::request(Opcode::OstWrite);
        body.pb_mbits = mbits.into();
        Incoming {
            peer: ProcessId::lustre(Nid::tcp([127, 0, 0, 1])),
            self_nid: Nid::tcp([127, 0, 0, 1]),
            xid,
            portal: 6,
            data: Vec::new(),
            body,
            lm_flags: 0,
        }
    }

    #[test]
    fn bulk_match_bits_follow_ptlrpc_start_bulk_transfer() {
        // A client with a 4 MiB brw_size (max_brw 4) sending 3 MDs: pb_mbits is the last MD's
        // bits; the first is that with the low two bits cleared.
        let x = 0x1234_5680u64;
        assert_eq!(bulk_mbits_range(&inc(x, x + 2), 4, true), (x, 3));
        assert_eq!(bulk_mbits_range(&inc(x, x + 3), 4, true), (x, 4));
        assert_eq!(bulk_mbits_range(&inc(x, x), 1, true), (x, 1));
        // Without BULK_MBITS the xid is the only MD's match bits.
        assert_eq!(bulk_mbits_range(&inc(x, x + 2), 4, false), (x, 1));
    }
}

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

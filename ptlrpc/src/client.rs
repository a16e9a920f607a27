//! The client side of ptlrpc: an import (a connection to one target), RPCs with their reply
//! and bulk buffers, resends after timeouts, reconnects, and the pinger.

use crate::error::{Result, RpcError, errno};
use crate::portals::XidGen;
use lnd::{EventKind, Lnet, MatchEntry, MdOptions, MdSpec, ProcessId};
use proto::body::{PtlrpcBodyV3, msg_connect, msg_flags, msg_kind};
use proto::build::MsgBuilder;
use proto::connect::ObdConnectData;
use proto::fid::LustreHandle;
use proto::msg::{LustreMsg, PTLRPC_REPLY_OFFSET_AT, msghdr};
use proto::opcode::Opcode;
use proto::wire::{Wire, cstr_array};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Where and how an import talks.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// The target's process.
    pub target: ProcessId,
    /// Portal requests go to (26 MGS, 12 MDS, 28 OST, ...).
    pub request_portal: u32,
    /// Portal our replies arrive on (25 MGC, 10 MDC, 4 OSC, ...).
    pub reply_portal: u32,
    /// The target's UUID (`MGS`, `fsname-MDT0000_UUID`).
    pub target_uuid: String,
    /// Our UUID for this connection.
    pub client_uuid: String,
    /// Our connection cookie (`imp_dlm_handle`): callbacks to us carry it.
    pub conn_cookie: u64,
    /// The connect opcode (MGS_CONNECT, MDS_CONNECT, OST_CONNECT).
    pub connect_op: Opcode,
    /// How long to wait for a reply before resending.
    pub timeout: Duration,
    /// Sends of one request (first try plus resends) before giving up.
    pub max_sends: u32,
    /// Reply buffer size (grown for requests that expect big replies).
    pub reply_size: usize,
    /// Job id sent in `pb_jobid`.
    pub jobid: String,
}

impl ImportConfig {
    /// Defaults for a connection to `target`.
    #[must_use]
    pub fn new(
        target: ProcessId,
        request_portal: u32,
        reply_portal: u32,
        target_uuid: &str,
        client_uuid: &str,
        connect_op: Opcode,
    ) -> ImportConfig {
        ImportConfig {
            target,
            request_portal,
            reply_portal,
            target_uuid: target_uuid.into(),
            client_uuid: client_uuid.into(),
            conn_cookie: 0,
            connect_op,
            timeout: Duration::from_secs(20),
            max_sends: 3,
            reply_size: 16 << 10,
            jobid: String::new(),
        }
    }
}

/// Bulk buffers of an RPC, posted before the request is sent.
#[derive(Debug)]
pub struct Bulk {
    /// Portal (8 OST, 14 MDS, 33 MGS).
    pub portal: u32,
    /// The server GETs from these (a write) instead of PUTting into them (a read).
    pub server_gets: bool,
    /// One buffer per MD (each at most 1 MiB).
    pub bufs: Vec<Vec<u8>>,
}

/// A reply.
#[derive(Debug)]
pub struct Reply {
    /// The reply message bytes.
    pub data: Vec<u8>,
    /// Its body.
    pub body: PtlrpcBodyV3,
    /// Bulk buffers, back, with the bytes moved in each.
    pub bulk: Vec<(Vec<u8>, usize)>,
}

impl Reply {
    /// The message.
    pub fn msg(&self) -> Result<LustreMsg<'_>> {
        Ok(LustreMsg::decode(&self.data)?)
    }
    /// `pb_status`.
    #[must_use]
    pub fn status(&self) -> i32 {
        self.body.pb_status.get()
    }
    /// Fails on a negative status.
    pub fn ok(self) -> Result<Reply> {
        if self.status() < 0 { Err(RpcError::Status(self.status())) } else { Ok(self) }
    }
    /// Buffer `i` of the reply, at least `min` bytes.
    pub fn buf(&self, what: &'static str, i: usize, min: usize) -> Result<&[u8]> {
        let m = LustreMsg::decode(&self.data)?;
        m.need(what, i, min)?;
        let r = m.buf_range(i).ok_or(RpcError::BadReply("missing buffer"))?;
        self.data.get(r).ok_or(RpcError::BadReply("buffer outside the reply"))
    }
}

#[derive(Debug, Default)]
struct State {
    export: u64,
    conn_cnt: u32,
    connected: bool,
    evicted: bool,
    data: Option<ObdConnectData>,
    last_xid: u64,
    last_used: Option<Instant>,
}

/// What an import's owner does when it learns the server evicted it.
pub type EvictedHook = Rc<dyn Fn()>;

/// A connection to one target.
pub struct Import {
    lnet: Lnet,
    cfg: ImportConfig,
    xids: Rc<XidGen>,
    st: RefCell<State>,
    /// Connect data we ask with (kept for reconnects).
    ask: RefCell<Option<ObdConnectData>>,
    reconnecting: Cell<bool>,
    /// Counters.
    pub sent: Cell<u64>,
    /// Resends.
    pub resent: Cell<u64>,
    /// Evictions noticed (a request refused with -ENOTCONN while we thought we were connected).
    pub evictions: Cell<u64>,
    on_evicted: RefCell<Option<EvictedHook>>,
}

impl std::fmt::Debug for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Import")
            .field("target", &self.cfg.target_uuid)
            .field("state", &self.st.borrow())
            .field("sent", &self.sent.get())
            .field("resent", &self.resent.get())
            .field("evictions", &self.evictions.get())
            .finish_non_exhaustive()
    }
}

impl Import {
    /// Calls `f` whenever the server is found to have evicted this import (its locks and open
    /// handles there are gone); the import itself reconnects.
    pub fn on_evicted(&self, f: impl Fn() + 'static) {
        *self.on_evicted.borrow_mut() = Some(Rc::new(f));
    }

    /// A new, unconnected import.
    #[must_use]
    pub fn new(lnet: Lnet, cfg: ImportConfig, xids: Rc<XidGen>) -> Rc<Import> {
        Rc::new(Import {
            lnet,
            cfg,
            xids,
            st: RefCell::new(State::default()),
            ask: RefCell::new(None),
            reconnecting: Cell::new(false),
            sent: Cell::new(0),
            resent: Cell::new(0),
            evictions: Cell::new(0),
            on_evicted: RefCell::new(None),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ImportConfig {
        &self.cfg
    }
    /// The connect data the server granted.
    #[must_use]
    pub fn connect_data(&self) -> Option<ObdConnectData> {
        self.st.borrow().data
    }
    /// Whether the import is connected.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.st.borrow().connected
    }
    /// The export cookie the server gave us.
    #[must_use]
    pub fn export_handle(&self) -> u64 {
        self.st.borrow().export
    }
    /// The next xid (for callers that need one before building the request).
    #[must_use]
    pub fn next_xid(&self) -> u64 {
        self.xids.next_xid()
    }
    /// Whether the server replies on `pb_mbits` (REP_MBITS negotiated).
    fn rep_mbits(&self) -> bool {
        self.st.borrow().data.is_some_and(|d| d.flags2() & proto::connect::flags2::REP_MBITS != 0)
    }
    /// The LNet handle.
    #[must_use]
    pub fn lnet(&self) -> &Lnet {
        &self.lnet
    }

    /// Connects (or reconnects) with `data`; returns what the server granted. Reply flags must
    /// be a subset of what we asked, or the connection is refused with -EPROTO as a Lustre
    /// client does.
    pub async fn connect(&self, data: ObdConnectData) -> Result<ObdConnectData> {
        *self.ask.borrow_mut() = Some(data);
        self.do_connect().await
    }

    async fn do_connect(&self) -> Result<ObdConnectData> {
        let data = self.ask.borrow().ok_or(RpcError::NotConnected)?;
        let (cnt, initial) = {
            let mut st = self.st.borrow_mut();
            st.conn_cnt += 1;
            (st.conn_cnt, st.export == 0)
        };
        let tgt = cstr_array::<39>("tgtuuid", &self.cfg.target_uuid)?;
        let cl = cstr_array::<39>("cluuid", &self.cfg.client_uuid)?;
        let mut b = MsgBuilder::request(self.cfg.connect_op)?
            .set("TGTUUID", tgt.to_vec())?
            .set("CLUUID", cl.to_vec())?
            .wire("CONN", &LustreHandle::new(self.cfg.conn_cookie))?
            .wire("CONNECT_DATA", &data)?;
        b.hdr_mut().flags = 0;
        {
            let body = b.body_mut();
            body.pb_conn_cnt = cnt.into();
            body.pb_op_flags =
                (if initial { msg_connect::INITIAL } else { 0 } | msg_connect::NEXT_VER).into();
        }
        let rep = self.send_once(b, None, None, None).await?;
        if rep.body.pb_type.get() == msg_kind::ERR || rep.status() < 0 {
            log::debug!("{}: connect refused: {}", self.cfg.target_uuid, rep.status());
            return Err(RpcError::Status(rep.status().min(-1)));
        }
        let got = ObdConnectData::decode_any(rep.buf("connect data", 1, 8)?)?;
        if got.flags() & !data.flags() != 0 || got.flags2() & !data.flags2() != 0 {
            log::warn!(
                "{}: granted connect flags we did not ask for: {:#x} {:#x}",
                self.cfg.target_uuid,
                got.flags() & !data.flags(),
                got.flags2() & !data.flags2()
            );
            return Err(RpcError::Status(-errno::EPROTO));
        }
        let mut st = self.st.borrow_mut();
        st.export = rep.body.pb_handle.get();
        st.connected = true;
        st.evicted = false;
        st.data = Some(got);
        Ok(got)
    }

    async fn reconnect(&self) -> Result<()> {
        if self.reconnecting.replace(true) {
            // Someone else is reconnecting: wait for them.
            while self.reconnecting.get() {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            return if self.is_connected() { Ok(()) } else { Err(RpcError::NotConnected) };
        }
        let r = self.do_connect().await;
        self.reconnecting.set(false);
        r.map(|_| ())
    }

    /// Sends a request built by `b` and waits for its reply, resending after timeouts (with
    /// MSG_RESENT and the same xid) and reconnecting when the server lost or evicted us.
    pub async fn rpc(&self, b: MsgBuilder, bulk: Option<Bulk>) -> Result<Reply> {
        self.rpc_via(None, b, bulk).await
    }

    /// Like [`Import::rpc`], to another portal of the same target (`(request, reply)`): a 2.15
    /// MDC sends getattr, close and readpage to the readpage portal, SEQ_QUERY to the sequence
    /// portal, and cancels to the cancel portal, whose replies come back on portal 18.
    pub async fn rpc_via(
        &self,
        portals: Option<(u32, u32)>,
        b: MsgBuilder,
        bulk: Option<Bulk>,
    ) -> Result<Reply> {
        let xid = self.xids.next_xid();
        let had_bulk = bulk.is_some();
        let mut bulk = bulk;
        let mut sends = 0;
        loop {
            if !self.is_connected() {
                self.reconnect().await?;
            }
            sends += 1;
            let resent = sends > 1;
            if resent {
                self.resent.set(self.resent.get() + 1);
            }
            let mut req = b.clone();
            {
                let st = self.st.borrow();
                let body = req.body_mut();
                body.pb_handle = LustreHandle::new(st.export);
                body.pb_conn_cnt = st.conn_cnt.into();
                body.pb_last_xid = st.last_xid.into();
                if resent {
                    body.pb_flags = (body.pb_flags.get() | msg_flags::RESENT).into();
                }
            }
            match self.send_once(req, bulk.take(), portals, Some(xid)).await {
                Ok(rep) => {
                    let s = rep.status();
                    if s == -errno::ENOTCONN || s == -errno::ENODEV {
                        // The server does not know us (restarted, or we were evicted).
                        let was_connected = {
                            let mut st = self.st.borrow_mut();
                            let was = st.connected && st.export != 0;
                            st.connected = false;
                            st.evicted |= s == -errno::ENOTCONN;
                            st.export = 0;
                            was
                        };
                        if was_connected {
                            self.evictions.set(self.evictions.get() + 1);
                            log::warn!(
                                "{}: evicted by the server; reconnecting",
                                self.cfg.target_uuid
                            );
                            let hook = self.on_evicted.borrow().clone();
                            if let Some(h) = hook {
                                h();
                            }
                        }
                        if sends >= self.cfg.max_sends {
                            return Err(RpcError::Status(s));
                        }
                        continue;
                    }
                    let mut st = self.st.borrow_mut();
                    st.last_xid = st.last_xid.max(xid);
                    st.last_used = Some(Instant::now());
                    return Ok(rep);
                }
                Err(e @ (RpcError::TimedOut | RpcError::Lnet(_))) => {
                    // Lost request or reply: reconnect before anything else is sent.
                    self.st.borrow_mut().connected = false;
                    // A bulk RPC's buffers went with the failed attempt's MDs: its caller
                    // rebuilds and resends it (as Lustre's OSC re-prepares a BRW).
                    if had_bulk || sends >= self.cfg.max_sends {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One send: post the reply MD (and bulk MDs), PUT the request, wait for the reply.
    async fn send_once(
        &self,
        mut b: MsgBuilder,
        bulk: Option<Bulk>,
        portals: Option<(u32, u32)>,
        xid: Option<u64>,
    ) -> Result<Reply> {
        let xid = xid.unwrap_or_else(|| self.xids.next_xid());
        let connect = b.body_mut().pb_opc.get() == self.cfg.connect_op.raw();
        self.sent.set(self.sent.get() + 1);
        let (rq, rp) = portals.unwrap_or((self.cfg.request_portal, self.cfg.reply_portal));
        let t = Target {
            id: self.cfg.target,
            request_portal: rq,
            reply_portal: rp,
            timeout: self.cfg.timeout,
            reply_size: self.cfg.reply_size,
            jobid: &self.cfg.jobid,
            rep_mbits: !connect && self.rep_mbits(),
        };
        exchange(&self.lnet, &t, b, bulk, xid).await
    }

    /// Sends an OBD_PING.
    pub async fn ping(&self) -> Result<()> {
        let b = MsgBuilder::request(Opcode::ObdPing)?;
        self.rpc(b, None).await?.ok().map(|_| ())
    }

    /// Runs the pinger: pings every `interval` while idle, until `stop` resolves true.
    pub async fn pinger(self: Rc<Self>, interval: Duration) {
        loop {
            glommio::timer::sleep(interval).await;
            if self.lnet.is_stopping() {
                return;
            }
            let idle = self.st.borrow().last_used.is_none_or(|t| t.elapsed() >= interval);
            if idle && let Err(e) = self.ping().await {
                log::info!("ping of {} failed: {e}", self.cfg.target_uuid);
            }
        }
    }

    /// Sends a DISCONNECT (built by `b`) once, waiting at most `timeout`, and marks the import
    /// disconnected whatever the answer: the server drops the export, or evicts it later.
    pub async fn disconnect(&self, b: MsgBuilder, timeout: Duration) -> Result<()> {
        let mut b = b;
        {
            let st = self.st.borrow();
            let body = b.body_mut();
            body.pb_handle = LustreHandle::new(st.export);
            body.pb_conn_cnt = st.conn_cnt.into();
        }
        let t = Target {
            id: self.cfg.target,
            request_portal: self.cfg.request_portal,
            reply_portal: self.cfg.reply_portal,
            timeout,
            reply_size: self.cfg.reply_size,
            jobid: &self.cfg.jobid,
            rep_mbits: self.rep_mbits(),
        };
        let r = exchange(&self.lnet, &t, b, None, self.xids.next_xid()).await;
        self.st.borrow_mut().connected = false;
        r.and_then(Reply::ok).map(|_| ())
    }

    /// Marks the import disconnected (the next RPC reconnects).
    pub fn disconnect_local(&self) {
        self.st.borrow_mut().connected = false;
    }

    /// Whether the server evicted us since the last connect.
    #[must_use]
    pub fn was_evicted(&self) -> bool {
        self.st.borrow().evicted
    }

    /// The wire size of `w` (convenience for callers sizing buffers).
    #[must_use]
    pub fn size_of<T: Wire>() -> usize {
        T::SIZE
    }
}

/// Where one exchange goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The peer.
    pub id: ProcessId,
    /// Its request portal.
    pub request_portal: u32,
    /// Our reply portal.
    pub reply_portal: u32,
    /// How long to wait.
    pub timeout: Duration,
    /// Reply buffer size.
    pub reply_size: usize,
    /// Job id for `pb_jobid`.
    pub jobid: &'a str,
    /// The server replies on `pb_mbits` rather than the xid (`OBD_CONNECT2_REP_MBITS`
    /// negotiated; never for connects): the reply MD is posted there, as `ptl_send_rpc` does.
    pub rep_mbits: bool,
}

/// One request/reply exchange with `t`: post the reply MD (and bulk MDs) for `xid`, PUT the
/// request, wait for the reply and, after a successful one, for every bulk MD to be consumed.
/// No import state: servers use it for lock callbacks, imports for every RPC.
pub async fn exchange(
    lnet: &Lnet,
    t: &Target<'_>,
    mut b: MsgBuilder,
    bulk: Option<Bulk>,
    xid: u64,
) -> Result<Reply> {
    let nbulk = bulk.as_ref().map_or(0, |b| b.bufs.len());
    {
        let body = b.body_mut();
        body.pb_timeout = u32::try_from(t.timeout.as_secs()).unwrap_or(u32::MAX).into();
        body.pb_mbits = (xid + u64::try_from(nbulk.saturating_sub(1)).unwrap_or(0)).into();
        if !t.jobid.is_empty() {
            body.pb_jobid = cstr_array("jobid", t.jobid).unwrap_or([0; 32]);
        }
    }
    let b_mbits = b.body_mut().pb_mbits.get();
    let size = t.reply_size;
    b.hdr_mut().repsize = u32::try_from(size).unwrap_or(u32::MAX);
    let msg = b.build()?;
    let at = LustreMsg::decode(&msg)?.header().lm_flags.get() & msghdr::AT_SUPPORT != 0;
    let eq = lnet.event_queue();
    let opts = MdOptions {
        op_put: true,
        threshold: Some(1),
        manage_remote: true,
        truncate: true,
        ..MdOptions::default()
    };
    let me = MatchEntry::bits(if t.rep_mbits { b_mbits } else { xid });
    let md = lnet.attach(
        t.reply_portal,
        me,
        MdSpec::new(vec![0u8; size + PTLRPC_REPLY_OFFSET_AT as usize]).options(opts),
        &eq,
    )?;
    // Bulk MDs: match bits xid..xid+n-1 on the bulk portal.
    let beq = lnet.event_queue();
    let mut bulk_mds = Vec::new();
    if let Some(bk) = bulk {
        let o = if bk.server_gets {
            crate::server::get_source_opts()
        } else {
            crate::server::put_sink_opts()
        };
        for (i, buf) in bk.bufs.into_iter().enumerate() {
            match lnet.attach(
                bk.portal,
                MatchEntry::bits(xid + i as u64),
                MdSpec::new(buf).options(o).user(i as u64),
                &beq,
            ) {
                Ok(h) => bulk_mds.push(h),
                Err(e) => {
                    let _ = lnet.unlink(md);
                    for h in bulk_mds {
                        let _ = lnet.unlink(h);
                    }
                    return Err(e.into());
                }
            }
        }
    }
    let cleanup = |lnet: &Lnet, mds: &[lnd::MdHandle]| {
        for h in mds {
            let _ = lnet.unlink(*h);
        }
    };
    if let Err(e) = lnet.put_and_wait(msg, t.id, t.request_portal, xid, 0, false, t.timeout).await {
        let _ = lnet.unlink(md);
        cleanup(lnet, &bulk_mds);
        return Err(e.into());
    }
    let deadline = Instant::now() + t.timeout;
    let reply = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = futures_lite::future::or(async { Some(eq.next().await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        let Some(ev) = ev else {
            let _ = lnet.unlink(md);
            cleanup(lnet, &bulk_mds);
            return Err(RpcError::TimedOut);
        };
        if ev.kind != EventKind::Put {
            if ev.unlinked {
                return Err(ev.status.err().map_or(RpcError::TimedOut, RpcError::from));
            }
            continue;
        }
        let buf = ev.buffers.and_then(lnd::MdBuffers::into_vec).unwrap_or_default();
        let off = ev.offset as usize;
        let data = buf.get(off..off + ev.mlength as usize).unwrap_or_default().to_vec();
        if at && off == 0 {
            // An early reply (AT): the final one is still to come at offset 224. Repost.
            log::debug!("early reply for xid {xid:#x}");
            let md2 = lnet.attach(
                t.reply_portal,
                me,
                MdSpec::new(vec![0u8; size + PTLRPC_REPLY_OFFSET_AT as usize]).options(opts),
                &eq,
            )?;
            let _ = md2;
            continue;
        }
        break data;
    };
    let m = LustreMsg::decode(&reply)?;
    let body = m.body()?;
    if body.opc() != LustreMsg::decode(&b.build()?)?.body()?.opc()
        && body.pb_type.get() != msg_kind::ERR
    {
        cleanup(lnet, &bulk_mds);
        return Err(RpcError::BadReply("reply opcode differs from the request's"));
    }
    // With a successful reply, every posted bulk MD has been consumed (or will be).
    let mut got = Vec::new();
    if !bulk_mds.is_empty() {
        if body.pb_status.get() < 0 {
            cleanup(lnet, &bulk_mds);
        }
        let mut left_mds = bulk_mds.len();
        let mut slots: Vec<Option<(Vec<u8>, usize)>> = (0..bulk_mds.len()).map(|_| None).collect();
        let mut moved = vec![0usize; bulk_mds.len()];
        while left_mds > 0 {
            let left =
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
            let ev = futures_lite::future::or(async { Some(beq.next().await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await;
            let Some(ev) = ev else {
                cleanup(lnet, &bulk_mds);
                return Err(RpcError::TimedOut);
            };
            let i = usize::try_from(ev.user).unwrap_or(0);
            if matches!(ev.kind, EventKind::Put | EventKind::Get)
                && let Some(m) = moved.get_mut(i)
            {
                *m = ev.mlength as usize;
            }
            if ev.unlinked {
                left_mds -= 1;
                if let Some(s) = slots.get_mut(i) {
                    *s = Some((
                        ev.buffers.and_then(lnd::MdBuffers::into_vec).unwrap_or_default(),
                        moved.get(i).copied().unwrap_or(0),
                    ));
                }
            }
        }
        got = slots.into_iter().map(Option::unwrap_or_default).collect();
    }
    Ok(Reply { data: reply, body, bulk: got })
}

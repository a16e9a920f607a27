//! One shard's LNet instance: its peers, connections, MDs and the send path.
//!
//! Ownership rule: a peer's *home shard* is `fnv1a(nid) % nshards` ([`home_shard`]). Only the
//! home shard holds the peer's state and sockets; every other shard reaches the peer by sending
//! the message to the home shard over the channel mesh. The acceptor of any shard hands an
//! accepted socket to the home shard once the hello names the peer.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::Nid;
use proto::lnet::{
    KsockMsgHdr, LnetBody, LnetGet, LnetHandleWire, LnetHdrNid4, LnetPut, PING_MATCHBITS, PingInfo,
    RESERVED_PORTAL, conn_type, ksock_version,
};
use zerocopy::IntoBytes;

use crate::config::Config;
use crate::error::{LnetError, Result};
use crate::md::{
    Event, EventKind, EventQueue, Internal, MdHandle, MdOptions, MdTable, ProcessId, Sink,
};
use crate::ratelog::RateLimit;
use crate::rt::{Notify, Sock};
use crate::stats::Counters;

/// The shard that owns connections to `nid` on a node of `nshards` shards.
#[must_use]
pub fn home_shard(nid: Nid, nshards: usize) -> usize {
    // FNV-1a over the NID's bytes: fixed, cheap and well spread for consecutive addresses.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in nid.0.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % nshards.max(1) as u64) as usize
}

/// Messages between the shards of one node.
#[derive(Debug)]
pub(crate) enum XMsg {
    /// An accepted socket whose peer is homed on the receiving shard.
    Conn(Box<crate::conn::Handoff>),
    /// Send this message to a peer homed on the receiving shard.
    Send(Box<XSend>),
    /// The send started by `token` on the receiving shard finished.
    SendDone { token: u64, status: Result<()> },
    /// An incoming message for an MD or ME owned by the receiving shard.
    Deliver(Box<XDeliver>),
    /// Every shard's user future has returned: the node stops (the stop flag says the same,
    /// this only makes it prompt).
    Stop,
}

#[derive(Debug)]
pub(crate) struct XSend {
    pub(crate) target: ProcessId,
    pub(crate) body: LnetBody,
    pub(crate) payload: Vec<u8>,
    pub(crate) reply_to: Option<(usize, u64)>,
    pub(crate) skip_discovery: bool,
}

#[derive(Debug)]
pub(crate) struct XDeliver {
    pub(crate) ni: usize,
    pub(crate) hdr: LnetHdrNid4,
    pub(crate) from: ProcessId,
    pub(crate) payload: Vec<u8>,
}

/// What completing an outgoing message means.
#[derive(Debug)]
pub(crate) enum Done {
    /// Nothing (NOOPs, ACKs).
    Nothing,
    /// Our PUT or GET from a local MD: a SEND event.
    Send { md: MdHandle, target: ProcessId, portal: u32, match_bits: u64, hdr_data: u64, len: u32 },
    /// A PUT/GET started by another shard: tell it.
    Remote { shard: usize, token: u64 },
    /// The REPLY to a GET we served from a local MD: the GET event.
    GetServed {
        md: MdHandle,
        from: ProcessId,
        portal: u32,
        match_bits: u64,
        offset: u32,
        rlength: u32,
        mlength: u32,
    },
}

/// Keeps the memory of an outgoing payload alive while it is written.
#[derive(Debug)]
pub(crate) enum Hold {
    /// MD memory: the MD's pending reference keeps it.
    Md,
    Owned(#[allow(dead_code)] Vec<u8>),
}

/// An LNet message waiting for a credit, a connection or discovery.
#[derive(Debug)]
pub(crate) struct OutMsg {
    pub(crate) hdr: LnetHdrNid4,
    pub(crate) iov: Vec<(*const u8, usize)>,
    pub(crate) _hold: Hold,
    pub(crate) done: Done,
    pub(crate) skip_discovery: bool,
    pub(crate) queued_at: Instant,
}

impl OutMsg {
    pub(crate) fn payload_len(&self) -> usize {
        self.hdr.payload_length.get() as usize
    }
}

/// A frame on a connection's transmit queue.
#[derive(Debug)]
pub(crate) struct Tx {
    /// ksock header + LNet header (V1: LNet header only; NOOP: ksock header only).
    pub(crate) hdr: [u8; 96],
    pub(crate) hdr_len: usize,
    pub(crate) msg: Option<OutMsg>,
    pub(crate) started: bool,
    pub(crate) written: usize,
    pub(crate) zc_cookie: u64,
}

impl Tx {
    pub(crate) fn nob(&self) -> usize {
        self.hdr_len + self.msg.as_ref().map_or(0, OutMsg::payload_len)
    }
    pub(crate) fn noop(c0: u64, c1: u64) -> Box<Tx> {
        let mut hdr = [0u8; 96];
        if let Some(d) = hdr.get_mut(..24) {
            d.copy_from_slice(KsockMsgHdr::noop(c0, c1).as_bytes());
        }
        Box::new(Tx { hdr, hdr_len: 24, msg: None, started: false, written: 0, zc_cookie: 0 })
    }
}

/// A socket of a peer, on the peer's home shard.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) peer: ProcessId,
    pub(crate) ni: usize,
    /// Our view of the type.
    pub(crate) ctype: i32,
    pub(crate) version: u32,
    pub(crate) sock: Sock,
    pub(crate) txq: VecDeque<Box<Tx>>,
    pub(crate) wake: Notify,
    pub(crate) closing: bool,
    pub(crate) peer_addr: std::net::SocketAddr,
    pub(crate) last_tx_progress: Instant,
    pub(crate) last_rx: Instant,
    /// The reader is inside a message (a stall there is a dead peer).
    pub(crate) rx_busy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disc {
    Unknown,
    Running,
    Up,
}

/// A peer on its home shard (`ksock_peer_ni` and the LNet peer state in one).
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: ProcessId,
    pub(crate) ni: usize,
    pub(crate) conns: Vec<u64>,
    pub(crate) incarnation: Option<u64>,
    pub(crate) proto: Option<u32>,
    pub(crate) credits: usize,
    pub(crate) queue: VecDeque<OutMsg>,
    pub(crate) disc: Disc,
    pub(crate) disc_queue: VecDeque<OutMsg>,
    pub(crate) zc_next: u64,
    /// Our frames waiting for the peer's ZC-ACK: cookie -> (conn, message, when).
    pub(crate) zc_waiting: HashMap<u64, (u64, OutMsg, Instant)>,
    /// Cookies the peer asked us to return.
    pub(crate) zc_acks: Vec<u64>,
    pub(crate) last_alive: Instant,
    pub(crate) next_keepalive: Instant,
    pub(crate) connecting: bool,
    pub(crate) retry_interval: Duration,
    pub(crate) next_retry: Instant,
    pub(crate) fail_since: Option<Instant>,
}

impl Peer {
    fn new(id: ProcessId, ni: usize, credits: usize) -> Peer {
        let now = Instant::now();
        Peer {
            id,
            ni,
            conns: Vec::new(),
            incarnation: None,
            proto: None,
            credits,
            queue: VecDeque::new(),
            disc: Disc::Unknown,
            disc_queue: VecDeque::new(),
            zc_next: 2,
            zc_waiting: HashMap::new(),
            zc_acks: Vec::new(),
            last_alive: now,
            next_keepalive: now,
            connecting: false,
            retry_interval: Duration::ZERO,
            next_retry: now,
            fail_since: None,
        }
    }

    pub(crate) fn new_pub(id: ProcessId, ni: usize, credits: usize) -> Peer {
        Peer::new(id, ni, credits)
    }

    pub(crate) fn userspace(&self) -> bool {
        self.id.pid & proto::lnet::PID_USERFLAG != 0
    }
}

/// State of an operation whose MD lives here but whose peer is homed elsewhere.
#[derive(Debug)]
pub(crate) struct RemoteOp {
    pub(crate) done: Done,
}

/// Mutable state of one shard.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) mds: MdTable,
    pub(crate) peers: HashMap<ProcessId, Peer>,
    pub(crate) conns: HashMap<u64, Conn>,
    pub(crate) next_conn: u64,
    pub(crate) remote_ops: HashMap<u64, RemoteOp>,
    pub(crate) next_token: u64,
    pub(crate) ping_target: Option<MdHandle>,
    pub(crate) discovering: HashMap<ProcessId, crate::ping::DiscRun>,
}

/// One shard's LNet: configuration, state, counters and the mesh to the other shards.
pub(crate) struct Core {
    pub(crate) id: usize,
    pub(crate) nshards: usize,
    pub(crate) cfg: Arc<Config>,
    pub(crate) incarnation: u64,
    pub(crate) st: RefCell<State>,
    pub(crate) stats: Counters,
    pub(crate) mesh: RefCell<Option<Rc<crate::rt::Senders<XMsg>>>>,
    pub(crate) shutdown: Notify,
    pub(crate) stopping: std::cell::Cell<bool>,
    pub(crate) ping_reply: Vec<u8>,
    pub(crate) rl_proto: RateLimit,
    pub(crate) rl_drop: RateLimit,
    pub(crate) rl_conn: RateLimit,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("id", &self.id).field("nshards", &self.nshards).finish()
    }
}

pub(crate) type CoreRef = Rc<Core>;

impl Core {
    pub(crate) fn new(id: usize, nshards: usize, cfg: Arc<Config>, incarnation: u64) -> Core {
        let nids: Vec<Nid> = cfg.nis.iter().map(|n| n.nid).collect();
        let mut ping_reply = Vec::new();
        PingInfo::for_nids(cfg.pid, &nids).encode(&mut ping_reply);
        let mut mds = MdTable::new(id, cfg.max_mds);
        for &p in &cfg.lazy_portals {
            mds.set_lazy(p, true);
        }
        Core {
            id,
            nshards,
            incarnation,
            st: RefCell::new(State {
                mds,
                peers: HashMap::new(),
                conns: HashMap::new(),
                next_conn: 1,
                remote_ops: HashMap::new(),
                next_token: 1,
                ping_target: None,
                discovering: HashMap::new(),
            }),
            stats: Counters::default(),
            mesh: RefCell::new(None),
            shutdown: Notify::default(),
            stopping: std::cell::Cell::new(false),
            ping_reply,
            rl_proto: RateLimit::new(Duration::from_secs(5), 10),
            rl_drop: RateLimit::new(Duration::from_secs(5), 10),
            rl_conn: RateLimit::new(Duration::from_secs(5), 10),
            cfg,
        }
    }

    pub(crate) fn bump(c: &std::cell::Cell<u64>) {
        c.set(c.get().wrapping_add(1));
    }

    pub(crate) fn add(c: &std::cell::Cell<u64>, n: usize) {
        c.set(c.get().wrapping_add(n as u64));
    }

    pub(crate) fn nid_of(&self, ni: usize) -> Nid {
        self.cfg.nis.get(ni).map_or(Nid::ANY, |n| n.nid)
    }

    /// The local NI for sending to `nid`: the first on its network.
    pub(crate) fn ni_for(&self, nid: Nid) -> Result<usize> {
        self.cfg.nis.iter().position(|n| n.nid.net() == nid.net()).ok_or(LnetError::NoRoute(nid))
    }

    pub(crate) fn home(&self, nid: Nid) -> usize {
        home_shard(nid, self.nshards)
    }

    /// Delivers an event to an MD's sink (upper layer or LNet itself).
    pub(crate) fn emit(self: &Rc<Self>, sink: Sink, ev: Event) {
        match sink {
            Sink::Eq(q) => q.push(ev),
            Sink::Internal(Internal::PingTarget) => {}
            Sink::Internal(Internal::Discovery(peer)) => {
                crate::ping::discovery_event(self, peer, ev);
            }
        }
    }

    /// Finishes an operation on a local MD and reports it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn md_event(
        self: &Rc<Self>,
        md: MdHandle,
        kind: EventKind,
        initiator: ProcessId,
        target: ProcessId,
        portal: u32,
        match_bits: u64,
        offset: u32,
        rlength: u32,
        mlength: u32,
        hdr_data: u64,
        status: Result<()>,
    ) {
        let r = self.st.borrow_mut().mds.end_op(md);
        let Some((sink, user, bufs)) = r else { return };
        let ev = Event {
            kind,
            md,
            user,
            initiator,
            target,
            portal,
            match_bits,
            offset,
            rlength,
            mlength,
            hdr_data,
            status,
            unlinked: bufs.is_some(),
            buffers: bufs,
        };
        self.emit(sink, ev);
    }

    /// Completes an outgoing message: reports it and returns the peer credit.
    pub(crate) fn complete(self: &Rc<Self>, done: Done, status: Result<()>) {
        log::debug!("shard {}: complete {done:?}: {status:?}", self.id);
        if status.is_err() {
            Self::bump(&self.stats.send_failed);
        }
        match done {
            Done::Nothing => {}
            Done::Send { md, target, portal, match_bits, hdr_data, len } => {
                let me = ProcessId { nid: Nid::ANY, pid: self.cfg.pid };
                self.md_event(
                    md,
                    EventKind::Send,
                    me,
                    target,
                    portal,
                    match_bits,
                    0,
                    len,
                    len,
                    hdr_data,
                    status,
                );
            }
            Done::Remote { shard, token } => {
                self.xsend(shard, XMsg::SendDone { token, status });
            }
            Done::GetServed { md, from, portal, match_bits, offset, rlength, mlength } => {
                let me = ProcessId { nid: Nid::ANY, pid: self.cfg.pid };
                self.md_event(
                    md,
                    EventKind::Get,
                    from,
                    me,
                    portal,
                    match_bits,
                    offset,
                    rlength,
                    mlength,
                    0,
                    status,
                );
            }
        }
    }

    /// Sends a message to another shard; spawned so callers never wait on a full channel
    /// while holding shard state. The mesh channel itself is bounded.
    pub(crate) fn xsend(self: &Rc<Self>, shard: usize, m: XMsg) {
        let mesh = self.mesh.borrow().clone();
        Self::bump(&self.stats.xshard_tx);
        let Some(mesh) = mesh else {
            log::warn!("shard {}: no mesh, dropping cross-shard message", self.id);
            return;
        };
        crate::rt::spawn(async move {
            if mesh.send_to(shard, m).await.is_err() {
                log::warn!("cross-shard send to shard {shard} failed (shard gone)");
            }
        });
    }

    /// Sends `msg` to peer `target` from this (home) shard.
    pub(crate) fn send_local(self: &Rc<Self>, target: ProcessId, msg: OutMsg) {
        let ni = match self.ni_for(target.nid) {
            Ok(n) => n,
            Err(e) => {
                self.complete(msg.done, Err(e));
                return;
            }
        };
        let mut st = self.st.borrow_mut();
        let limit = self.cfg.max_peers;
        let npeers = st.peers.len();
        if !st.peers.contains_key(&target) && npeers >= limit {
            drop(st);
            self.complete(msg.done, Err(LnetError::Full("peer table")));
            return;
        }
        let credits = self.cfg.peer_credits;
        let peer = st.peers.entry(target).or_insert_with(|| Peer::new(target, ni, credits));
        let queued = peer.queue.len() + peer.disc_queue.len();
        if queued >= self.cfg.max_tx_queue {
            drop(st);
            self.complete(msg.done, Err(LnetError::Full("peer transmit queue")));
            return;
        }
        let need_disc = self.cfg.discovery && !msg.skip_discovery && peer.disc != Disc::Up;
        if need_disc {
            peer.disc_queue.push_back(msg);
            let start = peer.disc == Disc::Unknown;
            if start {
                peer.disc = Disc::Running;
            }
            drop(st);
            if start {
                crate::ping::start_discovery(self, target);
            }
            return;
        }
        peer.queue.push_back(msg);
        drop(st);
        self.pump(target);
    }

    /// Moves queued messages of a peer onto its connections while credits last, and starts a
    /// connection when there is none.
    pub(crate) fn pump(self: &Rc<Self>, id: ProcessId) {
        let mut want_connect = false;
        {
            let st = &mut *self.st.borrow_mut();
            let Some(peer) = st.peers.get_mut(&id) else { return };
            while peer.credits > 0 && !peer.queue.is_empty() {
                let nob = peer.queue.front().map_or(0, |m| 96 + m.payload_len());
                let Some(cid) = pick_conn(&st.conns, &peer.conns, nob, self.cfg.min_bulk, false)
                else {
                    want_connect = true;
                    break;
                };
                let Some(msg) = peer.queue.pop_front() else { break };
                if msg.queued_at.elapsed() > Duration::from_millis(1) {
                    Self::bump(&self.stats.credit_waits);
                }
                peer.credits -= 1;
                log::debug!(
                    "shard {}: to {id} on conn {cid}: {:?} credits {}",
                    self.id,
                    msg.hdr.body(),
                    peer.credits
                );
                if let Some(c) = st.conns.get_mut(&cid) {
                    let tx = make_tx(c.version, msg);
                    c.txq.push_back(tx);
                    c.wake.notify();
                }
            }
            if peer.conns.is_empty() && !peer.queue.is_empty() {
                want_connect = true;
            }
        }
        if want_connect {
            crate::conn::maybe_connect(self, id);
        }
    }

    /// Returns a peer credit and sends what waited for it.
    pub(crate) fn return_credit(self: &Rc<Self>, id: ProcessId) {
        {
            let mut st = self.st.borrow_mut();
            let Some(p) = st.peers.get_mut(&id) else { return };
            p.credits = (p.credits + 1).min(self.cfg.peer_credits);
        }
        self.pump(id);
    }

    /// Queues a ZC-ACK for `cookie` to the peer and wakes a writer, preferring BULK_IN (the
    /// non-blocking connection, as socklnd's `nonblk_zcack` does).
    pub(crate) fn queue_zc_ack(self: &Rc<Self>, id: ProcessId, cookie: u64) {
        let st = &mut *self.st.borrow_mut();
        let Some(p) = st.peers.get_mut(&id) else { return };
        p.zc_acks.push(cookie);
        let cid = p
            .conns
            .iter()
            .copied()
            .find(|c| st.conns.get(c).is_some_and(|c| c.ctype == conn_type::BULK_IN && !c.closing))
            .or_else(|| {
                p.conns.iter().copied().find(|c| st.conns.get(c).is_some_and(|c| !c.closing))
            });
        if let Some(c) = cid.and_then(|c| st.conns.get(&c)) {
            c.wake.notify();
        }
    }

    /// Closes one connection; its writer fails what it still holds.
    pub(crate) fn close_conn(self: &Rc<Self>, cid: u64, why: &str) {
        let mut requeue = Vec::new();
        let peer_id;
        {
            let st = &mut *self.st.borrow_mut();
            let Some(c) = st.conns.get_mut(&cid) else { return };
            if c.closing {
                return;
            }
            c.closing = true;
            c.sock.shutdown();
            c.wake.notify();
            peer_id = c.peer;
            // Frames not yet started go back to the peer queue for another connection.
            let mut keep = VecDeque::new();
            while let Some(mut tx) = c.txq.pop_front() {
                if !tx.started {
                    if let Some(m) = tx.msg.take() {
                        requeue.push(m);
                    }
                } else {
                    keep.push_back(tx);
                }
            }
            c.txq = keep;
            if let Some(p) = st.peers.get_mut(&peer_id) {
                p.conns.retain(|&x| x != cid);
                // Messages that were handed to this connection held credits.
                p.credits = (p.credits + requeue.len()).min(self.cfg.peer_credits);
                for m in requeue.into_iter().rev() {
                    p.queue.push_front(m);
                }
            }
        }
        Self::bump(&self.stats.conns_closed);
        // A peer hanging up (a client unmounting) or our own shutdown is routine.
        if why.contains("end of file") || why == "shutdown" {
            log::debug!("shard {}: closing conn to {}: {}", self.id, peer_id, why);
        } else {
            crate::ratelog::rlog!(
                self.rl_conn,
                Info,
                "shard {}: closing conn to {}: {}",
                self.id,
                peer_id,
                why
            );
        }
        // Frames waiting for a ZC-ACK on a connection that is gone will never be ACKed.
        let stale: Vec<OutMsg> = {
            let st = &mut *self.st.borrow_mut();
            match st.peers.get_mut(&peer_id) {
                Some(p) => {
                    let ks: Vec<u64> =
                        p.zc_waiting.iter().filter(|(_, v)| v.0 == cid).map(|(k, _)| *k).collect();
                    ks.into_iter().filter_map(|k| p.zc_waiting.remove(&k)).map(|v| v.1).collect()
                }
                None => Vec::new(),
            }
        };
        for m in stale {
            self.complete(m.done, Err(LnetError::ConnClosed));
            self.return_credit(peer_id);
        }
        self.pump(peer_id);
    }

    /// Closes every connection of a peer (`ksocknal_close_peer_conns_locked`).
    pub(crate) fn close_peer(self: &Rc<Self>, id: ProcessId, why: &str) {
        let cids: Vec<u64> =
            self.st.borrow().peers.get(&id).map(|p| p.conns.clone()).unwrap_or_default();
        for c in cids {
            self.close_conn(c, why);
        }
    }

    /// Fails everything queued for a peer (dead peer, failed discovery).
    pub(crate) fn fail_peer_queue(
        self: &Rc<Self>,
        id: ProcessId,
        err: &LnetError,
        disc_only: bool,
    ) {
        let msgs: Vec<OutMsg> = {
            let mut st = self.st.borrow_mut();
            let Some(p) = st.peers.get_mut(&id) else { return };
            let mut v: Vec<OutMsg> = p.disc_queue.drain(..).collect();
            if !disc_only {
                v.extend(p.queue.drain(..));
            }
            v
        };
        for m in msgs {
            self.complete(m.done, Err(err.clone()));
        }
    }

    /// Creates an MD owned by this shard.
    pub(crate) fn md_create(
        &self,
        segs: Vec<Box<dyn crate::md::MdSegment>>,
        opts: MdOptions,
        user: u64,
        sink: Sink,
        me: Option<(u32, crate::md::MatchEntry)>,
    ) -> Result<MdHandle> {
        self.st.borrow_mut().mds.insert(segs, opts, user, sink, me)
    }

    /// Starts a PUT or GET from local MD `md` (which must be bound, not attached).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start_op(
        self: &Rc<Self>,
        md: MdHandle,
        target: ProcessId,
        get: bool,
        portal: u32,
        match_bits: u64,
        offset: u32,
        ack: bool,
        hdr_data: u64,
    ) -> Result<()> {
        if portal >= crate::md::MAX_PORTALS {
            return Err(LnetError::Invalid("portal index"));
        }
        let ni = self.ni_for(target.nid)?;
        let (len, iov) = {
            let mut st = self.st.borrow_mut();
            let m = st.mds.get(md).ok_or(LnetError::BadHandle)?;
            let len = m.length;
            if len > proto::lnet::LNET_MTU {
                return Err(LnetError::Invalid("MD larger than the LNet MTU"));
            }
            let iov: Vec<(*const u8, usize)> = if get {
                Vec::new()
            } else {
                m.region(0, len).into_iter().map(|(p, l)| (p.cast_const(), l)).collect()
            };
            st.mds.begin_op(md, false)?;
            (len, iov)
        };
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        let wmd = LnetHandleWire::new(self.incarnation, md.wire_cookie());
        let body = if get {
            LnetBody::Get(LnetGet {
                return_wmd: wmd,
                match_bits: match_bits.into(),
                ptl_index: portal.into(),
                src_offset: offset.into(),
                sink_length: len32.into(),
            })
        } else {
            LnetBody::Put(LnetPut {
                ack_wmd: if ack { wmd } else { LnetHandleWire::NONE },
                match_bits: match_bits.into(),
                hdr_data: hdr_data.into(),
                ptl_index: portal.into(),
                offset: offset.into(),
            })
        };
        let skip_discovery = portal == RESERVED_PORTAL;
        let done = Done::Send {
            md,
            target,
            portal,
            match_bits,
            hdr_data,
            len: if get { 0 } else { len32 },
        };
        let home = self.home(target.nid);
        if home == self.id {
            let src = (self.nid_of(ni), self.cfg.pid);
            let plen = if get { 0 } else { len32 };
            let hdr = LnetHdrNid4::new((target.nid, target.pid), src, plen, &body);
            self.send_local(
                target,
                OutMsg {
                    hdr,
                    iov,
                    _hold: Hold::Md,
                    done,
                    skip_discovery,
                    queued_at: Instant::now(),
                },
            );
            return Ok(());
        }
        // The peer lives on another shard: copy the payload out and send it there.
        let mut payload = Vec::with_capacity(if get { 0 } else { len });
        for (p, l) in &iov {
            // SAFETY: the MD holds a pending reference, so its memory is alive; no other task
            // runs while this synchronous copy happens.
            payload.extend_from_slice(unsafe { std::slice::from_raw_parts(*p, *l) });
        }
        let token = {
            let mut st = self.st.borrow_mut();
            let t = st.next_token;
            st.next_token += 1;
            st.remote_ops.insert(t, RemoteOp { done });
            t
        };
        let m = XMsg::Send(Box::new(XSend {
            target,
            body,
            payload,
            reply_to: Some((self.id, token)),
            skip_discovery,
        }));
        let mesh = self.mesh.borrow().clone().ok_or(LnetError::Shutdown)?;
        Self::bump(&self.stats.xshard_tx);
        if mesh.send_to(home, m).await.is_err() {
            let op = self.st.borrow_mut().remote_ops.remove(&token);
            if let Some(op) = op {
                self.complete(op.done, Err(LnetError::Shutdown));
            }
        }
        Ok(())
    }

    /// Sends a message built on another shard (or a REPLY/ACK built here) to a peer homed
    /// here, or forwards it to the home shard.
    pub(crate) fn send_owned(self: &Rc<Self>, x: XSend) {
        let home = self.home(x.target.nid);
        if home != self.id {
            self.xsend(home, XMsg::Send(Box::new(x)));
            return;
        }
        let done = match x.reply_to {
            Some((shard, token)) => Done::Remote { shard, token },
            None => Done::Nothing,
        };
        let ni = match self.ni_for(x.target.nid) {
            Ok(n) => n,
            Err(e) => {
                self.complete(done, Err(e));
                return;
            }
        };
        let len = u32::try_from(x.payload.len()).unwrap_or(u32::MAX);
        let hdr = LnetHdrNid4::new(
            (x.target.nid, x.target.pid),
            (self.nid_of(ni), self.cfg.pid),
            len,
            &x.body,
        );
        let iov = if x.payload.is_empty() {
            Vec::new()
        } else {
            vec![(x.payload.as_ptr(), x.payload.len())]
        };
        self.send_local(
            x.target,
            OutMsg {
                hdr,
                iov,
                _hold: Hold::Owned(x.payload),
                done,
                skip_discovery: x.skip_discovery,
                queued_at: Instant::now(),
            },
        );
    }

    /// Handles a message from another shard.
    pub(crate) async fn on_xmsg(self: &Rc<Self>, m: XMsg) {
        Self::bump(&self.stats.xshard_rx);
        match m {
            XMsg::Conn(h) => crate::conn::adopt(self, *h),
            XMsg::Send(x) => self.send_owned(*x),
            XMsg::SendDone { token, status } => {
                let op = self.st.borrow_mut().remote_ops.remove(&token);
                if let Some(op) = op {
                    self.complete(op.done, status);
                }
            }
            XMsg::Deliver(d) => crate::rx::deliver_owned(self, *d).await,
            XMsg::Stop => {
                self.stopping.set(true);
                self.shutdown.notify();
            }
        }
    }

    /// Attaches the ping target (portal 0, the reserved match bits) on this shard.
    pub(crate) fn attach_ping_target(&self) -> Result<()> {
        let opts = MdOptions {
            op_put: true,
            op_get: true,
            truncate: true,
            manage_remote: true,
            threshold: None,
            ..MdOptions::default()
        };
        let buf = self.ping_reply.clone();
        let h = self.md_create(
            vec![Box::new(buf)],
            opts,
            0,
            Sink::Internal(Internal::PingTarget),
            Some((RESERVED_PORTAL, crate::md::MatchEntry::bits(PING_MATCHBITS))),
        )?;
        self.st.borrow_mut().ping_target = Some(h);
        Ok(())
    }

    pub(crate) fn unlink(self: &Rc<Self>, h: MdHandle) -> Result<()> {
        let r = self.st.borrow_mut().mds.unlink(h)?;
        if let Some((sink, user, bufs)) = r {
            let me = ProcessId { nid: Nid::ANY, pid: self.cfg.pid };
            self.emit(
                sink,
                Event {
                    kind: EventKind::Unlink,
                    md: h,
                    user,
                    initiator: me,
                    target: me,
                    portal: 0,
                    match_bits: 0,
                    offset: 0,
                    rlength: 0,
                    mlength: 0,
                    hdr_data: 0,
                    status: Ok(()),
                    unlinked: true,
                    buffers: Some(bufs),
                },
            );
        }
        Ok(())
    }

    pub(crate) fn new_eq(&self) -> EventQueue {
        EventQueue::new(self.cfg.eq_capacity)
    }
}

/// Chooses the connection for a frame of `nob` bytes: CONTROL for small ones, BULK_OUT for
/// large ones, BULK_IN for ZC-ACK NOOPs; any other when the preferred type is missing
/// (`ksocknal_find_conn_locked` with MATCH_YES before MATCH_MAY).
pub(crate) fn pick_conn(
    conns: &HashMap<u64, Conn>,
    ids: &[u64],
    nob: usize,
    min_bulk: usize,
    noop: bool,
) -> Option<u64> {
    let want = if noop {
        conn_type::BULK_IN
    } else if nob >= min_bulk {
        conn_type::BULK_OUT
    } else {
        conn_type::CONTROL
    };
    let mut fallback = None;
    let mut best_q = usize::MAX;
    for &id in ids {
        let Some(c) = conns.get(&id) else { continue };
        if c.closing {
            continue;
        }
        if c.ctype == want || c.ctype == conn_type::ANY {
            return Some(id);
        }
        // Among the others, the least loaded.
        if c.txq.len() < best_q {
            best_q = c.txq.len();
            fallback = Some(id);
        }
    }
    fallback
}

/// Frames an LNet message for a connection of `version`.
pub(crate) fn make_tx(version: u32, msg: OutMsg) -> Box<Tx> {
    let mut hdr = [0u8; 96];
    let hdr_len = if version == ksock_version::V1 {
        if let Some(d) = hdr.get_mut(..72) {
            d.copy_from_slice(msg.hdr.as_bytes());
        }
        72
    } else {
        if let Some(d) = hdr.get_mut(..24) {
            d.copy_from_slice(KsockMsgHdr::lnet(0, 0).as_bytes());
        }
        if let Some(d) = hdr.get_mut(24..96) {
            d.copy_from_slice(msg.hdr.as_bytes());
        }
        96
    };
    Box::new(Tx { hdr, hdr_len, msg: Some(msg), started: false, written: 0, zc_cookie: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_shard_is_stable_and_spread() {
        let mut counts = [0usize; 4];
        for i in 0..400u32 {
            let n = Nid::tcp([10, 0, (i >> 8) as u8, i as u8]);
            let h = home_shard(n, 4);
            assert_eq!(h, home_shard(n, 4));
            counts[h] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
        assert_eq!(home_shard(Nid::tcp([1, 2, 3, 4]), 1), 0);
    }
}

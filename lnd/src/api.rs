//! The API ptlrpc builds on: a per-shard [`Lnet`] handle to attach and bind MDs, PUT, GET and
//! read events; request buffer queues for services; and [`Node`], which starts the shards.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proto::Nid;
use proto::lnet::{PING_MATCHBITS, PingInfo, RESERVED_PORTAL};

use crate::config::{AcceptMode, Config};
use crate::error::{LnetError, Result};
use crate::md::{
    Event, EventKind, EventQueue, MatchEntry, MdBuffers, MdHandle, MdOptions, MdSegment, ProcessId,
    Sink,
};
use crate::rt::{self, MeshBuilder};
use crate::shard::{Core, CoreRef, XMsg};
use crate::stats::ShardStats;

/// An MD to create: its memory, options and the value its events carry.
pub struct MdSpec {
    /// The memory, in order.
    pub segments: Vec<Box<dyn MdSegment>>,
    /// Options.
    pub options: MdOptions,
    /// Carried in every event of the MD.
    pub user: u64,
}

impl std::fmt::Debug for MdSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdSpec")
            .field("segments", &self.segments.len())
            .field("options", &self.options)
            .finish()
    }
}

impl MdSpec {
    /// An MD over one buffer, with default options (threshold 1, no operations allowed:
    /// fine for PUT/GET sources and sinks; set `op_put`/`op_get` for attached MDs).
    pub fn new<T: MdSegment>(buf: T) -> MdSpec {
        MdSpec { segments: vec![Box::new(buf)], options: MdOptions::default(), user: 0 }
    }

    /// An MD over several buffers (an iovec), used in order.
    #[must_use]
    pub fn iov(segments: Vec<Box<dyn MdSegment>>) -> MdSpec {
        MdSpec { segments, options: MdOptions::default(), user: 0 }
    }

    /// Sets the options.
    #[must_use]
    pub fn options(mut self, o: MdOptions) -> MdSpec {
        self.options = o;
        self
    }

    /// Sets the user value.
    #[must_use]
    pub fn user(mut self, u: u64) -> MdSpec {
        self.user = u;
        self
    }
}

/// A connected peer, as the management layer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub id: ProcessId,
    /// Open connections.
    pub conns: usize,
    /// Peer credits available.
    pub credits: usize,
    /// Messages queued.
    pub queued: usize,
    /// Whether discovery completed.
    pub discovered: bool,
    /// socklnd version.
    pub version: Option<u32>,
}

/// What a completed [`Lnet::put_and_wait`] reports.
#[derive(Debug)]
pub struct PutDone {
    /// The buffer, back.
    pub buffer: Vec<u8>,
    /// Bytes the target accepted (from its ACK), when an ACK was requested.
    pub acked: Option<u32>,
}

/// One shard's LNet handle. Clone it freely within the shard; it is not `Send`: every shard
/// has its own.
#[derive(Debug, Clone)]
pub struct Lnet(pub(crate) CoreRef);

impl Lnet {
    /// This shard's index.
    #[must_use]
    pub fn shard(&self) -> usize {
        self.0.id
    }

    /// Shards of this node.
    #[must_use]
    pub fn nshards(&self) -> usize {
        self.0.nshards
    }

    /// The node's NIDs.
    #[must_use]
    pub fn nids(&self) -> Vec<Nid> {
        self.0.cfg.nis.iter().map(|n| n.nid).collect()
    }

    /// The node's configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.0.cfg
    }

    /// Our process id on the NI of `nid`'s network.
    pub fn self_id_for(&self, nid: Nid) -> Result<ProcessId> {
        let ni = self.0.ni_for(nid)?;
        Ok(ProcessId { nid: self.0.nid_of(ni), pid: self.0.cfg.pid })
    }

    /// The shard that owns connections to `nid`: post MDs there to stay zero-copy.
    #[must_use]
    pub fn home_shard(&self, nid: Nid) -> usize {
        self.0.home(nid)
    }

    /// This shard's counters.
    #[must_use]
    pub fn stats(&self) -> ShardStats {
        self.0.stats.snapshot()
    }

    /// Peers homed on this shard.
    #[must_use]
    pub fn peers(&self) -> Vec<PeerInfo> {
        let st = self.0.st.borrow();
        let mut v: Vec<PeerInfo> = st
            .peers
            .values()
            .map(|p| PeerInfo {
                id: p.id,
                conns: p.conns.len(),
                credits: p.credits,
                queued: p.queue.len() + p.disc_queue.len(),
                discovered: p.disc == crate::shard::Disc::Up,
                version: p.proto,
            })
            .collect();
        v.sort_by_key(|p| p.id);
        v
    }

    /// MDs alive on this shard.
    #[must_use]
    pub fn live_mds(&self) -> usize {
        self.0.st.borrow().mds.live()
    }

    /// A new event queue (bounded by `eq_capacity`).
    #[must_use]
    pub fn event_queue(&self) -> EventQueue {
        self.0.new_eq()
    }

    /// Attaches an MD to `portal` behind match entry `me` (`LNetMEAttach` + `LNetMDAttach`).
    pub fn attach(
        &self,
        portal: u32,
        me: MatchEntry,
        md: MdSpec,
        eq: &EventQueue,
    ) -> Result<MdHandle> {
        self.0.md_create(md.segments, md.options, md.user, Sink::Eq(eq.clone()), Some((portal, me)))
    }

    /// Creates a free-floating MD for [`Lnet::put`] and [`Lnet::get`] (`LNetMDBind`).
    pub fn bind(&self, md: MdSpec, eq: &EventQueue) -> Result<MdHandle> {
        self.0.md_create(md.segments, md.options, md.user, Sink::Eq(eq.clone()), None)
    }

    /// Unlinks an MD (`LNetMDUnlink`): its memory comes back in an UNLINK event, or in the
    /// last event of an operation still in flight.
    pub fn unlink(&self, md: MdHandle) -> Result<()> {
        if md.shard() != self.0.id {
            return Err(LnetError::BadHandle);
        }
        self.0.unlink(md)
    }

    /// Sends the whole MD to `portal` of `target` (`LNetPut`). Events: SEND, then ACK when
    /// `ack` (give the MD a threshold of 2 then). Works from any shard; the peer's home shard
    /// does the I/O.
    #[allow(clippy::too_many_arguments)]
    pub async fn put(
        &self,
        md: MdHandle,
        target: ProcessId,
        portal: u32,
        match_bits: u64,
        offset: u32,
        ack: bool,
        hdr_data: u64,
    ) -> Result<()> {
        self.0.start_op(md, target, false, portal, match_bits, offset, ack, hdr_data).await
    }

    /// Fetches up to the MD's length from `portal` of `target` at `offset` (`LNetGet`).
    /// Events: SEND, then REPLY (threshold 2).
    pub async fn get(
        &self,
        md: MdHandle,
        target: ProcessId,
        portal: u32,
        match_bits: u64,
        offset: u32,
    ) -> Result<()> {
        self.0.start_op(md, target, true, portal, match_bits, offset, false, 0).await
    }

    /// PUTs `buf` and waits for it to leave (and for the ACK when `ack`), or `timeout`.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_and_wait(
        &self,
        buf: Vec<u8>,
        target: ProcessId,
        portal: u32,
        match_bits: u64,
        offset: u32,
        ack: bool,
        timeout: Duration,
    ) -> Result<PutDone> {
        let eq = EventQueue::new(4);
        let opts = MdOptions { threshold: Some(if ack { 2 } else { 1 }), ..MdOptions::default() };
        let md = self.bind(MdSpec::new(buf).options(opts), &eq)?;
        if let Err(e) = self.put(md, target, portal, match_bits, offset, ack, 0).await {
            let _ = self.unlink(md);
            return Err(e);
        }
        let mut acked = None;
        let (bufs, status) = wait_unlinked(self, &eq, md, timeout, |ev| {
            if ev.kind == EventKind::Ack {
                acked = Some(ev.mlength);
            }
        })
        .await;
        status?;
        Ok(PutDone { buffer: bufs.into_vec().unwrap_or_default(), acked })
    }

    /// GETs into `buf`; returns it and the bytes received, or fails after `timeout`.
    pub async fn get_and_wait(
        &self,
        buf: Vec<u8>,
        target: ProcessId,
        portal: u32,
        match_bits: u64,
        offset: u32,
        timeout: Duration,
    ) -> Result<(Vec<u8>, usize)> {
        let eq = EventQueue::new(4);
        let opts = MdOptions { threshold: Some(2), truncate: true, ..MdOptions::default() };
        let md = self.bind(MdSpec::new(buf).options(opts), &eq)?;
        if let Err(e) = self.get(md, target, portal, match_bits, offset).await {
            let _ = self.unlink(md);
            return Err(e);
        }
        let mut got = None;
        let (bufs, status) = wait_unlinked(self, &eq, md, timeout, |ev| {
            if ev.kind == EventKind::Reply {
                got = Some(ev.mlength as usize);
            }
        })
        .await;
        status?;
        let n = got.ok_or(LnetError::TimedOut)?;
        Ok((bufs.into_vec().unwrap_or_default(), n))
    }

    /// Pings `target` (`lctl ping`): its NIs as its ping reply lists them.
    pub async fn ping(&self, target: ProcessId, timeout: Duration) -> Result<PingInfo> {
        let (buf, n) = self
            .get_and_wait(
                vec![0u8; 16 + 16 * 255],
                target,
                RESERVED_PORTAL,
                PING_MATCHBITS,
                0,
                timeout,
            )
            .await?;
        Ok(PingInfo::decode(buf.get(..n).unwrap_or_default())?)
    }

    /// Posts `nbufs` request buffers of `buf_size` bytes on `portal` (ptlrpc's rqbds): each
    /// takes one request, handed out by [`RequestQueue::next`]; the buffer is reposted when the
    /// [`Request`] is dropped. Requests larger than `buf_size` are dropped by LNet.
    pub fn request_queue(
        &self,
        portal: u32,
        nbufs: usize,
        buf_size: usize,
    ) -> Result<RequestQueue> {
        if nbufs == 0 || buf_size == 0 {
            return Err(LnetError::Invalid("request queue needs buffers"));
        }
        let inner = Rc::new(RqInner {
            lnet: self.clone(),
            portal,
            buf_size,
            eq: EventQueue::new(nbufs + 8),
            posted: Cell::new(0),
            spare: RefCell::new(Vec::new()),
        });
        for _ in 0..nbufs {
            inner.post(vec![0u8; buf_size])?;
        }
        Ok(RequestQueue(inner))
    }

    /// Resolves when the node stops: [`Node::stop`], or every shard's future has returned.
    pub async fn stopped(&self) {
        loop {
            let l = self.0.shutdown.listen();
            if self.0.stopping.get() {
                return;
            }
            l.await;
        }
    }

    /// Whether the node is stopping.
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.0.stopping.get()
    }
}

/// Waits for MD `md`'s unlinked event on `eq`, passing each event to `f`.
async fn wait_unlinked(
    lnet: &Lnet,
    eq: &EventQueue,
    md: MdHandle,
    timeout: Duration,
    mut f: impl FnMut(&Event),
) -> (MdBuffers, Result<()>) {
    let deadline = Instant::now() + timeout;
    let mut status = Ok(());
    let mut unlinked_by_us = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // After an unlink the final event follows once in-flight I/O ends; bound that too.
        let wait = if unlinked_by_us { timeout } else { left };
        let Some(ev) = rt::timeout(wait, eq.next()).await else {
            if unlinked_by_us {
                log::warn!("MD {md:?}: no final event after unlink; its buffers stay with LNet");
                return (MdBuffers::default(), Err(LnetError::TimedOut));
            }
            // Timed out: unlink; the buffers come back in the final event.
            status = Err(LnetError::TimedOut);
            unlinked_by_us = true;
            if lnet.unlink(md).is_err() {
                return (MdBuffers::default(), status);
            }
            continue;
        };
        if let Err(e) = &ev.status {
            if status.is_ok() {
                status = Err(e.clone());
            }
            if !ev.unlinked && !unlinked_by_us {
                unlinked_by_us = true;
                let _ = lnet.unlink(md);
            }
        }
        f(&ev);
        if ev.unlinked {
            return (ev.buffers.unwrap_or_default(), status);
        }
    }
}

#[derive(Debug)]
struct RqInner {
    lnet: Lnet,
    portal: u32,
    buf_size: usize,
    eq: EventQueue,
    posted: Cell<usize>,
    spare: RefCell<Vec<Vec<u8>>>,
}

impl RqInner {
    fn post(&self, buf: Vec<u8>) -> Result<()> {
        let opts = MdOptions { op_put: true, threshold: Some(1), ..MdOptions::default() };
        self.lnet.attach(
            self.portal,
            MatchEntry::any(),
            MdSpec::new(buf).options(opts),
            &self.eq,
        )?;
        self.posted.set(self.posted.get() + 1);
        Ok(())
    }
}

/// Request buffers posted on a portal; see [`Lnet::request_queue`].
#[derive(Debug, Clone)]
pub struct RequestQueue(Rc<RqInner>);

/// A request that arrived in a [`RequestQueue`] buffer. Dropping it reposts the buffer.
#[derive(Debug)]
pub struct Request {
    /// The request bytes (`mlength` of them).
    pub data: Vec<u8>,
    /// The sender.
    pub initiator: ProcessId,
    /// Match bits: the request's xid for ptlrpc.
    pub match_bits: u64,
    /// The portal.
    pub portal: u32,
    /// Bytes the sender sent.
    pub rlength: u32,
    /// `hdr_data` of the PUT.
    pub hdr_data: u64,
    /// The NID the request was addressed to on our side.
    pub self_nid: Nid,
    home: Option<Rc<RqInner>>,
}

impl Request {
    /// ptlrpc's name for the match bits.
    #[must_use]
    pub fn xid(&self) -> u64 {
        self.match_bits
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            let mut buf = std::mem::take(&mut self.data);
            buf.resize(home.buf_size, 0);
            if home.post(buf).is_err() {
                log::warn!("request buffer on portal {} could not be reposted", home.portal);
            }
        }
    }
}

impl RequestQueue {
    /// Buffers currently posted.
    #[must_use]
    pub fn posted(&self) -> usize {
        self.0.posted.get()
    }

    /// The next request.
    pub async fn next(&self) -> Request {
        loop {
            let ev = self.0.eq.next().await;
            if ev.unlinked {
                self.0.posted.set(self.0.posted.get().saturating_sub(1));
            }
            let mut data = ev.buffers.and_then(MdBuffers::into_vec).unwrap_or_default();
            if ev.kind != EventKind::Put || ev.status.is_err() {
                if !data.is_empty() {
                    self.0.spare.borrow_mut().push(data);
                }
                // Keep the number of posted buffers up.
                while let Some(b) = self.0.spare.borrow_mut().pop() {
                    let _ = self.0.post(b);
                }
                continue;
            }
            data.truncate(ev.mlength as usize);
            let self_nid =
                self.0.lnet.self_id_for(ev.initiator.nid).map(|p| p.nid).unwrap_or(Nid::ANY);
            return Request {
                data,
                initiator: ev.initiator,
                match_bits: ev.match_bits,
                portal: ev.portal,
                rlength: ev.rlength,
                hdr_data: ev.hdr_data,
                self_nid,
                home: Some(self.0.clone()),
            };
        }
    }
}

/// A running LNet node: one shard per executor.
#[derive(Debug)]
pub struct Node {
    pool: Option<rt::Pool>,
    stop: Arc<AtomicBool>,
}

impl Node {
    /// Starts the node's shards and runs `f(lnet)` on each. The node's LNet stops as a whole,
    /// once every shard's future has returned (or panicked) or on [`Node::stop`] (servers
    /// await [`Lnet::stopped`]). A shard whose future returned early keeps serving until
    /// then: it is the home shard of some peers, and the other shards' traffic to and from
    /// those peers goes through its sockets.
    pub fn start<F, Fut>(cfg: Config, f: F) -> Result<Node>
    where
        F: FnOnce(Lnet) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        cfg.validate()?;
        let n = cfg.placement.count();
        let cfg = Arc::new(cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(1);
        let mesh: MeshBuilder<XMsg, rt::Full> = MeshBuilder::full(n, cfg.mesh_capacity);
        let counter = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(n));
        let stop2 = stop.clone();
        let pool = rt::start_pool("lnd", &cfg.placement.clone(), move || {
            let cfg = cfg.clone();
            let mesh = mesh.clone();
            let stop = stop2.clone();
            let counter = counter.clone();
            let finished = Finished { running: running.clone(), stop: stop.clone(), done: false };
            async move {
                run_shard(cfg, n, mesh, counter, finished, incarnation, f).await;
            }
        })?;
        Ok(Node { pool: Some(pool), stop })
    }

    /// Asks every shard to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Waits for every shard to finish.
    pub fn join(mut self) -> Result<()> {
        let Some(p) = self.pool.take() else { return Ok(()) };
        for r in p.join() {
            r.map_err(LnetError::Io)?;
        }
        Ok(())
    }
}

/// One shard's share of the node-wide count of user futures still running. Dropped (also when
/// the shard's future panicked) or finished, it counts the shard out; the last one out sets the
/// node's stop flag.
struct Finished {
    running: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    done: bool,
}

impl Finished {
    /// Counts this shard out; true if it was the last one.
    fn finish(&mut self) -> bool {
        if std::mem::replace(&mut self.done, true) {
            return false;
        }
        let last = self.running.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            self.stop.store(true, Ordering::Release);
        }
        last
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.finish();
    }
}

async fn run_shard<F, Fut>(
    cfg: Arc<Config>,
    n: usize,
    mesh: MeshBuilder<XMsg, rt::Full>,
    counter: Arc<AtomicUsize>,
    mut finished: Finished,
    incarnation: u64,
    f: F,
) where
    F: FnOnce(Lnet) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let (id, senders, receivers) = if n > 1 {
        match mesh.join().await {
            Ok((s, r)) => (s.peer_id(), Some(s), Some(r)),
            Err(_) => {
                log::error!("lnd: joining the shard mesh failed");
                return;
            }
        }
    } else {
        (counter.fetch_add(1, Ordering::AcqRel), None, None)
    };
    let core: CoreRef = Rc::new(Core::new(id, n, cfg.clone(), incarnation));
    *core.mesh.borrow_mut() = senders.map(Rc::new);
    if let Some(mut r) = receivers {
        for (_, rx) in r.streams() {
            let c = core.clone();
            rt::spawn(async move {
                while let Some(m) = rx.recv().await {
                    c.on_xmsg(m).await;
                }
            });
        }
    }
    if let Err(e) = core.attach_ping_target() {
        log::error!("lnd shard {id}: ping target: {e}");
    }
    if cfg.accept != AcceptMode::None {
        for (i, ni) in cfg.nis.iter().enumerate() {
            match rt::Listener::bind(ni.listen) {
                Ok(l) => {
                    let c = core.clone();
                    rt::spawn(async move { crate::conn::accept_loop(c, i, l).await });
                }
                Err(e) => log::error!("lnd shard {id}: cannot listen on {}: {e}", ni.listen),
            }
        }
    }
    let c = core.clone();
    let stop = finished.stop.clone();
    rt::spawn(async move { crate::timer::tick_loop(c, stop).await });
    f(Lnet(core.clone())).await;
    // Other shards may still need this one (peers homed here, MDs and routes owned here), so
    // it keeps serving until the whole node stops.
    if finished.finish() {
        core.stopping.set(true);
        core.shutdown.notify();
        for s in (0..n).filter(|&s| s != id) {
            core.xsend(s, XMsg::Stop);
        }
    }
    Lnet(core.clone()).stopped().await;
    let ids: Vec<ProcessId> = core.st.borrow().peers.keys().copied().collect();
    for p in ids {
        core.close_peer(p, "shutdown");
    }
    // Let writers and readers see the close.
    rt::sleep(Duration::from_millis(5)).await;
}

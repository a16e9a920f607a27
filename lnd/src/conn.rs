//! socklnd connections: the acceptor, the hello exchange (passive and active), the race and
//! incarnation rules, and each connection's writer (`socklnd.c`, `socklnd_cb.c`,
//! `acceptor.c` in Lustre). The reader is in `rx.rs`.

use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use proto::Nid;
use proto::lnet::{
    ACCEPTOR_MAGIC, ACCEPTOR_VERSION, ACCEPTOR_VERSION_16, Hello, KsockMsgHdr, LnetAcceptorConnreq,
    PID_USERFLAG, PROTO_MAGIC, PROTO_TCP_MAGIC, conn_type, ksock_version,
};
use proto::wire::Wire;
use zerocopy::{FromBytes, IntoBytes};

use crate::config::AcceptMode;
use crate::error::{LnetError, Result};
use crate::md::ProcessId;
use crate::ratelog::rlog;
use crate::rt::{self, Listener, Notify, Sock};
use crate::shard::{Conn, Core, CoreRef, Tx};

/// `LNET_ACCEPTOR_MAX_RESERVED_PORT`.
const MAX_RESERVED_PORT: u16 = 1023;

/// An accepted socket on its way to the peer's home shard, with what the hello said.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) fd: OwnedFd,
    pub(crate) ni: usize,
    pub(crate) hello: Hello,
    pub(crate) peer: ProcessId,
}

/// Accepts connections for NI `ni` on this shard, forever.
pub(crate) async fn accept_loop(core: CoreRef, ni: usize, listener: Listener) {
    loop {
        let l = core.shutdown.listen();
        let r = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            l.await;
            None
        })
        .await;
        let Some(r) = r else { return };
        match r {
            Ok((s, peer)) => {
                let c = core.clone();
                rt::spawn(async move {
                    let t = c.cfg.accept_timeout;
                    match rt::timeout(t, passive(&c, ni, s, peer)).await {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            Core::bump(&c.stats.accept_refused);
                            rlog!(c.rl_conn, Warn, "refusing connection from {peer}: {e}");
                        }
                        None => {
                            Core::bump(&c.stats.accept_refused);
                            rlog!(c.rl_conn, Warn, "connection from {peer}: handshake timed out");
                        }
                    }
                });
            }
            Err(e) => {
                rlog!(core.rl_conn, Warn, "accept error: {e}; pausing");
                rt::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn refuse(msg: String) -> LnetError {
    LnetError::Proto(msg)
}

/// Our answer to an acceptor request or hello we do not speak: our own acceptor request with
/// version 1 and NID 0 (`lnet_accept`), telling the peer we are "old".
async fn reply_old_acceptor(sock: &Sock) {
    let cr = LnetAcceptorConnreq {
        acr_magic: ACCEPTOR_MAGIC.into(),
        acr_version: ACCEPTOR_VERSION.into(),
        acr_nid: 0.into(),
    };
    let _ = sock.write_all(cr.as_bytes()).await;
}

/// The passive side: acceptor request, hello, then hand the socket to the peer's home shard.
async fn passive(
    core: &CoreRef,
    ni_hint: usize,
    s: rt::Stream,
    peer_addr: SocketAddr,
) -> Result<()> {
    let _ = ni_hint;
    if core.cfg.accept == AcceptMode::Secure && peer_addr.port() > MAX_RESERVED_PORT {
        return Err(refuse(format!("insecure port {}", peer_addr.port())));
    }
    let sock = Sock::new(s);
    let mut w = [0u8; 4];
    sock.read_exact(&mut w).await?;
    let magic = u32::from_le_bytes(w);
    if magic != ACCEPTOR_MAGIC {
        if magic == PROTO_MAGIC || magic == PROTO_MAGIC.swap_bytes() {
            // A future peer probing for our version.
            reply_old_acceptor(&sock).await;
            return Err(refuse("LNet magic instead of an acceptor request".into()));
        }
        let what = if magic == PROTO_TCP_MAGIC { "'old' socknal/tcpnal" } else { "unrecognised" };
        return Err(refuse(format!("magic {magic:08x}: {what} acceptor protocol")));
    }
    sock.read_exact(&mut w).await?;
    let target = match u32::from_le_bytes(w) {
        ACCEPTOR_VERSION => {
            let mut n = [0u8; 8];
            sock.read_exact(&mut n).await?;
            Nid(u64::from_le_bytes(n))
        }
        ACCEPTOR_VERSION_16 => {
            let mut n = [0u8; 20];
            sock.read_exact(&mut n).await?;
            let l = proto::nid::LnetNid::read(&n)?;
            l.to_nid4().unwrap_or(Nid::ANY)
        }
        v => {
            reply_old_acceptor(&sock).await;
            return Err(refuse(format!("acceptor version {v}")));
        }
    };
    let Some(ni) = core.cfg.nis.iter().position(|n| n.nid == target) else {
        return Err(refuse(format!("no matching NI for {target}")));
    };
    // The hello: peek magic and version, then the rest.
    let mut head = [0u8; 8];
    sock.read_exact(&mut head).await?;
    let version = match Hello::peek_version(&head) {
        Ok(v @ (ksock_version::V1 | ksock_version::V2 | ksock_version::V3)) => v,
        Ok(v) => {
            if v == ksock_version::V4 {
                // 2.15 does not speak V4: read it for the log, answer as 2.15 does.
                let mut rest = [0u8; 72];
                let mut all = head.to_vec();
                if sock.read_exact(&mut rest).await.is_ok() {
                    all.extend_from_slice(&rest);
                    if let Ok((h, _)) = Hello::decode(&all) {
                        log::info!("V4 hello from {} ({peer_addr}); answering V3", h.src_nid);
                    }
                }
            }
            reply_unknown_version(core, &sock, ni).await;
            return Err(refuse(format!("unknown socklnd version {v}")));
        }
        Err(proto::WireError::BadVersion { got, .. }) => {
            reply_unknown_version(core, &sock, ni).await;
            return Err(refuse(format!("unknown socklnd version {got}")));
        }
        Err(e) => return Err(e.into()),
    };
    let fixed = Hello::fixed_len(version)?;
    let mut buf = vec![0u8; fixed];
    if let Some(d) = buf.get_mut(..8) {
        d.copy_from_slice(&head);
    }
    sock.read_exact(buf.get_mut(8..).unwrap_or_default()).await?;
    let nips = match version {
        ksock_version::V1 => u32::from_le_bytes(w4(&buf, 28)) / 4,
        _ => u32::from_le_bytes(w4(&buf, 52)),
    };
    if nips > proto::lnet::INTERFACES_NUM {
        return Err(refuse(format!("hello with {nips} IPs")));
    }
    let mut ips = vec![0u8; nips as usize * 4];
    sock.read_exact(&mut ips).await?;
    buf.extend_from_slice(&ips);
    let (hello, _) = Hello::decode(&buf)?;
    let SocketAddr::V4(pa) = peer_addr else {
        return Err(refuse("IPv6 peer".into()));
    };
    let peer = if peer_addr.port() > MAX_RESERVED_PORT {
        // Userspace peer: its identity comes from the socket (`ksocknal_recv_hello`).
        ProcessId {
            nid: Nid::new(target.net(), u32::from(*pa.ip())),
            pid: u32::from(peer_addr.port()) | PID_USERFLAG,
        }
    } else {
        ProcessId { nid: hello.src_nid, pid: hello.src_pid }
    };
    if conn_type::invert(hello.ctype) == conn_type::NONE
        || !(conn_type::ANY..=conn_type::BULK_OUT).contains(&hello.ctype)
    {
        return Err(refuse(format!("unexpected conn type {}", hello.ctype)));
    }
    let home = core.home(peer.nid);
    if home == core.id {
        register_passive(core, sock, ni, hello, peer).await;
        return Ok(());
    }
    let s = Rc::try_unwrap(sock_inner(sock)).map_err(|_| LnetError::Io("socket shared".into()))?;
    let fd = rt::stream_into_fd(s.into_inner())?;
    Core::bump(&core.stats.fd_handoff);
    core.xsend(home, crate::shard::XMsg::Conn(Box::new(Handoff { fd, ni, hello, peer })));
    Ok(())
}

fn sock_inner(s: Sock) -> Rc<std::cell::RefCell<rt::Stream>> {
    s.into_inner()
}

fn w4(b: &[u8], off: usize) -> [u8; 4] {
    b.get(off..off + 4).and_then(|s| s.try_into().ok()).unwrap_or([0; 4])
}

/// 2.15's answer to a hello version it does not know: a V3 hello with ctype NONE naming
/// ourselves as destination, then close.
async fn reply_unknown_version(core: &CoreRef, sock: &Sock, ni: usize) {
    let me = core.nid_of(ni);
    let h = Hello {
        version: ksock_version::V3,
        src_nid: me,
        dst_nid: me,
        src_pid: core.cfg.pid,
        dst_pid: 0,
        src_incarnation: core.incarnation,
        dst_incarnation: 0,
        ctype: conn_type::NONE,
        nips: 0,
    };
    let mut b = Vec::new();
    if h.encode(&mut b).is_ok() {
        let _ = sock.write_all(&b).await;
    }
}

/// Takes a socket handed over by another shard's acceptor.
pub(crate) fn adopt(core: &CoreRef, h: Handoff) {
    let sock = Sock::new(rt::stream_from_fd(h.fd));
    let c = core.clone();
    rt::spawn(async move {
        register_passive(&c, sock, h.ni, h.hello, h.peer).await;
    });
}

enum Verdict {
    Accept,
    /// Reply ctype NONE: race lost, duplicate or reboot; the peer retries.
    None(&'static str),
}

/// `ksocknal_create_conn` for a passive connection on the home shard.
async fn register_passive(core: &CoreRef, sock: Sock, ni: usize, hello: Hello, peer: ProcessId) {
    let my_type = conn_type::invert(hello.ctype);
    let (local, remote) = match sock.addrs() {
        Ok(a) => a,
        Err(_) => return,
    };
    let loopback = local.ip() == remote.ip();
    let mut reboot = false;
    let verdict = {
        let st = &mut *core.st.borrow_mut();
        let full = !st.peers.contains_key(&peer) && st.peers.len() >= core.cfg.max_peers;
        if full {
            Verdict::None("peer table full")
        } else {
            let credits = core.cfg.peer_credits;
            let p = st
                .peers
                .entry(peer)
                .or_insert_with(|| crate::shard::Peer::new_pub(peer, ni, credits));
            if peer.nid < core.nid_of(ni) && p.connecting {
                Verdict::None("connection race resolution")
            } else if p.incarnation.is_some_and(|i| i != hello.src_incarnation)
                || p.proto.is_some_and(|v| v != hello.version)
            {
                p.incarnation = None;
                p.proto = None;
                reboot = true;
                Verdict::None("peer rebooted")
            } else {
                p.incarnation = Some(hello.src_incarnation);
                p.proto = Some(hello.version);
                let dups = p
                    .conns
                    .iter()
                    .filter_map(|c| st.conns.get(c))
                    .filter(|c| !c.closing && c.ctype == my_type && c.peer_addr.ip() == remote.ip())
                    .count();
                if !loopback && dups >= core.cfg.conns_per_type {
                    Verdict::None("duplicate")
                } else {
                    Verdict::Accept
                }
            }
        }
    };
    if reboot {
        Core::bump(&core.stats.peer_reboots);
        core.close_peer(peer, "peer rebooted");
    }
    let reply_type = match verdict {
        Verdict::Accept => my_type,
        Verdict::None(why) => {
            Core::bump(&core.stats.conn_race_none);
            log::debug!("not creating conn {peer} type {my_type}: {why}");
            conn_type::NONE
        }
    };
    let reply = Hello {
        version: hello.version,
        src_nid: core.nid_of(ni),
        dst_nid: peer.nid,
        src_pid: core.cfg.pid,
        dst_pid: hello.dst_pid,
        src_incarnation: core.incarnation,
        dst_incarnation: hello.dst_incarnation,
        ctype: reply_type,
        nips: 0,
    };
    let mut b = Vec::new();
    if reply.encode(&mut b).is_err() {
        return;
    }
    if reply_type == conn_type::NONE {
        let _ = sock.write_all(&b).await;
        return;
    }
    let cid = add_conn(core, sock.clone(), peer, ni, my_type, hello.version, remote);
    if sock.write_all(&b).await.is_err() {
        core.close_conn(cid, "hello reply failed");
        start_conn(core, cid);
        return;
    }
    Core::bump(&core.stats.conns_accepted);
    start_conn(core, cid);
    core.pump(peer);
}

#[allow(clippy::too_many_arguments)]
fn add_conn(
    core: &CoreRef,
    sock: Sock,
    peer: ProcessId,
    ni: usize,
    ctype: i32,
    version: u32,
    peer_addr: SocketAddr,
) -> u64 {
    let st = &mut *core.st.borrow_mut();
    let cid = st.next_conn;
    st.next_conn += 1;
    let now = Instant::now();
    st.conns.insert(
        cid,
        Conn {
            peer,
            ni,
            ctype,
            version,
            sock,
            txq: Default::default(),
            wake: Notify::default(),
            closing: false,
            peer_addr,
            last_tx_progress: now,
            last_rx: now,
            rx_busy: false,
        },
    );
    if let Some(p) = st.peers.get_mut(&peer) {
        p.conns.push(cid);
        p.last_alive = now;
        p.fail_since = None;
        p.retry_interval = Duration::ZERO;
    }
    cid
}

/// Starts a connection's reader and writer.
fn start_conn(core: &CoreRef, cid: u64) {
    let c = core.clone();
    rt::spawn(async move { writer(c, cid).await });
    let c = core.clone();
    rt::spawn(async move { crate::rx::reader(c, cid).await });
}

/// Starts connecting to a peer if it has no connection and none is being made.
pub(crate) fn maybe_connect(core: &CoreRef, id: ProcessId) {
    {
        let mut st = core.st.borrow_mut();
        let Some(p) = st.peers.get_mut(&id) else { return };
        if p.connecting || p.userspace() || Instant::now() < p.next_retry {
            return;
        }
        p.connecting = true;
    }
    let c = core.clone();
    rt::spawn(async move { connect_peer(c, id).await });
}

enum ConnErr {
    Retry(&'static str),
    Fatal(LnetError),
}

async fn connect_peer(core: CoreRef, id: ProcessId) {
    let types: &[i32] = if core.cfg.typed_conns {
        &[conn_type::CONTROL, conn_type::BULK_IN, conn_type::BULK_OUT]
    } else {
        &[conn_type::ANY]
    };
    let mut failure: Option<LnetError> = None;
    'types: for &t in types {
        let have = {
            let st = core.st.borrow();
            st.peers.get(&id).is_some_and(|p| {
                p.conns.iter().filter_map(|c| st.conns.get(c)).any(|c| !c.closing && c.ctype == t)
            })
        };
        if have {
            continue;
        }
        let mut races = 0;
        loop {
            match connect_one(&core, id, t).await {
                Ok(()) => break,
                Err(ConnErr::Retry(why)) => {
                    races += 1;
                    log::debug!("connect {id} type {t}: {why}; retrying");
                    if races > 5 {
                        failure = Some(LnetError::Proto(format!("connect kept failing: {why}")));
                        break 'types;
                    }
                    rt::sleep(Duration::from_millis(10 * races)).await;
                }
                Err(ConnErr::Fatal(e)) => {
                    failure = Some(e);
                    break 'types;
                }
            }
        }
    }
    let now = Instant::now();
    let mut give_up = false;
    {
        let mut st = core.st.borrow_mut();
        if let Some(p) = st.peers.get_mut(&id) {
            p.connecting = false;
            if failure.is_some() && p.conns.is_empty() {
                let since = *p.fail_since.get_or_insert(now);
                p.retry_interval =
                    (p.retry_interval * 2).max(core.cfg.min_reconnect).min(core.cfg.max_reconnect);
                p.next_retry = now + p.retry_interval;
                if now.duration_since(since) >= core.cfg.timeout {
                    give_up = true;
                    p.fail_since = None;
                }
            }
        }
    }
    if let Some(e) = failure {
        Core::bump(&core.stats.connect_failed);
        rlog!(core.rl_conn, Warn, "shard {}: connecting to {id} failed: {e}", core.id);
        if give_up {
            Core::bump(&core.stats.peers_dead);
            core.fail_peer_queue(id, &LnetError::Unreachable(id.nid), false);
        }
    }
    core.pump(id);
}

/// One active connection of type `ctype` (`ksocknal_connect` + `ksocknal_create_conn`).
async fn connect_one(
    core: &CoreRef,
    id: ProcessId,
    ctype: i32,
) -> std::result::Result<(), ConnErr> {
    let (ni, version) = {
        let st = core.st.borrow();
        let p = st.peers.get(&id).ok_or(ConnErr::Fatal(LnetError::Shutdown))?;
        (p.ni, p.proto.unwrap_or(core.cfg.proto_version))
    };
    let ni_cfg = core.cfg.nis.get(ni).ok_or(ConnErr::Fatal(LnetError::NoRoute(id.nid)))?;
    let addr: SocketAddrV4 =
        core.cfg.peer_addr(id.nid).ok_or(ConnErr::Fatal(LnetError::NoRoute(id.nid)))?;
    let s = rt::connect(*ni_cfg.listen.ip(), addr, core.cfg.connect_privileged, core.cfg.timeout)
        .await
        .map_err(|e| ConnErr::Fatal(e.into()))?;
    let sock = Sock::new(s);
    let mut b = LnetAcceptorConnreq::new(id.nid).to_vec();
    let hello = Hello {
        version,
        src_nid: ni_cfg.nid,
        dst_nid: id.nid,
        src_pid: core.cfg.pid,
        dst_pid: 0,
        src_incarnation: core.incarnation,
        dst_incarnation: 0,
        ctype,
        nips: 0,
    };
    hello.encode(&mut b).map_err(|e| ConnErr::Fatal(e.into()))?;
    let io = |e: std::io::Error| ConnErr::Fatal(e.into());
    let reply = rt::timeout(core.cfg.timeout, async {
        sock.write_all(&b).await.map_err(io)?;
        let mut head = [0u8; 8];
        sock.read_exact(&mut head).await.map_err(io)?;
        if u32::from_le_bytes(w4(&head, 0)) == ACCEPTOR_MAGIC {
            return Err(ConnErr::Fatal(LnetError::Proto(
                "peer refused our acceptor protocol".into(),
            )));
        }
        let v = Hello::peek_version(&head).map_err(|e| ConnErr::Fatal(e.into()))?;
        let fixed = Hello::fixed_len(v).map_err(|e| ConnErr::Fatal(e.into()))?;
        let mut buf = vec![0u8; fixed];
        if let Some(d) = buf.get_mut(..8) {
            d.copy_from_slice(&head);
        }
        sock.read_exact(buf.get_mut(8..).unwrap_or_default()).await.map_err(io)?;
        let nips = if v == ksock_version::V1 {
            u32::from_le_bytes(w4(&buf, 28)) / 4
        } else if v == ksock_version::V4 {
            u32::from_le_bytes(w4(&buf, 76))
        } else {
            u32::from_le_bytes(w4(&buf, 52))
        };
        if nips > proto::lnet::INTERFACES_NUM {
            return Err(ConnErr::Fatal(LnetError::Proto("too many IPs in hello".into())));
        }
        let mut ips = vec![0u8; nips as usize * 4];
        sock.read_exact(&mut ips).await.map_err(io)?;
        buf.extend_from_slice(&ips);
        Hello::decode(&buf).map(|x| x.0).map_err(|e| ConnErr::Fatal(e.into()))
    })
    .await
    .ok_or(ConnErr::Fatal(LnetError::TimedOut))??;
    // The V1 hello carries no destination: skip that check there.
    if reply.src_nid != id.nid || reply.src_pid != id.pid {
        return Err(ConnErr::Fatal(LnetError::Proto(format!(
            "connected to {id} but it claims to be {}-{}",
            reply.src_pid, reply.src_nid
        ))));
    }
    if reply.version != version {
        if (ksock_version::V1..=ksock_version::V3).contains(&reply.version) {
            if let Some(p) = core.st.borrow_mut().peers.get_mut(&id) {
                p.proto = Some(reply.version);
            }
            return Err(ConnErr::Retry("retry with different protocol version"));
        }
        return Err(ConnErr::Fatal(LnetError::Proto(format!("peer speaks V{}", reply.version))));
    }
    if reply.ctype == conn_type::NONE {
        return Err(ConnErr::Retry("lost conn race"));
    }
    if conn_type::invert(reply.ctype) != ctype {
        return Err(ConnErr::Fatal(LnetError::Proto(format!(
            "mismatched types: me {ctype}, peer {}",
            reply.ctype
        ))));
    }
    let (_, remote) = sock.addrs().map_err(|e| ConnErr::Fatal(e.into()))?;
    let rebooted = {
        let mut st = core.st.borrow_mut();
        let p = st.peers.get_mut(&id).ok_or(ConnErr::Fatal(LnetError::Shutdown))?;
        if p.incarnation.is_some_and(|i| i != reply.src_incarnation) {
            p.incarnation = None;
            p.proto = None;
            true
        } else {
            p.incarnation = Some(reply.src_incarnation);
            p.proto = Some(reply.version);
            false
        }
    };
    if rebooted {
        Core::bump(&core.stats.peer_reboots);
        core.close_peer(id, "peer rebooted");
        return Err(ConnErr::Retry("peer rebooted"));
    }
    let cid = add_conn(core, sock, id, ni, ctype, version, remote);
    Core::bump(&core.stats.conns_connected);
    start_conn(core, cid);
    Ok(())
}

/// Most iovecs per `sendmsg` (well under IOV_MAX).
const MAX_IOV: usize = 64;
/// Most bytes gathered into one `sendmsg`.
const MAX_BATCH: usize = 4 << 20;

/// A connection's writer: gathers queued frames into vectored sends.
async fn writer(core: CoreRef, cid: u64) {
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(MAX_IOV);
    loop {
        let (listen, sock) = {
            let st = core.st.borrow();
            let Some(c) = st.conns.get(&cid) else { return };
            if c.closing {
                break;
            }
            (c.wake.listen(), c.sock.clone())
        };
        iov.clear();
        build_batch(&core, cid, &mut iov);
        if iov.is_empty() {
            // `listen` was taken before looking at the queue: anything queued since wakes it.
            listen.await;
            continue;
        }
        let r = match sock.sendmsg_nb(&iov) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => {
                log::debug!("shard {}: conn {cid} EAGAIN", core.id);
                // Socket buffer full: wait for room by writing the first piece.
                let (p, l) = iov.first().map_or((std::ptr::null(), 0), |v| {
                    (v.iov_base.cast_const().cast::<u8>(), v.iov_len)
                });
                // SAFETY: the piece is a boxed frame header or MD/owned payload memory that
                // stays alive until this frame completes, which only this task decides.
                unsafe { sock.write_raw(p, l) }.await
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(n) => advance(&core, cid, n),
            Err(e) => {
                core.close_conn(cid, &format!("write error: {e}"));
                break;
            }
        }
        rt::yield_if_needed().await;
    }
    // Closing: fail what this connection still holds and forget it.
    let (txs, peer) = {
        let mut st = core.st.borrow_mut();
        match st.conns.remove(&cid) {
            Some(c) => (c.txq, c.peer),
            None => return,
        }
    };
    for mut tx in txs {
        if let Some(m) = tx.msg.take() {
            core.complete(m.done, Err(LnetError::ConnClosed));
            core.return_credit(peer);
        }
    }
}

/// Starts frames that have not started (ZC cookies, piggy-backed ZC-ACKs, checksums) and
/// gathers the unwritten bytes of the queue into `iov`.
fn build_batch(core: &Core, cid: u64, iov: &mut Vec<libc::iovec>) {
    let st = &mut *core.st.borrow_mut();
    let Some(c) = st.conns.get_mut(&cid) else { return };
    let Some(p) = st.peers.get_mut(&c.peer) else { return };
    let v2plus = c.version >= ksock_version::V2;
    if !v2plus {
        p.zc_acks.clear();
    }
    let mut total = 0usize;
    let zc_min = core.cfg.zc_min_payload;
    let mut all_included = true;
    for tx in c.txq.iter_mut() {
        if iov.len() + 4 > MAX_IOV || total >= MAX_BATCH {
            all_included = false;
            break;
        }
        if !tx.started {
            start_tx(core, tx, p, v2plus, zc_min, c.version);
        }
        push_tx_iov(tx, iov, &mut total);
    }
    // ZC-ACKs nobody could carry go in NOOPs, ranges where the cookies are consecutive.
    if v2plus && !p.zc_acks.is_empty() {
        let mut acks = std::mem::take(&mut p.zc_acks);
        acks.sort_unstable();
        acks.dedup();
        let first_new = c.txq.len();
        let mut i = 0;
        while i < acks.len() {
            let a = acks.get(i).copied().unwrap_or(0);
            let mut j = i;
            while acks.get(j + 1).is_some_and(|&n| Some(n) == acks.get(j).map(|x| x + 1)) {
                j += 1;
            }
            let b = acks.get(j).copied().unwrap_or(a);
            let mut tx = if j > i { Tx::noop(a, b) } else { Tx::noop(0, a) };
            Core::add(&core.stats.zc_ack_tx, j - i + 1);
            Core::bump(&core.stats.noop_tx);
            tx.started = true;
            if core.cfg.enable_csum && c.version == ksock_version::V2 {
                set_csum(&mut tx);
            }
            c.txq.push_back(tx);
            i = j + 1;
        }
        // The NOOPs go out in this batch only if everything ahead of them does.
        if all_included {
            for tx in c.txq.iter().skip(first_new) {
                if iov.len() >= MAX_IOV {
                    break;
                }
                push_tx_iov(tx, iov, &mut total);
            }
        }
    }
}

fn start_tx(
    core: &Core,
    tx: &mut Tx,
    p: &mut crate::shard::Peer,
    v2plus: bool,
    zc_min: usize,
    version: u32,
) {
    tx.started = true;
    let Some(m) = tx.msg.as_ref() else { return };
    Core::bump(&core.stats.msgs_tx);
    Core::add(&core.stats.bytes_tx, m.payload_len());
    if !v2plus {
        return;
    }
    let Ok((k, _)) = KsockMsgHdr::mut_from_prefix(&mut tx.hdr[..]) else { return };
    if zc_min > 0 && m.payload_len() >= zc_min {
        let c = p.zc_next;
        p.zc_next = match p.zc_next.wrapping_add(1) {
            0 => 2,
            n => n,
        };
        tx.zc_cookie = c;
        k.ksh_zc_cookies[0] = c.into();
        Core::bump(&core.stats.zc_req_tx);
    }
    if let Some(a) = p.zc_acks.pop() {
        k.ksh_zc_cookies[1] = a.into();
        Core::bump(&core.stats.zc_ack_tx);
        Core::bump(&core.stats.zc_ack_piggyback);
    }
    if core.cfg.enable_csum && version == ksock_version::V2 {
        set_csum(tx);
    }
}

/// socklnd's checksum: crc32 (the kernel's `crc32_le`, seed ~0, no final inversion) over the
/// ksock header with `ksm_csum` zero, the LNet header and the payload.
pub(crate) fn csum_pieces(pieces: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in pieces {
        h.update(p);
    }
    !h.finalize()
}

fn set_csum(tx: &mut Tx) {
    let mut pieces: Vec<&[u8]> = vec![tx.hdr.get(..tx.hdr_len).unwrap_or_default()];
    let payload: Vec<&[u8]> = tx
        .msg
        .as_ref()
        .map(|m| {
            m.iov
                .iter()
                // SAFETY: payload memory is alive while the frame is queued.
                .map(|&(p, l)| unsafe { std::slice::from_raw_parts(p, l) })
                .collect()
        })
        .unwrap_or_default();
    pieces.extend(payload);
    let c = csum_pieces(&pieces);
    if let Some(d) = tx.hdr.get_mut(4..8) {
        d.copy_from_slice(&c.to_le_bytes());
    }
}

fn push_tx_iov(tx: &Tx, iov: &mut Vec<libc::iovec>, total: &mut usize) {
    let mut skip = tx.written;
    let mut push = |p: *const u8, l: usize, iov: &mut Vec<libc::iovec>| {
        if skip >= l {
            skip -= l;
            return;
        }
        // SAFETY: `skip < l`: the pointer stays inside the piece.
        let base = unsafe { p.add(skip) };
        iov.push(libc::iovec { iov_base: base.cast_mut().cast(), iov_len: l - skip });
        *total += l - skip;
        skip = 0;
    };
    push(tx.hdr.as_ptr(), tx.hdr_len, iov);
    if let Some(m) = &tx.msg {
        for &(p, l) in &m.iov {
            if iov.len() >= MAX_IOV {
                break;
            }
            push(p, l, iov);
        }
    }
}

/// Accounts `n` written bytes against the queue and completes finished frames.
fn advance(core: &CoreRef, cid: u64, mut n: usize) {
    log::debug!("{} shard {}: conn {cid} wrote {n}", core.nid_of(0), core.id);
    let mut finished = Vec::new();
    let peer = {
        let st = &mut *core.st.borrow_mut();
        let Some(c) = st.conns.get_mut(&cid) else { return };
        c.last_tx_progress = Instant::now();
        while n > 0 {
            let Some(front) = c.txq.front_mut() else { break };
            let rem = front.nob() - front.written;
            if n >= rem {
                n -= rem;
                if let Some(tx) = c.txq.pop_front() {
                    finished.push(tx);
                }
            } else {
                front.written += n;
                n = 0;
            }
        }
        // Zero-length frames at the front are done too.
        c.peer
    };
    for mut tx in finished {
        let Some(m) = tx.msg.take() else { continue };
        if tx.zc_cookie != 0 {
            let st = &mut *core.st.borrow_mut();
            if let Some(p) = st.peers.get_mut(&peer) {
                p.zc_waiting.insert(tx.zc_cookie, (cid, m, Instant::now()));
            }
            continue;
        }
        core.complete(m.done, Ok(()));
        core.return_credit(peer);
    }
}

/// Handles ZC-ACK cookies from the peer (`ksocknal_handle_zcack`): one cookie, two separate
/// ones (`c0 > c1`) or a range (`c0 < c1`). Unknown cookies are a protocol error.
pub(crate) fn handle_zcack(
    core: &CoreRef,
    peer: ProcessId,
    version: u32,
    c0: u64,
    c1: u64,
) -> Result<()> {
    let c0 = if c0 == 0 { c1 } else { c0 };
    let mut count = if c0 > c1 { 2 } else { c1 - c0 + 1 };
    if c1 == 1 && version >= ksock_version::V3 {
        // Keepalive ping: ignore.
        return if count == 1 { Ok(()) } else { Err(LnetError::Proto("bad keepalive".into())) };
    }
    let done: Vec<crate::shard::OutMsg> = {
        let st = &mut *core.st.borrow_mut();
        let Some(p) = st.peers.get_mut(&peer) else { return Ok(()) };
        let keys: Vec<u64> = p
            .zc_waiting
            .keys()
            .copied()
            .filter(|&c| c == c0 || c == c1 || (c0 < c && c < c1))
            .collect();
        let mut v = Vec::new();
        for k in keys {
            if count == 0 {
                break;
            }
            if let Some((_, m, _)) = p.zc_waiting.remove(&k) {
                v.push(m);
                count -= 1;
            }
        }
        v
    };
    for m in done {
        core.complete(m.done, Ok(()));
        core.return_credit(peer);
    }
    if count == 0 {
        Ok(())
    } else {
        Err(LnetError::Proto(format!("unknown ZC-ACK cookie {c0}, {c1}")))
    }
}

/// Sends a keepalive NOOP `{0, 1}` to a peer.
pub(crate) fn send_keepalive(core: &CoreRef, peer: ProcessId) {
    let st = &mut *core.st.borrow_mut();
    let Some(p) = st.peers.get(&peer) else { return };
    let Some(cid) = crate::shard::pick_conn(&st.conns, &p.conns, 24, core.cfg.min_bulk, true)
    else {
        return;
    };
    let Some(c) = st.conns.get_mut(&cid) else { return };
    if c.version < ksock_version::V3 || !c.txq.is_empty() {
        return;
    }
    let mut tx = Tx::noop(0, 1);
    if core.cfg.enable_csum && c.version == ksock_version::V2 {
        set_csum(&mut tx);
    }
    c.txq.push_back(tx);
    c.wake.notify();
    Core::bump(&core.stats.keepalive_tx);
    Core::bump(&core.stats.noop_tx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csum_matches_kernel_crc32_le() {
        // crc32_le(~0, "123456789") without final inversion = !0xCBF43926.
        assert_eq!(csum_pieces(&[b"1234", b"56789"]), !0xCBF4_3926u32);
    }
}

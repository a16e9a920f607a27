//! The receive path: a connection's reader task and the handling of incoming LNet messages
//! (`ksocknal_process_receive` and `lnet_parse` with `lnet_parse_put/get/reply/ack`).
//!
//! A malformed header or a lying length is a protocol error: the connection is closed, as
//! socklnd does after `lnet_parse` fails. A well-formed message nobody wants (unknown portal,
//! unmatched bits, stale MD) is dropped: its payload is read and discarded and the connection
//! lives on.

use std::rc::Rc;
use std::time::Instant;

use proto::Nid;
use proto::lnet::{
    KsockMsgHdr, LnetAck, LnetBody, LnetHandleWire, LnetHdrNid4, LnetReply, RESERVED_PORTAL,
    ksock_msg_type, ksock_version,
};
use proto::wire::Wire;
use zerocopy::IntoBytes;

use crate::config::PortalRoute;
use crate::error::{LnetError, Result};
use crate::md::{EventKind, MatchInfo, MatchResult, MdHandle, ProcessId, Sink};
use crate::ratelog::rlog;
use crate::rt::{self, Sock};
use crate::shard::{Core, CoreRef, Done, Hold, OutMsg, XDeliver, XMsg, XSend};

/// Buffered reading with a bounded read-ahead; payloads past the buffered part are read
/// straight into their destination.
struct RxBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RxBuf {
    fn new(cap: usize) -> RxBuf {
        RxBuf { buf: vec![0; cap], start: 0, end: 0 }
    }

    fn avail(&self) -> usize {
        self.end - self.start
    }

    /// Makes at least `need` bytes available.
    async fn fill(&mut self, sock: &Sock, need: usize) -> std::io::Result<()> {
        if self.avail() >= need {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.avail() < need {
            let room = self.buf.get_mut(self.end..).unwrap_or_default();
            // SAFETY: `room` is part of our own buffer, not otherwise borrowed.
            let n = unsafe { sock.read_raw(room.as_mut_ptr(), room.len()) }.await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.end += n;
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let s = self.start;
        self.start += n;
        self.buf.get(s..s + n).unwrap_or_default()
    }

    /// Reads `len` bytes into the raw region `dst`.
    async fn read_into(&mut self, sock: &Sock, dst: &[(*mut u8, usize)]) -> std::io::Result<()> {
        for &(p, l) in dst {
            let mut done = 0;
            let from_buf = self.avail().min(l);
            if from_buf > 0 {
                let src = self.take(from_buf);
                // SAFETY: `p..p+l` is MD or owned memory kept alive by the caller; `src` is
                // our buffer; they cannot overlap.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, from_buf) };
                done = from_buf;
            }
            while done < l {
                // SAFETY: as above; the region stays valid across the await (pending ref).
                let n = unsafe { sock.read_raw(p.add(done), l - done) }.await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                done += n;
            }
        }
        Ok(())
    }

    /// Reads and discards `n` bytes.
    async fn skip(&mut self, sock: &Sock, mut n: usize) -> std::io::Result<()> {
        while n > 0 {
            if self.avail() == 0 {
                self.fill(sock, 1).await?;
            }
            let k = self.avail().min(n);
            self.start += k;
            n -= k;
        }
        Ok(())
    }
}

/// Where an incoming payload goes and what follows.
enum Plan {
    /// Discard the payload.
    Drop,
    /// Read it whole and hand it to the shard that owns the destination.
    Forward(usize),
    /// Read `mlength` bytes into an MD region, discard the rest, then report.
    Md { md: MdHandle, region: Vec<(*mut u8, usize)>, mlength: usize, after: After },
    /// A protocol error: close the connection.
    Fatal(String),
}

enum After {
    Put {
        src: ProcessId,
        portal: u32,
        match_bits: u64,
        offset: u32,
        rlength: u32,
        hdr_data: u64,
        ack: Option<LnetHandleWire>,
    },
    Reply {
        src: ProcessId,
        rlength: u32,
    },
}

struct RxCtx {
    ni: usize,
    peer: ProcessId,
    version: u32,
}

/// A connection's reader.
pub(crate) async fn reader(core: CoreRef, cid: u64) {
    let (sock, ctx) = {
        let st = core.st.borrow();
        let Some(c) = st.conns.get(&cid) else { return };
        (c.sock.clone(), RxCtx { ni: c.ni, peer: c.peer, version: c.version })
    };
    let mut rb = RxBuf::new(core.cfg.rx_readahead.max(256));
    let why = loop {
        match read_one(&core, cid, &sock, &ctx, &mut rb).await {
            Ok(()) => {}
            Err(e) => break e,
        }
        rt::yield_if_needed().await;
    };
    if matches!(why, LnetError::Proto(_)) {
        Core::bump(&core.stats.drop_proto);
        rlog!(
            core.rl_proto,
            Warn,
            "shard {}: {} from {}: closing its connections",
            core.id,
            why,
            ctx.peer
        );
        // A peer sending garbage loses every connection (`ksocknal_close_conn_and_siblings`).
        core.close_peer(ctx.peer, "protocol error");
    } else {
        core.close_conn(cid, &why.to_string());
    }
}

fn set_busy(core: &Core, cid: u64, busy: bool) {
    if let Some(c) = core.st.borrow_mut().conns.get_mut(&cid) {
        c.rx_busy = busy;
        c.last_rx = Instant::now();
    }
}

async fn read_one(
    core: &CoreRef,
    cid: u64,
    sock: &Sock,
    ctx: &RxCtx,
    rb: &mut RxBuf,
) -> Result<()> {
    let v1 = ctx.version == ksock_version::V1;
    let ksm = if v1 {
        KsockMsgHdr::lnet(0, 0)
    } else {
        rb.fill(sock, 24).await.map_err(io_err)?;
        set_busy(core, cid, true);
        KsockMsgHdr::read(rb.take(24)).map_err(|e| LnetError::Proto(e.to_string()))?
    };
    let csum = ksm.ksh_csum.get();
    if ksm.ksh_type.get() == ksock_msg_type::NOOP {
        Core::bump(&core.stats.noop_rx);
        if csum != 0 {
            let mut k = ksm;
            k.ksh_csum = 0.into();
            if crate::conn::csum_pieces(&[k.as_bytes()]) != csum {
                Core::bump(&core.stats.csum_errors);
                return Err(LnetError::Proto("NOOP checksum error".into()));
            }
        }
        touch_peer(core, ctx.peer);
        let c1 = ksm.ksh_zc_cookies[1].get();
        if c1 != 0 {
            crate::conn::handle_zcack(
                core,
                ctx.peer,
                ctx.version,
                ksm.ksh_zc_cookies[0].get(),
                c1,
            )?;
        }
        set_busy(core, cid, false);
        return Ok(());
    }
    rb.fill(sock, 72).await.map_err(io_err)?;
    set_busy(core, cid, true);
    let raw: [u8; 72] = rb.take(72).try_into().unwrap_or([0; 72]);
    // Validate the header as `lnet_parse` does; any fault closes the connection.
    let mut hdr = LnetHdrNid4::read(&raw).map_err(|e| LnetError::Proto(e.to_string()))?;
    let body = hdr.body().map_err(|e| LnetError::Proto(e.to_string()))?;
    if matches!(body, LnetBody::Hello(_)) {
        return Err(LnetError::Proto("HELLO type in an LNET message".into()));
    }
    let c1 = ksm.ksh_zc_cookies[1].get();
    if c1 != 0 {
        crate::conn::handle_zcack(core, ctx.peer, ctx.version, 0, c1)?;
    }
    Core::bump(&core.stats.msgs_rx);
    let rlength = hdr.payload_length.get() as usize;
    Core::add(&core.stats.bytes_rx, rlength);
    if ctx.peer.pid & proto::lnet::PID_USERFLAG != 0 {
        // Userspace peer: the identity assigned at connection time replaces what it claims.
        hdr.src_nid = ctx.peer.nid.into();
        hdr.src_pid = ctx.peer.pid.into();
    }
    touch_peer(core, ctx.peer);
    log::debug!("shard {}: conn {cid} from {}: {body:?} len {rlength}", core.id, ctx.peer);
    let plan = plan(core, ctx.ni, &hdr, &body, ctx.peer).await;
    let mut payload_for_csum: Option<Vec<(*mut u8, usize)>> = None;
    let mut owned = Vec::new();
    let ok_plan = match plan {
        Plan::Fatal(why) => return Err(LnetError::Proto(why)),
        Plan::Drop => {
            rb.skip(sock, rlength).await.map_err(io_err)?;
            None
        }
        Plan::Forward(shard) => {
            owned = vec![0u8; rlength];
            let region = vec![(owned.as_mut_ptr(), rlength)];
            rb.read_into(sock, &region).await.map_err(io_err)?;
            payload_for_csum = Some(region);
            Some(Err(shard))
        }
        Plan::Md { md, region, mlength, after } => {
            let r = rb.read_into(sock, &region).await;
            log::debug!("shard {}: conn {cid} payload {mlength} in: {}", core.id, r.is_ok());
            if let Err(e) = r {
                // The MD reference must still be dropped.
                finish_md(core, md, mlength, after, Err(LnetError::ConnClosed));
                return Err(io_err(e));
            }
            rb.skip(sock, rlength - mlength).await.map_err(io_err)?;
            if mlength == rlength {
                payload_for_csum = Some(region);
            }
            Some(Ok((md, mlength, after)))
        }
    };
    if csum != 0
        && ok_plan.is_some()
        && let Some(region) = &payload_for_csum
    {
        {
            let mut k = ksm;
            k.ksh_csum = 0.into();
            let mut pieces: Vec<&[u8]> = vec![k.as_bytes(), &raw];
            for &(p, l) in region {
                // SAFETY: the region was just filled and stays alive (pending ref or `owned`).
                pieces.push(unsafe { std::slice::from_raw_parts(p, l) });
            }
            if crate::conn::csum_pieces(&pieces) != csum {
                Core::bump(&core.stats.csum_errors);
                if let Some(Ok((md, mlength, after))) = ok_plan {
                    finish_md(
                        core,
                        md,
                        mlength,
                        after,
                        Err(LnetError::Io("checksum error".into())),
                    );
                }
                return Err(LnetError::Proto("checksum error".into()));
            }
        }
    }
    match ok_plan {
        None => {}
        Some(Err(shard)) => {
            core.xsend(
                shard,
                XMsg::Deliver(Box::new(XDeliver {
                    ni: ctx.ni,
                    hdr,
                    from: ctx.peer,
                    payload: owned,
                })),
            );
        }
        Some(Ok((md, mlength, after))) => finish_md(core, md, mlength, after, Ok(())),
    }
    // After the ACK (if any) is queued, so that it can carry the ZC-ACK.
    let zc = ksm.ksh_zc_cookies[0].get();
    if zc != 0 && !v1 {
        Core::bump(&core.stats.zc_req_rx);
        core.queue_zc_ack(ctx.peer, zc);
    }
    set_busy(core, cid, false);
    Ok(())
}

fn io_err(e: std::io::Error) -> LnetError {
    LnetError::Io(e.to_string())
}

fn touch_peer(core: &Core, id: ProcessId) {
    if let Some(p) = core.st.borrow_mut().peers.get_mut(&id) {
        p.last_alive = Instant::now();
    }
}

fn drop_msg(core: &Core, what: &str, hdr: &LnetHdrNid4) {
    Core::bump(&core.stats.drop_nomatch);
    Core::add(&core.stats.drop_bytes, hdr.payload_length.get() as usize);
    rlog!(
        core.rl_drop,
        Warn,
        "shard {}: dropping {what} from {}-{} (length {})",
        core.id,
        hdr.src_pid.get(),
        hdr.src(),
        hdr.payload_length.get()
    );
}

/// Decides what to do with an incoming message, committing to an MD when one matches.
async fn plan(
    core: &CoreRef,
    ni: usize,
    hdr: &LnetHdrNid4,
    body: &LnetBody,
    from: ProcessId,
) -> Plan {
    let me = core.nid_of(ni);
    let dest = hdr.dest();
    if dest != me {
        if dest.net() == me.net() {
            return Plan::Fatal(format!("bad dest nid {dest} (should have been sent direct)"));
        }
        if core.cfg.nis.iter().any(|n| n.nid == dest) {
            return Plan::Fatal(format!("bad dest nid {dest} (my nid on another network)"));
        }
        Core::bump(&core.stats.drop_not_for_me);
        drop_msg(core, "message for another node (routing disabled)", hdr);
        return Plan::Drop;
    }
    let src = ProcessId { nid: hdr.src(), pid: hdr.src_pid.get() };
    let rlength = hdr.payload_length.get() as usize;
    match *body {
        LnetBody::Put(p) => {
            Core::bump(&core.stats.put_rx);
            let portal = p.ptl_index.get();
            let target = route(core, portal, p.match_bits.get());
            if target != core.id {
                return Plan::Forward(target);
            }
            let info = MatchInfo {
                source: src,
                put: true,
                portal,
                match_bits: p.match_bits.get(),
                roffset: p.offset.get() as usize,
                rlength,
            };
            let Some(m) = match_lazy(core, &info).await else {
                drop_msg(core, "PUT (no match)", hdr);
                return Plan::Drop;
            };
            let (region, sink, ack_disable) = {
                let st = core.st.borrow();
                let md = st.mds.by_index(m.index);
                (
                    st.mds.region(m.handle, m.offset, m.mlength),
                    md.map(|d| d.sink.clone()),
                    md.is_some_and(|d| d.opts.ack_disable),
                )
            };
            if let Some(Sink::Eq(q)) = sink {
                q.wait_space().await;
            }
            let ack = (!p.ack_wmd.is_none() && !ack_disable).then_some(p.ack_wmd);
            Plan::Md {
                md: m.handle,
                region,
                mlength: m.mlength,
                after: After::Put {
                    src,
                    portal,
                    match_bits: p.match_bits.get(),
                    offset: u32::try_from(m.offset).unwrap_or(u32::MAX),
                    rlength: hdr.payload_length.get(),
                    hdr_data: p.hdr_data.get(),
                    ack,
                },
            }
        }
        LnetBody::Get(g) => {
            Core::bump(&core.stats.get_rx);
            let portal = g.ptl_index.get();
            let target = route(core, portal, g.match_bits.get());
            if target != core.id {
                return Plan::Forward(target);
            }
            serve_get(core, hdr, &g, src, from);
            Plan::Drop
        }
        LnetBody::Reply(r) => {
            Core::bump(&core.stats.reply_rx);
            let h = MdHandle::from_wire_cookie(r.dst_wmd.wh_object_cookie.get());
            if r.dst_wmd.wh_interface_cookie.get() != core.incarnation {
                drop_msg(core, "REPLY (stale interface cookie)", hdr);
                return Plan::Drop;
            }
            if h.shard() != core.id {
                if h.shard() >= core.nshards {
                    drop_msg(core, "REPLY (bad MD cookie)", hdr);
                    return Plan::Drop;
                }
                return Plan::Forward(h.shard());
            }
            match reply_commit(core, h, rlength) {
                Some(mlength) => {
                    let region = core.st.borrow().mds.region(h, 0, mlength);
                    Plan::Md {
                        md: h,
                        region,
                        mlength,
                        after: After::Reply { src, rlength: hdr.payload_length.get() },
                    }
                }
                None => {
                    drop_msg(core, "REPLY (invalid or inactive MD)", hdr);
                    Plan::Drop
                }
            }
        }
        LnetBody::Ack(a) => {
            Core::bump(&core.stats.ack_rx);
            let h = MdHandle::from_wire_cookie(a.dst_wmd.wh_object_cookie.get());
            if a.dst_wmd.wh_interface_cookie.get() != core.incarnation || h.shard() >= core.nshards
            {
                drop_msg(core, "ACK (stale cookie)", hdr);
                return Plan::Drop;
            }
            if h.shard() != core.id {
                return Plan::Forward(h.shard());
            }
            handle_ack(core, h, &a, src, hdr);
            Plan::Drop
        }
        LnetBody::Hello(_) => Plan::Fatal("HELLO in an LNET message".into()),
    }
}

fn route(core: &Core, portal: u32, match_bits: u64) -> usize {
    if portal == RESERVED_PORTAL || core.nshards == 1 {
        return core.id;
    }
    match core.cfg.route(portal) {
        PortalRoute::Receiving => core.id,
        PortalRoute::ByMatchBits(f) => f(match_bits, core.nshards) % core.nshards,
    }
}

/// Matches, waiting on a lazy portal for a buffer to be posted.
async fn match_lazy(core: &CoreRef, info: &MatchInfo) -> Option<crate::md::Matched> {
    let deadline = Instant::now() + core.cfg.lazy_timeout;
    loop {
        let (r, listen) = {
            let mut st = core.st.borrow_mut();
            let r = st.mds.match_md(info);
            let lazy = info.put && st.mds.is_lazy(info.portal);
            (r, if lazy { st.mds.attach_notify(info.portal) } else { None })
        };
        match r {
            MatchResult::Ok(m) => return Some(m),
            MatchResult::Drop => return None,
            MatchResult::None => {
                let listen = listen?;
                let left = deadline.checked_duration_since(Instant::now())?;
                let stop = core.shutdown.listen();
                let woke = rt::timeout(left, futures_lite::future::or(listen, stop)).await;
                if woke.is_none() || core.stopping.get() {
                    return None;
                }
            }
        }
    }
}

fn reply_commit(core: &Core, h: MdHandle, rlength: usize) -> Option<usize> {
    let mut st = core.st.borrow_mut();
    let (mlength, ok) = st.mds.reply_target(h, rlength)?;
    if !ok {
        return None;
    }
    st.mds.begin_op(h, false).ok()?;
    Some(mlength)
}

fn handle_ack(core: &CoreRef, h: MdHandle, a: &LnetAck, src: ProcessId, hdr: &LnetHdrNid4) {
    if core.st.borrow_mut().mds.begin_op(h, false).is_err() {
        // Expected after an unlink; LNet does not moan either.
        Core::bump(&core.stats.drop_nomatch);
        let _ = hdr;
        return;
    }
    let me = ProcessId { nid: Nid::ANY, pid: core.cfg.pid };
    core.md_event(
        h,
        EventKind::Ack,
        me,
        src,
        0,
        a.match_bits.get(),
        0,
        a.mlength.get(),
        a.mlength.get(),
        0,
        Ok(()),
    );
}

/// Serves a GET from the matching MD by sending a REPLY (`lnet_parse_get`).
fn serve_get(
    core: &CoreRef,
    hdr: &LnetHdrNid4,
    g: &proto::lnet::LnetGet,
    src: ProcessId,
    from: ProcessId,
) {
    let portal = g.ptl_index.get();
    let info = MatchInfo {
        source: src,
        put: false,
        portal,
        match_bits: g.match_bits.get(),
        roffset: g.src_offset.get() as usize,
        rlength: g.sink_length.get() as usize,
    };
    let r = core.st.borrow_mut().mds.match_md(&info);
    let MatchResult::Ok(m) = r else {
        drop_msg(core, "GET (no match)", hdr);
        return;
    };
    if portal == RESERVED_PORTAL {
        Core::bump(&core.stats.ping_rx);
    }
    let iov: Vec<(*const u8, usize)> = core
        .st
        .borrow()
        .mds
        .region(m.handle, m.offset, m.mlength)
        .into_iter()
        .map(|(p, l)| (p.cast_const(), l))
        .collect();
    let mlength = u32::try_from(m.mlength).unwrap_or(u32::MAX);
    let body = LnetBody::Reply(LnetReply { dst_wmd: g.return_wmd });
    let done = Done::GetServed {
        md: m.handle,
        from: src,
        portal,
        match_bits: g.match_bits.get(),
        offset: u32::try_from(m.offset).unwrap_or(u32::MAX),
        rlength: g.sink_length.get(),
        mlength,
    };
    // The REPLY goes back to whoever sent the GET, from the NI it came in on.
    let target = if from.pid & proto::lnet::PID_USERFLAG != 0 { from } else { src };
    let home = core.home(target.nid);
    if home == core.id {
        let ni = core.cfg.nis.iter().position(|n| n.nid == hdr.dest()).unwrap_or(0);
        let h = LnetHdrNid4::new(
            (target.nid, target.pid),
            (core.nid_of(ni), core.cfg.pid),
            mlength,
            &body,
        );
        core.send_local(
            target,
            OutMsg {
                hdr: h,
                iov,
                _hold: Hold::Md,
                done,
                skip_discovery: true,
                queued_at: Instant::now(),
            },
        );
    } else {
        // The GET was routed here from the peer's home shard: copy and send it back there.
        let mut payload = Vec::with_capacity(m.mlength);
        for (p, l) in &iov {
            // SAFETY: the MD holds a pending reference for this GET.
            payload.extend_from_slice(unsafe { std::slice::from_raw_parts(*p, *l) });
        }
        let token = {
            let mut st = core.st.borrow_mut();
            let t = st.next_token;
            st.next_token += 1;
            st.remote_ops.insert(t, crate::shard::RemoteOp { done });
            t
        };
        core.send_owned(XSend {
            target,
            body,
            payload,
            reply_to: Some((core.id, token)),
            skip_discovery: true,
        });
    }
}

/// Reports a PUT or REPLY that landed in an MD, and sends the ACK a PUT asked for.
fn finish_md(core: &CoreRef, md: MdHandle, mlength: usize, after: After, status: Result<()>) {
    let me = ProcessId { nid: Nid::ANY, pid: core.cfg.pid };
    let ml = u32::try_from(mlength).unwrap_or(u32::MAX);
    match after {
        After::Put { src, portal, match_bits, offset, rlength, hdr_data, ack } => {
            let ok = status.is_ok();
            core.md_event(
                md,
                EventKind::Put,
                src,
                me,
                portal,
                match_bits,
                offset,
                rlength,
                ml,
                hdr_data,
                status,
            );
            if let (true, Some(wmd)) = (ok, ack) {
                core.send_owned(XSend {
                    target: src,
                    body: LnetBody::Ack(LnetAck {
                        dst_wmd: wmd,
                        match_bits: match_bits.into(),
                        mlength: ml.into(),
                    }),
                    payload: Vec::new(),
                    reply_to: None,
                    skip_discovery: true,
                });
            }
        }
        After::Reply { src, rlength } => {
            core.md_event(md, EventKind::Reply, me, src, 0, 0, 0, rlength, ml, 0, status);
        }
    }
}

/// An incoming message routed here by the peer's home shard, payload already read.
pub(crate) async fn deliver_owned(core: &CoreRef, d: XDeliver) {
    let Ok(body) = d.hdr.body() else { return };
    let plan = plan(core, d.ni, &d.hdr, &body, d.from).await;
    match plan {
        Plan::Md { md, region, mlength, after } => {
            let mut off = 0;
            for (p, l) in region {
                let src = d.payload.get(off..off + l).unwrap_or_default();
                // SAFETY: the region belongs to an MD holding a pending reference; `src` is
                // our own vector of at least `l` bytes.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len().min(l)) };
                off += l;
            }
            finish_md(core, md, mlength, after, Ok(()));
        }
        Plan::Forward(s) => {
            // Routing rules disagree between shards: drop rather than loop.
            rlog!(core.rl_drop, Warn, "shard {}: message forwarded again to {s}; dropped", core.id);
            Core::bump(&core.stats.drop_nomatch);
        }
        Plan::Drop | Plan::Fatal(_) => {}
    }
    let _ = Rc::clone(core);
}

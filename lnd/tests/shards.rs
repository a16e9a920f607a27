//! Several shards and several NIs: sockets handed to the peer's home shard, sends from a shard
//! that does not own the peer, replies routed to the shard that attached the ME by a
//! match-bits rule, REPLY/ACK routed by the MD cookie, and a node on two networks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use lnd::{EventKind, Lnet, MatchEntry, MdOptions, MdSpec, NiConfig, Node, PortalRoute, ProcessId};

const T: Duration = Duration::from_secs(20);
const REQ: u32 = 26;
const REP: u32 = 10;

/// The low byte of the xid names the shard that waits for the reply.
fn by_low_byte(bits: u64, n: usize) -> usize {
    (bits & 0xff) as usize % n
}

#[test]
fn cross_shard_routing_and_two_networks() {
    init_log();
    let ips = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
        Ipv4Addr::new(127, 0, 0, 4),
    ];
    let port = free_port(&ips);
    // Server: two shards, NIs on tcp and tcp1.
    let mut scfg = config("127.0.0.1@tcp", port, 2);
    scfg.zc_min_payload = 0;
    scfg.nis.push(NiConfig::new(nid("127.0.0.2@tcp1"), port).unwrap());
    let server = Node::start(scfg, |lnet: Lnet| async move {
        // Every shard serves requests that reach it: echo to the reply portal.
        let rq = lnet.request_queue(REQ, 8, 1024).unwrap();
        let eq = lnet.event_queue();
        let o = MdOptions {
            op_get: true,
            threshold: None,
            manage_remote: true,
            truncate: true,
            ..MdOptions::default()
        };
        let shard = lnet.shard() as u8;
        lnet.attach(9, MatchEntry::bits(1), MdSpec::new(vec![shard; 300_000]).options(o), &eq)
            .unwrap();
        let l2 = lnet.clone();
        let serve = async move {
            loop {
                let r = rq.next().await;
                let mut d = r.data.clone();
                d.push(l2.shard() as u8);
                l2.put_and_wait(d, r.initiator, REP, r.xid(), 0, false, T).await.unwrap();
            }
        };
        futures_lite::future::or(serve, lnet.stopped()).await;
    })
    .unwrap();
    // Client: two shards, NIs on tcp and tcp1; replies routed by the xid's low byte.
    let mut ccfg = config("127.0.0.3@tcp", port, 2);
    ccfg.zc_min_payload = 0;
    ccfg.nis.push(NiConfig::new(nid("127.0.0.4@tcp1"), port).unwrap());
    ccfg.routes.push((REP, PortalRoute::ByMatchBits(by_low_byte)));
    let (tx, rx) = mpsc::channel();
    let client = Node::start(ccfg, move |lnet: Lnet| async move {
        let me = lnet.shard() as u64;
        let eq = lnet.event_queue();
        for (i, srv) in ["127.0.0.1@tcp", "127.0.0.2@tcp1"].iter().enumerate() {
            let srv = ProcessId::lustre(nid(srv));
            // The xid names this shard; the reply ME is attached here.
            let xid = (0x1000 + i as u64) << 8 | me;
            let o = MdOptions { op_put: true, ..MdOptions::default() };
            lnet.attach(REP, MatchEntry::bits(xid), MdSpec::new(vec![0u8; 64]).options(o), &eq)
                .unwrap();
            lnet.put_and_wait(vec![me as u8, i as u8], srv, REQ, xid, 0, false, T).await.unwrap();
            let ev = eq.next().await;
            assert_eq!(ev.kind, EventKind::Put);
            assert_eq!(ev.match_bits, xid);
            assert_eq!(ev.initiator.nid, srv.nid, "reply from the NI we asked");
            let b = ev.buffers.unwrap().into_vec().unwrap();
            assert_eq!(&b[..2], &[me as u8, i as u8]);
            // A GET from this shard: the REPLY comes back to the MD's owner by its cookie.
            let (buf, n) = lnet.get_and_wait(vec![0u8; 300_000], srv, 9, 1, 0, T).await.unwrap();
            assert_eq!(n, 300_000);
            assert!(buf.iter().all(|&x| x == buf[0]));
        }
        tx.send((lnet.shard(), lnet.stats())).unwrap();
    })
    .unwrap();
    client.join().unwrap();
    let res: Vec<_> = rx.try_iter().collect();
    assert_eq!(res.len(), 2, "both client shards finished");
    let xs: u64 = res.iter().map(|(_, s)| s.xshard_tx).sum();
    assert!(xs > 0, "some traffic crossed shards: {res:?}");
    server.stop();
    server.join().unwrap();
}

/// A shard whose future returned keeps serving until every shard is done (it is the home shard
/// of peers the others talk to); a shard whose future panicked counts as done, so that the node
/// still stops and `join` reports the panic.
#[test]
fn a_finished_shard_serves_until_the_node_stops() {
    init_log();
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let port = free_port(&ips);
    let server = Node::start(config("127.0.0.1@tcp", port, 1), |lnet: Lnet| async move {
        lnet.stopped().await;
    })
    .unwrap();
    let srv = ProcessId::lustre(nid("127.0.0.1@tcp"));
    let (tx, rx) = mpsc::channel();
    let client = Node::start(config("127.0.0.2@tcp", port, 2), move |lnet: Lnet| async move {
        if lnet.shard() == lnet.home_shard(srv.nid) {
            // The server's home shard has nothing of its own to do.
            return;
        }
        // Let the home shard's future return first; the ping still goes through it.
        glommio::timer::sleep(Duration::from_millis(200)).await;
        tx.send(lnet.ping(srv, Duration::from_secs(5)).await.is_ok()).unwrap();
        panic!("this shard gives up");
    })
    .unwrap();
    let (jtx, jrx) = mpsc::channel();
    std::thread::spawn(move || jtx.send(client.join().is_err()).unwrap());
    let pinged = rx.recv_timeout(T).expect("the ping did not finish");
    assert!(pinged, "ping through the home shard whose future had returned");
    let failed = jrx.recv_timeout(T).expect("the node did not stop after a shard panicked");
    assert!(failed, "join reports the panic");
    server.stop();
    server.join().unwrap();
}

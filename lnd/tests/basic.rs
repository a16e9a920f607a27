//! Two LNet nodes over loopback: ping, PUT with ACK, GET, request buffers, several shards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use lnd::{EventKind, Lnet, MatchEntry, MdOptions, MdSpec, Node, ProcessId};

const T: Duration = Duration::from_secs(20);

/// A server that posts a 1 MiB PUT target (portal 8, bits 7, ACKs), a GET source (portal 9,
/// bits 5) and request buffers on portal 26 that echo requests back to portal 10.
fn start_server(cfg: lnd::Config) -> Node {
    Node::start(cfg, |lnet: Lnet| async move {
        let eq = lnet.event_queue();
        let put_opts = MdOptions {
            op_put: true,
            threshold: None,
            manage_remote: true,
            ..MdOptions::default()
        };
        lnet.attach(8, MatchEntry::bits(7), MdSpec::new(vec![0u8; 1 << 20]).options(put_opts), &eq)
            .unwrap();
        let src: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let get_opts = MdOptions {
            op_get: true,
            threshold: None,
            manage_remote: true,
            truncate: true,
            ..MdOptions::default()
        };
        lnet.attach(9, MatchEntry::bits(5), MdSpec::new(src).options(get_opts), &eq).unwrap();
        let rq = lnet.request_queue(26, 16, 4096).unwrap();
        let l2 = lnet.clone();
        futures_lite::future::or(
            async move {
                loop {
                    let req = rq.next().await;
                    let mut reply = req.data.clone();
                    reply.reverse();
                    let _ = l2.put_and_wait(reply, req.initiator, 10, req.xid(), 0, false, T).await;
                }
            },
            async move {
                let drain = async {
                    loop {
                        let _ = eq.next().await;
                    }
                };
                futures_lite::future::or(drain, lnet.stopped()).await;
            },
        )
        .await;
    })
    .unwrap()
}

#[test]
fn ping_put_get_and_rpc() {
    init_log();
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let port = free_port(&ips);
    let server = start_server(config("127.0.0.1@tcp", port, 1));
    let (tx, rx) = mpsc::channel();
    let client = Node::start(config("127.0.0.2@tcp", port, 1), move |lnet: Lnet| async move {
        let srv = ProcessId::lustre(nid("127.0.0.1@tcp"));
        // lctl ping.
        let info = lnet.ping(srv, T).await.unwrap();
        assert_eq!(info.nis[0].0, proto::Nid::LO);
        assert_eq!(info.nis[1].0, nid("127.0.0.1@tcp"));
        // PUT 1 MiB with an ACK.
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 256) as u8).collect();
        let done = lnet.put_and_wait(data.clone(), srv, 8, 7, 0, true, T).await.unwrap();
        assert_eq!(done.acked, Some(1 << 20));
        assert_eq!(done.buffer, data);
        // GET 1 MiB, then a truncated GET at an offset.
        let (buf, n) = lnet.get_and_wait(vec![0u8; 1 << 20], srv, 9, 5, 0, T).await.unwrap();
        assert_eq!(n, 1 << 20);
        assert!(buf.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        let (buf, n) = lnet.get_and_wait(vec![0u8; 1000], srv, 9, 5, 10, T).await.unwrap();
        assert_eq!(n, 1000);
        assert_eq!(buf[0], 10);
        // An RPC: request on portal 26, reply on portal 10 matched by xid.
        let eq = lnet.event_queue();
        for xid in [0x1000u64, 0x1080] {
            let opts = MdOptions { op_put: true, ..MdOptions::default() };
            lnet.attach(10, MatchEntry::bits(xid), MdSpec::new(vec![0u8; 64]).options(opts), &eq)
                .unwrap();
            lnet.put_and_wait(b"hello lnet".to_vec(), srv, 26, xid, 0, false, T).await.unwrap();
            let ev = eq.next().await;
            assert_eq!(ev.kind, EventKind::Put);
            assert_eq!(ev.match_bits, xid);
            assert!(ev.unlinked);
            let b = ev.buffers.unwrap().into_vec().unwrap();
            assert_eq!(&b[..ev.mlength as usize], b"tenl olleh");
            assert_eq!(ev.initiator.nid, nid("127.0.0.1@tcp"));
        }
        let s = lnet.stats();
        assert!(s.zc_req_tx >= 1, "{s:?}");
        let peers = lnet.peers();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].conns, 3, "typed connections: {peers:?}");
        assert!(peers[0].discovered);
        tx.send(()).unwrap();
    })
    .unwrap();
    client.join().unwrap();
    rx.recv_timeout(Duration::from_secs(1)).unwrap();
    server.stop();
    server.join().unwrap();
}

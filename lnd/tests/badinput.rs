//! Bad input at a live acceptor: garbage, truncated headers, wrong magic, lying lengths,
//! unknown portals, unmatched match bits, bogus cookies and checksums, thrown from several
//! connections for a bounded time. Afterwards a well-behaved peer still completes ping, PUT
//! and GET, and the server's counters show what it dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use lnd::{AcceptMode, Lnet, MatchEntry, MdOptions, MdSpec, Node, ProcessId, ShardStats};
use proto::Nid;
use proto::lnet::{
    Hello, KsockMsgHdr, LnetAcceptorConnreq, LnetAck, LnetBody, LnetGet, LnetHandleWire,
    LnetHdrNid4, LnetPut, LnetReply, PID_LUSTRE, conn_type, ksock_version,
};
use proto::wire::Wire;
use rand::Rng;
use zerocopy::IntoBytes;

const T: Duration = Duration::from_secs(20);

fn hello_bytes(server: Nid, me: Nid, version: u32) -> Vec<u8> {
    let mut b = LnetAcceptorConnreq::new(server).to_vec();
    Hello {
        version,
        src_nid: me,
        dst_nid: server,
        src_pid: PID_LUSTRE,
        dst_pid: 0,
        src_incarnation: 42,
        dst_incarnation: 0,
        ctype: conn_type::CONTROL,
        nips: 0,
    }
    .encode(&mut b)
    .unwrap();
    b
}

fn lnet_frame(
    server: Nid,
    me: Nid,
    body: LnetBody,
    payload_len: u32,
    payload: &[u8],
    cookies: (u64, u64),
) -> Vec<u8> {
    let mut b = KsockMsgHdr::lnet(cookies.0, cookies.1).to_vec();
    let h = LnetHdrNid4::new((server, PID_LUSTRE), (me, PID_LUSTRE), payload_len, &body);
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(payload);
    b
}

fn put(portal: u32, bits: u64, ack: bool) -> LnetBody {
    LnetBody::Put(LnetPut {
        ack_wmd: if ack { LnetHandleWire::new(1, 2) } else { LnetHandleWire::NONE },
        match_bits: bits.into(),
        hdr_data: 0.into(),
        ptl_index: portal.into(),
        offset: 0.into(),
    })
}

/// One attacking connection: a random mix of bad openings and bad frames.
fn attack(addr: SocketAddrV4, server: Nid, rng: &mut impl Rng) {
    let Ok(mut s) = TcpStream::connect(addr) else { return };
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
    let me: Nid = "127.0.0.9@tcp".parse().unwrap();
    let mut out: Vec<u8> = Vec::new();
    match rng.random_range(0..6) {
        0 => {
            // Pure garbage.
            let mut g = vec![0u8; rng.random_range(1..300)];
            rng.fill(&mut g[..]);
            out.extend_from_slice(&g);
        }
        1 => {
            // Wrong magic / version, or a truncated request.
            let mut b = hello_bytes(server, me, 3);
            match rng.random_range(0..4) {
                0 => b[0] ^= 0xff,
                1 => b[4] = 7,
                2 => b.truncate(rng.random_range(1..16)),
                _ => b[8] ^= 1, // target NID not ours
            }
            out.extend_from_slice(&b);
        }
        2 => {
            // Hello faults: bad version (V4/V9), ANY source, bad ctype, nips overflow.
            let mut b = hello_bytes(server, me, 3);
            match rng.random_range(0..4) {
                0 => b[20] = if rng.random() { 4 } else { 9 },
                1 => b[24..32].fill(0xff),
                2 => b[64] = 9,
                _ => b[68] = 200,
            }
            out.extend_from_slice(&b);
        }
        _ => {
            out.extend_from_slice(&hello_bytes(server, me, ksock_version::V3));
            for _ in 0..rng.random_range(1..6) {
                let f = match rng.random_range(0..12) {
                    0 => lnet_frame(server, me, put(50, 1, false), 100, &[1; 100], (0, 0)),
                    1 => lnet_frame(server, me, put(8, 0xdead, true), 64, &[2; 64], (0, 0)),
                    2 => lnet_frame(server, me, put(63, 1, false), 10, &[3; 10], (0, 0)),
                    3 => {
                        // Lying payload_length: more than the MTU.
                        lnet_frame(server, me, put(8, 7, false), 2 << 20, &[0; 32], (0, 0))
                    }
                    4 => {
                        // Says 4096, sends 100 and stops.
                        lnet_frame(server, me, put(8, 7, false), 4096, &[4; 100], (0, 0))
                    }
                    5 => lnet_frame(
                        server,
                        me,
                        LnetBody::Get(LnetGet {
                            return_wmd: LnetHandleWire::new(5, 6),
                            match_bits: rng.random::<u64>().into(),
                            ptl_index: 9.into(),
                            src_offset: 0.into(),
                            sink_length: 100.into(),
                        }),
                        if rng.random() { 0 } else { 16 },
                        &[],
                        (0, 0),
                    ),
                    6 => lnet_frame(
                        server,
                        me,
                        LnetBody::Reply(LnetReply {
                            dst_wmd: LnetHandleWire::new(rng.random(), rng.random()),
                        }),
                        8,
                        &[5; 8],
                        (0, 0),
                    ),
                    7 => lnet_frame(
                        server,
                        me,
                        LnetBody::Ack(LnetAck {
                            dst_wmd: LnetHandleWire::new(rng.random(), rng.random()),
                            match_bits: 1.into(),
                            mlength: 1.into(),
                        }),
                        0,
                        &[],
                        (0, 0),
                    ),
                    8 => KsockMsgHdr::noop(0, rng.random_range(2..1000)).to_vec(), // unknown ZC-ACK
                    9 => {
                        let mut n = KsockMsgHdr::noop(0, 1).to_vec();
                        n[4] = 1; // bad checksum
                        n
                    }
                    10 => {
                        let mut f = lnet_frame(server, me, put(8, 7, false), 8, &[6; 8], (0, 0));
                        f[0] = 0xc7; // unknown ksock type
                        f
                    }
                    _ => {
                        // A mutated valid frame.
                        let mut f = lnet_frame(server, me, put(8, 7, true), 32, &[7; 32], (0, 0));
                        let i = rng.random_range(0..f.len());
                        f[i] = rng.random();
                        f.truncate(rng.random_range(1..=f.len()));
                        f
                    }
                };
                out.extend_from_slice(&f);
            }
        }
    }
    let _ = s.write_all(&out);
    let mut sink = [0u8; 512];
    let _ = s.read(&mut sink);
}

#[test]
fn bad_input_then_good_peer() {
    init_log();
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let port = free_port(&ips);
    let server_nid = nid("127.0.0.1@tcp");
    let mut scfg = config("127.0.0.1@tcp", port, 2);
    scfg.accept = AcceptMode::All;
    scfg.accept_timeout = Duration::from_secs(1);
    let (stx, srx) = mpsc::channel::<ShardStats>();
    let server = Node::start(scfg, move |lnet: Lnet| async move {
        let eq = lnet.event_queue();
        let o = MdOptions {
            op_put: true,
            op_get: true,
            threshold: None,
            manage_remote: true,
            truncate: true,
            ..MdOptions::default()
        };
        lnet.attach(8, MatchEntry::bits(7), MdSpec::new(vec![0u8; 1 << 20]).options(o), &eq)
            .unwrap();
        lnet.attach(9, MatchEntry::bits(5), MdSpec::new(vec![9u8; 1 << 20]).options(o), &eq)
            .unwrap();
        let drain = async {
            loop {
                let _ = eq.next().await;
            }
        };
        futures_lite::future::or(drain, lnet.stopped()).await;
        stx.send(lnet.stats()).unwrap();
    })
    .unwrap();

    // Several attackers for a bounded time.
    let addr = SocketAddrV4::new(ips[0], port);
    let stop_at = Instant::now() + Duration::from_secs(5);
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut rng = rand::rng();
                let mut n = 0u32;
                while Instant::now() < stop_at {
                    attack(addr, server_nid, &mut rng);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u32 = attackers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(total > 10, "attackers ran {total} times");

    // A well-behaved peer still gets service.
    let (tx, rx) = mpsc::channel();
    let client = Node::start(config("127.0.0.2@tcp", port, 1), move |lnet: Lnet| async move {
        let srv = ProcessId::lustre(server_nid);
        lnet.ping(srv, T).await.unwrap();
        let d = lnet.put_and_wait(vec![1u8; 300_000], srv, 8, 7, 0, true, T).await.unwrap();
        assert_eq!(d.acked, Some(300_000));
        let (b, n) = lnet.get_and_wait(vec![0u8; 200_000], srv, 9, 5, 0, T).await.unwrap();
        assert_eq!(n, 200_000);
        assert!(b.iter().all(|&x| x == 9));
        tx.send(()).unwrap();
    })
    .unwrap();
    client.join().unwrap();
    rx.recv_timeout(Duration::from_secs(1)).unwrap();
    server.stop();
    server.join().unwrap();
    let mut s = ShardStats::default();
    for st in srx.try_iter() {
        s.add(&st);
    }
    eprintln!("server counters after the attack: {s:?}");
    assert!(s.accept_refused > 0, "{s:?}");
    assert!(s.drop_proto > 0, "{s:?}");
    assert!(s.drop_nomatch > 0, "{s:?}");
    assert!(s.put_rx > 0 && s.get_rx > 0, "{s:?}");
}

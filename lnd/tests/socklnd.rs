//! socklnd behaviour seen from a raw-socket peer: hello replies and type inversion, secure
//! mode, V4 and unknown acceptor versions, V1 framing, ZC-ACK return, keepalives and the
//! incarnation rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use common::*;
use lnd::{AcceptMode, Lnet, MatchEntry, MdOptions, MdSpec, Node};
use proto::Nid;
use proto::lnet::{
    ACCEPTOR_MAGIC, Hello, KsockMsgHdr, LnetAcceptorConnreq, LnetBody, LnetHandleWire, LnetHdrNid4,
    LnetPut, PID_LUSTRE, conn_type, ksock_version, msg_type,
};
use proto::wire::Wire;
use zerocopy::IntoBytes;

const PEER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn server(accept: AcceptMode) -> (Node, u16, Nid) {
    let ips = [Ipv4Addr::new(127, 0, 0, 1)];
    let port = free_port(&ips);
    let mut cfg = config("127.0.0.1@tcp", port, 1);
    cfg.accept = accept;
    cfg.keepalive = Duration::from_secs(1);
    let node = Node::start(cfg, |lnet: Lnet| async move {
        let eq = lnet.event_queue();
        let o = MdOptions {
            op_put: true,
            threshold: None,
            manage_remote: true,
            ..MdOptions::default()
        };
        lnet.attach(8, MatchEntry::bits(7), MdSpec::new(vec![0u8; 1 << 20]).options(o), &eq)
            .unwrap();
        let drain = async {
            loop {
                let _ = eq.next().await;
            }
        };
        futures_lite::future::or(drain, lnet.stopped()).await;
    })
    .unwrap();
    // Wait for the acceptor.
    let addr = SocketAddrV4::new(ips[0], port);
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    (node, port, nid("127.0.0.1@tcp"))
}

/// Connects from `PEER_IP`, from a privileged port (1023 down) when `privileged`.
fn dial(port: u16, privileged: bool) -> TcpStream {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket, sockopt,
    };
    let ports: Vec<u16> = if privileged { (600..=1023).rev().collect() } else { vec![0] };
    for p in ports {
        let fd =
            socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
        if bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from(SocketAddrV4::new(PEER_IP, p)),
        )
        .is_err()
        {
            continue;
        }
        let to = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), port));
        if connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &to).is_err() {
            continue;
        }
        // SAFETY: the descriptor is ours and moves into the stream.
        let s = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        return s;
    }
    panic!("no source port");
}

fn me() -> Nid {
    Nid::new("tcp".parse().unwrap(), u32::from(PEER_IP))
}

fn hello(server: Nid, version: u32, ctype: i32, inc: u64) -> Vec<u8> {
    let mut b = LnetAcceptorConnreq::new(server).to_vec();
    Hello {
        version,
        src_nid: me(),
        dst_nid: server,
        src_pid: PID_LUSTRE,
        dst_pid: 0,
        src_incarnation: inc,
        dst_incarnation: 0,
        ctype,
        nips: 0,
    }
    .encode(&mut b)
    .unwrap();
    b
}

fn read_hello(s: &mut TcpStream) -> Hello {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).unwrap();
    let v = Hello::peek_version(&head).unwrap();
    let mut b = vec![0u8; Hello::fixed_len(v).unwrap()];
    b[..8].copy_from_slice(&head);
    s.read_exact(&mut b[8..]).unwrap();
    Hello::decode(&b).unwrap().0
}

fn put_hdr(server: Nid, len: u32, ack: bool) -> LnetHdrNid4 {
    LnetHdrNid4::new(
        (server, PID_LUSTRE),
        (me(), PID_LUSTRE),
        len,
        &LnetBody::Put(LnetPut {
            ack_wmd: if ack { LnetHandleWire::new(11, 22) } else { LnetHandleWire::NONE },
            match_bits: 7.into(),
            hdr_data: 0.into(),
            ptl_index: 8.into(),
            offset: 0.into(),
        }),
    )
}

/// Reads ksock frames until `f` returns true for one (NOOPs have no LNet header).
fn read_until(s: &mut TcpStream, mut f: impl FnMut(&KsockMsgHdr, Option<&LnetHdrNid4>) -> bool) {
    let t = Instant::now();
    loop {
        assert!(t.elapsed() < Duration::from_secs(10), "expected frame never came");
        let mut k = [0u8; 24];
        s.read_exact(&mut k).unwrap();
        let k = KsockMsgHdr::read(&k).unwrap();
        let h = if k.ksh_type.get() == 0xc1 {
            let mut h = [0u8; 72];
            s.read_exact(&mut h).unwrap();
            let h = LnetHdrNid4::read(&h).unwrap();
            let mut p = vec![0u8; h.payload_length.get() as usize];
            s.read_exact(&mut p).unwrap();
            Some(h)
        } else {
            None
        };
        if f(&k, h.as_ref()) {
            return;
        }
    }
}

#[test]
fn hello_zc_ack_and_keepalive() {
    init_log();
    let (node, port, srv) = server(AcceptMode::All);
    let mut s = dial(port, true);
    s.write_all(&hello(srv, ksock_version::V3, conn_type::BULK_OUT, 42)).unwrap();
    let h = read_hello(&mut s);
    assert_eq!(h.version, 3);
    assert_eq!(h.src_nid, srv);
    assert_eq!(h.dst_nid, me());
    assert_eq!(h.src_pid, PID_LUSTRE);
    assert_eq!(h.ctype, conn_type::BULK_IN, "passive side inverts the type");
    assert_ne!(h.src_incarnation, 0);

    // A 20000-byte PUT asking for an ACK and a ZC-ACK (cookie 77): both come back.
    let mut f = KsockMsgHdr::lnet(77, 0).to_vec();
    f.extend_from_slice(put_hdr(srv, 20000, true).as_bytes());
    f.extend_from_slice(&vec![5u8; 20000]);
    s.write_all(&f).unwrap();
    let (mut acked, mut zc) = (false, false);
    read_until(&mut s, |k, h| {
        if k.ksh_zc_cookies[1].get() == 77
            || (k.ksh_zc_cookies[0].get() <= 77
                && k.ksh_zc_cookies[1].get() >= 77
                && k.ksh_zc_cookies[0].get() != 0)
        {
            zc = true;
        }
        if let Some(h) = h
            && let Ok(LnetBody::Ack(a)) = h.body()
        {
            assert_eq!(a.dst_wmd, LnetHandleWire::new(11, 22));
            assert_eq!(a.mlength.get(), 20000);
            assert_eq!(a.match_bits.get(), 7);
            acked = true;
        }
        acked && zc
    });

    // Our keepalive is ignored; after a quiet second the server sends its own {0, 1}.
    s.write_all(&KsockMsgHdr::noop(0, 1).to_vec()).unwrap();
    read_until(&mut s, |k, h| {
        h.is_none() && k.ksh_zc_cookies[0].get() == 0 && k.ksh_zc_cookies[1].get() == 1
    });
    drop(s);
    node.stop();
    node.join().unwrap();
}

#[test]
fn incarnation_change_drops_old_connections() {
    init_log();
    let (node, port, srv) = server(AcceptMode::All);
    let mut a = dial(port, true);
    a.write_all(&hello(srv, 3, conn_type::CONTROL, 100)).unwrap();
    assert_eq!(read_hello(&mut a).ctype, conn_type::CONTROL);
    // The peer "reboots": a new incarnation is refused with NONE and the old socket closes.
    let mut b = dial(port, true);
    b.write_all(&hello(srv, 3, conn_type::CONTROL, 101)).unwrap();
    assert_eq!(read_hello(&mut b).ctype, conn_type::NONE);
    let mut x = [0u8; 1];
    assert_eq!(a.read(&mut x).unwrap_or(0), 0, "old connection must be closed");
    // The retry with the new incarnation is accepted.
    let mut c = dial(port, true);
    c.write_all(&hello(srv, 3, conn_type::CONTROL, 101)).unwrap();
    assert_eq!(read_hello(&mut c).ctype, conn_type::CONTROL);
    node.stop();
    node.join().unwrap();
}

#[test]
fn secure_mode_refuses_unprivileged_ports() {
    init_log();
    let (node, port, srv) = server(AcceptMode::Secure);
    let mut s = dial(port, false);
    let _ = s.write_all(&hello(srv, 3, conn_type::CONTROL, 1));
    let mut x = [0u8; 1];
    assert_eq!(s.read(&mut x).unwrap_or(0), 0, "secure acceptor must close");
    let mut p = dial(port, true);
    p.write_all(&hello(srv, 3, conn_type::CONTROL, 1)).unwrap();
    assert_eq!(read_hello(&mut p).ctype, conn_type::CONTROL);
    node.stop();
    node.join().unwrap();
}

#[test]
fn unknown_versions_answered_like_2_15() {
    init_log();
    let (node, port, srv) = server(AcceptMode::All);
    // V4 hello: a V3 hello with ctype NONE comes back, then the socket closes.
    let mut s = dial(port, true);
    s.write_all(&hello(srv, ksock_version::V4, conn_type::CONTROL, 1)).unwrap();
    let h = read_hello(&mut s);
    assert_eq!((h.version, h.ctype), (3, conn_type::NONE));
    let mut x = [0u8; 1];
    assert_eq!(s.read(&mut x).unwrap_or(0), 0);
    // Acceptor version 9: our acceptor request (version 1) comes back.
    let mut s = dial(port, true);
    let mut req = LnetAcceptorConnreq::new(srv).to_vec();
    req[4] = 9;
    s.write_all(&req).unwrap();
    let mut r = [0u8; 16];
    s.read_exact(&mut r).unwrap();
    assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), ACCEPTOR_MAGIC);
    assert_eq!(u32::from_le_bytes(r[4..8].try_into().unwrap()), 1);
    // Wrong target NID: refused.
    let mut s = dial(port, true);
    s.write_all(&hello("127.0.0.99@tcp".parse().unwrap(), 3, conn_type::CONTROL, 1)).unwrap();
    assert_eq!(s.read(&mut x).unwrap_or(0), 0);
    node.stop();
    node.join().unwrap();
}

#[test]
fn v1_hello_and_framing() {
    init_log();
    let (node, port, srv) = server(AcceptMode::All);
    let mut s = dial(port, true);
    s.write_all(&hello(srv, ksock_version::V1, conn_type::ANY, 5)).unwrap();
    let h = read_hello(&mut s);
    assert_eq!(h.version, 1);
    assert_eq!(h.src_nid, srv);
    // V1 messages are a bare LNet header and payload.
    s.write_all(put_hdr(srv, 100, true).as_bytes()).unwrap();
    s.write_all(&[1u8; 100]).unwrap();
    let mut a = [0u8; 72];
    s.read_exact(&mut a).unwrap();
    let a = LnetHdrNid4::read(&a).unwrap();
    assert_eq!(a.r#type.get(), msg_type::ACK);
    node.stop();
    node.join().unwrap();
}

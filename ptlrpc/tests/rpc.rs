//! ptlrpc end to end over real sockets: a two-shard server node running a small MDT-like
//! service and a client node using `Import`: connect, plain RPCs, bulk in both directions,
//! a lost reply answered from the saved reply on resend, and unknown exports refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use lnd::{AcceptMode, Config, Lnet, NiConfig, Node, Placement, ProcessId};
use proto::build::MsgBuilder;
use proto::connect::{ObdConnectData, flags};
use proto::fid::LuFid;
use proto::mdt::MdtBody;
use proto::opcode::Opcode;
use proto::portal;
use proto::rmf;
use proto::wire::{FromZeros, Wire, cstr};
use ptlrpc::export::{Admit, ConnectReq, ExportLimits, ExportTable};
use ptlrpc::{Bulk, Import, ImportConfig, Incoming, XidGen, server};
use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), p)).is_ok() {
            return p;
        }
    }
}

fn config(nid: &str, port: u16, shards: usize) -> Config {
    let mut c = Config::new(vec![NiConfig::new(nid.parse().unwrap(), port).unwrap()]);
    c.port = port;
    c.placement = Placement::Unbound(shards);
    c.accept = AcceptMode::All;
    c.routes = ptlrpc::lnet_routes();
    c.lazy_portals = vec![portal::MDS_REQUEST, portal::MDS_READPAGE];
    c.timeout = Duration::from_secs(10);
    c
}

/// The test service: one export table per shard (clients are homed on one shard each).
async fn serve(lnet: Lnet, drops: Rc<Cell<u32>>) {
    let exports = Rc::new(RefCell::new(ExportTable::new(
        u16::try_from(lnet.shard()).unwrap(),
        0,
        42,
        ExportLimits::default(),
    )));
    let mut tasks = Vec::new();
    for p in [portal::MDS_REQUEST, portal::MDS_READPAGE] {
        let rq = server::request_queue(&lnet, p, server::ServiceBuffers { count: 16, size: 8192 })
            .unwrap();
        let (lnet, exports, drops) = (lnet.clone(), exports.clone(), drops.clone());
        tasks.push(glommio::spawn_local(async move {
            loop {
                let r = futures_lite::future::or(async { Some(rq.next().await) }, async {
                    lnet.stopped().await;
                    None
                })
                .await;
                let Some(r) = r else { return };
                let inc = match Incoming::decode(r) {
                    Ok(i) => i,
                    Err(_) => continue,
                };
                let (lnet, exports, drops) = (lnet.clone(), exports.clone(), drops.clone());
                glommio::spawn_local(async move { handle(lnet, exports, drops, inc).await })
                    .detach();
            }
        }));
    }
    for t in tasks {
        t.await;
    }
}

async fn handle(
    lnet: Lnet,
    exports: Rc<RefCell<ExportTable>>,
    drops: Rc<Cell<u32>>,
    inc: Incoming,
) {
    let m = inc.msg().unwrap();
    if inc.opc() == Opcode::MdsConnect {
        let data = ObdConnectData::decode_any(m.buf(4).unwrap()).unwrap();
        let uuid = cstr("cluuid", m.buf(2).unwrap()).unwrap().to_string();
        let remote = u64::from_le_bytes(m.buf(3).unwrap()[..8].try_into().unwrap());
        let req = ConnectReq {
            client_uuid: &uuid,
            remote,
            peer: inc.peer.nid,
            conn_cnt: inc.body.pb_conn_cnt.get(),
            op_flags: inc.body.pb_op_flags.get(),
            data,
        };
        let r = exports.borrow_mut().connect(
            &req,
            flags::FULL20 | flags::VERSION | flags::FID | flags::ATTRFID | flags::FLAGS2,
            0,
            flags::FULL20,
            0,
        );
        let reply = match r {
            Ok((c, f, f2)) => {
                let mut d = data;
                d.ocd_connect_flags = f.into();
                d.ocd_connect_flags2 = f2.into();
                let mut b = MsgBuilder::reply(rmf::format("MDS_CONNECT").unwrap(), &inc.body)
                    .wire("CONNECT_DATA", &d)
                    .unwrap();
                b.body_mut().pb_handle = proto::LustreHandle::new(c.cookie());
                b.body_mut().pb_op_flags = c.reply_op_flags().into();
                b.build().unwrap()
            }
            Err(e) => server::error_reply(&inc.body, e).unwrap(),
        };
        server::send_reply(&lnet, &inc, reply, false).await.unwrap();
        return;
    }
    let cookie = inc.body.pb_handle.get();
    let admit = exports.borrow_mut().admit(cookie, inc.peer.nid, inc.xid, inc.is_resent(), 0);
    let admit = match admit {
        Ok(a) => a,
        Err(e) => {
            server::send_reply(&lnet, &inc, server::error_reply(&inc.body, e).unwrap(), false)
                .await
                .unwrap();
            return;
        }
    };
    if let Admit::Resend(saved) = admit {
        server::send_reply(&lnet, &inc, saved, false).await.unwrap();
        return;
    }
    let reply = match inc.opc() {
        Opcode::ObdPing => {
            MsgBuilder::reply(rmf::format("OBD_PING").unwrap(), &inc.body).build().unwrap()
        }
        Opcode::MdsGetattr => {
            let q = MdtBody::read(m.buf(1).unwrap()).unwrap();
            let a = MdtBody {
                mbo_fid1: q.mbo_fid1,
                mbo_mode: 0o40755.into(),
                mbo_nlink: 2.into(),
                ..Default::default()
            };
            MsgBuilder::reply(rmf::format("MDS_GETATTR").unwrap(), &inc.body)
                .wire("MDT_BODY", &a)
                .unwrap()
                .set_sized("MDT_MD", vec![])
                .unwrap()
                .build()
                .unwrap()
        }
        Opcode::MdsReadpage => {
            // Two pages to the client's bulk portal, then the reply.
            let q = MdtBody::read(m.buf(1).unwrap()).unwrap();
            let pages: Vec<Vec<u8>> = (0..2u8).map(|i| vec![i + 1; 4096]).collect();
            let base = server::bulk_match_bits(&inc, 2);
            server::bulk_put(&lnet, inc.peer, portal::MDS_BULK, base, pages).await.unwrap();
            let r = MdtBody { mbo_fid1: q.mbo_fid1, mbo_nlink: 8192.into(), ..Default::default() };
            MsgBuilder::reply(rmf::format("MDS_READPAGE").unwrap(), &inc.body)
                .wire("MDT_BODY", &r)
                .unwrap()
                .build()
                .unwrap()
        }
        Opcode::MdsSync => {
            // A "write": fetch 3 x 64 KiB from the client and answer with their checksum.
            let base = server::bulk_match_bits(&inc, 3);
            let got = server::bulk_get(
                &lnet,
                inc.peer,
                portal::MDS_BULK,
                base,
                vec![vec![0u8; 65536]; 3],
            )
            .await
            .unwrap();
            let sum: u64 =
                got.iter().flat_map(|(b, n)| b[..*n].iter()).map(|&x| u64::from(x)).sum();
            let r = MdtBody { mbo_size: sum.into(), ..Default::default() };
            MsgBuilder::reply(rmf::format("MDS_SYNC").unwrap(), &inc.body)
                .wire("MDT_BODY", &r)
                .unwrap()
                .build()
                .unwrap()
        }
        _ => server::error_reply(&inc.body, -38).unwrap(),
    };
    exports.borrow_mut().done(cookie, inc.xid, Some(reply.clone()));
    // Lose the first getattr reply on the wire: the client must resend and get the saved one.
    if inc.opc() == Opcode::MdsGetattr && drops.get() > 0 {
        drops.set(drops.get() - 1);
        return;
    }
    server::send_reply(&lnet, &inc, reply, false).await.unwrap();
}

#[test]
fn rpc_end_to_end() {
    let port = free_port();
    let srv = Node::start(config("127.0.0.1@tcp", port, 2), |lnet: Lnet| async move {
        serve(lnet, Rc::new(Cell::new(1))).await;
    })
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let cli = Node::start(config("127.0.0.2@tcp", port, 1), move |lnet: Lnet| async move {
        let target = ProcessId::lustre("127.0.0.1@tcp".parse().unwrap());
        let xids = Rc::new(XidGen::new(lnet.shard(), lnet.nshards(), 1_763_000_000));
        let mut cfg = ImportConfig::new(
            target,
            portal::MDS_REQUEST,
            portal::MDC_REPLY,
            "lustre-MDT0000_UUID",
            "c1-uuid",
            Opcode::MdsConnect,
        );
        cfg.conn_cookie = 0xc0ffee;
        cfg.timeout = Duration::from_secs(2);
        let imp = Import::new(lnet.clone(), cfg, xids);
        let mut d = ObdConnectData::new_zeroed();
        d.ocd_connect_flags = (flags::FULL20
            | flags::VERSION
            | flags::FID
            | flags::ATTRFID
            | flags::IBITS
            | flags::FLAGS2)
            .into();
        let got = imp.connect(d).await.unwrap();
        assert_eq!(got.flags() & flags::IBITS, 0, "server did not grant what it does not support");
        assert!(imp.export_handle() != 0);
        imp.ping().await.unwrap();

        // getattr: the first reply is lost; the resend is answered from the saved reply.
        let q = MdtBody { mbo_fid1: LuFid::ROOT, ..Default::default() };
        let rep = imp
            .rpc(
                MsgBuilder::request(Opcode::MdsGetattr).unwrap().wire("MDT_BODY", &q).unwrap(),
                None,
            )
            .await
            .unwrap()
            .ok()
            .unwrap();
        let a = MdtBody::read(rep.buf("mdt_body", 1, 216).unwrap()).unwrap();
        assert_eq!((a.mbo_fid1, a.mbo_mode.get()), (LuFid::ROOT, 0o40755));
        assert_eq!(imp.resent.get(), 1);

        // readpage: the server PUTs two pages into our bulk MDs before replying.
        let mut b = imp_readpage_builder();
        b.body_mut().pb_opc = Opcode::MdsReadpage.raw().into();
        let rep = imp
            .rpc(
                b,
                Some(Bulk {
                    portal: portal::MDS_BULK,
                    server_gets: false,
                    bufs: vec![vec![0u8; 4096]; 2],
                }),
            )
            .await
            .unwrap()
            .ok()
            .unwrap();
        assert_eq!(rep.bulk.len(), 2);
        assert!(rep.bulk[0].0.iter().all(|&x| x == 1) && rep.bulk[1].0.iter().all(|&x| x == 2));
        assert_eq!(rep.bulk[1].1, 4096);

        // A "write": the server GETs three MDs.
        let bufs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 65536]).collect();
        let b = MsgBuilder::request(Opcode::MdsSync)
            .unwrap()
            .wire("MDT_BODY", &MdtBody::default())
            .unwrap();
        let rep = imp
            .rpc(b, Some(Bulk { portal: portal::MDS_BULK, server_gets: true, bufs }))
            .await
            .unwrap()
            .ok()
            .unwrap();
        let r = MdtBody::read(rep.buf("mdt_body", 1, 216).unwrap()).unwrap();
        assert_eq!(r.mbo_size.get(), 3 * 65536);

        // An unknown export handle is refused with -ENOTCONN; the import reconnects.
        let unknown = imp.export_handle() ^ 0xffff;
        let mut b = MsgBuilder::request(Opcode::ObdPing).unwrap();
        b.body_mut().pb_handle = proto::LustreHandle::new(unknown);
        let raw = imp.rpc(b, None).await.unwrap();
        assert_eq!(raw.status(), 0, "rpc() overwrites the handle with the right one");
        tx.send(()).unwrap();
    })
    .unwrap();
    rx.recv_timeout(Duration::from_secs(60)).expect("client finished");
    cli.stop();
    srv.stop();
    cli.join().unwrap();
    srv.join().unwrap();
}

fn imp_readpage_builder() -> MsgBuilder {
    let q = MdtBody { mbo_fid1: LuFid::ROOT, mbo_nlink: 8192.into(), ..Default::default() };
    MsgBuilder::request(Opcode::MdsReadpage).unwrap().wire("MDT_BODY", &q).unwrap()
}

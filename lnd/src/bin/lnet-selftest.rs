//! `lnet-selftest`: bulk write (PUT), bulk read (GET) and small-message ping over LNet between
//! a server node and a client node (each on executors of its own), then the same transfers
//! over raw TCP on the same runtime with the same sizes and concurrency, in the same run.
//! Prints one line per test with both figures and their ratio, then the peak RSS.
#![allow(clippy::print_stdout)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener as StdListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use lnd::selftest::{Res, tcp_phase, tcp_serve};
use lnd::{
    AcceptMode, Config, EventKind, Lnet, MatchEntry, MdOptions, MdSpec, NiConfig, Node, Placement,
    ProcessId,
};

#[derive(Parser, Debug, Clone)]
#[command(about = "LNet self-test: LNet vs raw TCP on the same runtime")]
struct Args {
    /// Bulk transfer size (K/M suffixes allowed).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    size: usize,
    /// Transfers in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per test.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Payload bytes of a ping request and its reply.
    #[arg(long, default_value_t = 64)]
    ping_size: usize,
    /// Acceptor port (0: pick a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// CPU of the server executor.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU of the client executor.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Only these tests (write, read, ping); all when empty.
    #[arg(long)]
    only: Vec<String>,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>().map(|n| n * mul).map_err(|e| e.to_string())
}

const PTL_WRITE: u32 = 8;
const PTL_READ: u32 = 9;
const PTL_REPLY: u32 = 10;
const PTL_REQ: u32 = 26;
const T: Duration = Duration::from_secs(30);

fn placement(cpu: usize) -> Placement {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cpu < n { Placement::Cpus(vec![cpu]) } else { Placement::Unbound(1) }
}

fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(l) = StdListener::bind("127.0.0.1:0") else { continue };
        let Ok(a) = l.local_addr() else { continue };
        drop(l);
        if StdListener::bind(("127.0.0.2", a.port())).is_ok() {
            return a.port();
        }
    }
    0
}

fn main() {
    let args = Args::parse();
    let port = if args.port == 0 { free_port() } else { args.port };
    let want = |t: &str| args.only.is_empty() || args.only.iter().any(|o| o == t);
    let (lnet, tcp) = run(&args, port);
    for (name, l, t) in [("write", lnet.0, tcp.0), ("read", lnet.1, tcp.1)] {
        if want(name) {
            println!(
                "test={name} size={} concurrency={} lnet_MBps={:.1} tcp_MBps={:.1} ratio={:.2}",
                args.size,
                args.concurrency,
                l.mbps(),
                t.mbps(),
                l.mbps() / t.mbps().max(1e-9)
            );
        }
    }
    if want("ping") {
        let (l, t) = (lnet.2, tcp.2);
        println!(
            "test=ping size={} concurrency={} lnet_ops={:.0} tcp_ops={:.0} ratio={:.2}",
            args.ping_size,
            args.concurrency,
            l.ops_s(),
            t.ops_s(),
            l.ops_s() / t.ops_s().max(1e-9)
        );
    }
    println!("peak_rss_kib={}", peak_rss_kib());
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn node_config(nid: &str, port: u16, cpu: usize) -> Config {
    let nid = nid.parse().unwrap_or(proto::Nid::ANY);
    let ni = NiConfig::new(nid, port).unwrap_or_else(|e| panic!("bad NI: {e}"));
    let mut c = Config::new(vec![ni]);
    c.port = port;
    c.placement = placement(cpu);
    c.accept = AcceptMode::All;
    // Root can bind privileged source ports as a kernel peer does; others fall back to all.
    c.connect_privileged = nix::unistd::geteuid().is_root();
    c.peer_credits = 64;
    c
}

type Triple = (Res, Res, Res);

/// Rounds per test: LNet and TCP alternate so that both see the same machine load.
const ROUNDS: u32 = 5;

/// Runs the server (LNet and TCP listeners) on one executor and the client (LNet and TCP
/// clients) on another; each test alternates LNet and TCP rounds.
fn run(args: &Args, port: u16) -> (Triple, Triple) {
    let size = args.size;
    let psize = args.ping_size;
    let tcp_addr = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), port.wrapping_add(1).max(1024));
    let server = Node::start(
        node_config("127.0.0.1@tcp", port, args.server_cpu),
        move |lnet: Lnet| async move {
            if let Ok(l) = glommio::net::TcpListener::bind(tcp_addr) {
                glommio::spawn_local(async move {
                    while let Ok(s) = l.accept().await {
                        glommio::spawn_local(tcp_serve(s, size, psize)).detach();
                    }
                })
                .detach();
            }
            lnet_server(lnet, size).await;
        },
    )
    .unwrap_or_else(|e| panic!("server: {e}"));
    let (tx, rx) = mpsc::channel();
    let a = args.clone();
    let client = Node::start(
        node_config("127.0.0.2@tcp", port, args.client_cpu),
        move |lnet: Lnet| async move {
            let srv = ProcessId::lustre("127.0.0.1@tcp".parse().unwrap_or(proto::Nid::ANY));
            // Warm up: discovery and connections.
            let _ = lnet.ping(srv, T).await;
            let mut l = [Res::default(); 3];
            let mut t = [Res::default(); 3];
            let slice = a.seconds / f64::from(ROUNDS) / 2.0;
            for (k, (lr, tr)) in l.iter_mut().zip(t.iter_mut()).enumerate() {
                for _ in 0..ROUNDS {
                    lr.add(lnet_phase(&lnet, &a, srv, k as u8, slice).await);
                    tr.add(
                        tcp_phase(tcp_addr, k as u8, (a.size, a.ping_size), a.concurrency, slice)
                            .await,
                    );
                }
            }
            let _ = tx.send(((l[0], l[1], l[2]), (t[0], t[1], t[2])));
        },
    )
    .unwrap_or_else(|e| panic!("client: {e}"));
    let _ = client.join();
    server.stop();
    let _ = server.join();
    rx.recv().unwrap_or_default()
}

async fn lnet_server(lnet: Lnet, size: usize) {
    let eq = lnet.event_queue();
    let put =
        MdOptions { op_put: true, threshold: None, manage_remote: true, ..MdOptions::default() };
    let get = MdOptions {
        op_get: true,
        threshold: None,
        manage_remote: true,
        truncate: true,
        ..MdOptions::default()
    };
    let all = MatchEntry::any();
    let _ = lnet.attach(PTL_WRITE, all, MdSpec::new(vec![0u8; size]).options(put), &eq);
    let _ = lnet.attach(PTL_READ, all, MdSpec::new(vec![7u8; size]).options(get), &eq);
    let rq = match lnet.request_queue(PTL_REQ, 256, 4096) {
        Ok(q) => q,
        Err(e) => panic!("request queue: {e}"),
    };
    let l2 = lnet.clone();
    let eq2 = eq.clone();
    glommio::spawn_local(async move {
        loop {
            let _ = eq2.next().await;
        }
    })
    .detach();
    let serve = async move {
        let reply_eq = l2.event_queue();
        let rq2 = rq.clone();
        let reply_eq2 = reply_eq.clone();
        glommio::spawn_local(async move {
            loop {
                let _ = reply_eq2.next().await;
            }
        })
        .detach();
        loop {
            let req = rq2.next().await;
            // Reply from a bound MD without waiting, as a ptlrpc service does.
            let md = l2.bind(MdSpec::new(req.data.clone()), &reply_eq);
            if let Ok(md) = md {
                let _ = l2.put(md, req.initiator, PTL_REPLY, req.xid(), 0, false, 0).await;
            }
        }
    };
    futures_lite::future::or(serve, lnet.stopped()).await;
}

async fn lnet_phase(lnet: &Lnet, a: &Args, srv: ProcessId, kind: u8, secs: f64) -> Res {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let lnet = lnet.clone();
        let (size, psize) = (a.size, a.ping_size);
        tasks.push(glommio::spawn_local(async move {
            let mut r = Res::default();
            let mut buf = vec![w as u8; if kind == 2 { psize } else { size }];
            let eq = lnet.event_queue();
            let mut xid = (w as u64) << 32;
            while Instant::now() < deadline {
                match kind {
                    0 => match lnet.put_and_wait(buf, srv, PTL_WRITE, 0, 0, true, T).await {
                        Ok(d) => {
                            buf = d.buffer;
                            r.bytes += buf.len() as u64;
                        }
                        Err(e) => panic!("write: {e}"),
                    },
                    1 => match lnet.get_and_wait(buf, srv, PTL_READ, 0, 0, T).await {
                        Ok((b, n)) => {
                            buf = b;
                            r.bytes += n as u64;
                        }
                        Err(e) => panic!("read: {e}"),
                    },
                    _ => {
                        xid += 1;
                        let opts = MdOptions { op_put: true, ..MdOptions::default() };
                        let rmd = MdSpec::new(vec![0u8; psize.max(1)]).options(opts);
                        if let Err(e) = lnet.attach(PTL_REPLY, MatchEntry::bits(xid), rmd, &eq) {
                            panic!("attach: {e}");
                        }
                        match lnet.put_and_wait(buf, srv, PTL_REQ, xid, 0, false, T).await {
                            Ok(d) => buf = d.buffer,
                            Err(e) => panic!("ping: {e}"),
                        }
                        loop {
                            let ev = eq.next().await;
                            if ev.kind == EventKind::Put {
                                break;
                            }
                        }
                        r.bytes += 2 * psize as u64;
                    }
                }
                r.ops += 1;
            }
            r
        }));
    }
    let mut tot = Res::default();
    for t in tasks {
        let r = t.await;
        tot.ops += r.ops;
        tot.bytes += r.bytes;
    }
    tot.secs = start.elapsed().as_secs_f64();
    tot
}

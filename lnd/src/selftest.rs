//! The raw TCP baseline of the self-tests: the same transfers LNet makes, over plain TCP
//! connections on glommio executors (one connection per transfer in flight, a 16-byte header
//! per message). `lnet-selftest` and `rustre-bench` measure against it in the same run, so
//! their ratios say how close LNet, and the file system over it, come to the network.

// Benchmark code, not on any packet path: every slice below is bounded by a buffer allocated
// in the same function from the same sizes.
#![allow(clippy::indexing_slicing)]

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// What one phase moved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Res {
    /// Transfers completed.
    pub ops: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Seconds spent.
    pub secs: f64,
}

impl Res {
    /// Adds another phase's figures.
    pub fn add(&mut self, o: Res) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.secs += o.secs;
    }
    /// Megabytes (10^6) per second.
    #[must_use]
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs.max(1e-9) / 1e6
    }
    /// Transfers per second.
    #[must_use]
    pub fn ops_s(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
}

/// Kind of a TCP phase: bulk write, bulk read, or small request/reply.
pub const WRITE: u8 = 0;
/// See [`WRITE`].
pub const READ: u8 = 1;
/// See [`WRITE`].
pub const PING: u8 = 2;

/// Serves one baseline connection until the peer closes it.
pub async fn tcp_serve(mut s: glommio::net::TcpStream, size: usize, psize: usize) {
    let _ = s.set_nodelay(true);
    let mut hdr = [0u8; 16];
    let mut sink = vec![0u8; size.max(psize)];
    let src = vec![7u8; size.max(psize) + 16];
    loop {
        if s.read_exact(&mut hdr).await.is_err() {
            return;
        }
        let r = match hdr[0] {
            WRITE => match s.read_exact(&mut sink[..size]).await {
                Ok(()) => s.write_all(&hdr).await,
                Err(e) => Err(e),
            },
            READ => s.write_all(&src[..16 + size]).await,
            PING => match s.read_exact(&mut sink[..psize]).await {
                Ok(()) => s.write_all(&src[..16 + psize]).await,
                Err(e) => Err(e),
            },
            _ => return,
        };
        if r.is_err() {
            return;
        }
    }
}

/// One timed phase of `kind` with `concurrency` connections to `addr`.
pub async fn tcp_phase(
    addr: SocketAddrV4,
    kind: u8,
    (size, psize): (usize, usize),
    concurrency: usize,
    secs: f64,
) -> Res {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(glommio::spawn_local(async move {
            let mut r = Res::default();
            let Ok(mut s) = glommio::net::TcpStream::connect(addr).await else { return r };
            let _ = s.set_nodelay(true);
            let mut out = vec![0u8; 16 + size.max(psize)];
            out[0] = kind;
            let mut inb = vec![0u8; 16 + size.max(psize)];
            while Instant::now() < deadline {
                let ok = match kind {
                    WRITE => {
                        s.write_all(&out[..16 + size]).await.is_ok()
                            && s.read_exact(&mut inb[..16]).await.is_ok()
                    }
                    READ => {
                        s.write_all(&out[..16]).await.is_ok()
                            && s.read_exact(&mut inb[..16 + size]).await.is_ok()
                    }
                    _ => {
                        s.write_all(&out[..16 + psize]).await.is_ok()
                            && s.read_exact(&mut inb[..16 + psize]).await.is_ok()
                    }
                };
                if !ok {
                    break;
                }
                r.ops += 1;
                r.bytes += if kind == PING { 2 * psize as u64 } else { size as u64 };
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

/// Bulk write and read throughput of raw TCP on loopback: a server executor and a client
/// executor of their own (pinned to `cpus` when the machine has them), `size`-byte transfers,
/// `concurrency` in flight, `secs` per direction. Returns (write, read).
pub fn tcp_baseline(
    size: usize,
    concurrency: usize,
    secs: f64,
    cpus: (usize, usize),
) -> (Res, Res) {
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let place = |cpu: usize| {
        if cpu < n { glommio::Placement::Fixed(cpu) } else { glommio::Placement::Unbound }
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0");
    let Ok(listener) = listener else { return (Res::default(), Res::default()) };
    let Ok(std::net::SocketAddr::V4(addr)) = listener.local_addr() else {
        return (Res::default(), Res::default());
    };
    drop(listener);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server = glommio::LocalExecutorBuilder::new(place(cpus.0))
        .name("tcp-baseline-server")
        .spawn(move || async move {
            let Ok(l) = glommio::net::TcpListener::bind(addr) else { return };
            let _ = ready_tx.send(());
            let accept = async {
                while let Ok(s) = l.accept().await {
                    glommio::spawn_local(tcp_serve(s, size, 64)).detach();
                }
            };
            let stop = async {
                while stop_rx.try_recv().is_err() {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            };
            futures_lite::future::or(accept, stop).await;
        });
    let Ok(server) = server else { return (Res::default(), Res::default()) };
    let _ = ready_rx.recv_timeout(Duration::from_secs(10));
    let client = glommio::LocalExecutorBuilder::new(place(cpus.1))
        .name("tcp-baseline-client")
        .spawn(move || async move {
            let w = tcp_phase(addr, WRITE, (size, 64), concurrency, secs).await;
            let r = tcp_phase(addr, READ, (size, 64), concurrency, secs).await;
            (w, r)
        });
    let out = client.ok().and_then(|c| c.join().ok()).unwrap_or_default();
    let _ = stop_tx.send(());
    let _ = server.join();
    out
}

//! `rustre-bench`: throughput and metadata rates of a Rustre file system through the client
//! library, each beside a limit measured in the same run.
//!
//! Unless `--mgs` names a running file system, it starts the embedded one (MGS, MDT0000 and
//! two OSTs in files under a temporary directory) as a child process on a free port, so the
//! server's peak RSS can be reported on its own.
//!
//! * `write`/`read`: `--streams` files of `--stripes` stripes, written (then read by a fresh
//!   client) in `--xfer` transfers, `--mib-per-stream` each; the limit is raw TCP on the same
//!   machine with the same transfer size and concurrency (lnet-selftest's baseline).
//! * `create`/`stat`/`unlink`, `-shared` (one directory) and `-unique` (a directory per
//!   worker): `--workers` concurrent workers, `--files` files each, like mdtest.
//!
//! Lines: `test=NAME value=V unit=U limit=L ratio=R`, then `server_peak_rss_kib=N`.

#![allow(clippy::print_stdout)]

use clap::Parser;
use client::ns::user_layout;
use client::{Client, ClientConfig, Cred, Fs};
use proto::mdt::open as of;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(name = "rustre-bench", about = "Rustre throughput and metadata rates, with their limits")]
struct Args {
    /// MGS of a running file system (default: start the embedded one).
    #[arg(long)]
    mgs: Option<String>,
    /// File system name.
    #[arg(long, default_value = "rustre")]
    fsname: String,
    /// LNet port of the file system (with --mgs; default 988).
    #[arg(long)]
    port: Option<u16>,
    /// Shards of the embedded server.
    #[arg(long, default_value_t = 2)]
    cores: usize,
    /// Streams (files written and read concurrently).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Stripes per file.
    #[arg(long, default_value_t = 2)]
    stripes: i32,
    /// Stripe size (K/M suffixes).
    #[arg(long, default_value = "1M")]
    stripe_size: String,
    /// Transfer size of each read and write call (K/M suffixes).
    #[arg(long, default_value = "1M")]
    xfer: String,
    /// MiB written and read per stream.
    #[arg(long, default_value_t = 256)]
    mib_per_stream: u64,
    /// Metadata workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Files per metadata worker.
    #[arg(long, default_value_t = 500)]
    files: usize,
    /// Seconds of each raw TCP baseline direction.
    #[arg(long, default_value_t = 3.0)]
    tcp_seconds: f64,
    /// Only these tests (write, read, md); all when empty.
    #[arg(long)]
    only: Vec<String>,
    /// Internal: run the embedded server (used by the benchmark itself).
    #[arg(long, hide = true)]
    serve_embedded: Option<PathBuf>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    appliance::config::parse_size(s)
}

const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };

fn main() -> ExitCode {
    let args = Args::parse();
    ptlrpc::logger::init(log::LevelFilter::Warn);
    if let Some(dir) = &args.serve_embedded {
        // The server runs as `rustre` does (default allocator settings).
        return serve_embedded(dir, args.port.unwrap_or(988), args.cores);
    }
    client::tune_allocator();
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rustre-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The embedded file system in this process, until standard input closes.
fn serve_embedded(dir: &std::path::Path, port: u16, cores: usize) -> ExitCode {
    let mut cfg = appliance::config::ApplianceConfig::embedded(dir, 4 << 30);
    cfg.port = port;
    cfg.accept_secure = false;
    cfg.cores = cores;
    let run = || -> Result<(), String> {
        let n = appliance::node::prepare(&cfg, true)?;
        let running = appliance::node::start(cfg.clone(), n)?;
        let t = Instant::now();
        while !running.is_ready() {
            if let Some(e) = appliance::node::fatal_error() {
                return Err(e);
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err("the server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("ready");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
        running.stop();
        running.join()
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rustre-bench server: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Embedded {
    child: Child,
    dir: PathBuf,
}

impl Embedded {
    fn start(cores: usize) -> Result<(Embedded, u16), String> {
        let dir = std::env::temp_dir().join(format!("rustre-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("--serve-embedded")
            .arg(&dir)
            .args(["--port", &port.to_string(), "--cores", &cores.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err("the embedded server did not start".into());
        }
        Ok((Embedded { child, dir }, port))
    }

    fn peak_rss_kib(&self) -> u64 {
        peak_rss(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn peak_rss(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mount(args: &Args, port: u16) -> Result<Client, String> {
    let mgs = args.mgs.as_deref().unwrap_or("127.0.0.1@tcp");
    let mut cfg =
        ClientConfig::new(mgs.parse().map_err(|e| format!("MGS {mgs}: {e}"))?, &args.fsname);
    cfg.port = port;
    cfg.jobid = "rustre-bench".into();
    Client::mount(cfg).map_err(|e| e.to_string())
}

fn line(test: &str, value: f64, unit: &str, limit: Option<f64>) {
    match limit {
        Some(l) => println!(
            "test={test} value={value:.1} unit={unit} limit={l:.1} ratio={:.2}",
            value / l.max(1e-9)
        ),
        None => println!("test={test} value={value:.1} unit={unit} limit=- ratio=-"),
    }
}

fn bench(args: &Args) -> Result<(), String> {
    let want = |t: &str| args.only.is_empty() || args.only.iter().any(|o| o == t);
    let xfer = parse_size(&args.xfer)?;
    let ss = u32::try_from(parse_size(&args.stripe_size)?).map_err(|_| "stripe size too large")?;
    let (server, port) = match &args.mgs {
        Some(_) => (None, args.port.unwrap_or(proto::lnet::ACCEPTOR_PORT)),
        None => {
            let (s, p) = Embedded::start(args.cores)?;
            (Some(s), p)
        }
    };
    let run_id = std::process::id();
    if want("write") || want("read") {
        // The network limit: raw TCP on this machine, same transfer size and concurrency.
        let (tw, tr) = lnd::selftest::tcp_baseline(
            usize::try_from(xfer).unwrap_or(1 << 20),
            args.streams,
            args.tcp_seconds,
            (0, 1),
        );
        let total = args.mib_per_stream << 20;
        let dir = format!("/bench-{run_id}");
        let c = mount(args, port)?;
        c.mkdir(&dir, 0o755, ROOT).map_err(|e| e.to_string())?;
        let files: Vec<String> = (0..args.streams).map(|i| format!("{dir}/stream{i}")).collect();
        let t = Instant::now();
        std::thread::scope(|s| -> Result<(), String> {
            let mut hs = Vec::new();
            for f in &files {
                let c = &c;
                hs.push(s.spawn(move || -> Result<(), String> {
                    let lay = user_layout(ss, args.stripes, -1);
                    let h = c
                        .open(f, of::FMODE_READ | of::FMODE_WRITE | of::CREAT, 0o644, lay, ROOT)
                        .map_err(|e| e.to_string())?;
                    let buf = vec![0x5au8; usize::try_from(xfer).unwrap_or(0)];
                    let mut off = 0;
                    while off < total {
                        c.write(&h, off, buf.clone()).map_err(|e| e.to_string())?;
                        off += xfer;
                    }
                    c.close(h).map_err(|e| e.to_string())
                }));
            }
            for h in hs {
                h.join().map_err(|_| "writer panicked")??;
            }
            Ok(())
        })?;
        let secs = t.elapsed().as_secs_f64();
        let bytes = (total * args.streams as u64) as f64;
        if want("write") {
            line("write", bytes / secs / 1e6, "MBps", Some(tw.mbps()));
        }
        drop(c);
        if want("read") {
            let c = mount(args, port)?; // a fresh client: nothing cached
            let t = Instant::now();
            std::thread::scope(|s| -> Result<(), String> {
                let mut hs = Vec::new();
                for f in &files {
                    let c = &c;
                    hs.push(s.spawn(move || -> Result<(), String> {
                        let h = c
                            .open(f, of::FMODE_READ, 0, Vec::new(), ROOT)
                            .map_err(|e| e.to_string())?;
                        let mut off = 0;
                        while off < total {
                            let got = c.read(&h, off, xfer).map_err(|e| e.to_string())?;
                            if got.is_empty() {
                                return Err(format!("{f}: short file"));
                            }
                            off += got.len() as u64;
                        }
                        c.close(h).map_err(|e| e.to_string())
                    }));
                }
                for h in hs {
                    h.join().map_err(|_| "reader panicked")??;
                }
                Ok(())
            })?;
            let secs = t.elapsed().as_secs_f64();
            line("read", bytes / secs / 1e6, "MBps", Some(tr.mbps()));
        }
    }
    if want("md") {
        let c = mount(args, port)?;
        for shared in [true, false] {
            let tag = if shared { "shared" } else { "unique" };
            let top = format!("/md-{run_id}-{tag}");
            c.mkdir(&top, 0o755, ROOT).map_err(|e| e.to_string())?;
            let (workers, files) = (args.workers, args.files);
            let rates = c
                .run(move |fs: Rc<Fs>| async move {
                    let (topfid, _) = fs.resolve(&top, ROOT, true).await?;
                    let mut dirs = Vec::new();
                    for w in 0..workers {
                        dirs.push(if shared {
                            topfid
                        } else {
                            fs.mknod_at(
                                topfid,
                                format!("w{w}").as_bytes(),
                                (0o040_755, 0),
                                &[],
                                &[],
                                ROOT,
                            )
                            .await?
                            .0
                        });
                    }
                    let mut out = Vec::new();
                    for phase in 0..3 {
                        let t = Instant::now();
                        let mut tasks = Vec::new();
                        for (w, d) in dirs.iter().copied().enumerate() {
                            let fs = fs.clone();
                            tasks.push(glommio::spawn_local(async move {
                                for i in 0..files {
                                    let name = format!("f{w}.{i}");
                                    match phase {
                                        0 => {
                                            fs.create_at(d, name.as_bytes(), 0o644, &[], ROOT)
                                                .await?;
                                        }
                                        1 => {
                                            let (f, _) =
                                                fs.lookup(d, name.as_bytes(), ROOT).await?;
                                            fs.getattr(f, ROOT).await?;
                                        }
                                        _ => {
                                            fs.unlink_at(d, name.as_bytes(), false, ROOT).await?;
                                        }
                                    }
                                }
                                client::Result::Ok(())
                            }));
                        }
                        for t in tasks {
                            t.await?;
                        }
                        out.push((workers * files) as f64 / t.elapsed().as_secs_f64());
                    }
                    Ok(out)
                })
                .map_err(|e| e.to_string())?;
            for (name, r) in ["create", "stat", "unlink"].iter().zip(rates) {
                line(&format!("{name}-{tag}"), r, "ops", None);
            }
        }
    }
    if let Some(s) = &server {
        println!("server_peak_rss_kib={}", s.peak_rss_kib());
    }
    println!("client_peak_rss_kib={}", peak_rss("/proc/self/status"));
    Ok(())
}

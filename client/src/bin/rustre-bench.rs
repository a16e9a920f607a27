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
//! * `randwrite`/`randread`: 4 KiB at random offsets of the same files, one thread per file
//!   at queue depth 1, `--rand-seconds` each, by a fresh client; no limit.
//! * `fio`: fio on a FUSE mount (`rlfs mount`, beside this binary) of the same file system,
//!   the same four workloads, each on a fresh mount; the limit is the library's figure from
//!   this run, so the ratio is the FUSE overhead.
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
use std::path::{Path, PathBuf};
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
    /// Seconds of each 4 KiB random test (library and fio).
    #[arg(long, default_value_t = 10)]
    rand_seconds: u64,
    /// Only these tests (write, read, randwrite, randread, md, fio; repeatable); all when
    /// absent. `fio` also measures the library figures it is compared with.
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

/// Test names `--only` accepts.
const TESTS: &[&str] = &["write", "read", "randwrite", "randread", "md", "fio"];

fn bench(args: &Args) -> Result<(), String> {
    if let Some(bad) = args.only.iter().find(|o| !TESTS.contains(&o.as_str())) {
        return Err(format!("--only {bad}: unknown test (one of {})", TESTS.join(", ")));
    }
    let want = |t: &str| args.only.is_empty() || args.only.iter().any(|o| o == t);
    let xfer = parse_size(&args.xfer)?;
    let ss = u32::try_from(parse_size(&args.stripe_size)?).map_err(|_| "stripe size too large")?;
    // fio's figures are compared with the library's: `--only fio` measures those too.
    let fio = want("fio");
    let (lib_read, lib_rw, lib_rr) =
        (want("read") || fio, want("randwrite") || fio, want("randread") || fio);
    let fio_tools = match fio.then(FioTools::find) {
        None => None,
        Some(Ok(t)) => Some(t),
        // Asked for by name: an error; part of "everything": skipped, and said so.
        Some(Err(e)) if !args.only.is_empty() => return Err(e),
        Some(Err(e)) => {
            eprintln!("rustre-bench: skipping the fio tests: {e}");
            None
        }
    };
    let (server, port) = match &args.mgs {
        Some(_) => (None, args.port.unwrap_or(proto::lnet::ACCEPTOR_PORT)),
        None => {
            let (s, p) = Embedded::start(args.cores)?;
            (Some(s), p)
        }
    };
    let run_id = std::process::id();
    let total = args.mib_per_stream << 20;
    let bytes = (total * args.streams as u64) as f64;
    // Each fio test runs right after its library counterpart, so both see the same load.
    let fio_run = match &fio_tools {
        Some(t) => Some(FioRun::new(args, port, t, ss)?),
        None => None,
    };
    let fio_test = |i: usize, lib: f64| -> Result<(), String> {
        match &fio_run {
            Some(r) => r.run(i, lib),
            None => Ok(()),
        }
    };
    if want("write") || lib_read || lib_rw || lib_rr {
        // The network limit: raw TCP on this machine, same transfer size and concurrency.
        let (tw, tr) = lnd::selftest::tcp_baseline(
            usize::try_from(xfer).unwrap_or(1 << 20),
            args.streams,
            args.tcp_seconds,
            (0, 1),
        );
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
        let v = bytes / secs / 1e6;
        line("write", v, "MBps", Some(tw.mbps()));
        drop(c);
        fio_test(0, v)?;
        if lib_read {
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
            let v = bytes / secs / 1e6;
            line("read", v, "MBps", Some(tr.mbps()));
            drop(c);
            fio_test(1, v)?;
        }
        // 4 KiB at random over the same files, each by a fresh client, one file per thread.
        if lib_rw {
            let c = mount(args, port)?;
            let v = lib_random(&c, &files, total, args.rand_seconds, true)?;
            line("randwrite", v, "IOPS", None);
            drop(c);
            fio_test(2, v)?;
        }
        if lib_rr {
            let c = mount(args, port)?;
            let v = lib_random(&c, &files, total, args.rand_seconds, false)?;
            line("randread", v, "IOPS", None);
            drop(c);
            fio_test(3, v)?;
        }
    }
    if let Some(r) = fio_run {
        r.finish();
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

/// 4 KiB reads or writes at random page offsets of `files` (each `size` bytes), one thread
/// per file at queue depth 1, for `secs`; writes end with an fsync of each file, counted in
/// the time as fio's `--end_fsync` is. Returns operations per second.
fn lib_random(
    c: &Client,
    files: &[String],
    size: u64,
    secs: u64,
    write: bool,
) -> Result<f64, String> {
    const BS: u64 = 4096;
    let pages = (size / BS).max(1);
    let t = Instant::now();
    let run = Duration::from_secs(secs);
    let ops = std::thread::scope(|s| -> Result<u64, String> {
        let mut hs = Vec::new();
        for f in files {
            hs.push(s.spawn(move || -> Result<u64, String> {
                let flags = if write { of::FMODE_READ | of::FMODE_WRITE } else { of::FMODE_READ };
                let h = c.open(f, flags, 0, Vec::new(), ROOT).map_err(|e| e.to_string())?;
                let buf = vec![0xa5u8; BS as usize];
                let mut n = 0u64;
                while t.elapsed() < run {
                    let off = rand::random_range(0..pages) * BS;
                    if write {
                        c.write(&h, off, buf.clone()).map_err(|e| e.to_string())?;
                    } else if c.read(&h, off, BS).map_err(|e| e.to_string())?.len() != BS as usize {
                        return Err(format!("{f}: short read at {off}"));
                    }
                    n += 1;
                }
                if write {
                    c.fsync(&h).map_err(|e| e.to_string())?;
                }
                c.close(h).map_err(|e| e.to_string())?;
                Ok(n)
            }));
        }
        let mut ops = 0;
        for h in hs {
            ops += h.join().map_err(|_| "random I/O thread panicked")??;
        }
        Ok(ops)
    })?;
    Ok(ops as f64 / t.elapsed().as_secs_f64())
}

/// fio and the rlfs binary that mounts the file system through FUSE.
struct FioTools {
    fio: PathBuf,
    rlfs: PathBuf,
}

impl FioTools {
    fn find() -> Result<FioTools, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
        let rlfs = exe.with_file_name("rlfs");
        if !rlfs.is_file() {
            return Err(format!(
                "the fio tests need rlfs beside rustre-bench, and {} is absent \
                 (cargo build --release -p client --bin rlfs)",
                rlfs.display()
            ));
        }
        let fio = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).map(|d| d.join("fio")).find(|p| p.is_file()))
            .ok_or("the fio tests need fio in PATH (apt-get install fio)")?;
        if !nix::unistd::geteuid().is_root() || !Path::new("/dev/fuse").exists() {
            return Err("the fio tests mount through FUSE, which needs root and /dev/fuse".into());
        }
        Ok(FioTools { fio, rlfs })
    }
}

/// A FUSE mount by its own `rlfs mount` process, unmounted (lazily if need be) on drop, so
/// a failure never leaves a mount behind.
struct FuseMount<'a> {
    rlfs: &'a Path,
    dir: PathBuf,
}

impl<'a> FuseMount<'a> {
    fn new(rlfs: &'a Path, args: &Args, port: u16, dir: &Path, log: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mgs = args.mgs.as_deref().unwrap_or("127.0.0.1@tcp");
        let o = Command::new(rlfs)
            .args(["--port", &port.to_string(), "mount", &format!("{mgs}:/{}", args.fsname)])
            .arg(dir)
            .arg("--log")
            .arg(log)
            .output()
            .map_err(|e| format!("{}: {e}", rlfs.display()))?;
        if !o.status.success() {
            return Err(format!(
                "rlfs mount on {} failed ({}): {}{}",
                dir.display(),
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr).trim_end()
            ));
        }
        Ok(FuseMount { rlfs, dir: dir.to_path_buf() })
    }
}

impl Drop for FuseMount<'_> {
    fn drop(&mut self) {
        let ok = Command::new(self.rlfs)
            .arg("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("rustre-bench: rlfs umount {} failed; unmounting lazily", self.dir.display());
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// One fio run's aggregate (`--group_reporting`) figures.
struct FioResult {
    mbps: f64,
    iops: f64,
}

/// Runs fio with `job` arguments and reads its JSON report; a run that outlives `limit` is
/// killed and reported as hung.
fn run_fio(fio: &Path, job: &[String], write: bool, limit: Duration) -> Result<FioResult, String> {
    let base = std::env::temp_dir().join(format!("rustre-bench-{}-fio", std::process::id()));
    let (json, errf) = (base.with_extension("json"), base.with_extension("err"));
    let stderr = std::fs::File::create(&errf).map_err(|e| format!("{}: {e}", errf.display()))?;
    let mut child = Command::new(fio)
        .args(job)
        .arg("--output-format=json")
        .arg(format!("--output={}", json.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("{}: {e}", fio.display()))?;
    let t = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if t.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for fio: {e}")),
        }
    };
    let out = std::fs::read_to_string(&json).unwrap_or_default();
    let err = std::fs::read_to_string(&errf).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&errf);
    let cmd = format!("fio {}", job.join(" "));
    let Some(status) = status else {
        return Err(format!("{cmd}: still running after {} s, killed\n{err}", limit.as_secs()));
    };
    if !status.success() {
        return Err(format!("{cmd}: {status}\n{err}{out}"));
    }
    // Warnings may precede the JSON document.
    let doc = out.find('{').map_or("", |i| &out[i..]);
    let v: serde_json::Value =
        serde_json::from_str(doc).map_err(|e| format!("{cmd}: JSON report: {e}\n{out}"))?;
    let jobv = &v["jobs"][0];
    if jobv["error"].as_i64().unwrap_or(0) != 0 {
        return Err(format!("{cmd}: error {} in the job\n{err}", jobv["error"]));
    }
    let side = &jobv[if write { "write" } else { "read" }];
    let (Some(bw), Some(iops)) = (side["bw_bytes"].as_f64(), side["iops"].as_f64()) else {
        return Err(format!("{cmd}: no bw_bytes/iops in the JSON report"));
    };
    if bw <= 0.0 {
        return Err(format!("{cmd}: nothing transferred\n{err}"));
    }
    Ok(FioResult { mbps: bw / 1e6, iops })
}

/// fio on a FUSE mount of the same file system, each test beside the library's figure from
/// this run: the ratio is the FUSE overhead. Every test runs on a fresh mount (a new `rlfs`
/// process), so the reads come from the servers, not from the client's page cache.
struct FioRun<'a> {
    args: &'a Args,
    port: u16,
    tools: &'a FioTools,
    /// The mount point (an empty directory when nothing is mounted).
    mnt: PathBuf,
    /// fio's directory in the file system.
    sub: String,
    /// The rlfs mount processes' log, kept when a test fails.
    log: PathBuf,
}

/// The fio tests, in the order of their library counterparts: name, `--rw`, block size
/// (None: `--xfer`), unit.
const FIO_TESTS: [(&str, &str, Option<&str>, &str); 4] = [
    ("fio-seq-write", "write", None, "MBps"),
    ("fio-seq-read", "read", None, "MBps"),
    ("fio-randwrite", "randwrite", Some("4k"), "IOPS"),
    ("fio-randread", "randread", Some("4k"), "IOPS"),
];

impl<'a> FioRun<'a> {
    /// Creates fio's files (`$jobname.$jobnum.0`) with the library test's layout.
    fn new(args: &'a Args, port: u16, tools: &'a FioTools, ss: u32) -> Result<Self, String> {
        let run_id = std::process::id();
        let sub = format!("fio-{run_id}");
        let c = mount(args, port)?;
        c.mkdir(&format!("/{sub}"), 0o755, ROOT).map_err(|e| e.to_string())?;
        for j in 0..args.streams {
            let lay = user_layout(ss, args.stripes, -1);
            c.create(&format!("/{sub}/f.{j}.0"), 0o644, lay, ROOT).map_err(|e| e.to_string())?;
        }
        let tmp = std::env::temp_dir();
        Ok(FioRun {
            args,
            port,
            tools,
            mnt: tmp.join(format!("rustre-bench-{run_id}-mnt")),
            sub,
            log: tmp.join(format!("rustre-bench-{run_id}-rlfs.log")),
        })
    }

    /// Runs test `i` of [`FIO_TESTS`] on a fresh mount and prints it against `lib`.
    fn run(&self, i: usize, lib: f64) -> Result<(), String> {
        let (name, rw, bs, unit) = FIO_TESTS[i];
        let args = self.args;
        let mut job: Vec<String> = [
            "--name=f",
            "--ioengine=psync",
            "--iodepth=1",
            "--direct=0",
            "--fallocate=none",
            "--group_reporting",
        ]
        .map(String::from)
        .to_vec();
        job.push(format!("--directory={}", self.mnt.join(&self.sub).display()));
        job.push(format!("--numjobs={}", args.streams));
        job.push(format!("--rw={rw}"));
        job.push(format!("--bs={}", bs.unwrap_or(&args.xfer)));
        job.push(format!("--size={}M", args.mib_per_stream));
        let write = rw.contains("write");
        if write {
            job.push("--end_fsync=1".into());
        }
        let limit = if rw.starts_with("rand") {
            job.extend(["--time_based", "--norandommap", "--randrepeat=0"].map(String::from));
            job.push(format!("--runtime={}", args.rand_seconds));
            Duration::from_secs(args.rand_seconds + 300)
        } else {
            Duration::from_secs(900)
        };
        let r = FuseMount::new(&self.tools.rlfs, args, self.port, &self.mnt, &self.log)
            .and_then(|m| {
                let r = run_fio(&self.tools.fio, &job, write, limit);
                drop(m);
                r
            })
            .map_err(|e| format!("{name}: {e}\nrlfs mount log: {}", self.log.display()))?;
        let _ = std::fs::remove_dir(&self.mnt); // empty once unmounted (never a mount's files)
        line(name, if unit == "IOPS" { r.iops } else { r.mbps }, unit, Some(lib));
        Ok(())
    }

    /// All tests passed: the mount log goes.
    fn finish(self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

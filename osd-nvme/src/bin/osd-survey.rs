//! `osd-survey --dir DIR --size 1G`: obdfilter-survey in spirit. Measures the persistent OSD
//! (io_uring O_DIRECT file on DIR through glommio) and, in the same run, fio on the same
//! file system with the same block sizes and queue depths, and prints
//! `test=... osd=... fio=... ratio=...` lines and the peak RSS.
//!
//! Every OSD operation is a full transaction (declare, start, write, stop); commits run in a
//! committer task as on a shard, and each test ends with a sync, so its time includes making
//! the data durable.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use osd_nvme::dev::dma::DmaDev;
use osd_nvme::{
    Attr, DiskOsd, FormatOptions, IoBuf, LuFid, ObjType, Osd, OsdConfig, Region, XattrMode,
};

/// Survey the persistent OSD against fio.
#[derive(Debug, Parser)]
#[command(name = "osd-survey", version)]
struct Args {
    /// Directory for the device file and fio's file (a real file system: O_DIRECT).
    #[arg(long)]
    dir: PathBuf,
    /// Bytes of object data (and of fio's file): 1G, 512M, ...
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    size: u64,
    /// OSD metadata cache size.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    cache: u64,
    /// Queue depth of the sequential tests.
    #[arg(long, default_value_t = 4)]
    seq_qd: usize,
    /// Queue depth of the random tests.
    #[arg(long, default_value_t = 32)]
    rand_qd: usize,
    /// Seconds per random test.
    #[arg(long, default_value_t = 8)]
    secs: u64,
    /// Objects for the create/destroy test.
    #[arg(long, default_value_t = 20_000)]
    objects: u32,
    /// Group-commit interval of the committer task, in microseconds.
    #[arg(long, default_value_t = 5000)]
    commit_us: u64,
    /// Rounds; each runs every OSD test followed by the same fio test, and the medians are
    /// reported (the VM's disk speed drifts between runs).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip fio (OSD figures only).
    #[arg(long)]
    no_fio: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        Some('T' | 't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().map(|n| n * mult).map_err(|e| format!("bad size {s}: {e}"))
}

const DATA: LuFid = LuFid::new(0x2_0000_0400, 1, 0);
const MIB: f64 = 1024.0 * 1024.0;

/// One test's figures from every round: (osd, fio).
#[derive(Debug, Default, Clone)]
struct Figures {
    seq_write: Vec<(f64, Option<f64>)>,
    seq_read: Vec<(f64, Option<f64>)>,
    rand_write: Vec<(f64, Option<f64>)>,
    rand_read: Vec<(f64, Option<f64>)>,
    create: Vec<f64>,
    destroy: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `qd` tasks until `job` returns false; returns elapsed time.
async fn parallel<F, Fut>(qd: usize, job: F) -> Duration
where
    F: Fn(usize, u64) -> Fut + 'static,
    Fut: std::future::Future<Output = bool> + 'static,
{
    let start = Instant::now();
    let job = Rc::new(job);
    let next = Rc::new(Cell::new(0u64));
    let mut handles = Vec::new();
    for t in 0..qd {
        let job = job.clone();
        let next = next.clone();
        handles.push(glommio::spawn_local(async move {
            loop {
                let i = next.get();
                next.set(i + 1);
                if !job(t, i).await {
                    break;
                }
            }
        }));
    }
    for h in handles {
        h.await;
    }
    start.elapsed()
}

async fn survey_round(
    args: &Args,
    osd: &DiskOsd<DmaDev>,
    fio_path: &Path,
    round: u64,
    f: &mut Figures,
) -> osd_nvme::Result<()> {
    let size = args.size;
    let chunks = size >> 20;

    // Sequential 1 MiB writes.
    let o = osd.clone();
    let bufs: Rc<Vec<RefCell<Option<IoBuf>>>> = Rc::new(
        (0..args.seq_qd.max(args.rand_qd))
            .map(|_| RefCell::new(Some(IoBuf::new(1 << 20))))
            .collect(),
    );
    let b2 = bufs.clone();
    let t = parallel(args.seq_qd, move |task, i| {
        let o = o.clone();
        let bufs = b2.clone();
        async move {
            if i >= chunks {
                return false;
            }
            // Each task owns its buffer; it is not borrowed across another task's await.
            let mut buf = bufs[task].take().unwrap_or_else(|| IoBuf::new(1 << 20));
            buf.fill((i & 0xff) as u8);
            let mut th = o.trans_create();
            th.declare_write(&DATA, i << 20, 1 << 20);
            let r = async {
                o.trans_start(&mut th).await?;
                o.write(&mut th, &DATA, i << 20, &[&buf]).await?;
                o.trans_stop(th).await
            };
            let ok = r.await.is_ok();
            bufs[task].replace(Some(buf));
            ok
        }
    })
    .await;
    osd.sync().await?;
    let fio_sw = fio(args, fio_path, "write", "1M", args.seq_qd, false).map(|x| x.0);
    f.seq_write.push(((chunks << 20) as f64 / MIB / t.as_secs_f64(), fio_sw));

    // Sequential 1 MiB reads.
    let o = osd.clone();
    let b2 = bufs.clone();
    let t = parallel(args.seq_qd, move |task, i| {
        let o = o.clone();
        let bufs = b2.clone();
        async move {
            if i >= chunks {
                return false;
            }
            let mut buf = bufs[task].take().unwrap_or_else(|| IoBuf::new(1 << 20));
            let ok = o.read(&DATA, i << 20, &mut [&mut buf]).await.is_ok_and(|n| n == 1 << 20);
            bufs[task].replace(Some(buf));
            ok
        }
    })
    .await;
    let fio_sr = fio(args, fio_path, "read", "1M", args.seq_qd, false).map(|x| x.0);
    f.seq_read.push(((chunks << 20) as f64 / MIB / t.as_secs_f64(), fio_sr));

    // Random 4 KiB writes, QD rand_qd, time bound.
    let blocks = size / 4096;
    let secs = Duration::from_secs(args.secs);
    let ops = Rc::new(Cell::new(0u64));
    let (o, n, b2) = (osd.clone(), ops.clone(), bufs.clone());
    let start = Instant::now();
    parallel(args.rand_qd, move |task, i| {
        let (o, n, bufs) = (o.clone(), n.clone(), b2.clone());
        async move {
            if start.elapsed() > secs {
                return false;
            }
            let off = (mix(i ^ (task as u64) << 40) % blocks) * 4096;
            let buf = bufs[task].take().unwrap_or_else(|| IoBuf::new(1 << 20));
            let mut th = o.trans_create();
            th.declare_write(&DATA, off, 4096);
            let r = async {
                o.trans_start(&mut th).await?;
                o.write(&mut th, &DATA, off, &[&buf[..4096]]).await?;
                o.trans_stop(th).await
            };
            let ok = r.await.is_ok();
            bufs[task].replace(Some(buf));
            n.set(n.get() + u64::from(ok));
            ok
        }
    })
    .await;
    osd.sync().await?;
    let osd_rw = ops.get() as f64 / start.elapsed().as_secs_f64();
    let fio_rw = fio(args, fio_path, "randwrite", "4k", args.rand_qd, true).map(|x| x.1);
    f.rand_write.push((osd_rw, fio_rw));

    // Random 4 KiB reads.
    let ops = Rc::new(Cell::new(0u64));
    let (o, n, b2) = (osd.clone(), ops.clone(), bufs.clone());
    let start = Instant::now();
    parallel(args.rand_qd, move |task, i| {
        let (o, n, bufs) = (o.clone(), n.clone(), b2.clone());
        async move {
            if start.elapsed() > secs {
                return false;
            }
            let off = (mix(i ^ (task as u64) << 40) % blocks) * 4096;
            let mut buf = bufs[task].take().unwrap_or_else(|| IoBuf::new(1 << 20));
            buf.set_len(4096);
            let ok = o.read(&DATA, off, &mut [&mut buf]).await.is_ok();
            buf.set_len(1 << 20);
            bufs[task].replace(Some(buf));
            n.set(n.get() + u64::from(ok));
            ok
        }
    })
    .await;
    let osd_rr = ops.get() as f64 / start.elapsed().as_secs_f64();
    let fio_rr = fio(args, fio_path, "randread", "4k", args.rand_qd, true).map(|x| x.1);
    f.rand_read.push((osd_rr, fio_rr));

    // Object create and destroy (an MDT-like create: object plus a layout xattr).
    let nobj = u64::from(args.objects);
    let fid = move |i: u64| {
        LuFid::new(0x2_0000_0500 + round, u32::try_from(i + 1).unwrap_or(u32::MAX), 0)
    };
    let o = osd.clone();
    let t = parallel(args.rand_qd, move |_, i| {
        let o = o.clone();
        async move {
            if i >= nobj {
                return false;
            }
            let f = fid(i);
            let mut th = o.trans_create();
            th.declare_create(&f);
            th.declare_xattr_set(&f, 11, 56);
            let r = async {
                o.trans_start(&mut th).await?;
                o.create(&mut th, &f, ObjType::Regular, &Attr::default()).await?;
                o.xattr_set(&mut th, &f, b"trusted.lov", &[0u8; 56], XattrMode::Create).await?;
                o.trans_stop(th).await
            };
            r.await.is_ok()
        }
    })
    .await;
    osd.sync().await?;
    f.create.push(nobj as f64 / t.as_secs_f64());
    let o = osd.clone();
    let t = parallel(args.rand_qd, move |_, i| {
        let o = o.clone();
        async move {
            if i >= nobj {
                return false;
            }
            let f = fid(i);
            let mut th = o.trans_create();
            th.declare_destroy(&f);
            let r = async {
                o.trans_start(&mut th).await?;
                o.destroy(&mut th, &f).await?;
                o.trans_stop(th).await
            };
            r.await.is_ok()
        }
    })
    .await;
    osd.sync().await?;
    f.destroy.push(nobj as f64 / t.as_secs_f64());
    Ok(())
}

async fn survey_osd(args: &Args, path: &Path, fio_path: &Path) -> osd_nvme::Result<(Figures, u64)> {
    let mut f = Figures::default();
    let mut cache = 0;
    // A fresh OSD per round, as obdfilter-survey uses fresh objects: rewriting a
    // redirect-on-write object after random writes measures fragmentation instead.
    for round in 0..args.rounds.max(1) {
        let dev_size = (args.size + args.size / 4 + (64 << 20)) & !((1 << 20) - 1);
        let dev = DmaDev::create(path, dev_size).await?;
        let region = Region::whole(&dev);
        DiskOsd::format(&dev, region, FormatOptions::default()).await?;
        let cfg = OsdConfig { cache_size: args.cache, ..OsdConfig::default() };
        let osd = DiskOsd::mount(dev, region, cfg).await?;
        let interval = Duration::from_micros(args.commit_us);
        glommio::spawn_local(osd.clone().committer_with(interval, glommio::timer::sleep)).detach();
        let mut th = osd.trans_create();
        th.declare_create(&DATA);
        osd.trans_start(&mut th).await?;
        osd.create(&mut th, &DATA, ObjType::Regular, &Attr::default()).await?;
        osd.trans_stop(th).await?;
        survey_round(args, &osd, fio_path, round as u64, &mut f).await?;
        cache = cache.max(osd.cache_used());
        osd.umount().await?;
        let _ = std::fs::remove_file(path);
    }
    Ok((f, cache))
}

/// Runs one fio job and returns (bandwidth MiB/s, IOPS) of its read or write side.
fn fio(args: &Args, file: &Path, rw: &str, bs: &str, qd: usize, timed: bool) -> Option<(f64, f64)> {
    if args.no_fio {
        return None;
    }
    let mut cmd = Command::new("fio");
    cmd.arg("--name=survey")
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={}", args.size))
        .arg(format!("--rw={rw}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--iodepth={qd}"))
        .args(["--ioengine=io_uring", "--direct=1", "--norandommap", "--randrepeat=0"])
        .args(["--output-format=terse", "--terse-version=3"]);
    if timed {
        cmd.arg(format!("--runtime={}", args.secs)).arg("--time_based");
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("osd-survey: fio failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("3;"))?;
    let fields: Vec<&str> = line.split(';').collect();
    let (bw, iops) = if rw.contains("read") { (6, 7) } else { (47, 48) };
    let bw: f64 = fields.get(bw)?.parse().ok()?;
    let iops: f64 = fields.get(iops)?.parse().ok()?;
    Some((bw / 1024.0, iops))
}

/// A cheap, well-mixed hash of the operation number (splitmix64): random offsets without a
/// generator's cost in the measured loop.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

fn line(test: &str, unit: &str, osd: f64, fio: Option<f64>) {
    match fio {
        Some(f) if f > 0.0 => {
            println!("test={test} osd={osd:.1}{unit} fio={f:.1}{unit} ratio={:.2}", osd / f);
        }
        _ => println!("test={test} osd={osd:.1}{unit} fio=- ratio=-"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Large buffers come from mmap and go back to the kernel when freed, so the heap does
    // not keep freed I/O buffers resident (glibc otherwise raises the threshold to 32 MiB).
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("osd-survey: {}: {e}", args.dir.display());
        return ExitCode::from(2);
    }
    let dev_path = args.dir.join("osd-survey.dev");
    let fio_path = args.dir.join("osd-survey.fio");
    let ex = glommio::LocalExecutorBuilder::default().io_memory(16 << 20).make();
    let Ok(ex) = ex else {
        eprintln!("osd-survey: cannot start the executor");
        return ExitCode::from(2);
    };
    let a = Args { dir: args.dir.clone(), ..args };
    let (f, cache) = match ex.run(async { survey_osd(&a, &dev_path, &fio_path).await }) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("osd-survey: {e}");
            return ExitCode::from(1);
        }
    };
    let rss = peak_rss_kib();
    let _ = std::fs::remove_file(&dev_path);
    let _ = std::fs::remove_file(&fio_path);
    let (qs, qr) = (a.seq_qd, a.rand_qd);
    println!(
        "# osd-survey size={} MiB seq_qd={qs} rand_qd={qr} rounds={} commit_us={} dir={}",
        a.size >> 20,
        a.rounds,
        a.commit_us,
        a.dir.display()
    );
    let report = |test: &str, unit: &str, v: &[(f64, Option<f64>)]| {
        let osd = median(v.iter().map(|x| x.0).collect());
        let fio: Vec<f64> = v.iter().filter_map(|x| x.1).collect();
        let fio = if fio.is_empty() { None } else { Some(median(fio)) };
        line(test, unit, osd, fio);
    };
    report(&format!("seqwrite-1m-qd{qs}"), "MiB/s", &f.seq_write);
    report(&format!("seqread-1m-qd{qs}"), "MiB/s", &f.seq_read);
    report(&format!("randwrite-4k-qd{qr}"), "IOPS", &f.rand_write);
    report(&format!("randread-4k-qd{qr}"), "IOPS", &f.rand_read);
    line(&format!("create-qd{qr}"), "ops/s", median(f.create.clone()), None);
    line(&format!("destroy-qd{qr}"), "ops/s", median(f.destroy.clone()), None);
    println!(
        "peak_rss={:.1}MiB (glommio io_memory 16MiB) osd_metadata_cache={:.1}MiB cache_size={}MiB",
        rss as f64 / 1024.0,
        cache as f64 / MIB,
        a.cache >> 20
    );
    ExitCode::SUCCESS
}

//! Crash safety, way (b): a real process is SIGKILLed at a random moment.
//!
//! Each round starts `osd-crash-child`, which runs the seeded workload on a file-backed OSD
//! (io_uring O_DIRECT on /tmp) and reports every commit callback over a pipe. After a random
//! number of acknowledgements and a random delay the parent SIGKILLs it, remounts the file
//! (glommio `DmaDev`), and checks: the state equals the memory model after a prefix of the
//! workload that includes every acknowledged transaction, and fsck is clean.
//! 50 rounds by default (`OSD_KILL_ROUNDS`), bounded by `OSD_KILL_SECS` (default 120).
//! A failure prints its seed; `OSD_KILL_SEED=N` replays one round.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use osd_nvme::check::dump;
use osd_nvme::dev::dma::DmaDev;
use osd_nvme::sim::{Workload, run_txn};
use osd_nvme::{DiskOsd, MemOsd, OsdConfig, Region};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TXNS: usize = 300;

/// Kills the child after `acks` acknowledgements plus `delay_us`; returns the highest
/// acknowledged transaction and whether the child finished on its own first.
fn run_child(path: &Path, seed: u64, acks: usize, delay_us: u64) -> (usize, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_osd-crash-child"))
        .arg(path)
        .arg(seed.to_string())
        .arg(TXNS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn osd-crash-child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut max_acked = 0usize;
    let mut seen = 0usize;
    let mut finished = false;
    let mut mounted = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "mounted" {
            mounted = true;
            if acks == 0 {
                break;
            }
        } else if let Some(n) = line.strip_prefix("acked ") {
            max_acked = max_acked.max(n.parse().unwrap());
            seen += 1;
            if seen >= acks {
                break;
            }
        } else if line == "done" {
            finished = true;
            break;
        }
    }
    assert!(mounted || finished, "child never mounted");
    std::thread::sleep(Duration::from_micros(delay_us));
    let _ = child.kill(); // SIGKILL
    // Acknowledgements written before the kill still count.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("acked ") {
            max_acked = max_acked.max(n.parse().unwrap());
        }
    }
    let _ = child.wait();
    (max_acked, finished)
}

fn check_round(path: &Path, seed: u64, max_acked: usize) -> Result<usize, String> {
    let ex = glommio::LocalExecutorBuilder::default().io_memory(512 << 10).make().unwrap();
    let path = path.to_path_buf();
    ex.run(async move {
        let dev = DmaDev::open(&path).await.map_err(|e| format!("open: {e}"))?;
        let region = Region::whole(&dev);
        let osd = DiskOsd::mount(dev, region, OsdConfig::default())
            .await
            .map_err(|e| format!("remount: {e}"))?;
        let got = dump(&osd).await.map_err(|e| format!("read back: {e}"))?;
        let rep = osd_nvme::fsck::fsck(osd.device(), region).await;
        if !rep.is_clean() {
            return Err(format!("fsck:\n{}", rep.summary()));
        }
        let model = MemOsd::new(1 << 30);
        let mut w = Workload::new(seed);
        let mut found = None;
        if max_acked == 0 && dump(&model).await.unwrap() == got {
            found = Some(0);
        }
        for k in 1..=TXNS {
            run_txn(&model, &w.next_txn(), false, |_| {}).await.unwrap();
            if k >= max_acked && dump(&model).await.unwrap() == got {
                found = Some(k);
                break;
            }
        }
        found.ok_or_else(|| {
            format!("recovered state is no prefix that holds the {max_acked} acknowledged txns")
        })
    })
}

#[test]
fn sigkill_rounds() {
    // /tmp, not $TMPDIR: O_DIRECT needs a real file system (tmpfs has none; /tmp is ext4 here).
    let dir = std::path::Path::new("/tmp").join(format!("osd-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("osd.img");
    let one: Option<u64> = std::env::var("OSD_KILL_SEED").ok().and_then(|s| s.parse().ok());
    let rounds: u64 =
        std::env::var("OSD_KILL_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let secs: u64 = std::env::var("OSD_KILL_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let seeds: Vec<u64> = match one {
        Some(s) => vec![s],
        None => (1000..1000 + rounds).collect(),
    };
    let start = Instant::now();
    let mut done = 0;
    let mut finished_alone = 0u64;
    for seed in seeds {
        if start.elapsed() > Duration::from_secs(secs) {
            break;
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let acks = rng.random_range(0..60);
        let delay = rng.random_range(0..3000);
        let (max_acked, finished) = run_child(&path, seed, acks, delay);
        finished_alone += u64::from(finished);
        match check_round(&path, seed, max_acked) {
            Ok(k) => {
                if one.is_some() {
                    eprintln!("seed {seed}: acked {max_acked}, recovered prefix {k}");
                }
            }
            Err(e) => panic!("SIGKILL round failed; replay with OSD_KILL_SEED={seed}\n{e}"),
        }
        done += 1;
    }
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!("sigkill_rounds: {done} rounds passed in {:?}", start.elapsed());
    assert!(one.is_some() || done >= 50.min(rounds), "only {done} rounds ran in the time bound");
    assert!(finished_alone < done.max(1), "every child finished before the kill");
}

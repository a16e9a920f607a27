//! Crash safety, way (a): deterministic power cuts over the fault-injecting device.
//!
//! For each seed: format, mount on a `FaultDev` that loses power at a seeded write or flush, run a
//! seeded workload (the memory OSD runs the same transactions as the model), then build the
//! crash image (unflushed writes dropped, kept or torn at 512-byte sectors; for some seeds
//! one recent write corrupted or misdirected), mount it and check:
//! * no damage injected: the recovered state equals the model after some prefix of the
//!   transactions that contains every one whose commit callback fired, and fsck is clean;
//! * damage injected: the damage is detected (mount or read fails with EIO) or the state is
//!   still a whole prefix; wrong data is never returned.
//!
//! Thousands of seeds, bounded by count (`OSD_CRASH_SEEDS`, default 3000) and time
//! (`OSD_CRASH_SECS`, default 60). A failure prints its seed; `OSD_CRASH_SEED=N` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use osd_nvme::check::dump;
use osd_nvme::dev::fault::{Damage, FaultDev};
use osd_nvme::dev::mem::MemDev;
use osd_nvme::sim::{Workload, run_txn};
use osd_nvme::{DiskOsd, FormatOptions, MemOsd, Osd, OsdConfig, Region};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEV_SIZE: u64 = 4 << 20;
const TXNS: usize = 40;

fn opts() -> FormatOptions {
    FormatOptions { journal_blocks: Some(32), ckpt_blocks: Some(40), ..FormatOptions::default() }
}

fn cfg(rng: &mut StdRng) -> OsdConfig {
    OsdConfig { commit_bytes: rng.random_range(512..16_384), ..OsdConfig::default() }
}

/// Runs one seed; `Err` describes a violated property.
fn run_seed(seed: u64, verbose: bool) -> Result<(), String> {
    block_on(async {
        let mut rng = StdRng::seed_from_u64(seed);
        let damage = match seed % 10 {
            0 => Damage::Corrupt,
            5 => Damage::Misdirect,
            _ => Damage::None,
        };
        let dev = MemDev::new(DEV_SIZE);
        let region = Region::whole(&dev);
        DiskOsd::format(&dev, region, FormatOptions { uuid: Some([7; 16]), ..opts() })
            .await
            .map_err(|e| format!("format: {e}"))?;
        let fault = Rc::new(FaultDev::new(dev.image()));
        let osd = DiskOsd::mount(fault.clone(), region, cfg(&mut rng))
            .await
            .map_err(|e| format!("first mount: {e}"))?;
        fault.cut_power_at(rng.random_range(0..240));
        let model = MemOsd::new(1 << 30);
        let mut w = Workload::new(seed);
        let mut states = vec![dump(&model).await.unwrap()];
        let acked = Rc::new(Cell::new(0usize));
        let mut issued = 0;
        for i in 1..=TXNS {
            let ops = w.next_txn();
            run_txn(&model, &ops, false, |_| {}).await.map_err(|e| format!("model: {e}"))?;
            states.push(dump(&model).await.unwrap());
            issued = i;
            let a = acked.clone();
            let sync = rng.random_bool(0.2);
            let r = run_txn(&osd, &ops, sync, move |_| a.set(a.get().max(i))).await;
            if let Err(e) = r {
                if fault.is_dead() {
                    break;
                }
                return Err(format!("txn {i} failed before the power cut: {e}"));
            }
            if rng.random_bool(0.1) && osd.sync().await.is_err() {
                break;
            }
        }
        if !fault.is_dead() {
            // Make the end of the run durable sometimes, then cut anyway.
            if rng.random_bool(0.3) {
                // May meet the power cut itself.
                let _ = osd.sync().await;
            }
            fault.cut_power();
        }
        drop(osd);
        let acked = acked.get();
        let img = fault.crash_image(seed, damage);
        let dev2 = Rc::new(MemDev::from_image(img));
        if verbose {
            eprintln!("seed {seed}: damage {damage:?}, issued {issued}, acked {acked}");
        }
        let osd2 = match DiskOsd::mount(dev2.clone(), region, OsdConfig::default()).await {
            Ok(o) => o,
            Err(e) if damage != Damage::None && e.errno() == libc::EIO => return Ok(()),
            Err(e) => return Err(format!("mount after crash failed: {e}")),
        };
        let got = match dump(&osd2).await {
            Ok(d) => d,
            Err(e) if damage != Damage::None && e.errno() == libc::EIO => return Ok(()),
            Err(e) => return Err(format!("reading recovered state failed: {e}")),
        };
        // The newest matching prefix (a transaction may leave the dump unchanged).
        let k = states.iter().rposition(|s| *s == got);
        match k {
            None => {
                return Err(format!(
                    "recovered state is no prefix of the transactions (issued {issued}, acked \
                     {acked})\nrecovered:\n{got}\nmodel after acked:\n{}",
                    states[acked]
                ));
            }
            Some(k) if k > issued => return Err(format!("state of txn {k} never issued")),
            Some(k) if damage == Damage::None && k < acked => {
                return Err(format!("acknowledged transactions {}..={acked} lost", k + 1));
            }
            Some(k) => {
                if verbose {
                    eprintln!("seed {seed}: recovered prefix {k}");
                }
            }
        }
        if damage == Damage::None {
            let rep = osd_nvme::fsck::fsck(&dev2, region).await;
            if !rep.is_clean() {
                return Err(format!("fsck after recovery:\n{}", rep.summary()));
            }
            // The recovered OSD keeps working and survives another remount.
            let mut w2 = Workload::in_sequence(seed, 0x2_0000_0402);
            for _ in 0..3 {
                let ops = w2.next_txn();
                run_txn(&osd2, &ops, true, |_| {})
                    .await
                    .map_err(|e| format!("after recovery: {e}"))?;
            }
            let d = dump(&osd2).await.unwrap();
            drop(osd2);
            let osd3 = DiskOsd::mount(dev2.clone(), region, OsdConfig::default())
                .await
                .map_err(|e| format!("second remount: {e}"))?;
            if dump(&osd3).await.unwrap() != d {
                return Err("second remount lost synced transactions".into());
            }
        }
        Ok(())
    })
}

#[test]
fn power_cut_seeds() {
    if let Ok(s) = std::env::var("OSD_CRASH_SEED") {
        let seed: u64 = s.parse().expect("OSD_CRASH_SEED is a number");
        if let Err(e) = run_seed(seed, true) {
            panic!("OSD_CRASH_SEED={seed}: {e}");
        }
        return;
    }
    let count: u64 =
        std::env::var("OSD_CRASH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let secs: u64 = std::env::var("OSD_CRASH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let base: u64 = std::env::var("OSD_CRASH_BASE").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let start = Instant::now();
    let mut ran = 0;
    for seed in base..base + count {
        if start.elapsed() > Duration::from_secs(secs) {
            break;
        }
        if let Err(e) = run_seed(seed, false) {
            panic!("power-cut seed failed; replay with OSD_CRASH_SEED={seed}\n{e}");
        }
        ran += 1;
    }
    eprintln!("power_cut_seeds: {ran} seeds passed in {:?}", start.elapsed());
    assert!(ran >= 100.min(count), "too few seeds ran in the time bound: {ran}");
}

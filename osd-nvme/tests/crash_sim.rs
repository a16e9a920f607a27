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

/// Splits a dump into per-FID-sequence parts (one per lane).
fn by_sequence(d: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut key = String::new();
    for line in d.lines() {
        if let Some(rest) = line.strip_prefix('[') {
            key = rest.split(':').next().unwrap_or_default().to_string();
        }
        let e: &mut String = out.entry(key.clone()).or_default();
        e.push_str(line);
        e.push('\n');
    }
    out
}

const LANE_TXNS: usize = 15;

/// Like `run_seed`, with three concurrent lanes of transactions on disjoint objects that
/// interleave at every device I/O (group commits batch several lanes, checkpoints wait for
/// running transactions). Each lane must recover to a prefix holding its acknowledged ones.
fn run_concurrent_seed(seed: u64, verbose: bool) -> Result<(), String> {
    block_on(async {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc0c0);
        let dev = MemDev::new(8 << 20);
        let region = Region::whole(&dev);
        let fo = FormatOptions { journal_blocks: Some(16), ckpt_blocks: Some(48), ..opts() };
        DiskOsd::format(&dev, region, fo).await.map_err(|e| format!("format: {e}"))?;
        let fault = Rc::new(FaultDev::new(dev.image()));
        fault.set_yield(true);
        let osd = DiskOsd::mount(fault.clone(), region, cfg(&mut rng))
            .await
            .map_err(|e| format!("first mount: {e}"))?;
        fault.cut_power_at(rng.random_range(0..300));
        let lane = |l: u64| {
            let osd = &osd;
            let fault = fault.clone();
            async move {
                let seqn = 0x2_0000_0401 + l;
                let mut w = Workload::in_sequence(seed * 16 + l, seqn);
                let mut rng = StdRng::seed_from_u64(seed * 16 + l);
                let model = MemOsd::new(1 << 30);
                let mut states = vec![dump(&model).await.unwrap()];
                let acked = Rc::new(Cell::new(0usize));
                let mut issued = 0;
                for i in 1..=LANE_TXNS {
                    let ops = w.next_txn();
                    run_txn(&model, &ops, false, |_| {}).await.unwrap();
                    states.push(dump(&model).await.unwrap());
                    issued = i;
                    let a = acked.clone();
                    let sync = rng.random_bool(0.15);
                    if let Err(e) = run_txn(osd, &ops, sync, move |_| a.set(a.get().max(i))).await {
                        if fault.is_dead() {
                            break;
                        }
                        return Err(format!("lane {l} txn {i} failed before the cut: {e}"));
                    }
                    futures_lite::future::yield_now().await;
                }
                Ok((format!("{seqn:#x}"), states, acked.get(), issued))
            }
        };
        let ((a, b), c) =
            futures_lite::future::zip(futures_lite::future::zip(lane(0), lane(1)), lane(2)).await;
        let lanes = [a?, b?, c?];
        if !fault.is_dead() {
            fault.cut_power();
        }
        drop(osd);
        let dev2 = Rc::new(MemDev::from_image(fault.crash_image(seed, Damage::None)));
        let osd2 = DiskOsd::mount(dev2.clone(), region, OsdConfig::default())
            .await
            .map_err(|e| format!("mount after crash failed: {e}"))?;
        let got = by_sequence(&dump(&osd2).await.map_err(|e| format!("read back: {e}"))?);
        for (key, states, acked, issued) in &lanes {
            let mine = got.get(key).cloned().unwrap_or_default();
            match states.iter().rposition(|s| *s == mine) {
                Some(k) if k >= *acked && k <= *issued => {
                    if verbose {
                        eprintln!("lane {key}: acked {acked} issued {issued} recovered {k}");
                    }
                }
                other => {
                    return Err(format!(
                        "lane {key}: recovered {other:?}, acked {acked}, issued {issued}\n{mine}"
                    ));
                }
            }
        }
        let rep = osd_nvme::fsck::fsck(&dev2, region).await;
        if !rep.is_clean() {
            return Err(format!("fsck after recovery:\n{}", rep.summary()));
        }
        Ok(())
    })
}

#[test]
fn concurrent_power_cut_seeds() {
    if let Ok(s) = std::env::var("OSD_CRASH_CONC_SEED") {
        let seed: u64 = s.parse().expect("OSD_CRASH_CONC_SEED is a number");
        if let Err(e) = run_concurrent_seed(seed, true) {
            panic!("OSD_CRASH_CONC_SEED={seed}: {e}");
        }
        return;
    }
    let count: u64 =
        std::env::var("OSD_CRASH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000) / 3;
    let secs: u64 =
        std::env::var("OSD_CRASH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60) / 2;
    let start = Instant::now();
    let mut ran = 0;
    for seed in 0..count {
        if start.elapsed() > Duration::from_secs(secs) {
            break;
        }
        if let Err(e) = run_concurrent_seed(seed, false) {
            panic!("concurrent power-cut seed failed; replay with OSD_CRASH_CONC_SEED={seed}\n{e}");
        }
        ran += 1;
    }
    eprintln!("concurrent_power_cut_seeds: {ran} seeds passed in {:?}", start.elapsed());
    assert!(ran >= 50.min(count), "too few seeds ran in the time bound: {ran}");
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

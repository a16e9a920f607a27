//! Bad input is never fatal: corrupt superblock, wrong magic, truncated device, full device
//! (ENOSPC before anything changes), device I/O errors (EIO propagated, the OSD stays
//! consistent), and random damage to the metadata area (errors, never panics or wrong data).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::rc::Rc;

use futures_lite::future::block_on;
use osd_nvme::check::dump;
use osd_nvme::dev::fault::FaultDev;
use osd_nvme::dev::mem::MemDev;
use osd_nvme::sim::{Op, Workload, run_txn};
use osd_nvme::{Attr, DiskOsd, FormatOptions, LuFid, ObjType, Osd, OsdConfig, OsdError, Region};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn fid(n: u32) -> LuFid {
    LuFid::new(0x2_0000_0400, n, 0)
}

fn formatted(size: u64) -> MemDev {
    let dev = MemDev::new(size);
    block_on(DiskOsd::format(&dev, Region::whole(&dev), FormatOptions::default())).unwrap();
    dev
}

fn mount(dev: MemDev) -> osd_nvme::Result<DiskOsd<MemDev>> {
    let region = Region::whole(&dev);
    block_on(DiskOsd::mount(dev, region, OsdConfig::default()))
}

#[test]
fn corrupt_superblock_is_eio() {
    let dev = formatted(4 << 20);
    dev.with_bytes_mut(|b| b[40] ^= 1);
    let e = mount(dev).unwrap_err();
    assert!(matches!(e, OsdError::Corrupt { what: "superblock", .. }), "{e}");
    assert_eq!(e.errno(), libc::EIO);
}

#[test]
fn wrong_magic_is_not_our_format() {
    let dev = formatted(4 << 20);
    dev.with_bytes_mut(|b| b[0] = b'X');
    let e = mount(dev).unwrap_err();
    assert!(matches!(e, OsdError::BadFormat(_)), "{e}");
    assert_eq!(e.errno(), libc::EINVAL);
    // A blank device too.
    assert!(matches!(mount(MemDev::new(4 << 20)).unwrap_err(), OsdError::BadFormat(_)));
}

#[test]
fn truncated_device_is_refused() {
    let dev = formatted(8 << 20);
    let img = dev.image();
    let e = mount(MemDev::from_image(img[..6 << 20].to_vec())).unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    let e = mount(MemDev::from_image(img[..1024].to_vec())).unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
    let e = mount(MemDev::from_image(Vec::new())).unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
}

#[test]
fn full_device_is_enospc_and_nothing_is_damaged() {
    block_on(async {
        let dev = Rc::new(formatted(4 << 20));
        let region = Region::whole(&*dev);
        let osd = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        let data = vec![0x5au8; 256 << 10];
        let mut n = 0u32;
        let err = loop {
            n += 1;
            let f = fid(n);
            let mut th = osd.trans_create();
            th.declare_create(&f);
            th.declare_write(&f, 0, data.len() as u64);
            if let Err(e) = osd.trans_start(&mut th).await {
                break e;
            }
            osd.create(&mut th, &f, ObjType::Regular, &Attr::default()).await.unwrap();
            osd.write(&mut th, &f, 0, &[&data]).await.unwrap();
            osd.trans_stop(th).await.unwrap();
            assert!(n < 100, "never ran out of space");
        };
        assert_eq!(err.errno(), libc::ENOSPC, "{err}");
        osd.sync().await.unwrap();
        let before = dump(&osd).await.unwrap();
        // An undeclared write that does not fit fails without changing anything.
        let mut th = osd.trans_create();
        th.declare_attr_set(&fid(1));
        osd.trans_start(&mut th).await.unwrap();
        let e = osd.write(&mut th, &fid(1), 1 << 20, &[&data]).await.unwrap_err();
        assert_eq!(e.errno(), libc::ENOSPC);
        osd.trans_stop(th).await.unwrap();
        assert_eq!(dump(&osd).await.unwrap(), before);
        let st = osd.statfs().await.unwrap();
        assert!(st.bavail < 64, "{st:?}");
        // Freeing space makes room again.
        let mut th = osd.trans_create();
        th.declare_destroy(&fid(1));
        osd.trans_start(&mut th).await.unwrap();
        osd.destroy(&mut th, &fid(1)).await.unwrap();
        osd.trans_stop(th).await.unwrap();
        osd.sync().await.unwrap();
        let after = dump(&osd).await.unwrap();
        drop(osd);
        let rep = osd_nvme::fsck::fsck(&dev, region).await;
        assert!(rep.is_clean(), "{}", rep.summary());
        let osd = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        assert_eq!(dump(&osd).await.unwrap(), after);
        let mut th = osd.trans_create();
        th.declare_write(&fid(2), 0, 4096);
        osd.trans_start(&mut th).await.unwrap();
        osd.write(&mut th, &fid(2), 0, &[&data[..4096]]).await.unwrap();
        osd.trans_stop(th).await.unwrap();
    });
}

#[test]
fn metadata_budget_is_enospc() {
    block_on(async {
        let dev = formatted(4 << 20);
        let region = Region::whole(&dev);
        let cfg = OsdConfig { cache_size: 64 << 10, ..OsdConfig::default() };
        let osd = DiskOsd::mount(dev, region, cfg).await.unwrap();
        let mut n = 0;
        let e = loop {
            n += 1;
            let mut th = osd.trans_create();
            th.declare_create(&fid(n));
            if let Err(e) = osd.trans_start(&mut th).await {
                break e;
            }
            osd.create(&mut th, &fid(n), ObjType::Regular, &Attr::default()).await.unwrap();
            osd.trans_stop(th).await.unwrap();
        };
        assert_eq!(e.errno(), libc::ENOSPC);
        assert!(osd.cache_used() <= 64 << 10, "{}", osd.cache_used());
    });
}

#[test]
fn device_io_errors_propagate_and_the_osd_stays_consistent() {
    block_on(async {
        let dev = formatted(8 << 20);
        let region = Region::whole(&dev);
        let fault = Rc::new(FaultDev::new(dev.image()));
        let osd = DiskOsd::mount(fault.clone(), region, OsdConfig::default()).await.unwrap();
        let f = fid(1);
        run_txn(&osd, &[Op::Create(f, ObjType::Regular), Op::Write(f, 0, 20_000, 1)], true, |_| {})
            .await
            .unwrap();
        let good = dump(&osd).await.unwrap();
        // A failed data write: EIO, nothing changed, the OSD keeps working.
        fault.fail_write_in(0);
        let e = run_txn(&osd, &[Op::Write(f, 8192, 4096, 9)], true, |_| {}).await.unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{e}");
        assert_eq!(dump(&osd).await.unwrap(), good);
        run_txn(&osd, &[Op::Write(f, 30_000, 100, 3)], true, |_| {}).await.unwrap();
        let good = dump(&osd).await.unwrap();
        // A failed read: EIO, then reads work again.
        fault.fail_read_in(0);
        let mut b = vec![0u8; 8192];
        assert_eq!(osd.read(&f, 0, &mut [&mut b]).await.unwrap_err().errno(), libc::EIO);
        assert_eq!(dump(&osd).await.unwrap(), good);
        // A failed journal flush: the transaction is not acknowledged, the OSD turns
        // read-only, and a remount recovers a consistent state.
        fault.fail_flush_in(0);
        let acked = Rc::new(std::cell::Cell::new(false));
        let a = acked.clone();
        let e = run_txn(&osd, &[Op::Write(f, 0, 5000, 4)], true, move |_| a.set(true))
            .await
            .unwrap_err();
        assert!(matches!(e.errno(), libc::EIO | libc::EROFS), "{e}");
        assert!(!acked.get());
        let e = run_txn(&osd, &[Op::Write(f, 0, 10, 5)], false, |_| {}).await.unwrap_err();
        assert_eq!(e.errno(), libc::EROFS);
        drop(osd);
        let dev2 = Rc::new(MemDev::from_image(fault.crash_image(1, Default::default())));
        let osd = DiskOsd::mount(dev2.clone(), region, OsdConfig::default()).await.unwrap();
        let got = dump(&osd).await.unwrap();
        // The unacknowledged transaction is wholly there or wholly absent.
        let model = osd_nvme::MemOsd::new(1 << 30);
        let setup = [Op::Create(f, ObjType::Regular), Op::Write(f, 0, 20_000, 1)];
        run_txn(&model, &setup, false, |_| {}).await.unwrap();
        run_txn(&model, &[Op::Write(f, 30_000, 100, 3)], false, |_| {}).await.unwrap();
        assert_eq!(dump(&model).await.unwrap(), good);
        run_txn(&model, &[Op::Write(f, 0, 5000, 4)], false, |_| {}).await.unwrap();
        let with = dump(&model).await.unwrap();
        assert!(got == good || got == with, "{got}");
        assert!(osd_nvme::fsck::fsck(&dev2, region).await.is_clean());
    });
}

#[test]
fn random_metadata_damage_never_panics_or_lies() {
    // Build an image, then flip random bytes in the metadata area (superblock, journal,
    // checkpoints); mount and read must fail cleanly or return exactly the synced state.
    let (img, states, meta_end) = block_on(async {
        let dev = Rc::new(formatted(4 << 20));
        let region = Region::whole(&*dev);
        let osd = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        let mut w = Workload::new(9);
        let mut states = vec![dump(&osd).await.unwrap()];
        for i in 0..30 {
            run_txn(&osd, &w.next_txn(), i % 7 == 0, |_| {}).await.unwrap();
            states.push(dump(&osd).await.unwrap());
        }
        osd.sync().await.unwrap();
        let sb = osd.superblock();
        drop(osd);
        (dev.image(), states, usize::try_from(sb.data_start * 4096).unwrap())
    });
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..600 {
        let mut bad = img.clone();
        let mut flips = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..meta_end);
            bad[at] ^= 1 << rng.random_range(0..8);
            flips.push((at / 4096, at % 4096));
        }
        let dev = MemDev::from_image(bad);
        let region = Region::whole(&dev);
        let _ = block_on(osd_nvme::fsck::fsck(&dev, region));
        if let Ok(osd) = mount(dev)
            && let Ok(got) = block_on(dump(&osd))
        {
            let k = states.iter().rposition(|s| *s == got);
            assert_eq!(
                k,
                Some(states.len() - 1),
                "damaged metadata (block, byte) {flips:?} returned another state"
            );
        }
    }
}

#[test]
fn cancelled_operations_leave_the_osd_consistent() {
    // A request task may be dropped while its I/O is in flight. A dropped write gives its new
    // blocks back; a dropped commit makes the OSD read-only (the batch's fate is unknown);
    // a remount is consistent either way.
    block_on(async {
        let dev = formatted(8 << 20);
        let region = Region::whole(&dev);
        let fault = Rc::new(FaultDev::new(dev.image()));
        fault.set_yield(true);
        let osd = DiskOsd::mount(fault.clone(), region, OsdConfig::default()).await.unwrap();
        let f = fid(1);
        run_txn(&osd, &[Op::Create(f, ObjType::Regular)], true, |_| {}).await.unwrap();
        let free = osd.statfs().await.unwrap().bfree;
        for aligned in [true, false] {
            let mut th = osd.trans_create();
            th.declare_write(&f, 0, 8192);
            osd.trans_start(&mut th).await.unwrap();
            let data = vec![7u8; 8192];
            let off = if aligned { 0 } else { 100 };
            {
                let bufs: [&[u8]; 1] = [&data];
                let mut w = Box::pin(osd.write(&mut th, &f, off, &bufs));
                assert!(futures_lite::future::poll_once(&mut w).await.is_none());
            } // dropped mid-I/O
            osd.trans_stop(th).await.unwrap();
            osd.sync().await.unwrap();
            assert_eq!(osd.statfs().await.unwrap().bfree, free, "blocks leaked");
        }
        let good = dump(&osd).await.unwrap();
        // Drop a sync in the middle of its journal write.
        let mut th = osd.trans_create();
        th.declare_write(&f, 0, 4096);
        osd.trans_start(&mut th).await.unwrap();
        osd.write(&mut th, &f, 0, &[&[9u8; 4096]]).await.unwrap();
        osd.trans_stop(th).await.unwrap();
        {
            let mut s = Box::pin(osd.sync());
            assert!(futures_lite::future::poll_once(&mut s).await.is_none());
        }
        let e = run_txn(&osd, &[Op::Write(f, 0, 10, 5)], false, |_| {}).await.unwrap_err();
        assert_eq!(e.errno(), libc::EROFS);
        drop(osd);
        let dev2 = Rc::new(MemDev::from_image(fault.cache_image()));
        let osd = DiskOsd::mount(dev2.clone(), region, OsdConfig::default()).await.unwrap();
        let got = dump(&osd).await.unwrap();
        assert!(got == good || got.contains("body 4096"), "{got}");
        drop(osd);
        let rep = osd_nvme::fsck::fsck(&dev2, region).await;
        assert!(rep.is_clean(), "{}", rep.summary());
    });
}

//! One OSD instance per shard region of a device, and the persistent OSD on the default
//! device (io_uring O_DIRECT through glommio) with its committer task.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future::block_on;
use osd_nvme::check::dump;
use osd_nvme::dev::dma::DmaDev;
use osd_nvme::dev::mem::MemDev;
use osd_nvme::sim::{Workload, run_txn};
use osd_nvme::{DiskOsd, FormatOptions, Osd, OsdConfig, Region};

#[test]
fn shards_have_independent_regions() {
    block_on(async {
        let dev = Rc::new(MemDev::new(16 << 20));
        let regions: Vec<Region> = (0..2).map(|i| Region::shard(&*dev, i, 2)).collect();
        for (i, r) in regions.iter().enumerate() {
            let opts =
                FormatOptions { shard: i as u32, uuid: Some([3; 16]), ..FormatOptions::default() };
            DiskOsd::format(&dev, *r, opts).await.unwrap();
        }
        let a = DiskOsd::mount(dev.clone(), regions[0], OsdConfig::default()).await.unwrap();
        let b = DiskOsd::mount(dev.clone(), regions[1], OsdConfig::default()).await.unwrap();
        let (mut wa, mut wb) = (Workload::new(1), Workload::new(2));
        for _ in 0..30 {
            run_txn(&a, &wa.next_txn(), false, |_| {}).await.unwrap();
            run_txn(&b, &wb.next_txn(), false, |_| {}).await.unwrap();
        }
        a.sync().await.unwrap();
        b.sync().await.unwrap();
        let (da, db) = (dump(&a).await.unwrap(), dump(&b).await.unwrap());
        assert_ne!(da, db);
        assert_eq!(a.superblock().shard, 0);
        assert_eq!(b.superblock().shard, 1);
        assert_ne!(a.superblock().fsid(), b.superblock().fsid());
        drop((a, b));
        for r in &regions {
            let rep = osd_nvme::fsck::fsck(&dev, *r).await;
            assert!(rep.is_clean(), "{}", rep.summary());
        }
        let a = DiskOsd::mount(dev.clone(), regions[0], OsdConfig::default()).await.unwrap();
        let b = DiskOsd::mount(dev.clone(), regions[1], OsdConfig::default()).await.unwrap();
        assert_eq!(dump(&a).await.unwrap(), da);
        assert_eq!(dump(&b).await.unwrap(), db);
    });
}

#[test]
fn io_uring_file_device_with_committer() {
    // /tmp, not $TMPDIR: O_DIRECT needs a real file system (tmpfs has none; /tmp is ext4 here).
    let dir = std::path::Path::new("/tmp").join(format!("osd-dma-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dev.img");
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().unwrap();
    let p = path.clone();
    ex.run(async move {
        let dev = DmaDev::create(&p, 16 << 20).await.unwrap();
        let region = Region::whole(&dev);
        DiskOsd::format(&dev, region, FormatOptions::default()).await.unwrap();
        let osd = DiskOsd::mount(dev, region, OsdConfig::default()).await.unwrap();
        glommio::spawn_local(
            osd.clone().committer_with(Duration::from_millis(1), glommio::timer::sleep),
        )
        .detach();
        let acked = Rc::new(Cell::new(0u64));
        let mut w = Workload::new(5);
        let mut last = 0;
        for _ in 0..100 {
            let a = acked.clone();
            last =
                run_txn(&osd, &w.next_txn(), false, move |t| a.set(a.get().max(t))).await.unwrap();
        }
        // Commit callbacks fire from the committer task, without a sync.
        for _ in 0..2000 {
            if acked.get() == last {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(acked.get(), last, "commit callbacks did not fire");
        assert_eq!(osd.last_committed(), last);
        let want = dump(&osd).await.unwrap();
        osd.umount().await.unwrap();
        let dev = DmaDev::open(&p).await.unwrap();
        let osd = DiskOsd::mount(dev, region, OsdConfig::default()).await.unwrap();
        assert_eq!(dump(&osd).await.unwrap(), want);
        let rep = osd_nvme::fsck::fsck(osd.device(), region).await;
        assert!(rep.is_clean(), "{}", rep.summary());
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

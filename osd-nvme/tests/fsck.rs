//! fsck finds one corrupted byte in each kind of structure and names it; the binary reports
//! a clean image with exit 0 and a damaged one with exit 1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::rc::Rc;

use futures_lite::future::block_on;
use osd_nvme::dev::mem::MemDev;
use osd_nvme::fsck::{fsck, locate};
use osd_nvme::sim::{Op, Workload, run_txn};
use osd_nvme::{DiskOsd, FormatOptions, LuFid, ObjType, OsdConfig, Region};

/// An image with every structure in use: a checkpoint holding objects, xattrs, extents,
/// index entries and the bitmap, and two live journal batches after it.
fn populated_image() -> Vec<u8> {
    block_on(async {
        let dev = Rc::new(MemDev::new(8 << 20));
        let region = Region::whole(&*dev);
        DiskOsd::format(&dev, region, FormatOptions::default()).await.unwrap();
        let osd = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        let mut w = Workload::new(42);
        for _ in 0..60 {
            run_txn(&osd, &w.next_txn(), false, |_| {}).await.unwrap();
        }
        let f = LuFid::new(0x2_0000_0500, 1, 0);
        let ops = [Op::Create(f, ObjType::Regular), Op::XattrSet(f, "trusted.lov".into(), 200, 1)];
        run_txn(&osd, &ops, false, |_| {}).await.unwrap();
        run_txn(&osd, &[Op::Write(f, 0, 40_000, 2)], false, |_| {}).await.unwrap();
        osd.umount().await.unwrap();
        let osd = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        for _ in 0..2 {
            run_txn(&osd, &w.next_txn(), true, |_| {}).await.unwrap();
        }
        drop(osd);
        dev.image()
    })
}

#[test]
fn fsck_names_each_damaged_structure() {
    let img = populated_image();
    let dev = MemDev::from_image(img.clone());
    let region = Region::whole(&dev);
    let rep = block_on(fsck(&dev, region));
    assert!(rep.is_clean(), "{}", rep.summary());
    assert!(rep.objects > 5 && rep.xattrs > 0 && rep.index_entries > 0, "{}", rep.summary());
    assert!(rep.data_blocks > 0, "{}", rep.summary());
    let spots = block_on(locate(&dev, region)).unwrap();
    let kinds: Vec<&str> = spots.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "superblock",
        "checkpoint header",
        "object index block",
        "xattr block",
        "extent map block",
        "index block",
        "free-space bitmap block",
        "journal block",
        "data block",
    ] {
        assert!(kinds.contains(&k), "no {k} in {kinds:?}");
    }
    for (kind, blk) in &spots {
        let mut bad = img.clone();
        // A byte in the middle of the block: payload for every kind.
        let at = usize::try_from(*blk).unwrap() * 4096 + 100;
        bad[at] ^= 0x40;
        let dev = MemDev::from_image(bad);
        let rep = block_on(fsck(&dev, region));
        assert!(!rep.is_clean(), "{kind}: damage not found");
        assert!(rep.names(kind), "{kind}: fsck named {:?}", rep.damage);
    }
}

#[test]
fn fsck_binary_exit_codes() {
    let img = populated_image();
    let dir = std::env::temp_dir().join(format!("rustre-fsck-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("osd.img");
    std::fs::write(&path, &img).unwrap();
    let bin = env!("CARGO_BIN_EXE_rustre-fsck");
    let out = std::process::Command::new(bin).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("status=clean"), "{text}");
    let spots =
        block_on(locate(&MemDev::from_image(img.clone()), Region::whole(&MemDev::new(4096)))).err();
    assert!(spots.is_some(), "a 4 KiB region holds no OSD");
    let mut bad = img;
    bad[100] ^= 1; // superblock
    std::fs::write(&path, &bad).unwrap();
    let out = std::process::Command::new(bin).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("DAMAGE superblock"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fresh_format_is_clean() {
    let dev = MemDev::new(4 << 20);
    let region = Region::whole(&dev);
    block_on(DiskOsd::format(&dev, region, FormatOptions::default())).unwrap();
    let rep = block_on(fsck(&dev, region));
    assert!(rep.is_clean(), "{}", rep.summary());
    assert_eq!((rep.objects, rep.data_blocks), (0, 0));
    assert_eq!(rep.free_blocks, rep.total_blocks);
}

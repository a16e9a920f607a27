//! The OSD API, exercised identically on the memory OSD and the persistent OSD.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::cell::RefCell;
use std::rc::Rc;

use futures_lite::future::block_on;
use osd_nvme::dev::mem::MemDev;
use osd_nvme::types::{DIR_HASH_MAX, XATTR_SIZE_MAX};
use osd_nvme::{
    Attr, AttrMask, DiskOsd, FormatOptions, IoBuf, LuFid, MemOsd, ObjType, Osd, OsdConfig,
    OsdError, Region, Timespec, XattrMode,
};

fn fid(n: u32) -> LuFid {
    LuFid::new(0x2_0000_0400, n, 0)
}

async fn txn<O: Osd>(osd: &O, f: impl AsyncFnOnce(&mut osd_nvme::Txn)) -> u64 {
    let mut th = osd.trans_create();
    th.declare_write(&fid(0), 0, 1 << 20);
    th.declare_create(&fid(0));
    th.declare_xattr_set(&fid(0), 64, XATTR_SIZE_MAX);
    osd.trans_start(&mut th).await.unwrap();
    f(&mut th).await;
    osd.trans_stop(th).await.unwrap()
}

async fn exercise<O: Osd>(osd: &O) {
    let a = Attr {
        mode: 0o644,
        uid: 1,
        gid: 2,
        atime: Timespec { sec: 1, nsec: 2 },
        mtime: Timespec { sec: 3, nsec: 999_999_999 },
        ctime: Timespec { sec: -4, nsec: 5 },
        nlink: 1,
        flags: 7,
        projid: 8,
        ..Attr::default()
    };
    // Every object type.
    let types = [
        ObjType::Regular,
        ObjType::Dir,
        ObjType::Index,
        ObjType::Symlink,
        ObjType::CharDev,
        ObjType::BlockDev,
        ObjType::Fifo,
        ObjType::Socket,
    ];
    let committed = Rc::new(RefCell::new(Vec::new()));
    let c2 = committed.clone();
    let t1 = txn(osd, async |th| {
        for (i, t) in types.iter().enumerate() {
            let mut at = a;
            at.rdev = 0x0801;
            osd.create(th, &fid(i as u32 + 1), *t, &at).await.unwrap();
        }
        assert!(matches!(
            osd.create(th, &fid(1), ObjType::Regular, &a).await,
            Err(OsdError::Exists(_))
        ));
        th.on_commit(move |t| c2.borrow_mut().push(t));
    })
    .await;
    for (i, t) in types.iter().enumerate() {
        assert_eq!(osd.obj_type(&fid(i as u32 + 1)).await.unwrap(), *t);
        let got = osd.attr_get(&fid(i as u32 + 1)).await.unwrap();
        assert_eq!(got.mode & 0o7777, 0o644);
        assert_eq!(got.mode & 0o170000, t.ifmt());
        assert_eq!((got.uid, got.gid, got.nlink, got.flags, got.projid), (1, 2, 1, 7, 8));
        assert_eq!(got.mtime, Timespec { sec: 3, nsec: 999_999_999 });
        assert_eq!(got.ctime, Timespec { sec: -4, nsec: 5 });
        assert_eq!(got.rdev, 0x0801);
    }
    osd.sync().await.unwrap();
    assert_eq!(*committed.borrow(), vec![t1]);
    assert!(osd.last_committed() >= t1);

    // Attributes and link counts.
    txn(osd, async |th| {
        let na = Attr { uid: 99, size: 12345, ..a };
        osd.attr_set(th, &fid(1), AttrMask::UID | AttrMask::SIZE, &na).await.unwrap();
        osd.ref_add(th, &fid(1)).await.unwrap();
        osd.ref_add(th, &fid(1)).await.unwrap();
        osd.ref_del(th, &fid(1)).await.unwrap();
    })
    .await;
    let got = osd.attr_get(&fid(1)).await.unwrap();
    assert_eq!((got.uid, got.gid, got.size, got.nlink), (99, 2, 12345, 2));

    // Xattrs: create/replace semantics, 64 KiB values, list, delete, ERANGE.
    let big: Vec<u8> = (0..XATTR_SIZE_MAX).map(|i| (i * 7) as u8).collect();
    txn(osd, async |th| {
        osd.xattr_set(th, &fid(1), b"trusted.lov", &big, XattrMode::Create).await.unwrap();
        assert!(matches!(
            osd.xattr_set(th, &fid(1), b"trusted.lov", b"x", XattrMode::Create).await,
            Err(OsdError::XattrExists)
        ));
        assert!(matches!(
            osd.xattr_set(th, &fid(1), b"user.a", b"x", XattrMode::Replace).await,
            Err(OsdError::NoXattr)
        ));
        osd.xattr_set(th, &fid(1), b"user.a", b"1", XattrMode::Upsert).await.unwrap();
        osd.xattr_set(th, &fid(1), b"user.a", b"22", XattrMode::Replace).await.unwrap();
        osd.xattr_set(th, &fid(1), b"user.b", b"3", XattrMode::Upsert).await.unwrap();
        osd.xattr_del(th, &fid(1), b"user.b").await.unwrap();
        assert!(matches!(osd.xattr_del(th, &fid(1), b"user.b").await, Err(OsdError::NoXattr)));
        let e = osd
            .xattr_set(th, &fid(1), b"user.big", &vec![0; XATTR_SIZE_MAX + 1], XattrMode::Upsert)
            .await;
        assert_eq!(e.unwrap_err().errno(), libc::E2BIG);
    })
    .await;
    assert_eq!(osd.xattr_get(&fid(1), b"trusted.lov", &mut []).await.unwrap(), XATTR_SIZE_MAX);
    let mut v = vec![0u8; XATTR_SIZE_MAX];
    osd.xattr_get(&fid(1), b"trusted.lov", &mut v).await.unwrap();
    assert_eq!(v, big);
    let mut small = [0u8; 1];
    assert_eq!(
        osd.xattr_get(&fid(1), b"user.a", &mut small).await.unwrap_err().errno(),
        libc::ERANGE
    );
    assert_eq!(
        osd.xattr_list(&fid(1)).await.unwrap(),
        vec![b"trusted.lov".to_vec(), b"user.a".to_vec()]
    );

    // Body: vectored, unaligned, sparse, read past EOF, punch.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let aligned = IoBuf::from_slice(&data[..65536]);
    txn(osd, async |th| {
        let n = osd
            .write(th, &fid(1), 1000, &[&data[..100], &data[100..70_000], &data[70_000..]])
            .await
            .unwrap();
        assert_eq!(n, data.len());
        // Aligned whole blocks go to the device from the caller's buffer.
        osd.write(th, &fid(1), 1 << 20, &[&aligned]).await.unwrap();
    })
    .await;
    let size = osd.attr_get(&fid(1)).await.unwrap().size;
    assert_eq!(size, (1 << 20) + 65536);
    let mut out = vec![0xffu8; data.len() + 2000];
    let (a1, a2) = out.split_at_mut(4096);
    let n = osd.read(&fid(1), 0, &mut [a1, a2]).await.unwrap();
    assert_eq!(n, data.len() + 2000);
    assert!(out[..1000].iter().all(|&b| b == 0), "hole before the data reads as zeros");
    assert_eq!(&out[1000..1000 + data.len()], &data[..]);
    assert!(out[1000 + data.len()..].iter().all(|&b| b == 0));
    let mut tail = IoBuf::new(65536 + 4096);
    assert_eq!(osd.read(&fid(1), 1 << 20, &mut [&mut tail]).await.unwrap(), 65536);
    assert_eq!(&tail[..65536], &data[..65536]);
    let mut past = [0u8; 10];
    assert_eq!(osd.read(&fid(1), size + 5, &mut [&mut past]).await.unwrap(), 0);
    txn(osd, async |th| {
        osd.punch(th, &fid(1), 5000, 20_000).await.unwrap();
        osd.punch(th, &fid(1), 1 << 20, u64::MAX).await.unwrap();
    })
    .await;
    let mut out2 = vec![0xffu8; 301_000];
    osd.read(&fid(1), 0, &mut [&mut out2]).await.unwrap();
    assert!(out2[5000..20_000].iter().all(|&b| b == 0));
    assert_eq!(&out2[1000..5000], &data[..4000]);
    assert_eq!(&out2[20_000..301_000], &data[19_000..300_000]);
    let mut t2 = vec![0xffu8; 100];
    osd.read(&fid(1), 1 << 20, &mut [&mut t2]).await.unwrap();
    assert!(t2.iter().all(|&b| b == 0));
    // Body I/O on an index is refused.
    let mut b = [0u8; 4];
    assert_eq!(osd.read(&fid(2), 0, &mut [&mut b]).await.unwrap_err().errno(), libc::ENOTDIR);

    // Directory index: lookups, inserts, deletes, readdir by hash cookie.
    txn(osd, async |th| {
        for i in 0..300 {
            let name = format!("entry-{i}");
            osd.index_insert(th, &fid(2), name.as_bytes(), &fid(1000 + i).seq().to_le_bytes())
                .await
                .unwrap();
        }
        assert!(matches!(
            osd.index_insert(th, &fid(2), b"entry-1", b"x").await,
            Err(OsdError::KeyExists)
        ));
        osd.index_delete(th, &fid(2), b"entry-7").await.unwrap();
        assert!(matches!(osd.index_delete(th, &fid(2), b"entry-7").await, Err(OsdError::NoKey)));
        let long = vec![b'x'; 256];
        assert_eq!(
            osd.index_insert(th, &fid(2), &long, b"").await.unwrap_err().errno(),
            libc::ENAMETOOLONG
        );
    })
    .await;
    assert!(osd.index_lookup(&fid(2), b"entry-5").await.is_ok());
    assert_eq!(osd.index_lookup(&fid(2), b"entry-7").await.unwrap_err().errno(), libc::ENOENT);
    let mut cookie = 0;
    let mut names = Vec::new();
    let mut last = 0;
    loop {
        let page = osd.index_iter(&fid(2), cookie, 50).await.unwrap();
        for e in page.entries {
            assert!(e.cookie >= last && e.cookie <= DIR_HASH_MAX);
            assert_eq!(e.cookie, osd_nvme::dir_hash(&e.key));
            last = e.cookie;
            names.push(e.key);
        }
        match page.next {
            Some(c) => cookie = c,
            None => break,
        }
    }
    assert_eq!(names.len(), 299);

    // Generic index: key order, cookies from key prefixes.
    txn(osd, async |th| {
        for i in (0..100u64).rev() {
            osd.index_insert(th, &fid(3), &i.to_be_bytes(), &[i as u8; 16]).await.unwrap();
        }
    })
    .await;
    let page = osd.index_iter(&fid(3), 50, 10).await.unwrap();
    assert_eq!(page.entries[0].key, 50u64.to_be_bytes());
    assert_eq!(page.entries.len(), 10);
    assert_eq!(page.next, Some(60));

    // Object index iteration and destroy.
    let all = osd.objects(None, 100).await.unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(osd.objects(Some(fid(4)), 2).await.unwrap(), vec![fid(5), fid(6)]);
    txn(osd, async |th| {
        osd.destroy(th, &fid(1)).await.unwrap();
        assert!(matches!(osd.destroy(th, &fid(1)).await, Err(OsdError::NoObject(_))));
    })
    .await;
    assert!(!osd.exists(&fid(1)).await);
    let st = osd.statfs().await.unwrap();
    assert!(st.bfree <= st.blocks && st.ffree <= st.files && st.bsize == 4096);
    assert_eq!(st.namelen, 255);

    // Operations outside a started transaction are refused.
    let mut th = osd.trans_create();
    assert!(osd.create(&mut th, &fid(50), ObjType::Regular, &a).await.is_err());
}

#[test]
fn memory_osd_api() {
    block_on(exercise(&MemOsd::new(256 << 20)));
}

#[test]
fn disk_osd_api_and_remount() {
    block_on(async {
        let dev = Rc::new(MemDev::new(32 << 20));
        let region = Region::whole(&*dev);
        DiskOsd::format(&dev, region, FormatOptions::default()).await.unwrap();
        let osd = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        exercise(&osd).await;
        osd.sync().await.unwrap();
        let before = osd_nvme::check::dump(&osd).await.unwrap();
        // Remount without a clean unmount: the journal is replayed.
        drop(osd);
        let osd = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        assert_eq!(osd_nvme::check::dump(&osd).await.unwrap(), before);
        osd.umount().await.unwrap();
        let rep = osd_nvme::fsck::fsck(&dev, region).await;
        assert!(rep.is_clean(), "{}", rep.summary());
        let osd = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        assert_eq!(osd_nvme::check::dump(&osd).await.unwrap(), before);
    });
}

#[test]
fn memory_and_disk_osd_agree() {
    block_on(async {
        let mem = MemOsd::new(256 << 20);
        exercise(&mem).await;
        let dev = Rc::new(MemDev::new(32 << 20));
        let region = Region::whole(&*dev);
        DiskOsd::format(&dev, region, FormatOptions::default()).await.unwrap();
        let disk = DiskOsd::mount(dev.clone(), region, OsdConfig::default()).await.unwrap();
        exercise(&disk).await;
        assert_eq!(
            osd_nvme::check::dump(&mem).await.unwrap(),
            osd_nvme::check::dump(&disk).await.unwrap()
        );
    });
}

//! Rustre's OSD (object storage device) layer, modelled on Lustre's OSD API
//! (`Documentation/osd-api.txt` in lustre-release).
//!
//! * [`Osd`]: the API every target (MGS, MDT, OST) stores through: objects addressed by
//!   [`LuFid`], attributes, xattrs, body I/O, index objects with stable 64-bit cookies, and
//!   declared transactions with commit callbacks.
//! * [`MemOsd`]: the whole API in memory.
//! * [`DiskOsd`]: the persistent, crash-safe OSD over a [`BlockDev`], one instance per shard
//!   on its own region; format in `docs/on-disk-format.md`; checked by [`fsck`].
//! * Block devices: [`dev::dma::DmaDev`] (io_uring O_DIRECT via glommio),
//!   [`dev::mem::MemDev`], [`dev::fault::FaultDev`] (deterministic fault injection).
//!
//! ```
//! use osd_nvme::{MemOsd, Osd, ObjType, Attr};
//! use proto::fid::LuFid;
//!
//! futures_lite::future::block_on(async {
//!     let osd = MemOsd::new(64 << 20);
//!     let fid = LuFid::new(0x200000400, 1, 0);
//!     let mut th = osd.trans_create();
//!     th.declare_create(&fid);
//!     th.declare_write(&fid, 0, 5);
//!     osd.trans_start(&mut th).await.unwrap();
//!     osd.create(&mut th, &fid, ObjType::Regular, &Attr::default()).await.unwrap();
//!     osd.write(&mut th, &fid, 0, &[b"hello"]).await.unwrap();
//!     th.on_commit(|transno| println!("transaction {transno} is durable"));
//!     osd.trans_stop(th).await.unwrap();
//!     let mut buf = [0u8; 5];
//!     assert_eq!(osd.read(&fid, 0, &mut [&mut buf]).await.unwrap(), 5);
//!     assert_eq!(&buf, b"hello");
//! });
//! ```

pub mod api;
pub mod buf;
pub mod check;
mod codec;
pub mod dev;
pub mod disk;
pub mod error;
pub mod fsck;
pub mod mem;
mod seg;
pub mod sim;
mod store;
pub mod types;
mod util;

pub use api::{CommitCb, Osd, Txn};
pub use buf::IoBuf;
pub use dev::{BlockDev, DevInfo, IoOp};
pub use disk::{DiskOsd, FormatOptions, OsdConfig, Region};
pub use error::{OsdError, Result};
pub use mem::MemOsd;
pub use proto::fid::LuFid;
pub use types::{
    Attr, AttrMask, IndexEntry, IndexPage, ObjType, StatFs, Timespec, XattrMode, dir_hash,
    key_cookie,
};

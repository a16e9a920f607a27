//! The OSD API, modelled on Lustre's (Documentation/osd-api.txt): objects by FID, attributes,
//! xattrs, body read/write/punch, index objects, and transactions that are declared, started
//! (space is reserved here: ENOSPC before anything changes), executed and stopped, with
//! commit callbacks that fire once the transaction is durable.
//!
//! Semantics both implementations share:
//! * An operation that fails changes nothing; the operations of a transaction that
//!   succeeded commit together, atomically, at `trans_stop` (as in Lustre, a transaction is
//!   never rolled back).
//! * Updates are visible to readers as soon as each operation returns; callers serialise
//!   conflicting updates to one object (Lustre's object locks), as in Lustre.
//! * Transaction numbers are assigned at `trans_start`, increase per OSD instance, and are
//!   passed to the commit callbacks. Durability follows stop order; `last_committed` is the
//!   highest number below which every transaction is durable.
//! * One task must not start a second transaction while it holds a running one.
//! * Every future may be dropped (a cancelled request): an update dropped mid-I/O changes
//!   nothing; a dropped group commit leaves the persistent OSD read-only until remounted,
//!   because whether its batch reached the disk is unknown.

use proto::fid::LuFid;

use crate::error::Result;
use crate::store::{Growth, meta_growth};
use crate::types::{Attr, AttrMask, BLOCK, IndexPage, ObjType, StatFs, XattrMode};

/// A commit callback: called once with the transaction number when the transaction is
/// durable. If the OSD fails before that, it is dropped without being called.
pub type CommitCb = Box<dyn FnOnce(u64)>;

/// Where a transaction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnState {
    Declaring,
    Started,
    Stopped,
}

/// What a transaction declared it will do: turned into reservations at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Declared {
    /// Data blocks it may allocate.
    pub(crate) blocks: u64,
    /// Checkpoint bytes it may add.
    pub(crate) meta: u64,
    /// Journal bytes its records may take.
    pub(crate) journal: u64,
}

/// Journal bytes of a record's fixed part (header, fid, fields).
const REC_FIXED: u64 = 24 + 16 + 96;
/// Journal bytes per block of a write record.
const REC_PER_BLOCK: u64 = 12;

/// A transaction handle (Lustre's `thandle`). Created by [`Osd::trans_create`], filled with
/// declarations, started, used for updates, and consumed by [`Osd::trans_stop`].
///
/// A started transaction must be stopped, also when one of its updates failed: until it is,
/// its reservations stay taken and the OSD cannot checkpoint (dropping it is logged as an
/// error).
pub struct Txn {
    pub(crate) state: TxnState,
    pub(crate) decl: Declared,
    /// Reserved at start and not yet consumed.
    pub(crate) reserved: Declared,
    pub(crate) transno: u64,
    pub(crate) sync: bool,
    pub(crate) callbacks: Vec<CommitCb>,
    /// Device blocks this transaction released; reusable once it is durable.
    pub(crate) freed: Vec<u64>,
    /// Records it logged.
    pub(crate) nrecs: u32,
}

impl core::fmt::Debug for Txn {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Txn")
            .field("state", &self.state)
            .field("declared", &self.decl)
            .field("transno", &self.transno)
            .field("sync", &self.sync)
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if self.state == TxnState::Started {
            log::error!(
                "transaction {} dropped without trans_stop: its space stays reserved and \
                 checkpoints wait for it until the OSD is mounted again",
                self.transno
            );
        }
    }
}

impl Default for Txn {
    fn default() -> Self {
        Txn::new()
    }
}

impl Txn {
    /// A new, empty transaction (prefer [`Osd::trans_create`]).
    #[must_use]
    pub fn new() -> Txn {
        Txn {
            state: TxnState::Declaring,
            decl: Declared::default(),
            reserved: Declared::default(),
            transno: 0,
            sync: false,
            callbacks: Vec::new(),
            freed: Vec::new(),
            nrecs: 0,
        }
    }

    fn add(&mut self, blocks: u64, meta: u64, journal: u64) {
        self.decl.blocks += blocks;
        self.decl.meta += meta;
        self.decl.journal += journal;
    }

    /// Declares an object creation.
    pub fn declare_create(&mut self, _fid: &LuFid) {
        self.add(0, meta_growth(Growth::Object), REC_FIXED);
    }
    /// Declares an object destruction.
    pub fn declare_destroy(&mut self, _fid: &LuFid) {
        self.add(0, 0, REC_FIXED);
    }
    /// Declares an attribute change (also ref_add/ref_del).
    pub fn declare_attr_set(&mut self, _fid: &LuFid) {
        self.add(0, 0, REC_FIXED);
    }
    /// Declares an xattr set of a `name_len`-byte name and `value_len`-byte value.
    pub fn declare_xattr_set(&mut self, _fid: &LuFid, name_len: usize, value_len: usize) {
        let n = name_len + value_len;
        self.add(0, meta_growth(Growth::Entry(n)), REC_FIXED + n as u64);
    }
    /// Declares an xattr deletion.
    pub fn declare_xattr_del(&mut self, _fid: &LuFid, name_len: usize) {
        self.add(0, 0, REC_FIXED + name_len as u64);
    }
    /// Declares an index insertion.
    pub fn declare_index_insert(&mut self, _fid: &LuFid, key_len: usize, value_len: usize) {
        let n = key_len + 8 + value_len;
        self.add(0, meta_growth(Growth::Entry(n)), REC_FIXED + n as u64);
    }
    /// Declares an index deletion.
    pub fn declare_index_delete(&mut self, _fid: &LuFid, key_len: usize) {
        self.add(0, 0, REC_FIXED + key_len as u64 + 8);
    }
    /// Declares a body write of `len` bytes at `off`.
    pub fn declare_write(&mut self, _fid: &LuFid, off: u64, len: u64) {
        let first = off / BLOCK;
        let end = off.saturating_add(len).div_ceil(BLOCK);
        let n = end.saturating_sub(first).max(1);
        self.add(n, meta_growth(Growth::Blocks(n)), REC_FIXED + n * REC_PER_BLOCK);
    }
    /// Declares a punch of `start..end` (partial end blocks are rewritten).
    pub fn declare_punch(&mut self, _fid: &LuFid, _start: u64, _end: u64) {
        self.add(2, meta_growth(Growth::Blocks(2)), 3 * REC_FIXED + 2 * REC_PER_BLOCK);
    }
    /// Makes `trans_stop` wait until the transaction is durable.
    pub fn set_sync(&mut self) {
        self.sync = true;
    }
    /// Adds a commit callback (Lustre's `dt_trans_cb_add`).
    pub fn on_commit(&mut self, cb: impl FnOnce(u64) + 'static) {
        self.callbacks.push(Box::new(cb));
    }
    /// The transaction number (0 before start).
    #[must_use]
    pub fn transno(&self) -> u64 {
        self.transno
    }
}

/// The OSD API. Both [`crate::MemOsd`] and [`crate::DiskOsd`] implement it; instances are
/// `!Send` and belong to one shard.
#[allow(async_fn_in_trait)] // single-executor by design (decision 3): futures are !Send.
pub trait Osd {
    /// A new transaction to declare updates on.
    fn trans_create(&self) -> Txn {
        Txn::new()
    }
    /// Starts a declared transaction: assigns its number and reserves data blocks, metadata
    /// and journal space. Fails with ENOSPC before anything is modified.
    async fn trans_start(&self, th: &mut Txn) -> Result<()>;
    /// Stops a transaction: its updates commit together. Returns its number. With
    /// [`Txn::set_sync`] it returns once the transaction is durable.
    async fn trans_stop(&self, th: Txn) -> Result<u64>;
    /// Makes every stopped transaction durable (and fires their callbacks).
    async fn sync(&self) -> Result<()>;
    /// The highest transaction number at and below which every transaction is durable.
    fn last_committed(&self) -> u64;
    /// File system usage.
    async fn statfs(&self) -> Result<StatFs>;

    /// Attributes of an object.
    async fn attr_get(&self, fid: &LuFid) -> Result<Attr>;
    /// Whether an object exists.
    async fn exists(&self, fid: &LuFid) -> bool {
        self.attr_get(fid).await.is_ok()
    }
    /// Object types.
    async fn obj_type(&self, fid: &LuFid) -> Result<ObjType>;
    /// Creates an object of type `ty` with attributes `attr` (the type bits of the mode are
    /// set from `ty`).
    async fn create(&self, th: &mut Txn, fid: &LuFid, ty: ObjType, attr: &Attr) -> Result<()>;
    /// Destroys an object, its body or index and its xattrs.
    async fn destroy(&self, th: &mut Txn, fid: &LuFid) -> Result<()>;
    /// Sets the attributes selected by `mask` (size is an attribute only: punch frees).
    async fn attr_set(&self, th: &mut Txn, fid: &LuFid, mask: AttrMask, attr: &Attr) -> Result<()>;
    /// Increments nlink.
    async fn ref_add(&self, th: &mut Txn, fid: &LuFid) -> Result<()>;
    /// Decrements nlink.
    async fn ref_del(&self, th: &mut Txn, fid: &LuFid) -> Result<()>;

    /// Copies xattr `name` into `buf` and returns its length; with an empty `buf` returns the
    /// length only. ENODATA if absent, ERANGE if `buf` is too small.
    async fn xattr_get(&self, fid: &LuFid, name: &[u8], buf: &mut [u8]) -> Result<usize>;
    /// The names of all xattrs.
    async fn xattr_list(&self, fid: &LuFid) -> Result<Vec<Vec<u8>>>;
    /// Sets an xattr (values up to 64 KiB).
    async fn xattr_set(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()>;
    /// Deletes an xattr (ENODATA if absent).
    async fn xattr_del(&self, th: &mut Txn, fid: &LuFid, name: &[u8]) -> Result<()>;

    /// Reads the body at `off` into the buffers in order; returns the bytes read (short at
    /// the end of the object). Holes read as zeros. Full, block-aligned buffer segments are
    /// read by the device directly into the caller's memory.
    async fn read(&self, fid: &LuFid, off: u64, bufs: &mut [&mut [u8]]) -> Result<usize>;
    /// Writes the buffers in order at `off`; extends the size if the write ends past it.
    async fn write(&self, th: &mut Txn, fid: &LuFid, off: u64, bufs: &[&[u8]]) -> Result<usize>;
    /// Deallocates `start..end` (`u64::MAX` for the end of the object); the range reads as
    /// zeros afterwards. The size is not changed.
    async fn punch(&self, th: &mut Txn, fid: &LuFid, start: u64, end: u64) -> Result<()>;

    /// Looks a key up in an index (ENOENT if absent).
    async fn index_lookup(&self, fid: &LuFid, key: &[u8]) -> Result<Vec<u8>>;
    /// Inserts a key (EEXIST if present).
    async fn index_insert(&self, th: &mut Txn, fid: &LuFid, key: &[u8], value: &[u8])
    -> Result<()>;
    /// Deletes a key (ENOENT if absent).
    async fn index_delete(&self, th: &mut Txn, fid: &LuFid, key: &[u8]) -> Result<()>;
    /// Up to about `max` entries with cookie >= `cookie` (entries sharing a cookie are never
    /// split across pages), and the cookie to continue from.
    async fn index_iter(&self, fid: &LuFid, cookie: u64, max: usize) -> Result<IndexPage>;
    /// Object index iteration: up to `max` FIDs after `after` in FID order.
    async fn objects(&self, after: Option<LuFid>, max: usize) -> Result<Vec<LuFid>>;
}

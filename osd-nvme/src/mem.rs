//! The memory OSD (Lustre's in-memory OSD idea): the full API over objects held in memory.
//! Used by tests (as the reference model of the persistent OSD) and to run the appliance
//! without storage. "Durable" means "stopped": commit callbacks fire at `trans_stop`.

use std::cell::{Cell, RefCell};

use proto::fid::LuFid;

use crate::api::{Osd, Txn, TxnState};
use crate::error::{OsdError, Result};
use crate::seg::{by_block, segments};
use crate::store::{Rec, Store};
use crate::types::{
    Attr, AttrMask, BLOCK, BLOCK_SIZE, IndexPage, MAX_OBJECT_BYTES, NAME_MAX, ObjType, StatFs,
    XattrMode,
};

type Block = Box<[u8]>;

/// The memory OSD. `capacity` bounds the bytes it holds (data blocks plus metadata).
#[derive(Debug)]
pub struct MemOsd {
    store: RefCell<Store<Block>>,
    capacity: u64,
    next_txn: Cell<u64>,
    reserved: Cell<u64>,
    /// One shard's: `!Send`, like the persistent OSD.
    _shard: core::marker::PhantomData<std::rc::Rc<()>>,
}

impl MemOsd {
    /// A memory OSD holding at most `capacity` bytes.
    #[must_use]
    pub fn new(capacity: u64) -> MemOsd {
        MemOsd {
            store: RefCell::new(Store::default()),
            capacity,
            next_txn: Cell::new(1),
            reserved: Cell::new(0),
            _shard: core::marker::PhantomData,
        }
    }

    fn used(&self) -> u64 {
        let s = self.store.borrow();
        s.mem_bytes + s.objs.values().map(|o| o.body.len() as u64).sum::<u64>() * BLOCK
    }

    fn check(th: &Txn) -> Result<()> {
        if th.state != TxnState::Started {
            return Err(OsdError::Invalid("transaction not started"));
        }
        Ok(())
    }

    fn apply(&self, th: &mut Txn, rec: Rec<Block>) -> Result<()> {
        self.store.borrow_mut().apply(rec)?;
        th.nrecs += 1;
        Ok(())
    }
}

impl Osd for MemOsd {
    async fn trans_start(&self, th: &mut Txn) -> Result<()> {
        if th.state != TxnState::Declaring {
            return Err(OsdError::Invalid("transaction already started"));
        }
        let need = th.decl.blocks * BLOCK + th.decl.meta * 2;
        if self.used() + self.reserved.get() + need > self.capacity {
            return Err(OsdError::NoSpace("memory OSD capacity"));
        }
        self.reserved.set(self.reserved.get() + need);
        th.reserved.blocks = need;
        th.transno = self.next_txn.get();
        self.next_txn.set(th.transno + 1);
        th.state = TxnState::Started;
        Ok(())
    }

    async fn trans_stop(&self, mut th: Txn) -> Result<u64> {
        Self::check(&th)?;
        self.reserved.set(self.reserved.get().saturating_sub(th.reserved.blocks));
        th.state = TxnState::Stopped;
        for cb in th.callbacks.drain(..) {
            cb(th.transno);
        }
        Ok(th.transno)
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn last_committed(&self) -> u64 {
        self.next_txn.get() - 1
    }

    async fn statfs(&self) -> Result<StatFs> {
        let blocks = self.capacity / BLOCK;
        let used = self.used().div_ceil(BLOCK);
        let bfree = blocks.saturating_sub(used);
        let objs = self.store.borrow().objs.len() as u64;
        let files = self.capacity / 1024;
        Ok(StatFs {
            blocks,
            bfree,
            bavail: bfree.saturating_sub(self.reserved.get() / BLOCK),
            files,
            ffree: files.saturating_sub(objs),
            bsize: 4096,
            namelen: NAME_MAX as u32,
            maxbytes: MAX_OBJECT_BYTES,
        })
    }

    async fn attr_get(&self, fid: &LuFid) -> Result<Attr> {
        self.store.borrow().attr_get(fid)
    }

    async fn obj_type(&self, fid: &LuFid) -> Result<ObjType> {
        Ok(self.store.borrow().get(fid)?.ty)
    }

    async fn create(&self, th: &mut Txn, fid: &LuFid, ty: ObjType, attr: &Attr) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_create(*fid, ty, attr)?;
        self.apply(th, rec)
    }

    async fn destroy(&self, th: &mut Txn, fid: &LuFid) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_destroy(*fid)?;
        self.apply(th, rec)
    }

    async fn attr_set(&self, th: &mut Txn, fid: &LuFid, mask: AttrMask, attr: &Attr) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_attr_set(*fid, mask, attr)?;
        self.apply(th, rec)
    }

    async fn ref_add(&self, th: &mut Txn, fid: &LuFid) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_ref(*fid, true)?;
        self.apply(th, rec)
    }

    async fn ref_del(&self, th: &mut Txn, fid: &LuFid) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_ref(*fid, false)?;
        self.apply(th, rec)
    }

    async fn xattr_get(&self, fid: &LuFid, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        let s = self.store.borrow();
        let v = s.xattr_get(fid, name)?;
        copy_value(v, buf)
    }

    async fn xattr_list(&self, fid: &LuFid) -> Result<Vec<Vec<u8>>> {
        Ok(self.store.borrow().get(fid)?.xattrs.keys().cloned().collect())
    }

    async fn xattr_set(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_xattr_set(*fid, name, value, mode)?;
        self.apply(th, rec)
    }

    async fn xattr_del(&self, th: &mut Txn, fid: &LuFid, name: &[u8]) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_xattr_del(*fid, name)?;
        self.apply(th, rec)
    }

    async fn read(&self, fid: &LuFid, off: u64, bufs: &mut [&mut [u8]]) -> Result<usize> {
        let s = self.store.borrow();
        let o = s.body_obj(fid, "read")?;
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let n = total.min(o.attr.size.saturating_sub(off));
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        for seg in segments(off, &lens, n) {
            let dst = &mut bufs[seg.buf][seg.bpos..seg.bpos + seg.len];
            match o.body.get(&seg.lblk) {
                Some(b) => dst.copy_from_slice(&b[seg.boff..seg.boff + seg.len]),
                None => dst.fill(0),
            }
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn write(&self, th: &mut Txn, fid: &LuFid, off: u64, bufs: &[&[u8]]) -> Result<usize> {
        Self::check(th)?;
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let end = off.checked_add(total).filter(|&e| e <= MAX_OBJECT_BYTES);
        let end = end.ok_or(OsdError::Invalid("write beyond the largest object size"))?;
        if total == 0 {
            return Ok(0);
        }
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        let segs = segments(off, &lens, total);
        let rec = {
            let s = self.store.borrow();
            let o = s.body_obj(fid, "write")?;
            let mut blocks = Vec::new();
            for (lblk, r) in by_block(&segs) {
                let mut blk: Block = match o.body.get(&lblk) {
                    Some(b) => b.clone(),
                    None => vec![0u8; BLOCK_SIZE].into_boxed_slice(),
                };
                for seg in &segs[r] {
                    blk[seg.boff..seg.boff + seg.len]
                        .copy_from_slice(&bufs[seg.buf][seg.bpos..seg.bpos + seg.len]);
                }
                blocks.push(blk);
            }
            Rec::Map { fid: *fid, lblk: off / BLOCK, blocks, size: end }
        };
        self.apply(th, rec)?;
        Ok(usize::try_from(total).unwrap_or(usize::MAX))
    }

    async fn punch(&self, th: &mut Txn, fid: &LuFid, start: u64, end: u64) -> Result<()> {
        Self::check(th)?;
        if end <= start {
            return Ok(());
        }
        let recs = {
            let s = self.store.borrow();
            let o = s.body_obj(fid, "punch")?;
            punch_plan(
                start,
                end,
                |lblk| o.body.get(&lblk).cloned(),
                |b, from, to| {
                    let mut b = b;
                    b[from..to].fill(0);
                    b
                },
            )
            .into_iter()
            .map(|p| match p {
                PunchStep::Rewrite(lblk, b) => {
                    Rec::Map { fid: *fid, lblk, blocks: vec![b], size: 0 }
                }
                PunchStep::Unmap(from, to) => Rec::Unmap { fid: *fid, from, to },
            })
            .collect::<Vec<_>>()
        };
        for rec in recs {
            self.apply(th, rec)?;
        }
        Ok(())
    }

    async fn index_lookup(&self, fid: &LuFid, key: &[u8]) -> Result<Vec<u8>> {
        Ok(self.store.borrow().index_lookup(fid, key)?.to_vec())
    }

    async fn index_insert(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_index_insert(*fid, key, value)?;
        self.apply(th, rec)
    }

    async fn index_delete(&self, th: &mut Txn, fid: &LuFid, key: &[u8]) -> Result<()> {
        Self::check(th)?;
        let rec = self.store.borrow().prep_index_delete(*fid, key)?;
        self.apply(th, rec)
    }

    async fn index_iter(&self, fid: &LuFid, cookie: u64, max: usize) -> Result<IndexPage> {
        self.store.borrow().index_iter(fid, cookie, max)
    }

    async fn objects(&self, after: Option<LuFid>, max: usize) -> Result<Vec<LuFid>> {
        Ok(objects_after(&self.store.borrow(), after, max))
    }
}

/// Copies a value into a caller buffer with xattr_get semantics.
pub(crate) fn copy_value(v: &[u8], buf: &mut [u8]) -> Result<usize> {
    if buf.is_empty() {
        return Ok(v.len());
    }
    let dst = buf.get_mut(..v.len()).ok_or(OsdError::Range { need: v.len() })?;
    dst.copy_from_slice(v);
    Ok(v.len())
}

pub(crate) fn objects_after<B: crate::store::BodyBlock>(
    s: &Store<B>,
    after: Option<LuFid>,
    max: usize,
) -> Vec<LuFid> {
    use std::ops::Bound;
    let lo = after.map_or(Bound::Unbounded, Bound::Excluded);
    s.objs.range((lo, Bound::Unbounded)).take(max).map(|(f, _)| *f).collect()
}

/// A step of a punch.
pub(crate) enum PunchStep<B> {
    /// Replace a partially punched block by this (zeroed in the punched part).
    Rewrite(u64, B),
    /// Unmap whole blocks `from..to`.
    Unmap(u64, u64),
}

/// Plans a punch of `start..end`: partial end blocks that are mapped are rewritten with the
/// punched bytes zeroed (`zero(block, from, to)`), whole blocks are unmapped.
pub(crate) fn punch_plan<B>(
    start: u64,
    end: u64,
    get: impl Fn(u64) -> Option<B>,
    zero: impl Fn(B, usize, usize) -> B,
) -> Vec<PunchStep<B>> {
    let mut steps = Vec::new();
    let first_full = start.div_ceil(BLOCK);
    let end_full = if end == u64::MAX { u64::MAX } else { end / BLOCK };
    let head = start / BLOCK;
    let boff = |x: u64| usize::try_from(x % BLOCK).unwrap_or(0);
    if !start.is_multiple_of(BLOCK) {
        // The head block is partial; it may also be the tail block.
        let to = if end != u64::MAX && end / BLOCK == head { boff(end) } else { BLOCK_SIZE };
        if let Some(b) = get(head) {
            steps.push(PunchStep::Rewrite(head, zero(b, boff(start), to)));
        }
    }
    if end != u64::MAX && !end.is_multiple_of(BLOCK) && end / BLOCK != head {
        let tail = end / BLOCK;
        if let Some(b) = get(tail) {
            steps.push(PunchStep::Rewrite(tail, zero(b, 0, boff(end))));
        }
    } else if end != u64::MAX && !end.is_multiple_of(BLOCK) && start.is_multiple_of(BLOCK) {
        // start aligned, end inside the same block as start.
        if let Some(b) = get(head) {
            steps.push(PunchStep::Rewrite(head, zero(b, 0, boff(end))));
        }
    }
    if first_full < end_full {
        steps.push(PunchStep::Unmap(first_full, end_full));
    }
    steps
}

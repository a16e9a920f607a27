//! The persistent OSD: one instance per shard, on its own region of a block device, with
//! its own allocator, journal and checkpoints.
//!
//! * Metadata (object index, attributes, xattrs, extent maps, index objects) lives in memory
//!   as a `Store` (the object model both OSDs share), bounded by the configured cache size,
//!   and on disk as a checkpoint image plus the journal of redo records since that image.
//! * Data is never overwritten in place: a write goes to newly allocated blocks whose crc32c
//!   lands in the extent map; the old blocks are released once the transaction that replaced
//!   them is durable. So a crash always finds either the old or the new block, both intact.
//! * A group commit writes the journal records of all stopped transactions (one commit record
//!   per transaction) and flushes once, which makes the batch and the data it maps durable;
//!   then the commit callbacks fire. Replay checks the data of the newest batch, the only one
//!   whose flush may not have finished. An idle committer seals the tail with an empty block so
//!   that damage to the newest batch is detected.
//! * When the journal is half full a checkpoint writes the whole image to the inactive slot
//!   (flush, then its header, flush) and the journal before it is reused.

pub mod format;

mod alloc;
pub(crate) mod extent;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;
use std::time::Duration;

use proto::fid::LuFid;

use crate::api::{CommitCb, Declared, Osd, Txn, TxnState};
use crate::buf::IoBuf;
use crate::dev::{BlockDev, IoOp};
use crate::error::{OsdError, Result};
use crate::mem::{PunchStep, copy_value, objects_after, punch_plan};
use crate::seg::{Seg, by_block, segments};
use crate::store::{BodyMap, Growth, Rec, Store, meta_growth};
use crate::types::{
    Attr, AttrMask, BLOCK, BLOCK_SIZE, IndexPage, MAX_OBJECT_BYTES, NAME_MAX, ObjType, StatFs,
    XattrMode,
};
use crate::util::Event;
use alloc::Alloc;
use format::{
    BlockFault, BlockHdr, BlockRef, CKPT_MAGIC, CkptHdr, HDR_LEN, JOURNAL_MAGIC, JRec, PAYLOAD,
    STREAMS, Stream, Superblock, decode_rec, decode_streams, encode_obj, encode_rec, open_block,
    rec_len, seal,
};

/// Upper bound of memory bytes per checkpoint byte of metadata (an empty xattr or index
/// entry: 96 bytes in memory for 30 on disk), for cache-budget reservations.
const MEM_PER_META: u64 = 4;

/// Run-time settings of a persistent OSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsdConfig {
    /// Memory budget of the metadata held in memory (objects, xattrs, extent maps, index
    /// entries), in bytes. Updates beyond it fail with ENOSPC at transaction start.
    pub cache_size: u64,
    /// A `trans_stop` that leaves at least this many journal bytes unwritten commits them
    /// itself (back-pressure when no committer task runs).
    pub commit_bytes: usize,
}

impl Default for OsdConfig {
    fn default() -> Self {
        OsdConfig { cache_size: 256 << 20, commit_bytes: 1 << 20 }
    }
}

/// How to lay a new OSD out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatOptions {
    /// Journal blocks (default: 1/32 of the region, 32..16384).
    pub journal_blocks: Option<u64>,
    /// Blocks per checkpoint slot (default: 1/32 of the region, 16..65536).
    pub ckpt_blocks: Option<u64>,
    /// UUID (default: random).
    pub uuid: Option<[u8; 16]>,
    /// Shard index.
    pub shard: u32,
}

/// A shard's region of the device, in bytes (4 KiB aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Start.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

impl Region {
    /// The whole device.
    pub fn whole(dev: &impl BlockDev) -> Region {
        Region { offset: 0, len: dev.info().size & !(BLOCK - 1) }
    }
    /// The `i`th of `n` equal regions of the device.
    pub fn shard(dev: &impl BlockDev, i: u64, n: u64) -> Region {
        let each = (dev.info().size / n.max(1)) & !(BLOCK - 1);
        Region { offset: each * i, len: each }
    }
}

struct Stopped {
    transno: u64,
    callbacks: Vec<CommitCb>,
    freed: Vec<u64>,
    journal: u64,
}

impl core::fmt::Debug for Stopped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stopped").field("transno", &self.transno).finish()
    }
}

#[derive(Debug)]
struct State {
    store: Store<BlockRef>,
    alloc: Alloc,
    /// Reserved by running transactions and not yet used.
    res: Declared,
    running: u32,
    next_txn: u64,
    /// Started or stopped, not yet durable.
    outstanding: BTreeSet<u64>,
    jhead: u64,
    jtail: u64,
    jbuf: Vec<u8>,
    jstopped: Vec<Stopped>,
    committing: bool,
    stops: u64,
    durable_stops: u64,
    /// New transactions wait while a checkpoint takes its snapshot.
    gate: bool,
    ckpt_running: bool,
    ckpt_wanted: bool,
    /// Slot (0 = A, 1 = B) and generation of the newest durable checkpoint.
    active_slot: u8,
    generation: u64,
    last_ckpt_txn: u64,
    /// Whether a flushed block follows the newest journal batch (see `seal_tail`).
    tail_sealed: bool,
    failed: bool,
}

struct Inner<D> {
    dev: D,
    base: u64,
    sb: Superblock,
    fsid: u64,
    cfg: OsdConfig,
    meta_cap: u64,
    st: RefCell<State>,
    ev: Event,
}

/// The persistent OSD. Cloning gives another handle to the same instance (for a committer
/// task); it is `!Send`.
pub struct DiskOsd<D: BlockDev> {
    inner: Rc<Inner<D>>,
}

impl<D: BlockDev> Clone for DiskOsd<D> {
    fn clone(&self) -> Self {
        DiskOsd { inner: self.inner.clone() }
    }
}

impl<D: BlockDev> Drop for DiskOsd<D> {
    fn drop(&mut self) {
        // Wakes a committer task so that it notices it is the last handle.
        self.inner.ev.notify();
    }
}

impl<D: BlockDev> core::fmt::Debug for DiskOsd<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let st = self.inner.st.borrow();
        f.debug_struct("DiskOsd")
            .field("shard", &self.inner.sb.shard)
            .field("objects", &st.store.objs.len())
            .field("jhead", &st.jhead)
            .field("jtail", &st.jtail)
            .finish()
    }
}

/// Undoes a piece of in-flight work if its future is dropped before it finished (a request
/// task cancelled while it awaited I/O): the closure runs on drop unless disarmed.
struct OnCancel<'a> {
    st: &'a RefCell<State>,
    ev: &'a Event,
    undo: Option<Undo<'a>>,
}

type Undo<'a> = Box<dyn FnOnce(&mut State) + 'a>;

impl<'a> OnCancel<'a> {
    fn new(st: &'a RefCell<State>, ev: &'a Event, undo: impl FnOnce(&mut State) + 'a) -> Self {
        OnCancel { st, ev, undo: Some(Box::new(undo)) }
    }
    fn disarm(&mut self) {
        self.undo = None;
    }
}

impl Drop for OnCancel<'_> {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take()
            && let Ok(mut st) = self.st.try_borrow_mut()
        {
            undo(&mut st);
            drop(st);
            self.ev.notify();
        }
    }
}

/// What mount (and fsck) read from disk.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) sb: Superblock,
    pub(crate) store: Store<BlockRef>,
    pub(crate) alloc: Alloc,
    pub(crate) hdr: CkptHdr,
    pub(crate) active_slot: u8,
    pub(crate) replay: Replay,
}

/// The outcome of a journal scan.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// First sequence number after the valid journal.
    pub(crate) end_seq: u64,
    /// Committed transactions replayed.
    pub(crate) txns: u64,
    /// Highest transaction number seen.
    pub(crate) max_txn: u64,
    /// Whether the journal ended in a torn or partial batch.
    pub(crate) torn_tail: bool,
}

fn io_off(base: u64, blk: u64) -> u64 {
    base + blk * BLOCK
}

/// Reads `n` blocks at region block `blk`.
async fn read_blocks(dev: &impl BlockDev, base: u64, blk: u64, n: u64) -> Result<IoBuf> {
    let len = usize::try_from(n * BLOCK).map_err(|_| OsdError::Invalid("read too large"))?;
    let mut buf = IoBuf::new(len);
    // Large reads go in 1 MiB pieces submitted together.
    let mut ops: Vec<IoOp<'_>> = buf
        .chunks_mut(1 << 20)
        .enumerate()
        .map(|(i, c)| IoOp::Read { off: io_off(base, blk) + (i as u64) * (1 << 20), buf: c })
        .collect();
    dev.submit(&mut ops).await?;
    drop(ops);
    Ok(buf)
}

async fn write_blocks(dev: &impl BlockDev, base: u64, blk: u64, data: &[u8]) -> Result<()> {
    let mut ops: Vec<IoOp<'_>> = data
        .chunks(1 << 20)
        .enumerate()
        .map(|(i, c)| IoOp::Write { off: io_off(base, blk) + (i as u64) * (1 << 20), buf: c })
        .collect();
    dev.submit(&mut ops).await
}

/// Metadata bytes a checkpoint slot holds.
fn meta_capacity(sb: &Superblock, bitmap_len: u64) -> u64 {
    (sb.ckpt_blocks.saturating_sub(1 + STREAMS.len() as u64) * PAYLOAD as u64)
        .saturating_sub(bitmap_len)
}

/// Builds the blocks of a checkpoint image: `(header fields, stream blocks)`.
fn build_ckpt(
    store: &Store<BlockRef>,
    alloc: &Alloc,
    fsid: u64,
    generation: u64,
    slot_blocks: u64,
) -> Result<(CkptHdr, IoBuf)> {
    let mut streams: [Vec<u8>; 5] = Default::default();
    for (fid, o) in &store.objs {
        encode_obj(&mut streams, fid, o);
    }
    streams[4] = alloc.to_bytes();
    let nblocks: u64 = streams.iter().map(|s| s.len().div_ceil(PAYLOAD) as u64).sum();
    if 1 + nblocks > slot_blocks {
        return Err(OsdError::NoSpace("checkpoint slot"));
    }
    let mut img = IoBuf::new(usize::try_from(nblocks * BLOCK).unwrap_or(0));
    let mut hdr = CkptHdr { generation, ..CkptHdr::default() };
    let mut at = 1u64; // block 0 of the slot is the header
    let mut pos = 0usize;
    for (i, s) in STREAMS.iter().enumerate() {
        let data = &streams[i];
        let n = data.len().div_ceil(PAYLOAD);
        hdr.streams[i] = (at as u32, n as u32, data.len() as u64);
        for (j, chunk) in data.chunks(PAYLOAD).enumerate() {
            let b = &mut img[pos..pos + BLOCK_SIZE];
            b[HDR_LEN..HDR_LEN + chunk.len()].copy_from_slice(chunk);
            seal(
                b,
                &BlockHdr {
                    magic: CKPT_MAGIC,
                    kind: *s as u8,
                    fsid,
                    seq: generation,
                    aux: j as u64,
                    used: chunk.len() as u32,
                },
            );
            pos += BLOCK_SIZE;
        }
        at += n as u64;
    }
    Ok((hdr, img))
}

/// Reads and verifies the checkpoint in `slot`; returns the decoded objects and allocator.
pub(crate) async fn load_ckpt(
    dev: &impl BlockDev,
    base: u64,
    sb: &Superblock,
    hdr: &CkptHdr,
    slot: u8,
) -> Result<(Store<BlockRef>, Alloc)> {
    let start = if slot == 0 { sb.ckpt_a } else { sb.ckpt_b };
    // Only the blocks the image uses: memory stays proportional to the metadata.
    let used = hdr.streams.iter().map(|&(first, n, _)| u64::from(first) + u64::from(n)).max();
    let img = read_blocks(dev, base, start, used.unwrap_or(1).min(sb.ckpt_blocks)).await?;
    let fsid = sb.fsid();
    let mut streams: [Vec<u8>; 5] = Default::default();
    for (i, s) in STREAMS.iter().enumerate() {
        let (first, n, bytes) = hdr.streams[i];
        for j in 0..n {
            let bi = usize::try_from(first + j).unwrap_or(usize::MAX);
            let b = img.get(bi * BLOCK_SIZE..(bi + 1) * BLOCK_SIZE).unwrap_or_default();
            let what = s.name();
            let h = open_block(b, CKPT_MAGIC, fsid).map_err(|f| {
                OsdError::corrupt(what, format!("slot {} block {}: {f:?}", slot_name(slot), bi))
            })?;
            if h.kind != *s as u8 || h.seq != hdr.generation || h.aux != u64::from(j) {
                return Err(OsdError::corrupt(
                    what,
                    format!("slot {} block {bi}: misplaced block", slot_name(slot)),
                ));
            }
            streams[i].extend_from_slice(&b[HDR_LEN..HDR_LEN + h.used as usize]);
        }
        if streams[i].len() as u64 != bytes {
            return Err(OsdError::corrupt(s.name(), "stream length mismatch"));
        }
    }
    let store = decode_streams(&streams)?;
    let alloc = Alloc::from_bytes(sb.data_blocks, &streams[4])?;
    // Every mapped block is allocated exactly once; every allocated block is mapped.
    let mut seen = Alloc::new(sb.data_blocks);
    for (fid, o) in &store.objs {
        for (l, r) in o.body.blocks_iter() {
            if seen.mark_used(r.pblk).is_err() {
                return Err(OsdError::corrupt(
                    Stream::Extents.name(),
                    format!("block {} of {fid} lblk {l} mapped twice or out of range", r.pblk),
                ));
            }
            if !alloc.is_used(r.pblk) {
                return Err(OsdError::corrupt(
                    Stream::Bitmap.name(),
                    format!("block {} of {fid} is marked free", r.pblk),
                ));
            }
        }
    }
    if seen != alloc {
        return Err(OsdError::corrupt(Stream::Bitmap.name(), "allocated blocks not in any map"));
    }
    Ok((store, alloc))
}

pub(crate) fn slot_name(slot: u8) -> &'static str {
    if slot == 0 { "A" } else { "B" }
}

/// Reads the superblock and both checkpoint headers. Returns `(sb, headers)`.
pub(crate) async fn read_headers(
    dev: &impl BlockDev,
    region: Region,
) -> Result<(Superblock, [core::result::Result<CkptHdr, BlockFault>; 2])> {
    let info = dev.info();
    if region.offset.checked_add(BLOCK).is_none_or(|e| e > info.size) {
        return Err(OsdError::corrupt("superblock", "device smaller than one block"));
    }
    let avail = region.len.min(info.size - region.offset) / BLOCK;
    let b0 = read_blocks(dev, region.offset, 0, 1).await?;
    let sb = Superblock::decode(&b0, avail)?;
    let fsid = sb.fsid();
    let ha = read_blocks(dev, region.offset, sb.ckpt_a, 1).await?;
    let hb = read_blocks(dev, region.offset, sb.ckpt_b, 1).await?;
    Ok((
        sb,
        [CkptHdr::decode(&ha, fsid, sb.ckpt_blocks), CkptHdr::decode(&hb, fsid, sb.ckpt_blocks)],
    ))
}

/// Scans the journal from `hdr.journal_seq`, applying committed transactions to `store` and
/// `alloc`. Distinguishes a torn tail (normal after a crash) from damage to a block that a
/// later batch proves was durable.
pub(crate) async fn replay_journal(
    dev: &impl BlockDev,
    base: u64,
    sb: &Superblock,
    hdr: &CkptHdr,
    store: &mut Store<BlockRef>,
    alloc: &mut Alloc,
) -> Result<Replay> {
    let j = sb.journal_blocks;
    let fsid = sb.fsid();
    let mut ring =
        RingReader { base, start: sb.journal_start, j, first: u64::MAX, chunk: IoBuf::new(0) };
    let mut bytes = Vec::new();
    let mut seq = hdr.journal_seq;
    // (first sequence number, first byte) of the newest batch read.
    let mut last_batch: Option<(u64, usize)> = None;
    while seq - hdr.journal_seq < j {
        let b = ring.block(dev, seq % j).await?;
        match open_block(b, JOURNAL_MAGIC, fsid) {
            Ok(h) if h.seq == seq => {
                if last_batch.is_none_or(|(first, _)| first != h.aux) {
                    last_batch = Some((h.aux, bytes.len()));
                }
                bytes.extend_from_slice(&b[HDR_LEN..HDR_LEN + h.used as usize]);
                seq += 1;
            }
            _ => break,
        }
    }
    let end_seq = seq;
    // A valid block of a later batch means the journal was durable past end_seq: damage to a
    // journal block, or a newer checkpoint whose header is lost.
    for slot in 0..j {
        let b = ring.block(dev, slot).await?;
        if let Ok(h) = open_block(b, JOURNAL_MAGIC, fsid)
            && h.seq > end_seq
            && h.aux > end_seq
        {
            return Err(OsdError::corrupt(
                "journal block",
                format!(
                    "block seq {end_seq} (ring slot {}) is unreadable but batch {} follows it",
                    end_seq % j,
                    h.aux
                ),
            ));
        }
    }
    let mut recs = Vec::new();
    let mut committed = HashSet::new();
    let mut in_last_batch = HashSet::new();
    let last_start = match last_batch {
        Some((_, start)) if start < bytes.len() => start,
        // No batch, or the newest is an empty seal block: every batch was flushed.
        _ => usize::MAX,
    };
    let mut pos = 0usize;
    let mut out = Replay { end_seq, ..Replay::default() };
    while pos < bytes.len() {
        match decode_rec(&bytes[pos..])? {
            None => {
                out.torn_tail = true;
                break;
            }
            Some((r, len)) => {
                match r {
                    JRec::Commit(t, _) => {
                        committed.insert(t);
                        if pos >= last_start {
                            in_last_batch.insert(t);
                        }
                    }
                    JRec::Op(t, rec) => recs.push((t, rec)),
                }
                pos += len;
            }
        }
    }
    // The newest batch shared its flush with the data it points at: if the power failed
    // before that flush ended, the batch may be on disk without all of its data. No one was
    // told it committed, so it is dropped unless every data block it maps is intact.
    if !in_last_batch.is_empty() {
        let blocks: Vec<BlockRef> = recs
            .iter()
            .filter(|(t, _)| in_last_batch.contains(t))
            .filter_map(|(_, r)| if let Rec::Map { blocks, .. } = r { Some(blocks) } else { None })
            .flatten()
            .copied()
            .collect();
        if !data_intact(dev, base, sb, &blocks).await? {
            for t in &in_last_batch {
                committed.remove(t);
            }
            out.torn_tail = true;
        }
    }
    for (t, rec) in recs {
        out.max_txn = out.max_txn.max(t);
        if !committed.contains(&t) {
            out.torn_tail = true;
            continue;
        }
        if let Rec::Map { blocks, .. } = &rec {
            for b in blocks {
                alloc.mark_used(b.pblk)?;
            }
        }
        for b in store.apply(rec)? {
            alloc.release(b.pblk)?;
        }
    }
    out.txns = committed.len() as u64;
    out.max_txn = out.max_txn.max(committed.iter().copied().max().unwrap_or(0));
    Ok(out)
}

/// Whether every block holds the bytes its crc32c says.
async fn data_intact(
    dev: &impl BlockDev,
    base: u64,
    sb: &Superblock,
    blocks: &[BlockRef],
) -> Result<bool> {
    let mut buf = IoBuf::new(BLOCK_SIZE);
    for b in blocks {
        if b.pblk >= sb.data_blocks {
            return Ok(false);
        }
        let off = io_off(base, sb.data_start + b.pblk);
        dev.submit(&mut [IoOp::Read { off, buf: &mut buf[..] }]).await?;
        if crc32c::crc32c(&buf) != b.crc {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads the journal ring in 1 MiB chunks, so that a scan holds one chunk, not the ring.
struct RingReader {
    base: u64,
    start: u64,
    j: u64,
    first: u64,
    chunk: IoBuf,
}

impl RingReader {
    const CHUNK: u64 = 256;

    async fn block(&mut self, dev: &impl BlockDev, slot: u64) -> Result<&[u8]> {
        let n = (self.chunk.len() / BLOCK_SIZE) as u64;
        if self.first == u64::MAX || slot < self.first || slot >= self.first + n {
            let first = slot - slot % Self::CHUNK;
            let n = Self::CHUNK.min(self.j - first);
            self.chunk = read_blocks(dev, self.base, self.start + first, n).await?;
            self.first = first;
        }
        let i = usize::try_from(slot - self.first).unwrap_or(0);
        Ok(&self.chunk[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE])
    }
}

/// Reads everything mount needs: superblock, newest valid checkpoint, journal replayed.
pub(crate) async fn load(dev: &impl BlockDev, region: Region) -> Result<Loaded> {
    let (sb, hdrs) = read_headers(dev, region).await?;
    let (slot, hdr) = match (&hdrs[0], &hdrs[1]) {
        (Ok(a), Ok(b)) => {
            if a.generation >= b.generation {
                (0u8, *a)
            } else {
                (1, *b)
            }
        }
        (Ok(a), Err(_)) => (0, *a),
        (Err(_), Ok(b)) => (1, *b),
        (Err(a), Err(b)) => {
            return Err(OsdError::corrupt(
                "checkpoint header",
                format!("no valid checkpoint (A: {a:?}, B: {b:?})"),
            ));
        }
    };
    let (mut store, mut alloc) = load_ckpt(dev, region.offset, &sb, &hdr, slot).await?;
    let replay = replay_journal(dev, region.offset, &sb, &hdr, &mut store, &mut alloc).await?;
    Ok(Loaded { sb, store, alloc, hdr, active_slot: slot, replay })
}

impl<D: BlockDev> DiskOsd<D> {
    /// Formats `region` of `dev`: superblock and an empty checkpoint in both slots.
    pub async fn format(dev: &D, region: Region, opts: FormatOptions) -> Result<Superblock> {
        let info = dev.info();
        if !region.offset.is_multiple_of(BLOCK) || region.offset + region.len > info.size {
            return Err(OsdError::Invalid("region outside the device or unaligned"));
        }
        let uuid = opts.uuid.unwrap_or_else(rand::random);
        let sb = Superblock::layout(
            region.len / BLOCK,
            opts.journal_blocks,
            opts.ckpt_blocks,
            uuid,
            opts.shard,
        )?;
        let fsid = sb.fsid();
        // Journal: zero it so no block of an earlier format can look live.
        let zeros = vec![0u8; usize::try_from(sb.journal_blocks * BLOCK).unwrap_or(0)];
        write_blocks(dev, region.offset, sb.journal_start, &zeros).await?;
        let store = Store::default();
        let alloc = Alloc::new(sb.data_blocks);
        for (slot, generation) in [(1u8, 1u64), (0, 2)] {
            let start = if slot == 0 { sb.ckpt_a } else { sb.ckpt_b };
            let (mut hdr, img) = build_ckpt(&store, &alloc, fsid, generation, sb.ckpt_blocks)?;
            hdr.journal_seq = sb.journal_blocks; // start past every zeroed slot
            write_blocks(dev, region.offset, start + 1, &img).await?;
            write_blocks(dev, region.offset, start, &hdr.encode(fsid)).await?;
        }
        dev.flush().await?;
        write_blocks(dev, region.offset, 0, &sb.encode()).await?;
        dev.flush().await?;
        Ok(sb)
    }

    /// Mounts `region` of `dev`: verifies the superblock, loads the newest checkpoint,
    /// replays the journal, and writes a fresh checkpoint so that the journal starts clean.
    pub async fn mount(dev: D, region: Region, cfg: OsdConfig) -> Result<DiskOsd<D>> {
        let l = load(&dev, region).await?;
        let fsid = l.sb.fsid();
        let meta_cap = meta_capacity(&l.sb, l.alloc.bytes_len() as u64);
        let next_txn = l.hdr.last_txn.max(l.replay.max_txn) + 1;
        // Skip a whole ring: blocks of a torn batch past end_seq must never be read again.
        let jseq = l.replay.end_seq + l.sb.journal_blocks;
        let st = State {
            store: l.store,
            alloc: l.alloc,
            res: Declared::default(),
            running: 0,
            next_txn,
            outstanding: BTreeSet::new(),
            jhead: jseq,
            jtail: l.hdr.journal_seq,
            jbuf: Vec::new(),
            jstopped: Vec::new(),
            committing: false,
            stops: 0,
            durable_stops: 0,
            gate: false,
            ckpt_running: false,
            ckpt_wanted: false,
            active_slot: l.active_slot,
            generation: l.hdr.generation,
            last_ckpt_txn: l.hdr.last_txn,
            tail_sealed: true,
            failed: false,
        };
        let osd = DiskOsd {
            inner: Rc::new(Inner {
                dev,
                base: region.offset,
                sb: l.sb,
                fsid,
                cfg,
                meta_cap,
                st: RefCell::new(st),
                ev: Event::default(),
            }),
        };
        osd.checkpoint().await?;
        log::info!(
            "osd shard {}: mounted, {} objects, replayed {} transactions",
            osd.inner.sb.shard,
            osd.inner.st.borrow().store.objs.len(),
            l.replay.txns
        );
        Ok(osd)
    }

    /// Commits everything and writes a checkpoint (a clean unmount: the next mount replays
    /// nothing).
    pub async fn umount(self) -> Result<()> {
        self.sync().await?;
        self.checkpoint().await
    }

    /// The superblock.
    #[must_use]
    pub fn superblock(&self) -> Superblock {
        self.inner.sb
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> &D {
        &self.inner.dev
    }

    /// Estimated memory held by metadata (bounded by `cache_size`).
    #[must_use]
    pub fn cache_used(&self) -> u64 {
        self.inner.st.borrow().store.mem_bytes
    }

    /// Runs group commits until the OSD is dropped by every other handle or fails: spawn it
    /// on the shard's executor so that commit callbacks fire without explicit syncs. Commits
    /// start as soon as a transaction has stopped; batching comes from transactions that stop
    /// while a commit is in flight.
    pub async fn committer(self) {
        self.committer_with(Duration::ZERO, |_| std::future::ready(())).await;
    }

    /// Like [`DiskOsd::committer`], but after the first stopped transaction a commit waits up
    /// to `interval` (through `sleep`, the executor's timer) for more to batch, unless
    /// `commit_bytes` of journal are already pending. Longer intervals mean fewer flushes and
    /// later commit callbacks (Lustre's jbd2 commits every 5 s).
    pub async fn committer_with<F, Fut>(self, interval: Duration, sleep: F)
    where
        F: Fn(Duration) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        loop {
            let g = self.inner.ev.generation();
            let (work, full) = {
                let st = self.inner.st.borrow();
                if st.failed {
                    return;
                }
                (
                    !st.jstopped.is_empty() && !st.committing,
                    st.jbuf.len() >= self.inner.cfg.commit_bytes,
                )
            };
            if work {
                if !interval.is_zero() && !full {
                    sleep(interval).await;
                }
                if self.commit_once().await.is_err() {
                    return;
                }
                continue;
            }
            if self.seal_tail().await.is_err() {
                return;
            }
            if Rc::strong_count(&self.inner) == 1 {
                return;
            }
            if g == self.inner.ev.generation() {
                self.inner.ev.wait(g).await;
            }
        }
    }

    /// Writes and flushes an empty journal block after the newest batch, unless one is
    /// already there. Damage to a batch that a later block follows is detected at replay
    /// (a torn batch never has a successor); without this, damage to the newest batch would
    /// look like a write torn by a power cut and its transactions could be lost unnoticed.
    /// Run when the committer goes idle and at the end of `sync`, so it costs nothing under
    /// load (each batch seals the one before it).
    async fn seal_tail(&self) -> Result<()> {
        let inner = &self.inner;
        let head = {
            let mut st = inner.st.borrow_mut();
            let live = st.jhead - st.jtail;
            if st.tail_sealed || st.committing || st.failed || live + 3 > inner.sb.journal_blocks {
                return if st.failed { Err(OsdError::ReadOnly) } else { Ok(()) };
            }
            st.committing = true;
            st.jhead
        };
        let mut guard = OnCancel::new(&inner.st, &inner.ev, |st| st.committing = false);
        let r = self.write_batch(&[], head, false).await;
        guard.disarm();
        {
            let mut st = inner.st.borrow_mut();
            st.committing = false;
            match &r {
                Ok(()) => {
                    st.jhead = head + 1;
                    st.tail_sealed = true;
                }
                Err(_) => st.failed = true,
            }
        }
        inner.ev.notify();
        r
    }

    fn data_off(&self, pblk: u64) -> u64 {
        io_off(self.inner.base, self.inner.sb.data_start + pblk)
    }

    fn check_txn(&self, th: &Txn) -> Result<()> {
        if th.state != TxnState::Started {
            return Err(OsdError::Invalid("transaction not started"));
        }
        if self.inner.st.borrow().failed {
            return Err(OsdError::ReadOnly);
        }
        Ok(())
    }

    /// Takes `need` from the transaction's reservation, or from free space if it declared too
    /// little; ENOSPC (nothing changed) if neither has it.
    fn consume(&self, st: &mut State, th: &mut Txn, need: Declared) -> Result<()> {
        let jb = self.journal_free_bytes(st);
        let extra = Declared {
            blocks: need.blocks.saturating_sub(th.reserved.blocks),
            meta: need.meta.saturating_sub(th.reserved.meta),
            journal: need.journal.saturating_sub(th.reserved.journal),
        };
        if extra.blocks > st.alloc.free().saturating_sub(st.res.blocks) {
            return Err(OsdError::NoSpace("data blocks"));
        }
        if extra.meta > self.inner.meta_cap.saturating_sub(st.store.meta_bytes + st.res.meta)
            || st.store.mem_bytes + extra.meta * MEM_PER_META > self.inner.cfg.cache_size
        {
            return Err(OsdError::NoSpace("metadata"));
        }
        if extra.journal > jb {
            return Err(OsdError::NoSpace("journal"));
        }
        let take = Declared {
            blocks: need.blocks - extra.blocks,
            meta: need.meta - extra.meta,
            journal: need.journal - extra.journal,
        };
        th.reserved.blocks -= take.blocks;
        th.reserved.meta -= take.meta;
        th.reserved.journal -= take.journal;
        st.res.blocks = st.res.blocks.saturating_sub(take.blocks);
        st.res.meta = st.res.meta.saturating_sub(take.meta);
        st.res.journal = st.res.journal.saturating_sub(take.journal);
        Ok(())
    }

    /// Journal bytes not used or reserved.
    fn journal_free_bytes(&self, st: &State) -> u64 {
        let j = self.inner.sb.journal_blocks;
        let live = st.jhead - st.jtail;
        let slack = 2 + u64::from(st.running);
        let blocks = j.saturating_sub(live + slack);
        (blocks * PAYLOAD as u64).saturating_sub(st.jbuf.len() as u64 + st.res.journal)
    }

    /// Applies a validated record and logs it for transaction `th`.
    fn log_apply(&self, st: &mut State, th: &mut Txn, rec: Rec<BlockRef>) -> Result<()> {
        let len = rec_len(&rec) as u64;
        self.consume(st, th, Declared { blocks: 0, meta: 0, journal: len })?;
        encode_rec(&mut st.jbuf, th.transno, Some(&rec), 0);
        let freed = st.store.apply(rec)?;
        th.freed.extend(freed.into_iter().map(|b| b.pblk));
        th.nrecs += 1;
        Ok(())
    }

    fn meta_op(
        &self,
        th: &mut Txn,
        f: impl FnOnce(&Store<BlockRef>) -> Result<Rec<BlockRef>>,
        growth: u64,
    ) -> Result<()> {
        self.check_txn(th)?;
        let mut st = self.inner.st.borrow_mut();
        let rec = f(&st.store)?;
        self.consume(&mut st, th, Declared { blocks: 0, meta: growth, journal: 0 })?;
        self.log_apply(&mut st, th, rec)
    }

    /// One group commit: data flush, journal batch, flush, callbacks.
    async fn commit_once(&self) -> Result<()> {
        let inner = &self.inner;
        let (buf, txns, flush_data, head) = {
            let mut st = inner.st.borrow_mut();
            if st.committing || st.failed {
                return if st.failed { Err(OsdError::ReadOnly) } else { Ok(()) };
            }
            if st.jstopped.is_empty() {
                return Ok(());
            }
            st.committing = true;
            // One flush covers the batch and the data it maps (replay checks the data of the
            // newest batch, the only one whose flush may not have finished).
            (std::mem::take(&mut st.jbuf), std::mem::take(&mut st.jstopped), false, st.jhead)
        };
        // Dropped mid-write: the batch's fate is unknown and its records left the buffer, so
        // the in-memory state may be ahead of the journal: refuse updates until remounted.
        let mut guard = OnCancel::new(&inner.st, &inner.ev, |st| {
            st.committing = false;
            st.failed = true;
        });
        let res = self.write_batch(&buf, head, flush_data).await;
        guard.disarm();
        let nblocks = buf.len().div_ceil(PAYLOAD) as u64;
        let mut cbs = Vec::new();
        {
            let mut st = inner.st.borrow_mut();
            st.committing = false;
            if let Err(e) = res {
                st.failed = true;
                drop(st);
                inner.ev.notify();
                log::error!("osd shard {}: journal write failed: {e}", inner.sb.shard);
                return Err(e);
            }
            st.jhead += nblocks;
            st.tail_sealed = false;
            for t in txns {
                for b in t.freed {
                    if st.alloc.release(b).is_err() {
                        st.failed = true;
                    }
                }
                st.outstanding.remove(&t.transno);
                st.res.journal = st.res.journal.saturating_sub(t.journal);
                st.durable_stops += 1;
                cbs.push((t.transno, t.callbacks));
            }
            if (st.jhead - st.jtail) * 2 >= inner.sb.journal_blocks {
                st.ckpt_wanted = true;
            }
        }
        inner.ev.notify();
        for (t, v) in cbs {
            for cb in v {
                cb(t);
            }
        }
        Ok(())
    }

    async fn write_batch(&self, buf: &[u8], head: u64, flush_data: bool) -> Result<()> {
        let inner = &self.inner;
        if flush_data {
            inner.dev.flush().await?;
        }
        let n = buf.len().div_ceil(PAYLOAD).max(1);
        let mut img = IoBuf::new(n * BLOCK_SIZE);
        if buf.is_empty() {
            seal(
                &mut img[..BLOCK_SIZE],
                &BlockHdr {
                    magic: JOURNAL_MAGIC,
                    kind: 0,
                    fsid: inner.fsid,
                    seq: head,
                    aux: head,
                    used: 0,
                },
            );
        }
        for (i, chunk) in buf.chunks(PAYLOAD).enumerate() {
            let b = &mut img[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE];
            b[HDR_LEN..HDR_LEN + chunk.len()].copy_from_slice(chunk);
            seal(
                b,
                &BlockHdr {
                    magic: JOURNAL_MAGIC,
                    kind: 0,
                    fsid: inner.fsid,
                    seq: head + i as u64,
                    aux: head,
                    used: chunk.len() as u32,
                },
            );
        }
        let j = inner.sb.journal_blocks;
        let first = head % j;
        let n = n as u64;
        let split = (j - first).min(n);
        let (a, b) = img.split_at(usize::try_from(split * BLOCK).unwrap_or(0));
        let mut ops =
            vec![IoOp::Write { off: io_off(inner.base, inner.sb.journal_start + first), buf: a }];
        if !b.is_empty() {
            ops.push(IoOp::Write { off: io_off(inner.base, inner.sb.journal_start), buf: b });
        }
        inner.dev.submit(&mut ops).await?;
        drop(ops);
        inner.dev.flush().await
    }

    /// Writes a checkpoint of the current state (waits for running transactions to stop).
    pub async fn checkpoint(&self) -> Result<()> {
        let inner = &self.inner;
        // One checkpoint at a time; close the gate, wait for running transactions.
        loop {
            let g = inner.ev.generation();
            {
                let mut st = inner.st.borrow_mut();
                if st.failed {
                    return Err(OsdError::ReadOnly);
                }
                if !st.ckpt_running {
                    st.ckpt_running = true;
                    st.gate = true;
                    st.ckpt_wanted = false;
                    break;
                }
            }
            inner.ev.wait(g).await;
        }
        // Dropped mid-checkpoint: the active checkpoint is unchanged; reopen for others.
        let mut guard = OnCancel::new(&inner.st, &inner.ev, |st| {
            st.ckpt_running = false;
            st.gate = false;
        });
        let r = self.checkpoint_locked().await;
        guard.disarm();
        {
            let mut st = inner.st.borrow_mut();
            st.ckpt_running = false;
            st.gate = false;
            if r.is_err() {
                st.failed = true;
            }
        }
        inner.ev.notify();
        r
    }

    async fn checkpoint_locked(&self) -> Result<()> {
        let inner = &self.inner;
        loop {
            let g = inner.ev.generation();
            let (running, pending, committing) = {
                let st = inner.st.borrow();
                (st.running, !st.jstopped.is_empty(), st.committing)
            };
            if running == 0 && !pending && !committing {
                break;
            }
            if running == 0 && pending && !committing {
                self.commit_once().await?;
                continue;
            }
            inner.ev.wait(g).await;
        }
        let (hdr, img, slot) = {
            let mut st = inner.st.borrow_mut();
            let generation = st.generation + 1;
            let (mut hdr, img) =
                build_ckpt(&st.store, &st.alloc, inner.fsid, generation, inner.sb.ckpt_blocks)?;
            hdr.last_txn = st.next_txn - 1;
            hdr.journal_seq = st.jhead;
            // New transactions may run while the image is written: they log past jhead.
            st.gate = false;
            (hdr, img, 1 - st.active_slot)
        };
        inner.ev.notify();
        let start = if slot == 0 { inner.sb.ckpt_a } else { inner.sb.ckpt_b };
        write_blocks(&inner.dev, inner.base, start + 1, &img).await?;
        inner.dev.flush().await?;
        write_blocks(&inner.dev, inner.base, start, &hdr.encode(inner.fsid)).await?;
        inner.dev.flush().await?;
        let mut st = inner.st.borrow_mut();
        st.active_slot = slot;
        st.generation = hdr.generation;
        st.jtail = hdr.journal_seq;
        st.last_ckpt_txn = hdr.last_txn;
        Ok(())
    }

    /// Writes `bufs` at `off` into new blocks and maps them. `extend`: grow the size to the
    /// write's end. `only_mapped`: skip blocks that are holes (punch's partial blocks).
    async fn write_inner(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        off: u64,
        bufs: &[&[u8]],
        extend: bool,
    ) -> Result<usize> {
        self.check_txn(th)?;
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let end = off.checked_add(total).filter(|&e| e <= MAX_OBJECT_BYTES);
        let end = end.ok_or(OsdError::Invalid("write beyond the largest object size"))?;
        if total == 0 {
            return Ok(0);
        }
        if let [buf] = bufs
            && off.is_multiple_of(BLOCK)
            && total.is_multiple_of(BLOCK)
        {
            return self.write_aligned(th, fid, off, buf, if extend { end } else { 0 }).await;
        }
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        let segs = segments(off, &lens, total);
        let groups = by_block(&segs);
        let nblk = groups.len() as u64;
        // Old blocks under partially written blocks (read-modify-write).
        let (olds, pblks) = {
            let mut st = self.inner.st.borrow_mut();
            let o = st.store.body_obj(fid, "write")?;
            let olds: Vec<Option<BlockRef>> = groups
                .iter()
                .map(|(l, r)| {
                    let covered: usize = segs[r.clone()].iter().map(|s| s.len).sum();
                    if covered == BLOCK_SIZE { None } else { o.body.lookup(*l) }
                })
                .collect();
            let need =
                Declared { blocks: nblk, meta: meta_growth(Growth::Blocks(nblk)), journal: 0 };
            self.consume(&mut st, th, need)?;
            let runs = st.alloc.alloc(nblk)?;
            let pblks: Vec<u64> = runs.iter().flat_map(|&(s, l)| s..s + l).collect();
            (olds, pblks)
        };
        // Dropped during the I/O: the new blocks were never mapped; give them back.
        let undo = pblks.clone();
        let mut guard = OnCancel::new(&self.inner.st, &self.inner.ev, move |st| {
            for p in undo {
                let _ = st.alloc.release(p);
            }
        });
        let res = self.write_blocks_of(fid, &segs, &groups, &olds, &pblks, bufs).await;
        guard.disarm();
        let mut st = self.inner.st.borrow_mut();
        let crcs = match res {
            Ok(c) => c,
            Err(e) => {
                for p in &pblks {
                    let _ = st.alloc.release(*p);
                }
                return Err(e);
            }
        };
        let blocks = pblks.iter().zip(crcs).map(|(&pblk, crc)| BlockRef { pblk, crc }).collect();
        let size = if extend { end } else { 0 };
        let rec = Rec::Map { fid: *fid, lblk: off / BLOCK, blocks, size };
        // The object may have been destroyed while the data was in flight.
        if st.store.body_obj(fid, "write").is_err() {
            for p in &pblks {
                let _ = st.alloc.release(*p);
            }
            return Err(OsdError::NoObject(*fid));
        }
        if let Err(e) = self.log_apply(&mut st, th, rec) {
            for p in &pblks {
                let _ = st.alloc.release(*p);
            }
            return Err(e);
        }
        Ok(usize::try_from(total).unwrap_or(usize::MAX))
    }

    /// Whole blocks from one buffer (the common case: no read-modify-write, no bounce
    /// buffers, one device write per physical run straight from the caller's memory).
    async fn write_aligned(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        off: u64,
        buf: &[u8],
        size: u64,
    ) -> Result<usize> {
        let nblk = (buf.len() / BLOCK_SIZE) as u64;
        let runs = {
            let mut st = self.inner.st.borrow_mut();
            st.store.body_obj(fid, "write")?;
            let need =
                Declared { blocks: nblk, meta: meta_growth(Growth::Blocks(nblk)), journal: 0 };
            self.consume(&mut st, th, need)?;
            st.alloc.alloc(nblk)?
        };
        let release = |st: &mut State| {
            for &(s, l) in &runs {
                for p in s..s + l {
                    let _ = st.alloc.release(p);
                }
            }
        };
        let mut blocks = Vec::with_capacity(buf.len() / BLOCK_SIZE);
        let mut ops = Vec::with_capacity(runs.len());
        let mut pos = 0usize;
        for &(start, len) in &runs {
            let bytes = usize::try_from(len).unwrap_or(0) * BLOCK_SIZE;
            let chunk = &buf[pos..pos + bytes];
            for (i, b) in chunk.chunks(BLOCK_SIZE).enumerate() {
                blocks.push(BlockRef { pblk: start + i as u64, crc: crc32c::crc32c(b) });
            }
            ops.push(IoOp::Write { off: self.data_off(start), buf: chunk });
            pos += bytes;
        }
        let mut guard = OnCancel::new(&self.inner.st, &self.inner.ev, |st| release(st));
        let res = self.inner.dev.submit(&mut ops).await;
        guard.disarm();
        drop(guard);
        drop(ops);
        let mut st = self.inner.st.borrow_mut();
        if let Err(e) = res {
            release(&mut st);
            return Err(e);
        }
        if st.store.body_obj(fid, "write").is_err() {
            release(&mut st);
            return Err(OsdError::NoObject(*fid));
        }
        let rec = Rec::Map { fid: *fid, lblk: off / BLOCK, blocks, size };
        if let Err(e) = self.log_apply(&mut st, th, rec) {
            release(&mut st);
            return Err(e);
        }
        Ok(buf.len())
    }

    /// Whole blocks into one buffer: one device read per physical run, straight into the
    /// caller's memory. `None`: a block changed under the read (retry).
    async fn read_aligned(&self, fid: &LuFid, off: u64, buf: &mut [u8]) -> Result<Option<usize>> {
        // (device block of the run or None for a hole, crcs of the run's blocks)
        let mut runs: Vec<(Option<u64>, Vec<u32>)> = Vec::new();
        let n = {
            let st = self.inner.st.borrow();
            let o = st.store.body_obj(fid, "read")?;
            let n = (buf.len() as u64).min(o.attr.size.saturating_sub(off));
            let first = off / BLOCK;
            for l in first..first + n.div_ceil(BLOCK) {
                match (o.body.lookup(l), runs.last_mut()) {
                    (Some(r), Some((Some(p), crcs))) if *p + crcs.len() as u64 == r.pblk => {
                        crcs.push(r.crc);
                    }
                    (None, Some((None, crcs))) => crcs.push(0),
                    (Some(r), _) => runs.push((Some(r.pblk), vec![r.crc])),
                    (None, _) => runs.push((None, vec![0])),
                }
            }
            usize::try_from(n).unwrap_or(0)
        };
        {
            let mut ops = Vec::with_capacity(runs.len());
            let mut rest = &mut buf[..];
            for (p, crcs) in &runs {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(crcs.len() * BLOCK_SIZE);
                rest = tail;
                match p {
                    Some(p) => ops.push(IoOp::Read { off: self.data_off(*p), buf: head }),
                    None => head.fill(0),
                }
            }
            if !ops.is_empty() {
                self.inner.dev.submit(&mut ops).await?;
            }
        }
        let mut at = 0usize;
        for (p, crcs) in &runs {
            if let Some(p) = p {
                for (i, crc) in crcs.iter().enumerate() {
                    let b = &buf[at + i * BLOCK_SIZE..at + (i + 1) * BLOCK_SIZE];
                    if crc32c::crc32c(b) != *crc {
                        let lblk = off / BLOCK + ((at / BLOCK_SIZE) + i) as u64;
                        let st = self.inner.st.borrow();
                        let now = st.store.get(fid).ok().and_then(|o| o.body.lookup(lblk));
                        if now.map(|r| r.pblk) != Some(p + i as u64) {
                            return Ok(None);
                        }
                        return Err(OsdError::corrupt(
                            "data block",
                            format!(
                                "block {} of {fid} lblk {lblk}: checksum mismatch",
                                p + i as u64
                            ),
                        ));
                    }
                }
            }
            at += crcs.len() * BLOCK_SIZE;
        }
        // The last block may hold bytes past the end of the object: never hand them out.
        let end = n.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
        if let Some(past) = buf.get_mut(n..end) {
            past.fill(0);
        }
        Ok(Some(n))
    }

    /// Device I/O of a write: RMW reads, then the data writes. Returns the block crcs.
    async fn write_blocks_of(
        &self,
        fid: &LuFid,
        segs: &[Seg],
        groups: &[(u64, core::ops::Range<usize>)],
        olds: &[Option<BlockRef>],
        pblks: &[u64],
        bufs: &[&[u8]],
    ) -> Result<Vec<u32>> {
        // Bounce blocks for every block not covered by one caller segment.
        let mut bounce: Vec<(usize, IoBuf)> = Vec::new();
        for (gi, (_, r)) in groups.iter().enumerate() {
            if r.len() != 1 || !segs[r.start].full() {
                bounce.push((gi, IoBuf::new(BLOCK_SIZE)));
            }
        }
        // Read what partial blocks keep.
        {
            let mut ops = Vec::new();
            let mut want = Vec::new();
            for (gi, b) in &mut bounce {
                if let Some(old) = olds[*gi] {
                    ops.push(IoOp::Read { off: self.data_off(old.pblk), buf: &mut b[..] });
                    want.push((*gi, old));
                }
            }
            if !ops.is_empty() {
                self.inner.dev.submit(&mut ops).await?;
                drop(ops);
                for ((gi, b), _) in bounce.iter().filter(|(gi, _)| olds[*gi].is_some()).zip(0..) {
                    let Some(old) = olds[*gi] else { continue };
                    if crc32c::crc32c(b) != old.crc {
                        return Err(OsdError::corrupt(
                            "data block",
                            format!("block {} of {fid} lblk {}", old.pblk, groups[*gi].0),
                        ));
                    }
                }
            }
        }
        let mut bi = 0;
        let mut crcs = Vec::with_capacity(groups.len());
        for (gi, (_, r)) in groups.iter().enumerate() {
            if bounce.get(bi).is_some_and(|(g, _)| *g == gi) {
                let b = &mut bounce[bi].1;
                for s in &segs[r.clone()] {
                    b[s.boff..s.boff + s.len].copy_from_slice(&bufs[s.buf][s.bpos..s.bpos + s.len]);
                }
                crcs.push(crc32c::crc32c(b));
                bi += 1;
            } else {
                let s = &segs[r.start];
                crcs.push(crc32c::crc32c(&bufs[s.buf][s.bpos..s.bpos + BLOCK_SIZE]));
            }
        }
        // Data writes: caller memory directly where whole blocks lie in one buffer, runs
        // merged when both the device blocks and the memory are contiguous.
        let mut runs: Vec<(usize, usize, usize, u64)> = Vec::new(); // (buf, start, len, pblk)
        let mut bi = 0;
        for (gi, (_, r)) in groups.iter().enumerate() {
            let p = pblks[gi];
            if bounce.get(bi).is_some_and(|(g, _)| *g == gi) {
                bi += 1;
                continue;
            }
            let s = &segs[r.start];
            match runs.last_mut() {
                Some((b, st, l, first))
                    if *b == s.buf
                        && *st + *l == s.bpos
                        && *first + (*l / BLOCK_SIZE) as u64 == p =>
                {
                    *l += BLOCK_SIZE;
                }
                _ => runs.push((s.buf, s.bpos, BLOCK_SIZE, p)),
            }
        }
        let mut ops: Vec<IoOp<'_>> = runs
            .iter()
            .map(|&(b, s, l, p)| IoOp::Write { off: self.data_off(p), buf: &bufs[b][s..s + l] })
            .collect();
        for (gi, b) in &bounce {
            ops.push(IoOp::Write { off: self.data_off(pblks[*gi]), buf: &b[..] });
        }
        self.inner.dev.submit(&mut ops).await?;
        Ok(crcs)
    }

    /// Device reads of a body read into the caller's buffers; `Ok(false)` if a block changed
    /// under the read (retry).
    async fn read_inner(&self, fid: &LuFid, off: u64, bufs: &mut [&mut [u8]]) -> Result<usize> {
        let aligned = match bufs {
            [b] => off.is_multiple_of(BLOCK) && (b.len() as u64).is_multiple_of(BLOCK),
            _ => false,
        };
        for attempt in 0..3 {
            let r = match bufs {
                [b] if aligned => self.read_aligned(fid, off, b).await?,
                _ => self.read_once(fid, off, bufs).await?,
            };
            match r {
                Some(n) => return Ok(n),
                None if attempt < 2 => continue,
                None => break,
            }
        }
        Err(OsdError::corrupt("data block", format!("checksum mismatch reading {fid}")))
    }

    async fn read_once(
        &self,
        fid: &LuFid,
        off: u64,
        bufs: &mut [&mut [u8]],
    ) -> Result<Option<usize>> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        let (segs, maps, n) = {
            let st = self.inner.st.borrow();
            let o = st.store.body_obj(fid, "read")?;
            let n = total.min(o.attr.size.saturating_sub(off));
            let segs = segments(off, &lens, n);
            let maps: Vec<Option<BlockRef>> = segs.iter().map(|s| o.body.lookup(s.lblk)).collect();
            (segs, maps, n)
        };
        // Plan: pieces in buffer order. Direct runs read whole blocks into caller memory.
        enum Piece {
            Hole,
            Direct { pblk: u64, crcs: Vec<u32>, lblk: u64 },
            Part { bounce: usize, boff: usize },
        }
        let mut pieces: Vec<(Piece, usize, usize)> = Vec::new(); // (piece, buf, len)
        let mut bounces: Vec<(BlockRef, u64, IoBuf)> = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            match maps[i] {
                None => pieces.push((Piece::Hole, s.buf, s.len)),
                Some(r) if s.full() => {
                    if let Some((Piece::Direct { pblk, crcs, .. }, b, len)) = pieces.last_mut()
                        && *b == s.buf
                        && *pblk + crcs.len() as u64 == r.pblk
                    {
                        crcs.push(r.crc);
                        *len += BLOCK_SIZE;
                        continue;
                    }
                    pieces.push((
                        Piece::Direct { pblk: r.pblk, crcs: vec![r.crc], lblk: s.lblk },
                        s.buf,
                        s.len,
                    ));
                }
                Some(r) => {
                    let idx = match bounces.last() {
                        Some((br, l, _)) if *l == s.lblk && br.pblk == r.pblk => bounces.len() - 1,
                        _ => {
                            bounces.push((r, s.lblk, IoBuf::new(BLOCK_SIZE)));
                            bounces.len() - 1
                        }
                    };
                    pieces.push((Piece::Part { bounce: idx, boff: s.boff }, s.buf, s.len));
                }
            }
        }
        // Carve the caller buffers into the pieces' slices.
        let mut rest: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut **b).collect();
        let mut slices: Vec<&mut [u8]> = Vec::with_capacity(pieces.len());
        for (_, b, len) in &pieces {
            let r = std::mem::take(&mut rest[*b]);
            let (head, tail) = r.split_at_mut(*len);
            rest[*b] = tail;
            slices.push(head);
        }
        {
            let mut ops: Vec<IoOp<'_>> = Vec::new();
            for ((p, _, _), s) in pieces.iter().zip(slices.iter_mut()) {
                match p {
                    Piece::Hole => s.fill(0),
                    Piece::Direct { pblk, .. } => {
                        ops.push(IoOp::Read { off: self.data_off(*pblk), buf: &mut s[..] });
                    }
                    Piece::Part { .. } => {}
                }
            }
            for (r, _, b) in &mut bounces {
                ops.push(IoOp::Read { off: self.data_off(r.pblk), buf: &mut b[..] });
            }
            if !ops.is_empty() {
                self.inner.dev.submit(&mut ops).await?;
            }
        }
        // Verify, then copy bounced parts out.
        let mut bad = None;
        for ((p, _, _), s) in pieces.iter().zip(slices.iter()) {
            if let Piece::Direct { pblk, crcs, lblk } = p {
                for (i, (chunk, crc)) in s.chunks(BLOCK_SIZE).zip(crcs).enumerate() {
                    if crc32c::crc32c(chunk) != *crc {
                        bad = Some((pblk + i as u64, lblk + i as u64));
                    }
                }
            }
        }
        for (r, l, b) in &bounces {
            if crc32c::crc32c(b) != r.crc {
                bad = Some((r.pblk, *l));
            }
        }
        if let Some((pblk, lblk)) = bad {
            // A concurrent write may have replaced (and a commit released) the block.
            let st = self.inner.st.borrow();
            let now = st.store.get(fid).ok().and_then(|o| o.body.lookup(lblk));
            if now.map(|r| r.pblk) != Some(pblk) {
                return Ok(None);
            }
            return Err(OsdError::corrupt(
                "data block",
                format!("block {pblk} of {fid} lblk {lblk}: checksum mismatch"),
            ));
        }
        for ((p, _, _), s) in pieces.iter().zip(slices.iter_mut()) {
            if let Piece::Part { bounce, boff } = p {
                let b = &bounces[*bounce].2;
                s.copy_from_slice(&b[*boff..*boff + s.len()]);
            }
        }
        Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
    }
}

impl<D: BlockDev> Osd for DiskOsd<D> {
    async fn trans_start(&self, th: &mut Txn) -> Result<()> {
        if th.state != TxnState::Declaring {
            return Err(OsdError::Invalid("transaction already started"));
        }
        let inner = &self.inner;
        let jneed = th.decl.journal + 64;
        let j = inner.sb.journal_blocks;
        if jneed.div_ceil(PAYLOAD as u64) + 4 > j / 2 {
            return Err(OsdError::NoSpace("transaction larger than the journal allows"));
        }
        enum Next {
            Wait,
            Ckpt,
            Sync,
        }
        let mut synced = false;
        loop {
            let g = inner.ev.generation();
            let next = {
                let mut st = inner.st.borrow_mut();
                if st.failed {
                    return Err(OsdError::ReadOnly);
                }
                let d = th.decl;
                let free_blocks = st.alloc.free().saturating_sub(st.res.blocks);
                let meta_ok = st.store.meta_bytes + st.res.meta + d.meta <= inner.meta_cap
                    && st.store.mem_bytes + (st.res.meta + d.meta) * MEM_PER_META
                        <= inner.cfg.cache_size;
                let live = st.jhead - st.jtail;
                let jblocks = (st.jbuf.len() as u64 + st.res.journal + jneed)
                    .div_ceil(PAYLOAD as u64)
                    + u64::from(st.running)
                    + 2;
                if st.gate {
                    Next::Wait
                } else if st.ckpt_wanted && !st.ckpt_running {
                    Next::Ckpt
                } else if d.blocks > free_blocks {
                    // Blocks released by transactions not yet durable come back at commit.
                    let pending_free = st.jstopped.iter().any(|t| !t.freed.is_empty());
                    if (pending_free || st.committing) && !synced {
                        Next::Sync
                    } else {
                        return Err(OsdError::NoSpace("data blocks"));
                    }
                } else if !meta_ok {
                    return Err(OsdError::NoSpace("metadata"));
                } else if live + jblocks > j || live * 2 >= j {
                    if st.ckpt_running { Next::Wait } else { Next::Ckpt }
                } else {
                    st.res.blocks += d.blocks;
                    st.res.meta += d.meta;
                    st.res.journal += jneed;
                    th.reserved = Declared { blocks: d.blocks, meta: d.meta, journal: jneed };
                    st.running += 1;
                    th.transno = st.next_txn;
                    st.next_txn += 1;
                    let t = th.transno;
                    st.outstanding.insert(t);
                    th.state = TxnState::Started;
                    return Ok(());
                }
            };
            match next {
                Next::Wait => inner.ev.wait(g).await,
                Next::Sync => {
                    synced = true;
                    self.sync().await?;
                }
                Next::Ckpt => self.checkpoint().await?,
            }
        }
    }

    async fn trans_stop(&self, mut th: Txn) -> Result<u64> {
        if th.state != TxnState::Started {
            return Err(OsdError::Invalid("transaction not started"));
        }
        let inner = &self.inner;
        th.state = TxnState::Stopped;
        let (commit_now, failed) = {
            let mut st = inner.st.borrow_mut();
            st.running = st.running.saturating_sub(1);
            st.res.blocks = st.res.blocks.saturating_sub(th.reserved.blocks);
            st.res.meta = st.res.meta.saturating_sub(th.reserved.meta);
            // The commit record always fits: trans_start reserved 64 bytes for it.
            encode_rec(&mut st.jbuf, th.transno, None, th.nrecs);
            let journal = th.reserved.journal;
            st.jstopped.push(Stopped {
                transno: th.transno,
                callbacks: std::mem::take(&mut th.callbacks),
                freed: std::mem::take(&mut th.freed),
                journal,
            });
            st.stops += 1;
            (th.sync || st.jbuf.len() >= inner.cfg.commit_bytes, st.failed)
        };
        inner.ev.notify();
        if failed {
            return Err(OsdError::ReadOnly);
        }
        if th.sync {
            self.sync().await?;
        } else if commit_now {
            let committing = inner.st.borrow().committing;
            if !committing {
                self.commit_once().await?;
            }
        }
        Ok(th.transno)
    }

    async fn sync(&self) -> Result<()> {
        let inner = &self.inner;
        let target = inner.st.borrow().stops;
        loop {
            let g = inner.ev.generation();
            let (done, committing, failed) = {
                let st = inner.st.borrow();
                (st.durable_stops >= target, st.committing, st.failed)
            };
            if failed {
                return Err(OsdError::ReadOnly);
            }
            if done {
                return self.seal_tail().await;
            }
            if committing {
                inner.ev.wait(g).await;
            } else {
                self.commit_once().await?;
            }
        }
    }

    fn last_committed(&self) -> u64 {
        let st = self.inner.st.borrow();
        st.outstanding.first().map_or(st.next_txn - 1, |t| t - 1)
    }

    async fn statfs(&self) -> Result<StatFs> {
        let st = self.inner.st.borrow();
        let blocks = st.alloc.nblocks();
        let bfree = st.alloc.free();
        let files = self.inner.meta_cap / (crate::store::OBJ_META + 64);
        let used = st.store.meta_bytes / (crate::store::OBJ_META + 64);
        Ok(StatFs {
            blocks,
            bfree,
            bavail: bfree.saturating_sub(st.res.blocks),
            files,
            ffree: files.saturating_sub(used.max(st.store.objs.len() as u64)),
            bsize: BLOCK_SIZE as u32,
            namelen: NAME_MAX as u32,
            maxbytes: MAX_OBJECT_BYTES,
        })
    }

    async fn attr_get(&self, fid: &LuFid) -> Result<Attr> {
        self.inner.st.borrow().store.attr_get(fid)
    }

    async fn obj_type(&self, fid: &LuFid) -> Result<ObjType> {
        Ok(self.inner.st.borrow().store.get(fid)?.ty)
    }

    async fn create(&self, th: &mut Txn, fid: &LuFid, ty: ObjType, attr: &Attr) -> Result<()> {
        self.meta_op(th, |s| s.prep_create(*fid, ty, attr), crate::store::OBJ_META)
    }

    async fn destroy(&self, th: &mut Txn, fid: &LuFid) -> Result<()> {
        self.meta_op(th, |s| s.prep_destroy(*fid), 0)
    }

    async fn attr_set(&self, th: &mut Txn, fid: &LuFid, mask: AttrMask, attr: &Attr) -> Result<()> {
        self.meta_op(th, |s| s.prep_attr_set(*fid, mask, attr), 0)
    }

    async fn ref_add(&self, th: &mut Txn, fid: &LuFid) -> Result<()> {
        self.meta_op(th, |s| s.prep_ref(*fid, true), 0)
    }

    async fn ref_del(&self, th: &mut Txn, fid: &LuFid) -> Result<()> {
        self.meta_op(th, |s| s.prep_ref(*fid, false), 0)
    }

    async fn xattr_get(&self, fid: &LuFid, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        let st = self.inner.st.borrow();
        copy_value(st.store.xattr_get(fid, name)?, buf)
    }

    async fn xattr_list(&self, fid: &LuFid) -> Result<Vec<Vec<u8>>> {
        Ok(self.inner.st.borrow().store.get(fid)?.xattrs.keys().cloned().collect())
    }

    async fn xattr_set(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        let growth = crate::store::XATTR_META + (name.len() + value.len()) as u64;
        self.meta_op(th, |s| s.prep_xattr_set(*fid, name, value, mode), growth)
    }

    async fn xattr_del(&self, th: &mut Txn, fid: &LuFid, name: &[u8]) -> Result<()> {
        self.meta_op(th, |s| s.prep_xattr_del(*fid, name), 0)
    }

    async fn read(&self, fid: &LuFid, off: u64, bufs: &mut [&mut [u8]]) -> Result<usize> {
        self.read_inner(fid, off, bufs).await
    }

    async fn write(&self, th: &mut Txn, fid: &LuFid, off: u64, bufs: &[&[u8]]) -> Result<usize> {
        self.write_inner(th, fid, off, bufs, true).await
    }

    async fn punch(&self, th: &mut Txn, fid: &LuFid, start: u64, end: u64) -> Result<()> {
        self.check_txn(th)?;
        if end <= start {
            return Ok(());
        }
        let steps = {
            let st = self.inner.st.borrow();
            let o = st.store.body_obj(fid, "punch")?;
            punch_plan(start, end, |l| o.body.lookup(l).map(|_| (0usize, 0usize)), |_, a, b| (a, b))
        };
        let zeros = vec![0u8; BLOCK_SIZE];
        for step in steps {
            match step {
                PunchStep::Rewrite(lblk, (from, to)) => {
                    let off = lblk * BLOCK + from as u64;
                    self.write_inner(th, fid, off, &[&zeros[..to - from]], false).await?;
                }
                PunchStep::Unmap(from, to) => {
                    let mut st = self.inner.st.borrow_mut();
                    st.store.body_obj(fid, "punch")?;
                    // Punching inside a run splits it: one run more.
                    let need = Declared { blocks: 0, meta: extent::RUN_META, journal: 0 };
                    self.consume(&mut st, th, need)?;
                    self.log_apply(&mut st, th, Rec::Unmap { fid: *fid, from, to })?;
                }
            }
        }
        Ok(())
    }

    async fn index_lookup(&self, fid: &LuFid, key: &[u8]) -> Result<Vec<u8>> {
        Ok(self.inner.st.borrow().store.index_lookup(fid, key)?.to_vec())
    }

    async fn index_insert(
        &self,
        th: &mut Txn,
        fid: &LuFid,
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        let growth = crate::store::INDEX_META + (key.len() + 8 + value.len()) as u64;
        self.meta_op(th, |s| s.prep_index_insert(*fid, key, value), growth)
    }

    async fn index_delete(&self, th: &mut Txn, fid: &LuFid, key: &[u8]) -> Result<()> {
        self.meta_op(th, |s| s.prep_index_delete(*fid, key), 0)
    }

    async fn index_iter(&self, fid: &LuFid, cookie: u64, max: usize) -> Result<IndexPage> {
        self.inner.st.borrow().store.index_iter(fid, cookie, max)
    }

    async fn objects(&self, after: Option<LuFid>, max: usize) -> Result<Vec<LuFid>> {
        Ok(objects_after(&self.inner.st.borrow().store, after, max))
    }
}

//! fsck: checks every structure and checksum of one shard's region without changing it.
//!
//! Superblock, both checkpoint headers, every block of the active checkpoint (object index,
//! xattrs, extent maps, index entries, free-space bitmap), cross-checks between extent maps
//! and the bitmap, the journal (a torn tail after a crash is normal; damage before a later
//! batch is not), a replay of it, and the crc32c of every mapped data block.

use std::fmt::Write;

use crate::dev::{BlockDev, IoOp};
use crate::disk::format::{BlockRef, CkptHdr};
use crate::disk::{Region, load_ckpt, read_headers, replay_journal, slot_name};
use crate::error::OsdError;
use crate::store::BodyMap;
use crate::types::{BLOCK, BLOCK_SIZE};

/// What fsck found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Damage: (structure, detail). Empty when clean.
    pub damage: Vec<(String, String)>,
    /// Observations that are not damage (a torn journal tail after a crash).
    pub notes: Vec<String>,
    /// Objects.
    pub objects: u64,
    /// Extended attributes.
    pub xattrs: u64,
    /// Index entries.
    pub index_entries: u64,
    /// Mapped data blocks (all checksums verified).
    pub data_blocks: u64,
    /// Free data blocks.
    pub free_blocks: u64,
    /// Data blocks in the region.
    pub total_blocks: u64,
    /// Transactions replayed from the journal.
    pub journal_txns: u64,
    /// Generation of the checkpoint used.
    pub generation: u64,
}

impl FsckReport {
    /// Whether no damage was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }

    /// Whether some damage names `structure`.
    #[must_use]
    pub fn names(&self, structure: &str) -> bool {
        self.damage.iter().any(|(s, _)| s == structure)
    }

    fn add(&mut self, e: &OsdError) {
        match e {
            OsdError::Corrupt { what, detail } => {
                self.damage.push(((*what).to_string(), detail.clone()));
            }
            OsdError::BadFormat(d) => self.damage.push(("superblock".into(), d.clone())),
            other => self.damage.push(("device".into(), other.to_string())),
        }
    }

    /// A human summary, one structure per damage line.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for (what, detail) in &self.damage {
            let _ = writeln!(s, "DAMAGE {what}: {detail}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(
            s,
            "objects={} xattrs={} index_entries={} data_blocks={} free_blocks={}/{} \
             checkpoint_generation={} journal_txns={} status={}",
            self.objects,
            self.xattrs,
            self.index_entries,
            self.data_blocks,
            self.free_blocks,
            self.total_blocks,
            self.generation,
            self.journal_txns,
            if self.is_clean() { "clean" } else { "DAMAGED" }
        );
        s
    }
}

/// Checks `region` of `dev`.
pub async fn fsck(dev: &impl BlockDev, region: Region) -> FsckReport {
    let mut rep = FsckReport::default();
    let (sb, hdrs) = match read_headers(dev, region).await {
        Ok(x) => x,
        Err(e) => {
            rep.add(&e);
            return rep;
        }
    };
    rep.total_blocks = sb.data_blocks;
    let mut best: Option<(u8, CkptHdr)> = None;
    for (slot, h) in hdrs.iter().enumerate() {
        let slot = u8::try_from(slot).unwrap_or(0);
        match h {
            Ok(h) => {
                if best.is_none_or(|(_, b)| h.generation > b.generation) {
                    best = Some((slot, *h));
                }
            }
            Err(f) => rep.damage.push((
                "checkpoint header".into(),
                format!(
                    "slot {}: {f:?} (normal only after a crash during a checkpoint)",
                    slot_name(slot)
                ),
            )),
        }
    }
    let Some((slot, hdr)) = best else { return rep };
    rep.generation = hdr.generation;
    let (mut store, mut alloc) = match load_ckpt(dev, region.offset, &sb, &hdr, slot).await {
        Ok(x) => x,
        Err(e) => {
            rep.add(&e);
            return rep;
        }
    };
    match replay_journal(dev, region.offset, &sb, &hdr, &mut store, &mut alloc).await {
        Ok(r) => {
            rep.journal_txns = r.txns;
            if r.torn_tail {
                rep.notes.push(format!(
                    "journal ends in an incomplete batch at seq {} (normal after a crash; \
                     mount discards it)",
                    r.end_seq
                ));
            }
        }
        Err(e) => {
            rep.add(&e);
            return rep;
        }
    }
    rep.free_blocks = alloc.free();
    let mut blocks: Vec<(BlockRef, String)> = Vec::new();
    for (fid, o) in &store.objs {
        rep.objects += 1;
        rep.xattrs += o.xattrs.len() as u64;
        rep.index_entries += o.index.len() as u64;
        for (l, r) in o.body.blocks_iter() {
            blocks.push((r, format!("{fid} lblk {l}")));
        }
    }
    if alloc.nblocks() - alloc.free() != blocks.len() as u64 {
        rep.damage.push((
            "free-space bitmap block".into(),
            format!(
                "{} blocks allocated but {} mapped",
                alloc.nblocks() - alloc.free(),
                blocks.len()
            ),
        ));
    }
    rep.data_blocks = blocks.len() as u64;
    blocks.sort_by_key(|(r, _)| r.pblk);
    // Verify data in runs of up to 256 contiguous blocks.
    let mut i = 0;
    let mut buf = vec![0u8; 256 * BLOCK_SIZE];
    while i < blocks.len() {
        let mut n = 1;
        while i + n < blocks.len() && n < 256 && blocks[i + n].0.pblk == blocks[i].0.pblk + n as u64
        {
            n += 1;
        }
        let off = region.offset + (sb.data_start + blocks[i].0.pblk) * BLOCK;
        let r = dev.submit(&mut [IoOp::Read { off, buf: &mut buf[..n * BLOCK_SIZE] }]).await;
        match r {
            Err(e) => rep.add(&e),
            Ok(()) => {
                for (k, chunk) in buf[..n * BLOCK_SIZE].chunks(BLOCK_SIZE).enumerate() {
                    let (r, who) = &blocks[i + k];
                    if crc32c::crc32c(chunk) != r.crc {
                        rep.damage.push((
                            "data block".into(),
                            format!("block {} ({who}): checksum mismatch", r.pblk),
                        ));
                    }
                }
            }
        }
        i += n;
    }
    rep
}

/// One block of each kind of structure in the region (region block numbers), for tools and
/// for tests that damage each kind: superblock, checkpoint header, the first block of every
/// non-empty checkpoint stream, the first live journal block, the first mapped data block.
pub async fn locate(dev: &impl BlockDev, region: Region) -> crate::Result<Vec<(String, u64)>> {
    use crate::disk::format::STREAMS;
    let (sb, hdrs) = read_headers(dev, region).await?;
    let mut best: Option<(u8, CkptHdr)> = None;
    for (slot, h) in hdrs.iter().enumerate() {
        if let Ok(h) = h
            && best.is_none_or(|(_, b)| h.generation > b.generation)
        {
            best = Some((u8::try_from(slot).unwrap_or(0), *h));
        }
    }
    let (slot, hdr) =
        best.ok_or_else(|| OsdError::corrupt("checkpoint header", "no valid checkpoint"))?;
    let start = if slot == 0 { sb.ckpt_a } else { sb.ckpt_b };
    let mut out = vec![("superblock".to_string(), 0), ("checkpoint header".to_string(), start)];
    for (i, s) in STREAMS.iter().enumerate() {
        let (first, n, _) = hdr.streams[i];
        if n > 0 {
            out.push((s.name().to_string(), start + u64::from(first)));
        }
    }
    let (mut store, mut alloc) = load_ckpt(dev, region.offset, &sb, &hdr, slot).await?;
    let r = replay_journal(dev, region.offset, &sb, &hdr, &mut store, &mut alloc).await?;
    if r.end_seq > hdr.journal_seq {
        out.push((
            "journal block".to_string(),
            sb.journal_start + hdr.journal_seq % sb.journal_blocks,
        ));
    }
    if let Some((_, b)) = store.objs.values().flat_map(|o| o.body.blocks_iter()).next() {
        out.push(("data block".to_string(), sb.data_start + b.pblk));
    }
    Ok(out)
}

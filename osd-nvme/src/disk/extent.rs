//! The in-memory extent map of a persistent object: runs of logical blocks that sit on
//! consecutive device blocks, each with its per-block crc32c. A sequentially written object
//! costs about 4 bytes of memory per 4 KiB block instead of a tree entry per block.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use super::format::BlockRef;
use crate::store::{BodyBlock, BodyMap};

impl BodyBlock for BlockRef {
    type Map = ExtentMap;
}

/// Longest run; the checkpoint's extent records use the same limit.
pub(crate) const MAX_RUN: usize = 65_536;
/// Memory estimate per run (tree entry, key, device block, inline crcs).
const RUN_MEM: u64 = 64;
/// Checkpoint bytes per run besides its crcs (fid, logical block, device block, count).
pub(crate) const RUN_META: u64 = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    pblk: u64,
    crcs: SmallVec<[u32; 4]>,
}

/// Logical block -> (device block, crc32c), stored as runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ExtentMap {
    runs: BTreeMap<u64, Run>,
    blocks: u64,
}

impl ExtentMap {
    fn find(&self, l: u64) -> Option<(u64, &Run)> {
        let (&s, r) = self.runs.range(..=l).next_back()?;
        (l < s + r.crcs.len() as u64).then_some((s, r))
    }

    /// Makes `l` the start of a run if it lies inside one.
    fn split_at(&mut self, l: u64) {
        let Some((s, _)) = self.find(l) else { return };
        if s == l {
            return;
        }
        let k = usize::try_from(l - s).unwrap_or(0);
        if let Some(r) = self.runs.get_mut(&s) {
            let tail: SmallVec<[u32; 4]> = r.crcs.drain(k..).collect();
            let pblk = r.pblk + k as u64;
            self.runs.insert(l, Run { pblk, crcs: tail });
        }
    }

    /// Merges the run at `s` with the one right after it when both are contiguous.
    fn merge_next(&mut self, s: u64) {
        let Some(r) = self.runs.get(&s) else { return };
        let n = r.crcs.len();
        let (end, pend) = (s + n as u64, r.pblk + n as u64);
        let mergeable =
            self.runs.get(&end).is_some_and(|x| x.pblk == pend && n + x.crcs.len() <= MAX_RUN);
        if mergeable
            && let Some(next) = self.runs.remove(&end)
            && let Some(r) = self.runs.get_mut(&s)
        {
            r.crcs.extend(next.crcs);
        }
    }
}

impl BodyMap<BlockRef> for ExtentMap {
    fn lookup(&self, l: u64) -> Option<BlockRef> {
        let (s, r) = self.find(l)?;
        let i = usize::try_from(l - s).ok()?;
        Some(BlockRef { pblk: r.pblk + i as u64, crc: *r.crcs.get(i)? })
    }

    fn map_block(&mut self, l: u64, b: BlockRef) -> Option<BlockRef> {
        let old = if self.find(l).is_some() {
            self.unmap_range(l, l.saturating_add(1)).pop()
        } else {
            None
        };
        if let Some((&s, r)) = self.runs.range_mut(..l).next_back() {
            let n = r.crcs.len() as u64;
            if s + n == l && r.pblk + n == b.pblk && r.crcs.len() < MAX_RUN {
                r.crcs.push(b.crc);
                self.blocks += 1;
                self.merge_next(s);
                return old;
            }
        }
        let mut crcs = SmallVec::new();
        crcs.push(b.crc);
        self.runs.insert(l, Run { pblk: b.pblk, crcs });
        self.blocks += 1;
        self.merge_next(l);
        old
    }

    fn unmap_range(&mut self, from: u64, to: u64) -> Vec<BlockRef> {
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        self.split_at(from);
        self.split_at(to);
        let keys: Vec<u64> = self.runs.range(from..to).map(|(k, _)| *k).collect();
        for k in keys {
            if let Some(r) = self.runs.remove(&k) {
                self.blocks -= r.crcs.len() as u64;
                out.extend(
                    r.crcs
                        .iter()
                        .enumerate()
                        .map(|(i, &crc)| BlockRef { pblk: r.pblk + i as u64, crc }),
                );
            }
        }
        out
    }

    fn count(&self) -> u64 {
        self.blocks
    }

    fn mem(&self) -> u64 {
        self.runs.len() as u64 * RUN_MEM + self.blocks * 4
    }

    fn meta(&self) -> u64 {
        self.runs.len() as u64 * RUN_META + self.blocks * 4
    }

    fn blocks_iter(&self) -> impl Iterator<Item = (u64, BlockRef)> + '_ {
        self.runs.iter().flat_map(|(&s, r)| {
            r.crcs
                .iter()
                .enumerate()
                .map(move |(i, &crc)| (s + i as u64, BlockRef { pblk: r.pblk + i as u64, crc }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(pblk: u64) -> BlockRef {
        BlockRef { pblk, crc: pblk as u32 ^ 0xabcd }
    }

    #[test]
    fn sequential_blocks_form_one_run() {
        let mut m = ExtentMap::default();
        for l in 0..1000 {
            assert!(m.map_block(l, b(5000 + l)).is_none());
        }
        assert_eq!(m.runs.len(), 1);
        assert_eq!(m.count(), 1000);
        assert!(m.mem() < 1000 * 5);
        // Overwrite in the middle splits it; the old block comes back.
        assert_eq!(m.map_block(500, b(1)), Some(b(5500)));
        assert_eq!(m.runs.len(), 3);
        assert_eq!(m.lookup(500), Some(b(1)));
        assert_eq!(m.lookup(501), Some(b(5501)));
        let gone = m.unmap_range(100, 900);
        assert_eq!(gone.len(), 800);
        assert_eq!(m.count(), 200);
        assert_eq!(m.lookup(99), Some(b(5099)));
        assert_eq!(m.lookup(100), None);
    }

    proptest! {
        /// The extent map behaves exactly like a plain per-block map.
        #[test]
        fn same_as_a_block_map(ops in proptest::collection::vec((0u8..3, 0u64..64, 0u64..64, 0u64..40), 0..200)) {
            let mut m = ExtentMap::default();
            let mut model: BTreeMap<u64, BlockRef> = BTreeMap::new();
            for (op, a, bb, p) in ops {
                match op {
                    0 | 1 => {
                        prop_assert_eq!(m.map_block(a, b(p)), model.insert(a, b(p)));
                    }
                    _ => {
                        let (from, to) = (a.min(bb), a.max(bb));
                        let mut got = m.unmap_range(from, to);
                        let want: Vec<BlockRef> = model.range(from..to).map(|(_, v)| *v).collect();
                        model.retain(|k, _| *k < from || *k >= to);
                        got.sort_by_key(|x| (x.pblk, x.crc));
                        let mut want = want;
                        want.sort_by_key(|x| (x.pblk, x.crc));
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(m.count(), model.len() as u64);
                let all: Vec<(u64, BlockRef)> = m.blocks_iter().collect();
                let want: Vec<(u64, BlockRef)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(all, want);
            }
        }
    }
}

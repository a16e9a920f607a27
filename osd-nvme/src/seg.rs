//! Splitting vectored body I/O into per-block segments.

use crate::types::{BLOCK, BLOCK_SIZE};

/// A piece of a vectored request that lies inside one object block and one caller buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg {
    /// Logical block.
    pub(crate) lblk: u64,
    /// Offset inside the block.
    pub(crate) boff: usize,
    /// Length.
    pub(crate) len: usize,
    /// Index of the caller buffer.
    pub(crate) buf: usize,
    /// Offset inside the caller buffer.
    pub(crate) bpos: usize,
}

impl Seg {
    /// Whether the segment is a whole block.
    pub(crate) fn full(&self) -> bool {
        self.boff == 0 && self.len == BLOCK_SIZE
    }
}

/// Segments of a request at byte offset `off` over buffers of lengths `lens`, limited to
/// `limit` bytes in total.
pub(crate) fn segments(off: u64, lens: &[usize], limit: u64) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut pos = off;
    let mut left = limit;
    for (buf, &len) in lens.iter().enumerate() {
        let mut bpos = 0usize;
        while bpos < len && left > 0 {
            let boff = usize::try_from(pos % BLOCK).unwrap_or(0);
            let n = (BLOCK_SIZE - boff)
                .min(len - bpos)
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            out.push(Seg { lblk: pos / BLOCK, boff, len: n, buf, bpos });
            pos += n as u64;
            bpos += n;
            left -= n as u64;
        }
    }
    out
}

/// Groups segments by block: `(lblk, range of segment indexes)`.
pub(crate) fn by_block(segs: &[Seg]) -> Vec<(u64, core::ops::Range<usize>)> {
    let mut out: Vec<(u64, core::ops::Range<usize>)> = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        match out.last_mut() {
            Some((l, r)) if *l == s.lblk => r.end = i + 1,
            _ => out.push((s.lblk, i..i + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_across_blocks_and_buffers() {
        let s = segments(4000, &[100, 5000], u64::MAX);
        assert_eq!(s[0], Seg { lblk: 0, boff: 4000, len: 96, buf: 0, bpos: 0 });
        assert_eq!(s[1], Seg { lblk: 1, boff: 0, len: 4, buf: 0, bpos: 96 });
        assert_eq!(s[2], Seg { lblk: 1, boff: 4, len: 4092, buf: 1, bpos: 0 });
        assert_eq!(s[3], Seg { lblk: 2, boff: 0, len: 908, buf: 1, bpos: 4092 });
        assert_eq!(s.iter().map(|s| s.len).sum::<usize>(), 5100);
        let g = by_block(&s);
        assert_eq!(g, vec![(0, 0..1), (1, 1..3), (2, 3..4)]);
        assert_eq!(segments(0, &[8192], 100).len(), 1);
    }
}

//! Free-space allocation of the data area: a bitmap with a next-fit cursor, so that
//! sequential writes get contiguous runs (one device I/O per run).

use crate::error::{OsdError, Result};

/// The data-area allocator of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alloc {
    bits: Vec<u64>,
    nblocks: u64,
    free: u64,
    cursor: u64,
}

impl Alloc {
    /// All `nblocks` free.
    pub(crate) fn new(nblocks: u64) -> Alloc {
        let words = usize::try_from(nblocks.div_ceil(64)).unwrap_or(0);
        Alloc { bits: vec![0; words], nblocks, free: nblocks, cursor: 0 }
    }

    /// From a bitmap image (bit set = allocated).
    pub(crate) fn from_bytes(nblocks: u64, bytes: &[u8]) -> Result<Alloc> {
        let mut a = Alloc::new(nblocks);
        if bytes.len() != a.bytes_len() {
            return Err(OsdError::corrupt("free-space bitmap block", "bitmap has the wrong size"));
        }
        for (w, c) in a.bits.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            *w = u64::from_le_bytes(b);
        }
        let tail = nblocks % 64;
        if tail != 0
            && let Some(last) = a.bits.last()
            && last >> tail != 0
        {
            return Err(OsdError::corrupt("free-space bitmap block", "bits set past the end"));
        }
        let used: u64 = a.bits.iter().map(|w| u64::from(w.count_ones())).sum();
        a.free = nblocks - used;
        Ok(a)
    }

    pub(crate) fn bytes_len(&self) -> usize {
        self.bits.len() * 8
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.bits.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub(crate) fn free(&self) -> u64 {
        self.free
    }

    pub(crate) fn nblocks(&self) -> u64 {
        self.nblocks
    }

    pub(crate) fn is_used(&self, b: u64) -> bool {
        let (w, bit) = (usize::try_from(b / 64).unwrap_or(usize::MAX), b % 64);
        self.bits.get(w).is_some_and(|x| x & (1 << bit) != 0)
    }

    /// Marks `b` allocated; error if it already is or lies outside the area.
    pub(crate) fn mark_used(&mut self, b: u64) -> Result<()> {
        if b >= self.nblocks || self.is_used(b) {
            return Err(OsdError::corrupt("journal", format!("block {b} allocated twice")));
        }
        self.set(b, true);
        self.free -= 1;
        Ok(())
    }

    /// Releases `b`.
    pub(crate) fn release(&mut self, b: u64) -> Result<()> {
        if b >= self.nblocks || !self.is_used(b) {
            return Err(OsdError::corrupt("journal", format!("block {b} freed twice")));
        }
        self.set(b, false);
        self.free += 1;
        Ok(())
    }

    fn set(&mut self, b: u64, on: bool) {
        let (w, bit) = (usize::try_from(b / 64).unwrap_or(usize::MAX), b % 64);
        if let Some(x) = self.bits.get_mut(w) {
            if on {
                *x |= 1 << bit;
            } else {
                *x &= !(1 << bit);
            }
        }
    }

    /// Finds `words` consecutive all-free bitmap words from the cursor on (wrapping).
    fn find_free_words(&self, words: usize) -> Option<usize> {
        let nw = self.bits.len();
        // The last word may be partial: never use it for a whole-word run.
        let usable = if self.nblocks.is_multiple_of(64) { nw } else { nw.saturating_sub(1) };
        if words == 0 || words > usable {
            return None;
        }
        let start = usize::try_from(self.cursor / 64).unwrap_or(0) % usable.max(1);
        let mut run = 0usize;
        let mut i = start;
        let mut scanned = 0;
        while scanned < usable + words {
            if i >= usable {
                i = 0;
                run = 0;
            }
            if self.bits[i] == 0 {
                run += 1;
                if run == words {
                    return Some(i + 1 - words);
                }
            } else {
                run = 0;
            }
            i += 1;
            scanned += 1;
        }
        None
    }

    /// Allocates `n` blocks: one contiguous run when a large enough free area exists (so
    /// that rewritten objects stay sequential on disk), else as few runs as next-fit finds.
    pub(crate) fn alloc(&mut self, n: u64) -> Result<Vec<(u64, u64)>> {
        if n > self.free {
            return Err(OsdError::NoSpace("data blocks"));
        }
        if n >= 32
            && let Some(w) = self.find_free_words(usize::try_from(n.div_ceil(64)).unwrap_or(0))
        {
            let s = w as u64 * 64;
            for b in s..s + n {
                self.set(b, true);
            }
            self.free -= n;
            self.cursor = s + n;
            return Ok(vec![(s, n)]);
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut left = n;
        let mut b = self.cursor;
        let mut scanned = 0u64;
        while left > 0 && scanned < self.nblocks {
            if b >= self.nblocks {
                b = 0;
            }
            // Skip full words quickly.
            if b.is_multiple_of(64)
                && let Some(&w) = self.bits.get(usize::try_from(b / 64).unwrap_or(usize::MAX))
                && w == u64::MAX
            {
                b += 64;
                scanned += 64;
                continue;
            }
            if !self.is_used(b) {
                self.set(b, true);
                self.free -= 1;
                left -= 1;
                match runs.last_mut() {
                    Some((s, l)) if *s + *l == b => *l += 1,
                    _ => runs.push((b, 1)),
                }
            }
            b += 1;
            scanned += 1;
        }
        self.cursor = b;
        if left > 0 {
            // Cannot happen while `free` is right; undo and report.
            for (s, l) in &runs {
                for x in *s..*s + *l {
                    self.set(x, false);
                    self.free += 1;
                }
            }
            return Err(OsdError::NoSpace("data blocks"));
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_release_round_trip() {
        let mut a = Alloc::new(200);
        let r = a.alloc(100).unwrap();
        assert_eq!(r, vec![(0, 100)]);
        a.release(50).unwrap();
        assert!(a.release(50).is_err());
        let r = a.alloc(101).unwrap();
        assert_eq!(r, vec![(100, 100), (50, 1)]);
        assert_eq!(a.free(), 0);
        assert!(a.alloc(1).is_err());
        let b = Alloc::from_bytes(200, &a.to_bytes()).unwrap();
        assert_eq!(b.free(), 0);
        assert!(Alloc::from_bytes(200, &[0xff; 32]).is_err());
    }
}

//! The layout engine (Lustre's LOV): RAID-0 striping of a file over OST objects. A file's
//! bytes go round-robin in `stripe_size` chunks over the objects of its layout, starting with
//! the first object listed (the layout's order already reflects the stripe offset).

use crate::error::{Error, Result};
use proto::fid::LuFid;
use proto::lov::{LovMd, pattern};

/// One stripe: the OST and the object on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stripe {
    /// OST index.
    pub ost: u32,
    /// The object's FID.
    pub fid: LuFid,
}

/// A plain RAID-0 layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Bytes per stripe chunk.
    pub stripe_size: u64,
    /// The objects, in stripe order.
    pub stripes: Vec<Stripe>,
}

/// A piece of a file range that lives in one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Stripe index in the layout.
    pub stripe: usize,
    /// Offset in the object.
    pub obj_off: u64,
    /// Offset in the file.
    pub file_off: u64,
    /// Length.
    pub len: u64,
}

impl Layout {
    /// The layout of a stored `lov_mds_md` (a released or DoM layout has no objects here).
    pub fn from_lov(md: &LovMd) -> Result<Layout> {
        if md.pattern & pattern::F_RELEASED != 0 {
            return Err(Error::new(libc::ENODATA).ctx("the file is released (HSM)"));
        }
        if md.stripe_size == 0 {
            return Err(Error::new(libc::EINVAL).ctx("layout with stripe size 0"));
        }
        let mut stripes = Vec::with_capacity(md.objects.len());
        for o in &md.objects {
            let ost = o.l_ost_idx.get();
            let fid = o.l_ost_oi.to_fid(ost).map_err(Error::from)?;
            stripes.push(Stripe { ost, fid });
        }
        if stripes.is_empty() {
            return Err(Error::new(libc::ENODATA).ctx("layout without objects"));
        }
        Ok(Layout { stripe_size: u64::from(md.stripe_size), stripes })
    }

    fn count(&self) -> u64 {
        self.stripes.len() as u64
    }

    /// Where file offset `off` lives: (stripe, object offset).
    #[must_use]
    pub fn locate(&self, off: u64) -> (usize, u64) {
        let ss = self.stripe_size;
        let n = self.count();
        let chunk = off / ss;
        let stripe = usize::try_from(chunk % n).unwrap_or(0);
        (stripe, (chunk / n) * ss + off % ss)
    }

    /// The file offset of object offset `obj_off` of stripe `stripe`.
    #[must_use]
    pub fn file_offset(&self, stripe: usize, obj_off: u64) -> u64 {
        let ss = self.stripe_size;
        let round = obj_off / ss;
        (round * self.count() + stripe as u64) * ss + obj_off % ss
    }

    /// Splits a file range into per-object pieces, in file order.
    #[must_use]
    pub fn chunks(&self, off: u64, len: u64) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut pos = off;
        let end = off.saturating_add(len);
        while pos < end {
            let (stripe, obj_off) = self.locate(pos);
            let room = self.stripe_size - pos % self.stripe_size;
            let n = room.min(end - pos);
            out.push(Chunk { stripe, obj_off, file_off: pos, len: n });
            pos += n;
        }
        out
    }

    /// Merges the pieces of one stripe into contiguous object ranges `(obj_off, len)`.
    #[must_use]
    pub fn object_ranges(&self, off: u64, len: u64) -> Vec<Vec<(u64, u64)>> {
        let mut per: Vec<Vec<(u64, u64)>> = vec![Vec::new(); self.stripes.len()];
        for c in self.chunks(off, len) {
            let v = &mut per[c.stripe];
            match v.last_mut() {
                Some(last) if last.0 + last.1 == c.obj_off => last.1 += c.len,
                _ => v.push((c.obj_off, c.len)),
            }
        }
        per
    }

    /// The file size implied by each object's size (the largest file offset any object's
    /// last byte maps to).
    #[must_use]
    pub fn file_size(&self, object_sizes: &[u64]) -> u64 {
        object_sizes
            .iter()
            .enumerate()
            .filter(|(_, s)| **s > 0)
            .map(|(i, s)| self.file_offset(i, s - 1) + 1)
            .max()
            .unwrap_or(0)
    }

    /// The size stripe `i`'s object has in a file of `size` bytes.
    #[must_use]
    pub fn object_size(&self, size: u64, i: usize) -> u64 {
        let ss = self.stripe_size;
        let n = self.count();
        let i = i as u64;
        let stripe = size / ss;
        let full_rounds = stripe / n;
        let within = size % ss;
        match (stripe % n).cmp(&i) {
            std::cmp::Ordering::Greater => (full_rounds + 1) * ss,
            std::cmp::Ordering::Equal => full_rounds * ss + within,
            std::cmp::Ordering::Less => full_rounds * ss,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(ss: u64, n: usize) -> Layout {
        Layout {
            stripe_size: ss,
            stripes: (0..n)
                .map(|i| Stripe {
                    ost: u32::try_from(i).unwrap(),
                    fid: LuFid::new(0x2_0000_0400, u32::try_from(i).unwrap() + 1, 0),
                })
                .collect(),
        }
    }

    #[test]
    fn chunks_cover_the_range_in_order() {
        let l = layout(4, 3);
        let c = l.chunks(2, 13);
        let total: u64 = c.iter().map(|x| x.len).sum();
        assert_eq!(total, 13);
        assert_eq!(c[0], Chunk { stripe: 0, obj_off: 2, file_off: 2, len: 2 });
        assert_eq!(c[1], Chunk { stripe: 1, obj_off: 0, file_off: 4, len: 4 });
        assert_eq!(c[2], Chunk { stripe: 2, obj_off: 0, file_off: 8, len: 4 });
        assert_eq!(c[3], Chunk { stripe: 0, obj_off: 4, file_off: 12, len: 3 });
        for x in &c {
            assert_eq!(l.locate(x.file_off), (x.stripe, x.obj_off));
            assert_eq!(l.file_offset(x.stripe, x.obj_off), x.file_off);
        }
    }

    #[test]
    fn sizes_round_trip() {
        for n in 1..5 {
            let l = layout(8, n);
            for size in 0..100 {
                let objs: Vec<u64> = (0..n).map(|i| l.object_size(size, i)).collect();
                assert_eq!(objs.iter().sum::<u64>(), size);
                assert_eq!(l.file_size(&objs), size, "n={n} size={size}");
            }
        }
    }

    #[test]
    fn object_ranges_merge_per_stripe() {
        let l = layout(4, 2);
        let r = l.object_ranges(0, 16);
        assert_eq!(r, vec![vec![(0, 8)], vec![(0, 8)]]);
    }
}

//! Layouts of new files: stripe count, size and first OST from the request (`lov_user_md`),
//! the parent directory's default, or the file system's default; OST objects from the MDT
//! shard's precreated pools ([`crate::osp`]).

use crate::shard::Shard;
use osd_nvme::LuFid;
use proto::fid::OstId;
use proto::lov::{
    LOV_ALL_STRIPES, LOV_OFFSET_DEFAULT, LovForm, LovMd, LovOstDataV1, magic, pattern,
};
use std::rc::Rc;

/// Directory default layout xattr (`lfs setstripe -d`-able).
pub const XATTR_DEFAULT_LOV: &[u8] = b"trusted.lov";

/// Striping parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Striping {
    /// Stripe size.
    pub size: u32,
    /// Stripe count (0 = default, 0xffff = all OSTs).
    pub count: u16,
    /// First OST (0xffff = any).
    pub offset: u16,
    /// Pool (v3).
    pub pool: String,
}

impl Striping {
    /// Parameters from a user layout (v1/v3/specific); fields left 0 inherit from `dflt`.
    pub fn from_user(buf: &[u8], dflt: &Striping) -> Result<Striping, i32> {
        let l = LovMd::decode(buf, LovForm::User).map_err(|_| -libc::EINVAL)?;
        Ok(Striping {
            size: if l.stripe_size == 0 { dflt.size } else { l.stripe_size },
            count: if l.stripe_count == 0 { dflt.count } else { l.stripe_count },
            offset: l.layout_gen,
            pool: l.pool,
        })
    }

    /// As a user layout (what `lfs getstripe` shows for a directory default).
    #[must_use]
    pub fn to_user(&self) -> Vec<u8> {
        let l = LovMd {
            magic: if self.pool.is_empty() { magic::V1 } else { magic::V3 },
            pattern: pattern::RAID0,
            oi: OstId::default(),
            stripe_size: self.size,
            stripe_count: self.count,
            layout_gen: self.offset,
            pool: self.pool.clone(),
            objects: Vec::new(),
        };
        l.to_vec().unwrap_or_default()
    }
}

/// The OSTs of the file system (their indexes), as the MGS knows them.
pub async fn ost_indexes(sh: &Rc<Shard>) -> Vec<u32> {
    crate::ost::known_osts(sh).await
}

/// Builds and allocates the layout of a new file.
pub async fn allocate(
    sh: &Rc<Shard>,
    index: u32,
    file: LuFid,
    want: &Striping,
) -> Result<Vec<u8>, i32> {
    let mut osts = ost_indexes(sh).await;
    // A node whose MGS is elsewhere learns of OSTs within one MGC poll of their registration:
    // wait that long before saying there is no space, as Lustre's OSP waits for precreation.
    let waited = std::time::Instant::now();
    while osts.is_empty() && !sh.cfg.local_mgs() && waited.elapsed() < 2 * crate::mgc::POLL {
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        osts = ost_indexes(sh).await;
    }
    if osts.is_empty() {
        return Err(-libc::ENOSPC);
    }
    let count = match want.count {
        0 => 1,
        LOV_ALL_STRIPES => osts.len(),
        c => usize::from(c).min(osts.len()),
    };
    let start = if want.offset == LOV_OFFSET_DEFAULT {
        // Round robin over OSTs by the file's object id.
        usize::try_from(u64::from(file.oid()) % osts.len() as u64).unwrap_or(0)
    } else {
        osts.iter().position(|&o| o == u32::from(want.offset)).ok_or(-libc::EINVAL)?
    };
    let mut objects = Vec::with_capacity(count);
    for i in 0..count {
        let ost = osts[(start + i) % osts.len()];
        let fid = crate::osp::alloc(sh, index, ost).await?;
        objects.push(LovOstDataV1 {
            l_ost_oi: OstId::from_fid(fid),
            l_ost_gen: 0.into(),
            l_ost_idx: ost.into(),
        });
    }
    let l = LovMd {
        magic: if want.pool.is_empty() { magic::V1 } else { magic::V3 },
        pattern: pattern::RAID0,
        oi: OstId::from_fid(file),
        stripe_size: want.size,
        stripe_count: u16::try_from(count).unwrap_or(1),
        layout_gen: 0,
        pool: want.pool.clone(),
        objects,
    };
    l.to_vec().map_err(|_| -libc::EINVAL)
}

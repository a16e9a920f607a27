//! Layouts of new files: stripe count, size and first OST from the request (`lov_user_md`),
//! the parent directory's default, or the file system's default; OST objects named from
//! per-shard counters (IDIF FIDs of each OST, `ost_idx << 16 | objid >> 32` in the sequence).

use super::{OST_OBJID_BASE, mdt};
use crate::shard::Shard;
use osd_nvme::{LuFid, Osd};
use proto::fid::{OstId, seq};
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

/// Allocates `n` object ids for OST `ost` from this shard's counter.
async fn alloc_objids(sh: &Rc<Shard>, index: u32, ost: u32, n: u64) -> Result<u64, i32> {
    let m = mdt(sh, index)?;
    let fid = LuFid::new(seq::LOCAL_FILE, OST_OBJID_BASE + ost, 0);
    let osd = &m.store.osd;
    let exists = osd.exists(&fid).await;
    let cur = if exists {
        let mut b = [0u8; 8];
        osd.read(&fid, 0, &mut [&mut b]).await.map_err(|e| super::store::errno_of(&e))?;
        u64::from_le_bytes(b)
    } else {
        1
    };
    let mut th = osd.trans_create();
    if !exists {
        th.declare_create(&fid);
    }
    th.declare_write(&fid, 0, 8);
    if sh.cfg.sync_journal {
        th.set_sync();
    }
    osd.trans_start(&mut th).await.map_err(|e| super::store::errno_of(&e))?;
    let r = async {
        if !exists {
            osd.create(
                &mut th,
                &fid,
                osd_nvme::ObjType::Regular,
                &osd_nvme::Attr { mode: 0o100600, ..osd_nvme::Attr::default() },
            )
            .await?;
        }
        osd.write(&mut th, &fid, 0, &[&(cur + n).to_le_bytes()]).await
    }
    .await;
    osd.trans_stop(th).await.map_err(|e| super::store::errno_of(&e))?;
    r.map_err(|e| super::store::errno_of(&e))?;
    Ok(cur)
}

/// The FID of object `k` (per shard) of OST `ost`, allocated by MDT shard `shard` of `n`.
#[must_use]
pub fn ost_object_fid(ost: u32, k: u64, shard: usize, n: usize) -> LuFid {
    // Object ids interleave per MDT shard so shards never hand out the same one.
    let objid = k * n as u64 + shard as u64;
    let s = seq::IDIF | (u64::from(ost & 0xffff) << 16) | ((objid >> 32) & 0xffff);
    LuFid::new(s, (objid & 0xffff_ffff) as u32, 0)
}

/// Builds and allocates the layout of a new file.
pub async fn allocate(
    sh: &Rc<Shard>,
    index: u32,
    file: LuFid,
    want: &Striping,
) -> Result<Vec<u8>, i32> {
    let osts = ost_indexes(sh).await;
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
        let k = alloc_objids(sh, index, ost, 1).await?;
        let fid = ost_object_fid(ost, k, sh.id, sh.n);
        crate::ost::create_object(sh, ost, fid).await?;
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

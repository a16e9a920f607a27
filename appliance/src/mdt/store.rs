//! One shard's part of an MDT on its OSD: objects, directory entries, xattrs, and the atomic
//! application of [`SubOp`] lists.

use super::subop::SubOp;
use crate::store::AnyOsd;
use osd_nvme::{Attr, AttrMask, LuFid, ObjType, Osd, OsdError, XattrMode};
use proto::dir::DirEntry;
use proto::fid::seq;
use std::cell::RefCell;
use std::collections::HashMap;

/// The layout xattr.
pub const XATTR_LOV: &[u8] = b"trusted.lov";
/// Files unlinked while open: destroyed at their last close, or at the next mount.
pub const ORPHANS: LuFid = LuFid::new(seq::LOCAL_FILE, 5, 0);

/// Maps an OSD error to a negative errno.
#[must_use]
pub fn errno_of(e: &OsdError) -> i32 {
    -e.errno()
}

/// The value of a directory entry: FID and `S_IFMT` bits.
#[must_use]
pub fn dirent_value(fid: &LuFid, ftype: u32) -> [u8; 20] {
    let mut v = [0u8; 20];
    v[..8].copy_from_slice(&fid.seq().to_le_bytes());
    v[8..12].copy_from_slice(&fid.oid().to_le_bytes());
    v[12..16].copy_from_slice(&fid.ver().to_le_bytes());
    v[16..].copy_from_slice(&ftype.to_le_bytes());
    v
}

/// Parses a directory entry value.
#[must_use]
pub fn parse_dirent(v: &[u8]) -> Option<(LuFid, u32)> {
    let s = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let o = u32::from_le_bytes(v.get(8..12)?.try_into().ok()?);
    let ver = u32::from_le_bytes(v.get(12..16)?.try_into().ok()?);
    let t = u32::from_le_bytes(v.get(16..20)?.try_into().ok()?);
    Some((LuFid::new(s, o, ver), t))
}

/// The OSD object type for a mode.
#[must_use]
pub fn obj_type_of(mode: u32) -> Option<ObjType> {
    use osd_nvme::types::mode as m;
    Some(match mode & m::S_IFMT {
        m::S_IFREG => ObjType::Regular,
        m::S_IFDIR => ObjType::Dir,
        m::S_IFLNK => ObjType::Symlink,
        m::S_IFCHR => ObjType::CharDev,
        m::S_IFBLK => ObjType::BlockDev,
        m::S_IFIFO => ObjType::Fifo,
        m::S_IFSOCK => ObjType::Socket,
        _ => return None,
    })
}

/// What an apply did besides its changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The OSD transaction number.
    pub transno: u64,
    /// Objects destroyed, with their layouts (whose OST objects must go too).
    pub destroyed: Vec<(LuFid, Vec<u8>)>,
}

/// One shard's MDT store.
#[derive(Debug)]
pub struct MdtStore {
    /// The shard's OSD.
    pub osd: AnyOsd,
    /// Open counts of objects of this shard (a file at nlink 0 stays while open).
    pub open_counts: RefCell<HashMap<LuFid, u32>>,
}

impl MdtStore {
    /// A store over `osd`.
    #[must_use]
    pub fn new(osd: AnyOsd) -> MdtStore {
        MdtStore { osd, open_counts: RefCell::new(HashMap::new()) }
    }

    /// Attributes (-ENOENT if absent).
    pub async fn attr(&self, fid: &LuFid) -> Result<Attr, i32> {
        self.osd.attr_get(fid).await.map_err(|e| errno_of(&e))
    }

    /// Object type.
    pub async fn obj_type(&self, fid: &LuFid) -> Result<ObjType, i32> {
        self.osd.obj_type(fid).await.map_err(|e| errno_of(&e))
    }

    /// Looks `name` up in `dir`: `Ok(None)` when absent, -ENOTDIR when `dir` is not one.
    pub async fn lookup(&self, dir: &LuFid, name: &[u8]) -> Result<Option<(LuFid, u32)>, i32> {
        match self.osd.obj_type(dir).await.map_err(|e| errno_of(&e))? {
            ObjType::Dir => {}
            _ => return Err(-libc::ENOTDIR),
        }
        match self.osd.index_lookup(dir, name).await {
            Ok(v) => Ok(parse_dirent(&v)),
            Err(OsdError::NoKey) => Ok(None),
            Err(e) => Err(errno_of(&e)),
        }
    }

    /// Whether a directory holds only `.` and `..`.
    pub async fn dir_is_empty(&self, dir: &LuFid) -> Result<bool, i32> {
        let page = self.osd.index_iter(dir, 0, 3).await.map_err(|e| errno_of(&e))?;
        Ok(page.entries.iter().all(|e| e.key == b"." || e.key == b".."))
    }

    /// Directory entries from hash `start`, at most `max` of them (more if they share the last
    /// hash), and the hash to continue from.
    pub async fn readdir(
        &self,
        dir: &LuFid,
        start: u64,
        max: usize,
    ) -> Result<(Vec<DirEntry>, Option<u64>), i32> {
        if self.obj_type(dir).await? != ObjType::Dir {
            return Err(-libc::ENOTDIR);
        }
        let page = self.osd.index_iter(dir, start, max).await.map_err(|e| errno_of(&e))?;
        let entries = page
            .entries
            .into_iter()
            .filter_map(|e| {
                let (fid, t) = parse_dirent(&e.value)?;
                Some(DirEntry {
                    fid,
                    hash: e.cookie,
                    name: e.key,
                    mode_type: u16::try_from(t).ok(),
                })
            })
            .collect();
        Ok((entries, page.next))
    }

    /// An xattr's value.
    pub async fn xattr(&self, fid: &LuFid, name: &[u8]) -> Result<Vec<u8>, i32> {
        let n = self.osd.xattr_get(fid, name, &mut []).await.map_err(|e| errno_of(&e))?;
        let mut v = vec![0u8; n];
        let n = self.osd.xattr_get(fid, name, &mut v).await.map_err(|e| errno_of(&e))?;
        v.truncate(n);
        Ok(v)
    }

    /// The layout, if the object has one.
    pub async fn layout(&self, fid: &LuFid) -> Result<Option<Vec<u8>>, i32> {
        match self.xattr(fid, XATTR_LOV).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e == -libc::ENODATA => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A symlink's target.
    pub async fn symlink(&self, fid: &LuFid) -> Result<Vec<u8>, i32> {
        let a = self.attr(fid).await?;
        let mut v = vec![0u8; usize::try_from(a.size).map_err(|_| -libc::EIO)?];
        let n = self.osd.read(fid, 0, &mut [&mut v]).await.map_err(|e| errno_of(&e))?;
        v.truncate(n);
        Ok(v)
    }

    /// Every xattr name of an object.
    pub async fn osd_xattr_list(&self, fid: &LuFid) -> Result<Vec<Vec<u8>>, i32> {
        self.osd.xattr_list(fid).await.map_err(|e| errno_of(&e))
    }

    /// Whether the object is open on this shard.
    #[must_use]
    pub fn is_open(&self, fid: &LuFid) -> bool {
        self.open_counts.borrow().get(fid).copied().unwrap_or(0) > 0
    }

    /// Checks that `ops` can be applied now (the caller holds the object locks): names exist
    /// or not as required, objects exist, directories to remove are empty.
    pub async fn validate(&self, ops: &[SubOp]) -> Result<(), i32> {
        // Ops apply in order, so each sees the names the earlier ones inserted or deleted
        // (a rename over an existing name deletes it before inserting the new entry).
        let mut names: std::collections::HashMap<(LuFid, Vec<u8>), Option<LuFid>> =
            std::collections::HashMap::new();
        let mut created: std::collections::HashSet<LuFid> = std::collections::HashSet::new();
        for op in ops {
            match op {
                SubOp::Insert { dir, name, fid, .. } => {
                    let key = (*dir, name.clone());
                    let cur = match names.get(&key) {
                        Some(v) => *v,
                        None => self.lookup(dir, name).await?.map(|x| x.0),
                    };
                    if cur.is_some_and(|c| c != *fid) {
                        log::debug!("insert {dir}/{}: exists", String::from_utf8_lossy(name));
                        return Err(-libc::EEXIST);
                    }
                    names.insert(key, Some(*fid));
                }
                SubOp::Delete { dir, name, fid } => {
                    let key = (*dir, name.clone());
                    let cur = match names.get(&key) {
                        Some(v) => *v,
                        None => self.lookup(dir, name).await?.map(|x| x.0),
                    };
                    if cur != Some(*fid) {
                        return Err(-libc::ENOENT);
                    }
                    names.insert(key, None);
                }
                SubOp::Create { fid, .. } => {
                    if created.contains(fid) || self.osd.exists(fid).await {
                        log::debug!("create {fid}: exists");
                        return Err(-libc::EEXIST);
                    }
                    created.insert(*fid);
                }
                SubOp::Nlink { fid, .. }
                | SubOp::SetAttr { fid, .. }
                | SubOp::SetXattr { fid, .. }
                | SubOp::DelXattr { fid, .. } => {
                    if !created.contains(fid) {
                        self.attr(fid).await?;
                    }
                }
                SubOp::SetDotdot { dir, .. } => {
                    if !created.contains(dir) {
                        self.lookup(dir, b"..").await?;
                    }
                }
            }
        }
        Ok(())
    }

    fn declare(th: &mut osd_nvme::Txn, op: &SubOp) {
        match op {
            SubOp::Insert { dir, name, .. } => th.declare_index_insert(dir, name.len(), 20),
            SubOp::Delete { dir, name, .. } => th.declare_index_delete(dir, name.len()),
            SubOp::Create { fid, xattrs, symlink, ty, .. } => {
                th.declare_create(fid);
                for (n, v) in xattrs {
                    th.declare_xattr_set(fid, n.len(), v.len());
                }
                if !symlink.is_empty() {
                    th.declare_write(fid, 0, symlink.len() as u64);
                }
                if *ty == ObjType::Dir {
                    th.declare_index_insert(fid, 1, 20);
                    th.declare_index_insert(fid, 2, 20);
                }
                th.declare_attr_set(fid);
            }
            SubOp::Nlink { fid, .. } => {
                th.declare_attr_set(fid);
                th.declare_destroy(fid);
                th.declare_index_insert(&ORPHANS, 16, 0);
            }
            SubOp::SetAttr { fid, .. } => th.declare_attr_set(fid),
            SubOp::SetDotdot { dir, .. } => {
                th.declare_index_delete(dir, 2);
                th.declare_index_insert(dir, 2, 20);
            }
            SubOp::SetXattr { fid, name, value, .. } => {
                th.declare_xattr_set(fid, name.len(), value.len())
            }
            SubOp::DelXattr { fid, name } => th.declare_xattr_del(fid, name.len()),
        }
    }

    /// Applies `ops` in one transaction (with `extra` changes run in it, e.g. an intent-log
    /// marker). Returns the transaction number and the objects destroyed.
    pub async fn apply(
        &self,
        ops: &[SubOp],
        sync: bool,
        extra: Option<(&LuFid, Vec<u8>, Vec<u8>)>,
    ) -> Result<Applied, i32> {
        let osd = &self.osd;
        let mut th = osd.trans_create();
        for op in ops {
            Self::declare(&mut th, op);
        }
        if let Some((idx, k, v)) = &extra {
            th.declare_index_insert(idx, k.len(), v.len());
        }
        if sync {
            th.set_sync();
        }
        osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
        let mut out = Applied::default();
        let r = self.execute(&mut th, ops, &mut out).await;
        let r = match (r, extra) {
            (Ok(()), Some((idx, k, v))) => {
                osd.index_insert(&mut th, idx, &k, &v).await.map_err(|e| errno_of(&e))
            }
            (r, _) => r,
        };
        let transno = osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
        r?;
        out.transno = transno;
        Ok(out)
    }

    async fn execute(
        &self,
        th: &mut osd_nvme::Txn,
        ops: &[SubOp],
        out: &mut Applied,
    ) -> Result<(), i32> {
        let osd = &self.osd;
        let e = |e: OsdError| errno_of(&e);
        for op in ops {
            match op {
                SubOp::Insert { dir, name, fid, ftype } => {
                    match osd.index_insert(th, dir, name, &dirent_value(fid, *ftype)).await {
                        Ok(()) => {}
                        // Replay of an insert that already happened.
                        Err(OsdError::KeyExists)
                            if self.lookup(dir, name).await?.is_some_and(|(f, _)| f == *fid) => {}
                        Err(x) => return Err(e(x)),
                    }
                }
                SubOp::Delete { dir, name, .. } => match osd.index_delete(th, dir, name).await {
                    Ok(()) | Err(OsdError::NoKey) => {}
                    Err(x) => return Err(e(x)),
                },
                SubOp::Create { fid, ty, attr, parent, xattrs, symlink } => {
                    if osd.exists(fid).await {
                        continue; // replay
                    }
                    osd.create(th, fid, *ty, attr).await.map_err(e)?;
                    for (n, v) in xattrs {
                        osd.xattr_set(th, fid, n, v, XattrMode::Upsert).await.map_err(e)?;
                    }
                    if !symlink.is_empty() {
                        osd.write(th, fid, 0, &[symlink]).await.map_err(e)?;
                    }
                    if *ty == ObjType::Dir {
                        osd.index_insert(
                            th,
                            fid,
                            b".",
                            &dirent_value(fid, osd_nvme::types::mode::S_IFDIR),
                        )
                        .await
                        .map_err(e)?;
                        osd.index_insert(
                            th,
                            fid,
                            b"..",
                            &dirent_value(parent, osd_nvme::types::mode::S_IFDIR),
                        )
                        .await
                        .map_err(e)?;
                    }
                }
                SubOp::Nlink { fid, delta, ctime } => {
                    let mut a = match osd.attr_get(fid).await {
                        Ok(a) => a,
                        Err(OsdError::NoObject(_)) => continue, // replay after destroy
                        Err(x) => return Err(e(x)),
                    };
                    let n = i64::from(a.nlink) + i64::from(*delta);
                    a.nlink = u32::try_from(n.max(0)).unwrap_or(0);
                    a.ctime = *ctime;
                    if a.nlink == 0 {
                        let layout = self.layout(fid).await.unwrap_or_default().unwrap_or_default();
                        if self.is_open(fid) {
                            osd.attr_set(th, fid, AttrMask::NLINK | AttrMask::CTIME, &a)
                                .await
                                .map_err(e)?;
                            let _ = osd.index_insert(th, &ORPHANS, &fid_key(fid), &[]).await;
                        } else {
                            osd.destroy(th, fid).await.map_err(e)?;
                            out.destroyed.push((*fid, layout));
                        }
                    } else {
                        osd.attr_set(th, fid, AttrMask::NLINK | AttrMask::CTIME, &a)
                            .await
                            .map_err(e)?;
                    }
                }
                SubOp::SetAttr { fid, mask, attr } => {
                    osd.attr_set(th, fid, *mask, attr).await.map_err(e)?
                }
                SubOp::SetDotdot { dir, parent } => {
                    let _ = osd.index_delete(th, dir, b"..").await;
                    osd.index_insert(
                        th,
                        dir,
                        b"..",
                        &dirent_value(parent, osd_nvme::types::mode::S_IFDIR),
                    )
                    .await
                    .map_err(e)?;
                }
                SubOp::SetXattr { fid, name, value, mode } => {
                    osd.xattr_set(th, fid, name, value, *mode).await.map_err(e)?
                }
                SubOp::DelXattr { fid, name } => osd.xattr_del(th, fid, name).await.map_err(e)?,
            }
        }
        Ok(())
    }

    /// Destroys an orphan at its last close (or at mount). Returns its layout.
    pub async fn destroy_orphan(&self, fid: &LuFid) -> Result<Vec<u8>, i32> {
        let layout = self.layout(fid).await.unwrap_or_default().unwrap_or_default();
        let mut th = self.osd.trans_create();
        th.declare_destroy(fid);
        th.declare_index_delete(&ORPHANS, 16);
        self.osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
        let r = self.osd.destroy(&mut th, fid).await;
        let _ = self.osd.index_delete(&mut th, &ORPHANS, &fid_key(fid)).await;
        self.osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
        match r {
            Ok(()) | Err(OsdError::NoObject(_)) => Ok(layout),
            Err(x) => Err(errno_of(&x)),
        }
    }
}

/// An index key for a FID (big-endian so keys sort by FID).
#[must_use]
pub fn fid_key(fid: &LuFid) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&fid.seq().to_be_bytes());
    k[8..12].copy_from_slice(&fid.oid().to_be_bytes());
    k[12..].copy_from_slice(&fid.ver().to_be_bytes());
    k
}

/// The FID of an index key made by [`fid_key`].
#[must_use]
pub fn key_fid(k: &[u8]) -> Option<LuFid> {
    Some(LuFid::new(
        u64::from_be_bytes(k.get(..8)?.try_into().ok()?),
        u32::from_be_bytes(k.get(8..12)?.try_into().ok()?),
        u32::from_be_bytes(k.get(12..16)?.try_into().ok()?),
    ))
}

//! The object model both OSDs share: objects by FID with attributes, xattrs, a block map or
//! an index. Updates are redo records ([`Rec`]) that are validated once (`prep_*`) and then
//! applied by one deterministic function ([`Store::apply`]) at run time and again at journal
//! replay, so what recovery rebuilds is exactly what ran.
//!
//! `B` is what a body block is: a device block reference for the persistent OSD, the bytes
//! themselves for the memory OSD.

use std::collections::BTreeMap;
use std::ops::Bound;

use proto::fid::LuFid;

use crate::error::{OsdError, Result};
use crate::types::{
    Attr, AttrMask, INDEX_KEY_MAX, INDEX_VALUE_MAX, IndexEntry, IndexPage, NAME_MAX, ObjType,
    XATTR_NAME_MAX, XATTR_SIZE_MAX, XattrMode, dir_hash, key_cookie, mode,
};

/// Bytes an object record takes in a checkpoint (fid, type, attributes, framing).
pub(crate) const OBJ_META: u64 = 16 + 1 + crate::codec::ATTR_LEN as u64 + 8;
/// Fixed bytes of an xattr record besides name and value.
pub(crate) const XATTR_META: u64 = 16 + 2 + 4 + 8;
/// Fixed bytes of an index record besides key and value.
pub(crate) const INDEX_META: u64 = 16 + 2 + 4 + 8;
/// Upper bound of checkpoint bytes per mapped block (a one-block extent).
pub(crate) const BLOCK_META: u64 = 32;

/// Memory estimates used for the cache budget (B-tree nodes, allocation headers).
const OBJ_MEM: u64 = 320;
const ENTRY_MEM: u64 = 96;
const BLOCK_MEM: u64 = 48;

/// An object's block map: logical block -> block.
pub(crate) trait BodyMap<B>: Default + Clone + PartialEq + Eq + core::fmt::Debug {
    /// The block at `l`.
    fn lookup(&self, l: u64) -> Option<B>;
    /// Maps `l` to `b`; returns what was there.
    fn map_block(&mut self, l: u64, b: B) -> Option<B>;
    /// Unmaps `from..to`; returns what was there.
    fn unmap_range(&mut self, from: u64, to: u64) -> Vec<B>;
    /// Mapped blocks.
    fn count(&self) -> u64;
    /// Memory estimate.
    fn mem(&self) -> u64;
    /// Upper bound of its checkpoint bytes.
    fn meta(&self) -> u64;
    /// Every mapping in logical order.
    fn blocks_iter(&self) -> impl Iterator<Item = (u64, B)> + '_;
}

/// A kind of body block and the map that holds it.
pub(crate) trait BodyBlock: Clone + PartialEq + Eq + core::fmt::Debug + Sized {
    type Map: BodyMap<Self>;
}

/// The plain per-block map (memory OSD: the blocks are the bytes).
impl<B: Clone + PartialEq + Eq + core::fmt::Debug> BodyMap<B> for BTreeMap<u64, B> {
    fn lookup(&self, l: u64) -> Option<B> {
        self.get(&l).cloned()
    }
    fn map_block(&mut self, l: u64, b: B) -> Option<B> {
        self.insert(l, b)
    }
    fn unmap_range(&mut self, from: u64, to: u64) -> Vec<B> {
        if from >= to {
            return Vec::new();
        }
        let keys: Vec<u64> = self.range(from..to).map(|(k, _)| *k).collect();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }
    fn count(&self) -> u64 {
        self.len() as u64
    }
    fn mem(&self) -> u64 {
        self.len() as u64 * BLOCK_MEM
    }
    fn meta(&self) -> u64 {
        self.len() as u64 * BLOCK_META
    }
    fn blocks_iter(&self) -> impl Iterator<Item = (u64, B)> + '_ {
        self.iter().map(|(k, v)| (*k, v.clone()))
    }
}

impl BodyBlock for Box<[u8]> {
    type Map = BTreeMap<u64, Box<[u8]>>;
}

#[cfg(test)]
impl BodyBlock for u32 {
    type Map = BTreeMap<u64, u32>;
}

/// One object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Obj<B: BodyBlock> {
    pub(crate) ty: ObjType,
    pub(crate) attr: Attr,
    pub(crate) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Logical block number -> block (regular objects, symlinks).
    pub(crate) body: B::Map,
    /// Internal key -> value (index objects). Directory keys are `hash_be ++ name`.
    pub(crate) index: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A redo record: one validated update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rec<B> {
    Create {
        fid: LuFid,
        ty: ObjType,
        attr: Attr,
    },
    Destroy {
        fid: LuFid,
    },
    AttrSet {
        fid: LuFid,
        mask: AttrMask,
        attr: Attr,
    },
    XattrSet {
        fid: LuFid,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    XattrDel {
        fid: LuFid,
        name: Vec<u8>,
    },
    IndexInsert {
        fid: LuFid,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    IndexDelete {
        fid: LuFid,
        key: Vec<u8>,
    },
    /// Maps `blocks` at `lblk..`, replacing what was there; size becomes max(size, `size`).
    Map {
        fid: LuFid,
        lblk: u64,
        blocks: Vec<B>,
        size: u64,
    },
    /// Unmaps logical blocks `from..to`.
    Unmap {
        fid: LuFid,
        from: u64,
        to: u64,
    },
}

/// All objects of one OSD, with running totals of their checkpoint size and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Store<B: BodyBlock> {
    pub(crate) objs: BTreeMap<LuFid, Obj<B>>,
    /// Upper bound of the checkpoint image's record bytes.
    pub(crate) meta_bytes: u64,
    /// Estimate of the memory the objects take.
    pub(crate) mem_bytes: u64,
}

impl<B: BodyBlock> Default for Store<B> {
    fn default() -> Self {
        Store { objs: BTreeMap::new(), meta_bytes: 0, mem_bytes: 0 }
    }
}

fn internal_key(ty: ObjType, key: &[u8]) -> Vec<u8> {
    if ty == ObjType::Dir {
        let mut k = Vec::with_capacity(8 + key.len());
        k.extend_from_slice(&dir_hash(key).to_be_bytes());
        k.extend_from_slice(key);
        k
    } else {
        key.to_vec()
    }
}

fn user_key(ty: ObjType, ikey: &[u8]) -> Vec<u8> {
    if ty == ObjType::Dir { ikey.get(8..).unwrap_or_default().to_vec() } else { ikey.to_vec() }
}

/// Validates a record's lengths (also used on records read back from disk).
pub(crate) fn check_lengths(name_or_key: &[u8], value: &[u8], is_xattr: bool) -> Result<()> {
    let (kmax, vmax, kwhat, vwhat) = if is_xattr {
        (XATTR_NAME_MAX, XATTR_SIZE_MAX, "xattr name", "xattr value")
    } else {
        (INDEX_KEY_MAX + 8, INDEX_VALUE_MAX, "index key", "index value")
    };
    if name_or_key.is_empty() {
        return Err(OsdError::Invalid("empty name or key"));
    }
    if name_or_key.len() > kmax {
        return Err(OsdError::TooLong { what: kwhat, len: name_or_key.len(), max: kmax });
    }
    if value.len() > vmax {
        return Err(OsdError::TooLong { what: vwhat, len: value.len(), max: vmax });
    }
    Ok(())
}

impl<B: BodyBlock> Store<B> {
    pub(crate) fn get(&self, fid: &LuFid) -> Result<&Obj<B>> {
        self.objs.get(fid).ok_or(OsdError::NoObject(*fid))
    }

    pub(crate) fn attr_get(&self, fid: &LuFid) -> Result<Attr> {
        let o = self.get(fid)?;
        let mut a = o.attr;
        a.blocks = o.body.count() * 8;
        Ok(a)
    }

    pub(crate) fn body_obj(&self, fid: &LuFid, op: &'static str) -> Result<&Obj<B>> {
        let o = self.get(fid)?;
        if o.ty.is_index() {
            return Err(OsdError::WrongType { op, fid: *fid });
        }
        Ok(o)
    }

    fn index_obj(&self, fid: &LuFid, op: &'static str) -> Result<&Obj<B>> {
        let o = self.get(fid)?;
        if !o.ty.is_index() {
            return Err(OsdError::WrongType { op, fid: *fid });
        }
        Ok(o)
    }

    // ---- validation: each returns the record to apply, or an error with nothing changed ----

    pub(crate) fn prep_create(&self, fid: LuFid, ty: ObjType, attr: &Attr) -> Result<Rec<B>> {
        if self.objs.contains_key(&fid) {
            return Err(OsdError::Exists(fid));
        }
        let mut attr = *attr;
        attr.mode = (attr.mode & !mode::S_IFMT) | ty.ifmt();
        attr.blocks = 0;
        if ty.is_index() {
            attr.size = 0;
        }
        Ok(Rec::Create { fid, ty, attr })
    }

    pub(crate) fn prep_destroy(&self, fid: LuFid) -> Result<Rec<B>> {
        self.get(&fid)?;
        Ok(Rec::Destroy { fid })
    }

    pub(crate) fn prep_attr_set(&self, fid: LuFid, mask: AttrMask, attr: &Attr) -> Result<Rec<B>> {
        let o = self.get(&fid)?;
        if mask.contains(AttrMask::SIZE) && o.ty.is_index() {
            return Err(OsdError::WrongType { op: "set size", fid });
        }
        if mask.0 & !AttrMask::ALL.0 != 0 {
            return Err(OsdError::Invalid("unknown attribute bits"));
        }
        Ok(Rec::AttrSet { fid, mask, attr: *attr })
    }

    pub(crate) fn prep_ref(&self, fid: LuFid, add: bool) -> Result<Rec<B>> {
        let o = self.get(&fid)?;
        let nlink = if add {
            o.attr.nlink.checked_add(1).ok_or(OsdError::Invalid("nlink overflow"))?
        } else {
            o.attr.nlink.checked_sub(1).ok_or(OsdError::Invalid("nlink underflow"))?
        };
        let attr = Attr { nlink, ..Attr::default() };
        Ok(Rec::AttrSet { fid, mask: AttrMask::NLINK, attr })
    }

    pub(crate) fn xattr_get(&self, fid: &LuFid, name: &[u8]) -> Result<&[u8]> {
        let o = self.get(fid)?;
        o.xattrs.get(name).map(Vec::as_slice).ok_or(OsdError::NoXattr)
    }

    pub(crate) fn prep_xattr_set(
        &self,
        fid: LuFid,
        name: &[u8],
        value: &[u8],
        xmode: XattrMode,
    ) -> Result<Rec<B>> {
        check_lengths(name, value, true)?;
        let o = self.get(&fid)?;
        let present = o.xattrs.contains_key(name);
        match xmode {
            XattrMode::Create if present => return Err(OsdError::XattrExists),
            XattrMode::Replace if !present => return Err(OsdError::NoXattr),
            _ => {}
        }
        Ok(Rec::XattrSet { fid, name: name.to_vec(), value: value.to_vec() })
    }

    pub(crate) fn prep_xattr_del(&self, fid: LuFid, name: &[u8]) -> Result<Rec<B>> {
        let o = self.get(&fid)?;
        if !o.xattrs.contains_key(name) {
            return Err(OsdError::NoXattr);
        }
        Ok(Rec::XattrDel { fid, name: name.to_vec() })
    }

    fn check_index_key(ty: ObjType, key: &[u8]) -> Result<()> {
        let max = if ty == ObjType::Dir { NAME_MAX } else { INDEX_KEY_MAX };
        if key.is_empty() {
            return Err(OsdError::Invalid("empty index key"));
        }
        if key.len() > max {
            let what = if ty == ObjType::Dir { "entry name" } else { "index key" };
            return Err(OsdError::TooLong { what, len: key.len(), max });
        }
        Ok(())
    }

    pub(crate) fn index_lookup(&self, fid: &LuFid, key: &[u8]) -> Result<&[u8]> {
        let o = self.index_obj(fid, "index lookup")?;
        Self::check_index_key(o.ty, key)?;
        o.index.get(&internal_key(o.ty, key)).map(Vec::as_slice).ok_or(OsdError::NoKey)
    }

    pub(crate) fn prep_index_insert(&self, fid: LuFid, key: &[u8], value: &[u8]) -> Result<Rec<B>> {
        let o = self.index_obj(&fid, "index insert")?;
        Self::check_index_key(o.ty, key)?;
        if value.len() > INDEX_VALUE_MAX {
            return Err(OsdError::TooLong {
                what: "index value",
                len: value.len(),
                max: INDEX_VALUE_MAX,
            });
        }
        let ikey = internal_key(o.ty, key);
        if o.index.contains_key(&ikey) {
            return Err(OsdError::KeyExists);
        }
        Ok(Rec::IndexInsert { fid, key: ikey, value: value.to_vec() })
    }

    pub(crate) fn prep_index_delete(&self, fid: LuFid, key: &[u8]) -> Result<Rec<B>> {
        let o = self.index_obj(&fid, "index delete")?;
        Self::check_index_key(o.ty, key)?;
        let ikey = internal_key(o.ty, key);
        if !o.index.contains_key(&ikey) {
            return Err(OsdError::NoKey);
        }
        Ok(Rec::IndexDelete { fid, key: ikey })
    }

    pub(crate) fn index_iter(&self, fid: &LuFid, cookie: u64, max: usize) -> Result<IndexPage> {
        let o = self.index_obj(fid, "index iterate")?;
        let mut start = cookie.to_be_bytes().to_vec();
        while start.last() == Some(&0) {
            start.pop();
        }
        let mut page = IndexPage::default();
        let mut it = o.index.range::<Vec<u8>, _>((Bound::Included(&start), Bound::Unbounded));
        let max = max.max(1);
        for (k, v) in it.by_ref() {
            let c = key_cookie(k);
            if page.entries.len() >= max && page.entries.last().map(|e| e.cookie) != Some(c) {
                page.next = Some(c);
                return Ok(page);
            }
            page.entries.push(IndexEntry { cookie: c, key: user_key(o.ty, k), value: v.clone() });
        }
        page.next = None;
        Ok(page)
    }

    // ---- application ----

    fn obj_mut(&mut self, fid: &LuFid) -> Result<&mut Obj<B>> {
        self.objs
            .get_mut(fid)
            .ok_or_else(|| OsdError::corrupt("journal", format!("update of missing object {fid}")))
    }

    /// Applies a validated record; returns the blocks it released. An error means the record
    /// does not fit the state (a replay of a damaged journal), and nothing was changed.
    pub(crate) fn apply(&mut self, rec: Rec<B>) -> Result<Vec<B>> {
        let mut freed = Vec::new();
        match rec {
            Rec::Create { fid, ty, attr } => {
                if self.objs.contains_key(&fid) {
                    return Err(OsdError::corrupt("journal", format!("create of existing {fid}")));
                }
                self.objs.insert(
                    fid,
                    Obj {
                        ty,
                        attr,
                        xattrs: BTreeMap::new(),
                        body: B::Map::default(),
                        index: BTreeMap::new(),
                    },
                );
                self.meta_bytes += OBJ_META;
                self.mem_bytes += OBJ_MEM;
            }
            Rec::Destroy { fid } => {
                let o = self.objs.remove(&fid).ok_or_else(|| {
                    OsdError::corrupt("journal", format!("destroy of missing {fid}"))
                })?;
                let (mb, mm) = obj_cost(&o);
                self.meta_bytes -= mb;
                self.mem_bytes -= mm;
                freed.extend(o.body.blocks_iter().map(|(_, b)| b));
            }
            Rec::AttrSet { fid, mask, attr } => {
                let o = self.obj_mut(&fid)?;
                let a = &mut o.attr;
                if mask.contains(AttrMask::MODE) {
                    a.mode = (a.mode & mode::S_IFMT) | (attr.mode & !mode::S_IFMT);
                }
                if mask.contains(AttrMask::UID) {
                    a.uid = attr.uid;
                }
                if mask.contains(AttrMask::GID) {
                    a.gid = attr.gid;
                }
                if mask.contains(AttrMask::SIZE) {
                    a.size = attr.size;
                }
                if mask.contains(AttrMask::ATIME) {
                    a.atime = attr.atime;
                }
                if mask.contains(AttrMask::MTIME) {
                    a.mtime = attr.mtime;
                }
                if mask.contains(AttrMask::CTIME) {
                    a.ctime = attr.ctime;
                }
                if mask.contains(AttrMask::NLINK) {
                    a.nlink = attr.nlink;
                }
                if mask.contains(AttrMask::FLAGS) {
                    a.flags = attr.flags;
                }
                if mask.contains(AttrMask::PROJID) {
                    a.projid = attr.projid;
                }
                if mask.contains(AttrMask::RDEV) {
                    a.rdev = attr.rdev;
                }
            }
            Rec::XattrSet { fid, name, value } => {
                let o = self.obj_mut(&fid)?;
                let add = entry_cost(XATTR_META, &name, &value);
                let old = o.xattrs.insert(name.clone(), value);
                let sub = old.map(|v| entry_cost(XATTR_META, &name, &v));
                self.account(add, sub);
            }
            Rec::XattrDel { fid, name } => {
                let o = self.obj_mut(&fid)?;
                let old = o.xattrs.remove(&name).ok_or_else(|| {
                    OsdError::corrupt("journal", format!("delete of missing xattr on {fid}"))
                })?;
                self.account((0, 0), Some(entry_cost(XATTR_META, &name, &old)));
            }
            Rec::IndexInsert { fid, key, value } => {
                let o = self.obj_mut(&fid)?;
                if !o.ty.is_index() {
                    return Err(OsdError::corrupt("journal", format!("insert into body {fid}")));
                }
                let add = entry_cost(INDEX_META, &key, &value);
                let old = o.index.insert(key.clone(), value);
                let sub = old.map(|v| entry_cost(INDEX_META, &key, &v));
                self.account(add, sub);
            }
            Rec::IndexDelete { fid, key } => {
                let o = self.obj_mut(&fid)?;
                let old = o.index.remove(&key).ok_or_else(|| {
                    OsdError::corrupt("journal", format!("delete of missing key on {fid}"))
                })?;
                self.account((0, 0), Some(entry_cost(INDEX_META, &key, &old)));
            }
            Rec::Map { fid, lblk, blocks, size } => {
                let o = self.obj_mut(&fid)?;
                if o.ty.is_index() {
                    return Err(OsdError::corrupt("journal", format!("map on index {fid}")));
                }
                let max_blocks = crate::types::MAX_OBJECT_BYTES / crate::types::BLOCK;
                if lblk.checked_add(blocks.len() as u64).is_none_or(|e| e > max_blocks) {
                    return Err(OsdError::corrupt("journal", format!("map past the end in {fid}")));
                }
                let (m0, k0) = (o.body.meta(), o.body.mem());
                let n = blocks.len() as u64;
                freed = o.body.unmap_range(lblk, lblk + n);
                for (i, b) in blocks.into_iter().enumerate() {
                    o.body.map_block(lblk + i as u64, b);
                }
                o.attr.size = o.attr.size.max(size);
                let (m1, k1) = (o.body.meta(), o.body.mem());
                self.meta_bytes = self.meta_bytes + m1 - m0;
                self.mem_bytes = self.mem_bytes + k1 - k0;
            }
            Rec::Unmap { fid, from, to } => {
                let o = self.obj_mut(&fid)?;
                let (m0, k0) = (o.body.meta(), o.body.mem());
                freed = o.body.unmap_range(from, to);
                let (m1, k1) = (o.body.meta(), o.body.mem());
                self.meta_bytes = self.meta_bytes + m1 - m0;
                self.mem_bytes = self.mem_bytes + k1 - k0;
            }
        }
        Ok(freed)
    }

    fn account(&mut self, add: (u64, u64), sub: Option<(u64, u64)>) {
        self.meta_bytes += add.0;
        self.mem_bytes += add.1;
        if let Some((mb, mm)) = sub {
            self.meta_bytes -= mb;
            self.mem_bytes -= mm;
        }
    }
}

fn entry_cost(fixed: u64, k: &[u8], v: &[u8]) -> (u64, u64) {
    let n = (k.len() + v.len()) as u64;
    (fixed + n, ENTRY_MEM + n)
}

fn obj_cost<B: BodyBlock>(o: &Obj<B>) -> (u64, u64) {
    let mut mb = OBJ_META + o.body.meta();
    let mut mm = OBJ_MEM + o.body.mem();
    for (k, v) in &o.xattrs {
        let (a, b) = entry_cost(XATTR_META, k, v);
        mb += a;
        mm += b;
    }
    for (k, v) in &o.index {
        let (a, b) = entry_cost(INDEX_META, k, v);
        mb += a;
        mm += b;
    }
    (mb, mm)
}

/// Checkpoint bytes an update can add at most, for space reservation at transaction start.
pub(crate) fn meta_growth(kind: Growth) -> u64 {
    match kind {
        Growth::Object => OBJ_META,
        Growth::Entry(n) => INDEX_META.max(XATTR_META) + n as u64,
        // A write of n blocks may split a run in two and start one: three runs more.
        Growth::Blocks(n) => 3 * crate::disk::extent::RUN_META + n * BLOCK_META,
    }
}

/// What an update may add to the metadata.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Growth {
    Object,
    Entry(usize),
    Blocks(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: u32) -> LuFid {
        LuFid::new(0x2_0000_0400, n, 0)
    }

    #[test]
    fn accounting_returns_to_zero() {
        let mut s: Store<u32> = Store::default();
        let r = s.prep_create(f(1), ObjType::Dir, &Attr::default()).unwrap();
        s.apply(r).unwrap();
        let r = s.prep_index_insert(f(1), b"name", b"value").unwrap();
        s.apply(r).unwrap();
        let r = s.prep_xattr_set(f(1), b"trusted.lma", &[1; 100], XattrMode::Create).unwrap();
        s.apply(r).unwrap();
        assert!(s.prep_xattr_set(f(1), b"trusted.lma", b"", XattrMode::Create).is_err());
        let r = s.prep_create(f(2), ObjType::Regular, &Attr::default()).unwrap();
        s.apply(r).unwrap();
        let freed =
            s.apply(Rec::Map { fid: f(2), lblk: 3, blocks: vec![7, 8], size: 5 * 4096 }).unwrap();
        assert!(freed.is_empty());
        let freed = s.apply(Rec::Map { fid: f(2), lblk: 4, blocks: vec![9], size: 0 }).unwrap();
        assert_eq!(freed, vec![8]);
        assert_eq!(s.attr_get(&f(2)).unwrap().size, 5 * 4096);
        assert_eq!(s.attr_get(&f(2)).unwrap().blocks, 16);
        for fid in [f(1), f(2)] {
            let r = s.prep_destroy(fid).unwrap();
            s.apply(r).unwrap();
        }
        assert_eq!((s.meta_bytes, s.mem_bytes), (0, 0));
    }

    fn any_rec() -> impl proptest::strategy::Strategy<Value = Rec<u32>> {
        use proptest::prelude::*;
        let fid = (0u32..4).prop_map(f);
        let bytes = || proptest::collection::vec(any::<u8>(), 0..12);
        prop_oneof![
            (fid.clone(), 1u8..9).prop_map(|(fid, t)| Rec::Create {
                fid,
                ty: ObjType::from_code(t).unwrap(),
                attr: Attr::default()
            }),
            fid.clone().prop_map(|fid| Rec::Destroy { fid }),
            (fid.clone(), bytes(), bytes()).prop_map(|(fid, name, value)| Rec::XattrSet {
                fid,
                name,
                value
            }),
            (fid.clone(), bytes()).prop_map(|(fid, name)| Rec::XattrDel { fid, name }),
            (fid.clone(), bytes(), bytes()).prop_map(|(fid, key, value)| Rec::IndexInsert {
                fid,
                key,
                value
            }),
            (fid.clone(), bytes()).prop_map(|(fid, key)| Rec::IndexDelete { fid, key }),
            (
                fid.clone(),
                any::<u64>(),
                proptest::collection::vec(any::<u32>(), 0..5),
                any::<u64>()
            )
                .prop_map(|(fid, lblk, blocks, size)| Rec::Map {
                    fid,
                    lblk,
                    blocks,
                    size
                }),
            (fid, any::<u64>(), any::<u64>()).prop_map(|(fid, from, to)| Rec::Unmap {
                fid,
                from,
                to
            }),
        ]
    }

    proptest::proptest! {
        /// Records read back from a damaged (but checksum-valid) journal never panic `apply`,
        /// and accounting stays consistent: destroying everything returns it to zero.
        #[test]
        fn apply_never_panics(recs in proptest::collection::vec(any_rec(), 0..40)) {
            let mut s: Store<u32> = Store::default();
            for r in recs {
                let _ = s.apply(r);
            }
            let fids: Vec<LuFid> = s.objs.keys().copied().collect();
            for fid in fids {
                s.apply(Rec::Destroy { fid }).unwrap();
            }
            proptest::prop_assert_eq!((s.meta_bytes, s.mem_bytes), (0, 0));
        }
    }

    #[test]
    fn dir_iteration_by_cookie_is_stable() {
        let mut s: Store<u32> = Store::default();
        s.apply(s.prep_create(f(1), ObjType::Dir, &Attr::default()).unwrap()).unwrap();
        for i in 0..100 {
            let name = format!("file{i}");
            s.apply(s.prep_index_insert(f(1), name.as_bytes(), b"v").unwrap()).unwrap();
        }
        let mut seen = Vec::new();
        let mut cookie = 0;
        loop {
            let page = s.index_iter(&f(1), cookie, 7).unwrap();
            // Concurrent inserts/deletes behind the cursor do not disturb the walk.
            let name = format!("late{cookie}");
            s.apply(s.prep_index_insert(f(1), name.as_bytes(), b"v").unwrap()).unwrap();
            for e in &page.entries {
                assert!(e.cookie >= cookie);
                seen.push(e.key.clone());
            }
            match page.next {
                Some(c) => cookie = c,
                None => break,
            }
        }
        for i in 0..100 {
            let name = format!("file{i}").into_bytes();
            assert_eq!(seen.iter().filter(|k| **k == name).count(), 1);
        }
        assert_eq!(s.index_lookup(&f(1), b"file7").unwrap(), b"v");
        assert!(matches!(s.index_lookup(&f(1), b"nope"), Err(OsdError::NoKey)));
    }
}

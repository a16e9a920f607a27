//! Sub-operations: the pieces a metadata operation does on one shard, applied there in one
//! OSD transaction. A cross-shard operation is a list of them per shard; the intent log stores
//! them (encoded here) so that a crash in the middle is finished on restart.

use osd_nvme::{Attr, AttrMask, LuFid, ObjType, Timespec, XattrMode};

/// One piece of a metadata operation on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubOp {
    /// Add `name -> fid` to directory `dir` (fails EEXIST if the name maps elsewhere).
    Insert {
        /// Directory.
        dir: LuFid,
        /// Name.
        name: Vec<u8>,
        /// Target.
        fid: LuFid,
        /// `S_IFMT` bits of the target.
        ftype: u32,
    },
    /// Remove `name` from `dir` (it must map to `fid`).
    Delete {
        /// Directory.
        dir: LuFid,
        /// Name.
        name: Vec<u8>,
        /// Expected target.
        fid: LuFid,
    },
    /// Create an object (directories get `.` and `..`).
    Create {
        /// The new object.
        fid: LuFid,
        /// Its type.
        ty: ObjType,
        /// Its attributes (nlink included).
        attr: Attr,
        /// For a directory: its parent (for `..`).
        parent: LuFid,
        /// Xattrs to set (layout, ACLs, security).
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Symlink target.
        symlink: Vec<u8>,
    },
    /// Change the link count by `delta`; at zero (and not open) the object is destroyed.
    Nlink {
        /// The object.
        fid: LuFid,
        /// +1 or -1 (or -2 for a directory losing its `.` as well).
        delta: i32,
        /// New ctime.
        ctime: Timespec,
    },
    /// Set attributes.
    SetAttr {
        /// The object.
        fid: LuFid,
        /// Which.
        mask: AttrMask,
        /// Values.
        attr: Attr,
    },
    /// Point a directory's `..` at a new parent.
    SetDotdot {
        /// The directory.
        dir: LuFid,
        /// Its new parent.
        parent: LuFid,
    },
    /// Set an xattr.
    SetXattr {
        /// The object.
        fid: LuFid,
        /// Name.
        name: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Create, replace or either.
        mode: XattrMode,
    },
    /// Remove an xattr.
    DelXattr {
        /// The object.
        fid: LuFid,
        /// Name.
        name: Vec<u8>,
    },
}

impl SubOp {
    /// The objects this sub-op changes (to lock and to route).
    #[must_use]
    pub fn object(&self) -> LuFid {
        match self {
            SubOp::Insert { dir, .. }
            | SubOp::Delete { dir, .. }
            | SubOp::SetDotdot { dir, .. } => *dir,
            SubOp::Create { fid, .. }
            | SubOp::Nlink { fid, .. }
            | SubOp::SetAttr { fid, .. }
            | SubOp::SetXattr { fid, .. }
            | SubOp::DelXattr { fid, .. } => *fid,
        }
    }
}

// --- encoding for the intent log: a small tagged binary form. ---

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
    fn fid(&mut self, f: &LuFid) {
        self.u64(f.seq());
        self.u32(f.oid());
        self.u32(f.ver());
    }
    fn ts(&mut self, t: Timespec) {
        self.i64(t.sec);
        self.u32(t.nsec);
    }
    fn attr(&mut self, a: &Attr) {
        for v in [a.mode, a.uid, a.gid, a.nlink, a.flags, a.projid] {
            self.u32(v);
        }
        self.u64(a.size);
        self.u64(a.blocks);
        self.u64(a.rdev);
        for t in [a.atime, a.mtime, a.ctime] {
            self.ts(t);
        }
    }
}

struct R<'a>(&'a [u8]);

impl R<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = usize::try_from(self.u32()?).ok()?;
        Some(self.take(n)?.to_vec())
    }
    fn fid(&mut self) -> Option<LuFid> {
        Some(LuFid::new(self.u64()?, self.u32()?, self.u32()?))
    }
    fn ts(&mut self) -> Option<Timespec> {
        Some(Timespec { sec: self.i64()?, nsec: self.u32()? })
    }
    fn attr(&mut self) -> Option<Attr> {
        let mut a = Attr {
            mode: self.u32()?,
            uid: self.u32()?,
            gid: self.u32()?,
            nlink: self.u32()?,
            flags: self.u32()?,
            projid: self.u32()?,
            ..Attr::default()
        };
        a.size = self.u64()?;
        a.blocks = self.u64()?;
        a.rdev = self.u64()?;
        a.atime = self.ts()?;
        a.mtime = self.ts()?;
        a.ctime = self.ts()?;
        Some(a)
    }
}

fn ty_code(t: ObjType) -> u8 {
    match t {
        ObjType::Regular => 1,
        ObjType::Dir => 2,
        ObjType::Index => 3,
        ObjType::Symlink => 4,
        ObjType::CharDev => 5,
        ObjType::BlockDev => 6,
        ObjType::Fifo => 7,
        ObjType::Socket => 8,
    }
}

fn ty_of(c: u8) -> Option<ObjType> {
    Some(match c {
        1 => ObjType::Regular,
        2 => ObjType::Dir,
        3 => ObjType::Index,
        4 => ObjType::Symlink,
        5 => ObjType::CharDev,
        6 => ObjType::BlockDev,
        7 => ObjType::Fifo,
        8 => ObjType::Socket,
        _ => return None,
    })
}

fn mode_code(m: XattrMode) -> u8 {
    match m {
        XattrMode::Upsert => 0,
        XattrMode::Create => 1,
        XattrMode::Replace => 2,
    }
}

/// Encodes a list of per-shard parts: `[(shard, sub-ops)]`.
#[must_use]
pub fn encode_parts(parts: &[(usize, Vec<SubOp>)]) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u32(u32::try_from(parts.len()).unwrap_or(0));
    for (shard, ops) in parts {
        w.u32(u32::try_from(*shard).unwrap_or(u32::MAX));
        w.u32(u32::try_from(ops.len()).unwrap_or(0));
        for op in ops {
            match op {
                SubOp::Insert { dir, name, fid, ftype } => {
                    w.u8(1);
                    w.fid(dir);
                    w.bytes(name);
                    w.fid(fid);
                    w.u32(*ftype);
                }
                SubOp::Delete { dir, name, fid } => {
                    w.u8(2);
                    w.fid(dir);
                    w.bytes(name);
                    w.fid(fid);
                }
                SubOp::Create { fid, ty, attr, parent, xattrs, symlink } => {
                    w.u8(3);
                    w.fid(fid);
                    w.u8(ty_code(*ty));
                    w.attr(attr);
                    w.fid(parent);
                    w.u32(u32::try_from(xattrs.len()).unwrap_or(0));
                    for (n, v) in xattrs {
                        w.bytes(n);
                        w.bytes(v);
                    }
                    w.bytes(symlink);
                }
                SubOp::Nlink { fid, delta, ctime } => {
                    w.u8(4);
                    w.fid(fid);
                    w.u32(delta.cast_unsigned());
                    w.ts(*ctime);
                }
                SubOp::SetAttr { fid, mask, attr } => {
                    w.u8(5);
                    w.fid(fid);
                    w.u32(mask.0);
                    w.attr(attr);
                }
                SubOp::SetDotdot { dir, parent } => {
                    w.u8(6);
                    w.fid(dir);
                    w.fid(parent);
                }
                SubOp::SetXattr { fid, name, value, mode } => {
                    w.u8(7);
                    w.fid(fid);
                    w.bytes(name);
                    w.bytes(value);
                    w.u8(mode_code(*mode));
                }
                SubOp::DelXattr { fid, name } => {
                    w.u8(8);
                    w.fid(fid);
                    w.bytes(name);
                }
            }
        }
    }
    w.0
}

/// Decodes what [`encode_parts`] wrote.
#[must_use]
pub fn decode_parts(b: &[u8]) -> Option<Vec<(usize, Vec<SubOp>)>> {
    let mut r = R(b);
    let n = r.u32()?;
    let mut parts = Vec::new();
    for _ in 0..n.min(64) {
        let shard = usize::try_from(r.u32()?).ok()?;
        let k = r.u32()?;
        let mut ops = Vec::new();
        for _ in 0..k.min(64) {
            let op = match r.u8()? {
                1 => SubOp::Insert {
                    dir: r.fid()?,
                    name: r.bytes()?,
                    fid: r.fid()?,
                    ftype: r.u32()?,
                },
                2 => SubOp::Delete { dir: r.fid()?, name: r.bytes()?, fid: r.fid()? },
                3 => {
                    let fid = r.fid()?;
                    let ty = ty_of(r.u8()?)?;
                    let attr = r.attr()?;
                    let parent = r.fid()?;
                    let nx = r.u32()?;
                    let mut xattrs = Vec::new();
                    for _ in 0..nx.min(64) {
                        xattrs.push((r.bytes()?, r.bytes()?));
                    }
                    SubOp::Create { fid, ty, attr, parent, xattrs, symlink: r.bytes()? }
                }
                4 => SubOp::Nlink { fid: r.fid()?, delta: r.u32()?.cast_signed(), ctime: r.ts()? },
                5 => SubOp::SetAttr { fid: r.fid()?, mask: AttrMask(r.u32()?), attr: r.attr()? },
                6 => SubOp::SetDotdot { dir: r.fid()?, parent: r.fid()? },
                7 => SubOp::SetXattr {
                    fid: r.fid()?,
                    name: r.bytes()?,
                    value: r.bytes()?,
                    mode: match r.u8()? {
                        1 => XattrMode::Create,
                        2 => XattrMode::Replace,
                        _ => XattrMode::Upsert,
                    },
                },
                8 => SubOp::DelXattr { fid: r.fid()?, name: r.bytes()? },
                _ => return None,
            };
            ops.push(op);
        }
        parts.push((shard, ops));
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let f = LuFid::new(0x2_0000_0400, 7, 0);
        let parts = vec![
            (
                0,
                vec![SubOp::Insert {
                    dir: LuFid::ROOT,
                    name: b"a".to_vec(),
                    fid: f,
                    ftype: 0o100000,
                }],
            ),
            (
                1,
                vec![
                    SubOp::Create {
                        fid: f,
                        ty: ObjType::Dir,
                        attr: Attr { mode: 0o40755, nlink: 2, ..Attr::default() },
                        parent: LuFid::ROOT,
                        xattrs: vec![(b"trusted.lov".to_vec(), vec![1, 2, 3])],
                        symlink: vec![],
                    },
                    SubOp::Nlink { fid: f, delta: -1, ctime: Timespec { sec: 5, nsec: 6 } },
                    SubOp::SetXattr {
                        fid: f,
                        name: b"user.x".to_vec(),
                        value: b"v".to_vec(),
                        mode: XattrMode::Replace,
                    },
                ],
            ),
        ];
        assert_eq!(decode_parts(&encode_parts(&parts)).unwrap(), parts);
        assert!(decode_parts(&[1, 0, 0]).is_none());
    }
}

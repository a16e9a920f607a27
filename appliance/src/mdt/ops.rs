//! MDT operations as the coordinating (home) shard runs them: lock the objects, check
//! permissions, build each shard's sub-operations, execute.

use super::store::obj_type_of;
use super::subop::SubOp;
use super::{execute, mdt, shard_of};
use crate::ldlm::service::{LOCAL, cancel, enqueue};
use crate::ldlm::{EnqueueReq, LockPolicy};
use crate::shard::Shard;
use osd_nvme::types::mode as m;
use osd_nvme::{Attr, AttrMask, LuFid, ObjType, Timespec, XattrMode};
use proto::acl::{self, Caller, PosixAcl, XATTR_NAME_ACL_ACCESS, XATTR_NAME_ACL_DEFAULT};
use proto::ldlm::{ibits, mode};
use std::rc::Rc;

/// The caller's credentials, as the request carries them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cred {
    /// fsuid.
    pub uid: u32,
    /// fsgid.
    pub gid: u32,
    /// Supplementary groups the request names.
    pub groups: Vec<u32>,
}

impl Cred {
    fn in_group(&self, g: u32) -> bool {
        self.caller().in_group(g)
    }
    /// The credentials as the ACL algorithms take them.
    #[must_use]
    pub fn caller(&self) -> Caller<'_> {
        Caller { fsuid: self.uid, fsgid: self.gid, groups: &self.groups }
    }
    /// Whether the caller is root.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Read permission.
pub const MAY_READ: u32 = 4;
/// Write permission.
pub const MAY_WRITE: u32 = 2;
/// Execute/search permission.
pub const MAY_EXEC: u32 = 1;

/// POSIX permission check of `want` (`MAY_*` bits) on an object with access ACL `acl` (see
/// [`proto::acl::permission`]: root may execute only what someone may execute, directories
/// are always searchable).
#[must_use]
pub fn permitted(a: &Attr, acl: Option<&PosixAcl>, c: &Cred, want: u32) -> bool {
    acl::permission(a.mode, a.uid, a.gid, acl, &c.caller(), want)
}

/// The permission check of `want` on `fid` (attributes `a`), with its access ACL read when
/// the answer could depend on it (`mdd_check_acl`).
pub async fn may(
    sh: &Rc<Shard>,
    index: u32,
    fid: LuFid,
    a: &Attr,
    c: &Cred,
    want: u32,
) -> Result<bool, i32> {
    let acl = acl_for_check(sh, index, fid, a, c).await?;
    Ok(permitted(a, acl.as_ref(), c, want))
}

/// `fid`'s access ACL if `c`'s permission checks on it would consult it, else None.
pub async fn acl_for_check(
    sh: &Rc<Shard>,
    index: u32,
    fid: LuFid,
    a: &Attr,
    c: &Cred,
) -> Result<Option<PosixAcl>, i32> {
    if acl::acl_matters(a.mode, a.uid, &c.caller()) {
        stored_acl(sh, index, fid, XATTR_NAME_ACL_ACCESS).await
    } else {
        Ok(None)
    }
}

/// An object's access or default ACL (`name`), if it has a non-empty one. ACLs are checked
/// when set, so one that does not decode is not expected; it counts as none and the mode
/// bits apply.
pub async fn stored_acl(
    sh: &Rc<Shard>,
    index: u32,
    fid: LuFid,
    name: &str,
) -> Result<Option<PosixAcl>, i32> {
    match getxattr(sh, index, fid, name.as_bytes().to_vec()).await {
        Ok(v) => Ok(PosixAcl::decode(&v).ok().filter(|a| !a.is_empty())),
        Err(e) if e == -libc::ENODATA => Ok(None),
        Err(e) => Err(e),
    }
}

/// Locks held by an operation: (shard, cookie).
#[derive(Debug, Default)]
pub struct Held(Vec<(usize, u64)>);

/// Takes EX IBITS locks on `objs` (merged per object), in shard then FID order so that two
/// operations never wait for each other in a cycle. Clients caching conflicting locks get
/// blocking callbacks.
pub async fn lock(sh: &Rc<Shard>, index: u32, objs: &[(LuFid, u64)]) -> Result<Held, i32> {
    let mut v: Vec<(usize, LuFid, u64)> = Vec::new();
    for &(f, b) in objs {
        if f.is_zero() {
            continue;
        }
        match v.iter_mut().find(|(_, g, _)| *g == f) {
            Some(e) => e.2 |= b,
            None => v.push((shard_of(&f, sh.n), f, b)),
        }
    }
    v.sort_by_key(|a| (a.0, a.1));
    let mut held = Held::default();
    for (s, f, bits) in v {
        let remote = sh.xids.next_xid();
        let r = sh
            .mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                let slot = mdt(&x, index)?.slot;
                let req = EnqueueReq {
                    export: LOCAL,
                    remote,
                    res: f.res_id(),
                    mode: mode::EX,
                    policy: LockPolicy::Ibits { bits },
                    flags: 0,
                };
                enqueue(&x, slot, req, None).await.map(|l| l.cookie).map_err(|_| -libc::EIO)
            })
            .await
            .map_err(|_| -libc::ESHUTDOWN)
            .and_then(|r| r);
        match r {
            Ok(c) => held.0.push((s, c)),
            Err(e) => {
                unlock(sh, held).await;
                return Err(e);
            }
        }
    }
    Ok(held)
}

/// Releases locks taken by [`lock`].
pub async fn unlock(sh: &Rc<Shard>, held: Held) {
    for (s, c) in held.0 {
        let _ = sh
            .mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                let _ = cancel(&x, c, None);
            })
            .await;
    }
}

/// Attributes and type of an object (on its shard).
pub async fn getattr(sh: &Rc<Shard>, index: u32, fid: LuFid) -> Result<(Attr, ObjType), i32> {
    let s = shard_of(&fid, sh.n);
    sh.mesh
        .call(sh, s, move |x: Rc<Shard>| async move {
            let st = &mdt(&x, index)?.store;
            Ok((st.attr(&fid).await?, st.obj_type(&fid).await?))
        })
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

/// Looks a name up in a directory (on the directory's shard).
pub async fn lookup(
    sh: &Rc<Shard>,
    index: u32,
    dir: LuFid,
    name: Vec<u8>,
) -> Result<Option<(LuFid, u32)>, i32> {
    let s = shard_of(&dir, sh.n);
    sh.mesh
        .call(
            sh,
            s,
            move |x: Rc<Shard>| async move { mdt(&x, index)?.store.lookup(&dir, &name).await },
        )
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

/// An object's layout, if any.
pub async fn layout(sh: &Rc<Shard>, index: u32, fid: LuFid) -> Result<Option<Vec<u8>>, i32> {
    let s = shard_of(&fid, sh.n);
    sh.mesh
        .call(sh, s, move |x: Rc<Shard>| async move { mdt(&x, index)?.store.layout(&fid).await })
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

/// A symlink's target.
pub async fn readlink(sh: &Rc<Shard>, index: u32, fid: LuFid) -> Result<Vec<u8>, i32> {
    let s = shard_of(&fid, sh.n);
    sh.mesh
        .call(sh, s, move |x: Rc<Shard>| async move { mdt(&x, index)?.store.symlink(&fid).await })
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

/// An xattr.
pub async fn getxattr(
    sh: &Rc<Shard>,
    index: u32,
    fid: LuFid,
    name: Vec<u8>,
) -> Result<Vec<u8>, i32> {
    let s = shard_of(&fid, sh.n);
    sh.mesh
        .call(
            sh,
            s,
            move |x: Rc<Shard>| async move { mdt(&x, index)?.store.xattr(&fid, &name).await },
        )
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

/// Every xattr name.
pub async fn listxattr(sh: &Rc<Shard>, index: u32, fid: LuFid) -> Result<Vec<Vec<u8>>, i32> {
    let s = shard_of(&fid, sh.n);
    sh.mesh
        .call(
            sh,
            s,
            move |x: Rc<Shard>| async move { mdt(&x, index)?.store.osd_xattr_list(&fid).await },
        )
        .await
        .map_err(|_| -libc::ESHUTDOWN)?
}

async fn check_dir_write(
    sh: &Rc<Shard>,
    index: u32,
    dir: LuFid,
    (parent, pty): (&Attr, ObjType),
    c: &Cred,
) -> Result<(), i32> {
    if pty != ObjType::Dir {
        return Err(-libc::ENOTDIR);
    }
    if !may(sh, index, dir, parent, c, MAY_WRITE | MAY_EXEC).await? {
        return Err(-libc::EACCES);
    }
    Ok(())
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewObj {
    /// Its FID (chosen by the client).
    pub fid: LuFid,
    /// Mode with type bits, before the umask.
    pub mode: u32,
    /// The creator's umask (`cr_umask`), applied when the parent has no default ACL
    /// (`mdd_acl_init`); with one, the default ACL limits the mode instead.
    pub umask: u32,
    /// Device number for nodes.
    pub rdev: u64,
    /// Symlink target.
    pub symlink: Vec<u8>,
    /// Xattrs (layout); the ACLs inherited from the parent are added.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Time of the operation.
    pub time: Timespec,
}

/// Creates `name` in `parent`. Returns the new object's attributes and the transno.
pub async fn create(
    sh: &Rc<Shard>,
    index: u32,
    c: &Cred,
    parent: LuFid,
    name: &[u8],
    o: NewObj,
) -> Result<(Attr, u64), i32> {
    let ty = obj_type_of(o.mode).ok_or(-libc::EINVAL)?;
    if !o.fid.is_sane() || o.fid.seq() < proto::fid::seq::NORMAL {
        return Err(-libc::EINVAL);
    }
    let held = lock(sh, index, &[(parent, ibits::UPDATE)]).await?;
    let r = async {
        let (pa, pty) = getattr(sh, index, parent).await?;
        check_dir_write(sh, index, parent, (&pa, pty), c).await?;
        if pa.nlink == 0 {
            return Err(-libc::ENOENT);
        }
        if lookup(sh, index, parent, name.to_vec()).await?.is_some() {
            return Err(-libc::EEXIST);
        }
        let (mut mode, acl_xattrs) = inherit_acl(sh, index, parent, ty, o.mode, o.umask).await?;
        let sgid_dir = pa.mode & 0o2000 != 0;
        if ty == ObjType::Dir && sgid_dir {
            mode |= 0o2000;
        }
        if !c.is_root()
            && ty != ObjType::Dir
            && mode & 0o2000 != 0
            && !c.in_group(if sgid_dir { pa.gid } else { c.gid })
        {
            mode &= !0o2000;
        }
        let attr = Attr {
            mode,
            uid: c.uid,
            gid: if sgid_dir { pa.gid } else { c.gid },
            nlink: if ty == ObjType::Dir { 2 } else { 1 },
            atime: o.time,
            mtime: o.time,
            ctime: o.time,
            rdev: o.rdev,
            size: o.symlink.len() as u64,
            ..Attr::default()
        };
        let ps = shard_of(&parent, sh.n);
        let cs = shard_of(&o.fid, sh.n);
        let mut pattr = pa;
        pattr.mtime = o.time;
        pattr.ctime = o.time;
        let mut pops = vec![
            SubOp::Insert { dir: parent, name: name.to_vec(), fid: o.fid, ftype: mode & m::S_IFMT },
            SubOp::SetAttr { fid: parent, mask: AttrMask::MTIME | AttrMask::CTIME, attr: pattr },
        ];
        if ty == ObjType::Dir {
            pops.push(SubOp::Nlink { fid: parent, delta: 1, ctime: o.time });
        }
        let cops = vec![SubOp::Create {
            fid: o.fid,
            ty,
            attr,
            parent,
            xattrs: [o.xattrs.clone(), acl_xattrs].concat(),
            symlink: o.symlink.clone(),
        }];
        let parts =
            if ps == cs { vec![(ps, [cops, pops].concat())] } else { vec![(cs, cops), (ps, pops)] };
        let a = execute(sh, index, parts).await?;
        Ok((attr, a.transno))
    }
    .await;
    unlock(sh, held).await;
    r
}

/// A new object's mode and ACL xattrs from its parent's default ACL (`mdd_acl_init`): with
/// one, the object gets it mixed with `mode` as its access ACL (unless the result says no
/// more than the mode), and a directory gets it as its own default too; without one, the
/// umask applies. Symlinks take neither.
async fn inherit_acl(
    sh: &Rc<Shard>,
    index: u32,
    parent: LuFid,
    ty: ObjType,
    mode: u32,
    umask: u32,
) -> Result<(u32, Vec<(Vec<u8>, Vec<u8>)>), i32> {
    if ty == ObjType::Symlink {
        return Ok((mode, Vec::new()));
    }
    let Some(default) = stored_acl(sh, index, parent, XATTR_NAME_ACL_DEFAULT).await? else {
        return Ok((mode & !(umask & 0o777), Vec::new()));
    };
    let mut access = default.clone();
    let (mode, equiv) = access.create_masq(mode);
    let mut xattrs = Vec::new();
    if !equiv {
        xattrs.push((XATTR_NAME_ACL_ACCESS.as_bytes().to_vec(), access.encode()));
    }
    if ty == ObjType::Dir {
        xattrs.push((XATTR_NAME_ACL_DEFAULT.as_bytes().to_vec(), default.encode()));
    }
    Ok((mode, xattrs))
}

/// What an unlink or rmdir removed.
#[derive(Debug, Clone)]
pub struct Removed {
    /// The object.
    pub fid: LuFid,
    /// Its attributes after the operation.
    pub attr: Attr,
    /// Its layout when the last link went (the client learns the objects are gone).
    pub layout: Option<Vec<u8>>,
    /// Transaction number.
    pub transno: u64,
}

fn sticky_denied(pa: &Attr, ca: &Attr, c: &Cred) -> bool {
    pa.mode & 0o1000 != 0 && !c.is_root() && ca.uid != c.uid && pa.uid != c.uid
}

/// Removes `name` from `parent`. `want_dir`: Some(true) for rmdir, Some(false) for unlink of a
/// non-directory, None to accept either.
pub async fn unlink(
    sh: &Rc<Shard>,
    index: u32,
    c: &Cred,
    parent: LuFid,
    name: &[u8],
    want_dir: Option<bool>,
    time: Timespec,
) -> Result<Removed, i32> {
    if name == b"." || name == b".." {
        return Err(-libc::EINVAL);
    }
    let child = lookup(sh, index, parent, name.to_vec()).await?.ok_or(-libc::ENOENT)?.0;
    let held = lock(sh, index, &[(parent, ibits::UPDATE), (child, ibits::FULL)]).await?;
    let r = async {
        let (pa, pty) = getattr(sh, index, parent).await?;
        check_dir_write(sh, index, parent, (&pa, pty), c).await?;
        // The name may have changed while we waited for the locks.
        match lookup(sh, index, parent, name.to_vec()).await? {
            Some((f, _)) if f == child => {}
            _ => return Err(-libc::ENOENT),
        }
        let (ca, cty) = getattr(sh, index, child).await?;
        let is_dir = cty == ObjType::Dir;
        match want_dir {
            Some(true) if !is_dir => return Err(-libc::ENOTDIR),
            Some(false) if is_dir => return Err(-libc::EISDIR),
            _ => {}
        }
        if sticky_denied(&pa, &ca, c) {
            return Err(-libc::EPERM);
        }
        if is_dir {
            let cs = shard_of(&child, sh.n);
            let empty = sh
                .mesh
                .call(sh, cs, move |x: Rc<Shard>| async move {
                    mdt(&x, index)?.store.dir_is_empty(&child).await
                })
                .await
                .map_err(|_| -libc::ESHUTDOWN)??;
            if !empty {
                return Err(-libc::ENOTEMPTY);
            }
        }
        let lay = if ca.nlink <= 1 || is_dir {
            layout(sh, index, child).await.unwrap_or(None)
        } else {
            None
        };
        let mut pattr = pa;
        pattr.mtime = time;
        pattr.ctime = time;
        let mut pops = vec![
            SubOp::Delete { dir: parent, name: name.to_vec(), fid: child },
            SubOp::SetAttr { fid: parent, mask: AttrMask::MTIME | AttrMask::CTIME, attr: pattr },
        ];
        if is_dir {
            pops.push(SubOp::Nlink { fid: parent, delta: -1, ctime: time });
        }
        let cops =
            vec![SubOp::Nlink { fid: child, delta: if is_dir { -2 } else { -1 }, ctime: time }];
        let ps = shard_of(&parent, sh.n);
        let cs = shard_of(&child, sh.n);
        let parts =
            if ps == cs { vec![(ps, [pops, cops].concat())] } else { vec![(ps, pops), (cs, cops)] };
        let a = execute(sh, index, parts).await?;
        let mut after = ca;
        after.nlink = if is_dir { 0 } else { ca.nlink.saturating_sub(1) };
        after.ctime = time;
        Ok(Removed {
            fid: child,
            attr: after,
            layout: if after.nlink == 0 { lay } else { None },
            transno: a.transno,
        })
    }
    .await;
    unlock(sh, held).await;
    r
}

/// Links `fid` into `parent` as `name`.
pub async fn link(
    sh: &Rc<Shard>,
    index: u32,
    c: &Cred,
    fid: LuFid,
    parent: LuFid,
    name: &[u8],
    time: Timespec,
) -> Result<(Attr, u64), i32> {
    let held = lock(sh, index, &[(parent, ibits::UPDATE), (fid, ibits::UPDATE)]).await?;
    let r = async {
        let (pa, pty) = getattr(sh, index, parent).await?;
        check_dir_write(sh, index, parent, (&pa, pty), c).await?;
        let (ca, cty) = getattr(sh, index, fid).await?;
        if cty == ObjType::Dir {
            return Err(-libc::EPERM);
        }
        if ca.nlink == 0 {
            return Err(-libc::ENOENT);
        }
        if ca.nlink >= 65000 {
            return Err(-libc::EMLINK);
        }
        if lookup(sh, index, parent, name.to_vec()).await?.is_some() {
            return Err(-libc::EEXIST);
        }
        let mut pattr = pa;
        pattr.mtime = time;
        pattr.ctime = time;
        let pops = vec![
            SubOp::Insert { dir: parent, name: name.to_vec(), fid, ftype: ca.mode & m::S_IFMT },
            SubOp::SetAttr { fid: parent, mask: AttrMask::MTIME | AttrMask::CTIME, attr: pattr },
        ];
        let cops = vec![SubOp::Nlink { fid, delta: 1, ctime: time }];
        let ps = shard_of(&parent, sh.n);
        let cs = shard_of(&fid, sh.n);
        let parts =
            if ps == cs { vec![(ps, [pops, cops].concat())] } else { vec![(ps, pops), (cs, cops)] };
        let a = execute(sh, index, parts).await?;
        let mut after = ca;
        after.nlink += 1;
        after.ctime = time;
        Ok((after, a.transno))
    }
    .await;
    unlock(sh, held).await;
    r
}

/// Whether `anc` is `fid` or one of its ancestors (walking `..` up to the root).
async fn is_ancestor(sh: &Rc<Shard>, index: u32, anc: LuFid, mut fid: LuFid) -> Result<bool, i32> {
    for _ in 0..4096 {
        if fid == anc {
            return Ok(true);
        }
        if fid == LuFid::ROOT {
            return Ok(false);
        }
        fid = match lookup(sh, index, fid, b"..".to_vec()).await? {
            Some((p, _)) => p,
            None => return Ok(false),
        };
    }
    Err(-libc::ELOOP)
}

/// How to rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace the target if it exists.
    Plain,
    /// Fail with EEXIST if the target exists (RENAME_NOREPLACE).
    NoReplace,
    /// Swap source and target (RENAME_EXCHANGE).
    Exchange,
}

/// What a rename did.
#[derive(Debug, Clone)]
pub struct Renamed {
    /// The object moved.
    pub fid: LuFid,
    /// The object replaced (and maybe destroyed), if any.
    pub replaced: Option<Removed>,
    /// Transaction number.
    pub transno: u64,
}

/// Renames `sp/sn` to `tp/tn` (same or another directory, possibly overwriting).
pub async fn rename(
    sh: &Rc<Shard>,
    index: u32,
    c: &Cred,
    (sp, sn): (LuFid, &[u8]),
    (tp, tn): (LuFid, &[u8]),
    how: RenameMode,
    time: Timespec,
) -> Result<Renamed, i32> {
    if sn == b"." || sn == b".." || tn == b"." || tn == b".." {
        return Err(-libc::EINVAL);
    }
    let src = lookup(sh, index, sp, sn.to_vec()).await?.ok_or(-libc::ENOENT)?.0;
    let tgt_now = lookup(sh, index, tp, tn.to_vec()).await?.map(|x| x.0);
    let mut objs =
        vec![(sp, ibits::UPDATE), (tp, ibits::UPDATE), (src, ibits::LOOKUP | ibits::UPDATE)];
    if let Some(t) = tgt_now {
        objs.push((t, ibits::FULL));
    }
    let held = lock(sh, index, &objs).await?;
    let r = async {
        let (spa, spty) = getattr(sh, index, sp).await?;
        check_dir_write(sh, index, sp, (&spa, spty), c).await?;
        let (tpa, tpty) = getattr(sh, index, tp).await?;
        check_dir_write(sh, index, tp, (&tpa, tpty), c).await?;
        match lookup(sh, index, sp, sn.to_vec()).await? {
            Some((f, _)) if f == src => {}
            _ => return Err(-libc::ENOENT),
        }
        let tgt = lookup(sh, index, tp, tn.to_vec()).await?.map(|x| x.0);
        if tgt != tgt_now {
            return Err(-libc::EAGAIN); // raced: the client retries
        }
        if tgt == Some(src) {
            return Ok(Renamed { fid: src, replaced: None, transno: 0 }); // same file: no-op
        }
        let (sa, sty) = getattr(sh, index, src).await?;
        let src_dir = sty == ObjType::Dir;
        if sticky_denied(&spa, &sa, c) {
            return Err(-libc::EPERM);
        }
        if src_dir && sp != tp {
            // A directory may not move below itself, and moving it needs write access to it
            // (its `..` changes).
            if is_ancestor(sh, index, src, tp).await? {
                return Err(-libc::EINVAL);
            }
            if !may(sh, index, src, &sa, c, MAY_WRITE).await? {
                return Err(-libc::EACCES);
            }
        }
        let mut ops: Vec<SubOp> = Vec::new();
        let mut replaced = None;
        let mut spattr = spa;
        spattr.mtime = time;
        spattr.ctime = time;
        let mut tpattr = tpa;
        tpattr.mtime = time;
        tpattr.ctime = time;
        match (tgt, how) {
            (Some(_), RenameMode::NoReplace) => return Err(-libc::EEXIST),
            (None, RenameMode::Exchange) => return Err(-libc::ENOENT),
            (Some(t), RenameMode::Exchange) => {
                let (ta, tty) = getattr(sh, index, t).await?;
                let tgt_dir = tty == ObjType::Dir;
                if sticky_denied(&tpa, &ta, c) {
                    return Err(-libc::EPERM);
                }
                ops.push(SubOp::Delete { dir: sp, name: sn.to_vec(), fid: src });
                ops.push(SubOp::Delete { dir: tp, name: tn.to_vec(), fid: t });
                ops.push(SubOp::Insert {
                    dir: sp,
                    name: sn.to_vec(),
                    fid: t,
                    ftype: ta.mode & m::S_IFMT,
                });
                ops.push(SubOp::Insert {
                    dir: tp,
                    name: tn.to_vec(),
                    fid: src,
                    ftype: sa.mode & m::S_IFMT,
                });
                if sp != tp {
                    if src_dir {
                        ops.push(SubOp::SetDotdot { dir: src, parent: tp });
                    }
                    if tgt_dir {
                        ops.push(SubOp::SetDotdot { dir: t, parent: sp });
                    }
                    let d = i32::from(src_dir) - i32::from(tgt_dir);
                    if d != 0 {
                        ops.push(SubOp::Nlink { fid: sp, delta: -d, ctime: time });
                        ops.push(SubOp::Nlink { fid: tp, delta: d, ctime: time });
                    }
                }
                let mut ta2 = ta;
                ta2.ctime = time;
                ops.push(SubOp::SetAttr { fid: t, mask: AttrMask::CTIME, attr: ta2 });
            }
            (tgt, _) => {
                if let Some(t) = tgt {
                    let (ta, tty) = getattr(sh, index, t).await?;
                    let tgt_dir = tty == ObjType::Dir;
                    if src_dir && !tgt_dir {
                        return Err(-libc::ENOTDIR);
                    }
                    if !src_dir && tgt_dir {
                        return Err(-libc::EISDIR);
                    }
                    if sticky_denied(&tpa, &ta, c) {
                        return Err(-libc::EPERM);
                    }
                    if tgt_dir {
                        let ts = shard_of(&t, sh.n);
                        let empty = sh
                            .mesh
                            .call(sh, ts, move |x: Rc<Shard>| async move {
                                mdt(&x, index)?.store.dir_is_empty(&t).await
                            })
                            .await
                            .map_err(|_| -libc::ESHUTDOWN)??;
                        if !empty {
                            return Err(-libc::ENOTEMPTY);
                        }
                    }
                    let lay = if ta.nlink <= 1 || tgt_dir {
                        layout(sh, index, t).await.unwrap_or(None)
                    } else {
                        None
                    };
                    ops.push(SubOp::Delete { dir: tp, name: tn.to_vec(), fid: t });
                    ops.push(SubOp::Nlink {
                        fid: t,
                        delta: if tgt_dir { -2 } else { -1 },
                        ctime: time,
                    });
                    if tgt_dir {
                        ops.push(SubOp::Nlink { fid: tp, delta: -1, ctime: time });
                    }
                    let mut after = ta;
                    after.nlink = if tgt_dir { 0 } else { ta.nlink.saturating_sub(1) };
                    after.ctime = time;
                    replaced = Some(Removed {
                        fid: t,
                        attr: after,
                        layout: if after.nlink == 0 { lay } else { None },
                        transno: 0,
                    });
                }
                ops.push(SubOp::Delete { dir: sp, name: sn.to_vec(), fid: src });
                ops.push(SubOp::Insert {
                    dir: tp,
                    name: tn.to_vec(),
                    fid: src,
                    ftype: sa.mode & m::S_IFMT,
                });
                if src_dir && sp != tp {
                    ops.push(SubOp::SetDotdot { dir: src, parent: tp });
                    ops.push(SubOp::Nlink { fid: sp, delta: -1, ctime: time });
                    ops.push(SubOp::Nlink { fid: tp, delta: 1, ctime: time });
                }
            }
        }
        let mut sa2 = sa;
        sa2.ctime = time;
        ops.push(SubOp::SetAttr { fid: src, mask: AttrMask::CTIME, attr: sa2 });
        ops.push(SubOp::SetAttr { fid: sp, mask: AttrMask::MTIME | AttrMask::CTIME, attr: spattr });
        if tp != sp {
            ops.push(SubOp::SetAttr {
                fid: tp,
                mask: AttrMask::MTIME | AttrMask::CTIME,
                attr: tpattr,
            });
        }
        // Nlink ops of the parents must see the parent's attr update first on the same shard:
        // order within a shard is kept; group by shard.
        let mut parts: Vec<(usize, Vec<SubOp>)> = Vec::new();
        for op in ops {
            let s = shard_of(&op.object(), sh.n);
            match parts.iter_mut().find(|(x, _)| *x == s) {
                Some(p) => p.1.push(op),
                None => parts.push((s, vec![op])),
            }
        }
        // SetAttr of a parent carries a full attr snapshot (nlink included): apply nlink
        // changes after it.
        for (_, p) in &mut parts {
            p.sort_by_key(|op| matches!(op, SubOp::Nlink { .. }));
        }
        let a = execute(sh, index, parts).await?;
        if let Some(r) = replaced.as_mut() {
            r.transno = a.transno;
        }
        Ok(Renamed { fid: src, replaced, transno: a.transno })
    }
    .await;
    unlock(sh, held).await;
    r
}

/// A setattr request (`mdt_rec_setattr`), decoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttrReq {
    /// `MDS_ATTR_*` bits.
    pub valid: u64,
    /// Values.
    pub attr: Attr,
    /// From an open with O_TRUNC (no permission check beyond the open's).
    pub from_open: bool,
}

/// Changes attributes with POSIX's permission rules. Returns the new attributes.
pub async fn setattr(
    sh: &Rc<Shard>,
    index: u32,
    c: &Cred,
    fid: LuFid,
    req: SetAttrReq,
    time: Timespec,
) -> Result<(Attr, u64), i32> {
    use proto::mdt::attr as sa;
    // A chmod rewrites the access ACL too.
    let bits =
        ibits::UPDATE | ibits::PERM | if req.valid & sa::MODE != 0 { ibits::XATTR } else { 0 };
    let held = lock(sh, index, &[(fid, bits)]).await?;
    let r = async {
        let (cur, ty) = getattr(sh, index, fid).await?;
        // Write permission, asked at most once (the ACL is read only if it could matter).
        let mut writable = None;
        let mut may_write = async || -> Result<bool, i32> {
            if let Some(w) = writable {
                return Ok(w);
            }
            let w = may(sh, index, fid, &cur, c, MAY_WRITE).await?;
            writable = Some(w);
            Ok(w)
        };
        let owner = c.is_root() || c.uid == cur.uid;
        let v = req.valid;
        let mut new = cur;
        let mut mask = AttrMask::CTIME;
        if v & sa::MODE != 0 {
            if !owner {
                return Err(-libc::EPERM);
            }
            let mut mode = (cur.mode & m::S_IFMT) | (req.attr.mode & 0o7777);
            if !c.is_root() && !c.in_group(cur.gid) {
                mode &= !0o2000;
            }
            new.mode = mode;
            mask = mask | AttrMask::MODE;
        }
        if v & sa::UID != 0 && req.attr.uid != cur.uid {
            if !c.is_root() {
                return Err(-libc::EPERM);
            }
            new.uid = req.attr.uid;
            mask = mask | AttrMask::UID;
        }
        if v & sa::GID != 0 && req.attr.gid != cur.gid {
            if !(c.is_root() || (c.uid == cur.uid && c.in_group(req.attr.gid))) {
                return Err(-libc::EPERM);
            }
            new.gid = req.attr.gid;
            mask = mask | AttrMask::GID;
        }
        if mask.contains(AttrMask::UID) || mask.contains(AttrMask::GID) {
            // chown clears set-id bits (keeping setgid on non-group-executable files).
            if ty != ObjType::Dir {
                new.mode &= !0o4000;
                if new.mode & 0o010 != 0 {
                    new.mode &= !0o2000;
                }
                mask = mask | AttrMask::MODE;
            }
        }
        if v & sa::SIZE != 0 {
            if ty == ObjType::Dir {
                return Err(-libc::EISDIR);
            }
            if !req.from_open && v & sa::FROM_OPEN == 0 && !may_write().await? {
                return Err(-libc::EACCES);
            }
            new.size = req.attr.size;
            new.mtime = time;
            mask = mask | AttrMask::SIZE | AttrMask::MTIME;
        }
        for (flag, set_flag, which) in
            [(sa::ATIME, sa::ATIME_SET, 0), (sa::MTIME, sa::MTIME_SET, 1)]
        {
            if v & flag == 0 {
                continue;
            }
            let explicit = v & set_flag != 0;
            if explicit && !owner {
                return Err(-libc::EPERM);
            }
            if !explicit && !owner && !may_write().await? {
                return Err(-libc::EACCES);
            }
            let t = if explicit {
                if which == 0 { req.attr.atime } else { req.attr.mtime }
            } else {
                time
            };
            if which == 0 {
                new.atime = t;
                mask = mask | AttrMask::ATIME;
            } else {
                new.mtime = t;
                mask = mask | AttrMask::MTIME;
            }
        }
        if v & sa::CTIME_SET != 0 && v & sa::CTIME != 0 {
            new.ctime = req.attr.ctime;
        } else {
            new.ctime = time;
        }
        if v & sa::ATTR_FLAG != 0 {
            if !owner {
                return Err(-libc::EPERM);
            }
            new.flags = req.attr.flags;
            mask = mask | AttrMask::FLAGS;
        }
        if v & sa::PROJID != 0 {
            if !c.is_root() {
                return Err(-libc::EPERM);
            }
            new.projid = req.attr.projid;
            mask = mask | AttrMask::PROJID;
        }
        if v & (sa::KILL_SUID | sa::KILL_SGID) != 0 {
            if v & sa::KILL_SUID != 0 {
                new.mode &= !0o4000;
            }
            if v & sa::KILL_SGID != 0 && new.mode & 0o010 != 0 {
                new.mode &= !0o2000;
            }
            mask = mask | AttrMask::MODE;
        }
        let mut ops = vec![SubOp::SetAttr { fid, mask, attr: new }];
        // `mdd_acl_chmod`: the ACL's owner, mask (or group) and other entries follow the mode.
        if v & sa::MODE != 0
            && let Some(mut a) = stored_acl(sh, index, fid, XATTR_NAME_ACL_ACCESS).await?
        {
            a.chmod(new.mode);
            ops.push(SubOp::SetXattr {
                fid,
                name: XATTR_NAME_ACL_ACCESS.as_bytes().to_vec(),
                value: a.encode(),
                mode: XattrMode::Upsert,
            });
        }
        let s = shard_of(&fid, sh.n);
        let a = execute(sh, index, vec![(s, ops)]).await?;
        Ok((new, a.transno))
    }
    .await;
    unlock(sh, held).await;
    r
}

/// Sets or removes an xattr with Lustre's namespace rules (`trusted.*` needs root; `user.*`
/// needs write permission and is refused on special files; ACLs need the owner and are
/// checked, see [`set_acl`]).
pub async fn setxattr(
    sh: &Rc<Shard>,
    index: u32,
    c: &Cred,
    fid: LuFid,
    name: &[u8],
    value: Option<Vec<u8>>,
    mode: XattrMode,
) -> Result<u64, i32> {
    let is_acl =
        name == XATTR_NAME_ACL_ACCESS.as_bytes() || name == XATTR_NAME_ACL_DEFAULT.as_bytes();
    // An access ACL changes the mode: clients caching permissions must let go.
    let bits = ibits::XATTR | ibits::UPDATE | if is_acl { ibits::PERM } else { 0 };
    let held = lock(sh, index, &[(fid, bits)]).await?;
    let r = async {
        let (cur, ty) = getattr(sh, index, fid).await?;
        let acl = acl_for_check(sh, index, fid, &cur, c).await?;
        check_xattr_access(&cur, ty, c, name, true, acl.as_ref())?;
        // An empty ACL (no entries) removes it, as the kernel's `posix_acl_from_xattr` reads it.
        let acl = match (&value, is_acl) {
            (Some(v), true) => Some(PosixAcl::parse(v).map_err(|e| match e {
                proto::WireError::Oversize { .. } => -libc::E2BIG,
                // `posix_acl_from_xattr` (kernel and Lustre's MDT alike).
                proto::WireError::BadVersion { .. } => -libc::EOPNOTSUPP,
                _ => -libc::EINVAL,
            })?)
            .filter(|a| !a.is_empty()),
            _ => None,
        };
        let exists = async || getxattr(sh, index, fid, name.to_vec()).await.is_ok();
        let ops = match (value, acl) {
            (Some(_), Some(a)) => set_acl(fid, (&cur, ty), c, name, a, mode, exists().await)?,
            (Some(v), None) if !is_acl => {
                vec![SubOp::SetXattr { fid, name: name.to_vec(), value: v, mode }]
            }
            _ => {
                if !exists().await {
                    return Err(-libc::ENODATA);
                }
                vec![SubOp::DelXattr { fid, name: name.to_vec() }]
            }
        };
        let s = shard_of(&fid, sh.n);
        let a = execute(sh, index, vec![(s, ops)]).await?;
        Ok(a.transno)
    }
    .await;
    unlock(sh, held).await;
    r
}

/// The sub-operations of setting a valid, non-empty ACL (`mdd_acl_set`). A default ACL is
/// for directories only (EACCES elsewhere, as the kernel answers). An access ACL sets the
/// mode's rwx bits (the group bits from the mask) and is kept only if it says more than the
/// mode; setgid goes when the caller is not in the file's group (`posix_acl_update_mode`).
fn set_acl(
    fid: LuFid,
    (cur, ty): (&Attr, ObjType),
    c: &Cred,
    name: &[u8],
    acl: PosixAcl,
    mode: XattrMode,
    exists: bool,
) -> Result<Vec<SubOp>, i32> {
    let set = SubOp::SetXattr { fid, name: name.to_vec(), value: acl.encode(), mode };
    if name == XATTR_NAME_ACL_DEFAULT.as_bytes() {
        return if ty == ObjType::Dir { Ok(vec![set]) } else { Err(-libc::EACCES) };
    }
    let (mut new_mode, equiv) = acl.equiv_mode(cur.mode);
    if !c.is_root() && !c.in_group(cur.gid) {
        new_mode &= !0o2000;
    }
    let mut ops = Vec::new();
    if !equiv {
        ops.push(set);
    } else if exists {
        ops.push(SubOp::DelXattr { fid, name: name.to_vec() });
    }
    let mut attr = *cur;
    attr.mode = new_mode;
    attr.ctime = now();
    ops.push(SubOp::SetAttr { fid, mask: AttrMask::MODE | AttrMask::CTIME, attr });
    Ok(ops)
}

fn now() -> Timespec {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timespec { sec: i64::try_from(d.as_secs()).unwrap_or(0), nsec: d.subsec_nanos() }
}

/// Xattr namespace rules; `acl` is the object's access ACL when the permission check of a
/// `user.*` xattr could consult it ([`acl_for_check`]).
pub fn check_xattr_access(
    a: &Attr,
    ty: ObjType,
    c: &Cred,
    name: &[u8],
    write: bool,
    acl: Option<&PosixAcl>,
) -> Result<(), i32> {
    if name.starts_with(b"trusted.") || name.starts_with(b"lustre.") {
        if !c.is_root() && write {
            return Err(-libc::EPERM);
        }
        if !c.is_root() && name.starts_with(b"trusted.") {
            return Err(-libc::ENODATA);
        }
        return Ok(());
    }
    if name.starts_with(b"user.") {
        if !matches!(ty, ObjType::Regular | ObjType::Dir) {
            return Err(if write { -libc::EPERM } else { -libc::ENODATA });
        }
        let want = if write { MAY_WRITE } else { MAY_READ };
        if !permitted(a, acl, c, want) {
            return Err(-libc::EACCES);
        }
        return Ok(());
    }
    if name.starts_with(b"system.posix_acl_") || name.starts_with(b"security.") {
        if write && !c.is_root() && c.uid != a.uid {
            return Err(-libc::EPERM);
        }
        return Ok(());
    }
    Err(-libc::EOPNOTSUPP)
}

//! Namespace operations of the client: lookups through intent locks (whose LOOKUP and UPDATE
//! bits protect the cached names and attributes), readdir over bulk, and the REINT updates.

use crate::error::{Error, Result, check};
use crate::fs::{Cred, Fs};
use crate::ldlm::Tgt;
use proto::build::MsgBuilder;
use proto::dir::{self, DirEntry, MDS_DIR_END_OFF};
use proto::fid::{LuFid, LustreHandle};
use proto::ldlm::{
    LdlmInodebits, LdlmIntent, LdlmLockDesc, LdlmReply, LdlmRequest, Policy, flags as lf, ibits,
    it, lock_type, mode, status,
};
use proto::lov::{LovForm, LovMd};
use proto::mdt::{
    MdtBody, MdtIoepoch, MdtRecCreate, MdtRecLink, MdtRecRename, MdtRecSetattr, MdtRecSetxattr,
    MdtRecUnlink, attr as sa, md, open as of,
};
use proto::opcode::{Opcode, reint};
use proto::ost::ObdStatfs;
use proto::portal;
use proto::rmf;
use proto::wire::{Wire, cstr_bytes};
use ptlrpc::Bulk;
use std::rc::Rc;

/// Mode type bits.
pub const S_IFMT: u32 = 0o170_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;

/// Bias bits our MDT reads for RENAME_EXCHANGE and RENAME_NOREPLACE (2.15 clients never set
/// these bits).
pub const RENAME_EXCHANGE: u32 = 1 << 30;
/// See [`RENAME_EXCHANGE`].
pub const RENAME_NOREPLACE: u32 = 1 << 29;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn fmt(id: &str) -> Result<&'static rmf::Fmt> {
    rmf::format(id).ok_or_else(|| Error::new(libc::EPROTO))
}

fn cname(name: &[u8]) -> Result<Vec<u8>> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::new(libc::EINVAL));
    }
    if name.len() > 255 {
        return Err(Error::new(libc::ENAMETOOLONG));
    }
    let mut v = name.to_vec();
    v.push(0);
    Ok(v)
}

/// Splits a path (absolute inside the file system) into components.
#[must_use]
pub fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").collect()
}

/// A directory entry as `ls` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name.
    pub name: String,
    /// FID.
    pub fid: LuFid,
    /// `S_IFMT` bits (0 if unknown).
    pub ftype: u32,
}

impl Fs {
    /// Usage of every target: MDTs first, then OSTs (`lfs df`).
    pub async fn statfs_all(&self) -> Result<Vec<(String, ObdStatfs)>> {
        let mut out = Vec::new();
        let mdcs = self.mdcs.borrow().clone();
        for (i, m) in mdcs {
            let b = MsgBuilder::request(Opcode::MdsStatfs)?;
            let rep = self.call(&m, b, None, None).await?;
            out.push((
                format!("{}-MDT{i:04x}_UUID", self.cfg.fsname),
                ObdStatfs::read(rep.buf("obd_statfs", 1, 144)?)?,
            ));
        }
        let oscs = self.oscs.borrow().clone();
        for (i, o) in oscs {
            let b = MsgBuilder::request(Opcode::OstStatfs)?;
            match self.call(&o, b, None, None).await {
                Ok(rep) => out.push((
                    format!("{}-OST{i:04x}_UUID", self.cfg.fsname),
                    ObdStatfs::read(rep.buf("obd_statfs", 1, 144)?)?,
                )),
                Err(e) => log::warn!("OST{i:04x}: statfs: {e}"),
            }
        }
        Ok(out)
    }

    /// Attributes by FID (MDS_GETATTR, uncached).
    pub async fn getattr(&self, fid: LuFid, c: Cred) -> Result<(MdtBody, Vec<u8>)> {
        let mdc = self.mdc(0)?;
        let mut q = Fs::body_for(fid, c);
        q.mbo_valid = (md::FLGETATTR | md::FLEASIZE | md::FLDIREA | md::LINKNAME).into();
        q.mbo_eadatasize = 65536.into();
        let b = MsgBuilder::request(Opcode::MdsGetattr)?.wire("MDT_BODY", &q)?;
        let rep = self.call(&mdc, b, Some((portal::MDS_READPAGE, portal::MDC_REPLY)), None).await?;
        let body = MdtBody::read(rep.buf("mdt_body", 1, 216)?)?;
        let n = body.mbo_eadatasize.get() as usize;
        let ea = rep
            .buf("mdt_md", 2, 0)
            .map(|b| b.get(..n.min(b.len())).unwrap_or_default().to_vec())
            .unwrap_or_default();
        Ok((body, ea))
    }

    /// Looks `name` up in `parent`: from the cache when a lock protects it, else with an
    /// IT_GETATTR intent that brings attributes and a lock on the child.
    pub async fn lookup(
        self: &Rc<Self>,
        parent: LuFid,
        name: &[u8],
        c: Cred,
    ) -> Result<(LuFid, MdtBody)> {
        if name == b".." || name == b"." {
            let (b, _) = if name == b"." {
                self.getattr(parent, c).await?
            } else {
                self.getattr_name(parent, name, c).await?
            };
            return Ok((b.mbo_fid1, b));
        }
        let cached = {
            let cache = self.cache.borrow();
            cache
                .dentries
                .get(&(parent, name.to_vec()))
                .and_then(|(f, l)| cache.attrs.get(f).map(|(b, _)| (*f, *b, *l)))
        };
        if let Some((f, b, l)) = cached {
            self.locks.touch(l);
            self.stats.cache_hits.set(self.stats.cache_hits.get() + 1);
            return Ok((f, b));
        }
        let handle = self.locks.new_handle();
        let dlm = LdlmRequest {
            lock_flags: lf::HAS_INTENT,
            lock_desc: LdlmLockDesc::new(
                lock_type::IBITS,
                parent.res_id(),
                mode::CR,
                &Policy::Ibits(LdlmInodebits {
                    bits: (ibits::LOOKUP | ibits::UPDATE | ibits::PERM).into(),
                    ..Default::default()
                }),
            ),
            handles: vec![LustreHandle::new(handle)],
        };
        let mut q = Fs::body_for(parent, c);
        q.mbo_valid = (md::FLGETATTR | md::FLEASIZE | md::FLDIREA).into();
        q.mbo_eadatasize = 65536.into();
        let b = MsgBuilder::request_fmt(fmt("LDLM_INTENT_GETATTR")?, Opcode::LdlmEnqueue)
            .set("DLM_REQ", dlm.to_vec())?
            .wire("LDLM_INTENT", &LdlmIntent { opc: it::GETATTR.into() })?
            .wire("MDT_BODY", &q)?
            .set("NAME", cname(name)?)?;
        let mdc = self.mdc(0)?;
        let rep = self.call(&mdc, b, None, None).await?;
        let r = LdlmReply::read(rep.buf("ldlm_reply", 1, 112)?)?;
        let it_status = r.lock_policy_res2.get().cast_signed();
        if rep.status() == status::LOCK_ABORTED {
            check(i32::try_from(it_status).unwrap_or(-libc::EIO))?;
            return Err(Error::new(libc::ENOENT));
        }
        let body = MdtBody::read(rep.buf("mdt_body", 2, 216)?)?;
        let child = body.mbo_fid1;
        self.record_lock(handle, &r, Tgt::Mdc(0));
        let bits = match r.lock_desc.policy() {
            Ok(Policy::Ibits(b)) => b.bits.get(),
            _ => 0,
        };
        let mut cache = self.cache.borrow_mut();
        if bits & ibits::LOOKUP != 0 {
            cache.dentries.insert((parent, name.to_vec()), (child, handle));
        }
        if bits & ibits::UPDATE != 0 {
            cache.attrs.insert(child, (body, handle));
        }
        Ok((child, body))
    }

    async fn getattr_name(
        &self,
        parent: LuFid,
        name: &[u8],
        c: Cred,
    ) -> Result<(MdtBody, Vec<u8>)> {
        let mdc = self.mdc(0)?;
        let mut q = Fs::body_for(parent, c);
        q.mbo_valid = (md::FLGETATTR | md::FLEASIZE).into();
        q.mbo_eadatasize = 65536.into();
        let b = MsgBuilder::request(Opcode::MdsGetattrName)?
            .wire("MDT_BODY", &q)?
            .set("NAME", cname(name)?)?;
        let rep = self.call(&mdc, b, Some((portal::MDS_READPAGE, portal::MDC_REPLY)), None).await?;
        Ok((MdtBody::read(rep.buf("mdt_body", 1, 216)?)?, Vec::new()))
    }

    /// Resolves a path from the root, following symlinks in the middle (and at the end when
    /// `follow`).
    pub async fn resolve(
        self: &Rc<Self>,
        path: &str,
        c: Cred,
        follow: bool,
    ) -> Result<(LuFid, MdtBody)> {
        let mut todo: Vec<String> = components(path).into_iter().rev().map(String::from).collect();
        let mut cur = self.root.get();
        let mut body = self.getattr(cur, c).await?.0;
        let mut stack: Vec<LuFid> = Vec::new();
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == ".." {
                cur = stack.pop().unwrap_or(self.root.get());
                body = self.getattr(cur, c).await?.0;
                continue;
            }
            if body.mbo_mode.get() & S_IFMT != S_IFDIR {
                return Err(Error::new(libc::ENOTDIR).ctx(path.to_string()));
            }
            let (f, b) =
                self.lookup(cur, name.as_bytes(), c).await.map_err(|e| e.ctx(path.to_string()))?;
            let is_link = b.mbo_mode.get() & S_IFMT == S_IFLNK;
            if is_link && (follow || !todo.is_empty()) {
                links += 1;
                if links > 40 {
                    return Err(Error::new(libc::ELOOP).ctx(path.to_string()));
                }
                let target = self.readlink_fid(f, c).await?;
                let t = String::from_utf8_lossy(&target).to_string();
                if t.starts_with('/') {
                    cur = self.root.get();
                    stack.clear();
                    body = self.getattr(cur, c).await?.0;
                }
                for comp in components(&t).into_iter().rev() {
                    todo.push(comp.to_string());
                }
                continue;
            }
            stack.push(cur);
            cur = f;
            body = b;
        }
        Ok((cur, body))
    }

    /// The parent directory of a path and the last component.
    pub async fn parent(self: &Rc<Self>, path: &str, c: Cred) -> Result<(LuFid, String)> {
        let comps = components(path);
        let (last, dirs) = comps
            .split_last()
            .ok_or_else(|| Error::new(libc::EINVAL).ctx(format!("{path}: no name")))?;
        let (p, b) = self.resolve(&dirs.join("/"), c, true).await?;
        if b.mbo_mode.get() & S_IFMT != S_IFDIR {
            return Err(Error::new(libc::ENOTDIR).ctx(path.to_string()));
        }
        Ok((p, (*last).to_string()))
    }

    /// A symlink's target.
    pub async fn readlink_fid(&self, fid: LuFid, c: Cred) -> Result<Vec<u8>> {
        let (body, ea) = self.getattr(fid, c).await?;
        if body.mbo_mode.get() & S_IFMT != S_IFLNK {
            return Err(Error::new(libc::EINVAL));
        }
        Ok(cstr_bytes(&ea).to_vec())
    }

    fn reint_create_rec(parent: LuFid, fid: LuFid, mode: u32, rdev: u64, c: Cred) -> MdtRecCreate {
        MdtRecCreate {
            cr_opcode: reint::CREATE.into(),
            cr_fsuid: c.uid.into(),
            cr_fsgid: c.gid.into(),
            cr_suppgid1: c.suppgid.into(),
            cr_suppgid2: u32::MAX.into(),
            cr_fid1: parent,
            cr_fid2: fid,
            cr_time: now().into(),
            cr_rdev: rdev.into(),
            cr_mode: mode.into(),
            ..Default::default()
        }
    }

    /// Creates a directory, node, FIFO or socket (`mode` has the type bits), or a symlink
    /// (`symlink` non-empty), named `name` in `parent`.
    pub async fn mknod_at(
        self: &Rc<Self>,
        parent: LuFid,
        name: &[u8],
        (mode, rdev): (u32, u64),
        symlink: &[u8],
        ea: &[u8],
        c: Cred,
    ) -> Result<(LuFid, MdtBody)> {
        let fid = self.new_fid().await?;
        let rec = Self::reint_create_rec(parent, fid, mode, rdev, c);
        let elc = self.take_elc(&[parent]);
        let dlm = cancels(elc);
        let b = if mode & S_IFMT == S_IFLNK {
            let mut t = symlink.to_vec();
            t.push(0);
            MsgBuilder::request_fmt(fmt("MDS_REINT_CREATE_SYM")?, Opcode::MdsReint)
                .wire("REC_REINT", &rec)?
                .set("NAME", cname(name)?)?
                .set("SYMTGT", t)?
                .set("DLM_REQ", dlm.to_vec())?
        } else {
            MsgBuilder::request_fmt(fmt("MDS_REINT_CREATE_ACL")?, Opcode::MdsReint)
                .wire("REC_REINT", &rec)?
                .set("NAME", cname(name)?)?
                .set("EADATA", ea.to_vec())?
                .set("DLM_REQ", dlm.to_vec())?
        };
        let mdc = self.mdc(0)?;
        let rep = self.call(&mdc, b, None, None).await?;
        Ok((fid, MdtBody::read(rep.buf("mdt_body", 1, 216)?)?))
    }

    /// `mkdir PATH`.
    pub async fn mkdir(
        self: &Rc<Self>,
        path: &str,
        perm: u32,
        ea: &[u8],
        c: Cred,
    ) -> Result<(LuFid, MdtBody)> {
        let (p, n) = self.parent(path, c).await?;
        self.mknod_at(p, n.as_bytes(), (S_IFDIR | (perm & 0o7777), 0), &[], ea, c)
            .await
            .map_err(|e| e.ctx(path.to_string()))
    }

    /// `ln -s TARGET PATH`.
    pub async fn symlink(
        self: &Rc<Self>,
        target: &str,
        path: &str,
        c: Cred,
    ) -> Result<(LuFid, MdtBody)> {
        let (p, n) = self.parent(path, c).await?;
        self.mknod_at(p, n.as_bytes(), (S_IFLNK | 0o777, 0), target.as_bytes(), &[], c)
            .await
            .map_err(|e| e.ctx(path.to_string()))
    }

    /// Opens `name` in `parent` through an IT_OPEN intent, creating it when `flags` has
    /// O_CREAT; returns its FID, body (with the open handle) and layout.
    pub async fn open_at(
        self: &Rc<Self>,
        parent: LuFid,
        name: &[u8],
        flags: u64,
        perm: u32,
        lov: &[u8],
        c: Cred,
    ) -> Result<(LuFid, MdtBody, Vec<u8>)> {
        self.open_intent(parent, Some(name), LuFid::ZERO, flags, perm, lov, c).await
    }

    /// Opens an object by its FID (MDS_OPEN_BY_FID, as a kernel client reopens an inode it
    /// already knows); returns its body (with the open handle) and layout.
    pub async fn open_by_fid(
        self: &Rc<Self>,
        fid: LuFid,
        flags: u64,
        c: Cred,
    ) -> Result<(LuFid, MdtBody, Vec<u8>)> {
        let flags = (flags & !(of::CREAT | of::EXCL)) | of::BY_FID;
        self.open_intent(fid, None, fid, flags, 0, &[], c).await
    }

    #[allow(clippy::too_many_arguments, reason = "the fields of one intent request")]
    async fn open_intent(
        self: &Rc<Self>,
        parent: LuFid,
        name: Option<&[u8]>,
        child: LuFid,
        flags: u64,
        perm: u32,
        lov: &[u8],
        c: Cred,
    ) -> Result<(LuFid, MdtBody, Vec<u8>)> {
        let create = flags & of::CREAT != 0;
        let fid = if create { self.new_fid().await? } else { child };
        let handle = self.locks.new_handle();
        let dlm = LdlmRequest {
            lock_flags: lf::HAS_INTENT,
            lock_desc: LdlmLockDesc::new(
                lock_type::IBITS,
                parent.res_id(),
                if create { mode::CW } else { mode::CR },
                &Policy::Ibits(LdlmInodebits { bits: ibits::LOOKUP.into(), ..Default::default() }),
            ),
            handles: vec![LustreHandle::new(handle)],
        };
        let mut rec = Self::reint_create_rec(parent, fid, S_IFREG | (perm & 0o7777), 0, c);
        rec.cr_opcode = reint::OPEN.into();
        rec.set_open_flags(flags);
        let opc = it::OPEN | if create { it::CREAT } else { 0 };
        let b = MsgBuilder::request_fmt(fmt("LDLM_INTENT_OPEN")?, Opcode::LdlmEnqueue)
            .set("DLM_REQ", dlm.to_vec())?
            .wire("LDLM_INTENT", &LdlmIntent { opc: opc.into() })?
            .wire("REC_REINT", &rec)?
            .set(
                "NAME",
                match name {
                    Some(n) => cname(n)?,
                    None => Vec::new(),
                },
            )?
            .set("EADATA", lov.to_vec())?;
        let mdc = self.mdc(0)?;
        let rep = self.call(&mdc, b, None, None).await?;
        let r = LdlmReply::read(rep.buf("ldlm_reply", 1, 112)?)?;
        if rep.status() == status::LOCK_ABORTED {
            let st = i32::try_from(r.lock_policy_res2.get().cast_signed()).unwrap_or(-libc::EIO);
            check(st)?;
            return Err(Error::new(libc::EIO));
        }
        self.record_lock(handle, &r, Tgt::Mdc(0));
        let body = MdtBody::read(rep.buf("mdt_body", 2, 216)?)?;
        let n = body.mbo_eadatasize.get() as usize;
        let lay = rep
            .buf("mdt_md", 3, 0)
            .map(|b| b.get(..n.min(b.len())).unwrap_or_default().to_vec())
            .unwrap_or_default();
        Ok((body.mbo_fid1, body, lay))
    }

    /// Closes an open handle, telling the MDT the size and mtime a writer left.
    pub async fn close(&self, fid: LuFid, handle: u64, size: Option<u64>) -> Result<()> {
        let ep = MdtIoepoch { mio_open_handle: LustreHandle::new(handle), ..Default::default() };
        let mut rec =
            MdtRecSetattr { sa_opcode: reint::SETATTR.into(), sa_fid: fid, ..Default::default() };
        if let Some(s) = size {
            rec.sa_valid = (sa::SIZE | sa::MTIME).into();
            rec.sa_size = s.into();
            rec.sa_mtime = now().into();
            rec.sa_ctime = now().into();
            rec.sa_bias = proto::mdt::bias::DATA_MODIFIED.into();
        }
        let b = MsgBuilder::request(Opcode::MdsClose)?
            .wire("MDT_EPOCH", &ep)?
            .wire("REC_REINT", &rec)?;
        let mdc = self.mdc(0)?;
        self.call(&mdc, b, Some((portal::MDS_READPAGE, portal::MDC_REPLY)), None).await.map(|_| ())
    }

    /// Creates an empty regular file (open with O_CREAT|O_EXCL, then close); `lov` is a
    /// requested layout (`lov_user_md`) or empty.
    pub async fn create(
        self: &Rc<Self>,
        path: &str,
        perm: u32,
        lov: &[u8],
        c: Cred,
    ) -> Result<(LuFid, Vec<u8>)> {
        let (p, n) = self.parent(path, c).await?;
        self.create_at(p, n.as_bytes(), perm, lov, c).await.map_err(|e| e.ctx(path.to_string()))
    }

    /// Creates an empty regular file `name` in `parent` (O_CREAT|O_EXCL open, then close).
    pub async fn create_at(
        self: &Rc<Self>,
        parent: LuFid,
        name: &[u8],
        perm: u32,
        lov: &[u8],
        c: Cred,
    ) -> Result<(LuFid, Vec<u8>)> {
        let flags = of::FMODE_READ | of::FMODE_WRITE | of::CREAT | of::EXCL;
        let (fid, body, lay) = self.open_at(parent, name, flags, perm, lov, c).await?;
        self.close(fid, body.mbo_open_handle.get(), None).await?;
        Ok((fid, lay))
    }

    /// Removes a name (rmdir when `dir`).
    pub async fn unlink_at(
        self: &Rc<Self>,
        parent: LuFid,
        name: &[u8],
        dir: bool,
        c: Cred,
    ) -> Result<MdtBody> {
        let child = self.cache.borrow().dentries.get(&(parent, name.to_vec())).map(|x| x.0);
        let mut elc_fids = vec![parent];
        elc_fids.extend(child);
        let elc = self.take_elc(&elc_fids);
        let rec = MdtRecUnlink {
            ul_opcode: reint::UNLINK.into(),
            ul_fsuid: c.uid.into(),
            ul_fsgid: c.gid.into(),
            ul_suppgid1: c.suppgid.into(),
            ul_suppgid2: u32::MAX.into(),
            ul_fid1: parent,
            ul_fid2: child.unwrap_or_default(),
            ul_time: now().into(),
            ul_mode: if dir { S_IFDIR } else { S_IFREG }.into(),
            ..Default::default()
        };
        let dlm = cancels(elc);
        let b = MsgBuilder::request_fmt(fmt("MDS_REINT_UNLINK")?, Opcode::MdsReint)
            .wire("REC_REINT", &rec)?
            .set("NAME", cname(name)?)?
            .set("DLM_REQ", dlm.to_vec())?;
        let mdc = self.mdc(0)?;
        let rep = self.call(&mdc, b, None, None).await?;
        self.cache.borrow_mut().dentries.remove(&(parent, name.to_vec()));
        Ok(MdtBody::read(rep.buf("mdt_body", 1, 216)?)?)
    }

    /// `rm PATH` / `rmdir PATH`.
    pub async fn unlink(self: &Rc<Self>, path: &str, dir: bool, c: Cred) -> Result<MdtBody> {
        let (p, n) = self.parent(path, c).await?;
        self.unlink_at(p, n.as_bytes(), dir, c).await.map_err(|e| e.ctx(path.to_string()))
    }

    /// Renames `sp/sn` to `tp/tn`; `bias` may carry [`RENAME_EXCHANGE`] or
    /// [`RENAME_NOREPLACE`].
    pub async fn rename_at(
        self: &Rc<Self>,
        sp: LuFid,
        sn: &[u8],
        tp: LuFid,
        tn: &[u8],
        bias: u32,
        c: Cred,
    ) -> Result<()> {
        let mut fids = vec![sp, tp];
        for k in [(sp, sn), (tp, tn)] {
            if let Some((f, _)) = self.cache.borrow().dentries.get(&(k.0, k.1.to_vec())) {
                fids.push(*f);
            }
        }
        let elc = self.take_elc(&fids);
        let rec = MdtRecRename {
            rn_opcode: reint::RENAME.into(),
            rn_fsuid: c.uid.into(),
            rn_fsgid: c.gid.into(),
            rn_suppgid1: c.suppgid.into(),
            rn_suppgid2: u32::MAX.into(),
            rn_fid1: sp,
            rn_fid2: tp,
            rn_time: now().into(),
            rn_bias: bias.into(),
            ..Default::default()
        };
        let dlm = cancels(elc);
        let b = MsgBuilder::request_fmt(fmt("MDS_REINT_RENAME")?, Opcode::MdsReint)
            .wire("REC_REINT", &rec)?
            .set("NAME", cname(sn)?)?
            .set("SYMTGT", cname(tn)?)?
            .set("DLM_REQ", dlm.to_vec())?;
        let mdc = self.mdc(0)?;
        self.call(&mdc, b, None, None).await?;
        let mut cache = self.cache.borrow_mut();
        cache.dentries.remove(&(sp, sn.to_vec()));
        cache.dentries.remove(&(tp, tn.to_vec()));
        Ok(())
    }

    /// `mv SRC DST`.
    pub async fn rename(self: &Rc<Self>, src: &str, dst: &str, bias: u32, c: Cred) -> Result<()> {
        let (sp, sn) = self.parent(src, c).await?;
        let (tp, tn) = self.parent(dst, c).await?;
        self.rename_at(sp, sn.as_bytes(), tp, tn.as_bytes(), bias, c)
            .await
            .map_err(|e| e.ctx(format!("{src} -> {dst}")))
    }

    /// Links `fid` as `name` in `parent`.
    pub async fn link_at(
        self: &Rc<Self>,
        fid: LuFid,
        parent: LuFid,
        name: &[u8],
        c: Cred,
    ) -> Result<MdtBody> {
        let elc = self.take_elc(&[parent, fid]);
        let rec = MdtRecLink {
            lk_opcode: reint::LINK.into(),
            lk_fsuid: c.uid.into(),
            lk_fsgid: c.gid.into(),
            lk_suppgid1: c.suppgid.into(),
            lk_suppgid2: u32::MAX.into(),
            lk_fid1: fid,
            lk_fid2: parent,
            lk_time: now().into(),
            ..Default::default()
        };
        let dlm = cancels(elc);
        let b = MsgBuilder::request_fmt(fmt("MDS_REINT_LINK")?, Opcode::MdsReint)
            .wire("REC_REINT", &rec)?
            .set("NAME", cname(name)?)?
            .set("DLM_REQ", dlm.to_vec())?;
        let mdc = self.mdc(0)?;
        let rep = self.call(&mdc, b, None, None).await?;
        Ok(MdtBody::read(rep.buf("mdt_body", 1, 216)?)?)
    }

    /// `ln SRC DST`.
    pub async fn link(self: &Rc<Self>, src: &str, dst: &str, c: Cred) -> Result<MdtBody> {
        let (f, _) = self.resolve(src, c, false).await?;
        let (p, n) = self.parent(dst, c).await?;
        self.link_at(f, p, n.as_bytes(), c).await.map_err(|e| e.ctx(format!("{src} -> {dst}")))
    }

    /// Changes attributes (`MDS_ATTR_*` in `valid`).
    pub async fn setattr_fid(
        self: &Rc<Self>,
        fid: LuFid,
        valid: u64,
        a: &MdtRecSetattr,
        c: Cred,
    ) -> Result<MdtBody> {
        let elc = self.take_elc(&[fid]);
        let mut rec = *a;
        rec.sa_opcode = reint::SETATTR.into();
        rec.sa_fsuid = c.uid.into();
        rec.sa_fsgid = c.gid.into();
        rec.sa_suppgid = c.suppgid.into();
        rec.sa_fid = fid;
        rec.sa_valid = valid.into();
        if valid & sa::CTIME == 0 {
            rec.sa_ctime = now().into();
        }
        let dlm = cancels(elc);
        let b = MsgBuilder::request_fmt(fmt("MDS_REINT_SETATTR")?, Opcode::MdsReint)
            .wire("REC_REINT", &rec)?
            .set("DLM_REQ", dlm.to_vec())?;
        let mdc = self.mdc(0)?;
        let rep = self.call(&mdc, b, None, None).await?;
        Ok(MdtBody::read(rep.buf("mdt_body", 1, 216)?)?)
    }

    /// Sets a directory's default striping the way a 2.15 kernel client's `lfs setstripe DIR`
    /// does: a REINT_SETATTR carrying the `lov_user_md` in EADATA (an empty file created
    /// without objects gets its layout the same way).
    pub async fn set_striping(self: &Rc<Self>, fid: LuFid, lum: &[u8], c: Cred) -> Result<()> {
        let elc = self.take_elc(&[fid]);
        let rec = MdtRecSetattr {
            sa_opcode: reint::SETATTR.into(),
            sa_fsuid: c.uid.into(),
            sa_fsgid: c.gid.into(),
            sa_suppgid: c.suppgid.into(),
            sa_fid: fid,
            sa_ctime: now().into(),
            ..Default::default()
        };
        let dlm = cancels(elc);
        let b = MsgBuilder::request_fmt(fmt("MDS_REINT_SETATTR")?, Opcode::MdsReint)
            .wire("REC_REINT", &rec)?
            .set("EADATA", lum.to_vec())?
            .set("DLM_REQ", dlm.to_vec())?;
        let mdc = self.mdc(0)?;
        self.call(&mdc, b, None, None).await.map(|_| ())
    }

    /// Reads a directory: a PR UPDATE lock on it, then pages over bulk until the end.
    pub async fn readdir(self: &Rc<Self>, dirfid: LuFid, c: Cred) -> Result<Vec<Entry>> {
        let mdc = self.mdc(0)?;
        let mut out = Vec::new();
        let mut hash = 0u64;
        const PAGES: usize = 4;
        for _ in 0..1_000_000 {
            let mut q = Fs::body_for(dirfid, c);
            q.mbo_size = hash.into();
            q.mbo_nlink = u32::try_from(PAGES * dir::LU_PAGE_SIZE).unwrap_or(0).into();
            q.mbo_mode = (dir::luda::FID | dir::luda::TYPE).into();
            q.mbo_valid = md::FLID.into();
            let b = MsgBuilder::request(Opcode::MdsReadpage)?.wire("MDT_BODY", &q)?;
            let rep = self
                .call(
                    &mdc,
                    b,
                    Some((portal::MDS_READPAGE, portal::MDC_REPLY)),
                    Some(Bulk {
                        portal: portal::MDS_BULK,
                        server_gets: false,
                        bufs: vec![vec![0u8; PAGES * dir::LU_PAGE_SIZE]],
                    }),
                )
                .await?;
            let (data, n) = rep.bulk.first().cloned().ok_or_else(|| Error::new(libc::EPROTO))?;
            let mut end = MDS_DIR_END_OFF;
            for page in data.get(..n).unwrap_or_default().chunks(dir::LU_PAGE_SIZE) {
                let (hdr, ents) = dir::parse_page(page)?;
                out.extend(ents.into_iter().map(|e: DirEntry| Entry {
                    name: String::from_utf8_lossy(&e.name).to_string(),
                    fid: e.fid,
                    ftype: u32::from(e.mode_type.unwrap_or(0)),
                }));
                end = hdr.ldp_hash_end.get();
                if end == MDS_DIR_END_OFF {
                    break;
                }
            }
            if end == MDS_DIR_END_OFF || n == 0 {
                return Ok(out);
            }
            hash = end;
        }
        Err(Error::new(libc::EFBIG))
    }

    /// Reads an xattr.
    pub async fn getxattr(&self, fid: LuFid, name: &str, c: Cred) -> Result<Vec<u8>> {
        let mdc = self.mdc(0)?;
        let mut q = Fs::body_for(fid, c);
        q.mbo_valid = md::FLXATTR.into();
        q.mbo_eadatasize = 65536.into();
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        let b = MsgBuilder::request(Opcode::MdsGetxattr)?.wire("MDT_BODY", &q)?.set("NAME", n)?;
        let rep = self.call(&mdc, b, Some((portal::MDS_READPAGE, portal::MDC_REPLY)), None).await?;
        let body = MdtBody::read(rep.buf("mdt_body", 1, 216)?)?;
        let v = rep.buf("eadata", 2, 0)?;
        Ok(v.get(..(body.mbo_eadatasize.get() as usize).min(v.len())).unwrap_or_default().to_vec())
    }

    /// Lists xattr names.
    pub async fn listxattr(&self, fid: LuFid, c: Cred) -> Result<Vec<String>> {
        let mdc = self.mdc(0)?;
        let mut q = Fs::body_for(fid, c);
        q.mbo_valid = md::FLXATTRLS.into();
        q.mbo_eadatasize = 65536.into();
        let b = MsgBuilder::request(Opcode::MdsGetxattr)?
            .wire("MDT_BODY", &q)?
            .set("NAME", Vec::new())?;
        let rep = self.call(&mdc, b, Some((portal::MDS_READPAGE, portal::MDC_REPLY)), None).await?;
        let v = rep.buf("eadata", 2, 0)?;
        Ok(v.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).to_string())
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) an xattr; `flags` are XATTR_CREATE (1) / REPLACE (2).
    pub async fn setxattr(
        self: &Rc<Self>,
        fid: LuFid,
        name: &str,
        value: Option<&[u8]>,
        flags: u32,
        c: Cred,
    ) -> Result<()> {
        let mut rec = MdtRecSetxattr {
            sx_opcode: reint::SETXATTR.into(),
            sx_fsuid: c.uid.into(),
            sx_fsgid: c.gid.into(),
            sx_suppgid1: c.suppgid.into(),
            sx_suppgid2: u32::MAX.into(),
            sx_fid: fid,
            sx_valid: if value.is_some() { md::FLXATTR } else { md::FLXATTRRM }.into(),
            sx_time: now().into(),
            sx_flags: flags.into(),
            ..Default::default()
        };
        rec.sx_size = u32::try_from(value.map_or(0, <[u8]>::len)).unwrap_or(u32::MAX).into();
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        let b = MsgBuilder::request_fmt(fmt("MDS_REINT_SETXATTR")?, Opcode::MdsReint)
            .wire("REC_REINT", &rec)?
            .set("NAME", n)?
            .set("EADATA", value.unwrap_or_default().to_vec())?;
        let mdc = self.mdc(0)?;
        self.call(&mdc, b, None, None).await.map(|_| ())
    }

    /// The layout of a path (a file's stripes, or a directory's default; None if unset).
    pub async fn getstripe(self: &Rc<Self>, path: &str, c: Cred) -> Result<Option<LovMd>> {
        let (f, _) = self.resolve(path, c, true).await?;
        let (_, ea) = self.getattr(f, c).await?;
        if ea.is_empty() {
            return Ok(None);
        }
        let form = if ea.len() >= 32 && LovMd::decode(&ea, LovForm::Stored).is_ok() {
            LovForm::Stored
        } else {
            LovForm::User
        };
        Ok(Some(LovMd::decode(&ea, form)?))
    }
}

impl Fs {
    /// The layout new files in a directory without its own default get: the root's default,
    /// else the file system's (the lov descriptor of the client log), as `lfs getstripe`
    /// shows for such a directory.
    pub async fn inherited_layout(self: &Rc<Self>, c: Cred) -> Result<LovMd> {
        if let Some(l) = self.getstripe("/", c).await? {
            return Ok(l);
        }
        let (size, count) = {
            let log = self.log.borrow();
            (log.stripe_size, log.stripe_count)
        };
        Ok(LovMd {
            magic: proto::lov::magic::V1,
            pattern: proto::lov::pattern::RAID0,
            oi: proto::fid::OstId::default(),
            stripe_size: u32::try_from(size).unwrap_or(1 << 20),
            stripe_count: u16::try_from(count).unwrap_or(1),
            layout_gen: proto::lov::LOV_OFFSET_DEFAULT,
            pool: String::new(),
            objects: Vec::new(),
        })
    }
}

/// The DLM_REQ of a REINT: no lock of its own, just the early cancels it carries (the
/// descriptor stays zeroed, as a 2.15 client leaves it).
fn cancels(elc: Vec<u64>) -> LdlmRequest {
    LdlmRequest {
        lock_flags: 0,
        lock_desc: LdlmLockDesc::default(),
        handles: elc.into_iter().map(LustreHandle::new).collect(),
    }
}

/// A `lov_user_md_v1` asking for striping (0 = default for size/count, -1 = all/any).
#[must_use]
pub fn user_layout(stripe_size: u32, stripe_count: i32, offset: i32) -> Vec<u8> {
    let l = LovMd {
        magic: proto::lov::magic::V1,
        pattern: proto::lov::pattern::RAID0,
        oi: proto::fid::OstId::default(),
        stripe_size,
        stripe_count: if stripe_count < 0 {
            proto::lov::LOV_ALL_STRIPES
        } else {
            u16::try_from(stripe_count).unwrap_or(1)
        },
        layout_gen: if offset < 0 {
            proto::lov::LOV_OFFSET_DEFAULT
        } else {
            u16::try_from(offset).unwrap_or(0)
        },
        pool: String::new(),
        objects: Vec::new(),
    };
    l.to_vec().unwrap_or_default()
}

//! MDT request handlers: decode, run the operation, build the reply Lustre's clients expect.

use super::layout::{self, Striping};
use super::ops::{self, Cred, NewObj, RenameMode, SetAttrReq};
use super::{mdt, shard_of};
use crate::ldlm::service::{AstTarget, enqueue};
use crate::ldlm::{EnqueueReq, ExportId, LdlmError, LockPolicy};
use crate::shard::Shard;
use crate::target::{ENOTSUPP, Outcome, Req, cancel_handles, set_transno};
use osd_nvme::types::mode as m;
use osd_nvme::{Attr, LuFid, ObjType, Osd, Timespec, XattrMode};
use proto::build::MsgBuilder;
use proto::dir::{self, DirEntry, LU_PAGE_SIZE};
use proto::fid::{LuSeqRange, seq_op, seq_range_flags};
use proto::ldlm::{LdlmIntent, LdlmReply, LdlmRequest, disp, flags as lf, it, lock_type, status};
use proto::mdt::{
    MdtBody, MdtIoepoch, MdtRecCreate, MdtRecLink, MdtRecRename, MdtRecSetattr, MdtRecSetxattr,
    MdtRecUnlink, ReintRec, attr as sa, check_name, md, open as of,
};
use proto::msg::LustreMsg;
use proto::opcode::{Opcode, reint};
use proto::ost::{ObdStatfs, os_state};
use proto::portal;
use proto::rmf::{self, Side};
use proto::wire::{Wire, cstr_bytes};
use ptlrpc::error::errno;
use ptlrpc::server;
use std::rc::Rc;
use std::time::Instant;

fn fmt(id: &str) -> Result<&'static rmf::Fmt, i32> {
    rmf::format(id).ok_or(-errno::EPROTO)
}

fn ts(sec: u64) -> Timespec {
    Timespec { sec: i64::try_from(sec).unwrap_or(i64::MAX), nsec: 0 }
}

fn now() -> Timespec {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timespec { sec: i64::try_from(d.as_secs()).unwrap_or(0), nsec: d.subsec_nanos() }
}

/// An `mdt_body` describing an object.
#[must_use]
pub fn body_of(fid: LuFid, a: &Attr, ty: ObjType) -> MdtBody {
    let mut valid = md::FLID
        | md::FLATIME
        | md::FLMTIME
        | md::FLCTIME
        | md::FLMODE
        | md::FLTYPE
        | md::FLUID
        | md::FLGID
        | md::FLNLINK
        | md::FLFLAGS
        | md::FLRDEV
        | md::FLPROJID;
    if ty == ObjType::Regular {
        valid |= md::FLLAZYSIZE | md::FLLAZYBLOCKS;
    } else {
        valid |= md::FLSIZE | md::FLBLOCKS;
    }
    let sec = |t: Timespec| u64::try_from(t.sec).unwrap_or(0);
    MdtBody {
        mbo_fid1: fid,
        mbo_valid: valid.into(),
        mbo_size: a.size.into(),
        mbo_mtime: sec(a.mtime).into(),
        mbo_atime: sec(a.atime).into(),
        mbo_ctime: sec(a.ctime).into(),
        mbo_blocks: a.blocks.into(),
        mbo_mode: a.mode.into(),
        mbo_uid: a.uid.into(),
        mbo_gid: a.gid.into(),
        mbo_flags: a.flags.into(),
        mbo_rdev: u32::try_from(a.rdev).unwrap_or(0).into(),
        mbo_nlink: a.nlink.into(),
        mbo_projid: a.projid.into(),
        mbo_max_mdsize: 65536.into(),
        ..Default::default()
    }
}

/// `fid_is_sane()`: besides `LuFid::is_sane`, a FID of a normal sequence has version 0.
fn fid_ok(f: &LuFid) -> Result<(), i32> {
    let versioned = f.seq() >= proto::fid::seq::START && f.ver() != 0;
    if f.is_sane() && !versioned { Ok(()) } else { Err(-errno::EINVAL) }
}

/// A NAME buffer: NUL-terminated, no '/', 1..=255 bytes.
fn name_of(b: Option<&[u8]>) -> Result<Vec<u8>, i32> {
    let b = b.ok_or(-errno::EPROTO)?;
    match check_name(b) {
        Ok(n) => Ok(n.to_vec()),
        Err(proto::WireError::Oversize { .. }) => Err(-errno::ENAMETOOLONG),
        Err(_) => Err(-errno::EPROTO),
    }
}

fn cred_of(uid: u32, gid: u32, groups: &[u32]) -> Cred {
    Cred { uid, gid, groups: groups.iter().copied().filter(|&g| g != u32::MAX).collect() }
}

/// Handles an MDT request.
pub async fn handle(sh: &Rc<Shard>, req: &Req<'_>) -> Outcome {
    let start = Instant::now();
    let index = req.target.index;
    let (name, r) = match req.inc.opc() {
        Opcode::MdsGetRoot => ("getroot", get_root(req)),
        Opcode::MdsStatfs => ("statfs", statfs(sh, req).await),
        Opcode::MdsGetattr => ("getattr", getattr(sh, req, false).await),
        Opcode::MdsGetattrName => ("getattr_name", getattr(sh, req, true).await),
        Opcode::MdsReint => reint_dispatch(sh, req).await,
        Opcode::LdlmEnqueue => ("enqueue", enqueue_req(sh, req).await),
        Opcode::MdsReadpage => ("readpage", readpage(sh, req).await),
        Opcode::MdsClose => ("close", close(sh, req).await),
        Opcode::MdsSync => ("sync", sync(sh, req).await),
        Opcode::MdsGetxattr => ("getxattr", getxattr(sh, req).await),
        Opcode::SeqQuery => ("seq_query", seq_query(sh, req).await),
        Opcode::FldQuery => ("fld_query", fld_query(req)),
        _ => ("unsupported", Err(-ENOTSUPP)),
    };
    if let Ok(m) = mdt(sh, index) {
        m.stats.add(name, u64::try_from(start.elapsed().as_micros()).unwrap_or(0));
    }
    if let Err(e) = &r {
        log::debug!("MDT{index:04x}: {name} xid {} from {}: errno {e}", req.inc.xid, req.inc.peer);
    }
    r.into()
}

fn get_root(req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let b = MdtBody { mbo_fid1: LuFid::ROOT, mbo_valid: md::FLID.into(), ..Default::default() };
    MsgBuilder::reply(fmt("MDS_GET_ROOT")?, &req.inc.body)
        .wire("MDT_BODY", &b)
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

/// The MDT's usage: every shard's OSD summed.
pub async fn mdt_statfs(sh: &Rc<Shard>, index: u32) -> Result<ObdStatfs, i32> {
    let mut tot = osd_nvme::StatFs::default();
    for s in 0..sh.n {
        let st = sh
            .mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                mdt(&x, index)?.store.osd.statfs().await.map_err(|e| super::store::errno_of(&e))
            })
            .await
            .map_err(|_| -errno::ESHUTDOWN)??;
        tot.blocks += st.blocks;
        tot.bfree += st.bfree;
        tot.bavail += st.bavail;
        tot.files += st.files;
        tot.ffree += st.ffree;
        tot.bsize = st.bsize.max(tot.bsize);
    }
    let mut o = proto::wire::FromZeros::new_zeroed();
    let os: &mut ObdStatfs = &mut o;
    os.os_type = 0x0BD0_0BD0u64.into();
    os.os_blocks = tot.blocks.into();
    os.os_bfree = tot.bfree.into();
    os.os_bavail = tot.bavail.into();
    os.os_files = tot.files.into();
    os.os_ffree = tot.ffree.into();
    os.os_bsize = tot.bsize.max(4096).into();
    os.os_namelen = 255.into();
    os.os_maxbytes = osd_nvme::types::MAX_OBJECT_BYTES.into();
    let ro = mdt(sh, index).map(|m| m.readonly.get()).unwrap_or(false);
    os.os_state = if ro { os_state::READONLY } else { 0 }.into();
    let uuid = format!("{}-MDT{index:04x}_UUID", sh.cfg.fsname);
    proto::wire::set_cstr("fsid", &mut os.os_fsid, uuid.as_bytes()).map_err(|_| -errno::EINVAL)?;
    Ok(o)
}

async fn statfs(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let os = mdt_statfs(sh, req.target.index).await?;
    MsgBuilder::reply(fmt("MDS_STATFS")?, &req.inc.body)
        .wire("OBD_STATFS", &os)
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

/// Fills `body`'s layout or symlink size fields and returns the MDT_MD bytes the client
/// asked for (`mbo_eadatasize` of the request is the most it takes).
async fn md_payload(
    sh: &Rc<Shard>,
    index: u32,
    fid: LuFid,
    ty: ObjType,
    want: u64,
    max: usize,
    body: &mut MdtBody,
) -> Result<Vec<u8>, i32> {
    if ty == ObjType::Symlink && want & md::LINKNAME != 0 {
        let mut t = ops::readlink(sh, index, fid).await?;
        t.push(0);
        if t.len() > max && max > 0 {
            return Err(-errno::ERANGE);
        }
        body.mbo_valid = (body.mbo_valid.get() | md::LINKNAME).into();
        body.mbo_eadatasize = u32::try_from(t.len()).unwrap_or(0).into();
        return Ok(t);
    }
    if want & (md::FLEASIZE | md::FLDIREA | md::FLMODEASIZE) == 0 {
        return Ok(Vec::new());
    }
    match ops::layout(sh, index, fid).await? {
        Some(l) if l.len() <= max || max == 0 => {
            let flag = if ty == ObjType::Dir { md::FLDIREA } else { md::FLEASIZE };
            body.mbo_valid = (body.mbo_valid.get() | flag).into();
            body.mbo_eadatasize = u32::try_from(l.len()).unwrap_or(0).into();
            Ok(l)
        }
        Some(_) => Err(-errno::ERANGE),
        None => Ok(Vec::new()),
    }
}

/// The ACL buffer of a reply (`mdt_pack_acl2body`): the object's access ACL, or nothing;
/// either way `OBD_MD_FLACL` tells the client it has the whole answer. Only for exports that
/// negotiated `OBD_CONNECT_ACL`.
async fn acl_payload(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    fid: LuFid,
    body: &mut MdtBody,
) -> Result<Vec<u8>, i32> {
    if req.flags & proto::connect::flags::ACL == 0 {
        return Ok(Vec::new());
    }
    let name = proto::acl::XATTR_NAME_ACL_ACCESS.as_bytes().to_vec();
    let v = match ops::getxattr(sh, req.target.index, fid, name).await {
        Ok(v) => v,
        Err(e) if e == -errno::ENODATA => Vec::new(),
        Err(e) => return Err(e),
    };
    body.mbo_valid = (body.mbo_valid.get() | md::FLACL).into();
    body.mbo_aclsize = u32::try_from(v.len()).unwrap_or(0).into();
    Ok(v)
}

async fn getattr(sh: &Rc<Shard>, req: &Req<'_>, by_name: bool) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let q = MdtBody::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    // Lustre finds no object for a zero FID (`tgt_mdt_body_unpack` lets it through) and its
    // getattr handler answers -EPROTO.
    if q.mbo_fid1.is_zero() {
        return Err(-errno::EPROTO);
    }
    fid_ok(&q.mbo_fid1)?;
    let fid = if by_name {
        let name = name_of(m.buf(3))?;
        ops::lookup(sh, index, q.mbo_fid1, name).await?.ok_or(-errno::ENOENT)?.0
    } else {
        q.mbo_fid1
    };
    let (a, ty) = ops::getattr(sh, index, fid).await?;
    let mut body = body_of(fid, &a, ty);
    let lay = md_payload(
        sh,
        index,
        fid,
        ty,
        q.mbo_valid.get(),
        q.mbo_eadatasize.get() as usize,
        &mut body,
    )
    .await?;
    let acl = if q.mbo_valid.get() & md::FLACL != 0 {
        acl_payload(sh, req, fid, &mut body).await?
    } else {
        Vec::new()
    };
    let f = fmt(if by_name { "MDS_GETATTR_NAME" } else { "MDS_GETATTR" })?;
    MsgBuilder::reply(f, &req.inc.body)
        .wire("MDT_BODY", &body)
        .and_then(|x| x.set_sized("MDT_MD", lay))
        .and_then(|x| x.set_sized("ACL", acl))
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

async fn reint_dispatch(sh: &Rc<Shard>, req: &Req<'_>) -> (&'static str, Result<Vec<u8>, i32>) {
    let m = match req.inc.msg() {
        Ok(m) => m,
        Err(_) => return ("reint", Err(-errno::EPROTO)),
    };
    // A missing or short record, or an unknown sub-opcode: -EFAULT, as `mdt_reint_opcode`.
    let rec = match m.buf(1).map(ReintRec::decode) {
        Some(Ok(r)) => r,
        _ => return ("reint", Err(-errno::EFAULT)),
    };
    if mdt(sh, req.target.index).map(|x| x.readonly.get()).unwrap_or(false) {
        return ("reint", Err(-errno::EROFS));
    }
    // Early lock cancels ride in the DLM_REQ buffer of modifying requests.
    if let Some(f) = rmf::reint_format(u32_of(m.buf(1)))
        && let Some(i) = f.index_of(Side::Request, "DLM_REQ")
        && let Some(Ok(dlm)) = m.buf(i).filter(|b| b.len() >= 104).map(LdlmRequest::decode)
    {
        cancel_handles(sh, req.export, dlm.handles.iter().map(|h| h.get())).await;
    }
    match rec {
        ReintRec::Create(r) => ("mkdir", reint_create(sh, req, &m, &r).await),
        ReintRec::Setattr(r) => ("setattr", reint_setattr(sh, req, &m, &r).await),
        ReintRec::Unlink(r) => ("unlink", reint_unlink(sh, req, &m, &r).await),
        ReintRec::Link(r) => ("link", reint_link(sh, req, &m, &r).await),
        ReintRec::Rename(r) => ("rename", reint_rename(sh, req, &m, &r).await),
        ReintRec::Setxattr(r) => ("setxattr", reint_setxattr(sh, req, &m, &r).await),
        ReintRec::Open(_) | ReintRec::Resync(_) => ("reint", Err(-ENOTSUPP)),
    }
}

fn u32_of(b: Option<&[u8]>) -> u32 {
    b.and_then(|b| b.get(..4)).and_then(|x| x.try_into().ok()).map_or(0, u32::from_le_bytes)
}

fn reply_body(
    req: &Req<'_>,
    f: &str,
    body: &MdtBody,
    transno: u64,
    lc: u64,
    extra: Option<(&str, Vec<u8>)>,
) -> Result<Vec<u8>, i32> {
    let mut b = MsgBuilder::reply(fmt(f)?, &req.inc.body)
        .wire("MDT_BODY", body)
        .map_err(|_| -errno::EPROTO)?;
    for id in ["MDT_MD", "ACL", "LOGCOOKIES"] {
        if b.format().index_of(Side::Reply, id).is_some() {
            b = b.set_sized(id, Vec::new()).map_err(|_| -errno::EPROTO)?;
        }
    }
    if let Some((id, v)) = extra {
        b = b.set_sized(id, v).map_err(|_| -errno::EPROTO)?;
    }
    let lc = if req.sync { lc.max(transno) } else { lc };
    set_transno(b.body_mut(), transno, lc);
    b.build().map_err(|_| -errno::EPROTO)
}

/// `last_committed` for a reply: this shard's OSD's commit point from its commit callbacks.
/// Transaction numbers are per shard OSD (a cross-shard operation reports the largest of its
/// parts), so with `sync_journal` (every reply's changes committed before it is sent) the
/// reply also covers its own transno: the client keeps nothing for replay.
fn last_committed(sh: &Shard, index: u32) -> u64 {
    sh.mdt(index).map_or(0, |m| m.store.osd.last_committed())
}

fn default_striping(sh: &Shard) -> Striping {
    Striping {
        size: u32::try_from(sh.cfg.stripe_size).unwrap_or(1 << 20),
        count: if sh.cfg.stripe_count < 0 {
            proto::lov::LOV_ALL_STRIPES
        } else {
            u16::try_from(sh.cfg.stripe_count).unwrap_or(1)
        },
        offset: proto::lov::LOV_OFFSET_DEFAULT,
        pool: String::new(),
    }
}

/// The striping a new file in `parent` gets: the request's, else the directory's default,
/// else the file system's.
async fn striping_for(
    sh: &Rc<Shard>,
    index: u32,
    parent: LuFid,
    requested: Option<&[u8]>,
) -> Result<Striping, i32> {
    let mut d = default_striping(sh);
    if let Ok(Some(dl)) = ops::layout(sh, index, parent).await {
        d = Striping::from_user(&dl, &d).unwrap_or(d);
    }
    match requested {
        Some(b) if !b.is_empty() => Striping::from_user(b, &d),
        _ => Ok(d),
    }
}

async fn reint_create(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    r: &MdtRecCreate,
) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    fid_ok(&r.cr_fid1)?;
    let name = name_of(m.buf(3))?;
    let mode = r.cr_mode.get();
    // The umask is the MDT's to apply (a client with OBD_CONNECT_UMASK leaves it to us): not
    // to symlinks, and not where a default ACL decides instead.
    let umask = if req.flags & proto::connect::flags::UMASK != 0 && mode & m::S_IFMT != m::S_IFLNK {
        r.cr_umask.get() & 0o777
    } else {
        0
    };
    let ty = super::store::obj_type_of(mode).ok_or(-errno::EINVAL)?;
    let mut symlink = Vec::new();
    let mut xattrs = Vec::new();
    if ty == ObjType::Symlink {
        // RQF_MDS_REINT_CREATE_SYM: the target is in the fifth buffer (SYMTGT).
        let t = m.buf(4).ok_or(-errno::EPROTO)?;
        symlink = cstr_bytes(t).to_vec();
        if symlink.is_empty() || symlink.len() > 4095 {
            return Err(-errno::ENAMETOOLONG);
        }
    } else if ty == ObjType::Dir {
        // An EADATA of a mkdir is a default striping (lfs setstripe on a new dir) or an LMV.
        if let Some(ea) = m.buf(4).filter(|b| b.len() >= 32)
            && let Ok(s) = Striping::from_user(ea, &default_striping(sh))
        {
            xattrs.push((super::store::XATTR_LOV.to_vec(), s.to_user()));
        }
    }
    let cred =
        cred_of(r.cr_fsuid.get(), r.cr_fsgid.get(), &[r.cr_suppgid1.get(), r.cr_suppgid2.get()]);
    let o = NewObj {
        fid: r.cr_fid2,
        mode,
        umask,
        rdev: r.cr_rdev.get(),
        symlink,
        xattrs,
        time: ts(r.cr_time.get()),
    };
    let (a, transno) = ops::create(sh, index, &cred, r.cr_fid1, &name, o).await?;
    let mut body = body_of(r.cr_fid2, &a, ty);
    body.mbo_fid2 = r.cr_fid1;
    reply_body(req, "MDS_REINT_CREATE", &body, transno, last_committed(sh, index), None)
}

async fn reint_setattr(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    r: &MdtRecSetattr,
) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    fid_ok(&r.sa_fid)?;
    let cred = cred_of(r.sa_fsuid.get(), r.sa_fsgid.get(), &[r.sa_suppgid.get()]);
    let attr = Attr {
        mode: r.sa_mode.get(),
        uid: r.sa_uid.get(),
        gid: r.sa_gid.get(),
        size: r.sa_size.get(),
        atime: ts(r.sa_atime.get()),
        mtime: ts(r.sa_mtime.get()),
        ctime: ts(r.sa_ctime.get()),
        flags: r.sa_attr_flags.get(),
        projid: r.sa_projid.get(),
        ..Attr::default()
    };
    let valid = r.sa_valid.get();
    let sreq = SetAttrReq { valid, attr, from_open: valid & sa::FROM_OPEN != 0 };
    let time =
        if valid & sa::CTIME != 0 && r.sa_ctime.get() != 0 { ts(r.sa_ctime.get()) } else { now() };
    // A layout in EADATA (`lfs setstripe DIR` on a kernel client): the directory's default.
    let ea = rmf::format("MDS_REINT_SETATTR")
        .and_then(|f| f.index_of(Side::Request, "EADATA"))
        .and_then(|i| m.buf(i))
        .filter(|b| !b.is_empty());
    let mut ea_transno = 0;
    if let Some(lum) = ea {
        let (fa, ty) = ops::getattr(sh, index, r.sa_fid).await?;
        ea_transno = match ty {
            ObjType::Dir => set_dir_striping(sh, index, &cred, r.sa_fid, lum).await?,
            // A file created without objects (O_LOV_DELAY_CREATE) gets them now, once.
            ObjType::Regular if ops::layout(sh, index, r.sa_fid).await?.is_none() => {
                if !cred.is_root() && cred.uid != fa.uid {
                    return Err(-errno::EPERM);
                }
                let st = Striping::from_user(lum, &default_striping(sh))?;
                let lay = layout::allocate(sh, index, r.sa_fid, &st).await?;
                ops::setxattr(
                    sh,
                    index,
                    &Cred::default(),
                    r.sa_fid,
                    super::store::XATTR_LOV,
                    Some(lay),
                    XattrMode::Create,
                )
                .await?
            }
            ObjType::Regular => return Err(-errno::EEXIST),
            _ => return Err(-errno::EINVAL),
        };
        if valid & !(sa::CTIME | sa::FROM_OPEN) == 0 {
            let (a, ty) = ops::getattr(sh, index, r.sa_fid).await?;
            return reply_body(
                req,
                "MDS_REINT_SETATTR",
                &body_of(r.sa_fid, &a, ty),
                ea_transno,
                last_committed(sh, index),
                None,
            );
        }
    }
    let (a, transno) = ops::setattr(sh, index, &cred, r.sa_fid, sreq, time).await?;
    let transno = transno.max(ea_transno);
    if valid & sa::SIZE != 0
        && let Ok(Some(l)) = ops::layout(sh, index, r.sa_fid).await
    {
        crate::osp::truncate_objects(sh, index, &l, a.size).await;
    }
    let (_, ty) = ops::getattr(sh, index, r.sa_fid).await?;
    reply_body(
        req,
        "MDS_REINT_SETATTR",
        &body_of(r.sa_fid, &a, ty),
        transno,
        last_committed(sh, index),
        None,
    )
}

async fn reint_unlink(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    r: &MdtRecUnlink,
) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    fid_ok(&r.ul_fid1)?;
    let name = name_of(m.buf(3))?;
    let cred =
        cred_of(r.ul_fsuid.get(), r.ul_fsgid.get(), &[r.ul_suppgid1.get(), r.ul_suppgid2.get()]);
    let want_dir = match r.ul_mode.get() & m::S_IFMT {
        0 => None,
        m::S_IFDIR => Some(true),
        _ => Some(false),
    };
    let rm = ops::unlink(sh, index, &cred, r.ul_fid1, &name, want_dir, ts(r.ul_time.get())).await?;
    let (_, ty) = (
        rm.attr,
        if rm.attr.mode & m::S_IFMT == m::S_IFDIR { ObjType::Dir } else { ObjType::Regular },
    );
    let mut body = body_of(rm.fid, &rm.attr, ty);
    let lay = match rm.layout {
        Some(l) => {
            body.mbo_valid = (body.mbo_valid.get() | md::FLEASIZE).into();
            body.mbo_eadatasize = u32::try_from(l.len()).unwrap_or(0).into();
            Some(("MDT_MD", l))
        }
        None => None,
    };
    reply_body(req, "MDS_REINT_UNLINK", &body, rm.transno, last_committed(sh, index), lay)
}

async fn reint_link(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    r: &MdtRecLink,
) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    fid_ok(&r.lk_fid1)?;
    fid_ok(&r.lk_fid2)?;
    let name = name_of(m.buf(4))?;
    let cred =
        cred_of(r.lk_fsuid.get(), r.lk_fsgid.get(), &[r.lk_suppgid1.get(), r.lk_suppgid2.get()]);
    let (a, transno) =
        ops::link(sh, index, &cred, r.lk_fid1, r.lk_fid2, &name, ts(r.lk_time.get())).await?;
    reply_body(
        req,
        "MDS_REINT_LINK",
        &body_of(r.lk_fid1, &a, ObjType::Regular),
        transno,
        last_committed(sh, index),
        None,
    )
}

async fn reint_rename(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    r: &MdtRecRename,
) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    fid_ok(&r.rn_fid1)?;
    fid_ok(&r.rn_fid2)?;
    let sn = name_of(m.buf(4))?;
    let tn = name_of(m.buf(5))?;
    let cred =
        cred_of(r.rn_fsuid.get(), r.rn_fsgid.get(), &[r.rn_suppgid1.get(), r.rn_suppgid2.get()]);
    // RENAME_NOREPLACE / RENAME_EXCHANGE arrive in rn_flags? 2.15 clients only send plain
    // renames; our client passes them in the bias bits below.
    let bias = r.rn_bias.get();
    let how = if bias & RENAME_EXCHANGE_BIAS != 0 {
        RenameMode::Exchange
    } else if bias & RENAME_NOREPLACE_BIAS != 0 {
        RenameMode::NoReplace
    } else {
        RenameMode::Plain
    };
    let rn =
        ops::rename(sh, index, &cred, (r.rn_fid1, &sn), (r.rn_fid2, &tn), how, ts(r.rn_time.get()))
            .await?;
    let (a, ty) = ops::getattr(sh, index, rn.fid).await?;
    let mut body = body_of(rn.fid, &a, ty);
    let mut lay = None;
    if let Some(rep) = rn.replaced {
        body.mbo_fid2 = rep.fid;
        if let Some(l) = rep.layout {
            body.mbo_valid = (body.mbo_valid.get() | md::FLEASIZE).into();
            body.mbo_eadatasize = u32::try_from(l.len()).unwrap_or(0).into();
            lay = Some(("MDT_MD", l));
        }
    }
    reply_body(req, "MDS_REINT_RENAME", &body, rn.transno, last_committed(sh, index), lay)
}

/// Bias bit our client sets for RENAME_EXCHANGE (not a Lustre 2.15 bit; Lustre clients never
/// set it, so it cannot be misread).
pub const RENAME_EXCHANGE_BIAS: u32 = 1 << 30;
/// Bias bit for RENAME_NOREPLACE.
pub const RENAME_NOREPLACE_BIAS: u32 = 1 << 29;

async fn reint_setxattr(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    r: &MdtRecSetxattr,
) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    fid_ok(&r.sx_fid)?;
    let name = cstr_bytes(m.buf(3).ok_or(-errno::EPROTO)?).to_vec();
    if name.is_empty() || name.len() > 255 {
        return Err(-errno::ERANGE);
    }
    let cred =
        cred_of(r.sx_fsuid.get(), r.sx_fsgid.get(), &[r.sx_suppgid1.get(), r.sx_suppgid2.get()]);
    let valid = r.sx_valid.get();
    let transno = if valid & md::FLXATTRRM != 0 {
        if name == b"lustre.lov" || name == b"trusted.lov" {
            // Removing a directory's layout xattr removes its default striping.
            let (a, ty) = ops::getattr(sh, index, r.sx_fid).await?;
            if ty != ObjType::Dir {
                return Err(-errno::EPERM);
            }
            if !cred.is_root() && cred.uid != a.uid {
                return Err(-errno::EPERM);
            }
            let lov = super::store::XATTR_LOV;
            ops::setxattr(sh, index, &Cred::default(), r.sx_fid, lov, None, XattrMode::Upsert)
                .await?
        } else {
            ops::setxattr(sh, index, &cred, r.sx_fid, &name, None, XattrMode::Upsert).await?
        }
    } else {
        let v = m.buf(4).unwrap_or_default();
        let size = r.sx_size.get() as usize;
        let v = v.get(..size.min(v.len())).unwrap_or_default().to_vec();
        if v.len() > 65536 {
            return Err(-errno::E2BIG);
        }
        // XATTR_CREATE 1, XATTR_REPLACE 2.
        let mode = match r.sx_flags.get() {
            1 => XattrMode::Create,
            2 => XattrMode::Replace,
            _ => XattrMode::Upsert,
        };
        // Setting the layout xattr of a directory sets its default striping.
        if name == b"lustre.lov" || name == b"trusted.lov" {
            let (_, ty) = ops::getattr(sh, index, r.sx_fid).await?;
            if ty != ObjType::Dir {
                return Err(-errno::EPERM); // layouts of files are set at create
            }
            set_dir_striping(sh, index, &cred, r.sx_fid, &v).await?
        } else {
            ops::setxattr(sh, index, &cred, r.sx_fid, &name, Some(v), mode).await?
        }
    };
    let (a, ty) = ops::getattr(sh, index, r.sx_fid).await?;
    reply_body(
        req,
        "MDS_REINT_SETXATTR",
        &body_of(r.sx_fid, &a, ty),
        transno,
        last_committed(sh, index),
        None,
    )
}

/// Sets a directory's default striping from a user layout (the layout xattr, or the EADATA
/// of a REINT_SETATTR as `lfs setstripe DIR` sends it). Returns the transno.
async fn set_dir_striping(
    sh: &Rc<Shard>,
    index: u32,
    cred: &Cred,
    dir: LuFid,
    lum: &[u8],
) -> Result<u64, i32> {
    let (a, _) = ops::getattr(sh, index, dir).await?;
    if !cred.is_root() && cred.uid != a.uid {
        return Err(-errno::EPERM);
    }
    let s = Striping::from_user(lum, &default_striping(sh))?;
    ops::setxattr(
        sh,
        index,
        &Cred::default(),
        dir,
        super::store::XATTR_LOV,
        Some(s.to_user()),
        XattrMode::Upsert,
    )
    .await
}

async fn getxattr(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let q = MdtBody::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    fid_ok(&q.mbo_fid1)?;
    let fid = q.mbo_fid1;
    let (a, ty) = ops::getattr(sh, index, fid).await?;
    let cred = cred_of(q.mbo_fsuid.get(), q.mbo_fsgid.get(), &[q.mbo_suppgid.get()]);
    let max = q.mbo_eadatasize.get() as usize;
    let acl = ops::acl_for_check(sh, index, fid, &a, &cred).await?;
    let value = if q.mbo_valid.get() & md::FLXATTRLS != 0 {
        let mut out = Vec::new();
        for n in ops::listxattr(sh, index, fid).await? {
            if ops::check_xattr_access(&a, ty, &cred, &n, false, acl.as_ref()).is_ok() {
                out.extend_from_slice(&n);
                out.push(0);
            }
        }
        out
    } else {
        let name = cstr_bytes(m.buf(3).ok_or(-errno::EPROTO)?).to_vec();
        ops::check_xattr_access(&a, ty, &cred, &name, false, acl.as_ref())?;
        let internal = if name == b"lustre.lov" { super::store::XATTR_LOV.to_vec() } else { name };
        ops::getxattr(sh, index, fid, internal).await?
    };
    if max > 0 && value.len() > max {
        return Err(-errno::ERANGE);
    }
    let mut body = body_of(fid, &a, ty);
    body.mbo_eadatasize = u32::try_from(value.len()).unwrap_or(0).into();
    let payload = if max == 0 { Vec::new() } else { value };
    MsgBuilder::reply(fmt("MDS_GETXATTR")?, &req.inc.body)
        .wire("MDT_BODY", &body)
        .and_then(|x| x.set_sized("EADATA", payload))
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

async fn readpage(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let q = MdtBody::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    fid_ok(&q.mbo_fid1)?;
    let dirfid = q.mbo_fid1;
    let bytes = q.mbo_nlink.get() as usize;
    if bytes == 0 || !bytes.is_multiple_of(LU_PAGE_SIZE) || bytes > 1 << 20 {
        return Err(-errno::EINVAL);
    }
    let (a, ty) = ops::getattr(sh, index, dirfid).await?;
    if ty != ObjType::Dir {
        return Err(-errno::ENOTDIR);
    }
    let cred = cred_of(q.mbo_fsuid.get(), q.mbo_fsgid.get(), &[q.mbo_suppgid.get()]);
    if !ops::may(sh, index, dirfid, &a, &cred, ops::MAY_READ).await? {
        return Err(-errno::EACCES);
    }
    let npages = bytes / LU_PAGE_SIZE;
    // The client names the entry attributes it wants in mbo_mode (LUDA_FID|LUDA_TYPE).
    let attrs = dir::luda::FID | (q.mbo_mode.get() & (dir::luda::TYPE | dir::luda::BIT64HASH));
    let mut hash = q.mbo_size.get();
    let ds = shard_of(&dirfid, sh.n);
    let mut out = Vec::with_capacity(bytes);
    let mut end_hash = dir::MDS_DIR_END_OFF;
    for _ in 0..npages {
        // Enough entries to fill a page; the iterator keeps hash collisions together.
        let (ents, next): (Vec<DirEntry>, Option<u64>) = sh
            .mesh
            .call(sh, ds, move |x: Rc<Shard>| async move {
                mdt(&x, index)?.store.readdir(&dirfid, hash, 200).await
            })
            .await
            .map_err(|_| -errno::ESHUTDOWN)??;
        if ents.is_empty() {
            let (page, _) = dir::build_page(&[], None, attrs).map_err(|_| -errno::EIO)?;
            out.extend_from_slice(&page);
            end_hash = dir::MDS_DIR_END_OFF;
            break;
        }
        let (page, taken) = dir::build_page(&ents, next, attrs).map_err(|_| -errno::EIO)?;
        out.extend_from_slice(&page);
        match ents.get(taken) {
            Some(e) => hash = e.hash,
            None => match next {
                Some(n) => hash = n,
                None => {
                    end_hash = dir::MDS_DIR_END_OFF;
                    break;
                }
            },
        }
        end_hash = hash;
    }
    let base = server::bulk_match_bits(req.inc, 1);
    let sent = out.len();
    server::bulk_put(&sh.lnet, req.inc.peer, portal::MDS_BULK, base, vec![out])
        .await
        .map_err(|_| -errno::EIO)?;
    let body = MdtBody {
        mbo_fid1: dirfid,
        mbo_size: end_hash.into(),
        mbo_nlink: u32::try_from(sent).unwrap_or(0).into(),
        mbo_valid: (md::FLSIZE | md::FLNLINK).into(),
        ..Default::default()
    };
    MsgBuilder::reply(fmt("MDS_READPAGE")?, &req.inc.body)
        .wire("MDT_BODY", &body)
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

async fn sync(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let q = MdtBody::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    let shards: Vec<usize> =
        if q.mbo_fid1.is_zero() { (0..sh.n).collect() } else { vec![shard_of(&q.mbo_fid1, sh.n)] };
    for s in shards {
        sh.mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                mdt(&x, index)?.store.osd.sync().await.map_err(|e| super::store::errno_of(&e))
            })
            .await
            .map_err(|_| -errno::ESHUTDOWN)??;
    }
    let body = MdtBody { mbo_fid1: q.mbo_fid1, ..Default::default() };
    MsgBuilder::reply(fmt("MDS_SYNC")?, &req.inc.body)
        .wire("MDT_BODY", &body)
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

async fn seq_query(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let op = u32_of(m.buf(1));
    if op != seq_op::ALLOC_META {
        return Err(-errno::EINVAL);
    }
    let s = mdt(sh, req.target.index)?.alloc_seq(sh.id, sh.n).await?;
    let range = LuSeqRange::new(s, s + 1, req.target.index, seq_range_flags::MDT);
    MsgBuilder::reply(fmt("SEQ_QUERY")?, &req.inc.body)
        .wire("SEQ_RANGE", &range)
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

fn fld_query(req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let q = LuSeqRange::read(m.buf(2).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    // One MDT: every metadata sequence is served by it.
    let r = LuSeqRange::new(
        q.lsr_start.get(),
        q.lsr_start.get() + 1,
        req.target.index,
        seq_range_flags::MDT,
    );
    MsgBuilder::reply(fmt("FLD_QUERY")?, &req.inc.body)
        .wire("FLD_MDFLD", &r)
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

// ---- locks and intents ----

fn ldlm_errno(e: LdlmError) -> i32 {
    match e {
        LdlmError::WouldBlock => -errno::EAGAIN,
        LdlmError::TooManyLocks => -errno::ENOMEM,
        LdlmError::NoSuchLock => -errno::ENOENT,
        LdlmError::Invalid => -errno::EINVAL,
        LdlmError::Deadlock => -libc::EDEADLK,
    }
}

/// Grants a client IBITS lock of `dlm`'s mode and bits on `fid` (on its shard).
/// A plain (non-intent) IBITS enqueue: granted now, or queued with a completion AST to come.
async fn queue_client_lock(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    dlm: &LdlmRequest,
    fid: LuFid,
) -> Result<crate::ldlm::Lock, i32> {
    let index = req.target.index;
    let er = enqueue_req_of(req, dlm, fid)?;
    let ast = AstTarget { peer: req.inc.peer, conn: req.conn, home: sh.id };
    let s = shard_of(&fid, sh.n);
    sh.mesh
        .call(sh, s, move |x: Rc<Shard>| async move {
            let slot = mdt(&x, index)?.slot;
            crate::ldlm::service::enqueue_queued(&x, slot, er, ast).await.map_err(ldlm_errno)
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)?
}

fn enqueue_req_of(req: &Req<'_>, dlm: &LdlmRequest, fid: LuFid) -> Result<EnqueueReq, i32> {
    let policy = match dlm.lock_desc.policy() {
        Ok(proto::ldlm::Policy::Ibits(b)) => {
            LockPolicy::Ibits { bits: b.bits.get() | b.try_bits.get() }
        }
        Ok(_) | Err(_) => return Err(-errno::EPROTO),
    };
    Ok(EnqueueReq {
        export: ExportId(req.export),
        remote: dlm.handles.first().map_or(0, |h| h.get()),
        res: fid.res_id(),
        mode: dlm.lock_desc.l_req_mode.get(),
        policy,
        flags: dlm.lock_flags & (lf::BLOCK_NOWAIT | lf::TEST_LOCK),
    })
}

async fn grant_client_lock(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    dlm: &LdlmRequest,
    fid: LuFid,
) -> Result<crate::ldlm::Lock, i32> {
    let index = req.target.index;
    let er = enqueue_req_of(req, dlm, fid)?;
    let ast = AstTarget { peer: req.inc.peer, conn: req.conn, home: sh.id };
    let s = shard_of(&fid, sh.n);
    sh.mesh
        .call(sh, s, move |x: Rc<Shard>| async move {
            let slot = mdt(&x, index)?.slot;
            enqueue(&x, slot, er, Some(ast)).await.map_err(ldlm_errno)
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)?
}

fn dlm_reply(
    dlm: &LdlmRequest,
    lock: Option<&crate::ldlm::Lock>,
    disposition: u64,
    it_status: i32,
) -> LdlmReply {
    let mut desc = dlm.lock_desc;
    let mut flags = 0;
    let mut handle = proto::LustreHandle::new(0);
    if let Some(l) = lock {
        desc = LdlmLockDesc_of(l);
        flags = lf::LOCK_CHANGED;
        handle = proto::LustreHandle::new(l.cookie);
    }
    LdlmReply {
        lock_flags: flags.into(),
        lock_padding: 0.into(),
        lock_desc: desc,
        lock_handle: handle,
        lock_policy_res1: disposition.into(),
        lock_policy_res2: res2(it_status).into(),
    }
}

#[allow(non_snake_case)]
fn LdlmLockDesc_of(l: &crate::ldlm::Lock) -> proto::ldlm::LdlmLockDesc {
    let mut d =
        proto::ldlm::LdlmLockDesc::new(lock_type::IBITS, l.res, l.req_mode, &l.policy.to_wire());
    d.l_granted_mode = l.granted_mode.into();
    d
}

fn res2(e: i32) -> u64 {
    i64::from(e).cast_unsigned()
}

async fn enqueue_req(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let dlm = LdlmRequest::decode(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    // Early lock cancels in handles[1..].
    if dlm.handles.len() > 1 {
        cancel_handles(sh, req.export, dlm.handles.iter().skip(1).map(|h| h.get())).await;
    }
    if dlm.lock_flags & lf::HAS_INTENT != 0 && m.bufcount() > 2 {
        let intent =
            LdlmIntent::read(m.buf(2).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
        return intent_enqueue(sh, req, &m, &dlm, intent.opc.get()).await;
    }
    if dlm.lock_desc.l_resource.lr_type.get() == lock_type::FLOCK {
        return super::flock::enqueue(sh, req, &dlm).await;
    }
    // A plain IBITS enqueue (e.g. PR UPDATE before readdir).
    if dlm.lock_desc.l_resource.lr_type.get() != lock_type::IBITS {
        return Err(-errno::EINVAL);
    }
    let fid = dlm.lock_desc.l_resource.lr_name.fid();
    fid_ok(&fid)?;
    let l = queue_client_lock(sh, req, &dlm, fid).await?;
    let rep = dlm_reply(&dlm, Some(&l), 0, 0);
    let mut rep = rep;
    // Queued behind a conflicting lock: the grant follows as a completion AST.
    rep.lock_flags = (if l.is_granted() { 0 } else { lf::BLOCK_GRANTED }).into();
    MsgBuilder::reply(fmt("LDLM_ENQUEUE")?, &req.inc.body)
        .wire("DLM_REP", &rep)
        .and_then(|x| x.set_sized("DLM_LVB", Vec::new()))
        .and_then(|x| x.build())
        .map_err(|_| -errno::EPROTO)
}

async fn intent_enqueue(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    dlm: &LdlmRequest,
    opc: u64,
) -> Result<Vec<u8>, i32> {
    if opc & (it::OPEN | it::CREAT) != 0 {
        return intent_open(sh, req, m, dlm, opc).await;
    }
    if opc & (it::GETATTR | it::LOOKUP) != 0 {
        return intent_getattr(sh, req, m, dlm).await;
    }
    // IT_LAYOUT, IT_GETXATTR and others are not served: the client falls back.
    let f = rmf::intent_format(opc).ok_or(-errno::EPROTO)?;
    let rep = dlm_reply(dlm, None, disp::IT_EXECD, -errno::EOPNOTSUPP);
    let mut b =
        MsgBuilder::reply(f, &req.inc.body).wire("DLM_REP", &rep).map_err(|_| -errno::EPROTO)?;
    b.body_mut().pb_status = status::LOCK_ABORTED.into();
    b.build().map_err(|_| -errno::EPROTO)
}

/// An intent that ran and failed: no lock, the disposition, and `errno` in `lock_policy_res2`.
fn intent_fail(
    req: &Req<'_>,
    f: &str,
    dlm: &LdlmRequest,
    disposition: u64,
    errno: i32,
) -> Result<Vec<u8>, i32> {
    intent_reply(req, f, dlm, None, (disposition, errno), None, (Vec::new(), Vec::new()))
}

/// Builds an intent reply: the lock (or 301 without one), the disposition and status, and the
/// child's body, layout and ACL.
fn intent_reply(
    req: &Req<'_>,
    f: &str,
    dlm: &LdlmRequest,
    lock: Option<&crate::ldlm::Lock>,
    (disposition, it_status): (u64, i32),
    body: Option<&MdtBody>,
    (md, acl): (Vec<u8>, Vec<u8>),
) -> Result<Vec<u8>, i32> {
    if it_status != 0 {
        log::debug!(
            "intent {f} xid {} from {}: disposition {disposition:#x} status {it_status}",
            req.inc.xid,
            req.inc.peer
        );
    }
    let mut rep = dlm_reply(dlm, lock, disposition, 0);
    rep.lock_policy_res2 = res2(it_status).into();
    let mut b = MsgBuilder::reply(fmt(f)?, &req.inc.body)
        .wire("DLM_REP", &rep)
        .map_err(|_| -errno::EPROTO)?;
    let body = body.copied().unwrap_or_default();
    b = b.wire("MDT_BODY", &body).map_err(|_| -errno::EPROTO)?;
    for id in ["MDT_MD", "ACL", "NIOBUF_INLINE", "FILE_SECCTX", "FILE_ENCCTX", "DEFAULT_MDT_MD"] {
        if b.format().index_of(Side::Reply, id).is_some() {
            let v = match id {
                "MDT_MD" => md.clone(),
                "ACL" => acl.clone(),
                _ => Vec::new(),
            };
            b = b.set_sized(id, v).map_err(|_| -errno::EPROTO)?;
        }
    }
    if lock.is_none() {
        b.body_mut().pb_status = status::LOCK_ABORTED.into();
    }
    b.build().map_err(|_| -errno::EPROTO)
}

async fn intent_getattr(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    dlm: &LdlmRequest,
) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    let f = "LDLM_INTENT_GETATTR";
    let q = MdtBody::read(m.buf(3).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    fid_ok(&q.mbo_fid1)?;
    let name = m.buf(5).map(cstr_bytes).unwrap_or_default().to_vec();
    let mut disposition = disp::IT_EXECD;
    let child = if name.is_empty() {
        q.mbo_fid1
    } else {
        disposition |= disp::LOOKUP_EXECD;
        let cred = cred_of(q.mbo_fsuid.get(), q.mbo_fsgid.get(), &[q.mbo_suppgid.get()]);
        let (pa, pty) = ops::getattr(sh, index, q.mbo_fid1).await?;
        if pty != ObjType::Dir {
            return intent_fail(req, f, dlm, disposition, -errno::ENOTDIR);
        }
        if !ops::may(sh, index, q.mbo_fid1, &pa, &cred, ops::MAY_EXEC).await? {
            return intent_fail(req, f, dlm, disposition, -errno::EACCES);
        }
        let name = match check_name(m.buf(5).unwrap_or_default()) {
            Ok(n) => n.to_vec(),
            Err(_) => {
                return intent_fail(req, f, dlm, disposition, -errno::ENAMETOOLONG);
            }
        };
        match ops::lookup(sh, index, q.mbo_fid1, name).await? {
            Some((c, _)) => {
                disposition |= disp::LOOKUP_POS;
                c
            }
            None => {
                disposition |= disp::LOOKUP_NEG;
                return intent_fail(req, f, dlm, disposition, -errno::ENOENT);
            }
        }
    };
    let (a, ty) = match ops::getattr(sh, index, child).await {
        Ok(x) => x,
        Err(e) => return intent_fail(req, f, dlm, disposition, e),
    };
    let mut body = body_of(child, &a, ty);
    let lay = md_payload(
        sh,
        index,
        child,
        ty,
        q.mbo_valid.get() | md::FLEASIZE,
        q.mbo_eadatasize.get() as usize,
        &mut body,
    )
    .await
    .unwrap_or_default();
    let acl = if q.mbo_valid.get() & md::FLACL != 0 {
        acl_payload(sh, req, child, &mut body).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let lock = grant_client_lock(sh, req, dlm, child).await?;
    intent_reply(req, f, dlm, Some(&lock), (disposition, 0), Some(&body), (lay, acl))
}

async fn intent_open(
    sh: &Rc<Shard>,
    req: &Req<'_>,
    m: &LustreMsg<'_>,
    dlm: &LdlmRequest,
    opc: u64,
) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    let f = "LDLM_INTENT_OPEN";
    let rec = MdtRecCreate::read(m.buf(3).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    if rec.cr_opcode.get() != reint::OPEN {
        return Err(-errno::EPROTO);
    }
    let flags = rec.open_flags();
    let cred = cred_of(
        rec.cr_fsuid.get(),
        rec.cr_fsgid.get(),
        &[rec.cr_suppgid1.get(), rec.cr_suppgid2.get()],
    );
    let parent = rec.cr_fid1;
    let mut disposition = disp::IT_EXECD;
    let time = if rec.cr_time.get() != 0 { ts(rec.cr_time.get()) } else { now() };
    // Which object: by FID, or by name under the parent.
    let found = if flags & of::BY_FID != 0 && !rec.cr_fid2.is_zero() {
        fid_ok(&rec.cr_fid2)?;
        Some(rec.cr_fid2)
    } else {
        fid_ok(&parent)?;
        let name = match name_of(m.buf(6)) {
            Ok(n) => n,
            Err(e) => return intent_fail(req, f, dlm, disposition, e),
        };
        disposition |= disp::LOOKUP_EXECD;
        let (pa, pty) = ops::getattr(sh, index, parent).await?;
        if pty != ObjType::Dir {
            return intent_fail(req, f, dlm, disposition, -errno::ENOTDIR);
        }
        if !ops::may(sh, index, parent, &pa, &cred, ops::MAY_EXEC).await? {
            return intent_fail(req, f, dlm, disposition, -errno::EACCES);
        }
        match ops::lookup(sh, index, parent, name.clone()).await? {
            Some((c, _)) => {
                disposition |= disp::LOOKUP_POS;
                if flags & of::CREAT != 0 && flags & of::EXCL != 0 {
                    return intent_fail(req, f, dlm, disposition, -errno::EEXIST);
                }
                Some(c)
            }
            None => {
                disposition |= disp::LOOKUP_NEG;
                if flags & of::CREAT == 0 || opc & it::CREAT == 0 {
                    return intent_fail(req, f, dlm, disposition, -errno::ENOENT);
                }
                if mdt(sh, index)?.readonly.get() {
                    return intent_fail(req, f, dlm, disposition, -errno::EROFS);
                }
                // Create a regular file with its layout.
                let fid = rec.cr_fid2;
                if fid_ok(&fid).is_err() || fid.seq() < proto::fid::seq::NORMAL {
                    return intent_fail(req, f, dlm, disposition, -errno::EINVAL);
                }
                let mode = (rec.cr_mode.get() & 0o7777) | m::S_IFREG;
                let umask = if req.flags & proto::connect::flags::UMASK != 0 {
                    rec.cr_umask.get() & 0o777
                } else {
                    0
                };
                let requested = m.buf(7).filter(|b| !b.is_empty());
                let striping = match striping_for(sh, index, parent, requested).await {
                    Ok(s) => s,
                    Err(e) => {
                        return intent_fail(req, f, dlm, disposition, e);
                    }
                };
                let lay = if flags & of::DELAY_CREATE != 0 {
                    Vec::new()
                } else {
                    match layout::allocate(sh, index, fid, &striping).await {
                        Ok(l) => l,
                        Err(e) => {
                            return intent_fail(req, f, dlm, disposition, e);
                        }
                    }
                };
                let xattrs = if lay.is_empty() {
                    Vec::new()
                } else {
                    vec![(super::store::XATTR_LOV.to_vec(), lay)]
                };
                let o = NewObj { fid, mode, umask, rdev: 0, symlink: Vec::new(), xattrs, time };
                match ops::create(sh, index, &cred, parent, &name, o).await {
                    Ok(_) => disposition |= disp::OPEN_CREATE,
                    Err(e) => {
                        return intent_fail(req, f, dlm, disposition, e);
                    }
                }
                Some(fid)
            }
        }
    };
    let Some(child) = found else { return Err(-errno::EPROTO) };
    let (mut a, ty) = match ops::getattr(sh, index, child).await {
        Ok(x) => x,
        Err(e) => return intent_fail(req, f, dlm, disposition, e),
    };
    // Permission to open as asked (a new file is always openable by its creator).
    if disposition & disp::OPEN_CREATE == 0 {
        let mut want = 0;
        if flags & of::FMODE_READ != 0 {
            want |= ops::MAY_READ;
        }
        if flags & (of::FMODE_WRITE | of::TRUNC) != 0 {
            want |= ops::MAY_WRITE;
        }
        if ty == ObjType::Dir && flags & (of::FMODE_WRITE | of::TRUNC) != 0 {
            return intent_fail(req, f, dlm, disposition, -errno::EISDIR);
        }
        if ty == ObjType::Symlink && flags & of::BY_FID == 0 {
            // Symlinks are followed by the client; opening one is ELOOP with O_NOFOLLOW.
        }
        if !ops::may(sh, index, child, &a, &cred, want).await? {
            return intent_fail(req, f, dlm, disposition, -errno::EACCES);
        }
        if flags & of::TRUNC != 0 && ty == ObjType::Regular && a.size != 0 {
            let sreq = SetAttrReq { valid: sa::SIZE, attr: Attr::default(), from_open: true };
            match ops::setattr(sh, index, &cred, child, sreq, time).await {
                Ok((na, _)) => {
                    if let Ok(Some(l)) = ops::layout(sh, index, child).await {
                        crate::osp::truncate_objects(sh, index, &l, 0).await;
                    }
                    a = na;
                }
                Err(e) => {
                    return intent_fail(req, f, dlm, disposition, e);
                }
            }
        }
    }
    // A file made without objects (mknod, O_LOV_DELAY_CREATE) gets them when it is first
    // opened for writing without the delay flag, as mdt_create_data gives them.
    if ty == ObjType::Regular
        && flags & of::FMODE_WRITE != 0
        && flags & of::DELAY_CREATE == 0
        && matches!(ops::layout(sh, index, child).await, Ok(None))
    {
        let made = async {
            let st = striping_for(sh, index, parent, None).await?;
            let lay = layout::allocate(sh, index, child, &st).await?;
            let cr = Cred::default();
            ops::setxattr(
                sh,
                index,
                &cr,
                child,
                super::store::XATTR_LOV,
                Some(lay),
                XattrMode::Create,
            )
            .await
        }
        .await;
        // EEXIST: another open gave it objects first.
        if let Err(e) = made
            && e != -errno::EEXIST
        {
            return intent_fail(req, f, dlm, disposition, e);
        }
    }
    // Open: a handle on this (home) shard, an open count on the file's shard.
    let mdtp = mdt(sh, index)?;
    let handle = mdtp.new_open_handle();
    mdtp.opens
        .borrow_mut()
        .insert(handle, super::OpenFile { fid: child, flags, export: req.export });
    let cs = shard_of(&child, sh.n);
    let _ = sh
        .mesh
        .call(sh, cs, move |x: Rc<Shard>| async move {
            if let Ok(mm) = mdt(&x, index) {
                *mm.store.open_counts.borrow_mut().entry(child).or_insert(0) += 1;
            }
        })
        .await;
    disposition |= disp::OPEN_OPEN;
    let mut body = body_of(child, &a, ty);
    body.mbo_open_handle = proto::LustreHandle::new(handle);
    body.mbo_valid = (body.mbo_valid.get() | md::FLHANDLE).into();
    let lay =
        md_payload(sh, index, child, ty, md::FLEASIZE, 65536, &mut body).await.unwrap_or_default();
    // `mdt_finish_open` sends the ACL to every client that negotiated ACLs.
    let acl = acl_payload(sh, req, child, &mut body).await.unwrap_or_default();
    let lock = grant_client_lock(sh, req, dlm, child).await?;
    intent_reply(req, f, dlm, Some(&lock), (disposition, 0), Some(&body), (lay, acl))
}

async fn close(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let index = req.target.index;
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let ep = MdtIoepoch::read(m.buf(1).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    let rec = MdtRecSetattr::read(m.buf(2).ok_or(-errno::EPROTO)?).map_err(|_| -errno::EPROTO)?;
    let handle = ep.mio_open_handle.get();
    let open = mdt(sh, index)?
        .opens
        .borrow_mut()
        .remove(&handle)
        .filter(|o| o.export == req.export)
        .ok_or(-errno::EBADF)?;
    let fid = open.fid;
    // Lazy size and times from the client's close.
    let valid = rec.sa_valid.get()
        & (sa::SIZE | sa::MTIME | sa::ATIME | sa::CTIME | sa::MTIME_SET | sa::ATIME_SET);
    if valid & (sa::SIZE | sa::MTIME) != 0 && open.flags & of::FMODE_WRITE != 0 {
        let attr = Attr {
            size: rec.sa_size.get(),
            mtime: ts(rec.sa_mtime.get()),
            atime: ts(rec.sa_atime.get()),
            ctime: ts(rec.sa_ctime.get()),
            ..Attr::default()
        };
        let root = Cred::default();
        let sreq =
            SetAttrReq { valid: (valid & !sa::CTIME) | sa::MTIME_SET, attr, from_open: true };
        let _ = ops::setattr(sh, index, &root, fid, sreq, ts(rec.sa_ctime.get().max(1))).await;
    }
    let cs = shard_of(&fid, sh.n);
    let orphan_layout = sh
        .mesh
        .call(sh, cs, move |x: Rc<Shard>| async move {
            let mm = mdt(&x, index)?;
            let left = {
                let mut oc = mm.store.open_counts.borrow_mut();
                let c = oc.entry(fid).or_insert(1);
                *c = c.saturating_sub(1);
                let left = *c;
                if left == 0 {
                    oc.remove(&fid);
                }
                left
            };
            if left == 0
                && let Ok(a) = mm.store.attr(&fid).await
                && a.nlink == 0
            {
                return mm.store.destroy_orphan(&fid).await.map(Some);
            }
            Ok::<Option<Vec<u8>>, i32>(None)
        })
        .await
        .map_err(|_| -errno::ESHUTDOWN)??;
    if let Some(l) = orphan_layout.filter(|l| !l.is_empty()) {
        crate::osp::destroy_layout_objects(sh, index, &l).await;
    }
    let body = match ops::getattr(sh, index, fid).await {
        Ok((a, ty)) => body_of(fid, &a, ty),
        Err(_) => MdtBody { mbo_fid1: fid, ..Default::default() },
    };
    reply_body(req, "MDS_CLOSE", &body, 0, last_committed(sh, index), None)
}

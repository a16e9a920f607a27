//! Object attributes: OST_GETATTR (`ofd_getattr_hdl`), OST_SETATTR (`ofd_setattr_hdl`),
//! OST_PUNCH (`ofd_punch_hdl`) and OST_SYNC (`ofd_sync_hdl`). Each runs on the object's shard.

use super::dlm::{EOF, srv_lock, srv_unlock};
use super::{Req, errno_of, obdo_reply, on_object, ost_body, ost_part};
use crate::shard::Shard;
use osd_nvme::types::Timespec;
use osd_nvme::{Attr, AttrMask, Osd};
use proto::ldlm::{flags as lf, mode};
use proto::mdt::md;
use proto::ost::{Obdo, obd_fl};
use ptlrpc::error::errno;
use std::rc::Rc;

/// `obdo_from_la` with `OFD_VALID_FLAGS` (type, mode, size, blocks, times) and, with `ids`,
/// owner, group and project: fills `oa` from an object's attributes.
pub(crate) fn obdo_from_attr(oa: &mut Obdo, a: &Attr, ids: bool) {
    let secs = |t: Timespec| t.sec.max(0).cast_unsigned();
    oa.o_atime = secs(a.atime).into();
    oa.o_mtime = secs(a.mtime).into();
    oa.o_ctime = secs(a.ctime).into();
    oa.o_size = a.size.into();
    oa.o_blocks = a.blocks.into();
    oa.o_mode = a.mode.into();
    let mut v = md::FLATIME
        | md::FLMTIME
        | md::FLCTIME
        | md::FLSIZE
        | md::FLBLOCKS
        | md::FLTYPE
        | md::FLMODE;
    if ids {
        oa.o_uid = a.uid.into();
        oa.o_gid = a.gid.into();
        oa.o_projid = a.projid.into();
        v |= md::FLUID | md::FLGID | md::FLPROJID;
    }
    oa.o_valid = (oa.o_valid.get() | v).into();
}

fn srvlock_of(oa: &Obdo) -> bool {
    oa.o_valid.get() & md::FLFLAGS != 0 && oa.o_flags.get() & obd_fl::SRVLOCK != 0
}

/// OST_GETATTR: the object's attributes. With `OBD_FL_SRVLOCK` the server first takes a PR
/// lock on the whole object (PW with `OBD_FL_FLUSH`), so clients caching writes flush them
/// and the size is exact. The reply always carries `OBD_FL_FLUSH` in `o_flags`, as Lustre's.
pub async fn getattr(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let (oa, fid) = ost_body(req, true)?;
    let fid = fid.ok_or(-errno::EPROTO)?;
    let srvlock = srvlock_of(&oa);
    let lock_mode = if oa.o_flags.get() & obd_fl::FLUSH != 0 { mode::PW } else { mode::PR };
    let a = on_object(sh, req.target.index, fid, move |x, ost, fid| async move {
        let lock = if srvlock {
            Some(srv_lock(&x, ost, fid, lock_mode, (0, EOF), 0).await?)
        } else {
            None
        };
        let r = ost_part(&x, ost)?.osd.attr_get(&fid).await.map_err(|e| errno_of(&e));
        if let Some(c) = lock {
            srv_unlock(&x, c);
        }
        r
    })
    .await?;
    let mut r = Obdo { o_oi: oa.o_oi, o_valid: (md::FLID | md::FLGROUP).into(), ..Obdo::default() };
    obdo_from_attr(&mut r, &a, true);
    r.o_valid = (r.o_valid.get() | md::FLFLAGS).into();
    r.o_flags = obd_fl::FLUSH.into();
    obdo_reply(req, "OST_GETATTR", &r)
}

/// OST_SETATTR (chown, chmod, utimes reach objects this way): times, permission bits,
/// owner, group and project of the object. A size other than `OBD_OBJECT_EOF` is -EPERM:
/// "setattr is trying to truncate object" (truncation is OST_PUNCH).
pub async fn setattr(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let (oa, fid) = ost_body(req, true)?;
    let fid = fid.ok_or(-errno::EPROTO)?;
    let valid = oa.o_valid.get();
    if valid & md::FLSIZE != 0 && oa.o_size.get() != EOF {
        crate::ratelog::warn(
            "setattr truncate",
            &format!(
                "{}: setattr from {} is trying to truncate object {fid}",
                req.target.name(&sh.cfg.fsname),
                req.inc.peer
            ),
        );
        return Err(-errno::EPERM);
    }
    // la_from_obdo, less what an OST object does not take from a client.
    let mut mask = AttrMask::default();
    let mut attr = Attr::default();
    let t = |s: u64| Timespec { sec: i64::try_from(s).unwrap_or(i64::MAX), nsec: 0 };
    for (bit, m) in [
        (md::FLATIME, AttrMask::ATIME),
        (md::FLMTIME, AttrMask::MTIME),
        (md::FLCTIME, AttrMask::CTIME),
        (md::FLMODE, AttrMask::MODE),
        (md::FLUID, AttrMask::UID),
        (md::FLGID, AttrMask::GID),
        (md::FLPROJID, AttrMask::PROJID),
    ] {
        if valid & bit != 0 {
            mask = mask | m;
        }
    }
    attr.atime = t(oa.o_atime.get());
    attr.mtime = t(oa.o_mtime.get());
    attr.ctime = t(oa.o_ctime.get());
    attr.mode = oa.o_mode.get() & 0o7777;
    attr.uid = oa.o_uid.get();
    attr.gid = oa.o_gid.get();
    attr.projid = oa.o_projid.get();
    let sync = req.sync;
    let a = on_object(sh, req.target.index, fid, move |x, ost, fid| async move {
        let osd = &ost_part(&x, ost)?.osd;
        osd.attr_get(&fid).await.map_err(|e| errno_of(&e))?;
        if mask != AttrMask::default() {
            let mut th = osd.trans_create();
            th.declare_attr_set(&fid);
            if sync {
                th.set_sync();
            }
            osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
            let r = osd.attr_set(&mut th, &fid, mask, &attr).await;
            osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
            r.map_err(|e| errno_of(&e))?;
        }
        osd.attr_get(&fid).await.map_err(|e| errno_of(&e))
    })
    .await?;
    let mut r = Obdo { o_oi: oa.o_oi, o_valid: (md::FLID | md::FLGROUP).into(), ..Obdo::default() };
    obdo_from_attr(&mut r, &a, true);
    obdo_reply(req, "OST_SETATTR", &r)
}

/// OST_PUNCH: truncate, `o_size` = the new end and `o_blocks` = `OBD_OBJECT_EOF` (both
/// valid, else -EPROTO; a hole inside the object, `o_blocks` not EOF, is -EPROTO too: Lustre
/// punches only to the end). With `OBD_FL_SRVLOCK` the server takes the PW lock from the new
/// end, asking holders to drop cached pages when truncating to 0. Times the client sends are
/// set with the size. The reply has the blocks left.
pub async fn punch(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let (oa, fid) = ost_body(req, true)?;
    let fid = fid.ok_or(-errno::EPROTO)?;
    let valid = oa.o_valid.get();
    if valid & (md::FLSIZE | md::FLBLOCKS) != (md::FLSIZE | md::FLBLOCKS) {
        return Err(-errno::EPROTO);
    }
    let (start, end) = (oa.o_size.get(), oa.o_blocks.get());
    if end != EOF {
        return Err(-errno::EPROTO);
    }
    let flags = if start == 0 { lf::AST_DISCARD_DATA } else { 0 };
    let srvlock = srvlock_of(&oa);
    let mut mask = AttrMask::SIZE;
    let mut attr = Attr { size: start, ..Attr::default() };
    let t = |s: u64| Timespec { sec: i64::try_from(s).unwrap_or(i64::MAX), nsec: 0 };
    if valid & md::FLMTIME != 0 {
        mask = mask | AttrMask::MTIME;
        attr.mtime = t(oa.o_mtime.get());
    }
    if valid & md::FLATIME != 0 {
        mask = mask | AttrMask::ATIME;
        attr.atime = t(oa.o_atime.get());
    }
    if valid & md::FLCTIME != 0 {
        mask = mask | AttrMask::CTIME;
        attr.ctime = t(oa.o_ctime.get());
    }
    let sync = req.sync;
    let blocks = on_object(sh, req.target.index, fid, move |x, ost, fid| async move {
        let lock = if srvlock {
            Some(srv_lock(&x, ost, fid, mode::PW, (start, end), flags).await?)
        } else {
            None
        };
        let r = async {
            let osd = &ost_part(&x, ost)?.osd;
            osd.attr_get(&fid).await.map_err(|e| errno_of(&e))?;
            let mut th = osd.trans_create();
            th.declare_punch(&fid, start, EOF);
            th.declare_attr_set(&fid);
            if sync {
                th.set_sync();
            }
            osd.trans_start(&mut th).await.map_err(|e| errno_of(&e))?;
            let r = async {
                osd.punch(&mut th, &fid, start, EOF).await?;
                osd.attr_set(&mut th, &fid, mask, &attr).await
            }
            .await;
            osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
            r.map_err(|e| errno_of(&e))?;
            osd.attr_get(&fid).await.map(|a| a.blocks).map_err(|e| errno_of(&e))
        }
        .await;
        if let Some(c) = lock {
            srv_unlock(&x, c);
        }
        r
    })
    .await?;
    let r = Obdo {
        o_oi: oa.o_oi,
        o_valid: (md::FLID | md::FLBLOCKS).into(),
        o_blocks: blocks.into(),
        ..Obdo::default()
    };
    obdo_reply(req, "OST_PUNCH", &r)
}

/// OST_SYNC: commits everything the object's shard has written (`tgt_sync`), then returns
/// the object's attributes.
pub async fn sync(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Vec<u8>, i32> {
    let (oa, fid) = ost_body(req, true)?;
    let fid = fid.ok_or(-errno::EPROTO)?;
    let a = on_object(sh, req.target.index, fid, move |x, ost, fid| async move {
        let osd = &ost_part(&x, ost)?.osd;
        osd.attr_get(&fid).await.map_err(|e| errno_of(&e))?;
        osd.sync().await.map_err(|e| errno_of(&e))?;
        osd.attr_get(&fid).await.map_err(|e| errno_of(&e))
    })
    .await?;
    let mut r = Obdo { o_oi: oa.o_oi, o_valid: (md::FLID | md::FLGROUP).into(), ..Obdo::default() };
    obdo_from_attr(&mut r, &a, false);
    obdo_reply(req, "OST_SYNC", &r)
}

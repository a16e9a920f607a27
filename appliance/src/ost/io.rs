//! OST_READ and OST_WRITE: Lustre's `tgt_brw_read`/`tgt_brw_write` with `ofd_preprw` and
//! `ofd_commitrw`.
//!
//! A BRW names one object (`obd_ioobj`) and the byte ranges to move (`niobuf_remote`, in
//! increasing order). The data moves by bulk, which the server drives: for a write it GETs
//! from the client's MDs, for a read it PUTs to them (with ACKs), one LNet operation per MD,
//! MDs cut as [`proto::ost::bulk_md_lengths`] cuts them and matched from
//! [`ptlrpc::server::bulk_mbits_range`]. Small I/O may carry its data inline instead
//! (`OBD_FL_SHORT_IO`, the `SHORT_IO` buffer), with no bulk.
//!
//! Where the work happens: the request arrives on the shard that owns the client's
//! connection, and the bulk is done there, because that is where LNet reads the socket
//! straight into the MD's memory (and writes from it) without a copy. The object belongs to
//! [`super::ost_shard_of`] its FID, and its I/O runs there: the MD buffers are *moved* to
//! that shard over the mesh (a pointer handed over, no copy of the data) and the OSD writes
//! from them (a read fills buffers cut to the MD layout on the object's shard and moves them
//! back). So the only copy is the OSD's own, into its blocks.
//!
//! Checksums (`OBD_MD_FLCKSUM`) cover the bytes of every niobuf in order
//! ([`proto::cksum::BulkCksum`]). A write whose data does not match is not stored and is
//! answered -EAGAIN so the client resends it (Lustre stores it, reports its own checksum and
//! leaves the client to resend; see docs/wire-coverage.md). Grant is in [`super::grant`].

use super::dlm::{srv_lock, srv_unlock};
use super::{Req, errno_of, on_object, ost_body, ost_part};
use crate::shard::Shard;
use crate::target::Outcome;
use osd_nvme::types::{MAX_OBJECT_BYTES, Timespec};
use osd_nvme::{Attr, AttrMask, LuFid, Osd, OsdError};
use proto::body::msg_flags;
use proto::build::MsgBuilder;
use proto::cksum::{BulkCksum, cksum_type_unpack};
use proto::connect::{cksum, flags as ocf};
use proto::ldlm::mode;
use proto::mdt::md;
use proto::ost::{
    NiobufRemote, ObdIoobj, Obdo, PTLRPC_MAX_BRW_PAGES, brw, bulk_fragments, bulk_md_lengths,
    cksum_type_to_obd_fl, decode_niobufs, obd_fl,
};
use proto::portal;
use proto::wire::Wire;
use ptlrpc::error::errno;
use ptlrpc::server::{self, BulkError};
use std::rc::Rc;
use std::time::Duration;

/// The largest BRW a client that negotiated no BRW size may send (`ONE_MB_BRW_SIZE`); the
/// connect caps what it grants at [`MAX_BRW_SIZE`].
const DEFAULT_BRW_SIZE: u64 = 1 << 20;
/// The largest BRW this server negotiates (`ofd_brw_size`): bulk buffers of one RPC are
/// held in memory, so this bounds a request's memory.
pub const MAX_BRW_SIZE: u64 = 4 << 20;
/// How long a bulk transfer may take at most (`bulk_timeout`), and what a request's own
/// timeout (`pb_timeout`, its deadline) shortens.
const BULK_TIMEOUT: Duration = Duration::from_secs(100);
/// `OBD_MD_FLALLQUOTA`.
const FLALLQUOTA: u64 = md::FLUSRQUOTA | md::FLGRPQUOTA | md::FLPRJQUOTA;

/// A BRW as parsed and checked.
#[derive(Debug)]
struct Brw {
    /// The request body, its `o_oi` rewritten to the FID.
    oa: Obdo,
    fid: LuFid,
    nbs: Vec<NiobufRemote>,
    /// MDs the client may have posted (`ioobj_max_brw_get`).
    max_brw: u32,
    /// Inline data (`OBD_FL_SHORT_IO`): the write's bytes; empty for a read.
    short_io: Option<Vec<u8>>,
    /// The server locks the range for the I/O (`OBD_BRW_SRVLOCK`).
    srvlock: bool,
    /// Bytes the niobufs cover.
    bytes: u64,
}

/// Pages a byte range touches (`osd_map_remote_to_local` makes one local buffer each).
fn pages(off: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    (off + len - 1) / proto::ost::BULK_PAGE - off / proto::ost::BULK_PAGE + 1
}

/// Parses a BRW the way Lustre checks one, returning Lustre's errno for each fault:
/// * `tgt_ost_body_unpack`: the body ([`ost_body`]);
/// * `tgt_io_data_unpack`: exactly one `obd_ioobj` (-EPROTO for none, more, or a buffer that
///   is not a whole number of them), `ioo_max_brw` a power of two, `ioo_bufcnt` from 1 to
///   `PTLRPC_MAX_BRW_PAGES` (each -EPROTO);
/// * `tgt_brw_read`/`tgt_brw_write`: only on the OST_IO portal (-EPROTO); as many niobufs in
///   their buffer as `ioo_bufcnt` says (-EPROTO);
/// * `tgt_brw_lock`: `OBD_BRW_SRVLOCK` on every niobuf or none (-EFAULT);
/// * `osd_map_remote_to_local`: more than `PTLRPC_MAX_BRW_PAGES` pages is -EOVERFLOW.
///
/// And where Lustre does not check (a kernel client never sends these; ldiskfs would hang
/// or crash on them): niobufs of zero length, overlapping or out of order are -EPROTO; more
/// bytes than the negotiated BRW size is -EOVERFLOW (bounded memory per request); data
/// beyond the largest object is -EFBIG; short-I/O data of another length than the niobufs
/// is -EPROTO.
fn parse(req: &Req<'_>, write: bool, brw_limit: u64) -> Result<Brw, i32> {
    let (oa, fid) = ost_body(req, true)?;
    let m = req.inc.msg().map_err(|_| -errno::EPROTO)?;
    let ioo_buf = m.buf(2).unwrap_or_default();
    if ioo_buf.is_empty() || ioo_buf.len() % ObdIoobj::SIZE != 0 {
        return Err(-errno::EPROTO); // "short ioobj" or a buffer that is not an array
    }
    if ioo_buf.len() / ObdIoobj::SIZE > 1 {
        return Err(-errno::EPROTO); // "too many ioobjs"
    }
    let ioo = ObdIoobj::read(ioo_buf).map_err(|_| -errno::EPROTO)?;
    let max_brw = ioo.md_count();
    if !max_brw.is_power_of_two() {
        return Err(-errno::EPROTO); // "bad ioobj max"
    }
    let bufcnt = ioo.ioo_bufcnt.get() as usize;
    if bufcnt == 0 || bufcnt > PTLRPC_MAX_BRW_PAGES {
        return Err(-errno::EPROTO);
    }
    let fid = fid.ok_or(-errno::EPROTO)?;
    if req.inc.portal != portal::OST_IO {
        return Err(-errno::EPROTO); // "deny read/write request ... to portal"
    }
    let nb_buf = m.buf(3).unwrap_or_default();
    if nb_buf.len() % NiobufRemote::SIZE != 0 || nb_buf.len() / NiobufRemote::SIZE != bufcnt {
        return Err(-errno::EPROTO);
    }
    let nbs = decode_niobufs(nb_buf, bufcnt).map_err(|_| -errno::EPROTO)?.to_vec();
    let srvlock = nbs.first().is_some_and(|n| n.rnb_flags.get() & brw::SRVLOCK != 0);
    if srvlock && nbs.iter().any(|n| n.rnb_flags.get() & brw::SRVLOCK == 0) {
        return Err(-errno::EFAULT);
    }
    let npages: u64 =
        nbs.iter().map(|n| pages(n.rnb_offset.get(), u64::from(n.rnb_len.get()))).sum();
    if npages > PTLRPC_MAX_BRW_PAGES as u64 {
        return Err(-errno::EOVERFLOW);
    }
    let bytes: u64 = nbs.iter().map(|n| u64::from(n.rnb_len.get())).sum();
    if bytes > brw_limit {
        return Err(-errno::EOVERFLOW);
    }
    let end = nbs.last().map_or(0, |n| n.rnb_offset.get() + u64::from(n.rnb_len.get()));
    if write && end > MAX_OBJECT_BYTES {
        return Err(-errno::EFBIG);
    }
    let short = oa.o_valid.get() & md::FLFLAGS != 0 && oa.o_flags.get() & obd_fl::SHORT_IO != 0;
    let short_io = if !short {
        None
    } else if write {
        let data = m.buf(5).unwrap_or_default();
        if data.len() as u64 != bytes {
            return Err(-errno::EPROTO);
        }
        Some(data.to_vec())
    } else {
        Some(Vec::new())
    };
    Ok(Brw { oa, fid, nbs, max_brw, short_io, srvlock, bytes })
}

/// The byte limit of one BRW for this client: its negotiated BRW size.
fn brw_limit(sh: &Shard, req: &Req<'_>) -> u64 {
    sh.ost(req.target.index)
        .and_then(|p| p.grants.borrow().export(req.export).map(|e| e.brw_size))
        .filter(|&b| b > 0)
        .unwrap_or(if req.flags & ocf::BRW_SIZE != 0 { MAX_BRW_SIZE } else { DEFAULT_BRW_SIZE })
}

/// The deadline of a request's bulk: its own timeout (`rq_deadline`), at most
/// `bulk_timeout`.
fn bulk_timeout(req: &Req<'_>) -> Duration {
    match req.inc.body.pb_timeout.get() {
        0 => BULK_TIMEOUT,
        t => Duration::from_secs(u64::from(t)).min(BULK_TIMEOUT),
    }
}

/// The MD lengths of the whole request's data.
fn md_lengths(nbs: &[NiobufRemote]) -> Vec<u64> {
    let ranges = nbs.iter().map(|n| (n.rnb_offset.get(), u64::from(n.rnb_len.get())));
    bulk_md_lengths(bulk_fragments(ranges).map(|(_, l)| l))
}

/// Cuts `bufs` (MD buffers, in order) into one list of slices per niobuf length.
fn split_mut<'a>(bufs: &'a mut [Vec<u8>], lens: &[u64]) -> Vec<Vec<&'a mut [u8]>> {
    let mut rest: std::collections::VecDeque<&'a mut [u8]> =
        bufs.iter_mut().map(Vec::as_mut_slice).collect();
    let mut out = Vec::with_capacity(lens.len());
    for &len in lens {
        let mut want = usize::try_from(len).unwrap_or(usize::MAX);
        let mut parts = Vec::new();
        while want > 0 {
            let Some(cur) = rest.pop_front() else { break };
            if cur.len() <= want {
                want -= cur.len();
                parts.push(cur);
            } else {
                let (a, b) = cur.split_at_mut(want);
                parts.push(a);
                rest.push_front(b);
                want = 0;
            }
        }
        out.push(parts);
    }
    out
}

/// Like [`split_mut`], shared.
fn split<'a>(bufs: &'a [Vec<u8>], lens: &[u64]) -> Vec<Vec<&'a [u8]>> {
    let mut rest: std::collections::VecDeque<&'a [u8]> = bufs.iter().map(Vec::as_slice).collect();
    let mut out = Vec::with_capacity(lens.len());
    for &len in lens {
        let mut want = usize::try_from(len).unwrap_or(usize::MAX);
        let mut parts = Vec::new();
        while want > 0 {
            let Some(cur) = rest.pop_front() else { break };
            if cur.len() <= want {
                want -= cur.len();
                parts.push(cur);
            } else {
                let (a, b) = cur.split_at(want);
                parts.push(a);
                rest.push_front(b);
                want = 0;
            }
        }
        out.push(parts);
    }
    out
}

/// The checksum type of a BRW (`obd_cksum_type_unpack`): from `o_flags` when FLFLAGS is
/// set; a write without FLFLAGS means CRC32 (`tgt_brw_write`'s default), a read Adler.
fn cksum_type(oa: &Obdo, write: bool) -> u32 {
    if oa.o_valid.get() & md::FLFLAGS != 0 {
        cksum_type_unpack(oa.o_flags.get())
    } else if write {
        cksum::CRC32
    } else {
        cksum_type_unpack(0)
    }
}

fn rate_warn(what: &'static str, msg: String) {
    crate::ratelog::warn(what, &msg);
}

/// OST_WRITE (`tgt_brw_write`).
pub async fn write(sh: &Rc<Shard>, req: &Req<'_>) -> Outcome {
    match write_inner(sh, req).await {
        Ok(Some(r)) => Outcome::Reply(r),
        Ok(None) => Outcome::Dropped,
        Err(e) => Outcome::Error(e),
    }
}

/// The outcome of a write on the object's shard.
struct Committed {
    attr: Attr,
    rcs: Vec<i32>,
}

async fn write_inner(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Option<Vec<u8>>, i32> {
    let index = req.target.index;
    let b = parse(req, true, brw_limit(sh, req))?;
    let part = ost_part(sh, index)?;
    let mut oa = b.oa;
    let fid = b.fid;
    // A resent or replayed write had its grant accounted when it first came.
    if req.inc.body.pb_flags.get() & (msg_flags::RESENT | msg_flags::REPLAY) != 0 {
        oa.o_valid = (oa.o_valid.get() & !md::FLGRANT).into();
    }
    // tgt_brw_lock, then ofd_preprw_write's "BRW to missing obj" (-ENOENT): on the object's
    // shard, before any data moves.
    let (first, last) = match (b.nbs.first(), b.nbs.last()) {
        (Some(f), Some(l)) => {
            (f.rnb_offset.get(), l.rnb_offset.get() + u64::from(l.rnb_len.get()) - 1)
        }
        _ => return Err(-errno::EPROTO),
    };
    let srvlock = b.srvlock;
    let lock = on_object(sh, index, fid, move |x, ost, fid| async move {
        let lock = if srvlock {
            Some(srv_lock(&x, ost, fid, mode::PW, (first, last), 0).await?)
        } else {
            None
        };
        if let Err(e) = ost_part(&x, ost)?.osd.attr_get(&fid).await {
            if let Some(c) = lock {
                srv_unlock(&x, c);
            }
            return Err(errno_of(&e));
        }
        Ok(lock)
    })
    .await;
    let lock = match lock {
        Ok(l) => l,
        Err(e) => {
            if e == -errno::ENOENT {
                rate_warn(
                    "brw missing object",
                    format!("{}: BRW to missing obj {fid}", req.target.name(&sh.cfg.fsname)),
                );
            }
            // The announcements still count, as for a read.
            part.grants.borrow_mut().prepare_read(req.export, &mut oa);
            return Err(e);
        }
    };
    let unlock = |lock: Option<u64>| async move {
        if let Some(c) = lock {
            let _ = on_object(sh, index, fid, move |x, _, _| async move {
                srv_unlock(&x, c);
                Ok(())
            })
            .await;
        }
    };
    // Grant: the client's announcements, which niobufs may be written, more grant back.
    let mut nbs = b.nbs;
    let (brw_size, grant_param) = part
        .grants
        .borrow()
        .export(req.export)
        .map_or((DEFAULT_BRW_SIZE, false), |e| (e.brw_size, e.grant_param));
    let stale = {
        let g = part.grants.borrow();
        g.needs_refresh(sh.now_ms(), g.chunk(brw_size, grant_param))
    };
    if stale && let Err(e) = super::refresh_grant_space(sh, index).await {
        log::debug!("OST{index:04x}: grant space refresh: {e}");
    }
    let wg = part.grants.borrow_mut().prepare_write(req.export, &mut oa, &mut nbs);
    let lens: Vec<u64> = nbs.iter().map(|n| u64::from(n.rnb_len.get())).collect();
    // The data: inline, or by bulk GET from the client's MDs.
    let data: Vec<Vec<u8>> = match b.short_io {
        Some(d) => vec![d],
        None => {
            let mds = md_lengths(&nbs);
            let bulk_mbits = req.flags & ocf::BULK_MBITS != 0;
            let range = server::bulk_mbits_range(req.inc, b.max_brw, bulk_mbits);
            let bufs = mds.iter().map(|&l| vec![0u8; usize::try_from(l).unwrap_or(0)]).collect();
            match server::brw_bulk_get(
                &sh.lnet,
                req.inc.peer,
                portal::OST_BULK,
                range,
                bufs,
                bulk_timeout(req),
            )
            .await
            {
                Ok(d) => d,
                Err(e) => {
                    bulk_failed(sh, req, "write", &e);
                    part.grants.borrow_mut().commit(req.export, wg, false);
                    unlock(lock).await;
                    return Ok(None);
                }
            }
        }
    };
    // The checksum, over the niobufs' bytes in order.
    let mut rep = oa;
    if oa.o_valid.get() & md::FLCKSUM != 0 {
        let t = cksum_type(&oa, true);
        let Some(mut c) = BulkCksum::new(t) else {
            // T10-PI checksums are never negotiated here.
            part.grants.borrow_mut().commit(req.export, wg, false);
            unlock(lock).await;
            return Err(-errno::EINVAL);
        };
        for d in &data {
            c.update(d);
        }
        let server_ck = c.finish();
        rep.o_valid = (rep.o_valid.get() | md::FLCKSUM | md::FLFLAGS).into();
        rep.o_flags = ((rep.o_flags.get() & !obd_fl::CKSUM_MASK) | cksum_type_to_obd_fl(t)).into();
        rep.set_cksum(server_ck);
        if server_ck != oa.cksum() {
            let mmap = oa.o_valid.get() & md::FLFLAGS != 0 && oa.o_flags.get() & obd_fl::MMAP != 0;
            if !mmap {
                rate_warn(
                    "bad write checksum",
                    format!(
                        "{}: BAD WRITE CHECKSUM: from {} inode [{:#x}:{:#x}:{:#x}] object {fid} \
                         extent [{first}-{last}]: client csum {:x}, server csum {server_ck:x}",
                        req.target.name(&sh.cfg.fsname),
                        req.inc.peer,
                        if oa.o_valid.get() & md::FLFID != 0 { oa.o_parent_seq.get() } else { 0 },
                        if oa.o_valid.get() & md::FLFID != 0 { oa.o_parent_oid.get() } else { 0 },
                        if oa.o_valid.get() & md::FLFID != 0 { oa.o_parent_ver.get() } else { 0 },
                        oa.cksum()
                    ),
                );
            }
            part.stats.cksum_errors.set(part.stats.cksum_errors.get() + 1);
            part.grants.borrow_mut().commit(req.export, wg, false);
            unlock(lock).await;
            // Nothing is stored; -EAGAIN makes a client resend (osc_recoverable_error).
            let rcs = vec![0u8; 4 * nbs.len()];
            let mut bld = MsgBuilder::reply(super::fmt("OST_BRW_WRITE")?, &req.inc.body)
                .wire("OST_BODY", &rep)
                .and_then(|x| x.set("RCS", rcs))
                .map_err(|_| -errno::EPROTO)?;
            bld.body_mut().pb_status = (-errno::EAGAIN).into();
            return bld.build().map(Some).map_err(|_| -errno::EPROTO);
        }
    }
    // ofd_commitrw_write on the object's shard: the granted niobufs, the client's times,
    // attributes back; then the server lock goes.
    let sync = req.sync || nbs.iter().any(|n| n.rnb_flags.get() & brw::ASYNC == 0);
    let (mut mask, mut times) = (AttrMask::default(), Attr::default());
    let t = |s: u64| Timespec { sec: i64::try_from(s).unwrap_or(i64::MAX), nsec: 0 };
    for (bit, m) in [
        (md::FLATIME, AttrMask::ATIME),
        (md::FLMTIME, AttrMask::MTIME),
        (md::FLCTIME, AttrMask::CTIME),
    ] {
        if oa.o_valid.get() & bit != 0 {
            mask = mask | m;
        }
    }
    times.atime = t(oa.o_atime.get());
    times.mtime = t(oa.o_mtime.get());
    times.ctime = t(oa.o_ctime.get());
    let granted: Vec<bool> = nbs.iter().map(|n| n.rnb_flags.get() & brw::GRANTED != 0).collect();
    let offs: Vec<u64> = nbs.iter().map(|n| n.rnb_offset.get()).collect();
    let committed = on_object(sh, index, fid, move |x, ost, fid| async move {
        let osd = ost_part(&x, ost)?.osd.clone();
        let r =
            commit_write(&osd, fid, &data, (&offs, &lens), &granted, sync, (mask, &times)).await;
        if let Some(c) = lock {
            srv_unlock(&x, c);
        }
        r
    })
    .await;
    part.grants.borrow_mut().commit(req.export, wg, committed.is_ok());
    let c = committed?;
    part.stats.writes.set(part.stats.writes.get() + 1);
    part.stats.write_bytes.set(part.stats.write_bytes.get() + b.bytes);
    super::attr::obdo_from_attr(&mut rep, &c.attr, true);
    // "Disable sending mtime back to the client" (the lock holder keeps its own).
    rep.o_valid =
        ((rep.o_valid.get() & !(md::FLMTIME | md::FLATIME)) | md::FLFLAGS | FLALLQUOTA).into();
    let rcs: Vec<u8> = c.rcs.iter().flat_map(|r| r.to_le_bytes()).collect();
    MsgBuilder::reply(super::fmt("OST_BRW_WRITE")?, &req.inc.body)
        .wire("OST_BODY", &rep)
        .and_then(|x| x.set("RCS", rcs))
        .and_then(|x| x.build())
        .map(Some)
        .map_err(|_| -errno::EPROTO)
}

/// Writes the granted niobufs from `data` (MD buffers in niobuf order) in one transaction,
/// sets the client's times, and returns the attributes and one rc per niobuf (-ENOSPC for
/// the ones grant did not cover, which are skipped as `osd_write_commit` skips them).
async fn commit_write(
    osd: &crate::store::AnyOsd,
    fid: LuFid,
    data: &[Vec<u8>],
    (offs, lens): (&[u64], &[u64]),
    granted: &[bool],
    sync: bool,
    (mask, times): (AttrMask, &Attr),
) -> Result<Committed, i32> {
    let parts = split(data, lens);
    let mut tries = 0;
    loop {
        let mut th = osd.trans_create();
        for ((&off, &len), &g) in offs.iter().zip(lens).zip(granted) {
            if g {
                th.declare_write(&fid, off, len);
            }
        }
        th.declare_attr_set(&fid);
        if sync {
            th.set_sync();
        }
        match osd.trans_start(&mut th).await {
            Ok(()) => {}
            Err(OsdError::NoSpace(_)) if tries == 0 => {
                // ofd_commitrw_write: force a commit so freed blocks become usable, retry.
                tries += 1;
                let _ = osd.sync().await;
                continue;
            }
            Err(e) => return Err(errno_of(&e)),
        }
        let r = async {
            osd.attr_get(&fid).await?;
            for (((&off, bufs), &g), _) in offs.iter().zip(&parts).zip(granted).zip(lens) {
                if g {
                    osd.write(&mut th, &fid, off, bufs).await?;
                }
            }
            if mask != AttrMask::default() {
                osd.attr_set(&mut th, &fid, mask, times).await?;
            }
            Ok::<(), OsdError>(())
        }
        .await;
        osd.trans_stop(th).await.map_err(|e| errno_of(&e))?;
        r.map_err(|e| errno_of(&e))?;
        let attr = osd.attr_get(&fid).await.map_err(|e| errno_of(&e))?;
        let rcs = granted.iter().map(|&g| if g { 0 } else { -errno::ENOSPC }).collect();
        return Ok(Committed { attr, rcs });
    }
}

fn bulk_failed(sh: &Shard, req: &Req<'_>, what: &str, e: &BulkError) {
    if let Some(p) = sh.ost(req.target.index) {
        p.stats.bulk_errors.set(p.stats.bulk_errors.get() + 1);
    }
    rate_warn(
        "bulk io error",
        format!(
            "{}: Bulk IO {what} error with {} (xid {}), client will retry: {e}",
            req.target.name(&sh.cfg.fsname),
            req.inc.peer,
            req.inc.xid
        ),
    );
}

/// OST_READ (`tgt_brw_read`).
pub async fn read(sh: &Rc<Shard>, req: &Req<'_>) -> Outcome {
    match read_inner(sh, req).await {
        Ok(Some(r)) => Outcome::Reply(r),
        Ok(None) => Outcome::Dropped,
        Err(e) => Outcome::Error(e),
    }
}

async fn read_inner(sh: &Rc<Shard>, req: &Req<'_>) -> Result<Option<Vec<u8>>, i32> {
    let index = req.target.index;
    let b = parse(req, false, brw_limit(sh, req))?;
    let part = ost_part(sh, index)?;
    let mut oa = b.oa;
    if req.inc.body.pb_flags.get() & (msg_flags::RESENT | msg_flags::REPLAY) != 0 {
        oa.o_valid = (oa.o_valid.get() & !md::FLGRANT).into();
    }
    part.grants.borrow_mut().prepare_read(req.export, &mut oa);
    let short = b.short_io.is_some();
    // Buffers cut like the client's MDs (one buffer for short I/O), filled on the object's
    // shard and moved back.
    let mds = if short { vec![b.bytes] } else { md_lengths(&b.nbs) };
    let offs: Vec<u64> = b.nbs.iter().map(|n| n.rnb_offset.get()).collect();
    let lens: Vec<u64> = b.nbs.iter().map(|n| u64::from(n.rnb_len.get())).collect();
    let (first, last) = (
        offs.first().copied().unwrap_or(0),
        offs.last().copied().unwrap_or(0) + lens.last().copied().unwrap_or(1) - 1,
    );
    let srvlock = b.srvlock;
    let fid = b.fid;
    let (bufs, nob) = on_object(sh, index, fid, move |x, ost, fid| async move {
        let lock = if srvlock {
            Some(srv_lock(&x, ost, fid, mode::PR, (first, last), 0).await?)
        } else {
            None
        };
        let osd = ost_part(&x, ost)?.osd.clone();
        let r = read_object(&osd, fid, &mds, &offs, &lens).await;
        if let Some(c) = lock {
            srv_unlock(&x, c);
        }
        r
    })
    .await?;
    // The reply body: the request's, with o_valid cut to the checksum and grant.
    let mut rep = oa;
    let mut valid = 0;
    if oa.o_valid.get() & md::FLCKSUM != 0 {
        let t = cksum_type(&oa, false);
        let mut c = BulkCksum::new(t).ok_or(-errno::EINVAL)?;
        for d in &bufs {
            c.update(d);
        }
        rep.o_flags = cksum_type_to_obd_fl(t).into();
        rep.set_cksum(c.finish());
        valid = md::FLCKSUM | md::FLFLAGS;
    }
    if oa.o_valid.get() & md::FLGRANT != 0 {
        valid |= md::FLGRANT;
    }
    rep.o_valid = valid.into();
    let short_io = if short {
        bufs.into_iter().next().unwrap_or_default()
    } else {
        let bulk_mbits = req.flags & ocf::BULK_MBITS != 0;
        let range = server::bulk_mbits_range(req.inc, b.max_brw, bulk_mbits);
        if let Err(e) = server::brw_bulk_put(
            &sh.lnet,
            req.inc.peer,
            portal::OST_BULK,
            range,
            bufs,
            bulk_timeout(req),
        )
        .await
        {
            bulk_failed(sh, req, "read", &e);
            return Ok(None);
        }
        Vec::new()
    };
    part.stats.reads.set(part.stats.reads.get() + 1);
    part.stats.read_bytes.set(part.stats.read_bytes.get() + nob);
    let mut bld = MsgBuilder::reply(super::fmt("OST_BRW_READ")?, &req.inc.body)
        .wire("OST_BODY", &rep)
        .and_then(|x| x.set_sized("SHORT_IO", short_io))
        .map_err(|_| -errno::EPROTO)?;
    // A read's status is the number of bytes it moved.
    bld.body_mut().pb_status = i32::try_from(nob).unwrap_or(i32::MAX).into();
    bld.build().map(Some).map_err(|_| -errno::EPROTO)
}

/// Reads the niobufs into buffers of `mds` lengths; stops at the object's end (holes read as
/// zeros). Returns the buffers cut to the bytes read (empty past them) and that count: a
/// short read ends the data (`tgt_brw_read`: every later page is empty).
async fn read_object(
    osd: &crate::store::AnyOsd,
    fid: LuFid,
    mds: &[u64],
    offs: &[u64],
    lens: &[u64],
) -> Result<(Vec<Vec<u8>>, u64), i32> {
    let mut bufs: Vec<Vec<u8>> =
        mds.iter().map(|&l| vec![0u8; usize::try_from(l).unwrap_or(0)]).collect();
    let mut nob = 0u64;
    {
        let parts = split_mut(&mut bufs, lens);
        for ((&off, &len), mut p) in offs.iter().zip(lens).zip(parts) {
            let n = match osd.read(&fid, off, &mut p).await {
                Ok(n) => n as u64,
                Err(e) => return Err(errno_of(&e)),
            };
            nob += n.min(len);
            if n < len {
                break;
            }
        }
    }
    let mut left = usize::try_from(nob).unwrap_or(usize::MAX);
    for b in &mut bufs {
        let keep = b.len().min(left);
        b.truncate(keep);
        left -= keep;
    }
    bufs.retain(|b| !b.is_empty());
    Ok((bufs, nob))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_counted_as_local_buffers() {
        assert_eq!(pages(0, 4096), 1);
        assert_eq!(pages(100, 4096), 2);
        assert_eq!(pages(4095, 2), 2);
        assert_eq!(pages(0, 1), 1);
        assert_eq!(pages(0, 0), 0);
    }

    #[test]
    fn niobuf_slices_cross_md_boundaries() {
        let bufs = vec![vec![1u8; 6], vec![2u8; 4]];
        let s = split(&bufs, &[4, 6]);
        assert_eq!(s[0], vec![&[1u8; 4][..]]);
        assert_eq!(s[1], vec![&[1u8; 2][..], &[2u8; 4][..]]);
        let mut bufs = vec![vec![0u8; 3], vec![0u8; 3]];
        for (i, parts) in split_mut(&mut bufs, &[2, 4]).into_iter().enumerate() {
            for p in parts {
                p.fill(i as u8 + 1);
            }
        }
        assert_eq!(bufs, vec![vec![1, 1, 2], vec![2, 2, 2]]);
    }
}

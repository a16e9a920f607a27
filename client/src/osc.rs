//! OSC: the client's side of one OST: extent locks (with their LVB), glimpses, bulk reads
//! and writes (OST_READ/OST_WRITE with niobufs, bulk MDs split as Lustre splits them, crc32c
//! checksums, grant), punch and object attributes.

use crate::error::{Error, Result, check};
use crate::fs::Fs;
use crate::ldlm::{ClientLock, Tgt};
use crate::lov::Stripe;
use proto::build::MsgBuilder;
use proto::connect::{ObdConnectData, cksum};
use proto::fid::{LuFid, LustreHandle, OstId};
use proto::ldlm::{
    LdlmExtent, LdlmLockDesc, LdlmReply, LdlmRequest, OstLvb, Policy, flags as lf, lock_type, mode,
    status,
};
use proto::mdt::md;
use proto::opcode::Opcode;
use proto::ost::{NiobufRemote, ObdIoobj, Obdo, brw, obd_fl};
use proto::portal;
use proto::wire::{FromZeros, IntoBytes, Wire};
use ptlrpc::Bulk;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// Page size of the bulk fragments (Lustre's clients use the kernel page).
pub const PAGE: u64 = 4096;
/// Last byte of an object, for locks to EOF.
pub const EOF: u64 = u64::MAX;

/// Client state of one OST: grant and the write checksum fault knob.
#[derive(Debug, Default)]
pub struct OscState {
    /// Bytes the OST granted us and we have not used (`cl_avail_grant`).
    pub avail_grant: Cell<u64>,
    /// Bytes written under grant since the last announce (`o_dirty` for the OST).
    pub dirty: Cell<u64>,
    /// Fault injection (Lustre's `OBD_FAIL_OSC_CHECKSUM_SEND` in spirit): corrupt the bulk
    /// data of this many next writes after their checksum is computed, as a bad wire would.
    pub corrupt_writes: Cell<u32>,
    /// Writes the OST refused for a bad checksum and we resent.
    pub checksum_resends: Cell<u64>,
}

/// A piece of a run that one BRW carries (borrowed from the run).
#[derive(Debug, Clone, Copy)]
struct Piece<'a> {
    off: u64,
    data: &'a [u8],
    from_grant: bool,
}

/// One contiguous run of an object write.
#[derive(Debug, Clone)]
pub struct Run {
    /// Object offset.
    pub off: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Written under grant.
    pub from_grant: bool,
}

/// How the bulk of a BRW splits into MDs: page fragments of every niobuf, `LNET_MAX_IOV`
/// a piece. Returns the byte length of each MD.
#[must_use]
pub fn md_lengths(nbs: &[(u64, u64)]) -> Vec<usize> {
    // The same cut the OST expects (proto::ost), so both sides agree by construction.
    let frags = proto::ost::bulk_fragments(nbs.iter().copied()).map(|(_, l)| l);
    proto::ost::bulk_md_lengths(frags)
        .into_iter()
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
        .collect()
}

/// BRW RPCs one object may have in flight (Lustre's `max_rpcs_in_flight` default).
const RPCS_IN_FLIGHT: usize = 8;

/// `ioo_max_brw` of a BRW whose bulk takes `mds` MDs: a power of two at least that large, as
/// the OST requires (`tgt_io_data_unpack`); with our xids aligned to 128 the OST finds the
/// first MD's match bits by clearing that many low bits of `pb_mbits`.
fn md_limit(mds: usize) -> u32 {
    u32::try_from(mds.max(1).next_power_of_two()).unwrap_or(1 << 16)
}

/// Lustre's bulk checksum of `data` for a negotiated type (`osc_checksum_bulk`: one hash
/// over the bytes of every niobuf in order; see [`proto::cksum`]). Types we never negotiate
/// (T10-PI) fall back to CRC32C.
#[must_use]
pub fn bulk_checksum(kind: u32, parts: &[&[u8]]) -> u32 {
    proto::cksum::bulk_cksum(kind, parts.iter().copied())
        .or_else(|| proto::cksum::bulk_cksum(cksum::CRC32C, parts.iter().copied()))
        .unwrap_or(0)
}

/// The `OBD_FL_CKSUM_*` flag of a checksum type.
#[must_use]
pub fn cksum_flag(kind: u32) -> u32 {
    match kind {
        cksum::CRC32 => obd_fl::CKSUM_CRC32,
        cksum::ADLER => obd_fl::CKSUM_ADLER,
        _ => obd_fl::CKSUM_CRC32C,
    }
}

/// The checksum type to use with what the OST granted (crc32c preferred).
#[must_use]
pub fn pick_cksum(granted: u32) -> Option<u32> {
    [cksum::CRC32C, cksum::ADLER, cksum::CRC32].into_iter().find(|k| granted & k != 0)
}

fn object_obdo(fid: LuFid) -> Obdo {
    let mut oa: Obdo = FromZeros::new_zeroed();
    oa.o_oi = OstId::from_fid(fid);
    oa.o_valid = (md::FLID | md::FLGROUP).into();
    oa
}

impl Fs {
    fn osc_data(&self, ost: u32) -> Result<ObdConnectData> {
        self.osc(ost)?
            .connect_data()
            .ok_or_else(|| Error::new(libc::ENOTCONN).ctx(format!("OST{ost:04x}")))
    }

    /// The OSC state of `ost`.
    pub fn osc_state(&self, ost: u32) -> Rc<OscState> {
        self.osc_states.borrow_mut().entry(ost).or_default().clone()
    }

    /// Largest BRW the OST accepts (negotiated `ocd_brw_size`).
    pub fn brw_size(&self, ost: u32) -> u64 {
        self.osc_data(ost)
            .map(|d| u64::from(d.ocd_brw_size.get()))
            .ok()
            .filter(|&s| s >= PAGE)
            .unwrap_or(1 << 20)
    }

    /// Enqueues an extent lock on an object; returns our handle, the granted extent and the
    /// object's LVB. A queued enqueue waits for its completion AST.
    pub async fn extent_lock(
        self: &Rc<Self>,
        s: Stripe,
        lock_mode: u32,
        start: u64,
        end: u64,
    ) -> Result<(u64, LdlmExtent, OstLvb)> {
        let handle = self.locks.new_handle();
        let res = s.fid.res_id();
        let want = LdlmExtent { start: start.into(), end: end.into(), gid: 0.into() };
        let req = LdlmRequest {
            lock_flags: 0,
            lock_desc: LdlmLockDesc::new(lock_type::EXTENT, res, lock_mode, &Policy::Extent(want)),
            handles: vec![LustreHandle::new(handle)],
        };
        let b = MsgBuilder::request_fmt(fmt("LDLM_ENQUEUE_LVB")?, Opcode::LdlmEnqueue)
            .set("DLM_REQ", req.to_vec())?;
        let osc = self.osc(s.ost)?;
        self.locks.expect_completion(handle);
        let what = format!("OST{:04x} lock on {}", s.ost, s.fid);
        let rep = match self.retrying(&what, || self.call(&osc, b.clone(), None, None)).await {
            Ok(r) => r,
            Err(e) => {
                self.locks.forget_completion(handle);
                return Err(e);
            }
        };
        let r = LdlmReply::read(rep.buf("ldlm_reply", 1, 112)?)?;
        let mut lvb =
            rep.buf("dlm_lvb", 2, 0).ok().and_then(|b| OstLvb::read(b).ok()).unwrap_or_default();
        let mut granted_mode = r.lock_desc.l_granted_mode.get();
        let blocked = r.lock_flags.get() & lf::BLOCKED_MASK != 0;
        let mut cp_lvb = false;
        let mut policy = r.lock_desc.policy().ok();
        if blocked {
            let Some(c) = self.locks.wait_completion(handle, crate::fs::COMPLETION_TIMEOUT).await
            else {
                self.locks.forget_completion(handle);
                return Err(Error::new(libc::ETIMEDOUT).ctx("waiting for an extent lock"));
            };
            granted_mode = c.mode;
            // Granted after waiting: the extent may have grown meanwhile. Keeping the
            // request's would make the next write beside it conflict with our own lock.
            policy = c.policy.or(policy);
            // The completion AST carries the LVB as of the grant (ldlm_handle_cp_callback).
            if let Some(v) = c.lvb.as_deref().and_then(|b| OstLvb::read(b).ok()) {
                lvb = v;
                cp_lvb = true;
            }
        }
        let ext = match policy {
            Some(Policy::Extent(e)) => e,
            _ => want,
        };
        self.locks.insert(ClientLock {
            handle,
            remote: r.lock_handle.get(),
            target: Tgt::Osc(s.ost),
            res,
            mode: if granted_mode == 0 { lock_mode } else { granted_mode },
            policy: Policy::Extent(ext),
            last_used: Instant::now(),
            cancelling: false,
        });
        // A blocking AST that came meanwhile acts now that the lock is in the table.
        self.locks.forget_completion(handle);
        if blocked && !cp_lvb {
            // No LVB in the completion: ask (our own lock answers with what we know).
            lvb = self.glimpse(s).await.unwrap_or(lvb);
        }
        self.note_object_size(s.fid, lvb.lvb_size.get());
        Ok((handle, ext, lvb))
    }

    /// A granted lock of ours on `fid` at least `lock_mode` covering `[start, end]`.
    #[must_use]
    pub fn matching_lock(&self, fid: LuFid, lock_mode: u32, start: u64, end: u64) -> Option<u64> {
        self.locks.on_resource(&fid.res_id()).into_iter().find_map(|l| {
            // A lock being given back serves no new I/O (Lustre skips CBPENDING locks): what
            // is cached under it after its write-back would be lost or stale. Operations
            // already using it (its cancel waits for them) go on with it.
            if l.cancelling && !self.locks.in_use(l.handle) {
                return None;
            }
            let strong = l.mode == mode::PW || l.mode == mode::EX || l.mode == lock_mode;
            match l.policy {
                Policy::Extent(e) if strong && e.start.get() <= start && e.end.get() >= end => {
                    Some(l.handle)
                }
                _ => None,
            }
        })
    }

    /// A lock covering `[start, end]` of the object: an existing one, or a new enqueue.
    pub async fn ensure_extent_lock(
        self: &Rc<Self>,
        s: Stripe,
        lock_mode: u32,
        start: u64,
        end: u64,
    ) -> Result<u64> {
        if let Some(h) = self.matching_lock(s.fid, lock_mode, start, end) {
            self.locks.touch(h);
            return Ok(h);
        }
        Ok(self.extent_lock(s, lock_mode, start, end).await?.0)
    }

    /// The object's size as the OST and every lock holder know it (a glimpse: an
    /// IT_GLIMPSE enqueue that returns the LVB and no lock, or a lock).
    pub async fn glimpse(self: &Rc<Self>, s: Stripe) -> Result<OstLvb> {
        let handle = self.locks.new_handle();
        let res = s.fid.res_id();
        let want = LdlmExtent { start: 0.into(), end: EOF.into(), gid: 0.into() };
        let req = LdlmRequest {
            lock_flags: lf::HAS_INTENT,
            lock_desc: LdlmLockDesc::new(lock_type::EXTENT, res, mode::PR, &Policy::Extent(want)),
            handles: vec![LustreHandle::new(handle)],
        };
        let b = MsgBuilder::request_fmt(fmt("LDLM_ENQUEUE_LVB")?, Opcode::LdlmEnqueue)
            .set("DLM_REQ", req.to_vec())?;
        let osc = self.osc(s.ost)?;
        let what = format!("OST{:04x} glimpse of {}", s.ost, s.fid);
        let rep = self.retrying(&what, || self.call(&osc, b.clone(), None, None)).await?;
        let r = LdlmReply::read(rep.buf("ldlm_reply", 1, 112)?)?;
        let lvb = OstLvb::read(rep.buf("dlm_lvb", 2, OstLvb::SIZE)?)?;
        let remote = r.lock_handle.get();
        if rep.status() != status::LOCK_ABORTED && remote != 0 {
            // Granted a lock after all (no conflicting holder): keep it, as Lustre's AGL does.
            let ext = match r.lock_desc.policy() {
                Ok(Policy::Extent(e)) => e,
                _ => want,
            };
            self.locks.insert(ClientLock {
                handle,
                remote,
                target: Tgt::Osc(s.ost),
                res,
                mode: r.lock_desc.l_granted_mode.get().max(mode::PR),
                policy: Policy::Extent(ext),
                last_used: Instant::now(),
                cancelling: false,
            });
        }
        self.note_object_size(s.fid, lvb.lvb_size.get());
        Ok(lvb)
    }

    /// Writes runs of one object (each RPC at most the negotiated BRW size), with checksums
    /// and grant. A write the OST refuses for a bad checksum is sent again.
    pub async fn brw_write(&self, s: Stripe, runs: &[Run]) -> Result<()> {
        use futures_util::StreamExt;
        let max = self.brw_size(s.ost);
        let mut batches: Vec<Vec<Piece<'_>>> = Vec::new();
        let mut batch: Vec<Piece<'_>> = Vec::new();
        let mut size = 0u64;
        for r in runs {
            let mut pos = 0usize;
            while pos < r.data.len() {
                let room = usize::try_from(max - size).unwrap_or(usize::MAX);
                let n = room.min(r.data.len() - pos);
                batch.push(Piece {
                    off: r.off + pos as u64,
                    data: &r.data[pos..pos + n],
                    from_grant: r.from_grant,
                });
                size += n as u64;
                pos += n;
                if size >= max {
                    batches.push(std::mem::take(&mut batch));
                    size = 0;
                }
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        // Several RPCs in flight per object (`max_rpcs_in_flight`).
        let mut results = futures_util::stream::iter(batches.iter())
            .map(|b| self.brw_write_rpc(s, b))
            .buffer_unordered(RPCS_IN_FLIGHT);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    /// Runs `op` until it succeeds, fails for good, or `io_timeout` passes while the OST is
    /// unreachable (a restarting OST: the import reconnects and the BRW is rebuilt and sent
    /// again, as Lustre's OSC redoes a BRW).
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            match op().await {
                Err(e)
                    if matches!(
                        e.errno,
                        libc::ETIMEDOUT
                            | libc::EHOSTUNREACH
                            | libc::ECONNREFUSED
                            | libc::ECONNRESET
                            | libc::ENOTCONN
                            | libc::ENETUNREACH
                    ) && start.elapsed() < self.cfg.io_timeout =>
                {
                    log::info!("{what}: {e}; retrying");
                    glommio::timer::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                r => return r,
            }
        }
    }

    async fn brw_write_rpc(&self, s: Stripe, runs: &[Piece<'_>]) -> Result<()> {
        let what = format!("OST{:04x} write of {}", s.ost, s.fid);
        self.retrying(&what, || self.brw_write_once(s, runs)).await
    }

    async fn brw_write_once(&self, s: Stripe, runs: &[Piece<'_>]) -> Result<()> {
        let osc = self.osc(s.ost)?;
        let st = self.osc_state(s.ost);
        let data = self.osc_data(s.ost)?;
        let ck = if data.flags() & proto::connect::flags::CKSUM != 0 {
            pick_cksum(data.ocd_cksum_types.get())
        } else {
            None
        };
        for attempt in 0..4 {
            let nbs: Vec<(u64, u64)> = runs.iter().map(|r| (r.off, r.data.len() as u64)).collect();
            let lens = md_lengths(&nbs);
            let mut oa = object_obdo(s.fid);
            let mut valid = oa.o_valid.get();
            // Grant: announce what we hold and ask for more (osc_announce_cached).
            valid |= md::FLGRANT | md::FLBLOCKS;
            // o_dirty, o_undirty share o_blocks and o_mode (lustre_idl.h's #defines).
            oa.o_grant = st.avail_grant.get().into();
            oa.o_blocks = st.dirty.get().into();
            oa.o_mode = (4u32 << 20).into();
            if let Some(k) = ck {
                let parts: Vec<&[u8]> = runs.iter().map(|r| r.data).collect();
                oa.o_nlink = bulk_checksum(k, &parts).into(); // o_cksum
                oa.o_flags = cksum_flag(k).into();
                valid |= md::FLCKSUM | md::FLFLAGS;
            }
            oa.o_valid = valid.into();
            let mut ioo = ObdIoobj {
                ioo_oid: OstId::from_fid(s.fid),
                ioo_max_brw: 0.into(),
                ioo_bufcnt: u32::try_from(runs.len()).unwrap_or(u32::MAX).into(),
            };
            ioo.set_md_count(md_limit(lens.len()));
            let mut nb_bytes = Vec::with_capacity(runs.len() * NiobufRemote::SIZE);
            for r in runs {
                let f = brw::WRITE | if r.from_grant { brw::FROM_GRANT } else { 0 };
                let nb = NiobufRemote {
                    rnb_offset: r.off.into(),
                    rnb_len: u32::try_from(r.data.len()).unwrap_or(u32::MAX).into(),
                    rnb_flags: f.into(),
                };
                nb_bytes.extend_from_slice(nb.as_bytes());
            }
            // The bulk: the runs' bytes back to back, cut into MDs on fragment boundaries.
            let mut bufs: Vec<Vec<u8>> = lens.iter().map(|&l| Vec::with_capacity(l)).collect();
            let mut cur = 0usize;
            for r in runs {
                let mut d = r.data;
                while !d.is_empty() && cur < bufs.len() {
                    let room = lens[cur] - bufs[cur].len();
                    let n = room.min(d.len());
                    bufs[cur].extend_from_slice(&d[..n]);
                    d = &d[n..];
                    if bufs[cur].len() == lens[cur] {
                        cur += 1;
                    }
                }
            }
            if st.corrupt_writes.get() > 0
                && let Some(b) = bufs.first_mut().and_then(|b| b.first_mut())
            {
                st.corrupt_writes.set(st.corrupt_writes.get() - 1);
                *b ^= 0xff;
            }
            let b = MsgBuilder::request(Opcode::OstWrite)?
                .wire("OST_BODY", &oa)?
                .set("OBD_IOOBJ", ioo.as_bytes().to_vec())?
                .set("NIOBUF_REMOTE", nb_bytes)?;
            let bulk = Bulk { portal: portal::OST_BULK, server_gets: true, bufs };
            let rep = osc
                .rpc_via(Some((portal::OST_IO, portal::OSC_REPLY)), b, Some(bulk))
                .await
                .map_err(Error::from)?;
            self.rpcs.set(self.rpcs.get() + 1);
            if rep.status() == -libc::EAGAIN && ck.is_some() && attempt < 3 {
                st.checksum_resends.set(st.checksum_resends.get() + 1);
                log::warn!("OST{:04x}: write of {} refused (checksum); resending", s.ost, s.fid);
                continue;
            }
            check(rep.status())?;
            let ra = Obdo::read(rep.buf("ost_body", 1, Obdo::SIZE)?)?;
            if ra.o_valid.get() & md::FLGRANT != 0 {
                st.avail_grant.set(st.avail_grant.get().saturating_add(ra.o_grant.get()));
            }
            st.dirty.set(0);
            if let Ok(rcs) = rep.buf("rcs", 2, 0) {
                for c in rcs.chunks_exact(4) {
                    let v = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    check(v)?;
                }
            }
            let end = runs.iter().map(|r| r.off + r.data.len() as u64).max().unwrap_or(0);
            self.note_object_size(s.fid, end);
            return Ok(());
        }
        Err(Error::new(libc::EIO).ctx(format!("OST{:04x}: write checksums keep failing", s.ost)))
    }

    /// Reads `len` bytes of an object at `off` (fewer at the object's end; holes read as
    /// zeros), verifying the checksum when the OST sends one.
    pub async fn brw_read(&self, s: Stripe, off: u64, len: u64) -> Result<Vec<u8>> {
        use futures_util::StreamExt;
        let max = self.brw_size(s.ost);
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let end = off + len;
        let pieces: Vec<(u64, u64)> = (off..end)
            .step_by(usize::try_from(max.max(1)).unwrap_or(usize::MAX))
            .map(|p| (p, (end - p).min(max)))
            .collect();
        // Several RPCs in flight, their data kept in order; a short one ends the object.
        let mut results = futures_util::stream::iter(pieces)
            .map(|(p, n)| async move { (n, self.brw_read_rpc(s, p, n).await) })
            .buffered(RPCS_IN_FLIGHT);
        while let Some((n, got)) = results.next().await {
            let got = got?;
            let short = (got.len() as u64) < n;
            out.extend_from_slice(&got);
            if short {
                break;
            }
        }
        Ok(out)
    }

    async fn brw_read_rpc(&self, s: Stripe, off: u64, len: u64) -> Result<Vec<u8>> {
        let what = format!("OST{:04x} read of {}", s.ost, s.fid);
        self.retrying(&what, || self.brw_read_once(s, off, len)).await
    }

    async fn brw_read_once(&self, s: Stripe, off: u64, len: u64) -> Result<Vec<u8>> {
        let osc = self.osc(s.ost)?;
        let data = self.osc_data(s.ost)?;
        let ck = if data.flags() & proto::connect::flags::CKSUM != 0 {
            pick_cksum(data.ocd_cksum_types.get())
        } else {
            None
        };
        let lens = md_lengths(&[(off, len)]);
        let mut oa = object_obdo(s.fid);
        if let Some(k) = ck {
            oa.o_flags = cksum_flag(k).into();
            oa.o_valid = (oa.o_valid.get() | md::FLCKSUM | md::FLFLAGS).into();
        }
        let mut ioo = ObdIoobj {
            ioo_oid: OstId::from_fid(s.fid),
            ioo_max_brw: 0.into(),
            ioo_bufcnt: 1.into(),
        };
        ioo.set_md_count(md_limit(lens.len()));
        let nb = NiobufRemote {
            rnb_offset: off.into(),
            rnb_len: u32::try_from(len).map_err(|_| Error::new(libc::EINVAL))?.into(),
            rnb_flags: brw::READ.into(),
        };
        let b = MsgBuilder::request(Opcode::OstRead)?
            .wire("OST_BODY", &oa)?
            .set("OBD_IOOBJ", ioo.as_bytes().to_vec())?
            .set("NIOBUF_REMOTE", nb.as_bytes().to_vec())?;
        let bufs: Vec<Vec<u8>> = lens.iter().map(|&l| vec![0u8; l]).collect();
        let bulk = Bulk { portal: portal::OST_BULK, server_gets: false, bufs };
        let rep = osc
            .rpc_via(Some((portal::OST_IO, portal::OSC_REPLY)), b, Some(bulk))
            .await
            .map_err(Error::from)?;
        self.rpcs.set(self.rpcs.get() + 1);
        check(rep.status())?;
        // pb_status of a read is the number of bytes the OST sent.
        let n = usize::try_from(rep.status().max(0)).unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        if let Ok(short) = rep.buf("short_io", 2, 0)
            && !short.is_empty()
        {
            out.extend_from_slice(&short[..n.min(short.len())]);
        } else {
            for (b, got) in &rep.bulk {
                out.extend_from_slice(&b[..(*got).min(b.len())]);
            }
            out.truncate(n);
        }
        let ra = Obdo::read(rep.buf("ost_body", 1, Obdo::SIZE)?)?;
        if let Some(k) = ck
            && ra.o_valid.get() & md::FLCKSUM != 0
        {
            let mine = bulk_checksum(k, &[&out]);
            if mine != ra.o_nlink.get() {
                return Err(Error::new(libc::EIO).ctx(format!(
                    "OST{:04x}: read checksum of {} is {:#x}, the OST sent {:#x}",
                    s.ost,
                    s.fid,
                    mine,
                    ra.o_nlink.get()
                )));
            }
        }
        Ok(out)
    }

    /// Truncates an object to `size` (OST_PUNCH from `size` to the end).
    pub async fn ost_punch(&self, s: Stripe, size: u64) -> Result<()> {
        let mut oa = object_obdo(s.fid);
        oa.o_valid = (oa.o_valid.get() | md::FLSIZE | md::FLBLOCKS).into();
        oa.o_size = size.into();
        oa.o_blocks = EOF.into();
        let b = MsgBuilder::request(Opcode::OstPunch)?.wire("OST_BODY", &oa)?;
        let osc = self.osc(s.ost)?;
        let what = format!("OST{:04x} punch of {}", s.ost, s.fid);
        self.retrying(&what, || self.call(&osc, b.clone(), None, None)).await?;
        self.set_object_size(s.fid, size);
        Ok(())
    }

    /// Records that an object is at least `size` bytes.
    pub fn note_object_size(&self, fid: LuFid, size: u64) {
        let mut m = self.object_sizes.borrow_mut();
        let e = m.entry(fid).or_insert(0);
        *e = (*e).max(size);
    }

    /// Records an object's exact size (after a truncate).
    pub fn set_object_size(&self, fid: LuFid, size: u64) {
        self.object_sizes.borrow_mut().insert(fid, size);
    }

    /// What we know of an object's size.
    #[must_use]
    pub fn known_object_size(&self, fid: LuFid) -> Option<u64> {
        self.object_sizes.borrow().get(&fid).copied()
    }
}

fn fmt(id: &str) -> Result<&'static proto::rmf::Fmt> {
    proto::rmf::format(id).ok_or_else(|| Error::new(libc::EPROTO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md_split_follows_page_fragments() {
        assert_eq!(md_lengths(&[(0, 4096)]), vec![4096]);
        assert_eq!(md_lengths(&[(0, 1 << 20)]), vec![1 << 20]);
        assert_eq!(md_lengths(&[(0, 4 << 20)]), vec![1 << 20; 4]);
        // An unaligned start makes a short first fragment: 257 fragments for 1 MiB.
        assert_eq!(md_lengths(&[(100, 1 << 20)]), vec![(1 << 20) - 100, 100]);
        assert_eq!(md_lengths(&[(0, 10), (4096, 10)]), vec![20]);
        assert!(md_lengths(&[]).is_empty());
    }

    #[test]
    fn checksums_match_the_known_values() {
        assert_eq!(bulk_checksum(cksum::CRC32C, &[b"123456789"]), 0xe306_9283);
        assert_eq!(bulk_checksum(cksum::CRC32C, &[b"1234", b"56789"]), 0xe306_9283);
        assert_eq!(bulk_checksum(cksum::CRC32, &[b"123456789"]), !0xcbf4_3926);
        assert_eq!(bulk_checksum(cksum::ADLER, &[b"123456789"]), 0x091e_01de);
    }
}

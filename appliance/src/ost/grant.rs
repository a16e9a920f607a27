//! Grant: space an OST promises each client so it may cache dirty data and write it back
//! later without ENOSPC (Lustre's `tgt_grant.c`).
//!
//! Lustre keeps one set of counters per target. Here each shard keeps the counters of the
//! exports homed on it ([`Grants`], a state machine with no I/O), and may promise at most its
//! share of the OST's free space: the smallest free space of any shard's region divided by
//! the shard count. Objects live on every shard and one file's object sits in one region, so
//! the sum of every promise must fit in the *smallest* region for any client to be able to
//! write all it was granted to any one object. Free space is refreshed from every shard's
//! OSD at most once a second (`OBD_STATFS_CACHE_SECONDS`), sooner when little is left, and
//! reduced at once by what each commit consumed, as `tgt_grant_commit` does.
//!
//! The rules are Lustre's: initial grant at connect (`tgt_grant_connect`), announcements in
//! every BRW (`o_grant`, `o_dirty`, `o_undirty`, `o_dropped`, `o_grant_used`;
//! `tgt_grant_incoming`), per-niobuf `OBD_BRW_GRANTED` for writes that consumed grant or fit
//! in free space and -ENOSPC for the rest (`tgt_grant_check`), more grant in write replies
//! (`tgt_grant_alloc`), grant given back on request (`tgt_grant_shrink`), pending space
//! released at commit (`tgt_grant_commit`) and everything returned when the client goes
//! (`tgt_grant_discard`).

use proto::mdt::md;
use proto::ost::{NiobufRemote, Obdo, brw, obd_fl};
use std::collections::HashMap;

/// `OBD_MAX_GRANT`: the most one client may hold (2 GiB).
pub const OBD_MAX_GRANT: u64 = 0x7fff_ffff;
/// `COMPAT_BSIZE_SHIFT`: the block size clients without GRANT_PARAM assume.
pub const COMPAT_BSIZE_SHIFT: u32 = 12;
/// How long cached free space is trusted (`OBD_STATFS_CACHE_SECONDS`), in ms.
pub const STATFS_MAX_AGE_MS: u64 = 1000;

/// What the backend tells clients about its allocation (`dt_device_param`), sent at connect
/// (`ocd_grant_blkbits`, `ocd_grant_inobits`, `ocd_grant_tax_kb`, `ocd_grant_max_blks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantParams {
    /// log2 of the block size.
    pub blockbits: u32,
    /// log2 of the space an object's inode takes.
    pub inobits: u8,
    /// Bytes of metadata one extent of data costs.
    pub extent_tax: u64,
    /// Blocks per extent.
    pub max_extent_blks: u64,
}

impl Default for GrantParams {
    /// The persistent OSD: 4 KiB blocks, extents of up to 1024 blocks (4 MiB) and a block of
    /// map metadata per extent.
    fn default() -> Self {
        GrantParams { blockbits: 12, inobits: 8, extent_tax: 4096, max_extent_blks: 1024 }
    }
}

/// One client's grant (`tg_export_data`'s grant fields), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportGrant {
    /// Granted and not yet used (`ted_grant`).
    pub grant: u64,
    /// Dirty data the client says it caches (`ted_dirty`).
    pub dirty: u64,
    /// Reserved for writes in progress (`ted_pending`).
    pub pending: u64,
    /// The negotiated BRW size (grant is handed out in chunks of two BRWs).
    pub brw_size: u64,
    /// The client negotiated GRANT_PARAM (it accounts block and extent overhead itself).
    pub grant_param: bool,
    /// The client negotiated GRANT and counts in `granted_clients`.
    pub counted: bool,
}

/// What a write's grant preparation decided, for its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteGrant {
    /// Space reserved for this write (`o_grant_used` after `tgt_grant_check`), released by
    /// [`Grants::commit`].
    pub pending: u64,
}

/// The grant counters of one OST on one shard.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    params: GrantParams,
    /// Everything promised to exports homed here and not yet written (`tgd_tot_granted`).
    pub tot_granted: u64,
    /// Dirty data announced (`tgd_tot_dirty`).
    pub tot_dirty: u64,
    /// Reserved by writes in progress (`tgd_tot_pending`).
    pub tot_pending: u64,
    /// Clients holding grant (`tgd_tot_granted_clients`).
    pub granted_clients: u64,
    /// This shard's share of the OST's free space in bytes, as last refreshed and then
    /// reduced by commits.
    share: u64,
    /// When `share` was refreshed (ms of the shard clock), if ever.
    refreshed_at: Option<u64>,
    exports: HashMap<u64, ExportGrant>,
}

impl Grants {
    /// No exports yet, no space known.
    #[must_use]
    pub fn new(params: GrantParams) -> Grants {
        Grants { params, ..Grants::default() }
    }

    /// The backend parameters.
    #[must_use]
    pub fn params(&self) -> GrantParams {
        self.params
    }

    /// An export's grant.
    #[must_use]
    pub fn export(&self, cookie: u64) -> Option<&ExportGrant> {
        self.exports.get(&cookie)
    }

    /// Exports with grant state.
    #[must_use]
    pub fn len(&self) -> usize {
        self.exports.len()
    }

    /// Whether no export has grant state.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.exports.is_empty()
    }

    /// Sets the space this shard may promise: `min_free` is the smallest free space (bytes) of
    /// any shard's region of the OST, `shards` how many there are.
    pub fn refresh(&mut self, min_free: u64, shards: usize, now: u64) {
        self.share = min_free / (shards.max(1) as u64);
        self.refreshed_at = Some(now);
    }

    /// Whether the free space should be read again (stale, or little is left to promise).
    #[must_use]
    pub fn needs_refresh(&self, now: u64, chunk: u64) -> bool {
        match self.refreshed_at {
            None => true,
            Some(t) => {
                now.saturating_sub(t) > STATFS_MAX_AGE_MS
                    || (self.space_left() < chunk.saturating_mul(32)
                        && now.saturating_sub(t) > STATFS_MAX_AGE_MS / 10)
            }
        }
    }

    /// Free space not yet promised, aligned down to a block (`tgt_grant_space_left`).
    #[must_use]
    pub fn space_left(&self) -> u64 {
        if self.share < self.tot_granted {
            return 0;
        }
        let left = self.share - self.tot_granted;
        left & !((1u64 << self.params.blockbits) - 1)
    }

    fn inflate(&self, v: u64) -> u64 {
        if self.params.blockbits > COMPAT_BSIZE_SHIFT {
            v << (self.params.blockbits - COMPAT_BSIZE_SHIFT)
        } else {
            v
        }
    }

    fn deflate(&self, v: u64) -> u64 {
        if self.params.blockbits > COMPAT_BSIZE_SHIFT {
            v >> (self.params.blockbits - COMPAT_BSIZE_SHIFT)
        } else {
            v
        }
    }

    /// The unit grant is handed out in: enough for two full BRWs with their extent overhead
    /// (`tgt_grant_chunk`).
    #[must_use]
    pub fn chunk(&self, brw_size: u64, grant_param: bool) -> u64 {
        if !grant_param {
            return self.inflate(brw_size) << 1;
        }
        let extent = (1u64 << self.params.blockbits) * self.params.max_extent_blks.max(1);
        let tax = brw_size.div_ceil(extent) * self.params.extent_tax;
        (brw_size + tax) * 2
    }

    /// Records a connected client's negotiated BRW size (every OST client, with or without
    /// grant).
    pub fn register(&mut self, cookie: u64, brw_size: u64, grant_param: bool) {
        let e = self.exports.entry(cookie).or_default();
        e.brw_size = brw_size;
        e.grant_param = grant_param;
    }

    /// A client connects or reconnects asking for `want` bytes (`ocd_grant`): the grant it
    /// now holds, to return in `ocd_grant` (`tgt_grant_connect`). Read-only clients get none.
    pub fn connect(
        &mut self,
        cookie: u64,
        want: u64,
        brw_size: u64,
        grant_param: bool,
        new_conn: bool,
    ) -> u64 {
        let want = if grant_param { want } else { self.inflate(want) };
        self.register(cookie, brw_size, grant_param);
        let Some(e) = self.exports.get_mut(&cookie) else { return 0 };
        let newly_counted = !e.counted;
        e.counted = true;
        let cur = e.grant;
        let chunk = self.chunk(brw_size, grant_param);
        let left = self.space_left();
        self.alloc(cookie, cur, want, left, chunk, new_conn);
        let Some(e) = self.exports.get_mut(&cookie) else { return 0 };
        // Dirty accounting starts again with each connection.
        self.tot_dirty = self.tot_dirty.saturating_sub(e.dirty);
        e.dirty = 0;
        let granted = e.grant;
        if new_conn || newly_counted {
            self.granted_clients += 1;
        }
        if grant_param { granted } else { self.deflate(granted) }
    }

    /// The client went (disconnect, eviction): its grant returns to the pool
    /// (`tgt_grant_discard`). Pending space is released by the commits still running.
    pub fn discard(&mut self, cookie: u64) {
        if let Some(e) = self.exports.remove(&cookie) {
            self.tot_granted = self.tot_granted.saturating_sub(e.grant);
            self.tot_dirty = self.tot_dirty.saturating_sub(e.dirty);
            if e.counted {
                self.granted_clients = self.granted_clients.saturating_sub(1);
            }
        }
    }

    /// `tgt_grant_incoming`: the client's announcements (`o_dirty`, `o_dropped`) update our
    /// view of it; without FLBLOCKS and FLGRANT the request carries none.
    fn incoming(&mut self, cookie: u64, oa: &mut Obdo, chunk: u64) {
        let valid = oa.o_valid.get();
        if valid & (md::FLBLOCKS | md::FLGRANT) != (md::FLBLOCKS | md::FLGRANT) {
            oa.o_valid = (valid & !md::FLGRANT).into();
            return;
        }
        let Some(e) = self.exports.get(&cookie).copied() else { return };
        // o_dirty (o_blocks) is signed on the wire: negative means none.
        let mut dirty = oa.o_blocks.get().cast_signed().max(0).cast_unsigned();
        let mut dropped = u64::from(oa.o_misc.get());
        if !e.grant_param {
            oa.o_grant = self.inflate(oa.o_grant.get()).into();
            dirty = self.inflate(dirty);
            let undirty = self.inflate(u64::from(oa.o_mode.get())).min(OBD_MAX_GRANT);
            oa.o_mode = u32::try_from(undirty).unwrap_or(u32::MAX).into();
            dropped = self.inflate(dropped).min(OBD_MAX_GRANT);
        }
        dirty = dirty.min(e.grant.saturating_add(chunk.saturating_mul(4)));
        if e.grant < dropped || self.tot_granted < dropped {
            dropped = 0;
        }
        self.tot_dirty = self.tot_dirty.saturating_sub(e.dirty).saturating_add(dirty);
        self.tot_granted -= dropped;
        if let Some(e) = self.exports.get_mut(&cookie) {
            e.grant -= dropped;
            e.dirty = dirty;
        }
    }

    /// `tgt_grant_shrink`: the client offers `o_grant` back; taken only when free space is
    /// short (less than two BRWs of 8 RPCs per granted client), and then nothing is granted.
    fn shrink(&mut self, cookie: u64, oa: &mut Obdo, left: u64) {
        let Some(e) = self.exports.get(&cookie).copied() else { return };
        let limit = self.granted_clients.saturating_mul(2 * 8 * e.brw_size);
        if left >= limit {
            return;
        }
        let give = oa.o_grant.get().min(e.grant);
        self.tot_granted = self.tot_granted.saturating_sub(give);
        if let Some(e) = self.exports.get_mut(&cookie) {
            e.grant -= give;
        }
        oa.o_grant = 0.into();
    }

    /// Space a niobuf needs on the backend: whole blocks, plus the extent tax for clients
    /// that account overhead themselves, or inflated for those that do not
    /// (`tgt_grant_rnb_size`). `for_client` false: the server's own allocation.
    #[must_use]
    pub fn rnb_size(&self, nb: &NiobufRemote, for_client: Option<bool>) -> u64 {
        let compat = matches!(for_client, Some(false));
        let blksize = if compat && self.params.blockbits > COMPAT_BSIZE_SHIFT {
            1u64 << COMPAT_BSIZE_SHIFT
        } else {
            1u64 << self.params.blockbits
        };
        let mut bytes = (nb.rnb_offset.get() & (blksize - 1)) + u64::from(nb.rnb_len.get());
        let tail = bytes & (blksize - 1);
        if tail != 0 {
            bytes += blksize - tail;
        }
        if compat {
            self.inflate(bytes)
        } else {
            let max_ext = blksize * self.params.max_extent_blks.max(1);
            bytes + bytes.div_ceil(max_ext) * self.params.extent_tax
        }
    }

    /// `tgt_grant_check`: marks each niobuf `OBD_BRW_GRANTED` if the client paid for it with
    /// grant (`OBD_BRW_FROM_GRANT`) or free space covers it; the rest will fail with
    /// -ENOSPC. Returns the space reserved, which the commit releases.
    fn check(
        &mut self,
        cookie: u64,
        oa: &mut Obdo,
        nbs: &mut [NiobufRemote],
        left: &mut u64,
    ) -> u64 {
        let Some(e) = self.exports.get(&cookie).copied() else { return 0 };
        let mut granted = 0u64;
        let mut ungranted = 0u64;
        let mut skip = false;
        let recov_resend =
            oa.o_valid.get() & md::FLFLAGS != 0 && oa.o_flags.get() & obd_fl::RECOV_RESEND != 0;
        let used = oa.o_data_version.get(); // o_grant_used
        if recov_resend {
            // A resend: its grant was accounted when it first arrived.
            skip = true;
        } else if e.grant_param && used > 0 {
            if e.grant >= used {
                granted = used;
                skip = true;
            } else if *left > used - e.grant {
                // Claims more than it holds: fill the gap from free space if we can.
                granted = e.grant;
                ungranted = used - granted;
                *left -= ungranted;
                skip = true;
            }
        }
        for nb in nbs.iter_mut() {
            let f = nb.rnb_flags.get();
            if f & brw::FROM_GRANT != 0 {
                if skip {
                    nb.rnb_flags = (f | brw::GRANTED).into();
                    continue;
                }
                let bytes = self.rnb_size(nb, Some(e.grant_param));
                if e.grant >= granted + bytes {
                    granted += bytes;
                    nb.rnb_flags = (f | brw::GRANTED).into();
                    continue;
                }
            }
            // Not paid for with grant: take it from free space if there is room.
            let bytes = self.rnb_size(nb, None);
            if *left > bytes {
                ungranted += bytes;
                *left -= bytes;
                nb.rnb_flags = (f | brw::GRANTED).into();
            } else {
                nb.rnb_flags = (f & !brw::GRANTED).into();
            }
        }
        let pending = granted + ungranted;
        oa.o_data_version = pending.into();
        self.tot_granted += ungranted;
        self.tot_pending += pending;
        let with_grant = oa.o_valid.get() & md::FLGRANT != 0;
        if let Some(e) = self.exports.get_mut(&cookie) {
            e.grant = e.grant.saturating_sub(granted);
            e.pending += pending;
            if with_grant {
                let g = granted.min(e.dirty);
                e.dirty -= g;
                self.tot_dirty = self.tot_dirty.saturating_sub(g);
            }
        }
        pending
    }

    /// `tgt_grant_alloc`: more grant for a client that wants `want` and thinks it holds
    /// `cur`. Conservative (new connections and writes) means at most a chunk and an eighth
    /// of what is left. Returns what was added.
    fn alloc(
        &mut self,
        cookie: u64,
        cur: u64,
        want: u64,
        left: u64,
        chunk: u64,
        conservative: bool,
    ) -> u64 {
        let Some(e) = self.exports.get(&cookie).copied() else { return 0 };
        if left == 0 || want > OBD_MAX_GRANT {
            return 0;
        }
        if cur >= want || cur >= e.grant + chunk {
            return 0;
        }
        let left = if conservative { left >> 3 } else { left };
        let bs = 1u64 << self.params.blockbits;
        let mut grant = (want - cur).min(left).div_ceil(bs) * bs;
        if grant == 0 {
            return 0;
        }
        if grant > chunk && conservative {
            grant = chunk;
        }
        if want + chunk <= e.grant {
            return 0;
        }
        if e.grant + grant > want + chunk {
            grant = want + chunk - e.grant;
        }
        self.tot_granted += grant;
        if let Some(e) = self.exports.get_mut(&cookie) {
            e.grant += grant;
        }
        grant
    }

    /// `tgt_grant_prepare_read`: a read's announcements; no grant comes back on reads except
    /// to turn a shrink offer down.
    pub fn prepare_read(&mut self, cookie: u64, oa: &mut Obdo) {
        let valid = oa.o_valid.get();
        if valid & md::FLGRANT == 0 {
            return;
        }
        let Some(e) = self.exports.get(&cookie).copied() else { return };
        let shrink = valid & md::FLFLAGS != 0 && oa.o_flags.get() & obd_fl::SHRINK_GRANT != 0;
        let left = self.space_left();
        self.incoming(cookie, oa, self.chunk(e.brw_size, e.grant_param));
        if shrink {
            self.shrink(cookie, oa, left);
        } else {
            oa.o_grant = 0.into();
        }
        if !e.grant_param {
            oa.o_grant = self.deflate(oa.o_grant.get()).into();
        }
    }

    /// `tgt_grant_prepare_write`: a write's announcements, the per-niobuf grant check, and
    /// the grant returned in the reply (`o_grant`) or the shrink taken. Call
    /// [`Grants::commit`] with the result once the write is done (or failed).
    pub fn prepare_write(
        &mut self,
        cookie: u64,
        oa: &mut Obdo,
        nbs: &mut [NiobufRemote],
    ) -> WriteGrant {
        let Some(e) = self.exports.get(&cookie).copied() else {
            // No grant state (a client that never negotiated GRANT): free space only.
            for nb in nbs.iter_mut() {
                nb.rnb_flags = (nb.rnb_flags.get() | brw::GRANTED).into();
            }
            return WriteGrant::default();
        };
        let chunk = self.chunk(e.brw_size, e.grant_param);
        let mut left = self.space_left();
        self.incoming(cookie, oa, chunk);
        let pending = self.check(cookie, oa, nbs, &mut left);
        if oa.o_valid.get() & md::FLGRANT == 0 {
            return WriteGrant { pending };
        }
        if oa.o_valid.get() & md::FLFLAGS != 0 && oa.o_flags.get() & obd_fl::SHRINK_GRANT != 0 {
            self.shrink(cookie, oa, left);
        } else {
            let cur = oa.o_grant.get();
            let want = u64::from(oa.o_mode.get()); // o_undirty
            let g = self.alloc(cookie, cur, want, left, chunk, true);
            oa.o_grant = g.into();
        }
        if !e.grant_param {
            oa.o_grant = self.deflate(oa.o_grant.get()).into();
        }
        WriteGrant { pending }
    }

    /// `tgt_grant_commit`: a write finished; its reserved space leaves the pending counters
    /// (and, when it was written, the free space we know of, until the next refresh).
    pub fn commit(&mut self, cookie: u64, w: WriteGrant, written: bool) {
        let p = w.pending;
        if p == 0 {
            return;
        }
        if written {
            self.share = self.share.saturating_sub(p);
        }
        if let Some(e) = self.exports.get_mut(&cookie) {
            e.pending = e.pending.saturating_sub(p);
        }
        self.tot_granted = self.tot_granted.saturating_sub(p);
        self.tot_pending = self.tot_pending.saturating_sub(p);
    }

    /// Checks the counters against the exports (tests; Lustre's `tgt_grant_sanity_check`).
    pub fn check_invariants(&self) -> Result<(), String> {
        let g: u64 = self.exports.values().map(|e| e.grant + e.pending).sum();
        let d: u64 = self.exports.values().map(|e| e.dirty).sum();
        let p: u64 = self.exports.values().map(|e| e.pending).sum();
        if g > self.tot_granted {
            return Err(format!("exports hold {g} > tot_granted {}", self.tot_granted));
        }
        if d != self.tot_dirty {
            return Err(format!("exports' dirty {d} != tot_dirty {}", self.tot_dirty));
        }
        if p != self.tot_pending {
            return Err(format!("exports' pending {p} != tot_pending {}", self.tot_pending));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn nb(off: u64, len: u32, flags: u32) -> NiobufRemote {
        NiobufRemote { rnb_offset: off.into(), rnb_len: len.into(), rnb_flags: flags.into() }
    }

    fn write_oa(grant: u64, dirty: u64, undirty: u32) -> Obdo {
        Obdo {
            o_valid: (md::FLID | md::FLGRANT | md::FLBLOCKS).into(),
            o_grant: grant.into(),
            o_blocks: dirty.into(),
            o_mode: undirty.into(),
            ..Obdo::default()
        }
    }

    #[test]
    fn connect_grants_a_chunk_bounded_by_free_space() {
        let mut g = Grants::new(GrantParams::default());
        g.refresh(1 << 30, 2, 0);
        // A GRANT_PARAM client with 4 MiB BRWs asking for 32 MiB gets one chunk: two BRWs
        // plus their extent tax.
        let got = g.connect(1, 32 * MB, 4 * MB, true, true);
        assert_eq!(got, g.chunk(4 * MB, true));
        assert_eq!(got, 2 * (4 * MB + 4096));
        assert_eq!(g.tot_granted, got);
        // Nearly no space: an eighth of it, rounded up to one block (tgt_grant_alloc).
        let mut g = Grants::new(GrantParams::default());
        g.refresh(4096, 1, 0);
        assert_eq!(g.connect(1, 32 * MB, 4 * MB, true, true), 4096);
        g.check_invariants().unwrap();
        // None at all: nothing.
        let mut g = Grants::new(GrantParams::default());
        g.refresh(0, 1, 0);
        assert_eq!(g.connect(1, 32 * MB, 4 * MB, true, true), 0);
        g.check_invariants().unwrap();
    }

    #[test]
    fn writes_consume_grant_and_ask_for_more() {
        let mut g = Grants::new(GrantParams::default());
        g.refresh(1 << 30, 1, 0);
        let have = g.connect(7, 32 * MB, MB, true, true);
        // The client wrote 1 MiB under grant (o_grant_used says so) and wants 32 MiB cached.
        let mut oa = write_oa(have - MB, MB, 32 << 20);
        oa.o_data_version = MB.into();
        let mut nbs = [nb(0, 1 << 20, brw::WRITE | brw::FROM_GRANT)];
        let w = g.prepare_write(7, &mut oa, &mut nbs);
        assert!(nbs[0].rnb_flags.get() & brw::GRANTED != 0);
        assert_eq!(w.pending, MB);
        let more = oa.o_grant.get();
        assert!(more > 0, "more grant comes back in the reply");
        g.check_invariants().unwrap();
        g.commit(7, w, true);
        assert_eq!(g.tot_pending, 0);
        assert_eq!(g.export(7).unwrap().grant, have - MB + more);
        g.check_invariants().unwrap();
    }

    #[test]
    fn writes_without_grant_use_free_space_then_fail_with_enospc() {
        let mut g = Grants::new(GrantParams::default());
        g.refresh(64 << 10, 1, 0);
        g.connect(1, 0, MB, true, true);
        let mut oa = write_oa(0, 0, 0);
        // 32 KiB fits in 64 KiB of free space; the next 64 KiB does not.
        let mut nbs = [nb(0, 32 << 10, brw::WRITE), nb(1 << 20, 64 << 10, brw::WRITE)];
        let w = g.prepare_write(1, &mut oa, &mut nbs);
        assert!(nbs[0].rnb_flags.get() & brw::GRANTED != 0);
        assert!(nbs[1].rnb_flags.get() & brw::GRANTED == 0, "-ENOSPC for this one");
        assert_eq!(w.pending, (32 << 10) + 4096, "blocks plus the extent tax");
        g.commit(1, w, true);
        g.check_invariants().unwrap();
        // A client claiming grant it does not have is treated like one without.
        let mut oa = write_oa(0, 0, 0);
        let mut nbs = [nb(0, 1 << 20, brw::WRITE | brw::FROM_GRANT)];
        let _ = g.prepare_write(1, &mut oa, &mut nbs);
        assert!(nbs[0].rnb_flags.get() & brw::GRANTED == 0);
    }

    #[test]
    fn promises_never_exceed_the_share_and_discard_returns_them() {
        let mut g = Grants::new(GrantParams::default());
        g.refresh(100 * MB, 4, 0);
        let share = 25 * MB;
        for c in 0..20u64 {
            g.connect(c, 64 * MB, 4 * MB, true, true);
            assert!(g.tot_granted <= share, "{} > {share}", g.tot_granted);
        }
        for c in 0..20u64 {
            g.discard(c);
        }
        assert_eq!(g.tot_granted, 0);
        assert_eq!(g.granted_clients, 0);
        g.check_invariants().unwrap();
    }

    #[test]
    fn shrink_only_when_space_is_short() {
        let mut g = Grants::new(GrantParams::default());
        g.refresh(1 << 30, 1, 0);
        let have = g.connect(1, 64 * MB, MB, true, true);
        let mut oa = Obdo {
            o_valid: (md::FLGRANT | md::FLBLOCKS | md::FLFLAGS).into(),
            o_flags: obd_fl::SHRINK_GRANT.into(),
            o_grant: have.into(),
            ..Obdo::default()
        };
        g.prepare_read(1, &mut oa);
        assert_eq!(g.export(1).unwrap().grant, have, "plenty of space: kept");
        assert_eq!(oa.o_grant.get(), have, "the offer is echoed, not taken");
        g.refresh(MB, 1, 1);
        let mut oa2 = oa;
        g.prepare_read(1, &mut oa2);
        assert_eq!(g.export(1).unwrap().grant, 0, "short of space: taken back");
        assert_eq!(oa2.o_grant.get(), 0);
        g.check_invariants().unwrap();
    }
}

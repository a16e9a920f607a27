//! File data: open files, reads and writes through the layout engine, and the page cache.
//!
//! Pages of an object are cached only under an extent lock that covers them: a read takes PR
//! (or uses a PW the client holds), a write PW. Writes are cached dirty while grant lasts and
//! written back on fsync, close, memory pressure, or when the OST calls the lock back (the
//! blocking AST flushes and drops the pages, then cancels); so two clients always see each
//! other's data, as Lustre's CLIO guarantees. Lock extents are whole pages, so two clients
//! never share a page.

use crate::error::{Error, Result};
use crate::fs::{Cred, Fs};
use crate::ldlm::Tgt;
use crate::lov::{Layout, Stripe};
use crate::osc::{EOF, PAGE, Run};
use proto::fid::LuFid;
use proto::ldlm::{Policy, mode};
use proto::lov::{LovForm, LovMd};
use proto::mdt::open as of;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

/// A cached page of an object.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    data: Box<[u8]>,
    dirty: bool,
    /// Dirtied under grant (the write-back may say OBD_BRW_FROM_GRANT).
    grant: bool,
}

/// The page cache: pages by (object, page index), bounded in bytes; dirty pages bounded too.
#[derive(Debug)]
pub struct PageCache {
    pages: HashMap<LuFid, BTreeMap<u64, Page>>,
    /// The dirty pages of each object, so write-back never walks clean ones.
    dirty_idx: HashMap<LuFid, BTreeSet<u64>>,
    /// Write-backs in flight per object: their pages are clean here but not yet on the OST.
    inflight: HashMap<LuFid, u32>,
    bytes: u64,
    dirty: u64,
    /// Most bytes cached (`max_cached_mb`).
    pub max_bytes: u64,
    /// Most dirty bytes before writers flush (`max_dirty_mb`).
    pub max_dirty: u64,
}

impl Default for PageCache {
    fn default() -> Self {
        PageCache {
            pages: HashMap::new(),
            dirty_idx: HashMap::new(),
            inflight: HashMap::new(),
            bytes: 0,
            dirty: 0,
            max_bytes: 256 << 20,
            max_dirty: 64 << 20,
        }
    }
}

impl PageCache {
    /// Bytes cached.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Dirty bytes.
    #[must_use]
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty
    }

    fn insert_clean(&mut self, fid: LuFid, idx: u64, data: Box<[u8]>) {
        let m = self.pages.entry(fid).or_default();
        if m.get(&idx).is_some_and(|p| p.dirty) {
            return; // never replace newer local data
        }
        if m.insert(idx, Page { data, dirty: false, grant: false }).is_none() {
            self.bytes += PAGE;
        }
    }

    /// Drops clean pages when over the limit (any object; dirty pages stay).
    fn shrink(&mut self) {
        if self.bytes <= self.max_bytes {
            return;
        }
        let mut excess = self.bytes - self.max_bytes;
        for m in self.pages.values_mut() {
            let want = usize::try_from(excess.div_ceil(PAGE)).unwrap_or(usize::MAX);
            let clean: Vec<u64> =
                m.iter().filter(|(_, p)| !p.dirty).map(|(i, _)| *i).take(want).collect();
            for i in clean {
                m.remove(&i);
                self.bytes -= PAGE;
                excess = excess.saturating_sub(PAGE);
            }
            if excess == 0 {
                break;
            }
        }
        self.pages.retain(|_, m| !m.is_empty());
    }

    /// Removes the pages of `[start, end]` (bytes) of an object; returns the dirty ones.
    pub(crate) fn take_range(&mut self, fid: LuFid, start: u64, end: u64) -> Vec<(u64, Page)> {
        let Some(m) = self.pages.get_mut(&fid) else { return Vec::new() };
        let first = start / PAGE;
        let last = end / PAGE;
        let keys: Vec<u64> = m.range(first..=last).map(|(i, _)| *i).collect();
        let mut dirty = Vec::new();
        for k in keys {
            if let Some(p) = m.remove(&k) {
                self.bytes -= PAGE;
                if p.dirty {
                    self.dirty -= PAGE;
                    dirty.push((k, p));
                }
            }
        }
        if m.is_empty() {
            self.pages.remove(&fid);
        }
        if let Some(d) = self.dirty_idx.get_mut(&fid) {
            let gone: Vec<u64> = d.range(first..=last).copied().collect();
            for k in gone {
                d.remove(&k);
            }
            if d.is_empty() {
                self.dirty_idx.remove(&fid);
            }
        }
        dirty
    }

    /// Marks page `idx` of an object dirty in the index (the page itself says so too).
    fn note_dirty(&mut self, fid: LuFid, idx: u64) {
        self.dirty_idx.entry(fid).or_default().insert(idx);
    }

    /// The dirty pages of an object in `[start, end]` (bytes), marked clean, as runs of
    /// consecutive pages with the same grant (the caller writes them back).
    fn clean_range(&mut self, fid: LuFid, start: u64, end: u64) -> Vec<Run> {
        let (Some(m), Some(d)) = (self.pages.get_mut(&fid), self.dirty_idx.get_mut(&fid)) else {
            return Vec::new();
        };
        let idxs: Vec<u64> = d.range(start / PAGE..=end / PAGE).copied().collect();
        let mut out: Vec<Run> = Vec::new();
        let mut next = u64::MAX;
        for i in idxs {
            d.remove(&i);
            let Some(p) = m.get_mut(&i).filter(|p| p.dirty) else { continue };
            match out.last_mut() {
                Some(r) if i == next && r.from_grant == p.grant => {
                    r.data.extend_from_slice(&p.data)
                }
                _ => out.push(Run { off: i * PAGE, data: p.data.to_vec(), from_grant: p.grant }),
            }
            next = i + 1;
            p.dirty = false;
            p.grant = false;
            self.dirty -= PAGE;
        }
        if d.is_empty() {
            self.dirty_idx.remove(&fid);
        }
        out
    }

    /// Objects with dirty pages.
    fn dirty_objects(&self) -> Vec<LuFid> {
        self.dirty_idx.iter().filter(|(_, d)| !d.is_empty()).map(|(f, _)| *f).collect()
    }
}

/// An open file.
#[derive(Debug, Clone)]
pub struct OpenFile {
    /// The file.
    pub fid: LuFid,
    /// Its layout (None for a file without objects).
    pub layout: Option<Layout>,
    /// The MDT's open handle.
    pub handle: u64,
    /// Open flags.
    pub flags: u64,
}

fn page_floor(x: u64) -> u64 {
    x - x % PAGE
}
fn page_last(x: u64) -> u64 {
    x | (PAGE - 1)
}

/// Contiguous runs of pages: `(first index, pages)`.
impl Fs {
    /// Opens `path` (creating it with `lov` as requested layout when `flags` has O_CREAT).
    pub async fn open_file(
        self: &Rc<Self>,
        path: &str,
        flags: u64,
        perm: u32,
        lov: &[u8],
        c: Cred,
    ) -> Result<OpenFile> {
        let (p, n) = self.parent(path, c).await?;
        let (fid, body, lay) = self
            .open_at(p, n.as_bytes(), flags, perm, lov, c)
            .await
            .map_err(|e| e.ctx(path.to_string()))?;
        let lay = if lay.is_empty() { self.getattr(fid, c).await?.1 } else { lay };
        let layout = if lay.is_empty() {
            None
        } else {
            Some(Layout::from_lov(&LovMd::decode(&lay, LovForm::Stored)?)?)
        };
        let f = OpenFile { fid, layout, handle: body.mbo_open_handle.get(), flags };
        // O_TRUNC is the client's work, as in Lustre (the VFS truncates after the open):
        // under PW locks on the objects, so other clients' cached copies go.
        if flags & of::TRUNC != 0
            && f.layout.is_some()
            && let Err(e) = self.truncate_file(&f, 0, c).await
        {
            let _ = self.close(f.fid, f.handle, None).await;
            return Err(e.ctx(format!("{path}: truncating")));
        }
        Ok(f)
    }

    /// Closes an open file: writes back its dirty pages, then MDS_CLOSE with its size.
    pub async fn close_file(self: &Rc<Self>, f: &OpenFile) -> Result<()> {
        let flush = self.fsync_file(f).await;
        let size = match (&f.layout, f.flags & of::FMODE_WRITE != 0) {
            (Some(l), true) => Some(self.known_file_size(l)),
            _ => None,
        };
        let close = self.close(f.fid, f.handle, size).await;
        flush.and(close)
    }

    fn known_file_size(&self, l: &Layout) -> u64 {
        let sizes: Vec<u64> =
            l.stripes.iter().map(|s| self.known_object_size(s.fid).unwrap_or(0)).collect();
        l.file_size(&sizes)
    }

    /// Whether we hold a lock on all of the object (so its LVB and our writes give its size).
    fn holds_whole(&self, s: Stripe) -> bool {
        self.matching_lock(s.fid, mode::PR, 0, EOF).is_some()
    }

    /// The file's size: from locks we hold on whole objects, else glimpses of the others.
    pub async fn file_size(self: &Rc<Self>, l: &Layout) -> Result<u64> {
        let mut sizes = Vec::with_capacity(l.stripes.len());
        let mut tasks = Vec::new();
        for (i, s) in l.stripes.iter().enumerate() {
            if self.holds_whole(*s)
                && let Some(sz) = self.known_object_size(s.fid)
            {
                sizes.push(sz);
            } else {
                sizes.push(0);
                let fs = self.clone();
                let s = *s;
                tasks.push((i, glommio::spawn_local(async move { fs.glimpse(s).await })));
            }
        }
        for (i, t) in tasks {
            let lvb = t.await?;
            sizes[i] =
                lvb.lvb_size.get().max(self.known_object_size(l.stripes[i].fid).unwrap_or(0));
        }
        Ok(l.file_size(&sizes))
    }

    /// A file's attributes with its size, blocks and mtime taken from its objects (MDS_GETATTR
    /// then glimpses), as `stat` on a Lustre client reports them.
    pub async fn getattr_sized(
        self: &Rc<Self>,
        fid: LuFid,
        c: Cred,
    ) -> Result<proto::mdt::MdtBody> {
        let (mut b, ea) = self.getattr(fid, c).await?;
        if b.mbo_mode.get() & crate::ns::S_IFMT == crate::ns::S_IFREG
            && let Ok(md) = LovMd::decode(&ea, LovForm::Stored)
            && let Ok(l) = Layout::from_lov(&md)
        {
            let size = self.file_size(&l).await?;
            b.mbo_size = size.into();
            b.mbo_blocks = size.div_ceil(512).into();
        }
        Ok(b)
    }

    /// Reads up to `len` bytes at `off` (fewer at the end of the file).
    pub async fn read_file(self: &Rc<Self>, f: &OpenFile, off: u64, len: u64) -> Result<Vec<u8>> {
        let Some(l) = &f.layout else { return Ok(Vec::new()) };
        let size = self.file_size(l).await?;
        if off >= size || len == 0 {
            return Ok(Vec::new());
        }
        let len = len.min(size - off);
        let per = l.object_ranges(off, len);
        // Every stripe's part in parallel.
        let mut tasks = Vec::new();
        for (i, ranges) in per.into_iter().enumerate() {
            if ranges.is_empty() {
                continue;
            }
            let fs = self.clone();
            let s = l.stripes[i];
            tasks.push((i, glommio::spawn_local(async move { fs.read_object(s, &ranges).await })));
        }
        let mut parts: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
        for (i, t) in tasks {
            parts.insert(i, t.await?);
        }
        // Reassemble in file order.
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut cursor: HashMap<usize, (usize, usize)> = HashMap::new();
        for c in l.chunks(off, len) {
            let (ri, ro) = cursor.entry(c.stripe).or_insert((0, 0));
            let bufs = parts.get(&c.stripe).ok_or_else(|| Error::new(libc::EIO))?;
            let mut need = usize::try_from(c.len).unwrap_or(0);
            while need > 0 {
                let b = bufs.get(*ri).ok_or_else(|| Error::new(libc::EIO))?;
                let n = need.min(b.len() - *ro);
                out.extend_from_slice(&b[*ro..*ro + n]);
                *ro += n;
                need -= n;
                if *ro == b.len() {
                    *ri += 1;
                    *ro = 0;
                }
            }
        }
        Ok(out)
    }

    /// Reads object ranges through the cache under a PR lock; holes and bytes past the
    /// object's end read as zeros (the caller clamps to the file size).
    async fn read_object(
        self: &Rc<Self>,
        s: Stripe,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(ranges.len());
        for &(off, len) in ranges {
            let (first, last) = (off / PAGE, (off + len - 1) / PAGE);
            self.ensure_extent_lock(s, mode::PR, page_floor(off), page_last(off + len - 1)).await?;
            // Fetch the missing pages, a contiguous run per RPC.
            let missing: Vec<u64> = {
                let c = self.pages.borrow();
                let m = c.pages.get(&s.fid);
                (first..=last).filter(|i| m.is_none_or(|m| !m.contains_key(i))).collect()
            };
            let mut i = 0;
            while i < missing.len() {
                let start = missing[i];
                let mut j = i;
                while j + 1 < missing.len() && missing[j + 1] == missing[j] + 1 {
                    j += 1;
                }
                let n = missing[j] - start + 1;
                let got = self.brw_read(s, start * PAGE, n * PAGE).await?;
                let mut c = self.pages.borrow_mut();
                for k in 0..n {
                    let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
                    let from = usize::try_from(k * PAGE).unwrap_or(usize::MAX);
                    if from < got.len() {
                        let to = (from + PAGE as usize).min(got.len());
                        page[..to - from].copy_from_slice(&got[from..to]);
                    }
                    c.insert_clean(s.fid, start + k, page);
                }
                drop(c);
                i = j + 1;
            }
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            {
                let c = self.pages.borrow();
                let m = c.pages.get(&s.fid);
                for idx in first..=last {
                    let page_start = idx * PAGE;
                    let a = off.max(page_start) - page_start;
                    let b = (off + len).min(page_start + PAGE) - page_start;
                    match m.and_then(|m| m.get(&idx)) {
                        Some(p) => buf.extend_from_slice(&p.data[a as usize..b as usize]),
                        // Dropped meanwhile by a callback: the caller's next read refetches;
                        // zeros here would be wrong, so fail the read.
                        None => {
                            return Err(Error::new(libc::EAGAIN).ctx("page dropped while reading"));
                        }
                    }
                }
            }
            self.pages.borrow_mut().shrink();
            out.push(buf);
        }
        Ok(out)
    }

    /// Writes `data` at `off`. Pages are cached dirty under a PW lock while grant lasts;
    /// otherwise (or past the dirty limit) they are written back before returning.
    pub async fn write_file(self: &Rc<Self>, f: &OpenFile, off: u64, data: &[u8]) -> Result<()> {
        let Some(l) = &f.layout else {
            return Err(Error::new(libc::ENODATA).ctx("file without objects"));
        };
        if data.is_empty() {
            return Ok(());
        }
        let chunks = l.chunks(off, data.len() as u64);
        let per = l.object_ranges(off, data.len() as u64);
        // Locks first, all stripes in parallel, then the data.
        let mut tasks = Vec::new();
        for (i, ranges) in per.iter().enumerate() {
            let (Some(a), Some(b)) = (ranges.first(), ranges.last()) else { continue };
            let (start, end) = (page_floor(a.0), page_last(b.0 + b.1 - 1));
            let fs = self.clone();
            let s = l.stripes[i];
            tasks.push((
                s,
                (start, end),
                glommio::spawn_local(async move {
                    fs.ensure_extent_lock(s, mode::PW, start, end).await
                }),
            ));
        }
        // The locks stay in use until the data is cached: a lock called back while a partial
        // page is read in would otherwise be gone, its pages flushed, before this write lands.
        let mut uses = Vec::with_capacity(tasks.len());
        for (s, (start, end), t) in tasks {
            let h = t.await?;
            uses.push(self.use_extent_lock(h, s, mode::PW, start, end).await?);
        }
        let mut sync_needed: Vec<Stripe> = Vec::new();
        let mut pos = 0usize;
        for c in chunks {
            let s = l.stripes[c.stripe];
            let n = usize::try_from(c.len).unwrap_or(0);
            if !self.cache_write(s, c.obj_off, &data[pos..pos + n]).await?
                && !sync_needed.contains(&s)
            {
                sync_needed.push(s);
            }
            pos += n;
        }
        drop(uses);
        let over = {
            let c = self.pages.borrow();
            c.dirty > c.max_dirty
        };
        if over {
            self.flush_all().await?;
        } else {
            for s in sync_needed {
                self.flush_object(s, 0, EOF).await?;
            }
        }
        Ok(())
    }

    /// Starts using lock `h` (just matched or granted for `[start, end]` of `s`): other tasks
    /// ran since, and a blocking callback may have taken it or begun to; then a lock is
    /// taken again. The check and the use happen without yielding, so a cancel either sees
    /// the use and waits for it, or came first and the lock is not used.
    async fn use_extent_lock(
        self: &Rc<Self>,
        h: u64,
        s: Stripe,
        lock_mode: u32,
        start: u64,
        end: u64,
    ) -> Result<crate::ldlm::LockUse<'_>> {
        let mut h = h;
        loop {
            if self.locks.get(h).is_some_and(|l| !l.cancelling) {
                return Ok(self.locks.hold(h));
            }
            h = self.ensure_extent_lock(s, lock_mode, start, end).await?;
        }
    }

    /// Puts `data` at object offset `off` into the cache; false when some page could not be
    /// covered by grant (the caller writes the object back now).
    async fn cache_write(self: &Rc<Self>, s: Stripe, off: u64, data: &[u8]) -> Result<bool> {
        let first = off / PAGE;
        let last = (off + data.len() as u64 - 1) / PAGE;
        let known = self.known_object_size(s.fid).unwrap_or(0);
        // Partial pages inside the object that are not cached: read them first.
        for idx in [first, last] {
            let ps = idx * PAGE;
            let whole = off <= ps && off + data.len() as u64 >= ps + PAGE;
            let cached =
                self.pages.borrow().pages.get(&s.fid).is_some_and(|m| m.contains_key(&idx));
            if !whole && !cached && ps < known {
                let got = self.brw_read(s, ps, PAGE).await?;
                let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
                page[..got.len().min(PAGE as usize)]
                    .copy_from_slice(&got[..got.len().min(PAGE as usize)]);
                self.pages.borrow_mut().insert_clean(s.fid, idx, page);
            }
        }
        let st = self.osc_state(s.ost);
        let mut all_granted = true;
        {
            let mut c = self.pages.borrow_mut();
            let mut added = 0u64;
            let mut newly_dirty = 0u64;
            let mut dirtied = Vec::new();
            let m = c.pages.entry(s.fid).or_default();
            for idx in first..=last {
                let ps = idx * PAGE;
                let a = off.max(ps);
                let b = (off + data.len() as u64).min(ps + PAGE);
                let src = &data[(a - off) as usize..(b - off) as usize];
                let p = m.entry(idx).or_insert_with(|| {
                    added += PAGE;
                    // A page written whole is made from the data (no zeroing first).
                    let data = if src.len() as u64 == PAGE {
                        src.to_vec().into_boxed_slice()
                    } else {
                        vec![0u8; PAGE as usize].into_boxed_slice()
                    };
                    Page { data, dirty: false, grant: false }
                });
                p.data[(a - ps) as usize..(b - ps) as usize].copy_from_slice(src);
                if !p.dirty {
                    dirtied.push(idx);
                    p.dirty = true;
                    newly_dirty += PAGE;
                    if st.avail_grant.get() >= PAGE {
                        st.avail_grant.set(st.avail_grant.get() - PAGE);
                        st.dirty.set(st.dirty.get() + PAGE);
                        p.grant = true;
                    } else {
                        all_granted = false;
                    }
                }
            }
            c.bytes += added;
            c.dirty += newly_dirty;
            for idx in dirtied {
                c.note_dirty(s.fid, idx);
            }
        }
        self.note_object_size(s.fid, off + data.len() as u64);
        Ok(all_granted)
    }

    /// Writes back the dirty pages of an object in `[start, end]` (bytes), trimmed to the
    /// object's size.
    pub async fn flush_object(&self, s: Stripe, start: u64, end: u64) -> Result<()> {
        let mut runs = self.pages.borrow_mut().clean_range(s.fid, start, end);
        if runs.is_empty() {
            return Ok(());
        }
        let size = self.known_object_size(s.fid).unwrap_or(0);
        for r in &mut runs {
            let keep = usize::try_from(size.saturating_sub(r.off)).unwrap_or(usize::MAX);
            r.data.truncate(keep);
        }
        runs.retain(|r| !r.data.is_empty());
        *self.pages.borrow_mut().inflight.entry(s.fid).or_insert(0) += 1;
        let r = self.brw_write(s, &runs).await;
        let mut c = self.pages.borrow_mut();
        if let Some(n) = c.inflight.get_mut(&s.fid) {
            *n -= 1;
            if *n == 0 {
                c.inflight.remove(&s.fid);
            }
        }
        // The written pages stay cached clean, within the cache's bound.
        c.shrink();
        r
    }

    /// Waits until no write-back of the object is in flight (another task's flush took its
    /// dirty pages and is still sending them).
    async fn wait_writeback(&self, fid: LuFid) {
        while self.pages.borrow().inflight.contains_key(&fid) {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Writes back every dirty page.
    pub async fn flush_all(self: &Rc<Self>) -> Result<()> {
        let objs = self.pages.borrow().dirty_objects();
        // Every object at once: their OSTs work in parallel.
        let flushes = objs
            .into_iter()
            .filter_map(|fid| self.stripe_of(fid))
            .map(|s| self.flush_object(s, 0, EOF));
        for r in futures_util::future::join_all(flushes).await {
            r?;
        }
        Ok(())
    }

    /// The stripe (OST and object) of a cached object, from the locks that cover it.
    fn stripe_of(&self, fid: LuFid) -> Option<Stripe> {
        self.locks.on_resource(&fid.res_id()).into_iter().find_map(|l| match l.target {
            Tgt::Osc(ost) => Some(Stripe { ost, fid }),
            _ => None,
        })
    }

    /// fsync: every dirty page of the file written back, and committed on the OSTs.
    pub async fn fsync_file(self: &Rc<Self>, f: &OpenFile) -> Result<()> {
        let Some(l) = &f.layout else { return Ok(()) };
        let flushes = l.stripes.iter().map(|s| self.flush_object(*s, 0, EOF));
        for r in futures_util::future::join_all(flushes).await {
            r?;
        }
        // And what other tasks were writing back of it.
        for s in &l.stripes {
            self.wait_writeback(s.fid).await;
        }
        Ok(())
    }

    /// Before an extent lock goes: write back and drop the pages it covers.
    pub(crate) async fn lock_going(&self, ost: u32, fid: LuFid, policy: &Policy) {
        let (start, end) = match policy {
            Policy::Extent(e) => (e.start.get(), e.end.get()),
            _ => (0, EOF),
        };
        let s = Stripe { ost, fid };
        if let Err(e) = self.flush_object(s, start, end).await {
            log::warn!("OST{ost:04x}: writing back {fid} before a lock cancel: {e}");
        }
        // Pages another task is still writing back must reach the OST before the lock goes:
        // the next holder's size comes from the OST.
        self.wait_writeback(fid).await;
        self.pages.borrow_mut().take_range(fid, start, end);
    }

    /// After an extent lock went: without another lock on the object, what we knew of its
    /// size (from LVBs and our writes) may go stale.
    pub(crate) fn lock_gone(&self, fid: LuFid) {
        if !self.locks.on_resource(&fid.res_id()).iter().any(|l| matches!(l.target, Tgt::Osc(_))) {
            self.object_sizes.borrow_mut().remove(&fid);
        }
    }

    /// Appends atomically: PW locks on every stripe to the end, the size they give, and the
    /// write at that size. Returns the offset written at.
    pub async fn append_file(self: &Rc<Self>, f: &OpenFile, data: &[u8]) -> Result<u64> {
        let Some(l) = &f.layout else {
            return Err(Error::new(libc::ENODATA).ctx("file without objects"));
        };
        // In stripe order, so two appenders queue instead of deadlocking. The locks stay in
        // use until the write is cached under them: were one called back meanwhile (while a
        // partial page is read in), another client could append at the size we write at.
        let mut uses = Vec::with_capacity(l.stripes.len());
        for s in &l.stripes {
            let h = self.ensure_extent_lock(*s, mode::PW, 0, EOF).await?;
            uses.push(self.use_extent_lock(h, *s, mode::PW, 0, EOF).await?);
        }
        let size = self.file_size(l).await?;
        self.write_file(f, size, data).await?;
        Ok(size)
    }

    /// Truncates (or extends) the file to `size`: PW locks from the cut to the end of every
    /// object, cached pages past it dropped, OST_PUNCH on each object, then the MDT's size.
    pub async fn truncate_file(self: &Rc<Self>, f: &OpenFile, size: u64, c: Cred) -> Result<()> {
        if let Some(l) = &f.layout {
            for (i, s) in l.stripes.iter().enumerate() {
                let osize = l.object_size(size, i);
                self.ensure_extent_lock(*s, mode::PW, page_floor(osize), EOF).await?;
                // A partial last page keeps its head: write it back, then drop the tail pages.
                self.flush_object(*s, page_floor(osize), EOF).await?;
                self.pages.borrow_mut().take_range(s.fid, page_floor(osize), EOF);
                self.ost_punch(*s, osize).await?;
            }
        }
        let rec = proto::mdt::MdtRecSetattr { sa_size: size.into(), ..Default::default() };
        // Through a descriptor opened for writing (ftruncate) the open already checked the
        // permission: the MDT must not check it again (a file created without write bits).
        let mut valid = proto::mdt::attr::SIZE;
        if f.handle != 0 && f.flags & of::FMODE_WRITE != 0 {
            valid |= proto::mdt::attr::FROM_OPEN;
        }
        self.setattr_fid(f.fid, valid, &rec, c).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_takes_runs_of_dirty_pages() {
        let mut c = PageCache::default();
        let f = LuFid::new(0x2_0000_0400, 1, 0);
        for (i, grant) in [(1u64, true), (2, true), (3, false), (5, false)] {
            c.pages.entry(f).or_default().insert(
                i,
                Page { data: vec![i as u8; PAGE as usize].into_boxed_slice(), dirty: true, grant },
            );
            c.note_dirty(f, i);
            c.dirty += PAGE;
        }
        c.insert_clean(f, 4, vec![0u8; PAGE as usize].into_boxed_slice());
        let r = c.clean_range(f, 0, EOF);
        let shape: Vec<(u64, usize, bool)> =
            r.iter().map(|r| (r.off / PAGE, r.data.len() / PAGE as usize, r.from_grant)).collect();
        assert_eq!(shape, vec![(1, 2, true), (3, 1, false), (5, 1, false)]);
        assert_eq!(r[0].data[PAGE as usize], 2);
        assert_eq!(c.dirty_bytes(), 0);
        assert!(c.dirty_objects().is_empty());
        assert!(c.clean_range(f, 0, EOF).is_empty());
    }

    #[test]
    fn cache_accounting() {
        let mut c = PageCache::default();
        let f = LuFid::new(0x2_0000_0400, 1, 0);
        c.insert_clean(f, 0, vec![0u8; PAGE as usize].into_boxed_slice());
        c.insert_clean(f, 1, vec![0u8; PAGE as usize].into_boxed_slice());
        assert_eq!(c.bytes(), 2 * PAGE);
        assert!(c.take_range(f, 0, PAGE - 1).is_empty());
        assert_eq!(c.bytes(), PAGE);
        c.max_bytes = 0;
        c.shrink();
        assert_eq!(c.bytes(), 0);
    }
}

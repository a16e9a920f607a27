//! A fault-injecting device for the deterministic storage simulator.
//!
//! It keeps two images: what the media holds durably, and what the device cache shows (every
//! completed write). `flush` moves the cache to the media. A seeded power cut stops the device
//! at a chosen write: that write and everything later fail, and [`FaultDev::crash_image`]
//! builds what a machine would find after the cut: each unflushed write is dropped, kept, or
//! torn at sector granularity; optionally one recent write is corrupted (a flipped byte) or
//! misdirected (it lands on another block and its target keeps the old contents). I/O errors
//! can be injected on a chosen read, write or flush without a cut.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{BlockDev, DevInfo, IoOp, check_batch};
use crate::error::{OsdError, Result};

/// Silent damage applied to one recent write in [`FaultDev::crash_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Damage {
    /// None: only the power cut.
    #[default]
    None,
    /// Flip one byte of a recent write.
    Corrupt,
    /// Put a recent write on another (block-aligned) location.
    Misdirect,
}

/// How many recent writes are remembered for corruption/misdirection.
const HISTORY: usize = 32;

#[derive(Debug)]
struct Write {
    off: u64,
    data: Vec<u8>,
    /// What the cache held at `off` before this write (to undo a misdirected write).
    old: Vec<u8>,
    flushed: bool,
}

#[derive(Debug)]
struct State {
    media: Vec<u8>,
    cache: Vec<u8>,
    /// Writes since the last flush, in completion order.
    pending: Vec<Write>,
    /// The most recent flushed writes (bounded by HISTORY).
    history: Vec<Write>,
    writes: u64,
    reads: u64,
    flushes: u64,
    cut_at: Option<u64>,
    dead: bool,
    fail_write: Option<u64>,
    fail_read: Option<u64>,
    fail_flush: Option<u64>,
    /// Yield to other tasks before each I/O (lets concurrent tasks interleave at I/O points,
    /// as on a real device).
    yield_io: bool,
}

/// The fault-injecting device.
#[derive(Debug)]
pub struct FaultDev {
    st: RefCell<State>,
}

impl FaultDev {
    /// A device over `image` (for example a formatted [`super::mem::MemDev`] image).
    #[must_use]
    pub fn new(mut image: Vec<u8>) -> FaultDev {
        image.truncate(image.len() & !511);
        FaultDev {
            st: RefCell::new(State {
                cache: image.clone(),
                media: image,
                pending: Vec::new(),
                history: Vec::new(),
                writes: 0,
                reads: 0,
                flushes: 0,
                cut_at: None,
                dead: false,
                fail_write: None,
                fail_read: None,
                fail_flush: None,
                yield_io: false,
            }),
        }
    }

    /// Cuts power when the `n`th write or flush from now (0-based) is submitted: it and every
    /// later I/O fail.
    pub fn cut_power_at(&self, n: u64) {
        let mut st = self.st.borrow_mut();
        st.cut_at = Some(st.writes + st.flushes + n);
    }

    /// Makes every submit and flush yield once to other tasks before it runs.
    pub fn set_yield(&self, on: bool) {
        self.st.borrow_mut().yield_io = on;
    }

    /// Cuts power now.
    pub fn cut_power(&self) {
        self.st.borrow_mut().dead = true;
    }

    /// Whether the power has been cut.
    #[must_use]
    pub fn is_dead(&self) -> bool {
        self.st.borrow().dead
    }

    /// Fails the `n`th write from now (0-based) with EIO, once.
    pub fn fail_write_in(&self, n: u64) {
        let mut st = self.st.borrow_mut();
        st.fail_write = Some(st.writes + n);
    }

    /// Fails the `n`th read from now (0-based) with EIO, once.
    pub fn fail_read_in(&self, n: u64) {
        let mut st = self.st.borrow_mut();
        st.fail_read = Some(st.reads + n);
    }

    /// Fails the `n`th flush from now (0-based) with EIO, once (nothing becomes durable).
    pub fn fail_flush_in(&self, n: u64) {
        let mut st = self.st.borrow_mut();
        st.fail_flush = Some(st.flushes + n);
    }

    /// Writes submitted so far.
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.st.borrow().writes
    }

    /// The current cache contents (what a reader sees while powered).
    #[must_use]
    pub fn cache_image(&self) -> Vec<u8> {
        self.st.borrow().cache.clone()
    }

    /// What the media holds after a power cut now, with the unflushed writes dropped, kept or
    /// torn by `seed`, and `damage` applied to one recent write.
    #[must_use]
    pub fn crash_image(&self, seed: u64, damage: Damage) -> Vec<u8> {
        let st = self.st.borrow();
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c0de);
        let mut img = st.media.clone();
        for w in &st.pending {
            let o = usize::try_from(w.off).unwrap_or(usize::MAX);
            match rng.random_range(0..3u8) {
                0 => {}
                1 => {
                    if let Some(dst) = img.get_mut(o..o.saturating_add(w.data.len())) {
                        dst.copy_from_slice(&w.data);
                    }
                }
                _ => {
                    for (i, sector) in w.data.chunks(512).enumerate() {
                        if rng.random_bool(0.5) {
                            let so = o.saturating_add(i * 512);
                            if let Some(dst) = img.get_mut(so..so.saturating_add(sector.len())) {
                                dst.copy_from_slice(sector);
                            }
                        }
                    }
                }
            }
        }
        // Damage one recent write that no later write overlapped, so undoing it is exact.
        let recent: Vec<&Write> = st.history.iter().chain(st.pending.iter()).collect();
        let candidates: Vec<usize> = (0..recent.len())
            .filter(|&i| {
                let (a, al) = (recent[i].off, recent[i].data.len() as u64);
                !recent[i + 1..].iter().any(|w| w.off < a + al && a < w.off + w.data.len() as u64)
            })
            .collect();
        if damage != Damage::None && !candidates.is_empty() {
            let w = recent[candidates[rng.random_range(0..candidates.len())]];
            let o = usize::try_from(w.off).unwrap_or(usize::MAX);
            let present = w.flushed || img.get(o..o + w.data.len()) == Some(&w.data[..]);
            match damage {
                Damage::Corrupt if present && !w.data.is_empty() => {
                    let i = o + rng.random_range(0..w.data.len());
                    if let Some(b) = img.get_mut(i) {
                        *b ^= 1 << rng.random_range(0..8u32);
                    }
                }
                Damage::Misdirect if present => {
                    let blocks = img.len() / 4096;
                    let to = rng.random_range(0..blocks.max(1)) * 4096;
                    if to != o {
                        if let Some(dst) = img.get_mut(o..o + w.old.len()) {
                            dst.copy_from_slice(&w.old);
                        }
                        let n = w.data.len().min(img.len().saturating_sub(to));
                        if let Some(dst) = img.get_mut(to..to + n) {
                            dst.copy_from_slice(&w.data[..n]);
                        }
                    }
                }
                _ => {}
            }
        }
        img
    }
}

impl BlockDev for FaultDev {
    fn info(&self) -> DevInfo {
        DevInfo { size: self.st.borrow().cache.len() as u64, sector: 512, align: 512 }
    }

    async fn submit(&self, batch: &mut [IoOp<'_>]) -> Result<()> {
        check_batch(&self.info(), batch)?;
        if self.st.borrow().yield_io {
            futures_lite::future::yield_now().await;
        }
        let mut st = self.st.borrow_mut();
        let mut first_err = None;
        for op in batch.iter_mut() {
            if st.dead {
                first_err.get_or_insert(OsdError::Io("power cut".into()));
                continue;
            }
            match op {
                IoOp::Read { off, buf } => {
                    let n = st.reads;
                    st.reads += 1;
                    if st.fail_read == Some(n) {
                        first_err.get_or_insert(OsdError::Io("injected read error".into()));
                        continue;
                    }
                    let o = usize::try_from(*off).unwrap_or(usize::MAX);
                    if let Some(src) = st.cache.get(o..o + buf.len()) {
                        buf.copy_from_slice(src);
                    }
                }
                IoOp::Write { off, buf } => {
                    let n = st.writes;
                    st.writes += 1;
                    if st.cut_at == Some(n + st.flushes) {
                        st.dead = true;
                        first_err.get_or_insert(OsdError::Io("power cut".into()));
                        continue;
                    }
                    if st.fail_write == Some(n) {
                        first_err.get_or_insert(OsdError::Io("injected write error".into()));
                        continue;
                    }
                    let o = usize::try_from(*off).unwrap_or(usize::MAX);
                    let old =
                        st.cache.get(o..o + buf.len()).map(<[u8]>::to_vec).unwrap_or_default();
                    if let Some(dst) = st.cache.get_mut(o..o + buf.len()) {
                        dst.copy_from_slice(buf);
                    }
                    st.pending.push(Write { off: *off, data: buf.to_vec(), old, flushed: false });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn flush(&self) -> Result<()> {
        if self.st.borrow().yield_io {
            futures_lite::future::yield_now().await;
        }
        let mut st = self.st.borrow_mut();
        if st.dead {
            return Err(OsdError::Io("power cut".into()));
        }
        let n = st.flushes;
        if st.cut_at == Some(st.writes + n) {
            st.dead = true;
            return Err(OsdError::Io("power cut".into()));
        }
        st.flushes += 1;
        if st.fail_flush == Some(n) {
            return Err(OsdError::Io("injected flush error".into()));
        }
        let st = &mut *st;
        for mut w in st.pending.drain(..) {
            let o = usize::try_from(w.off).unwrap_or(usize::MAX);
            if let Some(dst) = st.media.get_mut(o..o + w.data.len()) {
                dst.copy_from_slice(&w.data);
            }
            w.flushed = true;
            st.history.push(w);
        }
        if st.history.len() > HISTORY {
            let excess = st.history.len() - HISTORY;
            st.history.drain(..excess);
        }
        Ok(())
    }
}

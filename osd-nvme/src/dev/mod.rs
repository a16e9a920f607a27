//! Block devices beneath the persistent OSD.
//!
//! The trait is shaped for a userspace NVMe queue pair: a caller hands over a *batch* of I/Os
//! that are submitted together (one `io_uring_enter`, or one doorbell write for NVMe), and the
//! returned future is the completion poller: each poll reaps what has completed (glommio's
//! reactor for files, the completion queue for NVMe) until the whole batch is done. Flush is
//! an explicit command (NVMe FLUSH, `fdatasync` for files): writes are durable only after a
//! flush that was issued after they completed.
//!
//! Implementations: [`dma::DmaDev`] (io_uring O_DIRECT through glommio's `DmaFile`, the
//! default), [`mem::MemDev`] (memory), [`fault::FaultDev`] (seeded power cuts, torn,
//! corrupted and misdirected writes, I/O errors).

pub mod dma;
pub mod fault;
pub mod mem;

use crate::error::{OsdError, Result};

/// What a device offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevInfo {
    /// Usable bytes.
    pub size: u64,
    /// Atomic write unit: a power cut tears writes at this granularity, never inside it.
    pub sector: u32,
    /// Required alignment of buffer addresses, offsets and lengths.
    pub align: usize,
}

/// One I/O of a batch.
#[derive(Debug)]
pub enum IoOp<'a> {
    /// Read `buf.len()` bytes at byte offset `off`.
    Read {
        /// Device byte offset.
        off: u64,
        /// Destination.
        buf: &'a mut [u8],
    },
    /// Write `buf` at byte offset `off`.
    Write {
        /// Device byte offset.
        off: u64,
        /// Source.
        buf: &'a [u8],
    },
}

impl IoOp<'_> {
    pub(crate) fn range(&self) -> (u64, usize) {
        match self {
            IoOp::Read { off, buf } => (*off, buf.len()),
            IoOp::Write { off, buf } => (*off, buf.len()),
        }
    }
}

/// A block device: batches of I/Os submitted together, completions polled by the returned
/// future, explicit flush. Instances are `!Send` and used from one shard.
#[allow(async_fn_in_trait)] // Devices are single-executor (!Send) by design.
pub trait BlockDev {
    /// Size and alignment.
    fn info(&self) -> DevInfo;
    /// Submits every I/O of `batch` at once and completes when all have completed. Returns
    /// the first error; a failed batch may have completed some of its writes.
    async fn submit(&self, batch: &mut [IoOp<'_>]) -> Result<()>;
    /// Makes every completed write durable.
    async fn flush(&self) -> Result<()>;
}

/// Checks a batch against the device's size and alignment: bad requests never reach it.
pub(crate) fn check_batch(info: &DevInfo, batch: &[IoOp<'_>]) -> Result<()> {
    let a = info.align as u64;
    for op in batch {
        let (off, len) = op.range();
        let len64 = len as u64;
        if !off.is_multiple_of(a) || !len64.is_multiple_of(a) {
            return Err(OsdError::Invalid("unaligned device I/O"));
        }
        if off.checked_add(len64).is_none_or(|end| end > info.size) {
            return Err(OsdError::Io(format!(
                "I/O beyond end of device: {off}+{len} > {}",
                info.size
            )));
        }
    }
    Ok(())
}

impl<D: BlockDev> BlockDev for std::rc::Rc<D> {
    fn info(&self) -> DevInfo {
        (**self).info()
    }
    async fn submit(&self, batch: &mut [IoOp<'_>]) -> Result<()> {
        (**self).submit(batch).await
    }
    async fn flush(&self) -> Result<()> {
        (**self).flush().await
    }
}

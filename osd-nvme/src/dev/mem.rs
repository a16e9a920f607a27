//! A device in memory: for tests, the simulator and running the appliance without disks.

use std::cell::RefCell;

use super::{BlockDev, DevInfo, IoOp, check_batch};
use crate::error::Result;

/// A memory-backed block device. Every write is immediately "durable".
#[derive(Debug)]
pub struct MemDev {
    data: RefCell<Vec<u8>>,
}

impl MemDev {
    /// A zeroed device of `size` bytes (rounded down to 512).
    #[must_use]
    pub fn new(size: u64) -> MemDev {
        let size = usize::try_from(size & !511).unwrap_or(0);
        MemDev { data: RefCell::new(vec![0; size]) }
    }

    /// A device holding `image` (length rounded down to 512).
    #[must_use]
    pub fn from_image(mut image: Vec<u8>) -> MemDev {
        image.truncate(image.len() & !511);
        MemDev { data: RefCell::new(image) }
    }

    /// A copy of the device's bytes.
    #[must_use]
    pub fn image(&self) -> Vec<u8> {
        self.data.borrow().clone()
    }

    /// Applies `f` to the raw bytes (tests damage structures this way).
    pub fn with_bytes_mut<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self.data.borrow_mut())
    }
}

impl BlockDev for MemDev {
    fn info(&self) -> DevInfo {
        DevInfo { size: self.data.borrow().len() as u64, sector: 512, align: 512 }
    }

    async fn submit(&self, batch: &mut [IoOp<'_>]) -> Result<()> {
        check_batch(&self.info(), batch)?;
        let mut data = self.data.borrow_mut();
        for op in batch.iter_mut() {
            match op {
                IoOp::Read { off, buf } => {
                    let o = usize::try_from(*off).unwrap_or(usize::MAX);
                    if let Some(src) = data.get(o..o.saturating_add(buf.len())) {
                        buf.copy_from_slice(src);
                    }
                }
                IoOp::Write { off, buf } => {
                    let o = usize::try_from(*off).unwrap_or(usize::MAX);
                    if let Some(dst) = data.get_mut(o..o.saturating_add(buf.len())) {
                        dst.copy_from_slice(buf);
                    }
                }
            }
        }
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

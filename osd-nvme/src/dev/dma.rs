//! io_uring O_DIRECT on a file or block device through glommio's `DmaFile` (the default
//! device for development and CI). Everything glommio-specific in the crate lives here.
//!
//! glommio 0.9 writes only from its own `DmaBuffer`s and reads into buffers it allocates, so
//! this device copies once between those and the caller's buffers; the userspace NVMe device
//! will DMA straight into page-aligned [`crate::IoBuf`]s.

use std::path::Path;

use glommio::io::{DmaFile, OpenOptions};

use super::{BlockDev, DevInfo, IoOp, check_batch};
use crate::error::{OsdError, Result};
use crate::util::{LocalFut, join_all};

/// A file or block device opened with O_DIRECT, driven by the shard's io_uring rings.
#[derive(Debug)]
pub struct DmaDev {
    file: DmaFile,
    size: u64,
}

impl DmaDev {
    /// Opens `path` read-write with O_DIRECT. The size is the file's (or block device's) size.
    ///
    /// glommio trap: the first O_DIRECT open of a device in a process must not be an *empty*
    /// file opened read-write, or later reads fail with EOPNOTSUPP; callers give the file its
    /// size first (see [`DmaDev::create`]).
    pub async fn open(path: &Path) -> Result<DmaDev> {
        let size = std::fs::metadata(path).map(|m| m.len())?;
        let size = if size == 0 { block_device_size(path)? } else { size };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(|e| OsdError::Io(format!("open {}: {e}", path.display())))?;
        Ok(DmaDev { file, size: size & !4095 })
    }

    /// Creates (or resizes) a file of `size` bytes, writes it full of zeros so that later
    /// O_DIRECT writes overwrite allocated blocks (no unwritten-extent conversion in the
    /// data path, as fio lays its files out), and opens it.
    pub async fn create(path: &Path, size: u64) -> Result<DmaDev> {
        {
            use std::io::Write;
            let mut f =
                std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(path)?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
        }
        DmaDev::open(path).await
    }
}

async fn read_into(file: &DmaFile, off: u64, buf: &mut [u8]) -> Result<()> {
    let r = file
        .read_at_aligned(off, buf.len())
        .await
        .map_err(|e| OsdError::Io(format!("read at {off}: {e}")))?;
    if r.len() != buf.len() {
        return Err(OsdError::Io(format!("short read at {off}")));
    }
    buf.copy_from_slice(&r);
    Ok(())
}

async fn write_from(file: &DmaFile, off: u64, buf: &[u8]) -> Result<()> {
    let mut db = file.alloc_dma_buffer(buf.len());
    db.as_bytes_mut().copy_from_slice(buf);
    let n =
        file.write_at(db, off).await.map_err(|e| OsdError::Io(format!("write at {off}: {e}")))?;
    if n != buf.len() {
        return Err(OsdError::Io(format!("short write at {off}")));
    }
    Ok(())
}

fn block_device_size(path: &Path) -> Result<u64> {
    use std::io::Seek;
    let mut f = std::fs::File::open(path)?;
    Ok(f.seek(std::io::SeekFrom::End(0))?)
}

impl BlockDev for DmaDev {
    fn info(&self) -> DevInfo {
        DevInfo { size: self.size, sector: 512, align: 4096 }
    }

    async fn submit(&self, batch: &mut [IoOp<'_>]) -> Result<()> {
        check_batch(&self.info(), batch)?;
        let file = &self.file;
        if let [op] = batch {
            // One I/O: no boxing or joining.
            return match op {
                IoOp::Read { off, buf } => read_into(file, *off, buf).await,
                IoOp::Write { off, buf } => write_from(file, *off, buf).await,
            };
        }
        let futs: Vec<LocalFut<'_, Result<()>>> = batch
            .iter_mut()
            .map(|op| -> LocalFut<'_, Result<()>> {
                match op {
                    IoOp::Read { off, buf } => Box::pin(read_into(file, *off, buf)),
                    IoOp::Write { off, buf } => Box::pin(write_from(file, *off, buf)),
                }
            })
            .collect();
        join_all(futs).await.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }

    async fn flush(&self) -> Result<()> {
        self.file.fdatasync().await.map_err(|e| OsdError::Io(format!("fdatasync: {e}")))
    }
}

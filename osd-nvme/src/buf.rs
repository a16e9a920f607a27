//! Buffers suitable for O_DIRECT and DMA: 4 KiB aligned, zero-filled, owned.

use std::alloc::Layout;
use std::ptr::NonNull;

/// Alignment of [`IoBuf`]: a page, which satisfies O_DIRECT (logical block size) and NVMe
/// PRP rules (dword alignment, page-sized entries).
pub const IO_ALIGN: usize = 4096;

/// An owned, page-aligned, zero-initialised byte buffer. Body I/O whose caller buffers are
/// `IoBuf`s (or otherwise page aligned) goes to the device without a bounce copy.
pub struct IoBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

impl IoBuf {
    /// A zeroed buffer of `len` bytes (capacity rounded up to [`IO_ALIGN`]).
    #[must_use]
    pub fn new(len: usize) -> IoBuf {
        let cap = len.div_ceil(IO_ALIGN).max(1) * IO_ALIGN;
        let Ok(layout) = Layout::from_size_align(cap, IO_ALIGN) else {
            // Only a size near usize::MAX fails, which no caller can allocate anyway.
            std::alloc::handle_alloc_error(Layout::new::<u8>());
        };
        // SAFETY: the layout has a non-zero size (cap >= IO_ALIGN).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        IoBuf { ptr, len, cap }
    }

    /// A buffer holding a copy of `data`.
    #[must_use]
    pub fn from_slice(data: &[u8]) -> IoBuf {
        let mut b = IoBuf::new(data.len());
        b.copy_from_slice(data);
        b
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shrinks or grows (up to the capacity) the visible length; new bytes read as they were
    /// last written (zero for a fresh buffer).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.cap);
    }
}

impl core::ops::Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to `cap >= len` initialised (zeroed at allocation) bytes owned by
        // this buffer for its whole life.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl core::ops::DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::from_size_align(self.cap, IO_ALIGN) {
            // SAFETY: allocated in `new` with exactly this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

impl Clone for IoBuf {
    fn clone(&self) -> IoBuf {
        IoBuf::from_slice(self)
    }
}

impl core::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "IoBuf({} bytes)", self.len)
    }
}

/// Whether a slice may go straight to an O_DIRECT device: address and length aligned.
#[must_use]
pub fn is_dma_aligned(s: &[u8], align: usize) -> bool {
    (s.as_ptr() as usize).is_multiple_of(align) && s.len().is_multiple_of(align)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        let mut b = IoBuf::new(10_000);
        assert_eq!(b.len(), 10_000);
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(b.as_ptr() as usize % IO_ALIGN, 0);
        b[9_999] = 7;
        let c = b.clone();
        assert_eq!(c[9_999], 7);
        b.set_len(4096);
        assert!(is_dma_aligned(&b, 4096));
        assert!(!is_dma_aligned(&b[1..], 4096));
    }
}

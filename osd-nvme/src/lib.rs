//! Rustre's OSD (object storage device) layer.
//!
//! This crate will hold the OSD API modelled on Lustre's (objects by FID, attributes, xattrs,
//! body I/O, index objects, declared transactions with commit callbacks), a memory OSD, the
//! persistent crash-safe OSD with its journal and fsck, and the block devices beneath it
//! (io_uring O_DIRECT files, memory, fault injection, and later userspace NVMe).
//!
//! Nothing is implemented here yet; the OSD issue fills it.

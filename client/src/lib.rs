//! Rustre's userspace Lustre client.
//!
//! This crate will hold a client library that speaks the same protocol as a Lustre 2.15 kernel
//! client (MGC, MDC, OSC, LOV layout engine, lock-coherent caching), the `rlfs` command line
//! tool with `lfs` vocabulary, and a FUSE mount.
//!
//! Nothing is implemented here yet; the namespace issue fills it.

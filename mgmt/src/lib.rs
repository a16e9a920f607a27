//! Rustre management.
//!
//! This crate will hold the one command language (`lctl`/`lfs`/`lnetctl` vocabulary, Lustre's
//! parameter names and formats), its REPL and HTTP front ends, and Prometheus metrics.
//!
//! Nothing is implemented here yet; the management issue fills it.

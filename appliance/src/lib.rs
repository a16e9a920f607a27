//! The Rustre appliance.
//!
//! This crate will hold the shards (one pinned executor per core), ptlrpc, the MGS, MDT and OST
//! services, the LDLM, configuration, and the `rustre` binary that runs as a process or as PID 1
//! in the appliance image.
//!
//! Nothing is implemented here yet; the namespace issue fills it.

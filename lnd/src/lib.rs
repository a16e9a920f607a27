//! LNet for Rustre.
//!
//! This crate will hold LNet as Rustre runs it on thread-per-core shards: network interfaces and
//! NIDs, the socklnd-compatible TCP LND (acceptor, typed connections, ZC-ACK), the LNet core
//! (portals, match entries, memory descriptors, PUT/GET/ACK/REPLY, discovery ping, credits) and
//! the API that ptlrpc builds on. The wire formats it speaks live in the `proto` crate.
//!
//! Nothing is implemented here yet; the LNet issue fills it.

//! LNet for Rustre: Lustre's network layer over TCP, byte-compatible with socklnd V3, running
//! on glommio thread-per-core shards.
//!
//! A node ([`Node`]) runs one shard per executor. Each shard has its own LNet instance
//! ([`Lnet`]): acceptors on every NI (SO_REUSEPORT), the peers homed on it
//! ([`home_shard`]) with their typed sockets, and its MDs and portals. Shards share nothing
//! mutable; they exchange messages over glommio's channel mesh.
//!
//! The upper layer (ptlrpc) attaches MDs to portals behind match entries, binds MDs for PUT
//! and GET, and reads events from bounded event queues; `docs/lnet.md` describes the API, the
//! ownership rules and the data flow of requests, replies and bulk.
//!
//! ```no_run
//! use lnd::{Config, Lnet, MatchEntry, MdOptions, MdSpec, NiConfig, Node, ProcessId};
//!
//! let nid = "127.0.0.1@tcp".parse()?;
//! let cfg = Config::new(vec![NiConfig::new(nid, 988)?]);
//! let node = Node::start(cfg, |lnet: Lnet| async move {
//!     let eq = lnet.event_queue();
//!     let opts = MdOptions { op_put: true, ..MdOptions::default() };
//!     lnet.attach(26, MatchEntry::any(), MdSpec::new(vec![0u8; 4096]).options(opts), &eq)
//!         .expect("attach");
//!     let ev = eq.next().await;
//!     println!("{:?} from {}", ev.kind, ev.initiator);
//! })?;
//! node.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::panic))]

mod api;
pub mod config;
mod conn;
pub mod error;
pub mod md;
mod ping;
mod ratelog;
mod rt;
mod rx;
pub mod selftest;
mod shard;
pub mod stats;
mod timer;

pub use api::{Lnet, MdSpec, Node, PeerInfo, PutDone, Request, RequestQueue};
pub use config::{AcceptMode, Config, NiConfig, Placement, PortalRoute};
pub use error::{LnetError, Result};
pub use md::{
    Event, EventKind, EventQueue, InsertPos, MAX_PORTALS, MatchEntry, MdBuffers, MdHandle,
    MdOptions, MdSegment, ProcessId,
};
pub use shard::home_shard;
pub use stats::ShardStats;

/// Raw TCP helpers on the same runtime, for baselines (the selftest's TCP comparison).
pub mod baseline {
    pub use crate::rt::Placement;
    /// Starts one executor per shard of `placement` running `make()`'s future.
    pub fn run_pool<G, F>(name: &str, placement: &Placement, make: G) -> std::io::Result<()>
    where
        G: FnOnce() -> F + Clone + Send + 'static,
        F: std::future::Future<Output = ()> + 'static,
    {
        for r in crate::rt::start_pool(name, placement, make)?.join() {
            r.map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

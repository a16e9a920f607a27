//! Lustre's RPC layer (ptlrpc) for Rustre, shared by the appliance's services and the client
//! library: exports and imports, requests and replies, resends, bulk transfers over LNet.

pub mod client;
pub mod error;
pub mod export;
pub mod llog;
pub mod logger;
pub mod portals;
pub mod server;

pub use client::{Bulk, Import, ImportConfig, Reply};
pub use error::{Result, RpcError};
pub use portals::{XidGen, lnet_routes, xid_shard};
pub use server::{Incoming, Refused};

//! Lustre's RPC layer (ptlrpc) for Rustre, shared by the appliance's services and the client
//! library: exports and imports, requests and replies, resends, bulk transfers over LNet.

pub mod export;

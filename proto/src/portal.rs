//! ptlrpc portal numbers (`*_PORTAL` at the top of `lustre_idl.h`).
//!
//! `*_REQUEST_PORTAL` receives requests for a service, `*_REPLY_PORTAL` receives replies on the
//! client side, and `*_BULK_PORTAL` is where a client exposes bulk buffers.

/// Connection manager requests.
pub const CONNMGR_REQUEST: u32 = 1;
/// Connection manager replies.
pub const CONNMGR_REPLY: u32 = 2;
/// Replies to the OSC (client of an OST).
pub const OSC_REPLY: u32 = 4;
/// OST bulk I/O requests (BRW, PUNCH, LADVISE).
pub const OST_IO: u32 = 6;
/// OST_CREATE from an MDT.
pub const OST_CREATE: u32 = 7;
/// OST bulk buffers on the client.
pub const OST_BULK: u32 = 8;
/// Replies to the MDC.
pub const MDC_REPLY: u32 = 10;
/// MDS requests (connect, reint, enqueue).
pub const MDS_REQUEST: u32 = 12;
/// Data-on-MDT bulk I/O requests.
pub const MDS_IO: u32 = 13;
/// MDS bulk buffers on the client (readpage).
pub const MDS_BULK: u32 = 14;
/// Lock callbacks, server to client.
pub const LDLM_CB_REQUEST: u32 = 15;
/// Replies to lock callbacks.
pub const LDLM_CB_REPLY: u32 = 16;
/// Lock cancels, client to server.
pub const LDLM_CANCEL_REQUEST: u32 = 17;
/// Replies to lock cancels.
pub const LDLM_CANCEL_REPLY: u32 = 18;
/// Readpage, close, getattr and getxattr from 2.15 clients.
pub const MDS_READPAGE: u32 = 23;
/// Object update (OUT) requests between targets.
pub const OUT: u32 = 24;
/// Replies to the MGC.
pub const MGC_REPLY: u32 = 25;
/// MGS requests.
pub const MGS_REQUEST: u32 = 26;
/// MGS replies.
pub const MGS_REPLY: u32 = 27;
/// Non-BRW OST requests and OST lock enqueues.
pub const OST_REQUEST: u32 = 28;
/// FLD lookups.
pub const FLD_REQUEST: u32 = 29;
/// Client SEQ_QUERY.
pub const SEQ_METADATA: u32 = 30;
/// Data sequence requests.
pub const SEQ_DATA: u32 = 31;
/// Sequence controller requests.
pub const SEQ_CONTROLLER: u32 = 32;
/// MGS bulk buffers on the client (config read).
pub const MGS_BULK: u32 = 33;

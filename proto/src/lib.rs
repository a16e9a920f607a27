//! Lustre's wire protocol as Rust types: LNet/socklnd framing, the ptlrpc envelope and body,
//! and the bodies of the MGS, MDT, OST, LDLM, llog and config messages, for Lustre 2.15 LTS.
//!
//! Every structure is a zerocopy type with explicit little-endian fields and Lustre's own field
//! names. Sizes, field offsets and field sizes are checked at compile time against the facts
//! in lustre-release's `wiretest.c` (see `wire_asserts.rs`). Every decoder returns a typed
//! [`WireError`] on bad input and never panics; the crate has no I/O.
//!
//! ```
//! use proto::nid::Nid;
//! use proto::lnet::{Hello, LnetAcceptorConnreq, PID_LUSTRE, conn_type, ksock_version};
//! use proto::wire::Wire;
//!
//! let server: Nid = "192.168.1.10@tcp".parse()?;
//! let mut bytes = LnetAcceptorConnreq::new(server).to_vec();
//! Hello {
//!     version: ksock_version::V3,
//!     src_nid: "192.168.1.20@tcp".parse()?,
//!     dst_nid: server,
//!     src_pid: PID_LUSTRE,
//!     dst_pid: 0,
//!     src_incarnation: 1,
//!     dst_incarnation: 0,
//!     ctype: conn_type::CONTROL,
//!     nips: 0,
//! }
//! .encode(&mut bytes)?;
//! assert_eq!(bytes.len(), 16 + 56);
//! # Ok::<(), proto::WireError>(())
//! ```
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::panic))]

pub mod acl;
pub mod body;
pub mod build;
pub mod cfg;
pub mod cksum;
pub mod connect;
pub mod decoders;
pub mod dir;
pub mod error;
pub mod fid;
pub mod frame;
pub mod ldlm;
pub mod llog;
pub mod lnet;
pub mod lov;
pub mod mdt;
pub mod mgs;
pub mod msg;
pub mod nid;
pub mod opcode;
pub mod ost;
pub mod portal;
pub mod rmf;
pub mod wire;

mod wire_asserts;

pub use error::{Result, WireError};
pub use fid::{LuFid, LustreHandle};
pub use nid::Nid;
pub use opcode::Opcode;

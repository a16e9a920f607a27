//! The server side of Lustre's distributed lock manager (LDLM).
//!
//! Each target has a namespace per shard; a resource lives on the shard that owns the object it
//! names (decision 3), so a namespace never needs a lock of its own. [`ns::Namespace`] is the
//! pure state machine (grant, block, revoke, evict); the service turns its [`ns::Ast`] outputs
//! into callback RPCs.

pub mod ns;
pub mod policy;
pub mod service;

pub use ns::{
    Ast, EnqueueReq, Enqueued, ExportId, FlockDone, Glimpsed, LOCAL_EXPORT, LdlmError, Lock,
    Namespace, NsLimits, NsStats,
};
pub use policy::LockPolicy;

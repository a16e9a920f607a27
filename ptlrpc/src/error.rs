//! ptlrpc's error type, and the one mapping of errors to Linux errnos at the RPC boundary.

use proto::WireError;

/// Why an RPC or a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The network layer failed (peer dead, timeout, no buffers).
    #[error("network: {0}")]
    Lnet(#[from] lnd::LnetError),
    /// A message did not decode.
    #[error("protocol: {0}")]
    Wire(#[from] WireError),
    /// No reply in time (after resends).
    #[error("timed out")]
    TimedOut,
    /// The peer answered with an error status (a negative errno).
    #[error("status {0}")]
    Status(i32),
    /// The import is not connected (and reconnecting failed).
    #[error("not connected")]
    NotConnected,
    /// The server evicted this client; its locks and open files are gone.
    #[error("evicted")]
    Evicted,
    /// The reply is inconsistent with the request (wrong opcode, missing buffers).
    #[error("bad reply: {0}")]
    BadReply(&'static str),
    /// The local side is shutting down.
    #[error("shutting down")]
    Shutdown,
}

/// Linux errnos used on the wire (x86 numbering, as Lustre sends them).
pub mod errno {
    #![allow(missing_docs)]
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const E2BIG: i32 = 7;
    pub const EBADF: i32 = 9;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EFAULT: i32 = 14;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const ENODEV: i32 = 19;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const EMLINK: i32 = 31;
    pub const ERANGE: i32 = 34;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENOSYS: i32 = 38;
    pub const ENOTEMPTY: i32 = 39;
    pub const ELOOP: i32 = 40;
    pub const ENODATA: i32 = 61;
    pub const ETIME: i32 = 62;
    pub const EBADR: i32 = 53;
    pub const EPROTO: i32 = 71;
    pub const EOVERFLOW: i32 = 75;
    pub const EBADMSG: i32 = 74;
    pub const EOPNOTSUPP: i32 = 95;
    pub const ENOTCONN: i32 = 107;
    pub const ESHUTDOWN: i32 = 108;
    pub const ETIMEDOUT: i32 = 110;
    pub const EALREADY: i32 = 114;
    pub const EINPROGRESS: i32 = 115;
    pub const ESTALE: i32 = 116;
    pub const EDQUOT: i32 = 122;
}

impl RpcError {
    /// The positive errno a caller (FUSE, the CLI) reports for this error.
    #[must_use]
    pub fn errno(&self) -> i32 {
        match self {
            RpcError::Lnet(e) => e.errno().abs(),
            RpcError::Wire(_) | RpcError::BadReply(_) => errno::EPROTO,
            RpcError::TimedOut => errno::ETIMEDOUT,
            RpcError::Status(s) => s.abs(),
            RpcError::NotConnected => errno::ENOTCONN,
            RpcError::Evicted => errno::EIO,
            RpcError::Shutdown => errno::ESHUTDOWN,
        }
    }
}

/// Result alias.
pub type Result<T> = core::result::Result<T, RpcError>;

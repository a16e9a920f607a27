//! The crate's one error type.

use proto::WireError;

/// Why an LNet operation failed. Each maps to the errno that Lustre would report
/// ([`LnetError::errno`]), in this one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LnetError {
    /// No local NI is on the target's network.
    #[error("no route to {0}")]
    NoRoute(proto::Nid),
    /// The peer could not be reached (connect failures past the timeout, or dead).
    #[error("peer {0} unreachable")]
    Unreachable(proto::Nid),
    /// The discovery ping that must precede the first PUT/GET to a peer failed.
    #[error("discovery of {0} failed")]
    DiscoveryFailed(proto::Nid),
    /// A bounded queue, table or credit pool is full.
    #[error("{0} is full")]
    Full(&'static str),
    /// The memory descriptor handle is stale or names another shard.
    #[error("invalid memory descriptor handle")]
    BadHandle,
    /// An argument is out of range (portal index, offsets, lengths).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The connection carrying the message closed before it completed.
    #[error("connection closed")]
    ConnClosed,
    /// The operation did not complete in time.
    #[error("timed out")]
    TimedOut,
    /// The shard or node is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Proto(String),
    /// A socket error.
    #[error("I/O error: {0}")]
    Io(String),
}

impl LnetError {
    /// The negative errno Lustre reports for this failure.
    #[must_use]
    pub fn errno(&self) -> i32 {
        -match self {
            LnetError::NoRoute(_) | LnetError::Unreachable(_) => libc::EHOSTUNREACH,
            LnetError::DiscoveryFailed(_) => libc::EHOSTUNREACH,
            LnetError::Full(_) => libc::ENOMEM,
            LnetError::BadHandle => libc::ENOENT,
            LnetError::Invalid(_) => libc::EINVAL,
            LnetError::ConnClosed => libc::ECONNABORTED,
            LnetError::TimedOut => libc::ETIMEDOUT,
            LnetError::Shutdown => libc::ESHUTDOWN,
            LnetError::Proto(_) => libc::EPROTO,
            LnetError::Io(_) => libc::EIO,
        }
    }
}

impl From<WireError> for LnetError {
    fn from(e: WireError) -> Self {
        LnetError::Proto(e.to_string())
    }
}

impl From<std::io::Error> for LnetError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::TimedOut {
            LnetError::TimedOut
        } else {
            LnetError::Io(e.to_string())
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, LnetError>;

//! The client's error: an errno, as every operation reports one to its caller.

/// A failed client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Positive errno.
    pub errno: i32,
    /// What was being done.
    pub context: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        write!(f, "{}", std::io::Error::from_raw_os_error(self.errno))
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error with this errno (sign ignored).
    #[must_use]
    pub fn new(errno: i32) -> Error {
        Error { errno: errno.abs(), context: String::new() }
    }
    /// Adds context.
    #[must_use]
    pub fn ctx(mut self, c: impl Into<String>) -> Error {
        if self.context.is_empty() {
            self.context = c.into();
        } else {
            self.context = format!("{}: {}", c.into(), self.context);
        }
        self
    }
}

impl From<ptlrpc::RpcError> for Error {
    fn from(e: ptlrpc::RpcError) -> Error {
        // Keep what the errno cannot say (a decode failure, a timeout) as context.
        let context = match &e {
            ptlrpc::RpcError::Status(_) => String::new(),
            other => other.to_string(),
        };
        Error { errno: e.errno(), context }
    }
}

impl From<proto::WireError> for Error {
    fn from(e: proto::WireError) -> Error {
        Error { errno: libc::EPROTO, context: format!("protocol: {e}") }
    }
}

impl From<lnd::LnetError> for Error {
    fn from(e: lnd::LnetError) -> Error {
        Error::new(e.errno())
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// Turns a negative status into an error.
pub fn check(status: i32) -> Result<()> {
    if status < 0 { Err(Error::new(status)) } else { Ok(()) }
}

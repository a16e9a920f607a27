//! The one error type of the wire layer.

/// Why a run of bytes is not a valid Lustre wire structure.
///
/// Every decoder in this crate returns one of these instead of panicking; `what` names the
/// structure (Lustre's C name) so that a log line points at the layer that refused the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ends before the structure does.
    #[error("{what}: truncated: need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    /// A length or count is larger than the protocol allows or than we accept.
    #[error("{what}: {len} exceeds the limit of {max}")]
    Oversize { what: &'static str, len: usize, max: usize },
    /// An offset or length breaks an alignment rule of the format.
    #[error("{what}: {value} is not a multiple of {align}")]
    Misaligned { what: &'static str, value: usize, align: usize },
    /// A magic number is wrong.
    #[error("{what}: bad magic {got:#x}")]
    BadMagic { what: &'static str, got: u64 },
    /// A version field names a version we do not speak.
    #[error("{what}: unsupported version {got}")]
    BadVersion { what: &'static str, got: u32 },
    /// A field holds a value outside its domain.
    #[error("{what}: bad value {got:#x}")]
    BadValue { what: &'static str, got: u64 },
    /// Fields disagree with each other (a length field with the actual length, say).
    #[error("{what}: {detail}")]
    Inconsistent { what: &'static str, detail: &'static str },
    /// The sender uses the other byte order; Rustre only speaks little-endian bodies.
    #[error("{what}: sender is big-endian (swabbed magic)")]
    Swabbed { what: &'static str },
    /// A string is not valid in its context (an unparsable NID, a name with a NUL, ...).
    #[error("{what}: bad string: {detail}")]
    BadString { what: &'static str, detail: &'static str },
}

/// Result alias for the wire layer.
pub type Result<T> = core::result::Result<T, WireError>;

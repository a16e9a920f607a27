//! The crate's one error type and its one mapping to an errno.

use proto::fid::LuFid;

/// Every failure the OSD and its block devices report.
///
/// Corruption is always an error of its own ([`OsdError::Corrupt`]), never wrong data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsdError {
    /// No object with this FID.
    #[error("object {0} does not exist")]
    NoObject(LuFid),
    /// An object with this FID already exists.
    #[error("object {0} already exists")]
    Exists(LuFid),
    /// Extended attribute not present.
    #[error("no such extended attribute")]
    NoXattr,
    /// Extended attribute already present (create semantics).
    #[error("extended attribute exists")]
    XattrExists,
    /// Index key not present.
    #[error("no such index key")]
    NoKey,
    /// Index key already present.
    #[error("index key exists")]
    KeyExists,
    /// The caller's buffer is too small for the value.
    #[error("buffer too small: need {need} bytes")]
    Range {
        /// Bytes the value needs.
        need: usize,
    },
    /// The operation does not apply to this kind of object (body I/O on an index, etc.).
    #[error("wrong object type for {op} on {fid}")]
    WrongType {
        /// The operation.
        op: &'static str,
        /// The object.
        fid: LuFid,
    },
    /// A name, key or value is longer than the format allows.
    #[error("{what} too long ({len} > {max})")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A bad argument (unaligned device I/O, offset overflow, bad transaction state, ...).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// Out of data blocks, metadata space, journal space or the configured memory budget.
    #[error("no space left: {0}")]
    NoSpace(&'static str),
    /// A device I/O failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// A structure failed its checksum or a consistency check: detected, never returned as data.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// The damaged structure (superblock, checkpoint header, journal block, data block, ...).
        what: &'static str,
        /// Where and how.
        detail: String,
    },
    /// Not an OSD of this format (wrong magic or version).
    #[error("not a Rustre OSD: {0}")]
    BadFormat(String),
    /// The OSD hit an I/O error on its journal or checkpoint and refuses further updates until
    /// it is mounted again (like ext4's errors=remount-ro).
    #[error("OSD is read-only after an earlier error")]
    ReadOnly,
}

/// The crate's result type.
pub type Result<T> = core::result::Result<T, OsdError>;

impl OsdError {
    /// The positive errno for this error: the single place where OSD errors become errnos
    /// (callers negate it for `pb_status`).
    #[must_use]
    pub fn errno(&self) -> i32 {
        match self {
            OsdError::NoObject(_) | OsdError::NoKey => libc::ENOENT,
            OsdError::Exists(_) | OsdError::KeyExists | OsdError::XattrExists => libc::EEXIST,
            OsdError::NoXattr => libc::ENODATA,
            OsdError::Range { .. } => libc::ERANGE,
            OsdError::WrongType { .. } => libc::ENOTDIR,
            OsdError::TooLong { what, .. } => {
                if what.contains("name") {
                    libc::ENAMETOOLONG
                } else {
                    libc::E2BIG
                }
            }
            OsdError::Invalid(_) => libc::EINVAL,
            OsdError::NoSpace(_) => libc::ENOSPC,
            OsdError::Io(_) | OsdError::Corrupt { .. } => libc::EIO,
            OsdError::BadFormat(_) => libc::EINVAL,
            OsdError::ReadOnly => libc::EROFS,
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> OsdError {
        OsdError::Corrupt { what, detail: detail.into() }
    }
}

impl From<std::io::Error> for OsdError {
    fn from(e: std::io::Error) -> OsdError {
        OsdError::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(OsdError::NoObject(LuFid::ROOT).errno(), libc::ENOENT);
        assert_eq!(OsdError::NoXattr.errno(), libc::ENODATA);
        assert_eq!(OsdError::corrupt("data block", "x").errno(), libc::EIO);
        assert_eq!(OsdError::NoSpace("data").errno(), libc::ENOSPC);
        assert_eq!(
            OsdError::TooLong { what: "xattr name", len: 300, max: 255 }.errno(),
            libc::ENAMETOOLONG
        );
        assert_eq!(OsdError::ReadOnly.errno(), libc::EROFS);
    }
}

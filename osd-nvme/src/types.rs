//! Values that cross the OSD API: attributes, object formats, statfs, index pages.

/// OSD block size: the unit of allocation, checksums and device I/O.
pub const BLOCK_SIZE: usize = 4096;
/// [`BLOCK_SIZE`] as a u64, for offset arithmetic.
pub const BLOCK: u64 = 4096;
/// Longest xattr name (Linux `XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest xattr value (Linux `XATTR_SIZE_MAX`): layouts and ACLs fit.
pub const XATTR_SIZE_MAX: usize = 65536;
/// Longest directory entry name (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest generic index key. Keys are small (FIDs, quota ids, names); the bound keeps
/// journal records and checkpoint records small.
pub const INDEX_KEY_MAX: usize = 512;
/// Largest index value (a directory entry's `lu_dirent` or a service table record).
pub const INDEX_VALUE_MAX: usize = 4096;
/// Largest object size: 2^44 bytes (16 TiB), far beyond a shard's region, and small enough
/// that block numbers never overflow.
pub const MAX_OBJECT_BYTES: u64 = 1 << 44;

/// File type bits in `mode` (the POSIX `S_IFMT` values, which Lustre carries on the wire).
pub mod mode {
    /// Type mask.
    pub const S_IFMT: u32 = 0o170_000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140_000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120_000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100_000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060_000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040_000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020_000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010_000;
}

/// A time with nanoseconds (Lustre's 64-bit seconds + 32-bit nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, below 1e9.
    pub nsec: u32,
}

/// What an object is: its type, and for index objects what kind of index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjType {
    /// A regular object: a flat body (files, OST objects, llogs, last_rcvd).
    Regular,
    /// A directory: an index keyed by name, iterated in name-hash order.
    Dir,
    /// A generic index: ordered by key bytes (object index, service tables, quota).
    Index,
    /// A symbolic link (target in the body).
    Symlink,
    /// A character device node (`rdev`).
    CharDev,
    /// A block device node (`rdev`).
    BlockDev,
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
}

impl ObjType {
    /// The `S_IFMT` bits of this type.
    #[must_use]
    pub fn ifmt(self) -> u32 {
        match self {
            ObjType::Regular | ObjType::Index => mode::S_IFREG,
            ObjType::Dir => mode::S_IFDIR,
            ObjType::Symlink => mode::S_IFLNK,
            ObjType::CharDev => mode::S_IFCHR,
            ObjType::BlockDev => mode::S_IFBLK,
            ObjType::Fifo => mode::S_IFIFO,
            ObjType::Socket => mode::S_IFSOCK,
        }
    }
    /// Whether the object is an index (key/value) rather than a body.
    #[must_use]
    pub fn is_index(self) -> bool {
        matches!(self, ObjType::Dir | ObjType::Index)
    }
    pub(crate) fn code(self) -> u8 {
        match self {
            ObjType::Regular => 1,
            ObjType::Dir => 2,
            ObjType::Index => 3,
            ObjType::Symlink => 4,
            ObjType::CharDev => 5,
            ObjType::BlockDev => 6,
            ObjType::Fifo => 7,
            ObjType::Socket => 8,
        }
    }
    pub(crate) fn from_code(c: u8) -> Option<ObjType> {
        Some(match c {
            1 => ObjType::Regular,
            2 => ObjType::Dir,
            3 => ObjType::Index,
            4 => ObjType::Symlink,
            5 => ObjType::CharDev,
            6 => ObjType::BlockDev,
            7 => ObjType::Fifo,
            8 => ObjType::Socket,
            _ => return None,
        })
    }
}

/// An object's attributes (Lustre's `lu_attr`). The OSD never changes them on its own except
/// `size` (a write past the end extends it) and `blocks` (allocation, in 512-byte units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attr {
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated space in 512-byte units (read-only: managed by the OSD).
    pub blocks: u64,
    /// Access time.
    pub atime: Timespec,
    /// Modification time.
    pub mtime: Timespec,
    /// Change time.
    pub ctime: Timespec,
    /// Link count.
    pub nlink: u32,
    /// Inode flags (`LUSTRE_*_FL`).
    pub flags: u32,
    /// Project id.
    pub projid: u32,
    /// Device number of device nodes.
    pub rdev: u64,
}

/// Which attributes `attr_set` changes (Lustre's `la_valid` bits, our own numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AttrMask(pub u32);

impl AttrMask {
    /// `mode` permission bits (the type bits never change).
    pub const MODE: AttrMask = AttrMask(1);
    /// `uid`.
    pub const UID: AttrMask = AttrMask(1 << 1);
    /// `gid`.
    pub const GID: AttrMask = AttrMask(1 << 2);
    /// `size` (an attribute only: use punch to free blocks).
    pub const SIZE: AttrMask = AttrMask(1 << 3);
    /// `atime`.
    pub const ATIME: AttrMask = AttrMask(1 << 4);
    /// `mtime`.
    pub const MTIME: AttrMask = AttrMask(1 << 5);
    /// `ctime`.
    pub const CTIME: AttrMask = AttrMask(1 << 6);
    /// `nlink`.
    pub const NLINK: AttrMask = AttrMask(1 << 7);
    /// `flags`.
    pub const FLAGS: AttrMask = AttrMask(1 << 8);
    /// `projid`.
    pub const PROJID: AttrMask = AttrMask(1 << 9);
    /// `rdev`.
    pub const RDEV: AttrMask = AttrMask(1 << 10);
    /// Every settable attribute.
    pub const ALL: AttrMask = AttrMask((1 << 11) - 1);

    /// Whether every bit of `other` is set.
    #[must_use]
    pub fn contains(self, other: AttrMask) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for AttrMask {
    type Output = AttrMask;
    fn bitor(self, rhs: AttrMask) -> AttrMask {
        AttrMask(self.0 | rhs.0)
    }
}

/// How `xattr_set` treats an existing value (Lustre's `LU_XATTR_CREATE`/`LU_XATTR_REPLACE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XattrMode {
    /// Create or replace.
    #[default]
    Upsert,
    /// Fail with EEXIST if present.
    Create,
    /// Fail with ENODATA if absent.
    Replace,
}

/// File system usage (Lustre's `obd_statfs` essentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatFs {
    /// Data blocks in the shard.
    pub blocks: u64,
    /// Free data blocks.
    pub bfree: u64,
    /// Free data blocks not reserved by running transactions.
    pub bavail: u64,
    /// Objects the metadata budget holds.
    pub files: u64,
    /// Objects that can still be created.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Largest object.
    pub maxbytes: u64,
}

/// One entry of an index page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The entry's stable 64-bit cookie: the name hash for directories, the first eight key
    /// bytes (big-endian, zero-padded) for generic indexes. Cookies never decrease along the
    /// iteration order; entries that share a cookie are returned in the same page.
    pub cookie: u64,
    /// The key (the name for a directory).
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// A page of index entries from [`crate::Osd::index_iter`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexPage {
    /// Entries with cookie >= the requested one, in iteration order.
    pub entries: Vec<IndexEntry>,
    /// The cookie to continue from, or `None` when the index is exhausted.
    pub next: Option<u64>,
}

/// Largest directory hash cookie: cookies stay below 2^63 because Lustre reserves the top of
/// the 64-bit range for end-of-directory markers.
pub const DIR_HASH_MAX: u64 = (1 << 63) - 1;

/// The directory hash of a name: FNV-1a 64, folded to 63 bits, never 0 (0 means "from the
/// start"). Stable forever: it is part of the on-disk format and of readdir cookies that
/// clients hold.
#[must_use]
pub fn dir_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let h = (h >> 1) ^ (h & 1);
    h.max(1) & DIR_HASH_MAX
}

/// The cookie of a generic index key: its first eight bytes, big-endian, zero-padded. Keys in
/// byte order have non-decreasing cookies.
#[must_use]
pub fn key_cookie(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_monotone_in_key_order() {
        let mut keys: Vec<Vec<u8>> =
            vec![b"".to_vec(), b"a".to_vec(), b"a\0".to_vec(), b"ab".to_vec(), vec![0xff; 9]];
        keys.sort();
        let c: Vec<u64> = keys.iter().map(|k| key_cookie(k)).collect();
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn dir_hash_range() {
        for n in [&b""[..], b".", b"..", b"file", &[0xff; 255]] {
            let h = dir_hash(n);
            assert!((1..=DIR_HASH_MAX).contains(&h));
        }
        assert_eq!(dir_hash(b"abc"), dir_hash(b"abc"));
        assert_ne!(dir_hash(b"abc"), dir_hash(b"abd"));
    }

    #[test]
    fn obj_type_codes_round_trip() {
        for t in [
            ObjType::Regular,
            ObjType::Dir,
            ObjType::Index,
            ObjType::Symlink,
            ObjType::CharDev,
            ObjType::BlockDev,
            ObjType::Fifo,
            ObjType::Socket,
        ] {
            assert_eq!(ObjType::from_code(t.code()), Some(t));
        }
        assert_eq!(ObjType::from_code(0), None);
    }
}

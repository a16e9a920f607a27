//! A reproducible `newc` cpio writer (the format the kernel unpacks an initramfs from).
//!
//! Entries are sorted by path, owned by root, stamped with one fixed mtime and numbered from 1,
//! so the same inputs give the same bytes. Device nodes are written without needing root.

use std::collections::BTreeMap;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir,
    /// A regular file with its permission bits.
    File { mode: u32, data: Vec<u8> },
    /// A symbolic link to a target.
    Symlink(String),
    /// A character device node (major, minor).
    CharDev(u32, u32),
}

/// An archive being assembled: path (no leading `/`) to entry.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    /// An empty archive.
    #[must_use]
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds an entry and every missing parent directory.
    pub fn add(&mut self, path: &str, e: Entry) {
        let path = path.trim_start_matches('/').to_string();
        let mut parent = String::new();
        for comp in path.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir);
        }
        self.entries.insert(path, e);
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The archive bytes, every entry stamped with `mtime`.
    #[must_use]
    pub fn encode(&self, mtime: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, e)) in (1u32..).zip(&self.entries) {
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match e {
                Entry::Dir => (0o040_755, &[], (0, 0)),
                Entry::File { mode, data } => (0o100_000 | (mode & 0o7777), data, (0, 0)),
                Entry::Symlink(t) => (0o120_777, t.as_bytes(), (0, 0)),
                Entry::CharDev(ma, mi) => (0o020_600, &[], (*ma, *mi)),
            };
            let nlink = if matches!(e, Entry::Dir) { 2 } else { 1 };
            header(&mut out, ino, mode, nlink, mtime, data.len(), rdev, path);
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        header(&mut out, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!");
        // The kernel reads archives in 512-byte blocks; pad like cpio(1) does.
        while !out.len().is_multiple_of(512) {
            out.push(0);
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: usize,
    rdev: (u32, u32),
    name: &str,
) {
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    let fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev.0, rdev.1, namesize, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_parents_and_padding() {
        let mut a = Archive::new();
        a.add("/sbin/x", Entry::File { mode: 0o755, data: b"hi".to_vec() });
        a.add("dev/console", Entry::CharDev(5, 1));
        let b = a.encode(7);
        assert_eq!(a.len(), 4);
        assert_eq!(b.len() % 512, 0);
        let text = String::from_utf8_lossy(&b);
        let dev = text.find("dev\0").unwrap();
        let sbin = text.find("sbin\0").unwrap();
        assert!(dev < text.find("dev/console").unwrap());
        assert!(sbin < text.find("sbin/x").unwrap());
        assert!(text.contains("TRAILER!!!"));
        assert_eq!(a.encode(7), b, "same inputs, same bytes");
    }
}

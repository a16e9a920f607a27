//! The FUSE mount end to end, as root: `rlfs mount` processes on real mount points of the
//! embedded file system. Two mounts in two processes see each other's writes, renames and
//! appends; pjdfstest (POSIX conformance) runs against a mount; with the server gone,
//! operations fail instead of hanging and the mount still comes off.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test: a failure is a test failure")]

mod common;

use common::mount::{Mount, can_mount, rlfs, rlfs_bin};
use common::{Server, TempDir, free_port};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn two_mounts_in_two_processes_see_each_other() {
    if !can_mount() {
        return;
    }
    let dir = TempDir::new("fuse2");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let a = Mount::new(port, &dir.path().join("a"), "");
    let b = Mount::new(port, &dir.path().join("b"), "");

    // Write on one, read on the other; overwrite there, read back here.
    std::fs::write(a.path("f"), b"written on A\n").unwrap();
    assert_eq!(std::fs::read(b.path("f")).unwrap(), b"written on A\n");
    std::fs::write(b.path("f"), b"then on B\n").unwrap();
    assert_eq!(std::fs::read(a.path("f")).unwrap(), b"then on B\n");
    assert_eq!(std::fs::metadata(a.path("f")).unwrap().len(), 10);

    // Rename on one, stat on the other: the old name is gone, the new one is the same file.
    let ino = std::fs::metadata(b.path("f")).unwrap().ino();
    std::fs::create_dir(a.path("d")).unwrap();
    std::fs::rename(a.path("f"), a.path("d/g")).unwrap();
    let e = std::fs::metadata(b.path("f")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(std::fs::metadata(b.path("d/g")).unwrap().ino(), ino);
    let names: Vec<String> = std::fs::read_dir(b.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["g"]);

    drop((a, b));
    drop(srv);
}

#[test]
fn appends_from_two_mounts_are_neither_lost_nor_torn() {
    if !can_mount() {
        return;
    }
    let dir = TempDir::new("fuseapp");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let a = Mount::new(port, &dir.path().join("a"), "");
    let b = Mount::new(port, &dir.path().join("b"), "");
    // Appends from both mounts at once: every record lands whole, none is lost.
    const RECORDS: usize = 60;
    const LEN: usize = 64;
    std::fs::write(a.path("log"), b"").unwrap();
    let writers: Vec<_> = [(a.path("log"), 'A'), (b.path("log"), 'B')]
        .into_iter()
        .map(|(p, tag)| {
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                for i in 0..RECORDS {
                    let mut rec = format!("{tag}:{i:04}:").into_bytes();
                    rec.resize(LEN - 1, tag as u8);
                    rec.push(b'\n');
                    // One write(2) per record: O_APPEND makes each one atomic.
                    assert_eq!(f.write(&rec).unwrap(), LEN);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut text = Vec::new();
    std::fs::File::open(b.path("log")).unwrap().read_to_end(&mut text).unwrap();
    assert_eq!(text.len(), 2 * RECORDS * LEN, "lost appends");
    let mut seen = std::collections::HashSet::new();
    for rec in text.chunks(LEN) {
        let s = std::str::from_utf8(rec).unwrap();
        let tag = s.chars().next().unwrap();
        assert!(tag == 'A' || tag == 'B', "torn record {s:?}");
        let want_tail: String = std::iter::repeat_n(tag, LEN - 8).collect();
        assert_eq!(&s[7..LEN - 1], want_tail, "torn record {s:?}");
        assert!(seen.insert(s[..6].to_string()), "record twice: {s:?}");
    }
    assert_eq!(seen.len(), 2 * RECORDS);
    drop((a, b));
    drop(srv);
}

/// pjdfstest's failures this mount is known to have (docs/posix.md says why and what would
/// fix each).
const KNOWN_FAILURES: &[&str] = &["utimensat::subsecond"];

fn pjdfstest_bin() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/pjdfstest"));
    let in_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("pjdfstest")).find(|p| p.exists()));
    in_path.or(home.filter(|p| p.exists()))
}

#[test]
fn pjdfstest_on_a_mount() {
    if !can_mount() {
        return;
    }
    let Some(pjd) = pjdfstest_bin() else {
        assert!(
            std::env::var_os("RUSTRE_REQUIRE_PJDFSTEST").is_none(),
            "pjdfstest is not installed (cargo install pjdfstest)"
        );
        eprintln!("skipped: pjdfstest is not installed");
        return;
    };
    let dir = TempDir::new("pjdfstest");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    // A short mount point: the socket tests bind names under it, and a socket's path must
    // fit sun_path (108 bytes).
    let short = std::env::temp_dir().join(format!("pj{port}"));
    let m = Mount::new(port, &short, "allow_other");
    let work = m.path("p");
    std::fs::create_dir(&work).unwrap();
    // pjdfstest switches to these users (Debian has both); timestamps have one-second
    // granularity on the wire, so its naps must be longer than a second.
    let conf = dir.path().join("pjdfstest.toml");
    std::fs::write(
        &conf,
        "[features]\nutime_now = {}\nutimensat = {}\nrename_ctime = {}\n\n\
         [settings]\nnaptime = 1.1\nallow_remount = false\n\n\
         [dummy_auth]\nentries = [[\"nobody\", \"nogroup\"], [\"daemon\", \"daemon\"]]\n",
    )
    .unwrap();
    let t = Instant::now();
    let o = Command::new(pjd).arg("-c").arg(&conf).arg("-p").arg(&work).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let summary = out
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| {
            panic!(
                "no pjdfstest summary:\n{out}\n{}\n{}",
                String::from_utf8_lossy(&o.stderr),
                m.log_text()
            )
        })
        .to_string();
    let failed: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_end().ends_with("FAILED"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let report = format!(
        "pjdfstest on a FUSE mount ({} s): {summary}\nfailed: {failed:?}\n",
        t.elapsed().as_secs()
    );
    eprint!("{report}");
    let record = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pjdfstest-summary.txt");
    std::fs::write(&record, &report).unwrap();
    let unexpected: Vec<&&str> = failed.iter().filter(|f| !KNOWN_FAILURES.contains(f)).collect();
    assert!(
        unexpected.is_empty(),
        "pjdfstest failures not in docs/posix.md: {unexpected:?}\n{out}"
    );
    drop(m);
    let _ = std::fs::remove_dir(&short);
    drop(srv);
}

#[test]
fn server_gone_operations_fail_and_umount_works() {
    if !can_mount() {
        return;
    }
    let dir = TempDir::new("fusegone");
    let port = free_port();
    let mut srv = Server::all_in_one(dir.path(), port);
    let m = Mount::new(port, &dir.path().join("mnt"), "op_timeout=4,timeout=2");
    std::fs::write(m.path("x"), b"x").unwrap();
    srv.kill();
    let t = Instant::now();
    let p = m.path("never-seen");
    let e = std::thread::spawn(move || std::fs::metadata(p)).join().unwrap().unwrap_err();
    let errno = e.raw_os_error().unwrap_or(0);
    assert!(
        errno == libc::EIO || errno == libc::ETIMEDOUT,
        "stat with the server gone: {e} (want EIO or ETIMEDOUT)"
    );
    assert!(t.elapsed() < Duration::from_secs(60), "took {:?}", t.elapsed());
    // When the server is back, the mount works again (the client reconnects and recovers).
    srv.restart();
    let t = Instant::now();
    loop {
        match std::fs::read(m.path("x")) {
            Ok(d) => {
                assert_eq!(d, b"x");
                break;
            }
            Err(e) => {
                assert!(t.elapsed() < Duration::from_secs(90), "no resume: {e}\n{}", m.log_text());
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    std::fs::write(m.path("y"), b"after").unwrap();
    assert_eq!(std::fs::read(m.path("y")).unwrap(), b"after");
    let st = Command::new(rlfs_bin()).arg("umount").arg(&m.dir).status().unwrap();
    assert!(st.success());
    drop(m);
}

#[test]
fn posix_surface_through_the_mount() {
    if !can_mount() {
        return;
    }
    let dir = TempDir::new("fuseops");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let m = Mount::new(port, &dir.path().join("mnt"), "");
    // xattrs, symlinks, hard links, modes, truncate, RENAME_NOREPLACE, statfs.
    std::fs::write(m.path("f"), b"0123456789").unwrap();
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let fpath = c(&m.path("f"));
    // SAFETY: valid NUL-terminated path and name, value buffer of the given length.
    let rc =
        unsafe { libc::setxattr(fpath.as_ptr(), c"user.k".as_ptr(), b"v1".as_ptr().cast(), 2, 0) };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
    let mut buf = [0u8; 16];
    // SAFETY: as above, with a writable buffer of its length.
    let n = unsafe {
        libc::getxattr(fpath.as_ptr(), c"user.k".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    };
    assert_eq!(n, 2);
    assert_eq!(&buf[..2], b"v1");
    std::os::unix::fs::symlink("f", m.path("s")).unwrap();
    assert_eq!(std::fs::read_link(m.path("s")).unwrap(), Path::new("f"));
    std::fs::hard_link(m.path("f"), m.path("h")).unwrap();
    assert_eq!(std::fs::metadata(m.path("f")).unwrap().nlink(), 2);
    std::fs::set_permissions(m.path("f"), std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .unwrap();
    assert_eq!(std::fs::metadata(m.path("h")).unwrap().mode() & 0o7777, 0o640);
    let f = std::fs::OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.set_len(4).unwrap();
    drop(f);
    assert_eq!(std::fs::read(m.path("h")).unwrap(), b"0123");
    std::fs::write(m.path("g"), b"g").unwrap();
    let (pf, pg) = (c(&m.path("f")), c(&m.path("g")));
    // SAFETY: valid NUL-terminated paths; AT_FDCWD with absolute paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            pg.as_ptr(),
            libc::AT_FDCWD,
            pf.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EEXIST));
    let o = Command::new("df").arg(&m.dir).output().unwrap();
    assert!(o.status.success(), "df: {}", String::from_utf8_lossy(&o.stderr));
    // Reads and writes larger than a FUSE request, at odd offsets.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .custom_flags(0)
        .open(m.path("big"))
        .unwrap();
    f.write_all(&data).unwrap();
    drop(f);
    assert_eq!(std::fs::read(m.path("big")).unwrap(), data);
    // lfs commands on paths inside the mount.
    let rlfs = |args: &[&str]| rlfs(port, args);
    let striped = m.path("striped");
    rlfs(&["setstripe", "-c", "2", striped.to_str().unwrap()]);
    std::fs::write(&striped, vec![7u8; 3 << 20]).unwrap();
    let out = rlfs(&["getstripe", "-c", striped.to_str().unwrap()]);
    assert_eq!(out.trim(), "2");
    let fid = rlfs(&["path2fid", m.path("big").to_str().unwrap()]);
    assert!(fid.starts_with("[0x"), "{fid}");
    let out = rlfs(&["df", m.dir.to_str().unwrap()]);
    assert!(out.contains("OST:1"), "{out}");
    // A directory larger than one getdents buffer lists every name once.
    std::fs::create_dir(m.path("many")).unwrap();
    for i in 0..600 {
        std::fs::File::create(m.path(&format!("many/file-with-a-longish-name-{i:05}"))).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(m.path("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 600);
    drop(m);
    drop(srv);
}

/// The kernel keeps names and directory attributes while the client's locks protect them, and
/// drops them when the locks go: the other mount sees every change at once. `ls -l` (which
/// the kernel serves with READDIRPLUS) reports what `stat` does.
#[test]
fn kernel_caches_follow_locks_and_listings_carry_attributes() {
    if !can_mount() {
        return;
    }
    let dir = TempDir::new("fusecache");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let a = Mount::new(port, &dir.path().join("a"), "");
    let b = Mount::new(port, &dir.path().join("b"), "");
    let mode = |p: PathBuf| std::fs::symlink_metadata(p).map(|m| m.mode() & 0o7777);
    for round in 0..3 {
        let d = format!("d{round}");
        std::fs::create_dir_all(a.path(&format!("{d}/sub"))).unwrap();
        // b looks (and caches), a changes, b sees the change.
        assert_eq!(mode(b.path(&format!("{d}/sub"))).unwrap(), 0o755);
        std::fs::set_permissions(a.path(&format!("{d}/sub")), PermissionsExt::from_mode(0o700))
            .unwrap();
        assert_eq!(mode(b.path(&format!("{d}/sub"))).unwrap(), 0o700);
        std::fs::rename(a.path(&format!("{d}/sub")), a.path(&format!("{d}/moved"))).unwrap();
        assert!(b.path(&format!("{d}/sub")).symlink_metadata().is_err(), "stale name in b");
        assert_eq!(mode(b.path(&format!("{d}/moved"))).unwrap(), 0o700);
        // A directory's link count follows subdirectories made elsewhere.
        let nlink = |m: &Mount| std::fs::metadata(m.path(&d)).unwrap().nlink();
        assert_eq!(nlink(&b), 3);
        std::fs::create_dir(b.path(&format!("{d}/another"))).unwrap();
        assert_eq!(nlink(&a), 4);
        std::os::unix::fs::symlink("moved", b.path(&format!("{d}/link"))).unwrap();
        assert_eq!(std::fs::read_link(a.path(&format!("{d}/link"))).unwrap(), Path::new("moved"));
        std::fs::remove_file(a.path(&format!("{d}/link"))).unwrap();
        assert!(b.path(&format!("{d}/link")).symlink_metadata().is_err());
        std::fs::remove_dir(b.path(&format!("{d}/moved"))).unwrap();
        assert!(a.path(&format!("{d}/moved")).symlink_metadata().is_err());
    }
    // A listing with attributes over more entries than one READDIRPLUS carries.
    std::fs::create_dir(a.path("big")).unwrap();
    for i in 0..150u32 {
        let p = a.path(&format!("big/f{i:03}"));
        std::fs::write(&p, vec![b'x'; i as usize * 7]).unwrap();
        if i % 10 == 0 {
            std::fs::create_dir(a.path(&format!("big/d{i:03}"))).unwrap();
        }
    }
    let out = Command::new("ls").args(["-lani", "--time-style=+%s"]).arg(b.path("big")).output();
    let out = out.unwrap();
    assert!(out.status.success(), "ls: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut seen = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let name = f[f.len() - 1];
        if name == "." || name == ".." {
            continue;
        }
        let md = std::fs::symlink_metadata(b.path(&format!("big/{name}"))).unwrap();
        assert_eq!(f[0].parse::<u64>().unwrap(), md.ino(), "{line}");
        assert_eq!(f[5].parse::<u64>().unwrap(), md.len(), "{line}");
        assert_eq!(f[3].parse::<u32>().unwrap(), md.uid(), "{line}");
        seen += 1;
    }
    assert_eq!(seen, 165, "{text}");
    // A mapping on b shows a's later write: taking b's extent lock drops b's mapped pages.
    std::fs::write(a.path("shared"), vec![1u8; 8192]).unwrap();
    let f = std::fs::File::open(b.path("shared")).unwrap();
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        // SAFETY: a read-only shared mapping of 8192 bytes of an open file of that size,
        // read within its length and unmapped below.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
            let s = std::slice::from_raw_parts(p.cast::<u8>(), 8192);
            assert!(s.iter().all(|&x| x == 1));
            let w = std::fs::OpenOptions::new().write(true).open(a.path("shared")).unwrap();
            w.write_all_at(&[2u8; 8192], 0).unwrap();
            drop(w);
            // The kernel is told asynchronously; it must happen, not hang.
            let t = Instant::now();
            while !(std::ptr::read_volatile(&s[0]) == 2 && std::ptr::read_volatile(&s[8191]) == 2) {
                assert!(t.elapsed() < Duration::from_secs(30), "mapped pages never dropped");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(libc::munmap(p, 8192), 0);
        }
    }
    drop(f);
    drop((a, b));
    drop(srv);
}

/// mmap goes through the kernel's page cache, O_DIRECT straight to the client; the layout
/// xattr reads, copies and lists as on a Lustre client.
#[test]
fn mmap_direct_io_and_the_layout_xattr() {
    if !can_mount() {
        return;
    }
    let dir = TempDir::new("fusemmap");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let m = Mount::new(port, &dir.path().join("mnt"), "");
    // Shared writable mapping: stores reach the file, a read sees them.
    let len = 3 * 65536 + 100;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("mapped"))
        .unwrap();
    f.set_len(len as u64).unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared mapping of `len` bytes of an open file, unmapped below and
        // used only within its length.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
            let s = std::slice::from_raw_parts_mut(p.cast::<u8>(), len);
            for (i, b) in s.iter_mut().enumerate() {
                *b = (i % 253) as u8;
            }
            assert_eq!(libc::msync(p, len, libc::MS_SYNC), 0);
            assert_eq!(libc::munmap(p, len), 0);
        }
    }
    drop(f);
    let want: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    assert!(std::fs::read(m.path("mapped")).unwrap() == want, "mmap stores not in the file");
    // O_DIRECT: aligned 1 MiB write, then aligned reads at an offset.
    let layout = std::alloc::Layout::from_size_align(1 << 20, 4096).unwrap();
    // SAFETY: a non-zero size with a valid alignment; freed below with the same layout.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!buf.is_null());
    // SAFETY: `buf` is valid for `layout.size()` bytes until it is freed below.
    let data = unsafe { std::slice::from_raw_parts_mut(buf, layout.size()) };
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i % 241) as u8;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(m.path("direct"))
        .unwrap();
    f.write_all(data).unwrap();
    let expect: Vec<u8> = data[8192..8192 + 65536].to_vec();
    data.fill(0);
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(8192)).unwrap();
    f.read_exact(&mut data[..65536]).unwrap();
    assert!(data[..65536] == expect[..], "O_DIRECT read back");
    drop(f);
    // SAFETY: allocated above with this layout, not used after.
    unsafe { std::alloc::dealloc(buf, layout) };
    assert_eq!(std::fs::metadata(m.path("direct")).unwrap().len(), 1 << 20);
    // lustre.lov: a layout V1 with the stripe offset left to the MDT; listed; copied onto a
    // file without objects; set in vain on one that has them; trusted.lma ignored.
    let rlfs = |args: &[&str]| rlfs(port, args);
    let striped = m.path("striped");
    rlfs(&["setstripe", "-c", "2", "-S", "2M", striped.to_str().unwrap()]);
    let lov = xattr_get(&striped, "lustre.lov").unwrap();
    assert_eq!(&lov[..4], &0x0BD1_0BD0u32.to_le_bytes());
    assert_eq!(u32::from_le_bytes(lov[24..28].try_into().unwrap()), 2 << 20);
    assert_eq!(u16::from_le_bytes(lov[28..30].try_into().unwrap()), 2);
    assert_eq!(u16::from_le_bytes(lov[30..32].try_into().unwrap()), 0xffff);
    assert!(xattr_list(&striped).contains(&"lustre.lov".to_string()));
    let copy = m.path("copy");
    nix::sys::stat::mknod(
        &copy,
        nix::sys::stat::SFlag::S_IFREG,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap();
    xattr_set(&copy, "lustre.lov", &lov).unwrap();
    assert_eq!(rlfs(&["getstripe", "-c", copy.to_str().unwrap()]).trim(), "2");
    assert_eq!(rlfs(&["getstripe", "-S", copy.to_str().unwrap()]).trim(), "2097152");
    xattr_set(&m.path("mapped"), "lustre.lov", &lov).unwrap();
    assert_eq!(rlfs(&["getstripe", "-c", m.path("mapped").to_str().unwrap()]).trim(), "1");
    xattr_set(&copy, "trusted.lma", b"whatever").unwrap();
    // A directory without a default layout has none to show.
    std::fs::create_dir(m.path("plain")).unwrap();
    assert_eq!(xattr_get(&m.path("plain"), "lustre.lov").unwrap_err(), libc::ENODATA);
    drop(m);
    drop(srv);
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// getxattr(2): the value, or the errno.
fn xattr_get(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let (cp, cn) = (cpath(p), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 65536];
    // SAFETY: NUL-terminated path and name, a writable buffer of the given length.
    let n = unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(n.cast_unsigned());
    Ok(buf)
}

/// setxattr(2).
fn xattr_set(p: &Path, name: &str, v: &[u8]) -> Result<(), i32> {
    let (cp, cn) = (cpath(p), std::ffi::CString::new(name).unwrap());
    // SAFETY: NUL-terminated path and name, a value buffer of the given length.
    let rc = unsafe { libc::setxattr(cp.as_ptr(), cn.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) }
}

/// listxattr(2): the names.
fn xattr_list(p: &Path) -> Vec<String> {
    let cp = cpath(p);
    let mut buf = vec![0u8; 65536];
    // SAFETY: a NUL-terminated path and a writable buffer of the given length.
    let n = unsafe { libc::listxattr(cp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(n.cast_unsigned());
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

//! POSIX ACLs end to end, as root: `rlfs mount` processes on real mount points, `setfacl` and
//! `getfacl` (Debian's `acl`), and operations run as other users with `setpriv`. The MDT stores
//! the ACLs, checks them, mixes default ACLs into new objects and rewrites them on chmod; the
//! mount's access(2) answers from them too.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test: a failure is a test failure")]

mod common;

use common::mount::{Mount, can_mount};
use common::{Server, TempDir, free_port};
use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

/// Mounts as root, /dev/fuse, and the acl tools (ci/setup installs them).
fn can_run() -> bool {
    if !can_mount() {
        return false;
    }
    let tools = Command::new("setfacl").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        tools || std::env::var_os("RUSTRE_REQUIRE_FUSE").is_none(),
        "ACL tests need setfacl (apt-get install acl)"
    );
    if !tools {
        eprintln!("skipped: ACL tests need setfacl");
    }
    tools
}

const NOBODY: u32 = 65534;

fn run(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

/// Runs a command that must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `sh -c script` as uid `uid`, gid `gid`, no supplementary groups; whether it succeeded.
fn as_user(uid: u32, gid: u32, script: &str) -> bool {
    let o = Command::new("setpriv")
        .args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups"])
        .args(["sh", "-c", script])
        .output()
        .unwrap();
    o.status.success()
}

fn nobody(script: &str) -> bool {
    as_user(NOBODY, NOBODY, script)
}

/// `getfacl` of a path: its entries, numeric ids, no header.
fn getfacl(p: &str) -> Vec<String> {
    ok(&["getfacl", "-n", "--omit-header", p])
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('\t', " "))
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn setxattr(p: &Path, name: &str, v: &[u8]) -> std::io::Result<()> {
    let path = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated path and name, value buffer of the given length.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn getxattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let path = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: valid NUL-terminated path and name, a writable buffer of its length.
    let n =
        unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    buf.truncate(n);
    Ok(buf)
}

/// A `posix_acl_xattr` blob from (tag, perm, id) entries.
fn blob(version: u32, entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = version.to_le_bytes().to_vec();
    for &(t, p, i) in entries {
        v.extend_from_slice(&t.to_le_bytes());
        v.extend_from_slice(&p.to_le_bytes());
        v.extend_from_slice(&i.to_le_bytes());
    }
    v
}

#[test]
fn named_entries_and_the_mask_decide_access() {
    if !can_run() {
        return;
    }
    let dir = TempDir::new("acl");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let m = Mount::new(port, &dir.path().join("mnt"), "allow_other");
    let f = m.p("f");
    std::fs::write(&f, b"secret\n").unwrap();
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o600)).unwrap();
    assert!(!nobody(&format!("cat {f}")), "mode 0600 lets nobody read");
    assert!(!nobody(&format!("test -r {f}")));

    // A named user entry grants what the mode denies; the mode's group bits show the mask.
    ok(&["setfacl", "-m", &format!("u:{NOBODY}:r"), &f]);
    assert_eq!(
        getfacl(&f),
        ["user::rw-", "user:65534:r--", "group::---", "mask::r--", "other::---"]
    );
    assert_eq!(mode(&m.path("f")), 0o640);
    assert!(nobody(&format!("cat {f} >/dev/null")), "the ACL grants nobody read");
    assert!(nobody(&format!("test -r {f}")), "access(2) through the mount honours the ACL");
    assert!(!nobody(&format!("echo x >> {f}")), "nor write");
    assert!(!nobody(&format!("test -w {f}")));
    // Another user still gets other's nothing.
    assert!(!as_user(4321, 4321, &format!("cat {f}")));

    // The mask limits named entries.
    ok(&["setfacl", "-m", &format!("u:{NOBODY}:rw,m::r"), &f]);
    assert!(
        getfacl(&f).contains(&"user:65534:rw- #effective:r--".to_string()),
        "{:?}",
        getfacl(&f)
    );
    assert!(!nobody(&format!("echo x >> {f}")), "the mask takes write away");
    assert!(!nobody(&format!("test -w {f}")));
    ok(&["setfacl", "-m", "m::rw", &f]);
    assert!(nobody(&format!("echo x >> {f}")), "the mask lets write through");
    assert!(nobody(&format!("test -w {f}")));

    // chmod rewrites the mask (the group bits), as getfacl shows.
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o600)).unwrap();
    assert!(getfacl(&f).contains(&"mask::---".to_string()), "{:?}", getfacl(&f));
    assert!(!nobody(&format!("cat {f}")), "chmod g= masks the named user out");
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o640)).unwrap();
    assert!(getfacl(&f).contains(&"mask::r--".to_string()), "{:?}", getfacl(&f));
    assert!(nobody(&format!("cat {f} >/dev/null")));

    // A named group, through the caller's fsgid.
    let g = m.p("g");
    std::fs::write(&g, b"g\n").unwrap();
    std::fs::set_permissions(&g, PermissionsExt::from_mode(0o600)).unwrap();
    assert!(!as_user(4321, NOBODY, &format!("cat {g}")));
    ok(&["setfacl", "-m", &format!("g:{NOBODY}:r"), &g]);
    assert!(as_user(4321, NOBODY, &format!("cat {g} >/dev/null")), "named group grants read");
    assert!(!as_user(4321, 4321, &format!("cat {g}")));

    // Directories: a named entry with wx lets nobody create in a root-owned 0700 directory.
    let d = m.p("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, PermissionsExt::from_mode(0o700)).unwrap();
    assert!(!nobody(&format!("ls {d}")));
    ok(&["setfacl", "-m", &format!("u:{NOBODY}:rx"), &d]);
    assert!(nobody(&format!("ls {d}")));
    assert!(!nobody(&format!("touch {d}/n")), "r-x does not let nobody create");
    ok(&["setfacl", "-m", &format!("u:{NOBODY}:rwx"), &d]);
    assert!(nobody(&format!("touch {d}/n")), "rwx lets nobody create");
    assert_eq!(std::fs::metadata(m.path("d/n")).unwrap().uid(), NOBODY);

    // Removing the extended entries leaves only the mode.
    ok(&["setfacl", "-b", &f]);
    assert_eq!(getfacl(&f).len(), 3, "{:?}", getfacl(&f));
    assert!(!nobody(&format!("cat {f}")));
    // Only the owner (or root) may set an ACL.
    assert!(!nobody(&format!("setfacl -m u:{NOBODY}:rw {f}")));
    drop(m);
    drop(srv);
}

#[test]
fn default_acls_are_inherited_by_new_files_and_directories() {
    if !can_run() {
        return;
    }
    let dir = TempDir::new("acldef");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let m = Mount::new(port, &dir.path().join("mnt"), "allow_other");
    let d = m.p("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, PermissionsExt::from_mode(0o755)).unwrap();
    ok(&["setfacl", "-d", "-m", &format!("u:{NOBODY}:rwx"), &d]);
    let dacl = getfacl(&d);
    assert!(dacl.contains(&"default:user:65534:rwx".to_string()), "{dacl:?}");
    assert!(dacl.contains(&"default:mask::rwx".to_string()), "{dacl:?}");

    // A file and a directory made in it, with no umask in the way (FUSE without kernel ACL
    // support applies the umask itself before the MDT sees the mode: docs/posix.md).
    ok(&["sh", "-c", &format!("umask 0; echo data > {d}/f; mkdir {d}/sub; mknod {d}/fifo p")]);
    let f = getfacl(&m.p("d/f"));
    // The file: the default ACL cut by the create mode 0666.
    assert_eq!(
        f,
        [
            "user::rw-",
            "user:65534:rwx #effective:rw-",
            "group::r-x #effective:r--",
            "mask::rw-",
            "other::r--"
        ]
    );
    assert_eq!(mode(&m.path("d/f")), 0o664);
    assert!(nobody(&format!("echo more >> {d}/f")), "the inherited entry grants write");
    let fifo = getfacl(&m.p("d/fifo"));
    assert!(fifo.contains(&"mask::rw-".to_string()), "{fifo:?}");
    // The directory: the same as its access ACL and its default.
    let sub = getfacl(&m.p("d/sub"));
    for e in ["user:65534:rwx", "mask::rwx", "default:user:65534:rwx", "default:mask::rwx"] {
        assert!(sub.contains(&e.to_string()), "{e} not in {sub:?}");
    }
    assert_eq!(mode(&m.path("d/sub")), 0o775);
    assert!(nobody(&format!("mkdir {d}/sub/deeper && touch {d}/sub/deeper/x")));
    let deeper = getfacl(&m.p("d/sub/deeper"));
    assert!(deeper.contains(&"default:user:65534:rwx".to_string()), "{deeper:?}");

    // With the umask the kernel applies: the mode, and so the mask, is cut further.
    ok(&["sh", "-c", &format!("umask 022; touch {d}/masked")]);
    let masked = getfacl(&m.p("d/masked"));
    assert!(masked.contains(&"mask::r--".to_string()), "{masked:?}");
    assert_eq!(mode(&m.path("d/masked")), 0o644);

    // Without a default ACL, a new file has none.
    ok(&["setfacl", "-k", &d]);
    ok(&["sh", "-c", &format!("umask 022; touch {d}/plain")]);
    assert_eq!(getfacl(&m.p("d/plain")), ["user::rw-", "group::r--", "other::r--"]);

    // Default ACLs are for directories only.
    let e = setxattr(
        &m.path("d/plain"),
        "system.posix_acl_default",
        &blob(2, &[(1, 7, u32::MAX), (4, 5, u32::MAX), (0x20, 5, u32::MAX)]),
    )
    .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    drop(m);
    drop(srv);
}

#[test]
fn malformed_acls_are_refused_and_acls_survive_a_restart() {
    if !can_run() {
        return;
    }
    let dir = TempDir::new("aclbad");
    let port = free_port();
    let mut srv = Server::all_in_one(dir.path(), port);
    let m = Mount::new(port, &dir.path().join("mnt"), "allow_other");
    let f = m.path("f");
    std::fs::write(&f, b"x").unwrap();
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o644)).unwrap();
    let u = u32::MAX;
    // A version other than 2 is "not supported", as the kernel and Lustre answer.
    let e =
        setxattr(&f, "system.posix_acl_access", &blob(3, &[(1, 6, u), (4, 4, u), (0x20, 4, u)]))
            .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
    let bad = [
        ("truncated entry", blob(2, &[(1, 6, u), (4, 4, u), (0x20, 4, u)])[..27].to_vec()),
        ("no other entry", blob(2, &[(1, 6, u), (4, 4, u)])),
        ("named user, no mask", blob(2, &[(1, 6, u), (2, 4, 7), (4, 4, u), (0x20, 4, u)])),
        (
            "unsorted named users",
            blob(2, &[(1, 6, u), (2, 4, 9), (2, 4, 7), (4, 4, u), (0x10, 4, u), (0x20, 4, u)]),
        ),
        (
            "repeated named user",
            blob(2, &[(1, 6, u), (2, 4, 7), (2, 4, 7), (4, 4, u), (0x10, 4, u), (0x20, 4, u)]),
        ),
        ("unknown tag", blob(2, &[(1, 6, u), (4, 4, u), (0x40, 4, u), (0x20, 4, u)])),
    ];
    for (what, v) in &bad {
        let e = setxattr(&f, "system.posix_acl_access", v).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{what}: {e}");
    }
    assert_eq!(getfacl(&m.p("f")).len(), 3, "nothing was stored");
    assert_eq!(mode(&f), 0o644);

    // An ACL equal to a mode is kept as just the mode.
    setxattr(&f, "system.posix_acl_access", &blob(2, &[(1, 7, u), (4, 0, u), (0x20, 1, u)]))
        .unwrap();
    assert_eq!(mode(&f), 0o701);
    let e = getxattr(&f, "system.posix_acl_access").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENODATA), "an equivalent ACL is not stored: {e}");

    // Survives a restart: the file's ACL and a directory's default come back.
    ok(&["setfacl", "-m", &format!("u:{NOBODY}:r,m::r"), &m.p("f")]);
    std::fs::create_dir(m.path("d")).unwrap();
    ok(&["setfacl", "-d", "-m", &format!("g:{NOBODY}:rx"), &m.p("d")]);
    let before = (getfacl(&m.p("f")), getfacl(&m.p("d")));
    drop(m);
    srv.stop();
    srv.restart();
    let m = Mount::new(port, &dir.path().join("mnt"), "allow_other");
    assert_eq!((getfacl(&m.p("f")), getfacl(&m.p("d"))), before);
    assert!(nobody(&format!("cat {} >/dev/null", m.p("f"))));
    drop(m);
    drop(srv);
}

/// The MDT's own checks, with nothing in between: the client library sends REINT_SETXATTR
/// and opens straight to it (no kernel validating the blob first).
#[test]
fn the_mdt_validates_stores_and_enforces_acls_it_is_sent() {
    use client::{Cred, Fs};
    use proto::mdt::open as of;
    use std::rc::Rc;
    const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };
    const NOBODY_CRED: Cred = Cred { uid: NOBODY, gid: NOBODY, suppgid: u32::MAX };
    const ACCESS: &str = "system.posix_acl_access";
    const DEFAULT: &str = "system.posix_acl_default";
    let dir = TempDir::new("aclrpc");
    let srv = Server::all_in_one(dir.path(), free_port());
    let c = srv.mount();
    let u = u32::MAX;
    let errno = |r: client::error::Result<()>| r.err().map_or(0, |e| e.errno);
    let got = c
        .run(move |fs: Rc<Fs>| async move {
            let mut out: Vec<(&str, i32)> = Vec::new();
            let (d, _) = fs.mkdir("/d", 0o755, &[], ROOT).await?;
            let (f, _) = fs.create("/d/f", 0o600, &[], ROOT).await?;
            let set = async |fid, name, v: Vec<u8>, c| fs.setxattr(fid, name, Some(&v), 0, c).await;
            let unsorted =
                blob(2, &[(1, 6, u), (2, 4, 9), (2, 4, 7), (4, 4, u), (0x10, 4, u), (0x20, 4, u)]);
            out.push(("unsorted", errno(set(f, ACCESS, unsorted, ROOT).await)));
            let mut many = vec![(1, 6, u)];
            many.extend((0..30).map(|i| (2, 4, 100 + i)));
            many.extend([(4, 4, u), (0x10, 4, u), (0x20, 4, u)]);
            out.push(("33 entries", errno(set(f, ACCESS, blob(2, &many), ROOT).await)));
            let minimal = blob(2, &[(1, 7, u), (4, 5, u), (0x20, 5, u)]);
            out.push(("default on a file", errno(set(f, DEFAULT, minimal.clone(), ROOT).await)));
            let grant =
                blob(2, &[(1, 6, u), (2, 4, NOBODY), (4, 0, u), (0x10, 4, u), (0x20, 0, u)]);
            out.push(("not the owner", errno(set(f, ACCESS, grant.clone(), NOBODY_CRED).await)));
            // Denied by the mode, then granted by the named entry.
            let open = async |c| fs.open_at(d, b"f", of::FMODE_READ, 0, &[], c).await.map(|_| ());
            out.push(("open before", errno(open(NOBODY_CRED).await)));
            out.push(("set", errno(set(f, ACCESS, grant.clone(), ROOT).await)));
            out.push(("open after", errno(open(NOBODY_CRED).await)));
            let stored = fs.getxattr(f, ACCESS, ROOT).await?;
            out.push(("stored as sent", i32::from(stored != grant)));
            let (b, _) = fs.getattr(f, ROOT).await?;
            out.push(("mode from the ACL", i32::try_from(b.mbo_mode.get() & 0o777).unwrap()));
            // A default ACL: a new file in the directory gets it, cut by its mode.
            out.push(("default", errno(set(d, DEFAULT, grant.clone(), ROOT).await)));
            let (g, _) = fs.create_at(d, b"g", 0o644, &[], ROOT).await?;
            let (b, _) = fs.getattr(g, ROOT).await?;
            out.push(("inherited mode", i32::try_from(b.mbo_mode.get() & 0o777).unwrap()));
            let inherited = fs.getxattr(g, ACCESS, ROOT).await?;
            out.push(("inherited ACL", i32::from(inherited != grant)));
            Ok(out)
        })
        .unwrap();
    let want = [
        ("unsorted", libc::EINVAL),
        ("33 entries", libc::E2BIG),
        ("default on a file", libc::EACCES),
        ("not the owner", libc::EPERM),
        ("open before", libc::EACCES),
        ("set", 0),
        ("open after", 0),
        ("stored as sent", 0),
        ("mode from the ACL", 0o640),
        ("default", 0),
        ("inherited mode", 0o640),
        ("inherited ACL", 0),
    ];
    assert_eq!(got, want);
    drop(c);
    drop(srv);
}

/// A loopback NID of our own on `port` (as badinput.rs finds one).
fn our_nid(port: u16) -> proto::nid::Nid {
    for i in (2..=254u8).rev() {
        let a = std::net::Ipv4Addr::new(127, 0, 1, i);
        if std::net::TcpListener::bind(std::net::SocketAddrV4::new(a, port)).is_ok() {
            return format!("{a}@tcp").parse().unwrap();
        }
    }
    panic!("no free loopback address");
}

/// What a kernel client that negotiated `OBD_CONNECT_ACL` gets: the access ACL in the reply's
/// ACL buffer of MDS_GETATTR when it asks with `OBD_MD_FLACL` (`mdt_pack_acl2body`).
#[test]
fn getattr_replies_carry_the_acl_to_clients_that_negotiated_it() {
    use client::{Cred, Fs};
    use lnd::{AcceptMode, Config as LnetConfig, Lnet, NiConfig, Node, Placement, ProcessId};
    use proto::build::MsgBuilder;
    use proto::connect::{self, ObdConnectData};
    use proto::mdt::{MdtBody, md};
    use proto::opcode::Opcode;
    use proto::portal;
    use proto::wire::{FromZeros, Wire};
    use ptlrpc::{Import, ImportConfig, XidGen};
    use std::rc::Rc;
    use std::time::Duration;
    const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };
    let dir = TempDir::new("aclwire");
    let port = free_port();
    let srv = Server::all_in_one(dir.path(), port);
    let c = srv.mount();
    let u = u32::MAX;
    let acl = blob(2, &[(1, 6, u), (2, 4, NOBODY), (4, 0, u), (0x10, 4, u), (0x20, 0, u)]);
    let a2 = acl.clone();
    let (with, without) = c
        .run(move |fs: Rc<Fs>| async move {
            let (f, _) = fs.create("/f", 0o600, &[], ROOT).await?;
            fs.setxattr(f, "system.posix_acl_access", Some(&a2), 0, ROOT).await?;
            let (g, _) = fs.create("/g", 0o600, &[], ROOT).await?;
            Ok((f, g))
        })
        .unwrap();
    drop(c);

    let nid = our_nid(port);
    let mut lc = LnetConfig::new(vec![NiConfig::new(nid, port).unwrap()]);
    lc.port = port;
    lc.placement = Placement::Unbound(1);
    lc.accept = AcceptMode::All;
    lc.connect_privileged = nix::unistd::geteuid().is_root();
    lc.routes = ptlrpc::lnet_routes();
    lc.timeout = Duration::from_secs(10);
    lc.discovery_timeout = Duration::from_secs(10);
    let (tx, rx) = std::sync::mpsc::channel();
    let node = Node::start(lc, move |lnet: Lnet| async move {
        let server = ProcessId::lustre("127.0.0.1@tcp".parse().unwrap());
        let mut cfg = ImportConfig::new(
            server,
            portal::MDS_REQUEST,
            portal::MDC_REPLY,
            "rustre-MDT0000_UUID",
            "acl-wire-0000-0000-0000-000000000000",
            Opcode::MdsConnect,
        );
        cfg.timeout = Duration::from_secs(10);
        let imp = Import::new(lnet.clone(), cfg, Rc::new(XidGen::new(0, 1, 1_000_000)));
        let mut d = ObdConnectData::new_zeroed();
        d.ocd_version = ObdConnectData::version(2, 15, 8, 0).into();
        d.ocd_connect_flags = (connect::MDC_CONNECT_FLAGS | connect::flags::ACL).into();
        d.ocd_connect_flags2 = connect::MDC_CONNECT_FLAGS2.into();
        d.ocd_ibits_known = proto::ldlm::ibits::FULL.into();
        d.ocd_max_easize = 65536.into();
        let granted = imp.connect(d).await.unwrap();
        let mut out = vec![(u64::from(granted.flags() & connect::flags::ACL != 0), 0, Vec::new())];
        for (fid, valid) in [
            (with, md::FLGETATTR | md::FLACL),
            (with, md::FLGETATTR),
            (without, md::FLGETATTR | md::FLACL),
        ] {
            let q = MdtBody { mbo_fid1: fid, mbo_valid: valid.into(), ..Default::default() };
            let b = MsgBuilder::request(Opcode::MdsGetattr).unwrap().wire("MDT_BODY", &q).unwrap();
            let rep = imp
                .rpc_via(Some((portal::MDS_READPAGE, portal::MDC_REPLY)), b, None)
                .await
                .unwrap();
            let body = MdtBody::read(rep.buf("mdt_body", 1, 216).unwrap()).unwrap();
            let n = body.mbo_aclsize.get();
            let buf = rep.buf("acl", 3, 0).unwrap_or_default().to_vec();
            out.push((body.mbo_valid.get() & md::FLACL, n, buf));
        }
        let _ = tx.send(out);
    })
    .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(60));
    node.stop();
    let _ = node.join();
    let got = got.expect("the raw client finished");
    let len = u32::try_from(acl.len()).unwrap();
    assert_eq!(
        got,
        [(1, 0, Vec::new()), (md::FLACL, len, acl), (0, 0, Vec::new()), (md::FLACL, 0, Vec::new()),]
    );
    drop(srv);
}

//! A file system spread over four `rustre` processes on four addresses, as an operator
//! deploys one: the MGS (127.0.0.1), MDT0000 (127.0.0.4), OST0000 (127.0.0.2) and OST0001
//! (127.0.0.3). The MDT and OSTs register with MGS_TARGET_REG; the MDT learns the OSTs from
//! the MGS and precreates objects on them with OST_CREATE.

#![allow(clippy::unwrap_used, reason = "test helpers: a failure is a test failure")]

mod common;

use client::{Client, Cred, Fs};
use common::{Server, TempDir, free_port, rustre};
use proto::build::MsgBuilder;
use proto::fid::{LuFid, OstId};
use proto::lov::{LovForm, LovMd};
use proto::opcode::Opcode;
use proto::ost::Obdo;
use proto::wire::{FromZeros, Wire};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };

fn mkfs(target: &[&str], img: &Path) {
    let out = Command::new(rustre())
        .args(["mkfs", "--fsname", "rustre", "--cores", "2", "--size", "512M", "--backend"])
        .arg(format!("file:{}", img.display()))
        .args(target)
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs {target:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Formats and starts one process serving `kind` (`mgs`, `mdt`, `ost`) `index` on `ip`.
fn node(dir: &Path, port: u16, ip: &str, kind: &str, index: u32) -> Server {
    let img = dir.join(format!("{kind}{index}.img"));
    let flag = format!("--{kind}");
    let idx = index.to_string();
    if kind == "mgs" {
        mkfs(&[&flag], &img);
    } else {
        mkfs(&[&flag, &idx], &img);
    }
    let mgs = if kind == "mgs" { String::new() } else { "mgs_nids = [\"127.0.0.1@tcp\"]".into() };
    let cfg = format!(
        "fsname = \"rustre\"\ncores = 2\n\n[network]\nnids = [\"{ip}@tcp\"]\nport = {port}\naccept = \"all\"\n{mgs}\n\n[[target]]\nkind = \"{kind}\"\nindex = {index}\nbackend = \"file:{}\"\n",
        img.display()
    );
    let path = dir.join(format!("{kind}{index}.toml"));
    std::fs::write(&path, cfg).unwrap();
    Server::spawn(
        vec!["serve".into(), "--config".into(), path.display().to_string()],
        port,
        &dir.join(format!("{kind}{index}.log")),
    )
}

/// OST_GETATTR of an object through the client's OSC: `Ok(size)` or the errno.
fn ost_getattr(c: &Client, ost: u32, fid: LuFid) -> Result<u64, i32> {
    c.run(move |fs: Rc<Fs>| async move {
        let mut oa: Obdo = FromZeros::new_zeroed();
        oa.o_oi = OstId::from_fid(fid);
        oa.o_valid = (proto::mdt::md::FLID | proto::mdt::md::FLGROUP).into();
        let b = MsgBuilder::request(Opcode::OstGetattr)?.wire("OST_BODY", &oa)?;
        let osc = fs.osc(ost)?;
        Ok(match fs.call(&osc, b, None, None).await {
            Ok(rep) => Ok(Obdo::read(rep.buf("ost_body", 1, Obdo::SIZE)?)?.o_size.get()),
            Err(e) => Err(e.errno),
        })
    })
    .unwrap()
}

fn objects(c: &Client, path: &str) -> Vec<(u32, LuFid)> {
    let p = path.to_string();
    let l: LovMd =
        c.run(move |fs: Rc<Fs>| async move { fs.getstripe(&p, ROOT).await }).unwrap().unwrap();
    assert_eq!(LovMd::decode(&l.to_vec().unwrap(), LovForm::Stored).unwrap(), l);
    l.objects.iter().map(|o| (o.l_ost_idx.get(), o.l_ost_oi.as_fid())).collect()
}

fn wait_for_osts(c: &Client, want: usize) {
    let t = Instant::now();
    loop {
        let n = c
            .run(|fs: Rc<Fs>| async move { fs.statfs_all().await })
            .map(|v| v.iter().filter(|(u, _)| u.contains("-OST")).count())
            .unwrap_or(0);
        if n >= want {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "only {n} OSTs after 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn four_processes_one_file_system() {
    let dir = TempDir::new("multi");
    let port = free_port();
    let _mgs = node(dir.path(), port, "127.0.0.1", "mgs", 0);
    let mut mdt = node(dir.path(), port, "127.0.0.4", "mdt", 0);
    let mut ost0 = node(dir.path(), port, "127.0.0.2", "ost", 0);
    let _ost1 = node(dir.path(), port, "127.0.0.3", "ost", 1);

    // The client learns every target from the MGS; OSTs show up once registered.
    let c = common::mount(port, "rustre");
    wait_for_osts(&c, 2);
    drop(c);
    let c = common::mount(port, "rustre");
    let df = c.run(|fs: Rc<Fs>| async move { fs.statfs_all().await }).unwrap();
    let names: Vec<&str> = df.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(names, ["rustre-MDT0000_UUID", "rustre-OST0000_UUID", "rustre-OST0001_UUID"]);

    // Files striped over both remote OSTs: objects precreated there, named in the layout.
    c.mkdir("/d", 0o755, ROOT).unwrap();
    let t = Instant::now();
    let lay = client::ns::user_layout(1 << 20, -1, -1);
    for i in 0..200 {
        c.create(&format!("/d/f{i}"), 0o644, lay.clone(), ROOT).unwrap();
    }
    eprintln!("200 striped creates over remote OSTs in {:?}", t.elapsed());
    let objs = objects(&c, "/d/f7");
    assert_eq!(objs.len(), 2);
    let mut osts: Vec<u32> = objs.iter().map(|o| o.0).collect();
    osts.sort_unstable();
    assert_eq!(osts, [0, 1]);
    for &(ost, fid) in &objs {
        assert_eq!(ost_getattr(&c, ost, fid), Ok(0), "object {fid} exists on OST{ost}");
    }

    // Unlinking the last link destroys the objects on the remote OSTs.
    c.remove("/d/f7", false, ROOT).unwrap();
    for &(ost, fid) in &objs {
        assert_eq!(ost_getattr(&c, ost, fid), Err(libc::ENOENT), "object {fid} destroyed");
    }

    // An OST process dies and comes back: creates resume through a reconnected import, and
    // no object is handed out twice.
    ost0.kill();
    ost0.restart();
    for i in 200..260 {
        c.create(&format!("/d/f{i}"), 0o644, lay.clone(), ROOT).unwrap();
    }
    // The MDT process dies with precreated objects unused; after it restarts its orphan
    // cleanup removes them, and new files still get fresh objects.
    let before = objects(&c, "/d/f259");
    mdt.kill();
    mdt.restart();
    drop(c);
    let c = common::mount(port, "rustre");
    for i in 260..300 {
        c.create(&format!("/d/f{i}"), 0o644, lay.clone(), ROOT).unwrap();
    }
    let after = objects(&c, "/d/f299");
    for (b, a) in before.iter().zip(after.iter()) {
        assert_ne!(b.1, a.1);
    }
    let mut all = std::collections::HashSet::new();
    for i in (0..300).filter(|&i| i != 7) {
        for o in objects(&c, &format!("/d/f{i}")) {
            assert!(all.insert(o), "object {o:?} is in two layouts");
            assert_eq!(ost_getattr(&c, o.0, o.1), Ok(0));
        }
    }
    let logs = std::fs::read_to_string(dir.path().join("ost0.log")).unwrap()
        + &std::fs::read_to_string(dir.path().join("ost1.log")).unwrap();
    assert!(logs.contains("orphan objects"), "the restarted MDT cleaned up its orphans");
    assert!(!logs.contains("panicked"));
}

/// A client enqueue that queues behind a conflicting lock is answered "blocked" and granted
/// later by a completion AST: a config change (an OST process registering) makes the MGS
/// take its EX config lock while client A is slow to give its CR lock back; client B, mounting
/// meanwhile, queues behind that EX.
#[test]
fn queued_enqueue_is_granted_by_completion_ast() {
    let dir = TempDir::new("cpast");
    let port = free_port();
    let _srv = Server::all_in_one(dir.path(), port);
    let mut cfg = client::ClientConfig::new("127.0.0.1@tcp".parse().unwrap(), "rustre");
    cfg.port = port;
    cfg.timeout = Duration::from_secs(10);
    cfg.cancel_delay = Duration::from_secs(3);
    let a = Client::mount(cfg).unwrap();
    let before = a.counters().unwrap().blocking_asts;

    // A third OST joins from another process: the MGS revokes the config lock.
    let _ost2 = node(dir.path(), port, "127.0.0.2", "ost", 2);
    let t = Instant::now();
    while a.counters().unwrap().blocking_asts == before {
        assert!(t.elapsed() < Duration::from_secs(20), "no blocking AST reached client A");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A holds its CR lock for 3 s more; B's enqueue queues behind the MGS's EX.
    let b = common::mount(port, "rustre");
    let bc = b.counters().unwrap();
    assert!(bc.completion_asts >= 1, "B's config lock came by completion AST: {bc:?}");
    wait_for_osts(&b, 3);
    wait_for_osts(&a, 3);
}

/// An OST process killed mid-write and restarted: the client's BRWs are resent after it
/// returns, and every write acknowledged by fsync is there afterwards.
#[test]
fn ost_killed_mid_write_loses_no_acknowledged_data() {
    use proto::mdt::open as of;
    let dir = TempDir::new("ostkill");
    let port = free_port();
    let _mgs = node(dir.path(), port, "127.0.0.1", "mgs", 0);
    let _mdt = node(dir.path(), port, "127.0.0.4", "mdt", 0);
    let mut ost = node(dir.path(), port, "127.0.0.2", "ost", 0);
    let c = common::mount(port, "rustre");
    wait_for_osts(&c, 1);
    let f = c
        .open(
            "/data",
            of::FMODE_READ | of::FMODE_WRITE | of::CREAT,
            0o644,
            client::ns::user_layout(1 << 20, 1, -1),
            ROOT,
        )
        .unwrap();
    let piece = |i: u64| vec![u8::try_from(i % 251).unwrap(); 256 << 10];
    let mut acked = 0u64;
    std::thread::scope(|s| {
        let killer = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(600));
            ost.kill();
            std::thread::sleep(Duration::from_millis(800));
            ost.restart();
        });
        for i in 0..40u64 {
            c.write(&f, i * (256 << 10), piece(i)).unwrap();
            c.fsync(&f).unwrap();
            acked = i + 1;
        }
        killer.join().unwrap();
    });
    assert_eq!(acked, 40);
    c.close(f).unwrap();
    // A fresh client reads everything back from the restarted OST.
    let d = common::mount(port, "rustre");
    let f = d.open("/data", of::FMODE_READ, 0, Vec::new(), ROOT).unwrap();
    assert_eq!(d.size(&f).unwrap(), 40 * (256 << 10));
    for i in 0..40u64 {
        assert!(d.read(&f, i * (256 << 10), 256 << 10).unwrap() == piece(i), "piece {i}");
    }
}

//! Clients that stop cooperating are evicted and the file system goes on: one that does not
//! give a lock back within `ldlm_timeout`, and one that stops pinging for `evict_timeout`.
//! Both reconnect afterwards (their locks and caches gone), as Lustre clients do.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test: a failure is a test failure")]

mod common;

use client::{Client, ClientConfig, Cred};
use common::{Server, TempDir, free_port, rustre};
use std::process::Command;
use std::time::{Duration, Instant};

const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };

/// An all-in-one server from a configuration file with short timeouts.
fn server(dir: &std::path::Path, port: u16) -> Server {
    let mut targets = String::new();
    for (kind, index, flag) in
        [("mgs", 0, vec!["--mgs"]), ("mdt", 0, vec!["--mdt", "0"]), ("ost", 0, vec!["--ost", "0"])]
    {
        let img = dir.join(format!("{kind}{index}.img"));
        let out = Command::new(rustre())
            .args(["mkfs", "--cores", "2", "--size", "256M", "--backend"])
            .arg(format!("file:{}", img.display()))
            .args(&flag)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        targets += &format!(
            "\n[[target]]\nkind = \"{kind}\"\nindex = {index}\nbackend = \"file:{}\"\n",
            img.display()
        );
    }
    let cfg = format!(
        "fsname = \"rustre\"\ncores = 2\nldlm_timeout = 2\nevict_timeout = 3\n\n[network]\nnids = [\"127.0.0.1@tcp\"]\nport = {port}\naccept = \"all\"\n{targets}"
    );
    let path = dir.join("rustre.toml");
    std::fs::write(&path, cfg).unwrap();
    Server::spawn(
        vec!["serve".into(), "--config".into(), path.display().to_string()],
        port,
        &dir.join("rustre.log"),
    )
}

fn config(port: u16) -> ClientConfig {
    let mut c = ClientConfig::new("127.0.0.1@tcp".parse().unwrap(), "rustre");
    c.port = port;
    c.timeout = Duration::from_secs(10);
    c
}

#[test]
fn a_client_that_keeps_a_lock_is_evicted() {
    let dir = TempDir::new("evict-lock");
    let port = free_port();
    let srv = server(dir.path(), port);
    let b = common::mount(port, "rustre");
    b.mkdir("/d", 0o755, ROOT).unwrap();
    b.create("/d/f", 0o644, Vec::new(), ROOT).unwrap();
    let mut cfg = config(port);
    cfg.cancel_delay = Duration::from_secs(3600);
    let a = Client::mount(cfg).unwrap();
    a.stat("/d/f", false, ROOT).unwrap(); // A caches /d/f under a lock it will not give back

    // B's rename needs A's lock: A answers the blocking AST but never cancels; after
    // ldlm_timeout the server evicts A and the rename completes.
    let t = Instant::now();
    b.rename("/d/f", "/d/g", ROOT).unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(1), "the rename waited for A ({took:?})");
    assert!(srv.log_text().contains("did not cancel a lock in time: evicting"));

    // A learns of its eviction on its next request, drops its cache, reconnects, and sees
    // the rename.
    assert_eq!(a.stat("/d/f", false, ROOT).map_err(|e| e.errno), Err(libc::ENOENT));
    assert!(a.stat("/d/g", false, ROOT).is_ok());
    assert!(a.counters().unwrap().evictions >= 1);
}

#[test]
fn a_client_that_stops_pinging_is_evicted() {
    let dir = TempDir::new("evict-ping");
    let port = free_port();
    let srv = server(dir.path(), port);
    let mut cfg = config(port);
    cfg.ping_interval = Duration::from_secs(3600);
    let c = Client::mount(cfg).unwrap();
    c.mkdir("/before", 0o755, ROOT).unwrap();
    let t = Instant::now();
    while !srv.log_text().contains("evicting client") {
        assert!(t.elapsed() < Duration::from_secs(30), "no idle eviction");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The next operation reconnects and works.
    c.mkdir("/after", 0o755, ROOT).unwrap();
    assert!(c.counters().unwrap().evictions >= 1);
    let names: Vec<String> = c.ls("/", ROOT).unwrap().into_iter().map(|e| e.name).collect();
    assert!(names.contains(&"before".into()) && names.contains(&"after".into()));
}

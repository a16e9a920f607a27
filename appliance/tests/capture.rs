//! A tshark capture of a real client workload against a running all-in-one `rustre`: every
//! ptlrpc message on the wire decodes with tshark's LNet/Lustre dissectors under a known
//! opcode name, with no malformed packet and no expert info outside the cases
//! docs/wire-coverage.md documents, and the opcodes the workload must produce are all there.
//! The served/sent columns of docs/wire-coverage.md are checked against what was seen.
//!
//! Needs tshark and the right to capture on `lo` (root). Without tshark the test is skipped,
//! unless `RUSTRE_REQUIRE_TSHARK` is set (as in CI), when it fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step fails the test"
)]

mod common;

use client::ns::user_layout;
use client::{Cred, Fs};
use common::{Server, TempDir, free_port};
use proto::opcode::Opcode;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

const ROOT: Cred = Cred { uid: 0, gid: 0, suppgid: u32::MAX };
const REQUEST: u32 = 4711;
const REPLY: u32 = 4713;
/// A reply carrying only an error status.
const ERR: u32 = 4712;

/// Opcodes the workload below must put on the wire (as requests).
const MUST_SEE: &[Opcode] = &[
    Opcode::MgsConnect,
    Opcode::LdlmEnqueue,
    Opcode::LlogOriginHandleCreate,
    Opcode::LlogOriginHandleReadHeader,
    Opcode::LlogOriginHandleNextBlock,
    Opcode::MgsConfigRead,
    Opcode::MdsConnect,
    Opcode::OstConnect,
    Opcode::MdsGetRoot,
    Opcode::MdsStatfs,
    Opcode::OstStatfs,
    Opcode::SeqQuery,
    Opcode::MdsReint,
    Opcode::MdsReadpage,
    Opcode::MdsClose,
    Opcode::MdsGetattr,
    Opcode::MdsGetxattr,
    Opcode::LdlmBlCallback,
    Opcode::LdlmCancel,
    Opcode::MdsDisconnect,
    Opcode::OstDisconnect,
    Opcode::MgsDisconnect,
];

fn tshark_available() -> bool {
    Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A running `tshark -w`, stopped (SIGINT, so the file is complete) on drop.
struct Capture {
    child: Option<Child>,
    file: PathBuf,
    log: PathBuf,
    /// A listener of our own on the captured port (another loopback address than the
    /// server's), open while capturing: connections to it mark points in the capture without
    /// touching the server.
    _marker: std::net::TcpListener,
    port: u16,
}

/// The loopback address of the marker listener.
const MARKER: &str = "127.0.0.3";

impl Capture {
    /// Captures TCP traffic to or from `port` on `lo` into `dir/capture.pcapng`, and returns
    /// once packets are being written.
    fn start(dir: &Path, port: u16) -> Capture {
        let file = dir.join("capture.pcapng");
        let log = dir.join("tshark.log");
        let marker = std::net::TcpListener::bind((MARKER, port)).expect("marker listener");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tshark");
        let mut c = Capture { child: Some(child), file, log, _marker: marker, port };
        c.sync();
        c
    }

    /// Connects to the marker until the connection shows in the file: everything sent before
    /// is in the file too.
    fn sync(&mut self) {
        let before = self.markers();
        let t = Instant::now();
        loop {
            drop(std::net::TcpStream::connect((MARKER, self.port)).unwrap());
            std::thread::sleep(Duration::from_millis(100));
            if self.markers() > before {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tshark exited ({st}): {}", std::fs::read_to_string(&self.log).unwrap());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "tshark captured nothing: {}",
                std::fs::read_to_string(&self.log).unwrap()
            );
        }
    }

    /// Connection requests to the marker in the file so far.
    fn markers(&self) -> usize {
        if !self.file.exists() {
            return 0;
        }
        let filter = format!("ip.dst=={MARKER} && tcp.flags.syn==1 && tcp.flags.ack==0");
        Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args(["-Y", &filter, "-T", "fields", "-e", "frame.number"])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    }

    /// Stops the capture once everything sent so far is in the file.
    fn stop(&mut self) {
        self.sync();
        let Some(mut c) = self.child.take() else { return };
        let pid = nix::unistd::Pid::from_raw(c.id().cast_signed());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let t = Instant::now();
        while c.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                let _ = c.wait();
                panic!("tshark did not stop on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One frame as tshark decodes it (lists: a TCP segment may carry several LNet messages).
#[derive(Debug)]
struct Frame {
    number: u32,
    /// LNet message types (ACK 0, PUT 1, GET 2, REPLY 3).
    lnet_types: Vec<u32>,
    portals: Vec<u32>,
    opcs: Vec<u32>,
    types: Vec<u32>,
    intents: Vec<u64>,
    /// Expert info other than TCP's connection and sequence notes.
    expert: Vec<String>,
    malformed: bool,
}

/// tshark's expert group of TCP connection and sequence analysis (SYN, FIN, RST).
const PI_SEQUENCE: u32 = 0x0200_0000;

fn nums<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split('|').filter_map(|x| x.trim().parse().ok()).collect()
}

/// Decodes the capture with the LNet dissector on `port`.
fn decode(file: &Path, port: u16) -> Vec<Frame> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-d", &format!("tcp.port=={port},lnet")])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=/t"])
        .args(["-e", "frame.number", "-e", "lnet.msg_type", "-e", "lnet.ptl_index"])
        .args(["-e", "lustre.ptlrpc_body.pb_opc", "-e", "lustre.ptlrpc_body.pb_type"])
        .args(["-e", "lustre.ldlm_intent.opc", "-e", "_ws.expert.message"])
        .args(["-e", "_ws.expert.group", "-e", "_ws.malformed.expert"])
        .output()
        .expect("run tshark -r");
    assert!(out.status.success(), "tshark -r failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("");
            let groups: Vec<u32> = nums(get(7));
            let expert = get(6)
                .split('|')
                .filter(|m| !m.is_empty())
                .zip(groups.iter().copied().chain(std::iter::repeat(0)))
                .filter(|(_, g)| *g != PI_SEQUENCE)
                .map(|(m, _)| m.to_string())
                .collect();
            Frame {
                number: get(0).parse().unwrap(),
                lnet_types: nums(get(1)),
                portals: nums(get(2)),
                opcs: nums(get(3)),
                types: nums(get(4)),
                intents: get(5)
                    .split('|')
                    .filter_map(|x| u64::from_str_radix(x.trim().trim_start_matches("0x"), 16).ok())
                    .collect(),
                expert,
                malformed: !get(8).is_empty(),
            }
        })
        .collect()
}

/// Why a frame's expert info is expected, or None. The lnet dissector reports bytes it hands
/// to no one as `Capture:… (length:0)` (bulk data; buffers the 2.10-era Lustre dissector does
/// not parse); docs/wire-coverage.md lists those cases.
fn expected_expert(fr: &Frame) -> Option<&'static str> {
    let pairs: Vec<(u32, u32)> = fr.opcs.iter().copied().zip(fr.types.iter().copied()).collect();
    let leftover = |m: &String| m.starts_with("Capture:") && m.contains("(length:0)");
    let only = |ok: &dyn Fn(&String) -> bool| fr.expert.iter().all(ok) && !fr.malformed;
    if only(&leftover) {
        if fr.portals.iter().any(|p| matches!(p, 8 | 14 | 33)) {
            return Some("bulk data");
        }
        if pairs.contains(&(501, REQUEST)) {
            return Some("LLOG_ORIGIN_HANDLE_CREATE request");
        }
        if pairs.contains(&(502, REPLY)) {
            return Some("LLOG_ORIGIN_HANDLE_NEXT_BLOCK reply");
        }
    }
    None
}

/// The opcode names tshark's Lustre dissector knows (`tshark -G values`).
fn tshark_opcode_names() -> BTreeMap<u32, String> {
    let out = Command::new("tshark").args(["-G", "values"]).output().expect("tshark -G values");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                ["V", "lustre.ptlrpc_body.pb_opc", n, name] => {
                    Some((n.parse().ok()?, (*name).to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

/// The `served` and `sent` columns of docs/wire-coverage.md by opcode.
fn coverage_columns() -> BTreeMap<u32, (String, String)> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire-coverage.md"))
            .unwrap();
    doc.lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.trim().trim_matches('|').split('|').map(str::trim).collect();
            if c.len() != 8 {
                return None;
            }
            Some((c[0].parse().ok()?, (c[6].to_string(), c[7].to_string())))
        })
        .collect()
}

/// The workload: two clients, every namespace operation, readdir over bulk, xattrs, statfs,
/// and a conflict that makes the MDT call a lock back.
fn workload(srv: &Server) {
    let a = srv.mount();
    let b = srv.mount();
    a.mkdir("/cap", 0o755, ROOT).unwrap();
    a.create("/cap/striped", 0o644, user_layout(1 << 20, 2, -1), ROOT).unwrap();
    a.create("/cap/f", 0o644, Vec::new(), ROOT).unwrap();
    for i in 0..40 {
        a.create(&format!("/cap/entry-with-a-long-name-{i:04}"), 0o644, Vec::new(), ROOT).unwrap();
    }
    assert_eq!(a.ls("/cap", ROOT).unwrap().len(), 44);
    let (f, _) = a.stat("/cap/f", false, ROOT).unwrap();
    a.rename("/cap/f", "/cap/g", ROOT).unwrap();
    a.link("/cap/g", "/cap/h", ROOT).unwrap();
    a.symlink("/cap/g", "/cap/s", ROOT).unwrap();
    assert_eq!(a.stat("/cap/s", true, ROOT).unwrap().0, f);
    a.remove("/cap/h", false, ROOT).unwrap();
    a.mkdir("/cap/d", 0o755, ROOT).unwrap();
    a.remove("/cap/d", true, ROOT).unwrap();
    a.run(move |fs: Rc<Fs>| async move {
        assert!(fs.statfs_all().await?.len() >= 3, "an MDT and two OSTs");
        fs.setxattr(f, "user.tag", Some(b"captured"), 0, ROOT).await?;
        assert_eq!(fs.getxattr(f, "user.tag", ROOT).await?, b"captured");
        assert!(fs.listxattr(f, ROOT).await?.contains(&"user.tag".to_string()));
        let (body, _) = fs.getattr(f, ROOT).await?;
        assert_eq!(body.mbo_fid1, f);
        assert!(fs.getstripe("/cap/striped", ROOT).await?.is_some());
        Ok(())
    })
    .unwrap();

    // B caches a name; A renames it: the MDT sends B a blocking AST, B cancels.
    a.mkdir("/cap/x", 0o755, ROOT).unwrap();
    let _ = b.stat("/cap/x", false, ROOT).unwrap();
    let before = b.counters().unwrap();
    a.rename("/cap/x", "/cap/y", ROOT).unwrap();
    let t = Instant::now();
    while b.counters().unwrap().blocking_asts == before.blocking_asts {
        assert!(t.elapsed() < Duration::from_secs(10), "B got no blocking AST");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.umount().unwrap();
    b.umount().unwrap();
}

#[test]
fn tshark_decodes_every_rpc_of_a_client_workload() {
    if !tshark_available() {
        assert!(
            std::env::var_os("RUSTRE_REQUIRE_TSHARK").is_none(),
            "tshark is required (ci/setup installs it)"
        );
        eprintln!("SKIPPED: tshark not installed; run ci/setup");
        return;
    }
    let t = Instant::now();
    let dir = TempDir::new("capture");
    let port = free_port();
    let mut srv = Server::all_in_one(dir.path(), port);
    let mut cap = Capture::start(dir.path(), port);
    workload(&srv);
    srv.stop();
    cap.stop();
    let frames = decode(&cap.file, port);
    let names = tshark_opcode_names();
    let coverage = coverage_columns();

    let mut requests = BTreeSet::new();
    let mut replies = BTreeSet::new();
    let mut messages = 0;
    let mut excused = BTreeMap::new();
    for fr in &frames {
        // Every message whose opcode tshark shows has a name tshark knows.
        for &o in &fr.opcs {
            let n = names
                .get(&o)
                .unwrap_or_else(|| panic!("frame {}: opcode {o} is unknown to tshark", fr.number));
            assert!(!n.contains("LAST_OPC"), "frame {}: opcode {o} shows as {n}", fr.number);
        }
        assert_eq!(fr.opcs.len(), fr.types.len(), "frame {}: opcode without type", fr.number);
        // Every LNet PUT but bulk data carries a ptlrpc message that tshark decoded.
        let puts = fr.lnet_types.iter().filter(|&&t| t == 1).count();
        let bulk = fr.portals.iter().filter(|p| matches!(p, 8 | 14 | 33)).count();
        assert_eq!(
            fr.opcs.len(),
            puts - bulk,
            "frame {}: LNet PUTs to portals {:?} but ptlrpc opcodes {:?}",
            fr.number,
            fr.portals,
            fr.opcs
        );
        for (&o, &ty) in fr.opcs.iter().zip(&fr.types) {
            messages += 1;
            match ty {
                REQUEST => requests.insert(o),
                REPLY | ERR => replies.insert(o),
                _ => panic!("frame {}: {} with pb_type {ty}", fr.number, names[&o]),
            };
        }
        // No malformed packet and no expert info, but for what the 4.0 dissector cannot
        // decode (docs/wire-coverage.md, "tshark 4.0 exceptions") and known client deviations.
        if fr.expert.is_empty() && !fr.malformed {
            continue;
        }
        match expected_expert(fr) {
            Some(why) => *excused.entry(why).or_insert(0usize) += 1,
            None => panic!(
                "frame {} (portals {:?}, opcodes {:?}, intents {:x?}): undocumented expert info \
                 or malformed packet: {:?}",
                fr.number, fr.portals, fr.opcs, fr.intents, fr.expert
            ),
        }
    }
    eprintln!("expected expert info, frames by cause: {excused:?}");
    eprintln!(
        "{} frames, {messages} ptlrpc messages; requests: {:?}",
        frames.len(),
        requests.iter().map(|o| names[o].as_str()).collect::<Vec<_>>()
    );

    for op in MUST_SEE {
        assert!(requests.contains(&op.raw()), "no {} request in the capture", op.name());
    }
    // Every request was answered (callbacks included), and the reply decoded.
    for o in &requests {
        assert!(replies.contains(o), "no reply to {} decoded", names[o]);
    }
    // Whatever went over the wire is sent and served by Rustre; the coverage table says so.
    for o in &requests {
        let (served, sent) = coverage.get(o).unwrap_or_else(|| {
            panic!("docs/wire-coverage.md has no served/sent columns for opcode {o}")
        });
        assert_eq!(served, "yes", "docs/wire-coverage.md: served column of {}", names[o]);
        assert_eq!(sent, "yes", "docs/wire-coverage.md: sent column of {}", names[o]);
    }
    eprintln!("capture test in {:?}", t.elapsed());
}

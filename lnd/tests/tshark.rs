//! Interop evidence: capture a short exchange on loopback with tshark and check that
//! Wireshark's LNet dissector decodes our PUT, GET, ACK and REPLY with the right NIDs, types
//! and portals, and that every connection opens with an acceptor request and a V3 hello (the
//! dissector shows those as plain TCP: reference section 11).
//!
//! Skips (with a message) only when tshark is absent and RUSTRE_REQUIRE_TSHARK is unset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::io::Read;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use lnd::{Lnet, MatchEntry, MdOptions, MdSpec, Node, ProcessId};

const T: Duration = Duration::from_secs(20);

fn have_tshark() -> bool {
    Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn tshark_decodes_our_traffic() {
    init_log();
    if !have_tshark() {
        assert!(
            std::env::var_os("RUSTRE_REQUIRE_TSHARK").is_none(),
            "tshark is required (RUSTRE_REQUIRE_TSHARK is set) but not installed: run ci/setup"
        );
        eprintln!(
            "SKIPPED: tshark not installed (run ci/setup); set RUSTRE_REQUIRE_TSHARK to fail instead"
        );
        return;
    }
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let port = free_port(&ips);
    let dir = std::env::temp_dir().join(format!("lnd-tshark-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("lnet.pcapng");
    let mut cap = Command::new("tshark")
        .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the capture runs.
    let mut err = cap.stderr.take().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut seen = String::new();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("Capturing on") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).expect("tshark did not start capturing");
    std::thread::sleep(Duration::from_millis(300));

    let server = Node::start(config("127.0.0.1@tcp", port, 1), |lnet: Lnet| async move {
        let eq = lnet.event_queue();
        let o = MdOptions {
            op_put: true,
            op_get: true,
            threshold: None,
            manage_remote: true,
            truncate: true,
            ..MdOptions::default()
        };
        lnet.attach(8, MatchEntry::bits(0x77), MdSpec::new(vec![0u8; 65536]).options(o), &eq)
            .unwrap();
        lnet.attach(9, MatchEntry::bits(0x55), MdSpec::new(vec![3u8; 65536]).options(o), &eq)
            .unwrap();
        let drain = async {
            loop {
                let _ = eq.next().await;
            }
        };
        futures_lite::future::or(drain, lnet.stopped()).await;
    })
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let client = Node::start(config("127.0.0.2@tcp", port, 1), move |lnet: Lnet| async move {
        let srv = ProcessId::lustre(nid("127.0.0.1@tcp"));
        lnet.ping(srv, T).await.unwrap();
        lnet.put_and_wait(vec![1u8; 4096], srv, 8, 0x77, 0, true, T).await.unwrap();
        lnet.get_and_wait(vec![0u8; 2048], srv, 9, 0x55, 0, T).await.unwrap();
        tx.send(()).unwrap();
    })
    .unwrap();
    client.join().unwrap();
    rx.recv_timeout(Duration::from_secs(1)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    server.stop();
    server.join().unwrap();
    // SAFETY-free stop: SIGINT lets tshark finish the file.
    let _ = Command::new("kill").args(["-INT", &cap.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cap.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tshark did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The LNet dissector's view.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("tcp.port=={port},lnet"), "-Y", "lnet.msg_type", "-T", "fields"])
        // lnet.nid.addr occurs twice per header: the destination NID, then the source.
        .args([
            "-e",
            "lnet.msg_type",
            "-e",
            "lnet.nid.addr",
            "-e",
            "lnet.nid.type",
            "-e",
            "lnet.ptl_index",
        ])
        .args(["-e", "lnet.msg_dst_match_bits", "-E", "separator=|", "-E", "occurrence=a"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("tshark lnet fields:\n{text}");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    let has = |ty: &str, src: &str, dst: &str, ptl: Option<&str>| {
        rows.iter().any(|r| {
            r.len() >= 4
                && r[0] == ty
                && r[1] == format!("{dst},{src}")
                && r[2] == "2,2" // SOCKLND: both NIDs on tcp
                && ptl.is_none_or(|p| r[3] == p)
        })
    };
    let (c, s) = ("127.0.0.2", "127.0.0.1");
    // Discovery / lctl ping: GET on portal 0, REPLY back.
    assert!(has("2", c, s, Some("0")), "ping GET missing:\n{text}");
    assert!(
        rows.iter().any(|r| r.len() >= 5 && r[3] == "0" && r[4] == "0x8000000000000000"),
        "{text}"
    );
    assert!(has("3", s, c, None), "REPLY missing:\n{text}");
    // PUT to portal 8 and its ACK; GET from portal 9.
    assert!(has("1", c, s, Some("8")), "PUT missing:\n{text}");
    assert!(has("0", s, c, None), "ACK missing:\n{text}");
    assert!(has("2", c, s, Some("9")), "GET on portal 9 missing:\n{text}");

    // The openings, as plain TCP: acceptor request (magic 0xacce7100, version 1) then a V3
    // hello (magic 0x45726963) naming both NIDs.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            &format!("tcp.dstport=={port} && tcp.len>=72"),
            "-T",
            "fields",
            "-e",
            "tcp.payload",
        ])
        .output()
        .unwrap();
    let payloads = String::from_utf8_lossy(&out.stdout);
    let opens: Vec<&str> =
        payloads.lines().filter(|p| p.replace(':', "").starts_with("0071ceac01000000")).collect();
    assert!(opens.len() >= 3, "expected three typed connections to open:\n{payloads}");
    for o in &opens {
        let hex = o.replace(':', "");
        // Target NID 127.0.0.1@tcp, hello magic and version 3.
        assert_eq!(&hex[16..32], "0100007f00000200", "{hex}");
        assert_eq!(&hex[32..48], "6369724503000000", "{hex}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

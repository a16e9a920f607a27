//! tshark's LNet/Lustre dissectors (Wireshark 4.0) decode the synthetic conversation built with
//! proto's encoders: every opcode as request and reply, NIDs matching the IP addresses, and no
//! malformed-packet or expert error outside the cases docs/wire-coverage.md lists, where the
//! 4.0 dissector (written for Lustre 2.10) is older than 2.15 or does not decode bulk data.
//!
//! Also keeps docs/wire-coverage.md in step with the code: one row per named opcode, a format
//! column that matches `rmf::request_format`, and a tshark column that matches what this file
//! checks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

#[path = "support/conversation.rs"]
mod conversation;

use proto::opcode::Opcode;
use proto::rmf;
use std::collections::HashSet;
use std::process::Command;

fn tshark_available() -> bool {
    Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success())
}

struct Row {
    frame: u32,
    ip_src: String,
    ip_dst: String,
    nid_addrs: Vec<String>,
    nid_types: Vec<String>,
    portal: Option<u32>,
    opc: Option<u32>,
    pb_type: Option<u32>,
    expert: String,
}

fn num(s: &str) -> Option<u32> {
    let s = s.split(',').next()?.trim();
    if s.is_empty() { None } else { s.parse().ok() }
}

fn decode(path: &std::path::Path) -> Vec<Row> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(path)
        .args([
            "-d",
            "tcp.port==988,lnet",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "separator=/t",
        ])
        .args([
            "-e",
            "frame.number",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "lnet.nid.addr",
            "-e",
            "lnet.nid.type",
        ])
        .args([
            "-e",
            "lnet.ptl_index",
            "-e",
            "lustre.ptlrpc_body.pb_opc",
            "-e",
            "lustre.ptlrpc_body.pb_type",
            "-e",
            "_ws.expert",
        ])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("");
            Row {
                frame: get(0).parse().unwrap(),
                ip_src: get(1).into(),
                ip_dst: get(2).into(),
                nid_addrs: get(3).split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
                nid_types: get(4).split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
                portal: num(get(5)),
                opc: num(get(6)),
                pb_type: num(get(7)),
                expert: get(8).into(),
            }
        })
        .collect()
}

#[test]
fn tshark_decodes_the_synthetic_conversation() {
    if !tshark_available() {
        assert!(
            std::env::var_os("RUSTRE_REQUIRE_TSHARK").is_none(),
            "tshark is required (ci/setup installs it)"
        );
        eprintln!("SKIPPED: tshark not installed; run ci/setup");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rustre-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conversation.pcap");
    let n = conversation::write(std::io::BufWriter::new(std::fs::File::create(&path).unwrap()))
        .unwrap();
    let rows = decode(&path);
    assert_eq!(rows.len(), n, "every packet read back");

    // Every opcode as a request (4711) and as a reply (4713).
    let seen: HashSet<(u32, u32)> =
        rows.iter().filter_map(|r| Some((r.opc?, r.pb_type?))).collect();
    for op in conversation::OPCODES {
        for t in [4711, 4713] {
            assert!(seen.contains(&(op.raw(), t)), "{} not decoded with pb_type {t}", op.name());
        }
    }

    // NIDs: every LNet header's dest and source NIDs are the TCP addresses, on tcp (type 2).
    let mut lnet_msgs = 0;
    for r in &rows {
        if r.nid_addrs.is_empty() {
            continue;
        }
        lnet_msgs += 1;
        // The LNet header's NIDs come first; config records inside llog chunks add more.
        assert_eq!(
            r.nid_addrs[..2],
            [r.ip_dst.clone(), r.ip_src.clone()],
            "frame {} NIDs",
            r.frame
        );
        assert_eq!(r.nid_types[..2], ["2", "2"], "frame {} NID types", r.frame);
    }
    assert!(lnet_msgs > 40, "LNet messages decoded: {lnet_msgs}");

    // Expert errors only in the documented cases.
    for r in rows.iter().filter(|r| !r.expert.is_empty()) {
        let bulk = matches!(r.portal, Some(8 | 14 | 33)) && r.opc.is_none();
        let llog_create_req = r.opc == Some(501) && r.pb_type == Some(4711);
        let next_block_rep = r.opc == Some(502) && r.pb_type == Some(4713);
        assert!(
            bulk || llog_create_req || next_block_rep,
            "undocumented expert info in frame {}: {}",
            r.frame,
            r.expert
        );
    }

    // The verbose decode runs cleanly and shows no malformed packet outside those frames.
    let v = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-d", "tcp.port==988,lnet", "-V"])
        .output()
        .unwrap();
    assert!(v.status.success());
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(!text.contains("[Malformed Packet"), "a packet is malformed as a whole");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_opcode_has_an_accurate_row() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire-coverage.md"))
            .unwrap();
    for &op in Opcode::ALL {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {} | {} |", op.raw(), op.name())))
            .unwrap_or_else(|| {
                panic!("docs/wire-coverage.md has no row for {} ({})", op.name(), op.raw())
            });
        let cols: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let want_fmt =
            rmf::request_format(op).map_or("—".to_string(), |f| format!("RQF_{}", f.id));
        assert_eq!(cols[2], want_fmt, "format column of {}", op.name());
        let want_tshark = if conversation::OPCODES.contains(&op) { "yes" } else { "—" };
        assert_eq!(cols[5], want_tshark, "tshark column of {}", op.name());
    }
}

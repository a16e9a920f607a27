//! The `rlfs` CLI against a running all-in-one file system: the README's commands, their
//! output formats (lfs's and coreutils'), and non-zero exits with a message on failure.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test: a failure is a test failure")]

mod common;

use common::{Server, TempDir, free_port, rustre};
use std::path::PathBuf;
use std::process::{Command, Output};

/// The rlfs binary beside rustre (built by the workspace; built here when missing).
fn rlfs_bin() -> PathBuf {
    let p = PathBuf::from(rustre()).with_file_name("rlfs");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "-p", "client", "--bin", "rlfs"])
            .status()
            .expect("cargo build rlfs");
        assert!(st.success());
    }
    p
}

struct Rlfs {
    bin: PathBuf,
    port: u16,
}

impl Rlfs {
    fn run(&self, args: &[&str]) -> Output {
        let port = self.port.to_string();
        Command::new(&self.bin)
            .args(["--mgs", "127.0.0.1@tcp", "--fsname", "rustre", "--port", &port])
            .args(args)
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "rlfs {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn fails(&self, args: &[&str], msg: &str) {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "rlfs {args:?} should fail");
        assert!(err.contains(msg), "rlfs {args:?}: {err:?} lacks {msg:?}");
    }
}

#[test]
fn readme_commands_and_formats() {
    let dir = TempDir::new("rlfs");
    let srv = Server::all_in_one(dir.path(), free_port());
    let r = Rlfs { bin: rlfs_bin(), port: srv.port };

    r.ok(&["mkdir", "/a"]);
    r.ok(&["setstripe", "-c", "2", "-S", "4M", "/a/striped"]);
    let ls = r.ok(&["ls", "-l", "/a"]);
    let line = ls.lines().find(|l| l.ends_with(" striped")).expect(&ls);
    assert!(line.starts_with("-rw-r--r--  1 "), "{line}");
    assert!(ls.starts_with("total "), "{ls}");

    let gs = r.ok(&["getstripe", "/a/striped"]);
    let lines: Vec<&str> = gs.lines().collect();
    assert_eq!(lines[0], "/a/striped");
    assert_eq!(lines[1], "lmm_stripe_count:  2");
    assert_eq!(lines[2], "lmm_stripe_size:   4194304");
    assert_eq!(lines[3], "lmm_pattern:       raid0");
    assert_eq!(lines[4], "lmm_layout_gen:    0");
    assert!(lines[5].starts_with("lmm_stripe_offset: "));
    assert_eq!(lines[6], "\tobdidx\t\t objid\t\t objid\t\t group");
    let mut osts: Vec<&str> =
        lines[7..9].iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    osts.sort_unstable();
    assert_eq!(osts, ["0", "1"]);
    assert_eq!(r.ok(&["getstripe", "-c", "/a/striped"]).trim(), "2");
    assert_eq!(r.ok(&["getstripe", "-S", "/a/striped"]).trim(), "4194304");

    // Directory defaults, inherited by new files, and removed with -d.
    r.ok(&["setstripe", "-c", "-1", "-S", "2M", "/a"]);
    assert_eq!(
        r.ok(&["getstripe", "-d", "/a"]),
        "/a\nstripe_count:  -1 stripe_size:   2097152 pattern:       raid0 stripe_offset: -1\n\n"
    );
    r.ok(&["setstripe", "/a/inherits"]);
    assert_eq!(r.ok(&["getstripe", "-c", "-S", "/a/inherits"]).trim(), "2 2097152");
    r.ok(&["setstripe", "-d", "/a"]);
    assert!(r.ok(&["getstripe", "-d", "/a"]).contains("stripe_count:  1 stripe_size:   1048576"));

    // df: lfs's columns and the summary (blocks from the OSTs only).
    let df = r.ok(&["df"]);
    let rows: Vec<&str> = df.lines().collect();
    assert_eq!(
        rows[0],
        "UUID                   1K-blocks        Used   Available Use%  Mounted on"
    );
    assert!(rows[1].starts_with("rustre-MDT0000_UUID "), "{df}");
    assert!(rows[1].ends_with("127.0.0.1@tcp:/rustre[MDT:0]"), "{df}");
    assert!(rows[2].starts_with("rustre-OST0000_UUID ") && rows[2].ends_with("[OST:0]"));
    assert!(rows[3].starts_with("rustre-OST0001_UUID ") && rows[3].ends_with("[OST:1]"));
    assert_eq!(rows[4], "");
    let total = |row: &str| row.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
    assert!(rows[5].starts_with("filesystem_summary:"));
    assert_eq!(total(rows[5]), total(rows[2]) + total(rows[3]));
    let dfh = r.ok(&["df", "-h"]);
    assert!(dfh.lines().next().unwrap().contains("bytes"));
    assert!(dfh.lines().nth(2).unwrap().contains('M') || dfh.lines().nth(2).unwrap().contains('G'));
    let dfi = r.ok(&["df", "-i"]);
    assert!(
        dfi.starts_with(
            "UUID                      Inodes       IUsed       IFree IUse%  Mounted on"
        ),
        "{dfi}"
    );

    // Namespace commands.
    r.ok(&["ln", "/a/striped", "/a/hard"]);
    r.ok(&["ln", "-s", "striped", "/a/soft"]);
    let ls = r.ok(&["ls", "-l", "/a"]);
    assert!(
        ls.lines().any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("soft -> striped")),
        "{ls}"
    );
    assert!(ls.lines().any(|l| l.starts_with("-rw-r--r--  2 ") && l.ends_with(" hard")), "{ls}");
    let st = r.ok(&["stat", "/a/hard"]);
    assert!(st.starts_with("  File: /a/hard\n  Size: 0 "), "{st}");
    assert!(st.contains("regular empty file") && st.contains("Links: 2"), "{st}");
    assert!(st.contains("Access: (0644/-rw-r--r--)"), "{st}");
    let fid = r.ok(&["path2fid", "/a/striped"]);
    assert!(fid.starts_with("[0x") && fid.trim_end().ends_with(']'), "{fid}");
    assert!(st.contains(fid.trim()), "stat shows the same FID: {st}");
    r.ok(&["mkdir", "/b"]);
    r.ok(&["mv", "/a/hard", "/b"]);
    assert_eq!(r.ok(&["ls", "/b"]), "hard\n");
    r.ok(&["rm", "/b/hard"]);
    r.ok(&["rmdir", "/b"]);
    r.ok(&["rm", "-r", "/a"]);
    assert_eq!(r.ok(&["ls", "/"]), "");

    // Failures: a message and a non-zero exit.
    r.fails(&["rmdir", "/nope"], "No such file or directory");
    r.ok(&["mkdir", "/c"]);
    r.fails(&["mkdir", "/c"], "File exists");
    r.ok(&["mkdir", "/c/d"]);
    r.fails(&["rmdir", "/c"], "Directory not empty");
    r.fails(&["setstripe", "-S", "100", "/c/x"], "not a multiple of 64 KiB");
    r.fails(&["ls", &format!("/{}", "x".repeat(256))], "File name too long");
    let o = Command::new(&r.bin)
        .args(["--mgs", "127.0.0.9@tcp", "--port", &srv.port.to_string(), "--timeout", "1", "df"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot mount 127.0.0.9@tcp:/rustre"));
}

//! FUSE mounts for the end-to-end tests: `rlfs mount` processes on real mount points (root).

use super::rustre;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rlfs binary beside rustre, brought up to date once per test process: `cargo nextest
/// run -p appliance` builds only this package's binaries, and a stale rlfs tests old code.
pub fn rlfs_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "client", "--bin", "rlfs"]);
        if cfg!(not(debug_assertions)) {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo build rlfs");
        assert!(st.success());
    });
    PathBuf::from(rustre()).with_file_name("rlfs")
}

/// FUSE mounts need root here (/dev/fuse is root-only); CI runs as root and sets
/// RUSTRE_REQUIRE_FUSE, which turns a skip into a failure.
pub fn can_mount() -> bool {
    if nix::unistd::geteuid().is_root() && Path::new("/dev/fuse").exists() {
        return true;
    }
    assert!(std::env::var_os("RUSTRE_REQUIRE_FUSE").is_none(), "FUSE tests need root");
    eprintln!("skipped: FUSE mounts need root and /dev/fuse");
    false
}

/// A mount by its own `rlfs mount` process; unmounted (lazily if need be) on drop, so a
/// failing test never leaves a mount behind.
pub struct Mount {
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Mount {
    /// `rlfs mount 127.0.0.1@tcp:/rustre DIR -o OPTS` against the server on `port`.
    pub fn new(port: u16, dir: &Path, opts: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.with_extension("log");
        let o = Command::new(rlfs_bin())
            .args(["--port", &port.to_string(), "mount", "127.0.0.1@tcp:/rustre"])
            .arg(dir)
            .args(["-o", opts, "--log"])
            .arg(&log)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "rlfs mount failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Mount { dir: dir.to_path_buf(), log }
    }

    /// A path inside the mount.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    /// The same as a string.
    pub fn p(&self, p: &str) -> String {
        self.path(p).display().to_string()
    }

    /// What the mount process logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new(rlfs_bin())
            .arg("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// `rlfs --port PORT ARGS...`, which must succeed; its stdout.
pub fn rlfs(port: u16, args: &[&str]) -> String {
    let o = Command::new(rlfs_bin()).args(["--port", &port.to_string()]).args(args).output();
    let o = o.unwrap();
    assert!(o.status.success(), "rlfs {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

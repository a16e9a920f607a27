//! Shared harness of the end-to-end tests: a real `rustre` process on a free port, real
//! clients over TCP.
#![allow(dead_code, unreachable_pub)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failure is a test failure"
)]

pub mod mount;

use client::{Client, ClientConfig};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (the server and its clients all use it, on their own
/// addresses).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "rustre-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // RUSTRE_KEEP=1 keeps images and logs of failed runs for a look.
        if std::env::var_os("RUSTRE_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `rustre` process.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    pub args: Vec<String>,
}

pub fn rustre() -> &'static str {
    env!("CARGO_BIN_EXE_rustre")
}

impl Server {
    /// `rustre serve --data DIR` on `port`, two shards, 1 GiB sparse targets.
    pub fn all_in_one(dir: &Path, port: u16) -> Server {
        Server::all_in_one_sized(dir, port, "1G")
    }

    /// The same with targets of `size` (e.g. "3G").
    pub fn all_in_one_sized(dir: &Path, port: u16, size: &str) -> Server {
        let args = vec![
            "serve".to_string(),
            "--data".into(),
            dir.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--cores".into(),
            "2".into(),
            "--size".into(),
            size.into(),
            "--accept-all".into(),
        ];
        Server::spawn(args, port, &dir.join("rustre.log"))
    }

    /// Any `rustre` command line, waiting for "serving".
    pub fn spawn(args: Vec<String>, port: u16, log: &Path) -> Server {
        let mut s = Server { child: None, port, log: log.to_path_buf(), args };
        s.restart();
        s
    }

    /// Starts (again) with the same arguments; appends to the log.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let start_len = logf.metadata().unwrap().len();
        let child = Command::new(rustre())
            .args(&self.args)
            .env("RUSTRE_LOG", std::env::var("RUSTRE_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t = Instant::now();
        loop {
            let text = self.log_since(start_len);
            if text.contains("rustre: serving") {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rustre exited ({st}) before serving:\n{text}");
            }
            assert!(t.elapsed() < Duration::from_secs(60), "rustre did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_since(&self, off: u64) -> String {
        let mut f = std::fs::File::open(&self.log).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        String::from_utf8_lossy(v.get(usize::try_from(off).unwrap()..).unwrap_or_default())
            .into_owned()
    }

    /// The whole log.
    pub fn log_text(&self) -> String {
        self.log_since(0)
    }

    /// SIGINT, and a clean exit within 60 s.
    pub fn stop(&mut self) {
        let mut c = self.child.take().expect("not running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id().cast_signed()),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "rustre exited with {st}:\n{}", self.log_text());
                return;
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = c.kill();
                panic!("rustre did not stop on SIGINT:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        let mut c = self.child.take().expect("not running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// A client mounted from this server's MGS.
    pub fn mount(&self) -> Client {
        mount(self.port, "rustre")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Mounts `fsname` from the MGS on loopback at `port`.
pub fn mount(port: u16, fsname: &str) -> Client {
    let mut cfg = ClientConfig::new("127.0.0.1@tcp".parse().unwrap(), fsname);
    cfg.port = port;
    cfg.timeout = Duration::from_secs(10);
    Client::mount(cfg).unwrap()
}

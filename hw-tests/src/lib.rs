//! Hardware tests: boot the Rustre image in QEMU guests under TCG (emulated NVMe, virtio-net,
//! two-node file systems) and drive them over the serial console and the network.
//!
//! The tests are `#[ignore]`d: they need root, the image (`cargo run -p image -- build`) and
//! QEMU, and take minutes. `ci/test` runs them with `--run-ignored only`. Guest networking stays
//! inside a network namespace each test creates ([`Netns`]): a bridge with taps, QEMU and the
//! host-side tools all run in it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Test result: errors are messages.
pub type Result<T> = std::result::Result<T, String>;

/// Guest memory (MiB) and vCPUs: small, TCG is slow.
pub const GUEST_MEM_MIB: u32 = 1024;
/// Guest vCPUs.
pub const GUEST_CPUS: u32 = 2;
/// The bridge address in every test namespace; guests get .10, .11, ...
pub const HOST_ADDR: &str = "10.77.0.1";
/// HTTP tokens the test configurations use.
pub const READ_TOKEN: &str = "hw-read";
/// Admin token of the test configurations.
pub const ADMIN_TOKEN: &str = "hw-admin";

/// The image outputs, which must have been built.
#[derive(Debug, Clone)]
pub struct Image {
    /// Decompressed kernel.
    pub vmlinux: PathBuf,
    /// Initramfs.
    pub initramfs: PathBuf,
    /// Flashable raw image.
    pub raw: PathBuf,
}

impl Image {
    /// The outputs of `cargo run -p image -- build`.
    pub fn built() -> Result<Image> {
        let d = image::out_dir();
        let i = Image {
            vmlinux: d.join("vmlinux"),
            initramfs: d.join("initramfs.cpio"),
            raw: d.join("rustre.img"),
        };
        for p in [&i.vmlinux, &i.initramfs, &i.raw] {
            if !p.exists() {
                return Err(format!("{} missing: run `cargo run -p image -- build`", p.display()));
            }
        }
        Ok(i)
    }
}

/// A scratch directory for one test's disks and logs, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    /// Its path.
    pub dir: PathBuf,
}

impl Scratch {
    /// Creates `target/hw-tests/NAME` afresh (on the target's file system, not tmpfs: the
    /// host-side fsck uses O_DIRECT).
    pub fn new(name: &str) -> Result<Scratch> {
        let dir = image::target_dir().join("hw-tests").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch { dir })
    }

    /// A sparse disk file of `mib` MiB.
    pub fn disk(&self, name: &str, mib: u64) -> Result<PathBuf> {
        let p = self.dir.join(name);
        let f = std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        f.set_len(mib << 20).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A network namespace with a bridge (`br0`, [`HOST_ADDR`]/24); deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name.
    pub name: String,
    taps: usize,
}

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Netns {
    /// Creates the namespace and its bridge.
    pub fn new(name: &str) -> Result<Netns> {
        let _ = sh(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name])?;
        let ns = Netns { name: name.into(), taps: 0 };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["addr", "add", &format!("{HOST_ADDR}/24"), "dev", "br0"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// A new tap on the bridge; returns its name.
    pub fn tap(&mut self) -> Result<String> {
        let t = format!("tap{}", self.taps);
        self.taps += 1;
        self.ip(&["tuntap", "add", "dev", &t, "mode", "tap"])?;
        self.ip(&["link", "set", &t, "master", "br0"])?;
        self.ip(&["link", "set", &t, "up"])?;
        Ok(t)
    }

    /// A command that runs inside the namespace.
    #[must_use]
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has joined the namespace (for in-process sockets).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {path}: {e}"))?;
            f()
        })
        .join()
        .map_err(|_| "netns thread panicked".to_string())?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

/// A QEMU guest whose serial console is QEMU's stdio.
#[derive(Debug)]
pub struct Vm {
    /// A name for messages.
    pub name: String,
    child: Child,
    console: Arc<Mutex<Vec<u8>>>,
    /// Where in `console` the last command's output starts.
    mark: usize,
}

/// How a guest boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// OVMF from the raw image on a virtio disk.
    Uefi(PathBuf),
    /// `-kernel vmlinux -initrd INITRD -append CMDLINE`.
    Direct { vmlinux: PathBuf, initrd: PathBuf, cmdline: String },
}

impl Vm {
    /// Starts a guest: `disks` become NVMe controllers in order (nvme0n1, nvme1n1, ...), `tap`
    /// a virtio NIC (with MAC suffix `mac`), all inside `ns` when given.
    pub fn start(
        name: &str,
        boot: &Boot,
        disks: &[&Path],
        tap: Option<(&str, u8)>,
        ns: Option<&Netns>,
    ) -> Result<Vm> {
        let qemu = Path::new("qemu-system-x86_64");
        let mut c = match ns {
            Some(ns) => ns.command(qemu),
            None => Command::new(qemu),
        };
        c.args(["-accel", "tcg", "-nodefaults", "-display", "none", "-serial", "stdio"])
            .args(["-m", &GUEST_MEM_MIB.to_string(), "-smp", &GUEST_CPUS.to_string()])
            .args(["-no-reboot"]);
        match boot {
            Boot::Uefi(img) => {
                c.args(["-bios", "/usr/share/qemu/OVMF.fd"])
                    .arg("-drive")
                    .arg(format!("if=none,id=boot,format=raw,snapshot=on,file={}", img.display()))
                    .args(["-device", "virtio-blk-pci,drive=boot,bootindex=0"]);
            }
            Boot::Direct { vmlinux, initrd, cmdline } => {
                c.arg("-kernel")
                    .arg(vmlinux)
                    .arg("-initrd")
                    .arg(initrd)
                    .arg("-append")
                    .arg(cmdline);
            }
        }
        for (i, d) in disks.iter().enumerate() {
            c.arg("-drive")
                .arg(format!("if=none,id=d{i},format=raw,file={}", d.display()))
                .arg("-device")
                .arg(format!("nvme,serial=rustre{i},drive=d{i}"));
        }
        match tap {
            Some((t, mac)) => {
                c.arg("-netdev")
                    .arg(format!("tap,id=n0,ifname={t},script=no,downscript=no"))
                    .arg("-device")
                    .arg(format!("virtio-net-pci,netdev=n0,mac=52:54:00:77:00:{mac:02x}"));
            }
            None => {
                c.args(["-net", "none"]);
            }
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("qemu: {e}"))?;
        let console = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let buf = console.clone();
            let mut stream = stream;
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = stream.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut v) = buf.lock() {
                        v.extend_from_slice(&b[..n]);
                    }
                }
            });
        }
        Ok(Vm { name: name.into(), child, console, mark: 0 })
    }

    /// Everything the guest printed so far.
    #[must_use]
    pub fn console(&self) -> String {
        self.console.lock().map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default()
    }

    /// Waits until the console (after the last mark) contains `pat`; returns that output and
    /// moves the mark past it.
    pub fn wait_for(&mut self, pat: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console();
            if let Some(tail) = text.get(self.mark..)
                && let Some(i) = tail.find(pat)
            {
                let out = tail[..i + pat.len()].to_string();
                self.mark += i + pat.len();
                return Ok(out);
            }
            if Instant::now() > deadline {
                return Err(format!("{}: no {pat:?} within {timeout:?}", self.name));
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("{}: QEMU exited ({st}) waiting for {pat:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types a line on the serial console.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.child.stdin.as_mut().ok_or("qemu: no stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("console: {e}"))?;
        stdin.flush().map_err(|e| format!("console: {e}"))
    }

    /// Runs a REPL command and returns its output (up to the next prompt).
    pub fn command(&mut self, line: &str, prompt: &str, timeout: Duration) -> Result<String> {
        self.send(line)?;
        self.wait_for(prompt, timeout)
    }

    /// Waits for QEMU to exit by itself (the guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(format!("{}: still running after {timeout:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pulls the plug: SIGKILL to QEMU.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "===== console of {} =====\n{}\n===== end of console =====",
                self.name,
                self.console()
            );
        }
    }
}

/// An initrd for a fast boot: the image's initramfs with `/etc/rustre.toml` appended (the
/// kernel unpacks concatenated archives in order).
pub fn initrd_with_config(img: &Image, dir: &Path, name: &str, config: &str) -> Result<PathBuf> {
    let mut data = std::fs::read(&img.initramfs).map_err(|e| format!("initramfs: {e}"))?;
    let mut a = image::cpio::Archive::new();
    a.add(
        "etc/rustre.toml",
        image::cpio::Entry::File { mode: 0o644, data: config.as_bytes().to_vec() },
    );
    data.extend_from_slice(&a.encode(0));
    let p = dir.join(name);
    std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

/// The fast-boot kernel command line for a guest at `addr` (10.77.0.x).
#[must_use]
pub fn cmdline(addr: &str) -> String {
    format!("{} rustre.address={addr}/24 rustre.nid={addr}@tcp", image::CMDLINE)
}

/// The host-side binaries (`rlfs`, `rustre`), built for the host if needed.
pub fn host_bin(name: &str) -> Result<PathBuf> {
    static BUILT: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    BUILT
        .get_or_init(|| {
            sh(&[
                &cargo,
                "build",
                "-q",
                "-p",
                "client",
                "--bin",
                "rlfs",
                "-p",
                "appliance",
                "--bin",
                "rustre",
            ])
        })
        .clone()?;
    Ok(image::target_dir().join("debug").join(name))
}

/// Runs a host-side command in the namespace; returns stdout, or an error with stderr.
pub fn run_in(ns: &Netns, program: &Path, args: &[&str], timeout: Duration) -> Result<String> {
    let mut child = ns
        .command(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{} {}: timed out after {timeout:?}",
                program.display(),
                args.join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {}: {}\n{}{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A deterministic pseudo-random file of `len` bytes.
#[must_use]
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A plain HTTP/1.0 GET with a bearer token, from inside the namespace; returns the response.
pub fn http_get(ns: &Netns, addr: &str, path: &str, token: &str) -> Result<String> {
    let (addr, path, token) = (addr.to_string(), path.to_string(), token.to_string());
    ns.run(move || {
        let mut s = std::net::TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
}

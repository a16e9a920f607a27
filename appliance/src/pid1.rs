//! `rustre` as `/init` of the appliance image (design decision 9): what a PID 1 must do before
//! the node serves. Mount the kernel file systems, load the kernel modules the image carries
//! (in modules.dep order), raise rlimits, find the configuration (an `/etc/rustre.toml` in the
//! initramfs, else `rustre.toml` on the ESP), apply kernel command line overrides, bring the
//! network up, wait for the target devices, and reap orphans. A fatal error is printed on the
//! console and the box reboots after a delay; the kernel reboots on panic (`panic=10`).
//!
//! Kernel command line keys: `rustre.address=ADDR/PREFIX`, `rustre.gateway=ADDR`,
//! `rustre.interface=NAME` (override `[network]`), `rustre.nid=ADDR@tcp` (replaces the NIDs).

use crate::config::{ApplianceConfig, parse_cidr};
use crate::store::Backend;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a fatal error stays on the console before the reboot.
pub const FATAL_REBOOT_DELAY: Duration = Duration::from_secs(10);
/// How long devices (NICs, NVMe namespaces, the ESP) get to appear after their driver loads.
const DEVICE_WAIT: Duration = Duration::from_secs(20);
/// Where the image lists the modules to load.
const MODULE_LIST: &str = "/etc/rustre/modules";

/// Whether this process is the init process.
#[must_use]
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Prints the reason on the console, waits, then reboots. Never returns.
pub fn fatal(reason: &str) -> ! {
    eprintln!("rustre: FATAL: {reason}");
    eprintln!("rustre: rebooting in {} s", FATAL_REBOOT_DELAY.as_secs());
    std::thread::sleep(FATAL_REBOOT_DELAY);
    nix::unistd::sync();
    loop {
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        eprintln!("rustre: reboot: {e}");
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Everything before serving; returns the configuration to serve.
pub fn boot() -> Result<ApplianceConfig, String> {
    mount_kernel_fs()?;
    // Rustyline edits lines only on terminals it knows; on a serial line whose size and type it
    // cannot learn, plain cooked-mode reading is the robust choice.
    if std::env::var("TERM").map_or(true, |t| t == "linux") {
        // SAFETY: no other thread runs yet (PID 1 is still single-threaded here).
        unsafe { std::env::set_var("TERM", "dumb") };
    }
    spawn_reaper();
    set_rlimits();
    load_modules();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut cfg = find_config()?;
    apply_cmdline(&mut cfg, &cmdline)?;
    cfg.validate()?;
    configure_network(&cfg)?;
    wait_for_targets(&cfg)?;
    Ok(cfg)
}

fn mount_kernel_fs() -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    for (src, dst, fs, flags, data) in [
        ("proc", "/proc", "proc", nodev, None),
        ("sysfs", "/sys", "sysfs", nodev, None),
        ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755")),
        ("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755")),
    ] {
        let _ = std::fs::create_dir_all(dst);
        match mount(Some(src), dst, Some(fs), flags, data) {
            Ok(()) => {}
            // A kernel with CONFIG_DEVTMPFS_MOUNT already mounted /dev.
            Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => return Err(format!("mount {fs} on {dst}: {e}")),
        }
    }
    Ok(())
}

fn set_rlimits() {
    use nix::sys::resource::{Resource, setrlimit};
    const INF: u64 = libc::RLIM_INFINITY;
    // glommio locks its io_uring buffers; the fd limit bounds client connections.
    for (r, soft, hard) in [
        (Resource::RLIMIT_MEMLOCK, INF, INF),
        (Resource::RLIMIT_NOFILE, 1 << 20, 1 << 20),
        (Resource::RLIMIT_CORE, 0, 0),
    ] {
        if let Err(e) = setrlimit(r, soft, hard) {
            log::warn!("setrlimit {r:?}: {e}");
        }
    }
}

/// Reaps every child that ends, orphans included (they are re-parented to us).
fn spawn_reaper() {
    let r = std::thread::Builder::new().name("rustre-reaper".into()).spawn(|| {
        loop {
            use nix::sys::wait::{WaitPidFlag, waitpid};
            match waitpid(None, Some(WaitPidFlag::__WALL)) {
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    });
    if let Err(e) = r {
        log::warn!("reaper: {e}");
    }
}

/// modules.dep of the running kernel: module name to (path, dependency paths).
fn modules_dep(dir: &Path) -> Result<Vec<(String, String, Vec<String>)>, String> {
    let p = dir.join("modules.dep");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(path, deps)| {
            (
                module_name(path),
                path.to_string(),
                deps.split_whitespace().map(String::from).collect(),
            )
        })
        .collect())
}

/// `kernel/drivers/nvme/host/nvme-core.ko` -> `nvme_core`.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split(".ko").next().unwrap_or(base).replace('-', "_")
}

/// The load order for `roots`: every module after the modules it depends on, each once.
/// modules.dep lists a module's whole dependency closure, deepest last.
fn load_order(dep: &[(String, String, Vec<String>)], roots: &[String]) -> Vec<String> {
    let by_name: std::collections::HashMap<&str, (&str, &[String])> =
        dep.iter().map(|(n, p, d)| (n.as_str(), (p.as_str(), d.as_slice()))).collect();
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in roots {
        let r = r.replace('-', "_");
        let Some((path, deps)) = by_name.get(r.as_str()) else {
            log::warn!("module {r}: not in this image");
            continue;
        };
        for p in deps.iter().rev().map(String::as_str).chain(std::iter::once(*path)) {
            if seen.insert(p.to_string()) {
                order.push(p.to_string());
            }
        }
    }
    order
}

/// Loads the image's modules with finit_module(2). A module that fails is logged, not fatal:
/// the device it drives may simply be absent.
fn load_modules() {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new("/lib/modules").join(&release);
    let roots: Vec<String> = std::fs::read_to_string(MODULE_LIST)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let dep = match modules_dep(&dir) {
        Ok(d) => d,
        Err(e) => {
            log::warn!("modules: {e}");
            return;
        }
    };
    let t0 = Instant::now();
    let mut loaded = 0;
    for path in load_order(&dep, &roots) {
        match finit_module(&dir.join(&path)) {
            Ok(()) => loaded += 1,
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => log::warn!("module {path}: {e}"),
        }
    }
    log::info!("loaded {loaded} kernel modules in {} ms", t0.elapsed().as_millis());
}

fn finit_module(path: &Path) -> Result<(), nix::errno::Errno> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    let params = c"";
    // SAFETY: finit_module reads the open fd and the NUL-terminated parameter string, both
    // alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if r == 0 { Ok(()) } else { Err(nix::errno::Errno::last()) }
}

/// `/etc/rustre.toml` in the initramfs (fast boots append it), else `rustre.toml` on a FAT
/// partition (the ESP of the flashed image).
fn find_config() -> Result<ApplianceConfig, String> {
    let local = Path::new("/etc/rustre.toml");
    if local.exists() {
        log::info!("configuration: {}", local.display());
        return ApplianceConfig::load(local);
    }
    let deadline = Instant::now() + DEVICE_WAIT;
    loop {
        if let Some(c) = config_from_esp()? {
            return Ok(c);
        }
        if Instant::now() > deadline {
            return Err("no /etc/rustre.toml and no FAT partition holding rustre.toml".into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn config_from_esp() -> Result<Option<ApplianceConfig>, String> {
    use nix::mount::{MsFlags, mount, umount};
    let Ok(rd) = std::fs::read_dir("/sys/class/block") else { return Ok(None) };
    let mut parts: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().join("partition").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    parts.sort();
    let mnt = "/mnt/esp";
    let _ = std::fs::create_dir_all(mnt);
    for p in parts {
        let dev = format!("/dev/{p}");
        if mount(Some(dev.as_str()), mnt, Some("vfat"), MsFlags::MS_RDONLY, None::<&str>).is_err() {
            continue;
        }
        let file = Path::new(mnt).join("rustre.toml");
        let text = std::fs::read_to_string(&file);
        let _ = umount(mnt);
        if let Ok(text) = text {
            log::info!("configuration: rustre.toml on {dev}");
            return ApplianceConfig::from_toml(&text)
                .map(Some)
                .map_err(|e| format!("rustre.toml on {dev}: {e}"));
        }
    }
    Ok(None)
}

fn apply_cmdline(cfg: &mut ApplianceConfig, cmdline: &str) -> Result<(), String> {
    for w in cmdline.split_whitespace() {
        let Some((k, v)) = w.split_once('=') else { continue };
        match k {
            "rustre.address" => cfg.iface.address = Some(parse_cidr(v)?),
            "rustre.gateway" => {
                cfg.iface.gateway = Some(v.parse().map_err(|e| format!("{w}: {e}"))?);
            }
            "rustre.interface" => cfg.iface.name = v.to_string(),
            "rustre.nid" => cfg.nids = vec![v.parse().map_err(|e| format!("{w}: {e}"))?],
            _ => {}
        }
    }
    Ok(())
}

/// Waits for `path` to exist.
fn wait_for(path: &Path) -> bool {
    let deadline = Instant::now() + DEVICE_WAIT;
    while !path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn configure_network(cfg: &ApplianceConfig) -> Result<(), String> {
    if let Err(e) = ifconfig("lo", Some((Ipv4Addr::LOCALHOST, 8))) {
        log::warn!("lo: {e}");
    }
    let Some(addr) = cfg.iface.address else {
        log::info!("network: no address configured");
        return Ok(());
    };
    let name = &cfg.iface.name;
    // Not fatal: the serial console still manages a box whose NIC is missing or renamed.
    if !wait_for(&Path::new("/sys/class/net").join(name)) {
        log::error!("network: no interface {name}; serving on the console only");
        return Ok(());
    }
    ifconfig(name, Some(addr)).map_err(|e| format!("network {name}: {e}"))?;
    if let Some(gw) = cfg.iface.gateway {
        default_route(gw).map_err(|e| format!("network: default route via {gw}: {e}"))?;
    }
    log::info!("network: {name} {}/{}", addr.0, addr.1);
    Ok(())
}

fn sockaddr_in(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or_default(),
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(a).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; every bit pattern is valid for both.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl_sock<T>(req: libc::c_ulong, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: a plain socket call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `arg` is the structure the request expects (ifreq or rtentry), alive for the call.
    let r = unsafe { libc::ioctl(fd, req, std::ptr::from_mut(arg)) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if r < 0 { Err(err) } else { Ok(()) }
}

fn ifreq(name: &str) -> std::io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= r.ifr_name.len() {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = libc::c_char::from_ne_bytes([s]);
    }
    Ok(r)
}

/// Sets an interface's address and netmask and brings it up.
fn ifconfig(name: &str, addr: Option<(Ipv4Addr, u8)>) -> std::io::Result<()> {
    if let Some((a, prefix)) = addr {
        let mut r = ifreq(name)?;
        r.ifr_ifru.ifru_addr = sockaddr_in(a);
        ioctl_sock(libc::SIOCSIFADDR, &mut r)?;
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        let mut r = ifreq(name)?;
        r.ifr_ifru.ifru_netmask = sockaddr_in(Ipv4Addr::from(mask));
        ioctl_sock(libc::SIOCSIFNETMASK, &mut r)?;
    }
    let mut r = ifreq(name)?;
    ioctl_sock(libc::SIOCGIFFLAGS, &mut r)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = unsafe { r.ifr_ifru.ifru_flags };
    let up = libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).unwrap_or(1);
    r.ifr_ifru.ifru_flags = flags | up;
    ioctl_sock(libc::SIOCSIFFLAGS, &mut r)
}

fn default_route(gw: Ipv4Addr) -> std::io::Result<()> {
    // SAFETY: rtentry is plain old data; all zeroes is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(gw);
    rt.rt_flags = libc::c_ushort::try_from(libc::RTF_UP | libc::RTF_GATEWAY).unwrap_or(0);
    ioctl_sock(libc::SIOCADDRT, &mut rt)
}

fn wait_for_targets(cfg: &ApplianceConfig) -> Result<(), String> {
    for t in &cfg.targets {
        if let Backend::Dev(p) = &t.backend
            && !wait_for(p)
        {
            return Err(format!("{} {}: no device {}", t.kind.as_str(), t.index, p.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_load_first_and_once() {
        let dep = modules_dep_from(
            "kernel/nvme.ko: kernel/nvme-core.ko kernel/t10-pi.ko kernel/crc-t10dif.ko\n\
             kernel/nvme-core.ko:\n\
             kernel/t10-pi.ko: kernel/crc-t10dif.ko\n\
             kernel/crc-t10dif.ko:\n\
             kernel/vfat.ko: kernel/fat.ko\n\
             kernel/fat.ko:\n",
        );
        let order =
            load_order(&dep, &["nvme".into(), "t10_pi".into(), "vfat".into(), "nope".into()]);
        assert_eq!(
            order,
            [
                "kernel/crc-t10dif.ko",
                "kernel/t10-pi.ko",
                "kernel/nvme-core.ko",
                "kernel/nvme.ko",
                "kernel/fat.ko",
                "kernel/vfat.ko"
            ]
        );
    }

    fn modules_dep_from(text: &str) -> Vec<(String, String, Vec<String>)> {
        let dir = std::env::temp_dir().join(format!("rustre-pid1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("modules.dep"), text).unwrap();
        let d = modules_dep(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        d
    }

    #[test]
    fn cmdline_overrides_network() {
        let mut c = ApplianceConfig::embedded(Path::new("/d"), 1 << 30);
        apply_cmdline(
            &mut c,
            "console=ttyS0 rustre.address=10.9.0.2/24 rustre.gateway=10.9.0.1 rustre.nid=10.9.0.2@tcp",
        )
        .unwrap();
        assert_eq!(c.iface.address, Some(([10, 9, 0, 2].into(), 24)));
        assert_eq!(c.iface.gateway, Some([10, 9, 0, 1].into()));
        assert_eq!(c.nids, vec!["10.9.0.2@tcp".parse().unwrap()]);
        assert!(apply_cmdline(&mut c, "rustre.address=10.9.0.2").is_err());
    }
}

//! The image build, step by step. Every step shells out to the tool Debian ships for it
//! (apt-get, dpkg-deb, xz, objcopy, sgdisk, mkfs.vfat, mtools); the initramfs is written here.

use crate::cpio::{Archive, Entry};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The pinned Debian kernel package (bookworm's 6.1 line).
pub const KERNEL_PACKAGE: &str = "linux-image-6.1.0-56-amd64";
/// Its pinned version.
pub const KERNEL_VERSION: &str = "6.1.192-2";
/// `SOURCE_DATE_EPOCH` when the environment gives none (2026-01-01T00:00:00Z).
pub const DEFAULT_EPOCH: u32 = 1_767_225_600;

/// Kernel modules `rustre` loads at boot (with their dependencies, from modules.dep), in this
/// order. crc32_generic is a runtime dependency of rdma_rxe that modules.dep misses, and
/// vfio_iommu_type1 is only a softdep of vfio. vfat and its code pages read the ESP.
pub const MODULES: &[&str] = &[
    "nvme",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "e1000",
    "ahci",
    "sd_mod",
    "crc32_generic",
    "rdma_rxe",
    "ib_uverbs",
    "vfio_iommu_type1",
    "vfio_pci",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "vfat",
];

/// Userspace verbs: the library, the rxe and efa providers and what they link to.
const VERBS_PACKAGES: &[&str] =
    &["libibverbs1", "ibverbs-providers", "libnl-3-200", "libnl-route-3-200"];

/// Host libraries the dynamic verbs libraries need (libgcc_s is not listed by ldd).
const HOST_LIBS: &[&str] = &[
    "lib/x86_64-linux-gnu/libc.so.6",
    "lib/x86_64-linux-gnu/libgcc_s.so.1",
    "lib/x86_64-linux-gnu/libpthread.so.0",
    "lib/x86_64-linux-gnu/libdl.so.2",
    "lib64/ld-linux-x86-64.so.2",
];

/// The ESP's default configuration: MGS, MDT0000 and OST0000 on three NVMe namespaces,
/// eth0 on 192.168.10.10/24, the HTTP console on every address.
pub const DEFAULT_CONFIG: &str = include_str!("../rustre.toml");

/// What to build.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Debian kernel package name.
    pub kernel_package: String,
    /// Its version.
    pub kernel_version: String,
    /// Timestamp for every file in the outputs.
    pub epoch: u32,
    /// Output directory.
    pub out: PathBuf,
    /// Skip `cargo build` and use this `rustre` binary.
    pub rustre: Option<PathBuf>,
}

impl Settings {
    /// Defaults, overridden by `RUSTRE_KERNEL_PACKAGE`, `RUSTRE_KERNEL_VERSION` and
    /// `SOURCE_DATE_EPOCH`.
    #[must_use]
    pub fn from_env() -> Settings {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        Settings {
            kernel_package: var("RUSTRE_KERNEL_PACKAGE", KERNEL_PACKAGE),
            kernel_version: var("RUSTRE_KERNEL_VERSION", KERNEL_VERSION),
            epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(DEFAULT_EPOCH),
            out: crate::out_dir(),
            rustre: None,
        }
    }

    /// The kernel release (`6.1.0-56-amd64`).
    #[must_use]
    pub fn kernel_release(&self) -> String {
        self.kernel_package.trim_start_matches("linux-image-").to_string()
    }
}

/// What a build produced.
#[derive(Debug)]
pub struct Outputs {
    /// Decompressed kernel for `-kernel`.
    pub vmlinux: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The unified kernel image.
    pub uki: PathBuf,
    /// The flashable raw image.
    pub raw: PathBuf,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let st = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("{cmd:?}: {st}")) }
}

fn io<T>(p: &Path, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", p.display()))
}

/// Downloads `pkg` (at `version`, or the candidate) into `cache` unless present; returns the
/// .deb path.
fn download(cache: &Path, pkg: &str, version: Option<&str>) -> Result<PathBuf, String> {
    let find = || -> Option<PathBuf> {
        let prefix = format!("{pkg}_{}", version.unwrap_or(""));
        std::fs::read_dir(cache).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&prefix)
                    && n.ends_with(".deb")
                    && (version.is_some() || n.starts_with(&format!("{pkg}_")))
            })
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    let spec = version.map_or_else(|| pkg.to_string(), |v| format!("{pkg}={v}"));
    println!("image: apt-get download {spec}");
    run(Command::new("apt-get").args(["download", "-q", &spec]).current_dir(cache)).map_err(|e| {
        // Debian keeps only the current kernel of a release in its archive.
        format!("{e}\n(pin another version: RUSTRE_KERNEL_PACKAGE / RUSTRE_KERNEL_VERSION; see `apt-cache policy {pkg}`)")
    })?;
    find().ok_or_else(|| format!("apt-get download {spec}: no .deb"))
}

fn extract(deb: &Path, dir: &Path) -> Result<(), String> {
    if dir.exists() {
        io(dir, std::fs::remove_dir_all(dir))?;
    }
    io(dir, std::fs::create_dir_all(dir))?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir))
}

/// Builds the static `rustre`.
fn build_rustre() -> Result<PathBuf, String> {
    println!("image: building a static rustre");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .current_dir(crate::workspace_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-p",
            "appliance",
            "--bin",
            "rustre",
        ]))?;
    Ok(crate::target_dir().join("x86_64-unknown-linux-gnu/release/rustre"))
}

/// modules.dep of a module tree: module name (underscores) to (path, dependency paths).
fn read_modules_dep(moddir: &Path) -> Result<BTreeMap<String, (String, Vec<String>)>, String> {
    let p = moddir.join("modules.dep");
    let text = io(&p, std::fs::read_to_string(&p))?;
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else { continue };
        m.insert(
            module_name(path),
            (path.to_string(), deps.split_whitespace().map(String::from).collect()),
        );
    }
    Ok(m)
}

/// `kernel/drivers/nvme/host/nvme-core.ko.xz` -> `nvme_core`.
#[must_use]
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// Adds a file or symlink of a host tree to the archive at `rel`.
fn add_host(a: &mut Archive, root: &Path, rel: &str) -> Result<(), String> {
    let src = root.join(rel);
    let md = io(&src, std::fs::symlink_metadata(&src))?;
    if md.file_type().is_symlink() {
        let t = io(&src, std::fs::read_link(&src))?;
        a.add(rel, Entry::Symlink(t.to_string_lossy().into_owned()));
        // Follow relative links within the same directory.
        if t.is_relative() {
            let target = Path::new(rel).parent().unwrap_or(Path::new("")).join(&t);
            add_host(a, root, &normalize(&target))?;
        }
    } else {
        use std::os::unix::fs::PermissionsExt;
        let data = io(&src, std::fs::read(&src))?;
        a.add(rel, Entry::File { mode: md.permissions().mode() & 0o755, data });
    }
    Ok(())
}

/// Runs the whole build.
pub fn build(s: &Settings) -> Result<Outputs, String> {
    let t0 = Instant::now();
    let cache = s.out.join("cache");
    let work = s.out.join("work");
    io(&cache, std::fs::create_dir_all(&cache))?;
    io(&work, std::fs::create_dir_all(&work))?;
    let kver = s.kernel_release();

    // Kernel package and its module tree (the .deb has no modules.dep: depmod makes it).
    let deb = download(&cache, &s.kernel_package, Some(&s.kernel_version))?;
    let kdir = work.join("kernel");
    extract(&deb, &kdir)?;
    let modroot = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| kdir.join(d).join(&kver))
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("{}: no module tree for {kver}", deb.display()))?;
    let base = modroot.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(&kdir);
    run(Command::new("depmod").arg("-b").arg(base).arg(&kver))?;
    let dep = read_modules_dep(&modroot)?;

    // The module closure, and a modules.dep restricted to it.
    let mut closure = BTreeSet::new();
    for m in MODULES {
        let (path, deps) = dep.get(*m).ok_or_else(|| format!("module {m} not in {kver}"))?;
        closure.insert(path.clone());
        closure.extend(deps.iter().cloned());
    }
    let mut a = Archive::new();
    let mut depfile = String::new();
    for path in &closure {
        let name = module_name(path);
        let (_, deps) = dep.get(&name).ok_or_else(|| format!("{path} not in modules.dep"))?;
        let src = modroot.join(path);
        let mut data = io(&src, std::fs::read(&src))?;
        let mut path = path.clone();
        // Decompress here so finit_module needs no in-kernel decompressor.
        if let Some(p) = path.strip_suffix(".xz") {
            data = xz_decompress(&data)?;
            path = p.to_string();
        }
        let deps: Vec<String> =
            deps.iter().map(|d| d.trim_end_matches(".xz").to_string()).collect();
        depfile.push_str(&format!("{path}: {}\n", deps.join(" ")));
        a.add(&format!("lib/modules/{kver}/{path}"), Entry::File { mode: 0o644, data });
    }
    a.add(
        &format!("lib/modules/{kver}/modules.dep"),
        Entry::File { mode: 0o644, data: depfile.into_bytes() },
    );
    let roots: String = MODULES.iter().map(|m| format!("{m}\n")).collect();
    a.add("etc/rustre/modules", Entry::File { mode: 0o644, data: roots.into_bytes() });

    // Verbs provider libraries.
    for p in VERBS_PACKAGES {
        let deb = download(&cache, p, None)?;
        let d = work.join(p);
        extract(&deb, &d)?;
        for rel in walk(&d)? {
            let keep = (rel.starts_with("usr/lib/x86_64-linux-gnu/lib")
                || rel.starts_with("lib/x86_64-linux-gnu/lib"))
                && (rel.contains("libibverbs.so")
                    || rel.contains("libnl-")
                    || rel.contains("libefa.so")
                    || rel.contains("rxe")
                    || rel.contains("efa-rdmav"))
                || rel.starts_with("etc/libibverbs.d/rxe")
                || rel.starts_with("etc/libibverbs.d/efa");
            if keep {
                add_host(&mut a, &d, &rel)?;
            }
        }
    }
    for l in HOST_LIBS {
        add_host(&mut a, Path::new("/"), l)?;
    }

    // /init and the skeleton the kernel needs before /init runs.
    let rustre = match &s.rustre {
        Some(p) => p.clone(),
        None => build_rustre()?,
    };
    // A panic aborts without a backtrace, so the image carries no line tables or symbols. The
    // symbols' hashes and the build id depend on the checkout's path: without them two
    // checkouts of the same commit give the same binary.
    let stripped = work.join("rustre");
    run(Command::new("objcopy")
        .args(["--strip-all", "--remove-section=.note.gnu.build-id"])
        .arg(&rustre)
        .arg(&stripped))?;
    let data = io(&stripped, std::fs::read(&stripped))?;
    a.add("init", Entry::File { mode: 0o755, data });
    a.add("dev/console", Entry::CharDev(5, 1));
    a.add("dev/null", Entry::CharDev(1, 3));
    for d in ["proc", "sys", "run", "tmp", "mnt/esp", "var/lib/rustre"] {
        a.add(d, Entry::Dir);
    }
    a.add(
        "etc/rustre/release",
        Entry::File {
            mode: 0o644,
            data: format!("rustre {} kernel {kver}\n", env!("CARGO_PKG_VERSION")).into_bytes(),
        },
    );
    let initramfs = s.out.join("initramfs.cpio");
    io(&initramfs, std::fs::write(&initramfs, a.encode(s.epoch)))?;

    // vmlinux: the XZ payload of the bzImage, for fast PVH boots.
    let vmlinuz = kdir.join(format!("boot/vmlinuz-{kver}"));
    let bz = io(&vmlinuz, std::fs::read(&vmlinuz))?;
    let at = find(&bz, b"\xfd7zXZ\x00").ok_or("vmlinuz: no XZ payload")?;
    let vmlinux = s.out.join("vmlinux");
    io(&vmlinux, std::fs::write(&vmlinux, xz_decompress(&bz[at..])?))?;
    let vmlinuz_out = s.out.join("vmlinuz");
    io(&vmlinuz_out, std::fs::write(&vmlinuz_out, &bz))?;

    // The unified kernel image.
    let uki = s.out.join("rustre.efi");
    let osrel = work.join("os-release");
    let cmdline = work.join("cmdline");
    io(
        &osrel,
        std::fs::write(
            &osrel,
            format!("NAME=Rustre\nID=rustre\nVERSION_ID={}\n", env!("CARGO_PKG_VERSION")),
        ),
    )?;
    io(&cmdline, std::fs::write(&cmdline, crate::CMDLINE))?;
    let stub = Path::new("/usr/lib/systemd/boot/efi/linuxx64.efi.stub");
    let section = |name: &str, file: &Path, vma: u32| -> Vec<String> {
        vec![
            "--add-section".into(),
            format!("{name}={}", file.display()),
            "--change-section-vma".into(),
            format!("{name}={vma:#x}"),
        ]
    };
    let mut args = Vec::new();
    args.extend(section(".osrel", &osrel, 0x20000));
    args.extend(section(".cmdline", &cmdline, 0x30000));
    args.extend(section(".linux", &vmlinuz_out, 0x200_0000));
    args.extend(section(".initrd", &initramfs, 0x300_0000));
    run(Command::new("objcopy").args(&args).arg(stub).arg(&uki))?;
    // objcopy stamps the PE header with the current time: make it the build epoch.
    let mut pe = io(&uki, std::fs::read(&uki))?;
    set_pe_timestamp(&mut pe, s.epoch)?;
    io(&uki, std::fs::write(&uki, &pe))?;

    // The flashable image: GPT, one FAT32 ESP from 1 MiB, fixed GUIDs and volume id.
    let uki_len = io(&uki, std::fs::metadata(&uki))?.len();
    let esp_mib = (uki_len * 5 / 4 / (1 << 20) + 16).max(64);
    let raw = s.out.join("rustre.img");
    let _ = std::fs::remove_file(&raw);
    let total = (esp_mib + 2) << 20;
    {
        let f = io(&raw, std::fs::File::create(&raw))?;
        io(&raw, f.set_len(total))?;
    }
    let esp_sectors = esp_mib << 11;
    run(Command::new("sgdisk")
        .args(["-U", "52555354-5245-4000-8000-000000000001"])
        .arg(format!("-n=1:2048:{}", 2048 + esp_sectors - 1))
        .args(["-t=1:ef00", "-c=1:RUSTRE-ESP", "-u=1:52555354-5245-4000-8000-000000000002"])
        .arg(&raw)
        .stdout(std::process::Stdio::null()))?;
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "--invariant", "-i", "52555354", "-n", "RUSTRE", "--offset", "2048"])
        .arg(&raw)
        .arg((esp_mib << 10).to_string())
        .stdout(std::process::Stdio::null())
        // It notes that the image is longer than the ESP, which is the point.
        .stderr(std::process::Stdio::null()))?;
    let cfg = work.join("rustre.toml");
    io(&cfg, std::fs::write(&cfg, DEFAULT_CONFIG))?;
    for f in [&cfg, &uki] {
        run(Command::new("touch").arg("-d").arg(format!("@{}", s.epoch)).arg(f))?;
    }
    let img = format!("{}@@1M", raw.display());
    let mt = |tool: &str| {
        let mut c = Command::new(tool);
        c.env("SOURCE_DATE_EPOCH", s.epoch.to_string())
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img);
        c
    };
    run(mt("mmd").args(["::/EFI", "::/EFI/BOOT"]))?;
    run(mt("mcopy").arg("-m").arg(&uki).arg("::/EFI/BOOT/BOOTX64.EFI"))?;
    run(mt("mcopy").arg("-m").arg(&cfg).arg("::/rustre.toml"))?;
    let cfg_out = s.out.join("rustre.toml");
    io(&cfg_out, std::fs::write(&cfg_out, DEFAULT_CONFIG))?;

    // The extracted packages are big and rebuilt every time; the .debs stay cached.
    io(&work, std::fs::remove_dir_all(&work))?;

    let secs = t0.elapsed().as_secs_f64();
    let mib =
        |p: &Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / f64::from(1u32 << 20));
    println!("image: {} modules, kernel {kver}", closure.len());
    println!("image: vmlinux {:.1} MiB, initramfs {:.1} MiB", mib(&vmlinux), mib(&initramfs));
    println!("image: {} {:.1} MiB (UKI {:.1} MiB)", raw.display(), mib(&raw), mib(&uki));
    println!("image: built in {secs:.1} s");
    Ok(Outputs { vmlinux, initramfs, uki, raw })
}

/// Sets a PE image's COFF TimeDateStamp and recomputes the optional header's CheckSum.
pub fn set_pe_timestamp(pe: &mut [u8], epoch: u32) -> Result<(), String> {
    let rd = |b: &[u8], o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
    };
    let hdr = rd(pe, 0x3c).ok_or("PE: truncated")? as usize;
    if pe.get(hdr..hdr + 4) != Some(&b"PE\0\0"[..]) {
        return Err("PE: no signature".into());
    }
    let stamp = hdr + 8;
    let csum = hdr + 24 + 64;
    if pe.len() < csum + 4 {
        return Err("PE: truncated header".into());
    }
    pe[stamp..stamp + 4].copy_from_slice(&epoch.to_le_bytes());
    pe[csum..csum + 4].fill(0);
    // The PE checksum: 16-bit one's-complement-style sum of the file, plus its length.
    let mut sum: u64 = 0;
    for c in pe.chunks(2) {
        sum += u64::from(c[0]) | (u64::from(*c.get(1).unwrap_or(&0)) << 8);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    let total = u32::try_from(sum + pe.len() as u64).map_err(|_| "PE: too large")?;
    pe[csum..csum + 4].copy_from_slice(&total.to_le_bytes());
    Ok(())
}

/// `a/b/../c` -> `a/c`, lexically (for symlink targets inside a package tree).
fn normalize(p: &Path) -> String {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decompresses one XZ stream (ignoring what follows it) with xz(1).
fn xz_decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("xz: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("xz: no stdin")?;
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || {
        // xz stops reading after the stream; a broken pipe then is expected.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().map_err(|e| format!("xz: {e}"))?;
    let _ = feeder.join();
    if out.stdout.is_empty() {
        return Err(format!("xz: {}", out.status));
    }
    Ok(out.stdout)
}

/// Every file and symlink under `root`, relative, sorted.
fn walk(root: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in io(&d, std::fs::read_dir(&d))? {
            let e = io(&d, e)?;
            let p = e.path();
            let ft = io(&p, e.file_type())?;
            if ft.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_normalize() {
        assert_eq!(
            normalize(Path::new("usr/lib/x/libibverbs/../libefa.so.1")),
            "usr/lib/x/libefa.so.1"
        );
        assert_eq!(module_name("kernel/drivers/nvme/host/nvme-core.ko.xz"), "nvme_core");
    }

    #[test]
    fn pe_timestamp_and_checksum() {
        let mut pe = vec![0u8; 512];
        pe[0x3c] = 0x40;
        pe[0x40..0x44].copy_from_slice(b"PE\0\0");
        pe[300] = 0xab;
        set_pe_timestamp(&mut pe, 0x1234_5678).unwrap();
        assert_eq!(&pe[0x48..0x4c], &0x1234_5678u32.to_le_bytes());
        let csum = u32::from_le_bytes(pe[0x40 + 88..0x40 + 92].try_into().unwrap());
        // Sum of the 16-bit words without the checksum field, plus the length.
        let words: u32 = [0x40_u32, 0x4550, 0x5678, 0x1234, 0xab].iter().sum();
        assert_eq!(csum, words + 512);
        assert!(set_pe_timestamp(&mut [0u8; 64], 1).is_err());
    }
}

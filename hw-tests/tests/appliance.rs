//! The appliance image in QEMU (TCG): see the crate docs. Run as root after
//! `cargo run -p image -- build`: `cargo nextest run -p hw-tests --run-ignored only`.

// Test code: the helpers below run only inside tests, where a panic is the failure report.
#![allow(clippy::unwrap_used)]

use hw_tests::{
    ADMIN_TOKEN, Boot, Image, Netns, READ_TOKEN, Scratch, Vm, cmdline, host_bin, http_get,
    initrd_with_config, pattern, run_in,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Boot to the REPL prompt, formatting included, under TCG on a busy 2-core machine.
const BOOT: Duration = Duration::from_secs(300);
const CMD: Duration = Duration::from_secs(120);

fn config(fsname: &str, mgs: &str, targets: &[(&str, u32, &str)]) -> String {
    let mut c = format!(
        "fsname = \"{fsname}\"\ncores = 2\n[network]\naccept = \"all\"\n{mgs}\n[http]\n\
         listen = \"0.0.0.0:8080\"\nread_token = \"{READ_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n"
    );
    for (kind, index, backend) in targets {
        c.push_str(&format!(
            "[[target]]\nkind = \"{kind}\"\nindex = {index}\nbackend = \"{backend}\"\n"
        ));
    }
    c
}

/// Boots the guest to its prompt, returning the boot time.
fn boot(vm: &mut Vm, fsname: &str) -> Duration {
    let t0 = Instant::now();
    vm.wait_for(&format!("{fsname}> "), BOOT).unwrap();
    let t = t0.elapsed();
    eprintln!("{}: REPL prompt after {:.1} s", vm.name, t.as_secs_f64());
    t
}

fn shutdown(vm: &mut Vm) {
    vm.send("shutdown").unwrap();
    let st = vm.wait_exit(CMD).unwrap();
    assert!(st.success(), "{}: QEMU exit {st}", vm.name);
    assert!(vm.console().contains("stopped cleanly"), "{}: no clean stop", vm.name);
}

fn rlfs(ns: &Netns, mgs: &str, fsname: &str, args: &[&str]) -> Result<String, String> {
    let mut v = vec!["--mgs", mgs, "--fsname", fsname];
    v.extend_from_slice(args);
    run_in(ns, &host_bin("rlfs")?, &v, Duration::from_secs(600))
}

fn copy_in_out(ns: &Netns, dir: &Path, mgs: &str, fsname: &str, name: &str, len: usize, seed: u64) {
    let data = pattern(len, seed);
    let src = dir.join(format!("{name}.in"));
    let dst = dir.join(format!("{name}.out"));
    std::fs::write(&src, &data).unwrap();
    let t0 = Instant::now();
    rlfs(ns, mgs, fsname, &["cp", src.to_str().unwrap(), &format!(":/{name}")]).unwrap();
    let t1 = Instant::now();
    rlfs(ns, mgs, fsname, &["cp", &format!(":/{name}"), dst.to_str().unwrap()]).unwrap();
    eprintln!(
        "{name}: {} MiB in {:.1} s, out {:.1} s",
        len >> 20,
        (t1 - t0).as_secs_f64(),
        t1.elapsed().as_secs_f64()
    );
    assert!(std::fs::read(&dst).unwrap() == data, "{name}: bytes differ after the round trip");
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
}

/// 1. The flashable image boots with OVMF, formats its three NVMe targets, answers `status`
///    and `dl` on the serial console, and powers itself off on `shutdown`.
#[test]
#[ignore = "needs root, QEMU and the built image; ci/test runs it"]
fn uefi_image_boots_serves_console_and_powers_off() {
    let img = Image::built().unwrap();
    let s = Scratch::new("uefi").unwrap();
    let disks =
        [s.disk("mgs", 64).unwrap(), s.disk("mdt", 256).unwrap(), s.disk("ost", 256).unwrap()];
    let refs: Vec<&Path> = disks.iter().map(|p| p.as_path()).collect();
    let mut vm = Vm::start("uefi", &Boot::Uefi(img.raw.clone()), &refs, None, None).unwrap();
    boot(&mut vm, "rustre");
    let st = vm.command("status", "rustre> ", CMD).unwrap();
    assert!(st.contains("OST0000") || st.contains("ost"), "status: {st}");
    let dl = vm.command("dl", "rustre> ", CMD).unwrap();
    for t in ["MGS", "MDT0000", "OST0000"] {
        assert!(dl.contains(t), "dl lacks {t}: {dl}");
    }
    shutdown(&mut vm);
}

/// The fast boot of tests 2 and 3: file system `hwfs` with its MGS in memory, the MDT and the
/// OST on two NVMe disks (256 and 512 MiB, made in `s`), the NIC at 10.77.0.10.
fn nvme_pair(img: &Image, s: &Scratch) -> (Boot, [PathBuf; 2]) {
    let cfg = config(
        "hwfs",
        "",
        &[("mgs", 0, "mem"), ("mdt", 0, "dev:/dev/nvme0n1"), ("ost", 0, "dev:/dev/nvme1n1")],
    );
    let initrd = initrd_with_config(img, &s.dir, "initrd", &cfg).unwrap();
    let boot =
        Boot::Direct { vmlinux: img.vmlinux.clone(), initrd, cmdline: cmdline("10.77.0.10") };
    (boot, [s.disk("mdt", 256).unwrap(), s.disk("ost", 512).unwrap()])
}

/// 2. Fast boot with an MDT and an OST on NVMe and a NIC on the test's network: a 64 MiB file
///    goes in and out byte-exact, get_param answers over HTTP, the web page is served.
#[test]
#[ignore = "needs root, QEMU and the built image; ci/test runs it"]
fn fast_boot_copy_in_out_and_http() {
    let img = Image::built().unwrap();
    let s = Scratch::new("fast").unwrap();
    let mut ns = Netns::new("rustre-hw2").unwrap();
    let tap = ns.tap().unwrap();
    let (boot_cfg, disks) = nvme_pair(&img, &s);
    let refs: Vec<&Path> = disks.iter().map(|p| p.as_path()).collect();
    let mut vm = Vm::start("fast", &boot_cfg, &refs, Some((&tap, 10)), Some(&ns)).unwrap();
    boot(&mut vm, "hwfs");
    copy_in_out(&ns, &s.dir, "10.77.0.10@tcp", "hwfs", "big", 64 << 20, 2);

    let rustre = host_bin("rustre").unwrap();
    let out = run_in(
        &ns,
        &rustre,
        &[
            "console",
            "--http",
            "10.77.0.10:8080",
            "--token",
            READ_TOKEN,
            "get_param",
            "obdfilter.*.stats",
        ],
        CMD,
    )
    .unwrap();
    assert!(out.contains("hwfs-OST0000"), "get_param over HTTP: {out}");
    let page = http_get(&ns, "10.77.0.10:8080", "/", READ_TOKEN).unwrap();
    assert!(page.starts_with("HTTP/1.") && page.contains(" 200 "), "GET /: {page:.300}");
    assert!(page.to_ascii_lowercase().contains("<html"), "GET / is no page: {page:.300}");
    shutdown(&mut vm);
}

/// 3. Power cut: QEMU is killed while a stream of writes runs; booted again from the same
///    disks, every acknowledged write reads back intact, and after a clean shutdown the offline
///    check finds both targets clean.
#[test]
#[ignore = "needs root, QEMU and the built image; ci/test runs it"]
fn power_cut_keeps_acknowledged_writes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const FILE: usize = 1 << 20;
    let img = Image::built().unwrap();
    let s = Scratch::new("powercut").unwrap();
    let mut ns = Netns::new("rustre-hw3").unwrap();
    let tap = ns.tap().unwrap();
    let (boot_cfg, disks) = nvme_pair(&img, &s);
    let refs: Vec<&Path> = disks.iter().map(|p| p.as_path()).collect();
    let mut vm = Vm::start("powercut-1", &boot_cfg, &refs, Some((&tap, 10)), Some(&ns)).unwrap();
    boot(&mut vm, "hwfs");

    let ns = Arc::new(ns);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ns, acked, stop, dir) = (ns.clone(), acked.clone(), stop.clone(), s.dir.clone());
        std::thread::spawn(move || {
            for i in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let src = dir.join(format!("w{i}"));
                std::fs::write(&src, pattern(FILE, 100 + i)).unwrap();
                let r = rlfs(
                    &ns,
                    "10.77.0.10@tcp",
                    "hwfs",
                    &["cp", src.to_str().unwrap(), &format!(":/w{i}")],
                );
                let _ = std::fs::remove_file(&src);
                match r {
                    Ok(_) if !stop.load(Ordering::SeqCst) => acked.lock().unwrap().push(i),
                    // A copy that ends after the plug was pulled proves nothing either way.
                    _ => break,
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while acked.lock().unwrap().len() < 8 && Instant::now() < deadline && !writer.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Pull the plug in the middle of the next copy.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    vm.kill();
    let before = acked.lock().unwrap().clone();
    assert!(before.len() >= 8, "only {} writes acknowledged before the power cut", before.len());
    // The copy in flight waits for a server that is gone: end it (our own processes only).
    if let Ok(out) = std::process::Command::new("ip").args(["netns", "pids", &ns.name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = std::process::Command::new("kill").args(["-9", pid]).status();
        }
    }
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!("power cut after {} acknowledged 1 MiB writes", acked.len());
    drop(vm);

    let mut vm = Vm::start("powercut-2", &boot_cfg, &refs, Some((&tap, 10)), Some(&*ns)).unwrap();
    boot(&mut vm, "hwfs");
    for i in &acked {
        let dst = s.dir.join(format!("r{i}"));
        rlfs(&ns, "10.77.0.10@tcp", "hwfs", &["cp", &format!(":/w{i}"), dst.to_str().unwrap()])
            .unwrap();
        assert!(
            std::fs::read(&dst).unwrap() == pattern(FILE, 100 + i),
            "w{i} differs after the power cut"
        );
        let _ = std::fs::remove_file(&dst);
    }
    shutdown(&mut vm);
    let rustre = host_bin("rustre").unwrap();
    for d in &disks {
        let out = std::process::Command::new(&rustre).arg("fsck").arg(d).output().unwrap();
        assert!(
            out.status.success(),
            "fsck {}: {}{}",
            d.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// 4. Two appliances in two guests, the MGS and MDT on one and the OST on the other, form one
///    file system that the host uses.
#[test]
#[ignore = "needs root, QEMU and the built image; ci/test runs it"]
fn two_appliances_one_file_system() {
    let img = Image::built().unwrap();
    let s = Scratch::new("twonode").unwrap();
    let mut ns = Netns::new("rustre-hw4").unwrap();
    let (tap_a, tap_b) = (ns.tap().unwrap(), ns.tap().unwrap());
    let cfg_a = config("hwfs", "", &[("mgs", 0, "mem"), ("mdt", 0, "dev:/dev/nvme0n1")]);
    let cfg_b =
        config("hwfs", "mgs_nids = [\"10.77.0.10@tcp\"]", &[("ost", 0, "dev:/dev/nvme0n1")]);
    let boot_a = Boot::Direct {
        vmlinux: img.vmlinux.clone(),
        initrd: initrd_with_config(&img, &s.dir, "initrd-a", &cfg_a).unwrap(),
        cmdline: cmdline("10.77.0.10"),
    };
    let boot_b = Boot::Direct {
        vmlinux: img.vmlinux.clone(),
        initrd: initrd_with_config(&img, &s.dir, "initrd-b", &cfg_b).unwrap(),
        cmdline: cmdline("10.77.0.11"),
    };
    let (mdt, ost) = (s.disk("mdt", 256).unwrap(), s.disk("ost", 512).unwrap());
    let mut a = Vm::start("node-a", &boot_a, &[&mdt], Some((&tap_a, 10)), Some(&ns)).unwrap();
    boot(&mut a, "hwfs");
    let mut b = Vm::start("node-b", &boot_b, &[&ost], Some((&tap_b, 11)), Some(&ns)).unwrap();
    boot(&mut b, "hwfs");
    // The OST registers with the remote MGS and the MDT connects to it: wait until the MDT
    // sees it (the file system is usable from then on).
    let deadline = Instant::now() + BOOT;
    loop {
        let dl = a.command("dl", "hwfs> ", CMD).unwrap();
        if dl.contains("OST0000") {
            break;
        }
        assert!(Instant::now() < deadline, "the MDT never saw OST0000: {dl}");
        std::thread::sleep(Duration::from_secs(2));
    }
    copy_in_out(&ns, &s.dir, "10.77.0.10@tcp", "hwfs", "twonode", 8 << 20, 4);
    let df = rlfs(&ns, "10.77.0.10@tcp", "hwfs", &["df"]).unwrap();
    assert!(df.contains("OST0000") && df.contains("MDT0000"), "df: {df}");
    shutdown(&mut b);
    shutdown(&mut a);
}

/// A fatal boot error (a configured target device that never appears) is printed on the
/// console and the box reboots by itself (QEMU runs with -no-reboot, so it exits).
#[test]
#[ignore = "needs root, QEMU and the built image; ci/test runs it"]
fn fatal_error_is_printed_and_reboots() {
    let img = Image::built().unwrap();
    let s = Scratch::new("fatal").unwrap();
    let cfg = config("hwfs", "", &[("mgs", 0, "mem"), ("ost", 0, "dev:/dev/nvme0n1")]);
    let initrd = initrd_with_config(&img, &s.dir, "initrd", &cfg).unwrap();
    let boot_cfg =
        Boot::Direct { vmlinux: img.vmlinux.clone(), initrd, cmdline: image::CMDLINE.into() };
    let mut vm = Vm::start("fatal", &boot_cfg, &[], None, None).unwrap();
    vm.wait_for("FATAL: ost 0: no device /dev/nvme0n1", BOOT).unwrap();
    vm.wait_for("rebooting in", CMD).unwrap();
    vm.wait_exit(CMD).unwrap();
    assert!(vm.console().contains("reboot: Restarting system"), "no reboot");
}

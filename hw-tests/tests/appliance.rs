//! The appliance image in QEMU (TCG): see the crate docs. Run as root after
//! `cargo run -p image -- build`: `cargo nextest run -p hw-tests --run-ignored only`.

// Test code: the helpers below run only inside tests, where a panic is the failure report.
#![allow(clippy::unwrap_used)]

use hw_tests::{
    ADMIN_TOKEN, Boot, Image, Netns, READ_TOKEN, Scratch, Vm, cmdline, host_bin, http_get,
    initrd_with_config, pattern, run_in,
};
use std::path::Path;
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

/// 2. Fast boot with an MDT and an OST on NVMe and a NIC on the test's network: a 64 MiB file
///    goes in and out byte-exact, get_param answers over HTTP, the web page is served.
#[test]
#[ignore = "needs root, QEMU and the built image; ci/test runs it"]
fn fast_boot_copy_in_out_and_http() {
    let img = Image::built().unwrap();
    let s = Scratch::new("fast").unwrap();
    let mut ns = Netns::new("rustre-hw2").unwrap();
    let tap = ns.tap().unwrap();
    let cfg = config(
        "hwfs",
        "",
        &[("mgs", 0, "mem"), ("mdt", 0, "dev:/dev/nvme0n1"), ("ost", 0, "dev:/dev/nvme1n1")],
    );
    let initrd = initrd_with_config(&img, &s.dir, "initrd", &cfg).unwrap();
    let boot_cfg =
        Boot::Direct { vmlinux: img.vmlinux.clone(), initrd, cmdline: cmdline("10.77.0.10") };
    let disks = [s.disk("mdt", 256).unwrap(), s.disk("ost", 512).unwrap()];
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

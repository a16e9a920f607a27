//! Builds Rustre's bootable appliance image (design decision 9).
//!
//! `cargo run -p image -- build` downloads a pinned Debian kernel package, builds a static
//! `rustre`, and produces in `target/image/`:
//! - `vmlinux` (the decompressed kernel, for fast `-kernel` boots) and `initramfs.cpio`, whose
//!   `/init` is `rustre`, holding the kernel module closure and the verbs provider libraries;
//! - `rustre.efi`, a unified kernel image (EFI stub + kernel + initramfs + command line);
//! - `rustre.img`, a flashable GPT raw image whose FAT32 ESP holds `rustre.efi` as
//!   `\EFI\BOOT\BOOTX64.EFI` and the appliance configuration `rustre.toml`.
//!
//! Same inputs, same bytes: files are stamped with `SOURCE_DATE_EPOCH`, the cpio is sorted,
//! GUIDs and the FAT volume id are fixed.

pub mod build;
pub mod cpio;

use std::path::PathBuf;

/// The workspace root (this crate's parent directory).
#[must_use]
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map_or(here.clone(), std::path::Path::to_path_buf)
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` in the workspace).
#[must_use]
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where the image build puts its outputs.
#[must_use]
pub fn out_dir() -> PathBuf {
    target_dir().join("image")
}

/// The kernel command line of the unified kernel image (the flashable image). `panic=10`: a
/// kernel panic reboots the box after 10 s. `loglevel=4` keeps the serial console readable.
pub const CMDLINE: &str = "console=ttyS0,115200 panic=10 loglevel=4";

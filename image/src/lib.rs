//! Builds Rustre's bootable appliance image.
//!
//! This crate will build the initramfs (with the static `rustre` binary as `/init` and the
//! kernel module closure it needs), a unified kernel image, and a flashable GPT raw image.
//!
//! Nothing is implemented here yet; the image issue fills it.

//! Hardware tests: boot the Rustre image in QEMU guests under TCG (emulated NVMe, virtio-net,
//! soft-RoCE, two-node file systems) and drive them over the serial console and the network.
//!
//! Nothing is implemented here yet; the image issue fills it.

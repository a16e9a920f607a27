//! The checksums Lustre puts on the wire, computed as Lustre computes them.
//!
//! * CRC32C: standard (init ~0, final inversion), as the `crc32c` crate computes it.
//! * CRC32 (bulk `OBD_CKSUM_CRC32`, early replies): IEEE reflected polynomial with seed ~0 and
//!   *no* final inversion (the kernel's `crc32_le`).
//! * Adler-32: from 1, as zlib.

/// Reflected IEEE polynomial.
const CRC32_POLY: u32 = 0xEDB8_8320;

#[allow(clippy::indexing_slicing)] // const evaluation: an out-of-range index fails the build
const fn crc32_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { CRC32_POLY ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC32_TABLE: [u32; 256] = crc32_table();

/// The kernel's `crc32_le(seed, data)`: no pre- or post-inversion beyond the seed given.
#[must_use]
pub fn crc32_le(seed: u32, data: &[u8]) -> u32 {
    let mut c = seed;
    for &b in data {
        let t = CRC32_TABLE.get(((c ^ u32::from(b)) & 0xff) as usize).copied().unwrap_or(0);
        c = t ^ (c >> 8);
    }
    c
}

/// Adler-32 continuing from `adler` (start with 1).
#[must_use]
pub fn adler32(adler: u32, data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (adler & 0xffff, adler >> 16);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // zlib's crc32("123456789") = 0xCBF43926 = !crc32_le(!0, ...).
        assert_eq!(!crc32_le(!0, b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(1, b"Wikipedia"), 0x11E6_0398);
    }
}

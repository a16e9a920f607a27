//! The checksums Lustre puts on the wire, computed as Lustre computes them.
//!
//! * CRC32C: standard (init ~0, final inversion), as the `crc32c` crate computes it.
//! * CRC32 (bulk `OBD_CKSUM_CRC32`, early replies): IEEE reflected polynomial with seed ~0 and
//!   *no* final inversion (the kernel's `crc32_le`).
//! * Adler-32: from 1, as zlib.
//!
//! [`BulkCksum`] is the checksum of a BRW's data (`osc_checksum_bulk` on the client,
//! `tgt_checksum_niobuf` on the OST): one hash over the bytes of every niobuf in niobuf order,
//! started with the seed `cfs_crypto_hash_alloc` sets for the type (`cht_key`: ~0 for CRC32
//! and CRC32C, 1 for Adler) and finished as the kernel's shash does (CRC32C inverted, the
//! others not). Client and server use this one implementation.

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

/// Which bulk checksum a BRW names in `o_flags` (`obd_cksum_type_unpack`): the `OBD_FL_CKSUM_*`
/// bits of `o_flags` as an `ocd_cksum_types` bit. Anything Lustre does not know is Adler, as
/// in Lustre.
#[must_use]
pub fn cksum_type_unpack(o_flags: u32) -> u32 {
    use crate::connect::cksum;
    use crate::ost::obd_fl;
    match o_flags & obd_fl::CKSUM_MASK {
        obd_fl::CKSUM_CRC32C => cksum::CRC32C,
        obd_fl::CKSUM_CRC32 => cksum::CRC32,
        obd_fl::CKSUM_T10IP512 => cksum::T10IP512,
        obd_fl::CKSUM_T10IP4K => cksum::T10IP4K,
        obd_fl::CKSUM_T10CRC512 => cksum::T10CRC512,
        obd_fl::CKSUM_T10CRC4K => cksum::T10CRC4K,
        _ => cksum::ADLER,
    }
}

/// The running checksum of a BRW's bulk data, fed niobuf by niobuf (or MD by MD: only the
/// order of the bytes matters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkCksum {
    kind: Kind,
    state: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Crc32,
    Adler,
    Crc32c,
}

impl BulkCksum {
    /// A checksum of `cksum_type` (one `ocd_cksum_types` bit: CRC32, ADLER or CRC32C). The
    /// T10-PI types (per-sector guard tags) are not implemented: `None`.
    #[must_use]
    pub fn new(cksum_type: u32) -> Option<BulkCksum> {
        use crate::connect::cksum;
        let (kind, state) = match cksum_type {
            cksum::CRC32 => (Kind::Crc32, !0),
            cksum::ADLER => (Kind::Adler, 1),
            cksum::CRC32C => (Kind::Crc32c, 0),
            _ => return None,
        };
        Some(BulkCksum { kind, state })
    }

    /// Adds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.state = match self.kind {
            Kind::Crc32 => crc32_le(self.state, data),
            Kind::Adler => adler32(self.state, data),
            // The crate's running value is already the finished (inverted) CRC.
            Kind::Crc32c => crc32c::crc32c_append(self.state, data),
        };
    }

    /// The value the wire carries in `o_cksum`.
    #[must_use]
    pub fn finish(&self) -> u32 {
        self.state
    }
}

/// The checksum of `chunks` in order with `cksum_type`, or `None` for a type not implemented.
pub fn bulk_cksum<'a>(cksum_type: u32, chunks: impl IntoIterator<Item = &'a [u8]>) -> Option<u32> {
    let mut c = BulkCksum::new(cksum_type)?;
    for ch in chunks {
        c.update(ch);
    }
    Some(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::cksum;

    #[test]
    fn bulk_checksums_match_the_kernel_hashes() {
        // Check values of the kernel's shash algorithms over "123456789": crc32c 0xE3069283
        // (standard), crc32 with seed ~0 and no final inversion = !0xCBF43926, adler32 0x091E01DE.
        let data: &[u8] = b"123456789";
        assert_eq!(bulk_cksum(cksum::CRC32C, [data]), Some(0xE306_9283));
        assert_eq!(bulk_cksum(cksum::CRC32, [data]), Some(!0xCBF4_3926));
        assert_eq!(bulk_cksum(cksum::ADLER, [data]), Some(0x091E_01DE));
        // Splitting the data (niobufs, MDs) does not change the value.
        for t in [cksum::CRC32C, cksum::CRC32, cksum::ADLER] {
            let v: Vec<u8> = (0..20_000u32).map(|i| (i * 31 + 7) as u8).collect();
            let whole = bulk_cksum(t, [&v[..]]);
            let parts = bulk_cksum(t, v.chunks(4093));
            assert_eq!(whole, parts, "type {t:#x}");
        }
        assert_eq!(bulk_cksum(cksum::T10CRC4K, [data]), None);
    }

    #[test]
    fn unknown_type_bits_mean_adler() {
        use crate::ost::obd_fl;
        assert_eq!(cksum_type_unpack(obd_fl::CKSUM_CRC32C | obd_fl::SHORT_IO), cksum::CRC32C);
        assert_eq!(cksum_type_unpack(obd_fl::CKSUM_CRC32), cksum::CRC32);
        assert_eq!(cksum_type_unpack(0), cksum::ADLER);
        assert_eq!(cksum_type_unpack(0x3000), cksum::ADLER);
        assert_eq!(cksum_type_unpack(0xf000), cksum::ADLER);
    }

    #[test]
    fn known_values() {
        // zlib's crc32("123456789") = 0xCBF43926 = !crc32_le(!0, ...).
        assert_eq!(!crc32_le(!0, b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(1, b"Wikipedia"), 0x11E6_0398);
    }
}

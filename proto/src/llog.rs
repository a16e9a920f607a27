//! Lustre logs (llog): record header and tail, the 8 KiB log header with its bitmap,
//! `llogd_body` for the LLOG_ORIGIN_HANDLE_* RPCs, and a builder/reader for plain logs as the
//! MGS serves them (records packed in 8 KiB chunks, never straddling one).

use crate::error::{Result, WireError};
use crate::fid::OstId;
use crate::wire::{U32, U64, Wire, round_up8, take, u32_at, wire_plain};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Record types (`enum llog_op_type`).
pub mod rec_type {
    /// Padding to the end of a chunk.
    pub const PAD: u32 = 0x1060_0000;
    /// A `lustre_cfg` record.
    pub const OBD_CFG: u32 = 0x1062_0000;
    /// Generation record.
    pub const GEN: u32 = 0x1064_0000;
    /// Changelog record.
    pub const CHANGELOG: u32 = 0x1066_0000;
    /// The log header.
    pub const HDR_MAGIC: u32 = 0x1064_5539;
    /// A catalog entry naming a plain log.
    pub const LOGID_MAGIC: u32 = 0x1064_553b;
}

/// `llh_flags` bits (`LLOG_F_*`).
pub mod llh_flags {
    /// Remove the log when it empties.
    pub const ZAP_WHEN_EMPTY: u32 = 0x1;
    /// A catalog.
    pub const IS_CAT: u32 = 0x2;
    /// A plain log.
    pub const IS_PLAIN: u32 = 0x4;
    /// Changelog records carry a job id.
    pub const EXT_JOBID: u32 = 0x8;
    /// Fixed-size records.
    pub const IS_FIXSIZE: u32 = 0x10;
}

/// Chunk size of the logs we write (`LLOG_MIN_CHUNK_SIZE`), also the header size.
pub const LLOG_CHUNK_SIZE: usize = 8192;
/// Smallest record: header, tail and 8 bytes (`LLOG_MIN_REC_SIZE`).
pub const LLOG_MIN_REC_SIZE: usize = 24;
/// Offset of the bitmap in the header.
pub const LLOG_BITMAP_OFFSET: u32 = 88;
/// Bitmap words in an 8 KiB header.
pub const LLOG_BITMAP_WORDS: usize = 2024;
/// Highest record index an 8 KiB header can track.
pub const LLOG_MAX_INDEX: u32 = (LLOG_BITMAP_WORDS * 32 - 1) as u32;

/// `struct llog_rec_hdr` (16 B).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LlogRecHdr {
    /// Whole record length, tail included, multiple of 8.
    pub lrh_len: U32,
    /// Record index.
    pub lrh_index: U32,
    /// `rec_type`.
    pub lrh_type: U32,
    /// Record id.
    pub lrh_id: U32,
}

/// `struct llog_rec_tail` (8 B).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LlogRecTail {
    /// Same as `lrh_len`.
    pub lrt_len: U32,
    /// Same as `lrh_index`.
    pub lrt_index: U32,
}

/// `struct llog_logid` (20 B).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LlogLogid {
    /// The log object.
    pub lgl_oi: OstId,
    /// Generation.
    pub lgl_ogen: U32,
}

/// `struct llogd_body` (48 B): the body of every LLOG_ORIGIN_HANDLE_* RPC.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct LlogdBody {
    /// The log (returned by CREATE, echoed afterwards).
    pub lgd_logid: LlogLogid,
    /// Context index (0 = config).
    pub lgd_ctxt_idx: U32,
    /// `llh_flags`.
    pub lgd_llh_flags: U32,
    /// NEXT_BLOCK: next record index wanted.
    pub lgd_index: U32,
    /// NEXT_BLOCK reply: last index in the returned chunk.
    pub lgd_saved_index: U32,
    /// Bytes wanted / returned.
    pub lgd_len: U32,
    /// File offset to read from / after the returned chunk.
    pub lgd_cur_offset: U64,
}

/// `struct llog_log_hdr` (8192 B).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LlogLogHdr {
    /// `{len 8192, index 0, type HDR_MAGIC}`.
    pub llh_hdr: LlogRecHdr,
    /// Creation time.
    pub llh_timestamp: U64,
    /// Live records plus one (the header).
    pub llh_count: U32,
    /// Offset of the bitmap (88).
    pub llh_bitmap_offset: U32,
    /// Record size for fixed-size logs, else 0.
    pub llh_size: U32,
    /// `llh_flags`.
    pub llh_flags: U32,
    /// Catalog index.
    pub llh_cat_idx: U32,
    /// UUID of the target the log belongs to.
    pub llh_tgtuuid: [u8; 40],
    /// Reserved.
    pub llh_reserved: U32,
    /// Bit i set: record i is live (bit 0 is the header).
    pub llh_bitmap: [U32; LLOG_BITMAP_WORDS],
    /// `{8192, last index}`.
    pub llh_tail: LlogRecTail,
}

wire_plain!(LlogRecHdr => "llog_rec_hdr", LlogRecTail => "llog_rec_tail", LlogLogid => "llog_logid", LlogdBody => "llogd_body");

impl Wire for LlogLogHdr {
    const NAME: &'static str = "llog_log_hdr";
    fn check(&self) -> Result<()> {
        if self.llh_hdr.lrh_type.get() != rec_type::HDR_MAGIC {
            return Err(WireError::BadMagic {
                what: Self::NAME,
                got: self.llh_hdr.lrh_type.get().into(),
            });
        }
        let len = self.llh_hdr.lrh_len.get();
        if len != self.llh_tail.lrt_len.get()
            || (len as usize) < LLOG_CHUNK_SIZE
            || !len.is_power_of_two()
        {
            return Err(WireError::Inconsistent {
                what: Self::NAME,
                detail: "header length not a power of two >= 8192 matching the tail",
            });
        }
        if self.llh_bitmap_offset.get() != LLOG_BITMAP_OFFSET {
            return Err(WireError::BadValue {
                what: "llog_log_hdr bitmap offset",
                got: self.llh_bitmap_offset.get().into(),
            });
        }
        Ok(())
    }
}

impl LlogLogHdr {
    /// Whether record `index` is marked live.
    #[must_use]
    pub fn is_live(&self, index: u32) -> bool {
        let w = (index / 32) as usize;
        self.llh_bitmap.get(w).is_some_and(|b| b.get() & (1 << (index % 32)) != 0)
    }
    /// Marks record `index` live.
    pub fn set_live(&mut self, index: u32) {
        if let Some(b) = self.llh_bitmap.get_mut((index / 32) as usize) {
            *b = (b.get() | (1 << (index % 32))).into();
        }
    }
}

/// One record read out of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlogRec<'a> {
    /// The header.
    pub hdr: LlogRecHdr,
    /// The bytes between header and tail (including any padding to 8).
    pub body: &'a [u8],
}

/// Iterates the records in a buffer of whole records (a NEXT_BLOCK chunk), checking each
/// record's length, alignment and tail. Stops at the first zero length (unused space).
#[derive(Debug, Clone)]
pub struct LlogRecIter<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> LlogRecIter<'a> {
    /// Records in `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, off: 0 }
    }
}

impl<'a> Iterator for LlogRecIter<'a> {
    type Item = Result<LlogRec<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        const WHAT: &str = "llog record";
        let rest = self.buf.get(self.off..)?;
        if rest.len() < LlogRecHdr::SIZE {
            return None;
        }
        let hdr = match LlogRecHdr::read(rest) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let len = hdr.lrh_len.get() as usize;
        if len == 0 {
            return None;
        }
        let r = (|| {
            if len < LLOG_MIN_REC_SIZE || !len.is_multiple_of(8) {
                return Err(WireError::BadValue { what: "llog record length", got: len as u64 });
            }
            let whole = take(WHAT, rest, 0, len)?;
            let tail =
                LlogRecTail::read(take(WHAT, whole, len - LlogRecTail::SIZE, LlogRecTail::SIZE)?)?;
            if tail.lrt_len.get() as usize != len || tail.lrt_index != hdr.lrh_index {
                return Err(WireError::Inconsistent {
                    what: WHAT,
                    detail: "tail does not match header",
                });
            }
            let body =
                take(WHAT, whole, LlogRecHdr::SIZE, len - LlogRecHdr::SIZE - LlogRecTail::SIZE)?;
            Ok(LlogRec { hdr, body })
        })();
        match r {
            Ok(rec) => {
                self.off += len;
                Some(Ok(rec))
            }
            Err(e) => {
                self.off = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

/// A plain log built in memory: the 8 KiB header followed by 8 KiB chunks of records.
#[derive(Debug, Clone)]
pub struct PlainLog {
    /// The header (bitmap filled).
    pub header: LlogLogHdr,
    /// Records from file offset 8192 on, a multiple of the chunk size.
    pub chunks: Vec<u8>,
    /// Last index used (records and pads).
    pub last_index: u32,
}

impl PlainLog {
    /// An empty plain log for target `tgtuuid`.
    pub fn new(tgtuuid: &str, timestamp: u64) -> Result<PlainLog> {
        let mut h = <LlogLogHdr as zerocopy::FromZeros>::new_zeroed();
        h.llh_hdr = LlogRecHdr {
            lrh_len: (LLOG_CHUNK_SIZE as u32).into(),
            lrh_index: 0.into(),
            lrh_type: rec_type::HDR_MAGIC.into(),
            lrh_id: 0.into(),
        };
        h.llh_timestamp = timestamp.into();
        h.llh_count = 1.into();
        h.llh_bitmap_offset = LLOG_BITMAP_OFFSET.into();
        h.llh_flags = llh_flags::IS_PLAIN.into();
        crate::wire::set_cstr("llh_tgtuuid", &mut h.llh_tgtuuid, tgtuuid.as_bytes())?;
        h.set_live(0);
        h.llh_tail = LlogRecTail { lrt_len: (LLOG_CHUNK_SIZE as u32).into(), lrt_index: 0.into() };
        Ok(PlainLog { header: h, chunks: Vec::new(), last_index: 0 })
    }

    fn append_raw(&mut self, rtype: u32, body: &[u8], live: bool) -> Result<u32> {
        if self.last_index >= LLOG_MAX_INDEX {
            return Err(WireError::Oversize {
                what: "llog index",
                len: self.last_index as usize + 1,
                max: LLOG_MAX_INDEX as usize,
            });
        }
        let len = LlogRecHdr::SIZE + round_up8(body.len()) + LlogRecTail::SIZE;
        let index = self.last_index + 1;
        let hdr = LlogRecHdr {
            lrh_len: u32::try_from(len).unwrap_or(u32::MAX).into(),
            lrh_index: index.into(),
            lrh_type: rtype.into(),
            lrh_id: 0.into(),
        };
        hdr.encode_into(&mut self.chunks);
        self.chunks.extend_from_slice(body);
        self.chunks.resize(self.chunks.len() + round_up8(body.len()) - body.len(), 0);
        LlogRecTail { lrt_len: hdr.lrh_len, lrt_index: index.into() }.encode_into(&mut self.chunks);
        self.last_index = index;
        self.header.llh_tail.lrt_index = index.into();
        if live {
            self.header.set_live(index);
            self.header.llh_count = (self.header.llh_count.get() + 1).into();
        }
        Ok(index)
    }

    /// Appends a record of type `rtype` with `body`, padding the current chunk first when the
    /// record would straddle it (or leave less than a minimal record after it), as Lustre's
    /// llog writer does. Returns the record's index.
    pub fn append(&mut self, rtype: u32, body: &[u8]) -> Result<u32> {
        let len = LlogRecHdr::SIZE + round_up8(body.len()) + LlogRecTail::SIZE;
        if len > LLOG_CHUNK_SIZE {
            return Err(WireError::Oversize { what: "llog record", len, max: LLOG_CHUNK_SIZE });
        }
        let left = LLOG_CHUNK_SIZE - self.chunks.len() % LLOG_CHUNK_SIZE;
        if left != LLOG_CHUNK_SIZE && left != len && left < len + LLOG_MIN_REC_SIZE {
            let pad = vec![0u8; left - LlogRecHdr::SIZE - LlogRecTail::SIZE];
            self.append_raw(rec_type::PAD, &pad, false)?;
        }
        self.append_raw(rtype, body, true)
    }

    /// File size: header plus records, rounded up to whole chunks.
    #[must_use]
    pub fn file_len(&self) -> usize {
        LLOG_CHUNK_SIZE + self.chunks.len().div_ceil(LLOG_CHUNK_SIZE) * LLOG_CHUNK_SIZE
    }

    /// The chunk holding file offset `cur_offset` (>= 8192), zero-padded to 8 KiB, with the
    /// last index in it and the offset after it; None past the end.
    #[must_use]
    pub fn chunk_at(&self, cur_offset: u64) -> Option<(Vec<u8>, u32, u64)> {
        let off = usize::try_from(cur_offset).ok()?.checked_sub(LLOG_CHUNK_SIZE)?;
        let start = off - off % LLOG_CHUNK_SIZE;
        if start >= self.chunks.len() {
            return None;
        }
        let end = (start + LLOG_CHUNK_SIZE).min(self.chunks.len());
        let mut chunk = self.chunks.get(start..end)?.to_vec();
        let last = LlogRecIter::new(&chunk)
            .filter_map(|r| r.ok())
            .map(|r| r.hdr.lrh_index.get())
            .last()
            .unwrap_or(0);
        chunk.resize(LLOG_CHUNK_SIZE, 0);
        Some((chunk, last, (LLOG_CHUNK_SIZE + start + LLOG_CHUNK_SIZE) as u64))
    }
}

/// Checks a chunk as a client does before using it: every record well-formed.
pub fn check_chunk(chunk: &[u8]) -> Result<usize> {
    let mut n = 0;
    for r in LlogRecIter::new(chunk) {
        r?;
        n += 1;
    }
    Ok(n)
}

/// The record type of the record at the start of `buf`.
pub fn peek_type(buf: &[u8]) -> Result<u32> {
    u32_at("llog_rec_hdr", buf, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_never_straddle_chunks() {
        let mut log = PlainLog::new("MGS", 1).unwrap();
        let body = vec![7u8; 1000];
        for _ in 0..40 {
            log.append(rec_type::OBD_CFG, &body).unwrap();
        }
        assert_eq!(log.chunks.len() % LLOG_CHUNK_SIZE, log.chunks.len() % LLOG_CHUNK_SIZE);
        let mut live = 0;
        let mut off = LLOG_CHUNK_SIZE as u64;
        while let Some((chunk, _last, next)) = log.chunk_at(off) {
            for r in LlogRecIter::new(&chunk) {
                let r = r.unwrap();
                if r.hdr.lrh_type.get() == rec_type::OBD_CFG {
                    assert!(log.header.is_live(r.hdr.lrh_index.get()));
                    live += 1;
                } else {
                    assert_eq!(r.hdr.lrh_type.get(), rec_type::PAD);
                    assert!(!log.header.is_live(r.hdr.lrh_index.get()));
                }
            }
            off = next;
        }
        assert_eq!(live, 40);
        assert_eq!(log.header.llh_count.get(), 41);
        let h = LlogLogHdr::decode(log.header.as_bytes()).unwrap();
        assert!(h.is_live(0));
    }

    #[test]
    fn bad_records() {
        let mut log = PlainLog::new("MGS", 1).unwrap();
        log.append(rec_type::OBD_CFG, b"hello").unwrap();
        let mut c = log.chunks.clone();
        c[0] = 17; // length not a multiple of 8
        assert!(check_chunk(&c).is_err());
        let mut c = log.chunks.clone();
        let n = c.len();
        c[n - 4] = 9; // tail index mismatch
        assert!(check_chunk(&c).is_err());
    }
}

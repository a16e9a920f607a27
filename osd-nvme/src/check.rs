//! A canonical, implementation-independent dump of an OSD's contents through the public API.
//! The crash checkers compare the dump of a recovered persistent OSD with dumps of the
//! memory OSD (the model) after each transaction.

use std::fmt::Write;

use crate::api::Osd;
use crate::error::Result;

/// Dumps every object: type, attributes, xattrs (with a crc of each value), index entries and
/// the body (size and crc32c of its bytes, read through `read`, so every data checksum is
/// verified on the way).
pub async fn dump<O: Osd>(osd: &O) -> Result<String> {
    let mut out = String::new();
    let mut after = None;
    loop {
        let fids = osd.objects(after, 256).await?;
        let Some(last) = fids.last().copied() else { break };
        for fid in fids {
            let ty = osd.obj_type(&fid).await?;
            let a = osd.attr_get(&fid).await?;
            let _ = writeln!(out, "{fid} {ty:?} {a:?}");
            for name in osd.xattr_list(&fid).await? {
                let n = osd.xattr_get(&fid, &name, &mut []).await?;
                let mut v = vec![0u8; n];
                osd.xattr_get(&fid, &name, &mut v).await?;
                let _ = writeln!(out, "  x {:?} {} {:08x}", name, n, crc32c::crc32c(&v));
            }
            if ty.is_index() {
                let mut cookie = 0;
                loop {
                    let page = osd.index_iter(&fid, cookie, 64).await?;
                    for e in &page.entries {
                        let _ = writeln!(out, "  i {:x} {:?} {:?}", e.cookie, e.key, e.value);
                    }
                    match page.next {
                        Some(c) => cookie = c,
                        None => break,
                    }
                }
            } else {
                // Alternate exact and block-rounded buffers: both read paths get checked.
                let mut len = usize::try_from(a.size).unwrap_or(0).min(64 << 20);
                if fid.oid() % 2 == 0 {
                    len = len.div_ceil(4096) * 4096;
                }
                let mut buf = vec![0u8; len];
                let n = osd.read(&fid, 0, &mut [&mut buf]).await?;
                let _ = writeln!(out, "  body {n} {:08x}", crc32c::crc32c(&buf[..n]));
            }
        }
        after = Some(last);
    }
    Ok(out)
}

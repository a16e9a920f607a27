//! Which portal answers which, and how reply and bulk traffic finds its shard.
//!
//! Requests land on the shard that received them (the client's home shard). Replies and bulk
//! land on the portal of the ME that the requesting shard attached, so the xid names that
//! shard: bits 7 and up of every xid we allocate count in steps of 128 (`PTLRPC_BULK_OPS_COUNT`,
//! leaving the low bits for multi-MD bulk ranges), and `(xid >> 7) % nshards` is the shard.

use lnd::PortalRoute;
use proto::portal::*;

/// The reply portal for requests that arrived on `request_portal`.
#[must_use]
pub fn reply_portal_for(request_portal: u32) -> Option<u32> {
    Some(match request_portal {
        CONNMGR_REQUEST => CONNMGR_REPLY,
        MGS_REQUEST => MGC_REPLY,
        MDS_REQUEST | MDS_READPAGE | MDS_IO | SEQ_METADATA | FLD_REQUEST | OUT => MDC_REPLY,
        OST_REQUEST | OST_IO | OST_CREATE | SEQ_DATA => OSC_REPLY,
        LDLM_CB_REQUEST => LDLM_CB_REPLY,
        LDLM_CANCEL_REQUEST => LDLM_CANCEL_REPLY,
        SEQ_CONTROLLER => MDC_REPLY,
        _ => return None,
    })
}

/// Portals on which replies to our requests arrive.
pub const REPLY_PORTALS: &[u32] =
    &[CONNMGR_REPLY, OSC_REPLY, MDC_REPLY, LDLM_CB_REPLY, LDLM_CANCEL_REPLY, MGC_REPLY, MGS_REPLY];
/// Portals on which our bulk buffers are exposed.
pub const BULK_PORTALS: &[u32] = &[OST_BULK, MDS_BULK, MGS_BULK];

/// Steps between consecutive xids (`PTLRPC_BULK_OPS_COUNT`).
pub const XID_STEP: u64 = 128;

/// The shard whose ME matches `match_bits` on a reply or bulk portal.
#[must_use]
pub fn xid_shard(match_bits: u64, nshards: usize) -> usize {
    let n = nshards.max(1) as u64;
    usize::try_from((match_bits / XID_STEP) % n).unwrap_or(0)
}

/// LNet routes for every reply and bulk portal: by xid.
#[must_use]
pub fn lnet_routes() -> Vec<(u32, PortalRoute)> {
    REPLY_PORTALS
        .iter()
        .chain(BULK_PORTALS)
        .map(|&p| (p, PortalRoute::ByMatchBits(xid_shard)))
        .collect()
}

/// Per-shard xid generator: Lustre's `time << 20` start, steps of 128, and only xids that
/// [`xid_shard`] maps back to this shard.
#[derive(Debug)]
pub struct XidGen {
    next: std::cell::Cell<u64>,
    stride: u64,
}

impl XidGen {
    /// A generator for `shard` of `nshards`, starting from `seed` (seconds since the epoch).
    #[must_use]
    pub fn new(shard: usize, nshards: usize, seed: u64) -> XidGen {
        let n = nshards.max(1) as u64;
        let base = (seed << 20) / (XID_STEP * n) * (XID_STEP * n);
        XidGen { next: std::cell::Cell::new(base + shard as u64 * XID_STEP), stride: XID_STEP * n }
    }

    /// The next xid.
    pub fn next_xid(&self) -> u64 {
        let x = self.next.get();
        self.next.set(x + self.stride);
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_route_home() {
        for n in 1..5 {
            for s in 0..n {
                let g = XidGen::new(s, n, 1_763_000_000);
                let mut last = 0;
                for _ in 0..100 {
                    let x = g.next_xid();
                    assert!(x > last);
                    assert_eq!(x % XID_STEP, 0);
                    assert_eq!(xid_shard(x, n), s);
                    // Multi-MD bulk ranges stay on the same shard.
                    assert_eq!(xid_shard(x + 15, n), s);
                    last = x;
                }
            }
        }
        assert_eq!(reply_portal_for(MDS_READPAGE), Some(MDC_REPLY));
        assert_eq!(reply_portal_for(OST_IO), Some(OSC_REPLY));
    }
}

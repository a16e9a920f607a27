//! Exports: a target's record of each connected client (Lustre's `obd_export`).
//!
//! The table implements the connect rules of `target_handle_connect`, validates the export
//! handle of every later request, recognises resent requests by xid and keeps their saved
//! replies, bounds the requests each client has in flight, and finds clients that stopped
//! pinging. It is a plain state machine (time in milliseconds comes in); the service owns it
//! on one shard.

use proto::body::msg_connect;
use proto::connect::{ObdConnectData, flags};
use proto::nid::Nid;
use std::collections::{HashMap, VecDeque};

/// Errno values used by the connect rules.
pub mod errno {
    /// `-EALREADY`: a stale or duplicate connect.
    pub const EALREADY: i32 = -114;
    /// `-ENOTCONN`: unknown export handle.
    pub const ENOTCONN: i32 = -107;
    /// `-EPROTO`: missing mandatory connect flags.
    pub const EPROTO: i32 = -71;
    /// `-EBUSY`: too many requests in flight.
    pub const EBUSY: i32 = -16;
    /// `-ENODEV`: no such target.
    pub const ENODEV: i32 = -19;
}

/// Limits of an export table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Replies kept per export for resent requests.
    pub saved_replies: usize,
    /// Requests an export may have being processed at once.
    pub max_in_flight: usize,
    /// Milliseconds without any request (clients ping every 25 s) after which an export is
    /// evicted (Lustre: 1.5 x obd_timeout = 150 s).
    pub evict_after_ms: u64,
    /// Exports a target accepts.
    pub max_exports: usize,
}

impl Default for ExportLimits {
    fn default() -> Self {
        ExportLimits {
            saved_replies: 64,
            max_in_flight: 64,
            evict_after_ms: 150_000,
            max_exports: 10_000,
        }
    }
}

/// One connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Our cookie, the `pb_handle` of the client's requests.
    pub cookie: u64,
    /// The client's UUID (CLUUID).
    pub client_uuid: String,
    /// The client's own connection cookie (CONN), which callbacks must carry in `pb_handle`.
    pub remote: u64,
    /// The client's NID.
    pub peer: Nid,
    /// Connect generation.
    pub conn_cnt: u32,
    /// Negotiated flags.
    pub flags: u64,
    /// Negotiated flags2.
    pub flags2: u64,
    /// The client's connect data as granted.
    pub data: ObdConnectData,
    /// Last time a request arrived.
    pub last_seen: u64,
    /// Requests being processed now.
    pub in_flight: usize,
    /// Their xids (at most `max_in_flight`).
    in_flight_xids: Vec<u64>,
    /// Saved replies, oldest first: `(xid, reply bytes)`.
    saved: VecDeque<(u64, Vec<u8>)>,
    /// Requests processed and counters for `exports.*.stats`.
    pub requests: u64,
}

impl Export {
    /// The saved reply to a resent request, if still kept.
    #[must_use]
    pub fn saved_reply(&self, xid: u64) -> Option<&[u8]> {
        self.saved.iter().rev().find(|(x, _)| *x == xid).map(|(_, r)| r.as_slice())
    }
}

/// What a connect request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connected {
    /// A new export.
    New(u64),
    /// The same client reconnecting (reply carries `MSG_CONNECT_RECONNECT`).
    Reconnect(u64),
}

impl Connected {
    /// The export cookie.
    #[must_use]
    pub fn cookie(&self) -> u64 {
        match *self {
            Connected::New(c) | Connected::Reconnect(c) => c,
        }
    }
    /// `pb_op_flags` of the reply.
    #[must_use]
    pub fn reply_op_flags(&self) -> u32 {
        match self {
            Connected::New(_) => 0,
            Connected::Reconnect(_) => msg_connect::RECONNECT,
        }
    }
}

/// A connect request, as the target sees it.
#[derive(Debug, Clone)]
pub struct ConnectReq<'a> {
    /// CLUUID.
    pub client_uuid: &'a str,
    /// CONN: the client's cookie.
    pub remote: u64,
    /// The sender.
    pub peer: Nid,
    /// `pb_conn_cnt`.
    pub conn_cnt: u32,
    /// `pb_op_flags`.
    pub op_flags: u32,
    /// The client's connect data.
    pub data: ObdConnectData,
}

/// What an incoming request may do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Process it.
    Process,
    /// A resend of a request we already answered: send this saved reply again.
    Resend(Vec<u8>),
    /// A resend of a request still being processed: drop it; the original's reply (same xid,
    /// same reply match bits) answers the client.
    InProgress,
}

/// The exports of one target on one shard.
#[derive(Debug)]
pub struct ExportTable {
    limits: ExportLimits,
    by_cookie: HashMap<u64, Export>,
    by_uuid: HashMap<String, u64>,
    /// `shard << 48 | slot << 40`, then `counter ^ salt`: unique across shards, the targets of
    /// a shard (slots) and restarts (salt).
    cookie_base: u64,
    salt: u64,
    next: u64,
    /// Exports removed by eviction, kept so requests using their cookie learn they were
    /// evicted (-ENOTCONN) and so counters survive.
    pub evictions: u64,
}

impl ExportTable {
    /// An empty table for shard `shard`; `slot` tells apart the tables of several targets on
    /// one shard (a request's cookie names its target); `salt` (random per process start) keeps
    /// cookies of a restarted server from matching stale ones.
    #[must_use]
    pub fn new(shard: u16, slot: u8, salt: u64, limits: ExportLimits) -> ExportTable {
        ExportTable {
            limits,
            by_cookie: HashMap::new(),
            by_uuid: HashMap::new(),
            cookie_base: u64::from(shard) << 48 | u64::from(slot) << 40,
            salt: salt & 0xff_ffff_ffff,
            next: 0,
            evictions: 0,
        }
    }

    /// Number of exports.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_cookie.len()
    }
    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_cookie.is_empty()
    }
    /// An export by cookie.
    #[must_use]
    pub fn get(&self, cookie: u64) -> Option<&Export> {
        self.by_cookie.get(&cookie)
    }
    /// Every export.
    pub fn iter(&self) -> impl Iterator<Item = &Export> {
        self.by_cookie.values()
    }
    /// The limits.
    #[must_use]
    pub fn limits(&self) -> ExportLimits {
        self.limits
    }
    /// Changes the limits (configuration, `set_param`).
    pub fn set_limits(&mut self, l: ExportLimits) {
        self.limits = l;
    }

    fn alloc_cookie(&mut self) -> u64 {
        self.next += 1;
        self.cookie_base | ((self.next ^ self.salt) & 0xff_ffff_ffff)
    }

    /// Handles a connect. `supported`/`supported2` are the flags this target implements;
    /// `required` the flags a client must offer (FULL20 everywhere; an MDT also wants FID and
    /// ATTRFID). The granted flags are the intersection, so always a subset of the request.
    pub fn connect(
        &mut self,
        req: &ConnectReq<'_>,
        supported: u64,
        supported2: u64,
        required: u64,
        now: u64,
    ) -> Result<(Connected, u64, u64), i32> {
        if req.op_flags & msg_connect::LIBCLIENT != 0 {
            return Err(errno::EPROTO);
        }
        if req.data.flags() & required != required {
            return Err(errno::EPROTO);
        }
        if req.conn_cnt == 0 {
            return Err(errno::EPROTO);
        }
        let want = req.data.flags();
        let granted = want & supported | (want & flags::FLAGS2);
        let granted2 =
            if granted & flags::FLAGS2 != 0 { req.data.flags2() & supported2 } else { 0 };
        if let Some(&cookie) = self.by_uuid.get(req.client_uuid) {
            let e = self.by_cookie.get_mut(&cookie).ok_or(errno::ENOTCONN)?;
            if req.op_flags & msg_connect::INITIAL != 0 && e.peer != req.peer {
                // "Client seen on new nid when existing nid is already connected."
                return Err(errno::EALREADY);
            }
            if e.remote == req.remote {
                if req.conn_cnt <= e.conn_cnt {
                    return Err(errno::EALREADY);
                }
                e.conn_cnt = req.conn_cnt;
                e.flags = granted;
                e.flags2 = granted2;
                e.last_seen = now;
                return Ok((Connected::Reconnect(cookie), granted, granted2));
            }
            // The client restarted under the same UUID: the old export goes.
            self.remove(cookie);
        }
        if self.by_cookie.len() >= self.limits.max_exports {
            return Err(errno::EBUSY);
        }
        let cookie = self.alloc_cookie();
        let mut data = req.data;
        data.ocd_connect_flags = granted.into();
        data.ocd_connect_flags2 = granted2.into();
        self.by_cookie.insert(
            cookie,
            Export {
                cookie,
                client_uuid: req.client_uuid.to_string(),
                remote: req.remote,
                peer: req.peer,
                conn_cnt: req.conn_cnt,
                flags: granted,
                flags2: granted2,
                data,
                last_seen: now,
                in_flight: 0,
                in_flight_xids: Vec::new(),
                saved: VecDeque::new(),
                requests: 0,
            },
        );
        self.by_uuid.insert(req.client_uuid.to_string(), cookie);
        Ok((Connected::New(cookie), granted, granted2))
    }

    /// Removes an export (disconnect or eviction). Returns it.
    pub fn remove(&mut self, cookie: u64) -> Option<Export> {
        let e = self.by_cookie.remove(&cookie)?;
        self.by_uuid.remove(&e.client_uuid);
        Some(e)
    }

    /// Evicts an export (the client stopped answering or pinging).
    pub fn evict(&mut self, cookie: u64) -> Option<Export> {
        let e = self.remove(cookie)?;
        self.evictions += 1;
        Some(e)
    }

    /// Admits a request on export `cookie` from `peer` with `xid`: unknown handles and
    /// handles used from another NID are -ENOTCONN; a resend whose reply is saved is answered
    /// from it; a client over its in-flight bound gets -EBUSY.
    pub fn admit(
        &mut self,
        cookie: u64,
        peer: Nid,
        xid: u64,
        resent: bool,
        now: u64,
    ) -> Result<Admit, i32> {
        let max = self.limits.max_in_flight;
        let e = self.by_cookie.get_mut(&cookie).ok_or(errno::ENOTCONN)?;
        if e.peer != peer {
            return Err(errno::ENOTCONN);
        }
        e.last_seen = now;
        if resent && let Some(r) = e.saved_reply(xid) {
            return Ok(Admit::Resend(r.to_vec()));
        }
        if e.in_flight_xids.contains(&xid) {
            return Ok(Admit::InProgress);
        }
        if e.in_flight >= max {
            return Err(errno::EBUSY);
        }
        e.in_flight += 1;
        e.in_flight_xids.push(xid);
        e.requests += 1;
        Ok(Admit::Process)
    }

    /// Records the end of a request admitted with [`Admit::Process`], saving its reply for
    /// resends when `save` (modifying requests).
    pub fn done(&mut self, cookie: u64, xid: u64, reply: Option<Vec<u8>>) {
        let keep = self.limits.saved_replies;
        if let Some(e) = self.by_cookie.get_mut(&cookie) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.in_flight_xids.retain(|&x| x != xid);
            if let Some(r) = reply
                && keep > 0
            {
                if e.saved.len() >= keep {
                    e.saved.pop_front();
                }
                e.saved.push_back((xid, r));
            }
        }
    }

    /// Exports silent for longer than the eviction timeout.
    #[must_use]
    pub fn idle(&self, now: u64) -> Vec<u64> {
        self.by_cookie
            .values()
            .filter(|e| {
                e.in_flight == 0 && now.saturating_sub(e.last_seen) > self.limits.evict_after_ms
            })
            .map(|e| e.cookie)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::wire::FromZeros;

    fn req(uuid: &str, remote: u64, cnt: u32, initial: bool) -> ConnectReq<'_> {
        let mut data = ObdConnectData::new_zeroed();
        data.ocd_connect_flags =
            (flags::FULL20 | flags::VERSION | flags::FID | flags::FLAGS2).into();
        data.ocd_connect_flags2 = 0x10_0000.into();
        ConnectReq {
            client_uuid: uuid,
            remote,
            peer: Nid::tcp([127, 0, 0, 1]),
            conn_cnt: cnt,
            op_flags: if initial { msg_connect::INITIAL } else { 0 },
            data,
        }
    }

    #[test]
    fn connect_reconnect_and_stale() {
        let mut t = ExportTable::new(1, 0, 0x1234, ExportLimits::default());
        let all = flags::FULL20 | flags::VERSION | flags::FLAGS2 | flags::GRANT;
        let (c, f, f2) =
            t.connect(&req("u1", 7, 1, true), all, 0x10_0000, flags::FULL20, 0).unwrap();
        assert!(matches!(c, Connected::New(_)));
        assert_eq!(
            f,
            flags::FULL20 | flags::VERSION | flags::FLAGS2,
            "granted is a subset of asked"
        );
        assert_eq!(f2, 0x10_0000);
        // Reconnect with a higher count keeps the export.
        let (c2, _, _) = t.connect(&req("u1", 7, 2, false), all, 0, flags::FULL20, 1).unwrap();
        assert_eq!(c2, Connected::Reconnect(c.cookie()));
        assert_eq!(c2.reply_op_flags(), msg_connect::RECONNECT);
        // A stale count is refused.
        assert_eq!(
            t.connect(&req("u1", 7, 2, false), all, 0, flags::FULL20, 2),
            Err(errno::EALREADY)
        );
        // Missing FULL20 is a protocol error.
        let mut bad = req("u2", 1, 1, true);
        bad.data.ocd_connect_flags = flags::VERSION.into();
        assert_eq!(t.connect(&bad, all, 0, flags::FULL20, 2), Err(errno::EPROTO));
        // A restarted client (new CONN cookie) replaces its old export.
        let (c3, _, _) = t.connect(&req("u1", 8, 1, true), all, 0, flags::FULL20, 3).unwrap();
        assert_ne!(c3.cookie(), c.cookie());
        assert!(t.get(c.cookie()).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn admit_resend_and_bounds() {
        let mut t =
            ExportTable::new(0, 0, 0, ExportLimits { max_in_flight: 2, ..ExportLimits::default() });
        let (c, _, _) = t.connect(&req("u", 1, 1, true), u64::MAX, 0, 0, 0).unwrap();
        let e = c.cookie();
        let peer = Nid::tcp([127, 0, 0, 1]);
        assert_eq!(t.admit(e + 1, peer, 128, false, 1), Err(errno::ENOTCONN));
        assert_eq!(t.admit(e, Nid::tcp([10, 0, 0, 1]), 128, false, 1), Err(errno::ENOTCONN));
        assert_eq!(t.admit(e, peer, 128, false, 1), Ok(Admit::Process));
        assert_eq!(t.admit(e, peer, 256, false, 1), Ok(Admit::Process));
        assert_eq!(
            t.admit(e, peer, 256, true, 1),
            Ok(Admit::InProgress),
            "a resend of a request still running is not run twice"
        );
        assert_eq!(t.admit(e, peer, 384, false, 1), Err(errno::EBUSY));
        t.done(e, 128, Some(b"reply-128".to_vec()));
        t.done(e, 256, None);
        assert_eq!(t.admit(e, peer, 128, true, 2), Ok(Admit::Resend(b"reply-128".to_vec())));
        assert_eq!(
            t.admit(e, peer, 256, true, 2),
            Ok(Admit::Process),
            "no saved reply: process again"
        );
        assert!(t.idle(100_000).is_empty(), "busy exports are not evicted");
        t.done(e, 256, None);
        assert_eq!(t.idle(1_000_000), vec![e]);
        assert!(t.evict(e).is_some());
        assert_eq!(t.evictions, 1);
    }
}

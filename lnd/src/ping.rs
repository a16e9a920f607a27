//! The discovery ping (`lnet_discover_peer`, `lnet_ping` in Lustre 2.15): before the first
//! non-reserved PUT or GET to a peer, GET its ping info on portal 0 with the reserved match
//! bits; if that fails, every message queued behind it fails. Our own ping target is attached
//! on every shard by [`crate::shard::Core::attach_ping_target`].

use std::rc::Rc;

use proto::lnet::{PING_MATCHBITS, PingInfo, RESERVED_PORTAL};

use crate::error::LnetError;
use crate::md::{Event, EventKind, Internal, MdHandle, MdOptions, ProcessId, Sink};
use crate::rt;
use crate::shard::{Core, CoreRef, Disc};

/// Bytes of ping info we accept (room for 255 NIs; longer replies are truncated and still
/// valid, as in Lustre).
const PING_BUF: usize = 16 + 16 * 255;

/// A discovery in progress for one peer.
#[derive(Debug)]
pub(crate) struct DiscRun {
    md: MdHandle,
    replied: Option<usize>,
}

/// Starts discovery of `peer` (on its home shard).
pub(crate) fn start_discovery(core: &CoreRef, peer: ProcessId) {
    Core::bump(&core.stats.ping_tx);
    let opts = MdOptions { truncate: true, threshold: Some(2), ..MdOptions::default() };
    let md = match core.md_create(
        vec![Box::new(vec![0u8; PING_BUF])],
        opts,
        0,
        Sink::Internal(Internal::Discovery(peer)),
        None,
    ) {
        Ok(h) => h,
        Err(e) => {
            finish(core, peer, Err(e));
            return;
        }
    };
    core.st.borrow_mut().discovering.insert(peer, DiscRun { md, replied: None });
    let c = core.clone();
    rt::spawn(async move {
        if let Err(e) =
            c.start_op(md, peer, true, RESERVED_PORTAL, PING_MATCHBITS, 0, false, 0).await
        {
            fail_run(&c, peer, md, e);
            return;
        }
        rt::sleep(c.cfg.discovery_timeout).await;
        fail_run(&c, peer, md, LnetError::TimedOut);
    });
}

fn fail_run(core: &CoreRef, peer: ProcessId, md: MdHandle, e: LnetError) {
    let current = core.st.borrow().discovering.get(&peer).is_some_and(|r| r.md == md);
    if current {
        core.st.borrow_mut().discovering.remove(&peer);
        let _ = core.unlink(md);
        finish(core, peer, Err(e));
    }
}

/// An event on a discovery ping MD.
pub(crate) fn discovery_event(core: &Rc<Core>, peer: ProcessId, ev: Event) {
    let current = core.st.borrow().discovering.get(&peer).is_some_and(|r| r.md == ev.md);
    if !current {
        return;
    }
    if let Err(e) = ev.status {
        core.st.borrow_mut().discovering.remove(&peer);
        if !ev.unlinked {
            let _ = core.unlink(ev.md);
        }
        finish(core, peer, Err(e));
        return;
    }
    if ev.kind == EventKind::Reply
        && let Some(r) = core.st.borrow_mut().discovering.get_mut(&peer)
    {
        r.replied = Some(ev.mlength as usize);
    }
    if !ev.unlinked {
        return;
    }
    let run = core.st.borrow_mut().discovering.remove(&peer);
    let replied = run.and_then(|r| r.replied);
    let buf = ev.buffers.and_then(|b| b.into_vec()).unwrap_or_default();
    let res = match replied {
        Some(n) => PingInfo::decode(buf.get(..n).unwrap_or_default())
            .map(|_| ())
            .map_err(|e| LnetError::Proto(format!("bad ping reply: {e}"))),
        None => Err(LnetError::DiscoveryFailed(peer.nid)),
    };
    finish(core, peer, res);
}

fn finish(core: &CoreRef, peer: ProcessId, res: Result<(), LnetError>) {
    match res {
        Ok(()) => {
            let mut st = core.st.borrow_mut();
            if let Some(p) = st.peers.get_mut(&peer) {
                p.disc = Disc::Up;
                let q: Vec<_> = p.disc_queue.drain(..).collect();
                p.queue.extend(q);
            }
            drop(st);
            core.pump(peer);
        }
        Err(e) => {
            Core::bump(&core.stats.ping_failed);
            log::warn!("shard {}: discovery of {peer} failed: {e}", core.id);
            if let Some(p) = core.st.borrow_mut().peers.get_mut(&peer) {
                p.disc = Disc::Unknown;
            }
            core.fail_peer_queue(peer, &LnetError::DiscoveryFailed(peer.nid), true);
        }
    }
}

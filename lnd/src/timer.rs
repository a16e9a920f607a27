//! The per-shard housekeeping tick: keepalives, dead-peer detection, stalled connections,
//! overdue ZC-ACKs, reconnects and the node's stop flag (`ksocknal_reaper` in Lustre).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::md::ProcessId;
use crate::rt;
use crate::shard::{Core, CoreRef};

/// How often the stop flag is polled.
const POLL: Duration = Duration::from_millis(100);
/// How often peers and connections are checked.
const CHECK: Duration = Duration::from_secs(1);
/// socklnd retries a keepalive this long after the last one.
const KEEPALIVE_RETRY: Duration = Duration::from_secs(10);

pub(crate) async fn tick_loop(core: CoreRef, stop: Arc<AtomicBool>) {
    let mut last = Instant::now();
    loop {
        rt::sleep(POLL).await;
        if core.stopping.get() {
            return;
        }
        if stop.load(Ordering::Acquire) {
            core.stopping.set(true);
            core.shutdown.notify();
            return;
        }
        if last.elapsed() >= CHECK {
            last = Instant::now();
            check(&core);
        }
    }
}

fn check(core: &CoreRef) {
    let now = Instant::now();
    let cfg = &core.cfg;
    let mut keepalive = Vec::new();
    let mut dead = Vec::new();
    let mut reconnect = Vec::new();
    let mut close = Vec::new();
    {
        let st = &mut *core.st.borrow_mut();
        for (id, p) in st.peers.iter_mut() {
            if !p.conns.is_empty() {
                let idle = now.duration_since(p.last_alive);
                if cfg.peer_timeout > Duration::ZERO && idle >= cfg.peer_timeout {
                    dead.push(*id);
                    continue;
                }
                if cfg.keepalive > Duration::ZERO
                    && idle >= cfg.keepalive
                    && now >= p.next_keepalive
                {
                    p.next_keepalive = now + KEEPALIVE_RETRY;
                    keepalive.push(*id);
                }
                for (cid, _, since) in p.zc_waiting.values() {
                    if now.duration_since(*since) >= cfg.timeout {
                        close.push((*cid, "ZC-ACK overdue"));
                    }
                }
            } else if !p.queue.is_empty() && !p.connecting && now >= p.next_retry {
                reconnect.push(*id);
            }
            // A userspace peer cannot be dialled: fail what waits for it past the timeout.
            if p.conns.is_empty()
                && p.userspace()
                && p.queue.front().is_some_and(|m| now.duration_since(m.queued_at) >= cfg.timeout)
            {
                dead.push(*id);
            }
        }
        for (cid, c) in &st.conns {
            if c.closing {
                continue;
            }
            if !c.txq.is_empty() && now.duration_since(c.last_tx_progress) >= cfg.timeout {
                close.push((*cid, "transmit stalled"));
            } else if c.rx_busy && now.duration_since(c.last_rx) >= cfg.timeout {
                close.push((*cid, "receive stalled"));
            }
        }
    }
    for (cid, why) in close {
        core.close_conn(cid, why);
    }
    for id in keepalive {
        crate::conn::send_keepalive(core, id);
    }
    for id in dead {
        declare_dead(core, id);
    }
    for id in reconnect {
        crate::conn::maybe_connect(core, id);
    }
}

fn declare_dead(core: &CoreRef, id: ProcessId) {
    Core::bump(&core.stats.peers_dead);
    log::warn!("shard {}: peer {id} is dead (no news)", core.id);
    core.close_peer(id, "peer dead");
    core.fail_peer_queue(id, &crate::LnetError::Unreachable(id.nid), false);
    if let Some(p) = core.st.borrow_mut().peers.get_mut(&id) {
        p.disc = crate::shard::Disc::Unknown;
    }
}

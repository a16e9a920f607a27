//! A shard: one pinned executor and everything it owns (decision 3): its LNet instance, its
//! region of every local target, its partition of the lock namespaces, the exports of the
//! clients homed on it, and the request loops of every service portal.

use crate::config::ApplianceConfig;
use crate::ldlm::service::LdlmShard;
use crate::ldlm::{ExportId, NsLimits};
use crate::mesh::Mesh;
use crate::store::TargetKind;
use crate::{mdt, mgs, ost, target};
use lnd::Lnet;
use proto::portal;
use ptlrpc::export::ExportTable;
use ptlrpc::{Incoming, Refused, XidGen, server};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which target a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId {
    /// Kind.
    pub kind: TargetKind,
    /// Index.
    pub index: u32,
}

impl TargetId {
    /// Lustre's target name (`MGS`, `rustre-MDT0000`).
    #[must_use]
    pub fn name(&self, fsname: &str) -> String {
        match self.kind {
            TargetKind::Mgs => "MGS".into(),
            TargetKind::Mdt => format!("{fsname}-MDT{:04x}", self.index),
            TargetKind::Ost => format!("{fsname}-OST{:04x}", self.index),
        }
    }
    /// Lustre's target UUID (`MGS`, `rustre-MDT0000_UUID`).
    #[must_use]
    pub fn uuid(&self, fsname: &str) -> String {
        match self.kind {
            TargetKind::Mgs => "MGS".into(),
            _ => format!("{}_UUID", self.name(fsname)),
        }
    }
}

/// Counters of one shard's request handling.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Requests received.
    pub requests: Cell<u64>,
    /// Requests dropped because they did not decode.
    pub dropped: Cell<u64>,
    /// Error replies sent.
    pub errors: Cell<u64>,
    /// Requests being handled now.
    pub active: Cell<u64>,
    /// Microseconds spent handling requests.
    pub busy_us: Cell<u64>,
}

/// One shard's context.
#[derive(Debug)]
pub struct Shard {
    /// Index.
    pub id: usize,
    /// Shard count (fixed at format time).
    pub n: usize,
    /// LNet.
    pub lnet: Lnet,
    /// Configuration (shared read-only).
    pub cfg: Arc<ApplianceConfig>,
    /// Cross-shard calls.
    pub mesh: Rc<Mesh<Shard>>,
    /// Xids for our own requests (callbacks, target registration).
    pub xids: Rc<XidGen>,
    /// When the shard started (its clock).
    pub t0: Instant,
    /// Export cookie to target, for clients homed here.
    pub exports: RefCell<HashMap<u64, TargetId>>,
    /// Locks.
    pub ldlm: LdlmShard,
    /// The MGS (exports on every shard; its database on shard 0).
    pub mgs: Option<mgs::service::MgsShard>,
    /// This shard's part of each local MDT.
    pub mdts: Vec<mdt::MdtShard>,
    /// This shard's part of each local OST.
    pub osts: Vec<ost::OstShard>,
    /// Counters.
    pub stats: ShardStats,
    /// Counters behind the management console's parameters.
    pub mgmt: crate::mgmt::MgmtShard,
    /// Random per start: export cookies of a restarted server never match stale ones.
    pub salt: u64,
    /// The rest of the file system as the MGC last read it (nodes with a remote MGS).
    pub cluster: RefCell<crate::mgc::Cluster>,
    /// MDT imports of remote OSTs, by (MDT index, OST index), on the shard
    /// [`crate::osp`] assigns each OST.
    pub ost_imports: RefCell<HashMap<(u32, u32), Rc<ptlrpc::Import>>>,
}

/// The home shard of an export cookie (export tables put the shard in the top 16 bits).
#[must_use]
pub fn export_home(cookie: u64) -> usize {
    usize::try_from(cookie >> 48).unwrap_or(0)
}

impl Shard {
    /// Milliseconds since the shard started (the LDLM and export clocks).
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The export table of a local target.
    pub fn export_table(&self, t: TargetId) -> Option<&RefCell<ExportTable>> {
        match t.kind {
            TargetKind::Mgs => self.mgs.as_ref().map(|m| &m.exports),
            TargetKind::Mdt => self.mdts.iter().find(|m| m.index == t.index).map(|m| &m.exports),
            TargetKind::Ost => self.osts.iter().find(|o| o.index == t.index).map(|o| &o.exports),
        }
    }

    /// Local targets.
    pub fn targets(&self) -> Vec<TargetId> {
        let mut v = Vec::new();
        if self.mgs.is_some() {
            v.push(TargetId { kind: TargetKind::Mgs, index: 0 });
        }
        v.extend(self.mdts.iter().map(|m| TargetId { kind: TargetKind::Mdt, index: m.index }));
        v.extend(self.osts.iter().map(|o| TargetId { kind: TargetKind::Ost, index: o.index }));
        v
    }

    /// The MDT partition of index `index`.
    pub fn mdt(&self, index: u32) -> Option<&mdt::MdtShard> {
        self.mdts.iter().find(|m| m.index == index)
    }

    /// The OST partition of index `index`.
    pub fn ost(&self, index: u32) -> Option<&ost::OstShard> {
        self.osts.iter().find(|o| o.index == index)
    }

    /// Target by UUID.
    pub fn target_by_uuid(&self, uuid: &str) -> Option<TargetId> {
        self.targets().into_iter().find(|t| t.uuid(&self.cfg.fsname) == uuid)
    }
}

/// Evicts an export homed on this shard: drops it and every lock it holds on every shard.
pub async fn evict_export(sh: &Rc<Shard>, cookie: u64) {
    let target = sh.exports.borrow_mut().remove(&cookie);
    let Some(t) = target else { return };
    if let Some(tab) = sh.export_table(t)
        && let Some(e) = tab.borrow_mut().evict(cookie)
    {
        log::warn!("{}: evicting client {} at {}", t.name(&sh.cfg.fsname), e.client_uuid, e.peer);
    }
    drop_export_everywhere(sh, cookie).await;
}

/// Drops an export's locks (and other per-export state) on every shard.
pub async fn drop_export_everywhere(sh: &Rc<Shard>, cookie: u64) {
    for s in 0..sh.n {
        let r = sh
            .mesh
            .call(sh, s, move |x: Rc<Shard>| async move {
                crate::ldlm::service::drop_export(&x, ExportId(cookie));
                for m in &x.mdts {
                    m.forget_export(cookie);
                }
                for o in &x.osts {
                    o.forget_export(cookie);
                }
            })
            .await;
        if r.is_err() {
            log::debug!("shard {s} gone while dropping export {cookie:#x}");
        }
    }
}

/// Portals served, with the buffers posted on each (per shard).
pub fn service_portals(sh: &Shard) -> Vec<(u32, server::ServiceBuffers)> {
    let small = server::ServiceBuffers { count: 64, size: 16 << 10 };
    let mut v = vec![(portal::LDLM_CANCEL_REQUEST, small)];
    if sh.mgs.is_some() {
        v.push((portal::MGS_REQUEST, small));
    }
    if !sh.mdts.is_empty() {
        v.extend(
            [portal::MDS_REQUEST, portal::MDS_READPAGE, portal::SEQ_METADATA, portal::FLD_REQUEST]
                .map(|p| (p, small)),
        );
    }
    if !sh.osts.is_empty() {
        v.push((portal::OST_REQUEST, small));
        v.push((portal::OST_CREATE, small));
        // BRW requests carry up to 4096 niobufs (64 KiB) and short I/O.
        v.push((portal::OST_IO, server::ServiceBuffers { count: 64, size: 128 << 10 }));
    }
    v
}

/// Runs the request loop of one portal until the node stops.
pub async fn serve_portal(sh: Rc<Shard>, portal: u32, bufs: server::ServiceBuffers) {
    let rq = match server::request_queue(&sh.lnet, portal, bufs) {
        Ok(q) => q,
        Err(e) => {
            return log::error!(
                "shard {}: cannot post request buffers on portal {portal}: {e}",
                sh.id
            );
        }
    };
    loop {
        let r = futures_lite::future::or(async { Some(rq.next().await) }, async {
            sh.lnet.stopped().await;
            None
        })
        .await;
        let Some(r) = r else { return };
        sh.stats.requests.set(sh.stats.requests.get() + 1);
        let arrival = crate::mgmt::Arrival {
            at: Instant::now(),
            qdepth: sh.stats.active.get(),
            bufs_avail: rq.posted() as u64,
        };
        match Incoming::decode(r) {
            Ok(inc) => {
                let sh = sh.clone();
                glommio::spawn_local(async move { target::handle(sh, inc, arrival).await })
                    .detach();
            }
            Err(Refused::Drop(e)) => {
                sh.stats.dropped.set(sh.stats.dropped.get() + 1);
                crate::ratelog::warn(
                    "dropped request",
                    &format!("shard {}: portal {portal}: undecodable request dropped: {e}", sh.id),
                );
            }
            Err(Refused::Answer(inc, errno)) => {
                let sh = sh.clone();
                glommio::spawn_local(
                    async move { target::send_error(&sh, &inc, errno, false).await },
                )
                .detach();
            }
        }
    }
}

/// LDLM limits from the configuration.
#[must_use]
pub fn ldlm_limits(cfg: &ApplianceConfig) -> NsLimits {
    NsLimits { ast_timeout_ms: cfg.ldlm_timeout.saturating_mul(1000), ..NsLimits::default() }
}

/// How often idle exports are checked.
pub const EXPORT_SCAN: Duration = Duration::from_secs(5);

/// Evicts exports of clients that stopped talking to us.
pub async fn export_reaper(sh: Rc<Shard>) {
    loop {
        // Scan at least twice per eviction timeout.
        let half = Duration::from_millis(sh.cfg.evict_timeout.saturating_mul(500))
            .max(Duration::from_secs(1));
        glommio::timer::sleep(EXPORT_SCAN.min(half)).await;
        if sh.lnet.is_stopping() {
            return;
        }
        let now = sh.now_ms();
        for t in sh.targets() {
            let idle = sh.export_table(t).map(|tab| tab.borrow().idle(now)).unwrap_or_default();
            for cookie in idle {
                log::warn!("{}: client export {cookie:#x} silent too long", t.name(&sh.cfg.fsname));
                evict_export(&sh, cookie).await;
            }
        }
    }
}

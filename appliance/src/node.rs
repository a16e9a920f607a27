//! Starting and stopping an appliance node: labels and formats, LNet, the shards and their
//! targets, recovery, registration with the MGS, then the service loops.

use crate::config::{ApplianceConfig, TargetConfig};
use crate::ldlm::service::{LdlmShard, watchdog};
use crate::mdt::MdtShard;
use crate::mesh::{Mesh, MeshSpec, mesh};
use crate::mgs::service::MgsShard;
use crate::ost::OstShard;
use crate::shard::{Shard, ShardStats, export_reaper, ldlm_limits, serve_portal, service_portals};
use crate::store::{AnyOsd, Backend, Label, TargetKind, open_shard, read_label, write_label};
use glommio::channels::local_channel::{LocalSender, new_bounded};
use lnd::{AcceptMode, Config as LnetConfig, Lnet, NiConfig, Node, Placement};
use osd_nvme::OsdConfig;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Formats a target device: creates a file backend, writes the label.
pub fn mkfs(fsname: &str, t: &TargetConfig, nshards: u32) -> Result<Label, String> {
    let label = Label {
        fsname: fsname.to_string(),
        kind: t.kind,
        index: t.index,
        nshards,
        created: now_secs(),
    };
    let (path, create) = match &t.backend {
        Backend::Mem => return Ok(label),
        Backend::File(p) => (p.clone(), Some(t.size)),
        Backend::Dev(p) => (p.clone(), None),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    run_local(move || async move { write_label(&path, create, &label).await.map(|()| label) })
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `rustre fsck PATH`: the label and each shard's fsck report.
pub fn fsck(path: &std::path::Path) -> Result<(Label, Vec<osd_nvme::fsck::FsckReport>), String> {
    let p = path.to_path_buf();
    run_local(move || async move { crate::store::fsck(&p).await })
}

/// Runs an async job on a throwaway executor (for mkfs and label reads before the node runs).
fn run_local<T: Send + 'static, F, Fut>(f: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>> + 'static,
{
    let h = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("rustre-mkfs")
        .spawn(move || async move { f().await })
        .map_err(|e| e.to_string())?;
    h.join().map_err(|e| e.to_string())?
}

/// Reads the label of every persistent target; formats the ones with no label when
/// `format_missing` (the embedded default's first start). Returns the shard count to run.
pub fn prepare(cfg: &ApplianceConfig, format_missing: bool) -> Result<usize, String> {
    let mut nshards: Option<u32> = None;
    for t in &cfg.targets {
        let path = match &t.backend {
            Backend::Mem => continue,
            Backend::File(p) | Backend::Dev(p) => p.clone(),
        };
        let exists = path.exists();
        let label = if exists {
            let p2 = path.clone();
            run_local(move || async move { read_label(&p2).await })
        } else {
            Err("missing".into())
        };
        let label = match label {
            Ok(l) => l,
            Err(e) if format_missing && (!exists || e.contains("mkfs")) => {
                let n = u32::try_from(cfg.cores).unwrap_or(1);
                log::info!(
                    "formatting {} {} on {} ({} shards)",
                    t.kind.as_str(),
                    t.index,
                    t.backend,
                    n
                );
                mkfs(&cfg.fsname, t, n)?
            }
            Err(e) => return Err(format!("{} {}: {e}", t.kind.as_str(), t.index)),
        };
        if label.kind != t.kind || label.index != t.index {
            return Err(format!(
                "{}: holds {} {} of {}, configured as {} {}",
                t.backend,
                label.kind.as_str(),
                label.index,
                label.fsname,
                t.kind.as_str(),
                t.index
            ));
        }
        if label.fsname != cfg.fsname {
            return Err(format!(
                "{}: belongs to file system {:?}, not {:?}",
                t.backend, label.fsname, cfg.fsname
            ));
        }
        match nshards {
            None => nshards = Some(label.nshards),
            Some(n) if n != label.nshards => {
                return Err(format!(
                    "targets were formatted with different shard counts ({n} and {})",
                    label.nshards
                ));
            }
            Some(_) => {}
        }
    }
    let n = nshards.map_or(cfg.cores, |n| n as usize);
    if n != cfg.cores {
        log::warn!("targets were formatted for {n} shards: running {n} (not {})", cfg.cores);
    }
    Ok(n)
}

/// A barrier across shards, kept on shard 0.
#[derive(Debug, Default)]
pub struct Barrier {
    arrived: Cell<usize>,
    phase: Cell<u32>,
    waiters: RefCell<Vec<LocalSender<()>>>,
}

thread_local! {
    static BARRIER: Barrier = Barrier::default();
}

/// Waits until every shard reached this point.
pub async fn barrier(sh: &Rc<Shard>) {
    let n = sh.n;
    let r = sh
        .mesh
        .call(sh, 0, move |_z: Rc<Shard>| async move {
            let rx = BARRIER.with(|b| {
                b.arrived.set(b.arrived.get() + 1);
                if b.arrived.get() >= n {
                    b.arrived.set(0);
                    b.phase.set(b.phase.get() + 1);
                    for w in b.waiters.borrow_mut().drain(..) {
                        let _ = w.try_send(());
                    }
                    None
                } else {
                    let (tx, rx) = new_bounded(1);
                    b.waiters.borrow_mut().push(tx);
                    Some(rx)
                }
            });
            if let Some(rx) = rx {
                rx.recv().await;
            }
        })
        .await;
    if r.is_err() {
        log::warn!("shard {}: barrier lost shard 0", sh.id);
    }
}

/// Opens a target's OSD on one shard (memory or persistent, with its committer task).
async fn open_osd(
    t: &TargetConfig,
    shard: usize,
    nshards: usize,
    cache: u64,
) -> Result<AnyOsd, String> {
    match &t.backend {
        Backend::Mem => Ok(AnyOsd::mem(t.size.max(64 << 20))),
        Backend::File(p) | Backend::Dev(p) => {
            let (osd, formatted) = open_shard(
                p,
                u32::try_from(shard).unwrap_or(0),
                u32::try_from(nshards).unwrap_or(1),
                OsdConfig { cache_size: cache, ..OsdConfig::default() },
            )
            .await?;
            if formatted {
                log::info!("{} {}: shard {shard} formatted", t.kind.as_str(), t.index);
            }
            // Group commits every 5 ms at most, as a journal does.
            glommio::spawn_local(
                osd.clone().committer_with(Duration::from_millis(5), glommio::timer::sleep),
            )
            .detach();
            Ok(AnyOsd::Disk(osd))
        }
    }
}

async fn run_shard(
    lnet: Lnet,
    cfg: Arc<ApplianceConfig>,
    spec: MeshSpec<Shard>,
    n: usize,
    salt: u64,
    repl: Option<flume::Receiver<::mgmt::repl::ReplRequest>>,
) {
    let id = lnet.shard();
    let (mesh, receivers) = match Mesh::join(spec).await {
        Ok(x) => x,
        Err(e) => return log::error!("shard {id}: mesh: {e}"),
    };
    let ldlm = LdlmShard::new(ldlm_limits(&cfg));
    let mut mgs = None;
    let mut mdts = Vec::new();
    let mut osts = Vec::new();
    for t in &cfg.targets {
        let r: Result<(), String> = async {
            match t.kind {
                TargetKind::Mgs => {
                    let (osd, slot) = if id == 0 {
                        (
                            Some(open_osd(t, 0, n, cfg.cache_size).await?),
                            Some(ldlm.add_namespace("MGS", id)),
                        )
                    } else {
                        (None, None)
                    };
                    mgs = Some(
                        MgsShard::open(
                            id,
                            salt,
                            osd,
                            slot,
                            &cfg.fsname,
                            cfg.stripe_size,
                            cfg.stripe_count,
                        )
                        .await?,
                    );
                }
                TargetKind::Mdt => {
                    let osd = open_osd(t, id, n, cfg.cache_size).await?;
                    let slot = ldlm
                        .add_namespace(&format!("mdt-{}-MDT{:04x}_UUID", cfg.fsname, t.index), id);
                    mdts.push(MdtShard::open(t.index, id, salt, osd, slot).await?);
                }
                TargetKind::Ost => {
                    let osd = open_osd(t, id, n, cfg.cache_size).await?;
                    let slot = ldlm.add_namespace(
                        &format!("filter-{}-OST{:04x}_UUID", cfg.fsname, t.index),
                        id,
                    );
                    crate::ost::init_shard(&osd).await?;
                    osts.push(OstShard::new(t.index, id, salt, osd, slot));
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            log::error!("shard {id}: {} {}: {e}", t.kind.as_str(), t.index);
            crate::node::fatal(&format!("cannot open {} {}: {e}", t.kind.as_str(), t.index));
            return;
        }
    }
    let sh = Rc::new(Shard {
        id,
        n,
        xids: Rc::new(ptlrpc::XidGen::new(id, n, u64::try_from(now_secs()).unwrap_or(0))),
        lnet: lnet.clone(),
        cfg: cfg.clone(),
        mesh: mesh.clone(),
        t0: Instant::now(),
        exports: RefCell::new(HashMap::new()),
        ldlm,
        mgs,
        mdts,
        osts,
        stats: ShardStats::default(),
        mgmt: crate::mgmt::MgmtShard::default(),
        salt,
        cluster: RefCell::new(crate::mgc::Cluster::default()),
        ost_imports: RefCell::new(HashMap::new()),
    });
    for t in sh.targets() {
        if let Some(tab) = sh.export_table(t) {
            let mut tab = tab.borrow_mut();
            let l = ptlrpc::export::ExportLimits {
                evict_after_ms: cfg.evict_timeout.saturating_mul(1000),
                ..tab.limits()
            };
            tab.set_limits(l);
        }
    }
    glommio::spawn_local(mesh.clone().serve(receivers, sh.clone())).detach();
    barrier(&sh).await;
    // Finish cross-shard operations interrupted by a crash before anything else runs.
    for idx in sh.mdts.iter().map(|m| m.index).collect::<Vec<_>>() {
        if let Err(e) = crate::mdt::replay(&sh, idx).await {
            crate::node::fatal(&format!("MDT{idx:04x} intent log replay: {e}"));
            return;
        }
    }
    barrier(&sh).await;
    if id == 0 && cfg.local_mgs() {
        let local: Vec<(TargetKind, u32)> = cfg.targets.iter().map(|t| (t.kind, t.index)).collect();
        if let Err(e) = crate::mgs::service::register_local(&sh, &local, &cfg.nids).await {
            crate::node::fatal(&e);
            return;
        }
    }
    if id == 0 && !cfg.local_mgs() {
        glommio::spawn_local(crate::mgc::run(sh.clone())).detach();
    }
    barrier(&sh).await;
    for (p, b) in service_portals(&sh) {
        glommio::spawn_local(serve_portal(sh.clone(), p, b)).detach();
    }
    glommio::spawn_local(watchdog(sh.clone())).detach();
    if !sh.osts.is_empty() {
        glommio::spawn_local(crate::ost::grant_refresher(sh.clone())).detach();
    }
    glommio::spawn_local(export_reaper(sh.clone())).detach();
    if id == 0 {
        let targets: Vec<String> = sh.targets().iter().map(|t| t.name(&cfg.fsname)).collect();
        let nids: Vec<String> = cfg.nids.iter().map(ToString::to_string).collect();
        log::info!(
            "rustre: serving {} on {} ({} shards, port {}): {}",
            cfg.fsname,
            nids.join(","),
            n,
            cfg.port,
            targets.join(" ")
        );
        // The management console (HTTP, REPL) runs as tasks of shard 0.
        glommio::spawn_local(crate::mgmt::run(sh.clone(), repl)).detach();
        READY.with(|r| r.set(true));
        if let Some(f) = STARTED.with(|s| s.borrow_mut().take()) {
            f();
        }
    }
    lnet.stopped().await;
    // Clean shutdown: make everything durable.
    for m in &sh.mdts {
        let _ = osd_nvme::Osd::sync(&m.store.osd).await;
    }
    for o in &sh.osts {
        let _ = osd_nvme::Osd::sync(&o.osd).await;
    }
    if let Some(st) = sh.mgs.as_ref().and_then(|m| m.state.as_ref()) {
        let _ = st;
    }
    log::info!("shard {id}: stopped");
}

thread_local! {
    static READY: Cell<bool> = const { Cell::new(false) };
    static STARTED: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
}

static FATAL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records a fatal start-up error (the node stops; PID 1 prints it and reboots).
pub fn fatal(msg: &str) {
    log::error!("fatal: {msg}");
    let _ = FATAL.set(msg.to_string());
}

/// The fatal error, if one happened.
pub fn fatal_error() -> Option<String> {
    FATAL.get().cloned()
}

/// A running node.
#[derive(Debug)]
pub struct Running {
    node: Node,
    /// Shards.
    pub nshards: usize,
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Running {
    /// Whether every shard is serving.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }
    /// Asks every shard to stop.
    pub fn stop(&self) {
        self.node.stop();
    }
    /// Waits for the shards to finish.
    pub fn join(self) -> Result<(), String> {
        self.node.join().map_err(|e| e.to_string())
    }
}

/// Starts a node with `n` shards (from [`prepare`]).
pub fn start(cfg: ApplianceConfig, n: usize) -> Result<Running, String> {
    start_with(cfg, n, None)
}

/// Starts a node with `n` shards whose console also serves the lines of `repl` (the REPL
/// on stdin or the serial console).
pub fn start_with(
    cfg: ApplianceConfig,
    n: usize,
    repl: Option<flume::Receiver<::mgmt::repl::ReplRequest>>,
) -> Result<Running, String> {
    let mut nis = Vec::new();
    for nid in &cfg.nids {
        nis.push(NiConfig::new(*nid, cfg.port).map_err(|e| format!("NID {nid}: {e}"))?);
    }
    let mut lc = LnetConfig::new(nis);
    lc.port = cfg.port;
    lc.accept = if cfg.accept_secure { AcceptMode::Secure } else { AcceptMode::All };
    lc.placement = Placement::MaxSpread(n);
    lc.routes = ptlrpc::lnet_routes();
    lc.lazy_portals = vec![
        proto::portal::MGS_REQUEST,
        proto::portal::MDS_REQUEST,
        proto::portal::MDS_READPAGE,
        proto::portal::SEQ_METADATA,
        proto::portal::FLD_REQUEST,
        proto::portal::OST_REQUEST,
        proto::portal::OST_IO,
        proto::portal::OST_CREATE,
        proto::portal::LDLM_CANCEL_REQUEST,
    ];
    let spec: MeshSpec<Shard> = mesh(n, 1024);
    let cfg = Arc::new(cfg);
    let salt = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros()),
    )
    .unwrap_or(1);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ready2 = ready.clone();
    let node = Node::start(lc, move |lnet: Lnet| {
        let ready = ready2.clone();
        let repl = repl.clone();
        async move {
            if lnet.shard() == 0 {
                STARTED.with(|s| {
                    *s.borrow_mut() = Some(Box::new(move || {
                        ready.store(true, std::sync::atomic::Ordering::Release)
                    }))
                });
            }
            let repl = if lnet.shard() == 0 { repl } else { None };
            run_shard(lnet, cfg, spec, n, salt, repl).await;
        }
    })
    .map_err(|e| format!("LNet: {e}"))?;
    Ok(Running { node, nshards: n, ready })
}

//! The appliance side of the management console (design decision 10): the counters behind
//! Lustre's parameter files, kept per shard, and the [`::mgmt::console::Backend`] that gathers
//! them from every shard over the mesh.
//!
//! * Requests are counted where every target's requests pass ([`account`], called by
//!   [`crate::target::handle`]): service stats (`ost.OSS.ost_io.stats`), target stats
//!   (`obdfilter.*.stats`, `mdt.*.md_stats`), per-export stats, job_stats keyed by
//!   `pb_jobid`, and the OSTs' I/O histograms (`osd-*.*.brw_stats`).
//! * Object creation and destruction happen in-process for the local MDT, so the OST counts
//!   them where they run ([`OstOpTimer`]).
//! * The console runs on shard 0 ([`run`]): the HTTP server and the REPL are glommio tasks
//!   there, and each command gathers a snapshot from every shard.

use crate::shard::{Shard, TargetId};
use crate::store::{AnyOsd, TargetKind};
use ::mgmt::console::{Backend, Console, PeerStatus, Sample, ShardStatus, Status, TargetStatus};
use ::mgmt::lprocfs::{Brw, BrwStats, CounterDef, JobStats, Stats};
use ::mgmt::names::{MDT_STATS, OFD_STATS, SVC_STATS};
use ::mgmt::params::{Param, Pattern, Tree, Value};
use osd_nvme::Osd;
use proto::ldlm::{LdlmIntent, it};
use proto::mdt::ReintRec;
use proto::opcode::Opcode;
use proto::ost::NiobufRemote;
use proto::portal;
use proto::wire::Wire;
use ptlrpc::Incoming;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// What the request loop knew when a request arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When it arrived.
    pub at: Instant,
    /// Requests being handled on the shard then (`req_qdepth`).
    pub qdepth: u64,
    /// Request buffers still posted on its portal (`reqbuf_avail`).
    pub bufs_avail: u64,
}

/// Exports with stats of their own kept per target and shard; more share nothing (bounded).
pub const MAX_EXPORT_STATS: usize = 4096;

/// The counters of one target on one shard.
#[derive(Debug)]
struct TargetCounters {
    stats: Stats,
    exports: RefCell<HashMap<String, Stats>>,
    jobs: JobStats,
    defs: &'static [CounterDef],
}

impl TargetCounters {
    fn new(defs: &'static [CounterDef]) -> TargetCounters {
        TargetCounters {
            stats: Stats::new(defs),
            exports: RefCell::new(HashMap::new()),
            jobs: JobStats::new(defs),
            defs,
        }
    }
    fn add(&self, nid: &str, jobid: &[u8], name: &str, v: u64) {
        self.stats.add(name, v);
        self.jobs.log(jobid, name, v);
        let mut ex = self.exports.borrow_mut();
        if let Some(s) = ex.get(nid) {
            s.add(name, v);
        } else if ex.len() < MAX_EXPORT_STATS {
            let s = Stats::new(self.defs);
            s.add(name, v);
            ex.insert(nid.to_string(), s);
        }
    }
}

/// The management counters of one shard (plain cells: only this shard touches them).
#[derive(Debug, Default)]
pub struct MgmtShard {
    ofd: RefCell<BTreeMap<u32, Rc<TargetCounters>>>,
    mdt: RefCell<BTreeMap<u32, Rc<TargetCounters>>>,
    svc: RefCell<BTreeMap<&'static str, Stats>>,
    brw: RefCell<BTreeMap<u32, Rc<BrwStats>>>,
    /// Bytes read from and written to local OSTs by clients (for the page's graph).
    read_bytes: Cell<u64>,
    write_bytes: Cell<u64>,
}

impl MgmtShard {
    fn target(&self, kind: TargetKind, index: u32) -> Option<Rc<TargetCounters>> {
        let (map, defs) = match kind {
            TargetKind::Ost => (&self.ofd, &OFD_STATS[..]),
            TargetKind::Mdt => (&self.mdt, &MDT_STATS[..]),
            TargetKind::Mgs => return None,
        };
        Some(
            map.borrow_mut()
                .entry(index)
                .or_insert_with(|| Rc::new(TargetCounters::new(defs)))
                .clone(),
        )
    }
    fn brw(&self, index: u32) -> Rc<BrwStats> {
        self.brw.borrow_mut().entry(index).or_default().clone()
    }
}

/// Lustre's service of a request portal: (parameter prefix, service name).
fn service_of(portal: u32) -> (&'static str, &'static str, &'static str) {
    match portal {
        portal::OST_REQUEST => ("ost", "OSS", "ost"),
        portal::OST_IO => ("ost", "OSS", "ost_io"),
        portal::OST_CREATE => ("ost", "OSS", "ost_create"),
        portal::MDS_REQUEST => ("mds", "MDS", "mdt"),
        portal::MDS_READPAGE => ("mds", "MDS", "mdt_readpage"),
        portal::SEQ_METADATA => ("mds", "MDS", "mdt_seqm"),
        portal::FLD_REQUEST => ("mds", "MDS", "mdt_fld"),
        portal::MGS_REQUEST => ("mgs", "MGS", "mgs"),
        portal::LDLM_CANCEL_REQUEST => ("ldlm", "services", "ldlm_canceld"),
        _ => ("ost", "OSS", "other"),
    }
}

/// Lustre's lower-case opcode names (`ost_write`), as service stats name their rows.
fn opcode_row(o: Opcode) -> &'static str {
    static NAMES: std::sync::LazyLock<HashMap<u32, &'static str>> =
        std::sync::LazyLock::new(|| {
            // Built once from the fixed opcode table: a bounded set of names.
            Opcode::ALL
                .iter()
                .map(|o| (o.raw(), &*Box::leak(o.name().to_ascii_lowercase().into_boxed_str())))
                .collect()
        });
    NAMES.get(&o.raw()).copied().unwrap_or("unknown")
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The `md_stats` operation a request is (`mdt_counter_incr` and the reint handlers).
fn md_ops(inc: &Incoming) -> Vec<&'static str> {
    let one = |s| vec![s];
    match inc.opc() {
        Opcode::MdsGetattr | Opcode::MdsGetattrName => one("getattr"),
        Opcode::MdsStatfs => one("statfs"),
        Opcode::MdsClose => one("close"),
        Opcode::MdsSync => one("sync"),
        Opcode::MdsGetxattr => one("getxattr"),
        Opcode::MdsReint => {
            let Ok(m) = inc.msg() else { return Vec::new() };
            match m.buf(1).map(ReintRec::decode) {
                Some(Ok(ReintRec::Create(r))) => {
                    one(if r.cr_mode.get() & 0o170_000 == 0o040_000 { "mkdir" } else { "mknod" })
                }
                Some(Ok(ReintRec::Open(_))) => one("open"),
                Some(Ok(ReintRec::Setattr(_))) => one("setattr"),
                Some(Ok(ReintRec::Unlink(r))) => {
                    one(if r.ul_mode.get() & 0o170_000 == 0o040_000 { "rmdir" } else { "unlink" })
                }
                Some(Ok(ReintRec::Link(_))) => one("link"),
                Some(Ok(ReintRec::Rename(r))) => vec![
                    "rename",
                    if r.rn_fid1 == r.rn_fid2 { "samedir_rename" } else { "crossdir_rename" },
                ],
                Some(Ok(ReintRec::Setxattr(_))) => one("setxattr"),
                _ => Vec::new(),
            }
        }
        Opcode::LdlmEnqueue => {
            let Ok(m) = inc.msg() else { return Vec::new() };
            let Some(Ok(i)) = m.buf(2).filter(|_| m.bufcount() > 2).map(LdlmIntent::read) else {
                return Vec::new();
            };
            let opc = i.opc.get();
            if opc & it::OPEN != 0 {
                one("open")
            } else if opc & (it::GETATTR | it::LOOKUP) != 0 {
                one("getattr")
            } else if opc & it::GETXATTR != 0 {
                one("getxattr")
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// The niobufs of a BRW request: (bytes, pages, discontiguities, contiguous runs).
fn brw_shape(inc: &Incoming) -> Option<(u64, u64, u64, u64)> {
    let m = inc.msg().ok()?;
    let b = m.buf(3)?;
    let n = b.len() / NiobufRemote::SIZE;
    let nbs = proto::ost::decode_niobufs(b, n).ok()?;
    let (mut bytes, mut pages, mut gaps) = (0u64, 0u64, 0u64);
    let mut end: Option<u64> = None;
    for nb in nbs {
        // Offsets come from the client: nothing here may overflow.
        let (off, len) = (nb.rnb_offset.get(), u64::from(nb.rnb_len.get()));
        let stop = off.saturating_add(len);
        bytes = bytes.saturating_add(len);
        pages = pages.saturating_add(stop.div_ceil(4096).saturating_sub(off / 4096));
        if end.is_some_and(|e| e != off) {
            gaps += 1;
        }
        end = Some(stop);
    }
    Some((bytes, pages, gaps, gaps + 1))
}

/// Counts one handled request (called by [`crate::target::handle`] once the handler is done).
pub fn account(
    sh: &Shard,
    inc: &Incoming,
    arrival: &Arrival,
    started: Instant,
    outcome: &crate::target::Outcome,
) {
    let took = us(started.elapsed());
    let (_, _, svc) = service_of(inc.portal);
    {
        let mut m = sh.mgmt.svc.borrow_mut();
        let s = m.entry(svc).or_insert_with(|| Stats::new(&SVC_STATS));
        s.add("req_waittime", us(started.saturating_duration_since(arrival.at)));
        s.add("req_qdepth", arrival.qdepth);
        s.add("req_active", sh.stats.active.get());
        s.add("req_timeout", u64::from(inc.body.pb_timeout.get()));
        s.add("reqbuf_avail", arrival.bufs_avail);
        s.add_or_insert(CounterDef::full(opcode_row(inc.opc()), "usecs"), took);
    }
    let Some(target) = sh.exports.borrow().get(&inc.body.pb_handle.get()).copied() else {
        return;
    };
    let reply = match outcome {
        crate::target::Outcome::Reply(r) => Some(r),
        _ => None,
    };
    let nid = inc.peer.nid.to_string();
    let jobid = inc.body.jobid();
    match target.kind {
        TargetKind::Ost => {
            let Some(c) = sh.mgmt.target(TargetKind::Ost, target.index) else { return };
            let name = match inc.opc() {
                Opcode::OstRead => "read",
                Opcode::OstWrite => "write",
                Opcode::OstGetattr => "getattr",
                Opcode::OstSetattr => "setattr",
                Opcode::OstPunch => "punch",
                Opcode::OstSync => "sync",
                Opcode::OstStatfs => "statfs",
                _ => return,
            };
            c.add(&nid, jobid, name, took);
            let write = inc.opc() == Opcode::OstWrite;
            if !matches!(inc.opc(), Opcode::OstRead | Opcode::OstWrite) {
                return;
            }
            let (Some(r), Some((asked, pages, gaps, runs))) = (reply, brw_shape(inc)) else {
                return;
            };
            let moved = if write {
                asked
            } else {
                proto::msg::LustreMsg::decode(r)
                    .ok()
                    .and_then(|m| m.body().ok())
                    .map_or(0, |b| u64::try_from(b.pb_status.get()).unwrap_or(0))
            };
            c.add(&nid, jobid, if write { "write_bytes" } else { "read_bytes" }, moved);
            let cell = if write { &sh.mgmt.write_bytes } else { &sh.mgmt.read_bytes };
            cell.set(cell.get().saturating_add(moved));
            let h = sh.mgmt.brw(target.index);
            h.tally(Brw::PagesPerBulk, write, pages);
            h.tally(Brw::DiscontigPages, write, gaps);
            h.tally(Brw::DiscontigBlocks, write, gaps);
            h.tally(Brw::Fragmented, write, runs);
            h.tally(Brw::InFlight, write, arrival.qdepth + 1);
            h.tally(Brw::IoTime, write, took / 1000);
            h.tally(Brw::IoSize, write, moved);
        }
        TargetKind::Mdt => {
            let Some(c) = sh.mgmt.target(TargetKind::Mdt, target.index) else { return };
            for op in md_ops(inc) {
                c.add(&nid, jobid, op, took);
            }
        }
        TargetKind::Mgs => {}
    }
}

/// Counts an OST operation the local MDT runs in-process (object precreation and
/// destruction) when dropped, with the time it took.
#[derive(Debug)]
pub struct OstOpTimer {
    sh: Rc<Shard>,
    ost: u32,
    name: &'static str,
    t0: Instant,
}

impl OstOpTimer {
    /// Starts timing operation `name` (`create`, `destroy`) on OST `ost`.
    #[must_use]
    pub fn new(sh: &Rc<Shard>, ost: u32, name: &'static str) -> OstOpTimer {
        OstOpTimer { sh: sh.clone(), ost, name, t0: Instant::now() }
    }
}

impl Drop for OstOpTimer {
    fn drop(&mut self) {
        if let Some(c) = self.sh.mgmt.target(TargetKind::Ost, self.ost) {
            c.stats.add(self.name, us(self.t0.elapsed()));
        }
    }
}

// ---- shutdown --------------------------------------------------------------------------------

/// 0: running; 1: shutdown asked; 2: reboot asked. The main thread polls it.
static STOP_ASKED: AtomicU8 = AtomicU8::new(0);

/// Whether the console asked the node to stop: `Some(reboot)`.
#[must_use]
pub fn stop_asked() -> Option<bool> {
    match STOP_ASKED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n == 2),
    }
}

// ---- gathering --------------------------------------------------------------------------------

/// What one shard reports.
#[derive(Debug, Default)]
struct ShardReport {
    tree: Tree,
    shard: ShardStatus,
    targets: Vec<TargetStatus>,
    peers: Vec<PeerStatus>,
    lnet: lnd::ShardStats,
    read_bytes: u64,
    write_bytes: u64,
}

fn p(path: &[&str], v: Value) -> Param {
    Param::new(path, v)
}

fn osd_type(osd: &AnyOsd) -> &'static str {
    match osd {
        AnyOsd::Mem(_) => "mem",
        AnyOsd::Disk(_) => "nvme",
    }
}

/// Lustre's `recovery_status` of a target with nothing to recover (Rustre finishes its
/// intent log before serving and clients need no replay window).
fn recovery_status() -> String {
    "status: COMPLETE\nrecovery_start: 0\nrecovery_duration: 0\ncompleted_clients: 0/0\n\
     replayed_requests: 0\nlast_transno: 0\nVBR: DISABLED\nIR: DISABLED"
        .to_string()
}

fn stats_value(s: &Stats) -> Value {
    Value::Stats(s.snapshot())
}

async fn shard_report(sh: Rc<Shard>) -> ShardReport {
    let fs = sh.cfg.fsname.clone();
    let mut r = ShardReport::default();
    let t = &mut r.tree;
    let mut exports_here = 0u64;
    for tid in sh.targets() {
        let name = tid.name(&fs);
        let (osd, prefix, readonly): (Option<&AnyOsd>, &str, bool) = match tid.kind {
            TargetKind::Ost => (sh.ost(tid.index).map(|o| &o.osd), "obdfilter", false),
            TargetKind::Mdt => (
                sh.mdt(tid.index).map(|m| &m.store.osd),
                "mdt",
                sh.mdt(tid.index).is_some_and(|m| m.readonly.get()),
            ),
            TargetKind::Mgs => (None, "mgs", false),
        };
        let mut ts = TargetStatus {
            name: name.clone(),
            uuid: tid.uuid(&fs),
            kind: tid.kind.as_str().to_uppercase(),
            index: tid.index,
            osd: match osd {
                Some(o) => format!("osd-{}", osd_type(o)),
                // The MGS's OSD is its own (shard 0); name it from the configuration.
                None => {
                    let mem = sh.cfg.targets.iter().any(|t| {
                        t.kind == tid.kind && matches!(t.backend, crate::store::Backend::Mem)
                    });
                    if mem { "osd-mem" } else { "osd-nvme" }.into()
                }
            },
            readonly,
            ..TargetStatus::default()
        };
        if let Some(tab) = sh.export_table(tid) {
            let tab = tab.borrow();
            ts.exports = tab.len() as u64;
            exports_here += ts.exports;
            if tid.kind != TargetKind::Mgs {
                t.insert(p(&[prefix, &name, "num_exports"], Value::Sum(ts.exports)));
                for e in tab.iter() {
                    let nid = e.peer.to_string();
                    t.insert(p(
                        &[prefix, &name, "exports", &nid, "uuid"],
                        Value::Lines(vec![e.client_uuid.clone()]),
                    ));
                }
            }
        }
        if let Some(osd) = osd
            && let Ok(st) = osd.statfs().await
        {
            let kb = |blocks: u64| blocks.saturating_mul(u64::from(st.bsize.max(1))) >> 10;
            ts.kb_total = kb(st.blocks);
            ts.kb_free = kb(st.bfree);
            ts.kb_avail = kb(st.bavail);
            ts.files_total = st.files;
            ts.files_free = st.ffree;
            let osdp = format!("osd-{}", osd_type(osd));
            for (pre, list) in [(prefix, false), (osdp.as_str(), true)] {
                for (k, v) in [
                    ("kbytestotal", ts.kb_total),
                    ("kbytesfree", ts.kb_free),
                    ("kbytesavail", ts.kb_avail),
                    ("filestotal", ts.files_total),
                    ("filesfree", ts.files_free),
                ] {
                    t.insert(p(&[pre, &name, k], Value::Sum(v)));
                }
                if list {
                    t.insert(p(&[pre, &name, "fstype"], Value::Text(osd_type(osd).into())));
                }
            }
        }
        if tid.kind != TargetKind::Mgs {
            t.insert(p(&[prefix, &name, "recovery_status"], Value::Text(recovery_status())));
            if let Some(c) = sh.mgmt.target(tid.kind, tid.index) {
                let sname = if tid.kind == TargetKind::Ost { "stats" } else { "md_stats" };
                t.insert(p(&[prefix, &name, sname], stats_value(&c.stats)).rw());
                if tid.kind == TargetKind::Ost {
                    ts.read_bytes = c.stats.snapshot().get("read_bytes").map_or(0, |x| x.sum);
                    ts.write_bytes = c.stats.snapshot().get("write_bytes").map_or(0, |x| x.sum);
                }
                for (nid, s) in c.exports.borrow().iter() {
                    t.insert(p(&[prefix, &name, "exports", nid, "stats"], stats_value(s)).rw());
                }
                t.insert(p(&[prefix, &name, "job_stats"], Value::Jobs(c.jobs.snapshot())).rw());
                t.insert(
                    p(
                        &[prefix, &name, "job_cleanup_interval"],
                        Value::Text(c.jobs.interval().to_string()),
                    )
                    .rw(),
                );
            }
            if tid.kind == TargetKind::Mdt {
                t.insert(
                    p(&[prefix, &name, "readonly"], Value::Text(u8::from(readonly).to_string()))
                        .rw(),
                );
            }
        }
        if tid.kind == TargetKind::Ost
            && let Some(osd) = osd
        {
            let b = sh.mgmt.brw(tid.index);
            let osdp = format!("osd-{}", osd_type(osd));
            t.insert(p(&[&osdp, &name, "brw_stats"], Value::Brw(b.snapshot())).rw());
        }
        r.targets.push(ts);
    }
    let mut locks = 0u64;
    for (ns, lock_count, res, unused, limits) in sh.ldlm.summary() {
        locks += lock_count as u64;
        let base = ["ldlm", "namespaces", ns.as_str()];
        let add = |t: &mut Tree, k: &str, v: Value, rw: bool| {
            let mut path = base.to_vec();
            path.push(k);
            let q = p(&path, v);
            t.insert(if rw { q.rw() } else { q });
        };
        add(t, "lock_count", Value::Sum(lock_count as u64), false);
        add(t, "lock_unused_count", Value::Sum(unused as u64), false);
        add(t, "resource_count", Value::Sum(res as u64), false);
        add(t, "lru_size", Value::Sum(limits.lru_size as u64), true);
        add(t, "lru_max_age", Value::Text(LRU_MAX_AGE_MS.to_string()), false);
    }
    // Every service this shard runs has its stats file, requests or not (as in Lustre).
    for (portal, _) in crate::shard::service_portals(&sh) {
        let svc = service_of(portal).2;
        sh.mgmt.svc.borrow_mut().entry(svc).or_insert_with(|| Stats::new(&SVC_STATS));
    }
    for (svc, s) in sh.mgmt.svc.borrow().iter() {
        let (a, b, _) = [
            portal::OST_REQUEST,
            portal::OST_IO,
            portal::OST_CREATE,
            portal::MDS_REQUEST,
            portal::MDS_READPAGE,
            portal::SEQ_METADATA,
            portal::FLD_REQUEST,
            portal::MGS_REQUEST,
            portal::LDLM_CANCEL_REQUEST,
        ]
        .into_iter()
        .map(service_of)
        .find(|x| x.2 == *svc)
        .unwrap_or(("ost", "OSS", "other"));
        t.insert(p(&[a, b, svc, "stats"], stats_value(s)).rw());
    }
    let st = &sh.stats;
    r.lnet = sh.lnet.stats();
    r.shard = ShardStatus {
        id: sh.id,
        requests: st.requests.get(),
        errors: st.errors.get(),
        dropped: st.dropped.get(),
        active: st.active.get(),
        busy_us: st.busy_us.get(),
        exports: exports_here,
        locks,
        lnet_rx: r.lnet.msgs_rx,
        lnet_tx: r.lnet.msgs_tx,
        mds: sh.lnet.live_mds() as u64,
        cache_bytes: 0,
    };
    r.peers = sh
        .lnet
        .peers()
        .into_iter()
        .map(|pi| PeerStatus {
            nid: pi.id.nid.to_string(),
            pid: pi.id.pid,
            shard: sh.id,
            conns: pi.conns as u64,
            credits: pi.credits as u64,
            queued: pi.queued as u64,
            up: pi.discovered,
        })
        .collect();
    r.read_bytes = sh.mgmt.read_bytes.get();
    r.write_bytes = sh.mgmt.write_bytes.get();
    r
}

/// Lustre's default `lru_max_age` (ms). Rustre's server namespaces age nothing out by time:
/// shown for tools that read it, not writable.
pub const LRU_MAX_AGE_MS: u64 = 3_900_000;

/// Resident and peak memory of the process, bytes.
fn memory() -> (u64, u64) {
    // procfs reads do not touch a disk; once per console command.
    let page = 4096u64;
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|x| x.parse::<u64>().ok()))
        .map_or(0, |p| p * page);
    let peak = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map_or(0, |u| u64::try_from(u.max_rss()).unwrap_or(0) * 1024);
    (rss, peak.max(rss))
}

/// The console's view of the node, living on shard 0.
#[derive(Debug)]
pub struct NodeBackend {
    sh: Rc<Shard>,
    started: Instant,
}

impl NodeBackend {
    async fn gather(&self) -> Vec<ShardReport> {
        let mut v = Vec::with_capacity(self.sh.n);
        for s in 0..self.sh.n {
            match self.sh.mesh.call(&self.sh, s, |x: Rc<Shard>| shard_report(x)).await {
                Ok(r) => v.push(r),
                Err(e) => log::debug!("console: {e}"),
            }
        }
        v
    }

    fn global_params(&self, t: &mut Tree) {
        let (mem, peak) = memory();
        t.insert(p(&["version"], Value::Text(version_text())));
        t.insert(p(&["health_check"], Value::Text(self.health())));
        t.insert(p(&["memused"], Value::Sum(mem)));
        t.insert(p(&["memused_max"], Value::Sum(peak)));
    }

    fn health(&self) -> String {
        match crate::node::fatal_error() {
            Some(e) => format!("NOT HEALTHY: {e}"),
            None if self.sh.lnet.is_stopping() => "NOT HEALTHY: stopping".into(),
            None => "healthy".into(),
        }
    }
}

/// The Lustre version we speak.
pub const LUSTRE_VERSION: &str = "2.15.8";

fn version_text() -> String {
    LUSTRE_VERSION.to_string()
}

/// Applies `set_param` of `path` to `value` on this shard.
fn set_local(sh: &Shard, path: &[String], value: &str) -> Result<(), String> {
    let fs = &sh.cfg.fsname;
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let num = || value.trim().parse::<u64>().map_err(|_| format!("{value}: not a number"));
    let find = |prefix: &str, name: &str| -> Option<TargetId> {
        let kind = match prefix {
            "obdfilter" => TargetKind::Ost,
            "mdt" => TargetKind::Mdt,
            _ => return None,
        };
        sh.targets().into_iter().find(|t| t.kind == kind && t.name(fs) == name)
    };
    match path.as_slice() {
        ["ldlm", "namespaces", ns, "lru_size"] => {
            let n = num()?;
            if n == 0 {
                return Err("lru_size: at least 1 (Rustre has no dynamic LRU)".into());
            }
            let per = usize::try_from(n.div_ceil(sh.n as u64).max(1)).unwrap_or(usize::MAX);
            let slots = sh.ldlm.summary();
            for (i, s) in slots.iter().enumerate() {
                if s.0 == *ns {
                    let slot = u8::try_from(i).map_err(|_| "namespace slot")?;
                    sh.ldlm.with_ns_mut(slot, |n| {
                        let l = n.limits();
                        n.set_limits(crate::ldlm::NsLimits {
                            lru_size: per,
                            hard_limit: l.hard_limit.max(per),
                            ..l
                        });
                    });
                }
            }
            Ok(())
        }
        ["mdt", name, "readonly"] => {
            let t = find("mdt", name).ok_or("no such MDT")?;
            let v = match value.trim() {
                "1" | "on" | "yes" => true,
                "0" | "off" | "no" => false,
                _ => return Err(format!("{value}: give 0 or 1")),
            };
            if let Some(m) = sh.mdt(t.index) {
                m.readonly.set(v);
            }
            Ok(())
        }
        [pre @ ("obdfilter" | "mdt"), name, what] => {
            let t = find(pre, name).ok_or("no such target")?;
            let c = sh.mgmt.target(t.kind, t.index).ok_or("no counters")?;
            match *what {
                "job_cleanup_interval" => c.jobs.set_interval(num()?),
                "stats" | "md_stats" => c.stats.clear(),
                "job_stats" if value.trim() == "clear" => c.jobs.clear(),
                "job_stats" => {
                    c.jobs.remove(value.trim());
                }
                _ => return Err("read-only parameter".into()),
            }
            Ok(())
        }
        [pre @ ("obdfilter" | "mdt"), name, "exports", nid, "stats"] => {
            let t = find(pre, name).ok_or("no such target")?;
            if let Some(c) = sh.mgmt.target(t.kind, t.index)
                && let Some(s) = c.exports.borrow().get(*nid)
            {
                s.clear();
            }
            Ok(())
        }
        [osd, name, "brw_stats"] if osd.starts_with("osd-") => {
            let t = find("obdfilter", name).ok_or("no such OST")?;
            sh.mgmt.brw(t.index).clear();
            Ok(())
        }
        [_, _, svc, "stats"] => {
            if let Some(s) = sh.mgmt.svc.borrow().get(svc) {
                s.clear();
            }
            Ok(())
        }
        _ => Err("read-only parameter".into()),
    }
}

impl Backend for NodeBackend {
    async fn params(&self, pats: &[Pattern]) -> Tree {
        let mut t = Tree::default();
        self.global_params(&mut t);
        for r in self.gather().await {
            t.merge(r.tree);
        }
        if !pats.is_empty() {
            t.retain(pats);
        }
        t
    }

    async fn set_param(&self, path: &[String], value: &str) -> Result<(), String> {
        let mut err = None;
        for s in 0..self.sh.n {
            let (path, value) = (path.to_vec(), value.to_string());
            let r = self
                .sh
                .mesh
                .call(&self.sh, s, move |x: Rc<Shard>| async move { set_local(&x, &path, &value) })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            if let Err(e) = r {
                err = Some(e);
            }
        }
        err.map_or(Ok(()), Err)
    }

    async fn status(&self) -> Status {
        let reports = self.gather().await;
        let (mem, peak) = memory();
        let mut targets: Vec<TargetStatus> = Vec::new();
        let mut lnet = lnd::ShardStats::default();
        let mut st = Status {
            fsname: self.sh.cfg.fsname.clone(),
            version: LUSTRE_VERSION.into(),
            rustre_version: env!("CARGO_PKG_VERSION").into(),
            health: self.health(),
            uptime_s: self.started.elapsed().as_secs(),
            nids: self.sh.cfg.nids.iter().map(ToString::to_string).collect(),
            port: self.sh.cfg.port,
            accept: if self.sh.cfg.accept_secure { "secure" } else { "all" }.into(),
            memused: mem,
            memused_max: peak,
            ..Status::default()
        };
        for r in reports {
            for t in r.targets {
                match targets.iter_mut().find(|x| x.name == t.name) {
                    Some(x) => {
                        x.kb_total += t.kb_total;
                        x.kb_free += t.kb_free;
                        x.kb_avail += t.kb_avail;
                        x.files_total += t.files_total;
                        x.files_free += t.files_free;
                        x.exports += t.exports;
                        x.readonly |= t.readonly;
                        x.read_bytes += t.read_bytes;
                        x.write_bytes += t.write_bytes;
                    }
                    None => targets.push(t),
                }
            }
            st.shards.push(r.shard);
            st.peers.extend(r.peers);
            lnet.add(&r.lnet);
        }
        st.targets = targets;
        st.lnet = lnet.fields().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        st
    }

    async fn sample(&self) -> Sample {
        let mut s = Sample {
            t_ms: u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis()),
            )
            .unwrap_or(0),
            ..Sample::default()
        };
        for i in 0..self.sh.n {
            let r = self
                .sh
                .mesh
                .call(&self.sh, i, |x: Rc<Shard>| async move {
                    (
                        x.stats.requests.get(),
                        x.stats.busy_us.get(),
                        x.mgmt.read_bytes.get(),
                        x.mgmt.write_bytes.get(),
                    )
                })
                .await;
            let (req, busy, rb, wb) = r.unwrap_or_default();
            s.requests.push(req);
            s.busy_us.push(busy);
            s.read_bytes += rb;
            s.write_bytes += wb;
        }
        s
    }

    async fn ping(&self, nid: &str) -> Result<String, String> {
        let n: proto::nid::Nid = nid.parse().map_err(|e| format!("{e}"))?;
        let info = self
            .sh
            .lnet
            .ping(lnd::ProcessId::lustre(n), Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        let mut o = format!(
            "ping:\n    - primary nid: {}\n      Multi-Rail: False\n      peer ni:\n",
            info.nis.get(1).map_or(n, |x| x.0)
        );
        for (ni, status) in &info.nis {
            let up = if *status == proto::lnet::ni_status::UP { "up" } else { "down" };
            o.push_str(&format!("        - nid: {ni}\n          status: {up}\n"));
        }
        Ok(o)
    }

    fn shutdown(&self, reboot: bool) {
        log::warn!("console: {} asked", if reboot { "reboot" } else { "shutdown" });
        STOP_ASKED.store(if reboot { 2 } else { 1 }, Ordering::SeqCst);
    }
}

/// Runs the console on shard 0 until the node stops: the sampler, the HTTP server when
/// configured, and the REPL when `repl` is given.
pub async fn run(sh: Rc<Shard>, repl: Option<flume::Receiver<::mgmt::repl::ReplRequest>>) {
    let console = Rc::new(Console::new(NodeBackend { sh: sh.clone(), started: Instant::now() }));
    let c2 = console.clone();
    let sh2 = sh.clone();
    glommio::spawn_local(async move {
        while !sh2.lnet.is_stopping() {
            c2.tick().await;
            glommio::timer::sleep(Duration::from_secs(1)).await;
        }
    })
    .detach();
    if let Some(rx) = repl {
        let sh3 = sh.clone();
        glommio::spawn_local(::mgmt::repl::serve(console.clone(), rx, async move {
            sh3.lnet.stopped().await;
        }))
        .detach();
    }
    let h = &sh.cfg.http;
    if h.listen.is_empty() {
        return;
    }
    let listener = match glommio::net::TcpListener::bind(h.listen.as_str()) {
        Ok(l) => l,
        Err(e) => {
            log::error!("http: cannot listen on {}: {e}; the HTTP console is off", h.listen);
            return;
        }
    };
    log::info!(
        "http: console on http://{}/",
        listener.local_addr().map_or(h.listen.clone(), |a| a.to_string())
    );
    let settings = ::mgmt::http::HttpSettings {
        read_token: h.read_token.clone(),
        admin_token: h.admin_token.clone(),
        ..::mgmt::http::HttpSettings::default()
    };
    let sh4 = sh.clone();
    ::mgmt::http::serve(console, listener, settings, async move { sh4.lnet.stopped().await }).await;
}

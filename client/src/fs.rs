//! The client's state on its executor: imports to the MGS, MDTs and OSTs, the configuration
//! learnt from the MGS, locks and the caches they protect, FID sequences. Every operation runs
//! here as a future; [`crate::Client`] is the thread-safe handle that sends work in.

use crate::error::{Error, Result, check};
use crate::ldlm::{ClientLdlm, ClientLock, Tgt};
use lnd::{Lnet, ProcessId};
use proto::body::PtlrpcBodyV3;
use proto::build::MsgBuilder;
use proto::cfg::{ClientLog, LustreCfg};
use proto::connect::{self, ObdConnectData, flags as ocf};
use proto::fid::{LdlmResId, LuFid, LuSeqRange, LustreHandle, seq_op, seq_range_flags};
use proto::ldlm::{LdlmLockDesc, LdlmReply, LdlmRequest, Policy, flags as lf, lock_type, mode};
use proto::mdt::MdtBody;
use proto::mgs::{MgsConfigBody, cfg_type};
use proto::nid::Nid;
use proto::opcode::Opcode;
use proto::portal;
use proto::rmf;
use proto::wire::{FromZeros, Wire, cstr_array};
use ptlrpc::{Bulk, Import, ImportConfig, Incoming, XidGen, server};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How to mount.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The MGS.
    pub mgs: Nid,
    /// File system name.
    pub fsname: String,
    /// Our NID (default: chosen to reach the MGS).
    pub nid: Option<Nid>,
    /// LNet acceptor port of the servers (and ours).
    pub port: u16,
    /// RPC timeout before a resend.
    pub timeout: Duration,
    /// Sends of one request before an operation fails.
    pub max_sends: u32,
    /// Ping interval.
    pub ping_interval: Duration,
    /// Job id sent with requests.
    pub jobid: String,
    /// Fault injection (like Lustre's `fail_loc` for tests): how long to hold a lock after a
    /// blocking AST before cancelling it. Zero in normal use.
    pub cancel_delay: Duration,
    /// How long data operations keep retrying while an OST is unreachable (restarting)
    /// before failing with the last error.
    pub io_timeout: Duration,
}

impl ClientConfig {
    /// Defaults for `mgs` and `fsname`.
    #[must_use]
    pub fn new(mgs: Nid, fsname: &str) -> ClientConfig {
        ClientConfig {
            mgs,
            fsname: fsname.into(),
            nid: None,
            port: proto::lnet::ACCEPTOR_PORT,
            timeout: Duration::from_secs(20),
            max_sends: 3,
            ping_interval: Duration::from_secs(25),
            jobid: String::new(),
            cancel_delay: Duration::ZERO,
            io_timeout: Duration::from_secs(120),
        }
    }
}

/// The caller's identity for permission checks on the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cred {
    /// fsuid.
    pub uid: u32,
    /// fsgid.
    pub gid: u32,
    /// A supplementary group to claim (u32::MAX for none).
    pub suppgid: u32,
}

impl Cred {
    /// The calling process's effective ids.
    #[must_use]
    pub fn current() -> Cred {
        // SAFETY: geteuid/getegid never fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Cred { uid, gid, suppgid: u32::MAX }
    }
    /// Root.
    #[must_use]
    pub fn root() -> Cred {
        Cred { uid: 0, gid: 0, suppgid: u32::MAX }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Attributes by FID, with the lock that protects them.
    pub(crate) attrs: HashMap<LuFid, (MdtBody, u64)>,
    /// Name to FID under a parent, with the child's lookup lock.
    pub(crate) dentries: HashMap<(LuFid, Vec<u8>), (LuFid, u64)>,
}

/// A name or attributes the client stopped caching because the lock protecting them went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The attributes of a FID.
    Attr(LuFid),
    /// A name in a directory.
    Entry(LuFid, Vec<u8>),
    /// The data of an OST object (its extent lock went; dirty pages were written first).
    Data(LuFid),
}

/// A hook told of dropped cache entries.
type DropHook = Box<dyn Fn(Dropped)>;

/// The hook told of dropped cache entries, once one is set.
#[derive(Default)]
pub(crate) struct CacheListener(RefCell<Option<DropHook>>);

impl std::fmt::Debug for CacheListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.borrow().is_some() { "CacheListener(set)" } else { "CacheListener" })
    }
}

#[derive(Debug, Default)]
pub(crate) struct FidAlloc {
    seq: u64,
    next_oid: u32,
}

/// Oids used from one sequence (`LUSTRE_METADATA_SEQ_MAX_WIDTH`).
const SEQ_WIDTH: u32 = 0x20000;

/// The client's state.
#[derive(Debug)]
pub struct Fs {
    /// LNet.
    pub lnet: Lnet,
    /// Configuration.
    pub cfg: ClientConfig,
    pub(crate) xids: Rc<XidGen>,
    /// Our connection cookie: servers' callbacks carry it.
    pub conn: u64,
    /// Our UUID.
    pub uuid: String,
    /// The MGS import.
    pub mgc: Rc<Import>,
    /// MDT imports by index.
    pub mdcs: RefCell<Vec<(u32, Rc<Import>)>>,
    /// OST imports by index.
    pub oscs: RefCell<Vec<(u32, Rc<Import>)>>,
    /// The configuration as last read.
    pub log: RefCell<ClientLog>,
    /// The root FID.
    pub root: Cell<LuFid>,
    /// Locks.
    pub locks: ClientLdlm,
    pub(crate) cache: RefCell<Cache>,
    /// Told of every name and attribute the caches drop (a layer above with caches of its
    /// own, the FUSE mount's kernel caches, drops them too).
    pub(crate) cache_listener: CacheListener,
    pub(crate) fids: RefCell<FidAlloc>,
    config_lock: Cell<u64>,
    /// RPCs sent (for `rlfs` statistics and tests).
    pub rpcs: Cell<u64>,
    /// Counters of what the client did.
    pub stats: FsStats,
    /// Per-OST client state (grant, fault knobs).
    pub osc_states: RefCell<HashMap<u32, Rc<crate::osc::OscState>>>,
    /// Cached file data.
    pub pages: RefCell<crate::file::PageCache>,
    /// Object sizes as far as we know them (LVBs, glimpses, our own writes).
    pub object_sizes: RefCell<HashMap<LuFid, u64>>,
    /// Owners of flock/fcntl locks, for closes (`crate::flock`).
    pub(crate) flocks: RefCell<crate::flock::FlockTable>,
    /// Ourselves, for the eviction hooks of imports.
    me: RefCell<std::rc::Weak<Fs>>,
}

/// Counters of a mounted client (what tests and `rlfs -v` report).
#[derive(Debug, Default)]
pub struct FsStats {
    /// Lookups answered from the dentry cache under a lock.
    pub cache_hits: Cell<u64>,
    /// Blocking ASTs received (locks the servers asked back).
    pub blocking_asts: Cell<u64>,
    /// Completion ASTs received.
    pub completion_asts: Cell<u64>,
    /// Times a server evicted us.
    pub evictions: Cell<u64>,
}

fn rand_u64() -> u64 {
    rand::random()
}

/// A UUID string (`%pU`).
fn new_uuid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

impl Fs {
    fn import(&self, target: Nid, req: u32, rep: u32, uuid: &str, op: Opcode) -> Rc<Import> {
        let mut c = ImportConfig::new(ProcessId::lustre(target), req, rep, uuid, &self.uuid, op);
        c.conn_cookie = self.conn;
        c.timeout = self.cfg.timeout;
        c.max_sends = self.cfg.max_sends;
        c.jobid = self.cfg.jobid.clone();
        c.reply_size = 64 << 10;
        Import::new(self.lnet.clone(), c, self.xids.clone())
    }

    /// Mounts: MGS connect, config lock, config log, then MDT and OST connects and the root.
    pub async fn mount(lnet: Lnet, cfg: ClientConfig) -> Result<Rc<Fs>> {
        let xids = Rc::new(XidGen::new(
            lnet.shard(),
            lnet.nshards(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ));
        let uuid = new_uuid();
        let conn = rand_u64() | 1;
        let mut mc = ImportConfig::new(
            ProcessId::lustre(cfg.mgs),
            portal::MGS_REQUEST,
            portal::MGC_REPLY,
            "MGS",
            &new_uuid(),
            Opcode::MgsConnect,
        );
        mc.conn_cookie = conn;
        mc.timeout = cfg.timeout;
        mc.max_sends = cfg.max_sends;
        mc.reply_size = 64 << 10;
        let mgc = Import::new(lnet.clone(), mc, xids.clone());
        let fs = Rc::new(Fs {
            lnet,
            cfg,
            xids,
            conn,
            uuid,
            mgc,
            mdcs: RefCell::new(Vec::new()),
            oscs: RefCell::new(Vec::new()),
            log: RefCell::new(ClientLog::default()),
            root: Cell::new(LuFid::ROOT),
            locks: ClientLdlm::new(rand_u64() & 0xffff_ffff_0000),
            cache: RefCell::new(Cache::default()),
            cache_listener: CacheListener::default(),
            fids: RefCell::new(FidAlloc::default()),
            config_lock: Cell::new(0),
            rpcs: Cell::new(0),
            stats: FsStats::default(),
            osc_states: RefCell::new(HashMap::new()),
            object_sizes: RefCell::new(HashMap::new()),
            pages: RefCell::new(crate::file::PageCache::default()),
            flocks: RefCell::default(),
            me: RefCell::new(std::rc::Weak::new()),
        });
        *fs.me.borrow_mut() = Rc::downgrade(&fs);
        fs.watch_evictions(&fs.mgc, Tgt::Mgc);
        // Serve lock callbacks before anything can take a lock.
        glommio::spawn_local(callback_service(fs.clone())).detach();
        let mut d = ObdConnectData::new_zeroed();
        d.ocd_connect_flags = connect::MGC_CONNECT_FLAGS.into();
        d.ocd_connect_flags2 = connect::MGC_CONNECT_FLAGS2.into();
        d.ocd_version = ObdConnectData::version(2, 15, 8, 0).into();
        fs.mgc
            .connect(d)
            .await
            .map_err(|e| Error::from(e).ctx(format!("MGS at {}", fs.cfg.mgs)))?;
        fs.read_config().await?;
        // Imperative recovery log: read as a 2.15 client does (an empty answer is fine).
        let _ = fs.config_read(&format!("{}-cliir", fs.cfg.fsname)).await;
        fs.connect_targets().await?;
        // The root, as a mount does: statfs, get root, getattr.
        let mdc = fs.mdc(0)?;
        let b = MsgBuilder::request(Opcode::MdsGetRoot).and_then(|b| b.set("NAME", Vec::new()))?;
        let rep = fs.call(&mdc, b, None, None).await?;
        let body = MdtBody::read(rep.buf("mdt_body", 1, 216)?)?;
        fs.root.set(body.mbo_fid1);
        for imp in [fs.mgc.clone()]
            .into_iter()
            .chain(fs.mdcs.borrow().iter().map(|x| x.1.clone()))
            .chain(fs.oscs.borrow().iter().map(|x| x.1.clone()))
        {
            glommio::spawn_local(imp.pinger(fs.cfg.ping_interval)).detach();
        }
        log::info!("mounted {} from {} (root {})", fs.cfg.fsname, fs.cfg.mgs, body.mbo_fid1);
        Ok(fs)
    }

    /// Sends an RPC and counts it; a negative status becomes an error.
    pub async fn call(
        &self,
        imp: &Import,
        b: MsgBuilder,
        portals: Option<(u32, u32)>,
        bulk: Option<Bulk>,
    ) -> Result<ptlrpc::Reply> {
        self.rpcs.set(self.rpcs.get() + 1);
        let r = imp.rpc_via(portals, b, bulk).await?;
        check(r.status())?;
        Ok(r)
    }

    /// The MDC import of MDT `index`.
    pub fn mdc(&self, index: u32) -> Result<Rc<Import>> {
        self.mdcs
            .borrow()
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| Error::new(libc::ENODEV).ctx(format!("MDT{index:04x}")))
    }

    /// The OSC import of OST `index`.
    pub fn osc(&self, index: u32) -> Result<Rc<Import>> {
        self.oscs
            .borrow()
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| Error::new(libc::ENODEV).ctx(format!("OST{index:04x}")))
    }

    /// Takes the config lock and reads the client log (and, as a 2.15 client does, the
    /// sptlrpc and params logs).
    pub async fn read_config(&self) -> Result<()> {
        let fsname = self.cfg.fsname.clone();
        for (name, res_name, t) in [
            (format!("{fsname}-sptlrpc"), fsname.clone(), cfg_type::SPTLRPC),
            ("params".to_string(), "params".to_string(), cfg_type::PARAMS),
            (format!("{fsname}-client"), fsname.clone(), cfg_type::CONFIG),
        ] {
            let res = LdlmResId::mgs_config(
                &res_name,
                u64::from(if t == cfg_type::SPTLRPC { cfg_type::CONFIG } else { t }),
            )?;
            let lock = self.enqueue_plain(res).await?;
            let recs = match self.read_log(&name).await {
                Ok(r) => r,
                Err(e) if name != format!("{fsname}-client") && e.errno == libc::ENOENT => {
                    Vec::new()
                }
                Err(e) => return Err(e.ctx(format!("config log {name}"))),
            };
            if t == cfg_type::CONFIG {
                let log = ClientLog::from_records(&recs)?;
                if log.mdts.is_empty() {
                    return Err(Error::new(libc::ENODEV)
                        .ctx(format!("file system {fsname}: no MDT in the configuration")));
                }
                *self.log.borrow_mut() = log;
                self.config_lock.set(lock);
            } else {
                // Only the client log's lock is kept (for config-change callbacks).
                let _ = self.cancel_lock(lock).await;
            }
        }
        Ok(())
    }

    async fn enqueue_plain(&self, res: LdlmResId) -> Result<u64> {
        let handle = self.locks.new_handle();
        let req = LdlmRequest {
            lock_flags: 0,
            lock_desc: LdlmLockDesc::new(lock_type::PLAIN, res, mode::CR, &Policy::Plain),
            handles: vec![LustreHandle::new(handle)],
        };
        let b = MsgBuilder::request(Opcode::LdlmEnqueue)?.set("DLM_REQ", req.to_vec())?;
        self.locks.expect_completion(handle);
        let rep = match self.call(&self.mgc, b, None, None).await {
            Ok(r) => r,
            Err(e) => {
                self.locks.forget_completion(handle);
                return Err(e);
            }
        };
        let r = LdlmReply::read(rep.buf("ldlm_reply", 1, 112)?)?;
        let mut granted = r.lock_desc.l_granted_mode.get();
        if r.lock_flags.get() & lf::BLOCKED_MASK != 0 {
            // Queued behind a conflicting lock: the grant comes as a completion AST.
            match self.locks.wait_completion(handle, COMPLETION_TIMEOUT).await {
                Some(c) => granted = c.mode,
                None => {
                    self.locks.forget_completion(handle);
                    return Err(Error::new(libc::ETIMEDOUT).ctx("waiting for a lock grant"));
                }
            }
        }
        self.locks.insert(ClientLock {
            handle,
            remote: r.lock_handle.get(),
            target: Tgt::Mgc,
            res,
            mode: granted,
            policy: Policy::Plain,
            last_used: Instant::now(),
            cancelling: false,
        });
        // A blocking AST that came meanwhile acts now that the lock is in the table.
        self.locks.forget_completion(handle);
        Ok(handle)
    }

    async fn read_log(&self, name: &str) -> Result<Vec<LustreCfg>> {
        self.rpcs.set(self.rpcs.get() + 3);
        Ok(ptlrpc::llog::read_config_log(&self.mgc, name).await?)
    }

    async fn config_read(&self, name: &str) -> Result<()> {
        let mut body = MgsConfigBody::new_zeroed();
        body.mcb_name = cstr_array("mcb_name", name)?;
        body.mcb_type = cfg_type::RECOVER.into();
        body.mcb_bits = 12;
        body.mcb_units = 1.into();
        let b = MsgBuilder::request(Opcode::MgsConfigRead)?.wire("MGS_CONFIG_BODY", &body)?;
        self.call(
            &self.mgc,
            b,
            None,
            Some(Bulk {
                portal: portal::MGS_BULK,
                server_gets: false,
                bufs: vec![vec![0u8; 4096]],
            }),
        )
        .await?;
        Ok(())
    }

    /// Connects to every MDT and OST the configuration names that is not connected yet.
    pub async fn connect_targets(&self) -> Result<()> {
        let log = self.log.borrow().clone();
        for (index, uuid, nids) in &log.mdts {
            if self.mdcs.borrow().iter().any(|(i, _)| i == index) {
                continue;
            }
            let nid = *nids
                .first()
                .ok_or_else(|| Error::new(libc::ENODEV).ctx(format!("{uuid}: no NID")))?;
            let imp =
                self.import(nid, portal::MDS_REQUEST, portal::MDC_REPLY, uuid, Opcode::MdsConnect);
            let mut d = ObdConnectData::new_zeroed();
            d.ocd_connect_flags = connect::MDC_CONNECT_FLAGS.into();
            d.ocd_connect_flags2 = connect::MDC_CONNECT_FLAGS2.into();
            d.ocd_version = ObdConnectData::version(2, 15, 8, 0).into();
            d.ocd_ibits_known = proto::ldlm::ibits::FULL.into();
            d.ocd_brw_size = (1u32 << 20).into();
            d.ocd_cksum_types = connect::cksum::ALL.into();
            d.ocd_max_easize = 65536.into();
            let got = imp.connect(d).await.map_err(|e| Error::from(e).ctx(uuid.clone()))?;
            for must in [ocf::FID, ocf::ATTRFID, ocf::FULL20] {
                if got.flags() & must == 0 {
                    return Err(Error::new(libc::EPROTO)
                        .ctx(format!("{uuid} did not grant FID/ATTRFID/FULL20")));
                }
            }
            self.watch_evictions(&imp, Tgt::Mdc(*index));
            self.mdcs.borrow_mut().push((*index, imp));
        }
        for (index, uuid, nids) in &log.osts {
            if self.oscs.borrow().iter().any(|(i, _)| i == index) {
                continue;
            }
            let Some(&nid) = nids.first() else { continue };
            let imp =
                self.import(nid, portal::OST_REQUEST, portal::OSC_REPLY, uuid, Opcode::OstConnect);
            let mut d = ObdConnectData::new_zeroed();
            d.ocd_connect_flags = connect::OSC_CONNECT_FLAGS.into();
            d.ocd_connect_flags2 = connect::OSC_CONNECT_FLAGS2.into();
            d.ocd_version = ObdConnectData::version(2, 15, 8, 0).into();
            d.ocd_brw_size = (4u32 << 20).into();
            d.ocd_cksum_types =
                (connect::cksum::CRC32C | connect::cksum::ADLER | connect::cksum::CRC32).into();
            d.ocd_grant = (32u32 << 20).into();
            match imp.connect(d).await {
                Ok(got) => {
                    // The grant the OST gave at connect is ours to write into at once
                    // (osc_init_grant), rather than writing synchronously until a BRW brings some.
                    if got.flags() & ocf::GRANT != 0 {
                        let g = u64::from(got.ocd_grant.get());
                        self.osc_state(*index).avail_grant.set(g);
                    }
                    self.watch_evictions(&imp, Tgt::Osc(*index));
                    self.oscs.borrow_mut().push((*index, imp));
                }
                // An OST that is down does not stop the mount (its files' I/O fails).
                Err(e) => log::warn!("{uuid}: connect failed: {e}"),
            }
        }
        Ok(())
    }

    /// Allocates a FID for a new object (SEQ_QUERY when the sequence is used up).
    pub async fn new_fid(&self) -> Result<LuFid> {
        {
            let mut f = self.fids.borrow_mut();
            if f.seq != 0 && f.next_oid < SEQ_WIDTH {
                f.next_oid += 1;
                return Ok(LuFid::new(f.seq, f.next_oid, 0));
            }
        }
        let mdc = self.mdc(0)?;
        let b = MsgBuilder::request(Opcode::SeqQuery)?
            .set("SEQ_OPC", seq_op::ALLOC_META.to_le_bytes().to_vec())?
            .wire("SEQ_RANGE", &LuSeqRange::new(0, 0, 0, seq_range_flags::MDT))?;
        let rep = self.call(&mdc, b, Some((portal::SEQ_METADATA, portal::MDC_REPLY)), None).await?;
        let r = LuSeqRange::read(rep.buf("seq range", 1, 24)?)?;
        let mut f = self.fids.borrow_mut();
        f.seq = r.lsr_start.get();
        f.next_oid = 1;
        Ok(LuFid::new(f.seq, 1, 0))
    }

    /// Records a lock granted by an MDT and drops locks over the LRU size.
    pub fn record_lock(self: &Rc<Self>, handle: u64, rep: &LdlmReply, target: Tgt) {
        let d = rep.lock_desc;
        let policy = d.policy().unwrap_or(Policy::Plain);
        self.locks.insert(ClientLock {
            handle,
            remote: rep.lock_handle.get(),
            target,
            res: d.l_resource.lr_name,
            mode: d.l_granted_mode.get(),
            policy,
            last_used: Instant::now(),
            cancelling: false,
        });
        for v in self.locks.lru_victims() {
            let fs = self.clone();
            glommio::spawn_local(async move {
                let _ = fs.cancel_lock(v).await;
            })
            .detach();
        }
    }

    /// When `imp`'s server evicts us, its locks are gone: drop them and everything they
    /// protected (as a Lustre client invalidates an evicted import); an evicted MGC re-reads
    /// the configuration under a new config lock.
    fn watch_evictions(&self, imp: &Import, t: Tgt) {
        let me = self.me.borrow().clone();
        imp.on_evicted(move || {
            let Some(fs) = me.upgrade() else { return };
            fs.stats.evictions.set(fs.stats.evictions.get() + 1);
            for h in fs.locks.of_target(t) {
                if let Some(l) = fs.locks.remove(h)
                    && let Tgt::Osc(_) = t
                {
                    // Their pages, dirty ones too, are no longer ours to write (Lustre
                    // discards them on eviction).
                    let fid = l.res.fid();
                    fs.pages.borrow_mut().take_range(fid, 0, u64::MAX);
                    fs.object_sizes.borrow_mut().remove(&fid);
                    fs.tell_dropped(vec![Dropped::Data(fid)]);
                }
            }
            fs.invalidate_all();
            if t == Tgt::Mgc {
                glommio::spawn_local(fs.clone().config_changed(fs.config_lock.get())).detach();
            }
        });
    }

    /// Drops what one lock protected from the caches.
    pub fn invalidate(&self, handle: u64) {
        let mut gone = Vec::new();
        let mut c = self.cache.borrow_mut();
        c.attrs.retain(|f, (_, l)| {
            let keep = *l != handle;
            if !keep {
                gone.push(Dropped::Attr(*f));
            }
            keep
        });
        c.dentries.retain(|(p, n), (_, l)| {
            let keep = *l != handle;
            if !keep {
                gone.push(Dropped::Entry(*p, n.clone()));
            }
            keep
        });
        drop(c);
        self.tell_dropped(gone);
    }

    /// Drops every cached name and attribute (eviction).
    fn invalidate_all(&self) {
        let mut c = self.cache.borrow_mut();
        let mut gone: Vec<Dropped> = c.attrs.drain().map(|(f, _)| Dropped::Attr(f)).collect();
        gone.extend(c.dentries.drain().map(|((p, n), _)| Dropped::Entry(p, n)));
        drop(c);
        self.tell_dropped(gone);
    }

    fn tell_dropped(&self, gone: Vec<Dropped>) {
        if let Some(f) = self.cache_listener.0.borrow().as_ref() {
            for d in gone {
                f(d);
            }
        }
    }

    /// Sets the hook told of every name and attribute the caches drop when their lock goes
    /// (called on the client's executor, synchronously with the drop: it must not block).
    pub fn set_cache_listener(&self, f: impl Fn(Dropped) + 'static) {
        *self.cache_listener.0.borrow_mut() = Some(Box::new(f));
    }

    /// Whether `name` in `parent` is cached under a lock now.
    #[must_use]
    pub fn entry_cached(&self, parent: LuFid, name: &[u8]) -> bool {
        self.cache.borrow().dentries.contains_key(&(parent, name.to_vec()))
    }

    /// The attributes of `fid` if a lock protects them now.
    #[must_use]
    pub fn cached_attr(&self, fid: LuFid) -> Option<MdtBody> {
        self.cache.borrow().attrs.get(&fid).map(|(b, _)| *b)
    }

    /// Gives a lock back: drops what it protects, then LDLM_CANCEL to its server.
    pub async fn cancel_lock(&self, handle: u64) -> Result<()> {
        // An operation in the middle of using the lock finishes first (bounded by its own
        // timeouts; the server evicts us if we hold on too long).
        let t = Instant::now();
        while self.locks.in_use(handle) && t.elapsed() < COMPLETION_TIMEOUT {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        // From here no new operation may start using it.
        self.locks.mark_cancelling(handle);
        self.invalidate(handle);
        if let Some(l) = self.locks.get(handle)
            && let Tgt::Osc(ost) = l.target
        {
            // Data first: dirty pages under the lock go back to the OST before it is released.
            self.lock_going(ost, l.res.fid(), &l.policy).await;
        }
        let Some(l) = self.locks.remove(handle) else { return Ok(()) };
        if let Tgt::Osc(_) = l.target {
            self.lock_gone(l.res.fid());
            self.tell_dropped(vec![Dropped::Data(l.res.fid())]);
        }
        let imp = match l.target {
            Tgt::Mgc => self.mgc.clone(),
            Tgt::Mdc(i) => self.mdc(i)?,
            Tgt::Osc(i) => self.osc(i)?,
        };
        // A cancel names the lock by handle only; 2.15 clients leave the descriptor zeroed.
        let req = LdlmRequest {
            lock_flags: 0,
            lock_desc: LdlmLockDesc::default(),
            handles: vec![LustreHandle::new(l.remote)],
        };
        let b = MsgBuilder::request(Opcode::LdlmCancel)?.set("DLM_REQ", req.to_vec())?;
        self.call(&imp, b, Some((portal::LDLM_CANCEL_REQUEST, portal::LDLM_CANCEL_REPLY)), None)
            .await
            .map(|_| ())
    }

    /// Server cookies of our locks on `fid` (for early lock cancel), removed from the table
    /// and their caches dropped: the request that carries them cancels them on the server.
    pub fn take_elc(&self, fids: &[LuFid]) -> Vec<u64> {
        let mut out = Vec::new();
        for f in fids {
            for l in self.locks.on_resource(&f.res_id()) {
                self.invalidate(l.handle);
                self.locks.remove(l.handle);
                out.push(l.remote);
            }
        }
        out
    }

    /// Called when the MGS revokes the config lock: re-read the configuration, connect new
    /// targets.
    async fn config_changed(self: Rc<Self>, old: u64) {
        let _ = self.cancel_lock(old).await;
        // The MGS holds its own lock while it rewrites; our enqueue waits for it.
        match self.read_config().await {
            Ok(()) => {
                if let Err(e) = self.connect_targets().await {
                    log::warn!("connecting new targets: {e}");
                }
            }
            Err(e) => log::warn!("re-reading the configuration: {e}"),
        }
    }

    /// A request body with our credentials (for MDS requests that carry an mdt_body).
    #[must_use]
    pub fn body_for(fid: LuFid, c: Cred) -> MdtBody {
        MdtBody {
            mbo_fid1: fid,
            mbo_fsuid: c.uid.into(),
            mbo_fsgid: c.gid.into(),
            mbo_suppgid: c.suppgid.into(),
            ..Default::default()
        }
    }

    /// Disconnects every import.
    pub async fn umount(&self) {
        let imps: Vec<Rc<Import>> = self
            .mdcs
            .borrow()
            .iter()
            .map(|x| x.1.clone())
            .chain(self.oscs.borrow().iter().map(|x| x.1.clone()))
            .chain([self.mgc.clone()])
            .collect();
        // Disconnect from every target at once, each with one send: a dead server must not
        // hold the unmount for its resend timeouts.
        let tasks: Vec<_> = imps
            .into_iter()
            .filter(|imp| imp.is_connected())
            .map(|imp| {
                glommio::spawn_local(async move {
                    let op = match imp.config().connect_op {
                        Opcode::MgsConnect => Opcode::MgsDisconnect,
                        Opcode::OstConnect => Opcode::OstDisconnect,
                        _ => Opcode::MdsDisconnect,
                    };
                    if let Ok(b) = MsgBuilder::request(op) {
                        let _ = imp.disconnect(b.count(1), UMOUNT_TIMEOUT).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    }
}

/// How long a queued enqueue waits for its completion AST (Lustre's clients wait as long as
/// the server's lock timeout allows; the server evicts the holder in the way well before).
pub const COMPLETION_TIMEOUT: Duration = Duration::from_secs(300);

/// How long an unmount waits for each target's disconnect reply.
pub const UMOUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves lock callbacks from servers on portal 15.
async fn callback_service(fs: Rc<Fs>) {
    let rq = match server::request_queue(
        &fs.lnet,
        portal::LDLM_CB_REQUEST,
        server::ServiceBuffers { count: 32, size: 8192 },
    ) {
        Ok(q) => q,
        Err(e) => return log::error!("callback portal: {e}"),
    };
    loop {
        let r = futures_lite::future::or(async { Some(rq.next().await) }, async {
            fs.lnet.stopped().await;
            None
        })
        .await;
        let Some(r) = r else { return };
        let Ok(inc) = Incoming::decode(r) else { continue };
        let fs = fs.clone();
        glommio::spawn_local(async move { handle_callback(fs, inc).await }).detach();
    }
}

async fn handle_callback(fs: Rc<Fs>, inc: Incoming) {
    let status = callback_status(&fs, &inc);
    let counter = match inc.opc() {
        Opcode::LdlmBlCallback => Some(&fs.stats.blocking_asts),
        Opcode::LdlmCpCallback => Some(&fs.stats.completion_asts),
        _ => None,
    };
    if let (Ok(()), Some(c)) = (status, counter) {
        c.set(c.get() + 1);
    }
    let fmt = match inc.opc() {
        Opcode::LdlmBlCallback => "LDLM_BL_CALLBACK",
        Opcode::LdlmCpCallback => "LDLM_CP_CALLBACK",
        _ => "LDLM_CALLBACK",
    };
    let reply = match (status, rmf::format(fmt)) {
        (Ok(()), _) if inc.opc() == Opcode::LdlmGlCallback => glimpse_reply(&fs, &inc),
        (Ok(()), Some(f)) => MsgBuilder::reply(f, &inc.body).count(1).build(),
        (Err(e), _) => MsgBuilder::error_reply(&inc.body, e),
        (Ok(()), None) => MsgBuilder::error_reply(&inc.body, -libc::EPROTO),
    };
    if let Ok(r) = reply {
        let _ = server::send_reply(&fs.lnet, &inc, r, false).await;
    }
    if status.is_ok()
        && inc.opc() == Opcode::LdlmBlCallback
        && let Some(h) = callback_handle(&inc)
    {
        if !fs.cfg.cancel_delay.is_zero() {
            glommio::timer::sleep(fs.cfg.cancel_delay).await;
        }
        // Granted but not yet recorded by its enqueue: wait until it is (Lustre marks such a
        // lock CBPENDING and cancels it when its user lets go).
        let t = Instant::now();
        while fs.locks.is_pending(h) && t.elapsed() < COMPLETION_TIMEOUT {
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        let config = fs.locks.get(h).is_some_and(|l| l.target == Tgt::Mgc);
        if config || h == fs.config_lock.get() {
            glommio::spawn_local(fs.clone().config_changed(h)).detach();
        } else if let Err(e) = fs.cancel_lock(h).await {
            log::debug!("cancel after blocking callback: {e}");
        }
    }
}

/// A glimpse callback's answer: the object's LVB as we know it, our cached writes included
/// (what `osc_ldlm_glimpse_ast` sends).
fn glimpse_reply(fs: &Fs, inc: &Incoming) -> std::result::Result<Vec<u8>, proto::WireError> {
    let lock = callback_handle(inc).and_then(|h| fs.locks.get(h));
    let mut lvb = proto::ldlm::OstLvb::default();
    if let Some(l) = lock {
        let size = fs.known_object_size(l.res.fid()).unwrap_or(0);
        lvb.lvb_size = size.into();
        lvb.lvb_blocks = size.div_ceil(512).into();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if fs.pages.borrow().dirty_bytes() > 0 {
            lvb.lvb_mtime = now.into();
            lvb.lvb_ctime = now.into();
        }
    }
    let f = rmf::format("LDLM_GL_CALLBACK")
        .ok_or(proto::WireError::BadValue { what: "rmf", got: 0 })?;
    MsgBuilder::reply(f, &inc.body).wire("DLM_LVB", &lvb)?.build()
}

fn callback_handle(inc: &Incoming) -> Option<u64> {
    let m = inc.msg().ok()?;
    let r = LdlmRequest::decode(m.buf(1)?).ok()?;
    r.handles.first().map(|h| h.get())
}

fn callback_status(fs: &Fs, inc: &Incoming) -> std::result::Result<(), i32> {
    if inc.body.pb_handle.get() != fs.conn {
        return Err(-libc::ENOTCONN);
    }
    let h = callback_handle(inc).ok_or(-libc::EPROTO)?;
    match inc.opc() {
        Opcode::LdlmBlCallback => {
            if fs.locks.mark_cancelling(h) {
                Ok(())
            } else {
                Err(-libc::EINVAL)
            }
        }
        Opcode::LdlmCpCallback => {
            let m = inc.msg().map_err(|_| -libc::EPROTO)?;
            let r =
                LdlmRequest::decode(m.buf(1).ok_or(-libc::EPROTO)?).map_err(|_| -libc::EPROTO)?;
            let lvb = m.buf(2).filter(|b| !b.is_empty()).map(<[u8]>::to_vec);
            let policy = r.lock_desc.policy().ok();
            if fs.locks.completed(h, r.lock_desc.l_granted_mode.get(), policy, lvb) {
                Ok(())
            } else {
                Err(-libc::EINVAL)
            }
        }
        Opcode::LdlmGlCallback => {
            if fs.locks.get(h).is_some() || fs.locks.is_pending(h) {
                Ok(())
            } else {
                Err(-libc::EINVAL)
            }
        }
        _ => Err(-524),
    }
}

/// A new request body for a REINT or intent (credentials filled by the caller).
#[must_use]
pub fn empty_body() -> PtlrpcBodyV3 {
    PtlrpcBodyV3::request(Opcode::MdsReint)
}

//! Rustre's userspace Lustre client. It speaks the protocol a Lustre 2.15 kernel client
//! speaks (MGC, MDC, OSC over LNet/ptlrpc), so every test of it drives the servers exactly
//! where a kernel client would.
//!
//! A [`Client`] runs its own LNet node with one executor thread; its methods may be called
//! from any thread and block until the executor has done the work.
//!
//! ```no_run
//! use client::{Client, ClientConfig, Cred};
//! let c = Client::mount(ClientConfig::new("127.0.0.1@tcp".parse()?, "rustre"))?;
//! c.mkdir("/a", 0o755, Cred::current())?;
//! for e in c.ls("/", Cred::current())? {
//!     println!("{}", e.name);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod file;
pub mod flock;
pub mod fs;
pub mod fuse;
pub mod ldlm;
pub mod lov;
pub mod ns;
pub mod osc;

pub use error::{Error, Result};
pub use flock::{FlockHolder, FlockKind, FlockReq};
pub use fs::{ClientConfig, Cred, Fs, FsStats};
pub use ns::Entry;

use lnd::{AcceptMode, Config as LnetConfig, Lnet, NiConfig, Node, Placement};
use proto::fid::LuFid;
use proto::mdt::MdtBody;
use proto::nid::Nid;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::pin::Pin;
use std::rc::Rc;

type Job = Box<dyn FnOnce(Rc<Fs>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Counters of a client, copied out of its executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// RPCs sent.
    pub rpcs: u64,
    /// Lookups answered from the cache.
    pub cache_hits: u64,
    /// Blocking ASTs received.
    pub blocking_asts: u64,
    /// Completion ASTs received.
    pub completion_asts: u64,
    /// Times a server evicted us.
    pub evictions: u64,
    /// Locks held.
    pub locks: usize,
}

/// A mounted file system.
#[derive(Debug)]
pub struct Client {
    jobs: Option<flume::Sender<Job>>,
    node: Option<Node>,
    /// Our NID.
    pub nid: Nid,
}

/// Keeps freed I/O buffers (bulk MDs of 1 MiB, pages) in the process heap for reuse rather
/// than returning them to the kernel, which would fault and zero them again on the next BRW:
/// glibc serves such sizes from mmap, and that page clearing was a third of a streaming
/// client's CPU. For binaries to call first thing in `main`, before other threads exist.
pub fn tune_allocator() {
    // SAFETY: mallopt only changes allocator tuning; the caller runs before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// Picks our NID: loopback MGSs are reached from a free `127.0.1.x` (each client process needs
/// its own NID on a host); others from the address the kernel routes towards the MGS.
fn pick_nid(mgs: Nid, port: u16) -> Result<Nid> {
    let ip =
        mgs.ipv4().ok_or_else(|| Error::new(libc::EINVAL).ctx("the MGS NID is not an IP NID"))?;
    if ip.is_loopback() {
        let start = u8::try_from(std::process::id() % 200).unwrap_or(0);
        for i in 0..250u8 {
            let a = Ipv4Addr::new(127, 0, 1, 2 + (start.wrapping_add(i)) % 250);
            if TcpListener::bind(SocketAddrV4::new(a, port)).is_ok() {
                return Ok(Nid::new(mgs.net(), u32::from(a)));
            }
        }
        return Err(Error::new(libc::EADDRINUSE).ctx("no free loopback address for our NID"));
    }
    let s = UdpSocket::bind("0.0.0.0:0")
        .map_err(|e| Error::new(e.raw_os_error().unwrap_or(libc::EIO)))?;
    s.connect(SocketAddrV4::new(ip, port))
        .map_err(|e| Error::new(e.raw_os_error().unwrap_or(libc::EIO)))?;
    match s.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => Ok(Nid::new(mgs.net(), u32::from(*a.ip()))),
        _ => Err(Error::new(libc::EADDRNOTAVAIL)),
    }
}

impl Client {
    /// Mounts `cfg.fsname` from `cfg.mgs`.
    pub fn mount(cfg: ClientConfig) -> Result<Client> {
        let nid = match cfg.nid {
            Some(n) => n,
            None => pick_nid(cfg.mgs, cfg.port)?,
        };
        let mut lc = LnetConfig::new(vec![NiConfig::new(nid, cfg.port).map_err(Error::from)?]);
        lc.port = cfg.port;
        lc.placement = Placement::Unbound(1);
        lc.accept = AcceptMode::All;
        // SAFETY: geteuid has no preconditions.
        lc.connect_privileged = unsafe { libc::geteuid() } == 0;
        lc.routes = ptlrpc::lnet_routes();
        lc.lazy_portals = vec![proto::portal::LDLM_CB_REQUEST];
        lc.timeout = cfg.timeout.max(std::time::Duration::from_secs(5));
        lc.discovery_timeout = cfg.timeout;
        let (tx, rx) = flume::bounded::<Job>(1024);
        let (mounted_tx, mounted_rx) = std::sync::mpsc::channel::<Result<()>>();
        let node = Node::start(lc, move |lnet: Lnet| async move {
            let fs = match Fs::mount(lnet.clone(), cfg).await {
                Ok(fs) => {
                    let _ = mounted_tx.send(Ok(()));
                    fs
                }
                Err(e) => {
                    let _ = mounted_tx.send(Err(e));
                    return;
                }
            };
            while let Ok(job) = rx.recv_async().await {
                let fs = fs.clone();
                glommio::spawn_local(async move { job(fs).await }).detach();
            }
            fs.umount().await;
        })
        .map_err(Error::from)?;
        match mounted_rx.recv() {
            Ok(Ok(())) => Ok(Client { jobs: Some(tx), node: Some(node), nid }),
            Ok(Err(e)) => {
                drop(tx);
                node.stop();
                let _ = node.join();
                Err(e.ctx("mount"))
            }
            Err(_) => Err(Error::new(libc::EIO).ctx("mount: client thread died")),
        }
    }

    /// Runs `f` on the client's executor and waits for its result.
    pub fn run<R, F, Fut>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Fs>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R>> + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job = Box::new(move |fs| {
            Box::pin(async move {
                let _ = tx.send(f(fs).await);
            })
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| Error::new(libc::ESHUTDOWN))?
            .send(job)
            .map_err(|_| Error::new(libc::ESHUTDOWN))?;
        rx.recv().map_err(|_| Error::new(libc::ESHUTDOWN))?
    }

    /// A handle that starts work on the client's executor without waiting for it (the FUSE
    /// mount answers the kernel from there); None once unmounting.
    #[must_use]
    pub fn submitter(&self) -> Option<Submitter> {
        self.jobs.clone().map(Submitter)
    }

    /// `mkdir`.
    pub fn mkdir(&self, path: &str, mode: u32, c: Cred) -> Result<LuFid> {
        let p = path.to_string();
        self.run(move |fs| async move { fs.mkdir(&p, mode, &[], c).await.map(|x| x.0) })
    }

    /// Creates an empty file, optionally with a layout (`ns::user_layout`).
    pub fn create(&self, path: &str, mode: u32, layout: Vec<u8>, c: Cred) -> Result<LuFid> {
        let p = path.to_string();
        self.run(move |fs| async move { fs.create(&p, mode, &layout, c).await.map(|x| x.0) })
    }

    /// `stat` (follows symlinks when `follow`). A regular file's size, blocks and mtime come
    /// from its objects (glimpses), as a Lustre client's do.
    pub fn stat(&self, path: &str, follow: bool, c: Cred) -> Result<(LuFid, MdtBody)> {
        let p = path.to_string();
        self.run(move |fs| async move {
            let (fid, b) = fs.resolve(&p, c, follow).await?;
            if b.mbo_mode.get() & ns::S_IFMT == ns::S_IFREG {
                return Ok((fid, fs.getattr_sized(fid, c).await?));
            }
            Ok((fid, b))
        })
    }

    /// Opens a file (O_CREAT in `flags` creates it, with `layout` if not empty).
    pub fn open(
        &self,
        path: &str,
        flags: u64,
        perm: u32,
        layout: Vec<u8>,
        c: Cred,
    ) -> Result<file::OpenFile> {
        let p = path.to_string();
        self.run(move |fs| async move { fs.open_file(&p, flags, perm, &layout, c).await })
    }

    /// Reads up to `len` bytes at `off`.
    pub fn read(&self, f: &file::OpenFile, off: u64, len: u64) -> Result<Vec<u8>> {
        let f = f.clone();
        self.run(move |fs| async move { fs.read_file(&f, off, len).await })
    }

    /// Writes `data` at `off` (cached under grant; `fsync` or `close` writes back).
    pub fn write(&self, f: &file::OpenFile, off: u64, data: Vec<u8>) -> Result<()> {
        let f = f.clone();
        self.run(move |fs| async move { fs.write_file(&f, off, &data).await })
    }

    /// Appends atomically; returns the offset written at.
    pub fn append(&self, f: &file::OpenFile, data: Vec<u8>) -> Result<u64> {
        let f = f.clone();
        self.run(move |fs| async move { fs.append_file(&f, &data).await })
    }

    /// Writes back the file's dirty data.
    pub fn fsync(&self, f: &file::OpenFile) -> Result<()> {
        let f = f.clone();
        self.run(move |fs| async move { fs.fsync_file(&f).await })
    }

    /// Truncates or extends the file.
    pub fn truncate(&self, f: &file::OpenFile, size: u64, c: Cred) -> Result<()> {
        let f = f.clone();
        self.run(move |fs| async move { fs.truncate_file(&f, size, c).await })
    }

    /// The file's size (glimpses).
    pub fn size(&self, f: &file::OpenFile) -> Result<u64> {
        let f = f.clone();
        self.run(move |fs| async move {
            match &f.layout {
                Some(l) => fs.file_size(l).await,
                None => Ok(0),
            }
        })
    }

    /// Closes (writes back, then MDS_CLOSE).
    pub fn close(&self, f: file::OpenFile) -> Result<()> {
        self.run(move |fs| async move { fs.close_file(&f).await })
    }

    /// Directory entries.
    pub fn ls(&self, path: &str, c: Cred) -> Result<Vec<Entry>> {
        let p = path.to_string();
        self.run(move |fs| async move {
            let (f, _) = fs.resolve(&p, c, true).await?;
            fs.readdir(f, c).await
        })
    }

    /// `rm` (or `rmdir` when `dir`).
    pub fn remove(&self, path: &str, dir: bool, c: Cred) -> Result<()> {
        let p = path.to_string();
        self.run(move |fs| async move { fs.unlink(&p, dir, c).await.map(|_| ()) })
    }

    /// `mv`.
    pub fn rename(&self, src: &str, dst: &str, c: Cred) -> Result<()> {
        let (s, d) = (src.to_string(), dst.to_string());
        self.run(move |fs| async move { fs.rename(&s, &d, 0, c).await })
    }

    /// `ln`.
    pub fn link(&self, src: &str, dst: &str, c: Cred) -> Result<()> {
        let (s, d) = (src.to_string(), dst.to_string());
        self.run(move |fs| async move { fs.link(&s, &d, c).await.map(|_| ()) })
    }

    /// `ln -s`.
    pub fn symlink(&self, target: &str, path: &str, c: Cred) -> Result<()> {
        let (t, p) = (target.to_string(), path.to_string());
        self.run(move |fs| async move { fs.symlink(&t, &p, c).await.map(|_| ()) })
    }

    /// A snapshot of the client's counters: (RPCs sent, cache hits, blocking ASTs).
    pub fn counters(&self) -> Result<Counters> {
        self.run(|fs| async move {
            Ok(Counters {
                rpcs: fs.rpcs.get(),
                cache_hits: fs.stats.cache_hits.get(),
                blocking_asts: fs.stats.blocking_asts.get(),
                completion_asts: fs.stats.completion_asts.get(),
                evictions: fs.stats.evictions.get(),
                locks: fs.locks.len(),
            })
        })
    }

    /// Unmounts: disconnects every import and stops the client's node.
    pub fn umount(mut self) -> Result<()> {
        self.shutdown();
        Ok(())
    }

    fn shutdown(&mut self) {
        // Closing the job channel makes the executor unmount (bounded by the disconnect
        // timeout) and return, which stops the node.
        self.jobs.take();
        if let Some(n) = self.node.take() {
            let _ = n.join();
        }
    }
}

/// Starts work on a client's executor from any thread, without waiting for it. Holding one
/// keeps the executor alive: drop it before [`Client::umount`].
#[derive(Debug, Clone)]
pub struct Submitter(flume::Sender<Job>);

impl Submitter {
    /// Runs `f` on the executor; false when the client is gone (`f` is dropped unrun).
    pub fn spawn<F, Fut>(&self, f: F) -> bool
    where
        F: FnOnce(Rc<Fs>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job: Job = Box::new(move |fs| Box::pin(f(fs)));
        self.0.send(job).is_ok()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown();
    }
}

//! The FUSE mount: the kernel's file operations turned into the client's namespace and data
//! operations (`rlfs mount MGSNID:/FSNAME DIR`).
//!
//! Each request is handed to the client's executor with its reply; the executor answers the
//! kernel when the work is done, so one slow operation (a lock wait, a dead OST) never holds
//! the others up. Every operation has a deadline after which it fails with ETIMEDOUT.
//!
//! Caching follows the client's LDLM locks. Names, and the attributes of everything but
//! regular files, that a lock protects are handed to the kernel with a lifetime; when the
//! lock goes (blocking AST, LRU, eviction) the client drops them and the kernel is told to
//! drop them too (`invalidator`). A regular file's size lives on its objects, so its
//! attributes are asked for on every stat (glimpses, as a Lustre client does). File data is
//! direct I/O to the client (`FOPEN_DIRECT_IO`), whose pages are kept under extent locks;
//! shared mmap goes through the kernel's page cache. Two mounts therefore see each other's
//! changes as two Lustre clients do.
//!
//! Inode numbers are Lustre's: `fid_flatten` of the FID (the root is FUSE's inode 1); a map
//! turns them back into FIDs.

use crate::error::{Error, Result};
use crate::file::OpenFile;
use crate::flock::{self, FlockReq};
use crate::fs::{Cred, Dropped, Fs};
use crate::lov::Layout;
use crate::ns::{self, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::{Client, Submitter};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use proto::acl;
use proto::fid::LuFid;
use proto::lov::{LOV_OFFSET_DEFAULT, LovForm, LovMd, magic as lov_magic};
use proto::mdt::{MdtBody, MdtRecSetattr, attr as sa, open as of};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// FUSE's inode number of the root.
const ROOT_INO: u64 = 1;

/// What the kernel may cache of what no lock protects: nothing.
const TTL: Duration = Duration::ZERO;

/// How long the kernel may keep a name, or the attributes of anything but a regular file,
/// that a lock protects. The lock's cancellation invalidates them in the kernel at once
/// (`Invalidator`); the lifetime only bounds the damage of an invalidation lost.
const CACHE_TTL: Duration = Duration::from_secs(60);

/// The attribute lifetime of `a` (of `fid`) as the client's caches stand now.
fn attr_ttl(fs: &Fs, fid: LuFid, a: &FileAttr) -> Duration {
    if a.kind != FileType::RegularFile && fs.cached_attr(fid).is_some() { CACHE_TTL } else { TTL }
}

/// Entries of one READDIRPLUS looked up (a 4 KiB reply holds about twenty).
const READDIRPLUS_BATCH: usize = 32;

/// Lookups of one READDIRPLUS in flight at once.
const READDIRPLUS_LOOKUPS: usize = 8;

/// The block size reported to `stat` (what Lustre reports for small files: one page).
const BLKSIZE: u32 = 4096;

/// First and last sequence of IGIF FIDs (inode numbers of upgraded 1.8 file systems).
const FID_SEQ_IGIF: u64 = 12;
const FID_SEQ_IGIF_MAX: u64 = 0xffff_ffff;

/// Lustre's 64-bit inode number of a FID (`fid_flatten64`): the sequence shifted up with its
/// top bits folded into the low range, plus the object id.
#[must_use]
pub fn fid_flatten(fid: LuFid) -> u64 {
    let seq = fid.seq();
    if (FID_SEQ_IGIF..=FID_SEQ_IGIF_MAX).contains(&seq) {
        return seq;
    }
    let ino =
        (seq << 24).wrapping_add((seq >> 24) & 0xff_ffff_0000).wrapping_add(u64::from(fid.oid()));
    if ino == 0 { u64::from(fid.oid()) } else { ino }
}

/// Mount options (`-o`).
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Other users may use the mount (`allow_other`; pjdfstest needs it).
    pub allow_other: bool,
    /// The kernel checks permissions against the attributes too (`default_permissions`);
    /// the servers check them regardless.
    pub default_permissions: bool,
    /// Read-only.
    pub read_only: bool,
    /// How long one operation may take before it fails with ETIMEDOUT (`op_timeout=SECS`).
    pub op_timeout: Duration,
    /// Options handed to the kernel unchanged.
    pub kernel: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            allow_other: false,
            default_permissions: false,
            read_only: false,
            op_timeout: Duration::from_secs(120),
            kernel: Vec::new(),
        }
    }
}

impl MountOptions {
    /// Parses `-o a,b=c`; `timeout=SECS` (RPC resend timeout) goes to the client's
    /// configuration, which is returned changed.
    pub fn parse(s: &str, cfg: &mut crate::ClientConfig) -> Result<MountOptions> {
        let mut o = MountOptions::default();
        for opt in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = opt.split_once('=').map_or((opt, None), |(k, v)| (k, Some(v)));
            let secs = || -> Result<Duration> {
                v.and_then(|v| v.parse::<u64>().ok())
                    .filter(|&n| n > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| Error::new(libc::EINVAL).ctx(format!("-o {opt}: seconds")))
            };
            match k {
                "allow_other" => o.allow_other = true,
                "default_permissions" => o.default_permissions = true,
                "ro" => o.read_only = true,
                "rw" => o.read_only = false,
                "op_timeout" => o.op_timeout = secs()?,
                "timeout" => cfg.timeout = secs()?,
                "dev" | "nodev" | "suid" | "nosuid" | "exec" | "noexec" | "atime" | "noatime"
                | "sync" | "async" | "dirsync" => o.kernel.push(k.to_string()),
                _ => {
                    return Err(Error::new(libc::EINVAL).ctx(format!("unknown mount option {opt}")));
                }
            }
        }
        Ok(o)
    }
}

/// The FUSE side's tables, shared by the kernel-facing thread and the executor.
#[derive(Debug, Default)]
struct Tables {
    /// Inode numbers handed to the kernel, and their FIDs.
    inodes: HashMap<u64, LuFid>,
    /// Open files by handle.
    files: HashMap<u64, OpenFile>,
    /// Open directories: the listing taken at opendir (offsets index it, so they stay
    /// stable however the directory changes meanwhile).
    dirs: HashMap<u64, Vec<(u64, FileType, Vec<u8>)>>,
}

#[derive(Debug)]
struct Shared {
    tables: Mutex<Tables>,
    next_fh: AtomicU64,
    root: LuFid,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panicking holder leaves consistent maps (every update is one insert or remove).
        self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn fid(&self, ino: INodeNo) -> Result<LuFid> {
        if ino.0 == ROOT_INO {
            return Ok(self.root);
        }
        self.lock().inodes.get(&ino.0).copied().ok_or_else(|| Error::new(libc::ESTALE))
    }
    fn ino(&self, fid: LuFid) -> u64 {
        if fid == self.root {
            return ROOT_INO;
        }
        let ino = fid_flatten(fid);
        self.lock().inodes.insert(ino, fid);
        ino
    }
    fn file(&self, fh: FileHandle) -> Result<OpenFile> {
        self.lock().files.get(&fh.0).cloned().ok_or_else(|| Error::new(libc::EBADF))
    }
    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }
}

/// The file system the kernel sees.
#[derive(Debug)]
pub struct RustreFuse {
    jobs: Submitter,
    shared: Arc<Shared>,
    op_timeout: Duration,
}

fn errno(e: &Error) -> Errno {
    Errno::from_i32(e.errno)
}

fn kind(mode: u32) -> FileType {
    match mode & S_IFMT {
        S_IFDIR => FileType::Directory,
        S_IFLNK => FileType::Symlink,
        0o010_000 => FileType::NamedPipe,
        0o020_000 => FileType::CharDevice,
        0o060_000 => FileType::BlockDevice,
        0o140_000 => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn file_attr(ino: u64, b: &MdtBody) -> FileAttr {
    let mode = b.mbo_mode.get();
    FileAttr {
        ino: INodeNo(ino),
        size: b.mbo_size.get(),
        blocks: b.mbo_blocks.get(),
        atime: time(b.mbo_atime.get()),
        mtime: time(b.mbo_mtime.get()),
        ctime: time(b.mbo_ctime.get()),
        crtime: time(b.mbo_ctime.get()),
        kind: kind(mode),
        perm: u16::try_from(mode & 0o7777).unwrap_or(0),
        nlink: b.mbo_nlink.get(),
        uid: b.mbo_uid.get(),
        gid: b.mbo_gid.get(),
        rdev: b.mbo_rdev.get(),
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The caller's credentials: fsuid, fsgid, and one supplementary group (the first in
/// `/proc/PID/status` other than the primary one) for the server's group checks.
fn cred(req: &Request) -> Cred {
    let (uid, gid) = (req.uid(), req.gid());
    let mut suppgid = u32::MAX;
    if uid != 0
        && let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", req.pid()))
        && let Some(line) = s.lines().find(|l| l.starts_with("Groups:"))
    {
        suppgid = line
            .split_whitespace()
            .skip(1)
            .filter_map(|g| g.parse::<u32>().ok())
            .find(|&g| g != gid)
            .unwrap_or(u32::MAX);
    }
    Cred { uid, gid, suppgid }
}

/// MDS open flags from POSIX ones: the access mode becomes FMODE bits (`O_RDONLY` + 1), the
/// rest (CREAT, EXCL, TRUNC, APPEND, ...) have the same values.
fn mds_flags(flags: i32) -> u64 {
    let f = u64::from(flags.cast_unsigned());
    let acc = (f + 1) & 3;
    let keep = of::CREAT | of::EXCL | of::TRUNC | of::APPEND | of::SYNC | of::DIRECTORY;
    acc | (f & keep)
}

fn layout_of(lay: &[u8]) -> Result<Option<Layout>> {
    if lay.is_empty() {
        return Ok(None);
    }
    Ok(Some(Layout::from_lov(&LovMd::decode(lay, LovForm::Stored)?)?))
}

impl RustreFuse {
    /// The file system of a mounted client.
    pub fn new(client: &Client, root: LuFid, op_timeout: Duration) -> Result<RustreFuse> {
        let jobs = client.submitter().ok_or_else(|| Error::new(libc::ESHUTDOWN))?;
        Ok(RustreFuse {
            jobs,
            shared: Arc::new(Shared {
                tables: Mutex::new(Tables::default()),
                next_fh: AtomicU64::new(1),
                root,
            }),
            op_timeout,
        })
    }

    /// Runs `f` on the executor under the deadline, then `done` with its result there.
    fn go<R, F, Fut, D>(&self, f: F, done: D)
    where
        R: 'static,
        F: FnOnce(Rc<Fs>, Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R>> + 'static,
        D: FnOnce(Result<R>) + Send + 'static,
    {
        self.go_fs(f, move |r, _| done(r));
    }

    /// [`Self::go`] whose `done` also sees the client. `done` runs in the same step as the
    /// work's last one, with nothing else run on the executor in between, so what it reads
    /// of the caches is what the work left (a lock cancelled meanwhile has already dropped
    /// its entries, and its kernel invalidations are queued after this reply).
    fn go_fs<R, F, Fut, D>(&self, f: F, done: D)
    where
        R: 'static,
        F: FnOnce(Rc<Fs>, Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R>> + 'static,
        D: FnOnce(Result<R>, &Fs) + Send + 'static,
    {
        let shared = self.shared.clone();
        let t = self.op_timeout;
        // When the client is gone the closure is dropped with its reply, which answers EIO.
        let _ = self.jobs.spawn(move |fs| async move {
            // Whichever comes first, the work or the deadline, answers.
            let slot = Rc::new(std::cell::RefCell::new(Some(done)));
            let answer = slot.clone();
            let wfs = fs.clone();
            // The work runs as a task of its own that the deadline abandons but never
            // cancels: the client's state machines (reconnects, lock enqueues) are not safe to
            // drop half-way, and finish or time out on their own. A task that dies drops the
            // reply, which answers EIO.
            let work = glommio::spawn_local(async move {
                let r = f(wfs.clone(), shared).await;
                let done = answer.borrow_mut().take();
                if let Some(done) = done {
                    done(r, &wfs);
                }
            })
            .detach();
            futures_lite::future::or(
                async move {
                    let _ = work.await;
                },
                async move {
                    glommio::timer::sleep(t).await;
                    let done = slot.borrow_mut().take();
                    if let Some(done) = done {
                        done(Err(Error::new(libc::ETIMEDOUT).ctx("operation deadline")), &fs);
                    }
                },
            )
            .await;
        });
    }

    fn entry(&self, c: Cred, f: impl AsyncEntry, reply: ReplyEntry) {
        self.go(
            move |fs, sh| async move {
                let (fid, b) = f.run(fs.clone()).await?;
                let b = sized(&fs, fid, b, c).await?;
                Ok(file_attr(sh.ino(fid), &b))
            },
            move |r| match r {
                Ok(a) => reply.entry(&TTL, &a, Generation(0)),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn empty<F, Fut>(&self, f: F, reply: ReplyEmpty)
    where
        F: FnOnce(Rc<Fs>, Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        self.go(f, move |r| match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        });
    }
}

/// A regular file's size and blocks come from its objects (glimpses); others' from the MDT.
async fn sized(fs: &Rc<Fs>, fid: LuFid, b: MdtBody, c: Cred) -> Result<MdtBody> {
    if b.mbo_mode.get() & S_IFMT == S_IFREG { fs.getattr_sized(fid, c).await } else { Ok(b) }
}

/// An operation that yields a new or found name's FID and attributes.
trait AsyncEntry: Send + 'static {
    fn run(self, fs: Rc<Fs>) -> impl Future<Output = Result<(LuFid, MdtBody)>>;
}

impl<F, Fut> AsyncEntry for F
where
    F: FnOnce(Rc<Fs>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(LuFid, MdtBody)>>,
{
    fn run(self, fs: Rc<Fs>) -> impl Future<Output = Result<(LuFid, MdtBody)>> {
        self(fs)
    }
}

fn name_of(n: &OsStr) -> Vec<u8> {
    n.as_bytes().to_vec()
}

impl fuser::Filesystem for RustreFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Shared mmap of direct-I/O files (kernels from 6.6); older kernels refuse it.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        // fcntl and flock locks are the MDT's FLOCK locks (flock.rs), seen by every mount.
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_POSIX_LOCKS | fuser::InitFlags::FUSE_FLOCK_LOCKS,
        );
        let _ = config.set_max_write(1 << 20);
        // READDIRPLUS where the kernel finds it worth it (`ls -l`, not a bare listing).
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let c = cred(req);
        let n = name_of(name);
        let p = match self.shared.fid(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(&e)),
        };
        self.go_fs(
            move |fs, sh| async move {
                let (fid, b) = fs.lookup(p, &n, c).await?;
                let b = sized(&fs, fid, b, c).await?;
                Ok((file_attr(sh.ino(fid), &b), fid, n))
            },
            move |r, fs| match r {
                Ok((a, fid, n)) => {
                    let entry_ttl = if fs.entry_cached(p, &n) { CACHE_TTL } else { Duration::ZERO };
                    reply.entry_with_ttls(&attr_ttl(fs, fid, &a), &entry_ttl, &a, Generation(0));
                }
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let c = cred(req);
        self.go_fs(
            move |fs, sh| async move {
                let fid = sh.fid(ino)?;
                // What a lock protects is answered from the cache (regular files' sizes
                // come from their objects, so those always go out).
                let b = match fs.cached_attr(fid) {
                    Some(b) if b.mbo_mode.get() & S_IFMT != S_IFREG => b,
                    _ => fs.getattr_sized(fid, c).await?,
                };
                Ok((file_attr(ino.0, &b), fid))
            },
            move |r, fs| match r {
                Ok((a, fid)) => reply.attr(&attr_ttl(fs, fid, &a), &a),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let c = cred(req);
        self.go(
            move |fs, sh| async move {
                let fid = sh.fid(ino)?;
                if let Some(size) = size {
                    let f = match fh.map(|h| sh.file(h)) {
                        Some(Ok(f)) => f,
                        _ => {
                            let (_, lay) = fs.getattr(fid, c).await?;
                            OpenFile { fid, layout: layout_of(&lay)?, handle: 0, flags: 0 }
                        }
                    };
                    fs.truncate_file(&f, size, c).await?;
                }
                let mut valid = 0u64;
                let mut rec = MdtRecSetattr::default();
                let now = secs(SystemTime::now());
                if let Some(m) = mode {
                    valid |= sa::MODE;
                    rec.sa_mode = m.into();
                }
                if let Some(u) = uid {
                    valid |= sa::UID;
                    rec.sa_uid = u.into();
                }
                if let Some(g) = gid {
                    valid |= sa::GID;
                    rec.sa_gid = g.into();
                }
                // UTIME_NOW sets the time without the *_SET bit (any writer may); an explicit
                // time carries it (only the owner may); UTIME_OMIT never gets here.
                match atime {
                    Some(TimeOrNow::Now) => {
                        valid |= sa::ATIME;
                        rec.sa_atime = now.into();
                    }
                    Some(TimeOrNow::SpecificTime(t)) => {
                        valid |= sa::ATIME | sa::ATIME_SET;
                        rec.sa_atime = secs(t).into();
                    }
                    None => {}
                }
                match mtime {
                    Some(TimeOrNow::Now) => {
                        valid |= sa::MTIME;
                        rec.sa_mtime = now.into();
                    }
                    Some(TimeOrNow::SpecificTime(t)) => {
                        valid |= sa::MTIME | sa::MTIME_SET;
                        rec.sa_mtime = secs(t).into();
                    }
                    None => {}
                }
                if let Some(t) = ctime {
                    valid |= sa::CTIME;
                    rec.sa_ctime = secs(t).into();
                }
                if valid != 0 {
                    fs.setattr_fid(fid, valid, &rec, c).await?;
                }
                let b = fs.getattr_sized(fid, c).await?;
                Ok(file_attr(ino.0, &b))
            },
            move |r| match r {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let c = cred(req);
        self.go(
            move |fs, sh| async move { fs.readlink_fid(sh.fid(ino)?, c).await },
            move |r| match r {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let c = cred(req);
        let n = name_of(name);
        let p = match self.shared.fid(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(&e)),
        };
        let mode = mode & !(umask & 0o777);
        self.entry(
            c,
            move |fs: Rc<Fs>| async move {
                // A regular file is made without objects (Lustre's mcreate); its first open
                // for writing, or a layout set on it, gives it some.
                let mode = if mode & S_IFMT == 0 { mode | S_IFREG } else { mode };
                fs.mknod_at(p, &n, (mode, u64::from(rdev)), &[], &[], c).await
            },
            reply,
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let c = cred(req);
        let n = name_of(name);
        let p = match self.shared.fid(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(&e)),
        };
        let mode = S_IFDIR | (mode & 0o7777 & !(umask & 0o777));
        self.entry(
            c,
            move |fs: Rc<Fs>| async move { fs.mknod_at(p, &n, (mode, 0), &[], &[], c).await },
            reply,
        );
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let c = cred(req);
        let n = name_of(name);
        self.empty(
            move |fs, sh| async move { fs.unlink_at(sh.fid(parent)?, &n, false, c).await.map(|_| ()) },
            reply,
        );
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let c = cred(req);
        let n = name_of(name);
        self.empty(
            move |fs, sh| async move { fs.unlink_at(sh.fid(parent)?, &n, true, c).await.map(|_| ()) },
            reply,
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let c = cred(req);
        let n = name_of(link_name);
        let t = target.as_os_str().as_bytes().to_vec();
        let p = match self.shared.fid(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(&e)),
        };
        self.entry(
            c,
            move |fs: Rc<Fs>| async move {
                fs.mknod_at(p, &n, (S_IFLNK | 0o777, 0), &t, &[], c).await
            },
            reply,
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let c = cred(req);
        let (sn, tn) = (name_of(name), name_of(newname));
        let mut bias = 0;
        if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            bias |= ns::RENAME_NOREPLACE;
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            bias |= ns::RENAME_EXCHANGE;
        }
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        self.empty(
            move |fs, sh| async move {
                fs.rename_at(sh.fid(parent)?, &sn, sh.fid(newparent)?, &tn, bias, c).await
            },
            reply,
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let c = cred(req);
        let n = name_of(newname);
        let (f, p) = match (self.shared.fid(ino), self.shared.fid(newparent)) {
            (Ok(f), Ok(p)) => (f, p),
            (Err(e), _) | (_, Err(e)) => return reply.error(errno(&e)),
        };
        self.entry(
            c,
            move |fs: Rc<Fs>| async move {
                fs.link_at(f, p, &n, c).await?;
                let (b, _) = fs.getattr(f, c).await?;
                Ok((f, b))
            },
            reply,
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let c = cred(req);
        let fl = mds_flags(flags.0) & !(of::CREAT | of::EXCL);
        self.go(
            move |fs, sh| async move {
                let fid = sh.fid(ino)?;
                let (_, body, lay) = fs.open_by_fid(fid, fl, c).await?;
                let lay = if lay.is_empty() { fs.getattr(fid, c).await?.1 } else { lay };
                let f = OpenFile {
                    fid,
                    layout: layout_of(&lay)?,
                    handle: body.mbo_open_handle.get(),
                    flags: fl,
                };
                let fh = sh.new_fh();
                sh.lock().files.insert(fh, f);
                Ok(fh)
            },
            move |r| match r {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let c = cred(req);
        let n = name_of(name);
        let fl = mds_flags(flags) | of::CREAT;
        let perm = mode & 0o7777 & !(umask & 0o777);
        self.go(
            move |fs, sh| async move {
                let p = sh.fid(parent)?;
                let (fid, body, lay) = fs.open_at(p, &n, fl, perm, &[], c).await?;
                let lay = if lay.is_empty() { fs.getattr(fid, c).await?.1 } else { lay };
                let f = OpenFile {
                    fid,
                    layout: layout_of(&lay)?,
                    handle: body.mbo_open_handle.get(),
                    flags: fl,
                };
                let b = fs.getattr_sized(fid, c).await?;
                let fh = sh.new_fh();
                sh.lock().files.insert(fh, f);
                Ok((file_attr(sh.ino(fid), &b), fh))
            },
            move |r| match r {
                Ok((a, fh)) => reply.created(
                    &TTL,
                    &a,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO,
                ),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.go(
            move |fs, sh| async move {
                let f = sh.file(fh)?;
                fs.read_file(&f, offset, u64::from(size)).await
            },
            move |r| match r {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.go(
            move |fs, sh| async move {
                let f = sh.file(fh)?;
                if f.layout.is_none() {
                    return Err(Error::new(libc::EIO).ctx("file without objects"));
                }
                if f.flags & of::APPEND != 0 {
                    // Atomic per write: the end of file is found under PW locks to EOF.
                    fs.append_file(&f, &data).await.map(|_| ())
                } else {
                    fs.write_file(&f, offset, &data).await
                }
            },
            move |r| match r {
                Ok(()) => reply.written(len),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) reports write-back errors, as on a Lustre client; then the closing
        // process's POSIX locks on the file go, as after any close.
        self.empty(
            move |fs, sh| async move {
                let f = sh.file(fh)?;
                let synced = fs.fsync_file(&f).await;
                fs.flock_close_owner(f.fid, lock_owner.0).await?;
                synced
            },
            reply,
        );
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(
            move |fs, sh| async move {
                let f = sh.lock().files.remove(&fh.0);
                // flock and OFD locks go with the open file.
                let unlocked = fs.flock_close_open(fh.0).await;
                match f {
                    Some(f) => fs.close_file(&f).await.and(unlocked),
                    None => unlocked,
                }
            },
            reply,
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(move |fs, sh| async move { fs.fsync_file(&sh.file(fh)?).await }, reply);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let c = cred(req);
        self.go(
            move |fs, sh| async move {
                let fid = sh.fid(ino)?;
                let (b, _) = fs.getattr(fid, c).await?;
                if b.mbo_mode.get() & S_IFMT != S_IFDIR {
                    return Err(Error::new(libc::ENOTDIR));
                }
                let ents = fs.readdir(fid, c).await?;
                let mut list = Vec::with_capacity(ents.len() + 2);
                let has_dots = ents.iter().any(|e| e.name == ".");
                if !has_dots {
                    list.push((ino.0, FileType::Directory, b".".to_vec()));
                    list.push((ROOT_INO, FileType::Directory, b"..".to_vec()));
                }
                for e in ents {
                    let eino = match e.name.as_str() {
                        "." => ino.0,
                        ".." if e.fid.seq() == 0 => ROOT_INO,
                        _ => sh.ino(e.fid),
                    };
                    let k = if e.ftype == 0 { FileType::RegularFile } else { kind(e.ftype) };
                    list.push((eino, k, e.name.into_bytes()));
                }
                let fh = sh.new_fh();
                sh.lock().dirs.insert(fh, list);
                Ok(fh)
            },
            move |r| match r {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let t = self.shared.lock();
        let Some(list) = t.dirs.get(&fh.0) else { return reply.error(Errno::EBADF) };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, k, name)) in list.iter().enumerate().skip(start) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *k, OsStr::from_bytes(name)) {
                break;
            }
        }
        drop(t);
        reply.ok();
    }

    /// The listing with each entry's attributes (what `ls -l` wants), looked up a batch at a
    /// time, several at once; what the lookups' locks protect the kernel may keep.
    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let c = cred(req);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let batch: Vec<(u64, u64, FileType, Vec<u8>)> = {
            let t = self.shared.lock();
            let Some(list) = t.dirs.get(&fh.0) else { return reply.error(Errno::EBADF) };
            list.iter()
                .enumerate()
                .skip(start)
                .take(READDIRPLUS_BATCH)
                .map(|(i, (eino, k, name))| (i as u64 + 1, *eino, *k, name.clone()))
                .collect()
        };
        self.go_fs(
            move |fs, sh| async move {
                use futures_util::StreamExt;
                let dir = sh.fid(ino)?;
                let looked = futures_util::stream::iter(batch)
                    .map(|(off, eino, k, name)| {
                        let fs = fs.clone();
                        let sh = sh.clone();
                        async move {
                            if name == b"." || name == b".." {
                                // The kernel takes nothing from the dot entries but their names.
                                let mut a = file_attr(eino, &MdtBody::default());
                                a.kind = k;
                                return Ok(Some((off, name, a, None)));
                            }
                            match fs.lookup(dir, &name, c).await {
                                Ok((fid, b)) => {
                                    let b = sized(&fs, fid, b, c).await?;
                                    Ok(Some((off, name, file_attr(sh.ino(fid), &b), Some(fid))))
                                }
                                // Gone since the listing was taken: its offset stays unused.
                                Err(e) if e.errno == libc::ENOENT => Ok(None),
                                Err(e) => Err(e),
                            }
                        }
                    })
                    .buffered(READDIRPLUS_LOOKUPS)
                    .collect::<Vec<Result<_>>>()
                    .await;
                Ok((dir, looked))
            },
            move |r, fs| {
                let (dir, looked) = match r {
                    Ok(x) => x,
                    Err(e) => return reply.error(errno(&e)),
                };
                for (i, one) in looked.into_iter().enumerate() {
                    let (off, name, a, fid) = match one {
                        Ok(Some(x)) => x,
                        Ok(None) => continue,
                        // The first entry's failure is the call's; a later one ends the batch.
                        Err(e) if i == 0 => return reply.error(errno(&e)),
                        Err(_) => break,
                    };
                    // One lifetime for both: the name's only while the attributes' is too.
                    let ttl = match fid {
                        Some(f) if fs.entry_cached(dir, &name) => attr_ttl(fs, f, &a),
                        _ => TTL,
                    };
                    if reply.add(a.ino, off, OsStr::from_bytes(&name), &ttl, &a, Generation(0)) {
                        break;
                    }
                }
                reply.ok();
            },
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.shared.lock().dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Namespace changes are synchronous RPCs: nothing is left to write.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.go(
            move |fs, _| async move { fs.statfs_all().await },
            move |r| match r {
                Ok(all) => {
                    let (mut blocks, mut bfree, mut bavail) = (0u64, 0u64, 0u64);
                    let (mut files, mut ffree) = (0u64, 0u64);
                    let mut bsize = BLKSIZE;
                    let mut namelen = 255;
                    for (name, s) in &all {
                        if name.contains("-MDT") {
                            files += s.os_files.get();
                            ffree += s.os_ffree.get();
                            namelen = s.os_namelen.get().max(1);
                        } else {
                            // Sum in the first OST's block size.
                            let bs = u64::from(s.os_bsize.get().max(1));
                            if blocks == 0 {
                                bsize = s.os_bsize.get().max(1);
                            }
                            let k = |x: u64| x.saturating_mul(bs) / u64::from(bsize);
                            blocks += k(s.os_blocks.get());
                            bfree += k(s.os_bfree.get());
                            bavail += k(s.os_bavail.get());
                        }
                    }
                    reply.statfs(blocks, bfree, bavail, files, ffree, bsize, namelen, bsize);
                }
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let c = cred(req);
        let n = name.to_string_lossy().to_string();
        let v = value.to_vec();
        let fl = flags.cast_unsigned();
        self.empty(
            move |fs, sh| async move {
                let fid = sh.fid(ino)?;
                match n.as_str() {
                    "lustre.lov" | "trusted.lov" => set_layout_xattr(&fs, fid, &v, c).await,
                    // The servers' own bookkeeping: copies (cp -a, rsync -X) set them in
                    // vain, as on a Lustre client.
                    "trusted.lma" | "trusted.link" => Ok(()),
                    _ => fs.setxattr(fid, &n, Some(&v), fl, c).await,
                }
            },
            reply,
        );
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let c = cred(req);
        let n = name.to_string_lossy().to_string();
        self.go(
            move |fs, sh| async move {
                let fid = sh.fid(ino)?;
                if n == "lustre.lov" || n == "trusted.lov" {
                    return layout_xattr(&fs, fid, c).await;
                }
                fs.getxattr(fid, &n, c).await
            },
            move |r| xattr_reply(r, size, reply),
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let c = cred(req);
        self.go(
            move |fs, sh| async move {
                let fid = sh.fid(ino)?;
                let mut names = fs.listxattr(fid, c).await?;
                // Anything with a layout shows it as lustre.lov, as on a Lustre client.
                if !names.iter().any(|n| n == "lustre.lov")
                    && layout_xattr(&fs, fid, c).await.is_ok_and(|v| !v.is_empty())
                {
                    names.push("lustre.lov".into());
                }
                let mut v = Vec::new();
                for n in names {
                    v.extend_from_slice(n.as_bytes());
                    v.push(0);
                }
                Ok(v)
            },
            move |r| xattr_reply(r, size, reply),
        );
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let c = cred(req);
        let n = name.to_string_lossy().to_string();
        self.empty(
            move |fs, sh| async move { fs.setxattr(sh.fid(ino)?, &n, None, 0, c).await },
            reply,
        );
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let c = cred(req);
        let want = mask.bits().cast_unsigned() & 7;
        self.empty(
            move |fs, sh| async move {
                let fid = sh.fid(ino)?;
                let (b, _) = fs.getattr(fid, c).await?;
                if want == 0 {
                    return Ok(());
                }
                let (mode, uid, gid) = (b.mbo_mode.get(), b.mbo_uid.get(), b.mbo_gid.get());
                let groups: Vec<u32> =
                    Some(c.suppgid).filter(|&g| g != u32::MAX).into_iter().collect();
                let caller = acl::Caller { fsuid: c.uid, fsgid: c.gid, groups: &groups };
                // The access ACL, when the answer could depend on it (as the MDT decides).
                let acl = if acl::acl_matters(mode, uid, &caller) {
                    match fs.getxattr(fid, acl::XATTR_NAME_ACL_ACCESS, c).await {
                        Ok(v) => acl::PosixAcl::decode(&v).ok(),
                        Err(e) if e.errno == libc::ENODATA => None,
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                if acl::permission(mode, uid, gid, acl.as_ref(), &caller, want) {
                    Ok(())
                } else {
                    Err(Error::new(libc::EACCES))
                }
            },
            reply,
        );
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        self.go(
            move |fs, sh| async move {
                let r = FlockReq::from_fuse(lock_owner.0, start, end, typ, pid)?;
                fs.flock_test(sh.fid(ino)?, r).await
            },
            move |r| match r {
                Ok(Some(h)) => {
                    let (s, e) = (h.start.min(flock::OFFSET_MAX), h.end.min(flock::OFFSET_MAX));
                    reply.locked(s, e, h.kind.fcntl(), h.pid);
                }
                Ok(None) => reply.locked(start, end, flock::F_UNLCK, 0),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let tid = req.pid();
        let set = move |fs: Rc<Fs>, sh: Arc<Shared>| async move {
            let r = FlockReq::from_fuse(lock_owner.0, start, end, typ, pid)?;
            let fid = sh.fid(ino)?;
            fs.flock_note_open(fh.0, fid, r.owner);
            fs.flock_set_until(fid, r, sleep, flock::signal_pending(tid)).await
        };
        if !sleep {
            return self.empty(set, reply);
        }
        // F_SETLKW waits as long as the lock is held elsewhere: no operation deadline; a
        // signal to the caller ends the wait (fuser does not pass FUSE_INTERRUPT on).
        let sh = self.shared.clone();
        let _ = self.jobs.spawn(move |fs| async move {
            match set(fs, sh).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }
}

/// `lustre.lov` (and `trusted.lov`): a file's layout or a directory's default one. A file's
/// comes with the stripe offset unset, so that setting it on another file (tar, cp -a)
/// copies the striping but lets the MDT place the stripes.
async fn layout_xattr(fs: &Rc<Fs>, fid: LuFid, c: Cred) -> Result<Vec<u8>> {
    let (b, _) = fs.getattr(fid, c).await?;
    let t = b.mbo_mode.get() & S_IFMT;
    if t != S_IFREG && t != S_IFDIR {
        return Err(Error::new(libc::ENODATA));
    }
    let mut v = fs.getxattr(fid, "lustre.lov", c).await?;
    if v.is_empty() {
        return Err(Error::new(libc::ENODATA));
    }
    let magic = v.get(..4).map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    if t == S_IFREG
        && matches!(magic, Some(lov_magic::V1 | lov_magic::V3 | lov_magic::SPECIFIC))
        && let Some(off) = v.get_mut(LMM_STRIPE_OFFSET..LMM_STRIPE_OFFSET + 2)
    {
        off.copy_from_slice(&LOV_OFFSET_DEFAULT.to_le_bytes());
    }
    Ok(v)
}

/// Setting `lustre.lov`: a directory's default layout; the layout of a file that has none
/// yet; on a file that has one, nothing (tar and rsync set it on every file they copy).
async fn set_layout_xattr(fs: &Rc<Fs>, fid: LuFid, v: &[u8], c: Cred) -> Result<()> {
    let (b, _) = fs.getattr(fid, c).await?;
    match b.mbo_mode.get() & S_IFMT {
        S_IFDIR if v.is_empty() => fs.setxattr(fid, "lustre.lov", None, 0, c).await,
        S_IFDIR => fs.setxattr(fid, "lustre.lov", Some(v), 0, c).await,
        S_IFREG if v.is_empty() => Ok(()),
        S_IFREG if v.len() < LOV_USER_MD_V1_SIZE => Err(Error::new(libc::ERANGE)),
        S_IFREG => match fs.set_striping(fid, v, c).await {
            Err(e) if e.errno == libc::EEXIST => Ok(()),
            r => r,
        },
        _ => Ok(()),
    }
}

/// `lov_user_md_v1`'s size without stripes, the least a layout xattr may be.
const LOV_USER_MD_V1_SIZE: usize = 32;
/// Where `lmm_stripe_offset` (`lmm_layout_gen` as stored) sits in a layout.
const LMM_STRIPE_OFFSET: usize = 30;

fn xattr_reply(r: Result<Vec<u8>>, size: u32, reply: ReplyXattr) {
    match r {
        Ok(v) if size == 0 => reply.size(u32::try_from(v.len()).unwrap_or(u32::MAX)),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Mounts `client` on `dir` and serves the kernel until the file system is unmounted; then
/// unmounts the client.
pub fn serve(client: Client, dir: &Path, source: &str, opts: &MountOptions) -> Result<()> {
    let root = client.run(|fs| async move { Ok(fs.root.get()) })?;
    let fs = RustreFuse::new(&client, root, opts.op_timeout)?;
    let shared = fs.shared.clone();
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(source.to_string()),
        MountOption::Subtype("rustre".into()),
        if opts.read_only { MountOption::RO } else { MountOption::RW },
    ];
    if opts.default_permissions {
        cfg.mount_options.push(MountOption::DefaultPermissions);
    }
    for k in &opts.kernel {
        cfg.mount_options.push(MountOption::CUSTOM(k.clone()));
    }
    if opts.allow_other {
        cfg.acl = fuser::SessionACL::All;
    }
    let session = fuser::Session::new(fs, dir, &cfg)
        .map_err(|e| Error::new(e.raw_os_error().unwrap_or(libc::EIO)).ctx("mount"))?;
    invalidator(&client, shared, root, session.notifier())?;
    let r = session.run().map_err(|e| Error::new(e.raw_os_error().unwrap_or(libc::EIO)));
    client.umount()?;
    r
}

/// Kernel invalidations waiting for the invalidating thread.
const INVAL_QUEUE: usize = 4096;

/// What the kernel is told to drop.
#[derive(Debug)]
enum Inval {
    /// An inode's attributes.
    Attr(u64),
    /// A name in a directory.
    Entry(u64, Vec<u8>),
    /// An inode's cached pages (mmap) and attributes.
    Data(u64),
}

/// Ties the kernel's caches to the client's: every name, attribute and object the client
/// drops when its lock goes is invalidated in the kernel too, by a thread of its own. The
/// kernel takes the directory's lock to drop a name (and writes dirty mmapped pages back to
/// drop them), and may hold it while it waits for one of our replies that waits for this
/// very cancel (a create in that directory), so the cancel never waits for the kernel: it
/// queues the invalidation and goes on.
fn invalidator(
    client: &Client,
    shared: Arc<Shared>,
    root: LuFid,
    notifier: fuser::Notifier,
) -> Result<()> {
    let (tx, rx) = flume::bounded::<Inval>(INVAL_QUEUE);
    std::thread::Builder::new()
        .name("rlfs-inval".into())
        .spawn(move || {
            // Ends when the client (the only sender) is gone.
            for m in rx {
                let r = match &m {
                    Inval::Entry(p, n) => notifier.inval_entry(INodeNo(*p), OsStr::from_bytes(n)),
                    Inval::Attr(i) => notifier.inval_inode(INodeNo(*i), -1, 0),
                    Inval::Data(i) => notifier.inval_inode(INodeNo(*i), 0, 0),
                };
                // ENOENT: the kernel no longer knows the inode; nothing to drop.
                if let Err(e) = r
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    log::debug!("kernel invalidation {m:?}: {e}");
                }
            }
        })
        .map_err(|e| Error::new(e.raw_os_error().unwrap_or(libc::EAGAIN)).ctx("inval thread"))?;
    let ino = move |fid: LuFid| if fid == root { ROOT_INO } else { fid_flatten(fid) };
    client.run(move |fs| async move {
        fs.set_cache_listener(move |d| {
            let ms = match d {
                Dropped::Attr(f) => vec![Inval::Attr(ino(f))],
                Dropped::Entry(p, n) => vec![Inval::Entry(ino(p), n)],
                // The open files with that object (an mmapped file stays open while mapped).
                Dropped::Data(obj) => {
                    let mut files: Vec<u64> = shared
                        .lock()
                        .files
                        .values()
                        .filter(|f| {
                            f.layout
                                .as_ref()
                                .is_some_and(|l| l.stripes.iter().any(|s| s.fid == obj))
                        })
                        .map(|f| ino(f.fid))
                        .collect();
                    files.sort_unstable();
                    files.dedup();
                    files.into_iter().map(Inval::Data).collect()
                }
            };
            for m in ms {
                if let Err(flume::TrySendError::Full(m)) = tx.try_send(m) {
                    // A full queue: the invalidation waits in a task of its own, never lost.
                    let tx = tx.clone();
                    glommio::spawn_local(async move {
                        let _ = tx.send_async(m).await;
                    })
                    .detach();
                }
            }
        });
        Ok(())
    })
}

/// Unmounts a FUSE mount (lazily when it is busy, as `umount -l` does).
pub fn unmount(dir: &Path) -> Result<()> {
    use nix::mount::{MntFlags, umount2};
    match umount2(dir, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => umount2(dir, MntFlags::MNT_DETACH)
            .map_err(|e| Error::new(e as i32).ctx(format!("umount -l {}", dir.display()))),
        Err(e) => Err(Error::new(e as i32).ctx(format!("umount {}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_matches_lustre() {
        // A normal FID: seq << 24 plus the folded top of seq plus the oid.
        let f = LuFid::new(0x2_0000_0401, 0x17, 0);
        assert_eq!(fid_flatten(f), (0x2_0000_0401u64 << 24) + 0x17);
        // IGIF FIDs are their inode number.
        assert_eq!(fid_flatten(LuFid::new(1234, 5, 0)), 1234);
    }

    #[test]
    fn posix_open_flags_become_mds_flags() {
        assert_eq!(mds_flags(libc::O_RDONLY), of::FMODE_READ);
        assert_eq!(mds_flags(libc::O_WRONLY | libc::O_APPEND), of::FMODE_WRITE | of::APPEND);
        assert_eq!(
            mds_flags(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC),
            of::FMODE_READ | of::FMODE_WRITE | of::CREAT | of::EXCL | of::TRUNC
        );
    }

    #[test]
    fn options_parse() {
        let mut cfg = crate::ClientConfig::new("127.0.0.1@tcp".parse().unwrap(), "x");
        let o =
            MountOptions::parse("allow_other,op_timeout=5,timeout=3,noatime", &mut cfg).unwrap();
        assert!(o.allow_other);
        assert_eq!(o.op_timeout, Duration::from_secs(5));
        assert_eq!(cfg.timeout, Duration::from_secs(3));
        assert!(MountOptions::parse("bogus", &mut cfg).is_err());
    }
}

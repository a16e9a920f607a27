//! Everything that touches the executor: task spawning, timers, sockets, the channel mesh and
//! the executor pool. The rest of the crate calls these helpers only, so that moving to another
//! thread-per-core runtime stays contained in this file (glommio's upstream is quiet).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

pub(crate) use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};

/// The executor's TCP stream type.
pub(crate) type Stream = glommio::net::TcpStream;

/// Runs `fut` in the background on the current shard.
pub(crate) fn spawn<F: Future<Output = ()> + 'static>(fut: F) {
    glommio::spawn_local(fut).detach();
}

/// Sleeps on the current shard.
pub(crate) async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Yields to other tasks when this one has run for long.
pub(crate) async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// `fut`, or `None` if it did not finish within `d`.
pub(crate) async fn timeout<T, F: Future<Output = T>>(d: Duration, fut: F) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(d).await;
        None
    })
    .await
}

/// A wake-up broadcast for tasks of one shard: `listen()` before checking a condition, then
/// await the listener; any `notify()` after `listen()` wakes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notify(Rc<RefCell<NotifyInner>>);

#[derive(Debug, Default)]
struct NotifyInner {
    generation: u64,
    wakers: Vec<Waker>,
}

impl Notify {
    pub(crate) fn notify(&self) {
        let wakers = {
            let mut i = self.0.borrow_mut();
            i.generation = i.generation.wrapping_add(1);
            std::mem::take(&mut i.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn listen(&self) -> Listen {
        Listen { n: self.clone(), start: self.0.borrow().generation }
    }
}

/// A pending wait on a [`Notify`].
#[derive(Debug)]
pub(crate) struct Listen {
    n: Notify,
    start: u64,
}

impl Future for Listen {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut i = self.n.0.borrow_mut();
        if i.generation != self.start {
            return Poll::Ready(());
        }
        if !i.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            i.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A TCP listener bound with SO_REUSEPORT, so that every shard can listen on the same address.
pub(crate) struct Listener(glommio::net::TcpListener);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Listener").field(&self.0.local_addr().ok()).finish()
    }
}

impl Listener {
    pub(crate) fn bind(addr: SocketAddrV4) -> io::Result<Listener> {
        glommio::net::TcpListener::bind(SocketAddr::V4(addr)).map(Listener).map_err(io::Error::from)
    }

    pub(crate) async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        let s = self.0.accept().await.map_err(io::Error::from)?;
        let peer = s.peer_addr().map_err(io::Error::from)?;
        Ok((s, peer))
    }
}

/// A stream shared by a connection's reader and writer tasks. Borrows are taken only inside
/// synchronous poll calls, never across an await, so the two tasks never collide.
#[derive(Clone)]
pub(crate) struct Sock(Rc<RefCell<Stream>>);

impl std::fmt::Debug for Sock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Sock").field(&self.fd()).finish()
    }
}

impl Sock {
    pub(crate) fn new(s: Stream) -> Sock {
        let _ = s.set_nodelay(true);
        Sock(Rc::new(RefCell::new(s)))
    }

    pub(crate) fn into_inner(self) -> Rc<RefCell<Stream>> {
        self.0
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.0.borrow().as_raw_fd()
    }

    pub(crate) fn addrs(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        let s = self.0.borrow();
        Ok((s.local_addr().map_err(io::Error::from)?, s.peer_addr().map_err(io::Error::from)?))
    }

    /// Reads at most `len` bytes into `ptr`; 0 means end of stream.
    ///
    /// # Safety
    /// `ptr..ptr+len` must stay valid for writes until the returned future completes, and no
    /// reference to that memory may be held across this call's await points.
    pub(crate) async unsafe fn read_raw(&self, ptr: *mut u8, len: usize) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| {
            // SAFETY: the caller keeps the region valid; the slice lives only for this
            // synchronous poll, during which no other task of this shard runs.
            let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
            let mut s = self.0.borrow_mut();
            Pin::new(&mut *s).poll_read(cx, buf)
        })
        .await
    }

    /// Reads exactly `buf.len()` bytes.
    pub(crate) async fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let rest = buf.get_mut(done..).unwrap_or_default();
            // SAFETY: `rest` is exclusively borrowed for the whole call.
            let n = unsafe { self.read_raw(rest.as_mut_ptr(), rest.len()) }.await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }

    /// Writes at most `len` bytes from `ptr`, waiting for buffer space.
    ///
    /// # Safety
    /// `ptr..ptr+len` must stay valid for reads until the returned future completes.
    pub(crate) async unsafe fn write_raw(&self, ptr: *const u8, len: usize) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| {
            // SAFETY: as in `read_raw`: the slice only lives for this synchronous poll.
            let buf = unsafe { std::slice::from_raw_parts(ptr, len) };
            let mut s = self.0.borrow_mut();
            Pin::new(&mut *s).poll_write(cx, buf)
        })
        .await
    }

    pub(crate) async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let rest = buf.get(done..).unwrap_or_default();
            // SAFETY: `rest` is borrowed for the whole call.
            let n = unsafe { self.write_raw(rest.as_ptr(), rest.len()) }.await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }

    /// One non-blocking vectored send. `Ok(None)` when the socket buffer is full.
    pub(crate) fn sendmsg_nb(&self, iov: &[libc::iovec]) -> io::Result<Option<usize>> {
        if iov.is_empty() {
            return Ok(Some(0));
        }
        // SAFETY: zeroed msghdr is a valid "no address, no control" header.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = iov.as_ptr().cast_mut();
        mh.msg_iovlen = iov.len();
        let fd = self.fd();
        // SAFETY: the iovecs point at memory the caller keeps valid for this call.
        let n = unsafe { libc::sendmsg(fd, &mh, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(Some(n.unsigned_abs()));
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) }
    }

    pub(crate) fn shutdown(&self) {
        // SAFETY: shutting down a socket we own; errors (already closed) are irrelevant.
        unsafe {
            libc::shutdown(self.fd(), libc::SHUT_RDWR);
        }
    }
}

/// Detaches a stream from this executor so another shard can adopt it.
pub(crate) fn stream_into_fd(s: Stream) -> io::Result<OwnedFd> {
    // SAFETY: dup of a live descriptor; the duplicate is owned by the returned OwnedFd.
    let fd = unsafe { libc::dup(s.as_raw_fd()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(s);
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adopts a socket handed over by another shard.
pub(crate) fn stream_from_fd(fd: OwnedFd) -> Stream {
    // SAFETY: ownership of the descriptor moves into the stream.
    unsafe { Stream::from_raw_fd(fd.into_raw_fd()) }
}

/// Connects to `remote` from `local_ip`, binding a privileged source port (1023 down to 512,
/// as the kernel does) when `privileged`, else an ephemeral one. Gives up after `deadline`.
pub(crate) async fn connect(
    local_ip: Ipv4Addr,
    remote: SocketAddrV4,
    privileged: bool,
    deadline: Duration,
) -> io::Result<Stream> {
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    let ports: Vec<u16> = if privileged { (512..=1023).rev().collect() } else { vec![0] };
    for port in ports {
        match connect_one(local_ip, port, remote, deadline).await {
            Ok(s) => return Ok(s),
            Err(e)
                if privileged
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EADDRINUSE) | Some(libc::EADDRNOTAVAIL)
                    ) =>
            {
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

async fn connect_one(
    local_ip: Ipv4Addr,
    port: u16,
    remote: SocketAddrV4,
    deadline: Duration,
) -> io::Result<Stream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if port != 0 || !local_ip.is_unspecified() {
        bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(local_ip, port)))?;
    }
    match connect(fd.as_raw_fd(), &SockaddrIn::from(remote)) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS) => {
            let start = std::time::Instant::now();
            let mut nap = Duration::from_micros(50);
            loop {
                let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                // SAFETY: one valid pollfd, zero timeout: never blocks.
                let r = unsafe { libc::poll(&mut p, 1, 0) };
                if r > 0 {
                    break;
                }
                if start.elapsed() > deadline {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                sleep(nap).await;
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            let err = nix::sys::socket::getsockopt(&fd, sockopt::SocketError)?;
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(stream_from_fd(fd))
}

/// Where the executors of a node run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// One executor per listed CPU, pinned.
    Cpus(Vec<usize>),
    /// `n` executors pinned as far apart as the machine allows.
    MaxSpread(usize),
    /// `n` executors the kernel schedules freely (tests on busy machines).
    Unbound(usize),
}

impl Placement {
    pub(crate) fn count(&self) -> usize {
        match self {
            Placement::Cpus(v) => v.len(),
            Placement::MaxSpread(n) | Placement::Unbound(n) => *n,
        }
    }
}

/// Threads of a running executor pool.
pub(crate) struct Pool(glommio::PoolThreadHandles<()>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pool")
    }
}

impl Pool {
    pub(crate) fn join(self) -> Vec<Result<(), String>> {
        self.0.join_all().into_iter().map(|r| r.map_err(|e| e.to_string())).collect()
    }
}

/// Starts one executor per shard and runs `make()`'s future on each.
pub(crate) fn start_pool<G, F>(name: &str, placement: &Placement, make: G) -> io::Result<Pool>
where
    G: FnOnce() -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
    let pp = match placement {
        Placement::Cpus(cpus) => {
            let online = CpuSet::online().map_err(|e| io::Error::other(e.to_string()))?;
            let sets =
                cpus.iter().map(|&c| online.clone().filter(|l| l.cpu == c)).collect::<Vec<_>>();
            PoolPlacement::Custom(sets)
        }
        Placement::MaxSpread(n) => PoolPlacement::MaxSpread(*n, None),
        Placement::Unbound(n) => PoolPlacement::Unbound(*n),
    };
    LocalExecutorPoolBuilder::new(pp)
        .name(name)
        // lnd does no file I/O; keep the locked-memory footprint small (RLIMIT_MEMLOCK).
        .io_memory(512 << 10)
        .ring_depth(256)
        .on_all_shards(make)
        .map(Pool)
        .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    /// The writer's idle wait relies on this: a `notify` between `listen` and the await is not
    /// lost, and one before `listen` does not count.
    #[test]
    fn notify_after_listen_is_never_lost() {
        let n = Notify::default();
        n.notify();
        let mut l = Box::pin(n.listen());
        assert_eq!(block_on(poll_once(l.as_mut())), None, "an earlier notify does not count");
        n.notify();
        assert_eq!(block_on(poll_once(l.as_mut())), Some(()), "woken once registered");
        let l2 = n.listen();
        n.notify();
        assert_eq!(block_on(poll_once(l2)), Some(()), "notified before its first poll");
    }
}

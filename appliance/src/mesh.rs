//! Cross-shard work as messages (design decision 3): a shard runs a closure on another shard
//! and awaits its result. The closure and its result cross the glommio channel mesh; the state
//! it touches is the target shard's own, so no lock is ever shared.

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::channels::local_channel::{LocalReceiver, LocalSender, new_bounded};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

type AnyBox = Box<dyn Any + Send>;
type LocalFut = Pin<Box<dyn Future<Output = AnyBox>>>;
/// Work sent to another shard: it gets that shard's context and returns a future.
pub type Job<C> = Box<dyn FnOnce(Rc<C>) -> LocalFut + Send>;

/// A message on the mesh.
pub enum Msg<C> {
    /// Run a job and answer with `id`.
    Call {
        /// Call id on the caller.
        id: u64,
        /// Caller shard.
        from: usize,
        /// The work.
        job: Job<C>,
    },
    /// The result of call `id`.
    Ret {
        /// Call id.
        id: u64,
        /// The result.
        val: AnyBox,
    },
}

impl<C> std::fmt::Debug for Msg<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Call { id, from, .. } => write!(f, "Call {{ id: {id}, from: {from} }}"),
            Msg::Ret { id, .. } => write!(f, "Ret {{ id: {id} }}"),
        }
    }
}

/// The mesh builder to clone into every shard's start closure.
pub type MeshSpec<C> = MeshBuilder<Msg<C>, Full>;

/// A new mesh for `n` shards with `capacity` messages in flight per pair.
#[must_use]
pub fn mesh<C: 'static>(n: usize, capacity: usize) -> MeshSpec<C> {
    MeshBuilder::full(n, capacity)
}

/// The target shard is gone (shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard {0} is not reachable")]
pub struct ShardGone(pub usize);

/// One shard's end of the mesh.
pub struct Mesh<C> {
    me: usize,
    senders: Senders<Msg<C>>,
    pending: RefCell<HashMap<u64, LocalSender<AnyBox>>>,
    next: Cell<u64>,
}

impl<C> std::fmt::Debug for Mesh<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("me", &self.me)
            .field("pending", &self.pending.borrow().len())
            .finish()
    }
}

impl<C: 'static> Mesh<C> {
    /// Joins the mesh; returns this shard's end and the receivers to serve with
    /// [`Mesh::serve`].
    pub async fn join(spec: MeshSpec<C>) -> std::io::Result<(Rc<Mesh<C>>, Receivers<Msg<C>>)> {
        let (senders, receivers) =
            spec.join().await.map_err(|e| std::io::Error::other(e.to_string()))?;
        let me = senders.peer_id();
        Ok((
            Rc::new(Mesh {
                me,
                senders,
                pending: RefCell::new(HashMap::new()),
                next: Cell::new(0),
            }),
            receivers,
        ))
    }

    /// This shard's index in the mesh.
    #[must_use]
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of shards.
    #[must_use]
    pub fn nshards(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Serves calls from other shards and completes our calls' results, until the mesh closes.
    /// `ctx` is this shard's context handed to incoming jobs.
    pub async fn serve(self: Rc<Self>, mut receivers: Receivers<Msg<C>>, ctx: Rc<C>) {
        let mut tasks = Vec::new();
        for (peer, stream) in receivers.streams() {
            let mesh = self.clone();
            let ctx = ctx.clone();
            tasks.push(glommio::spawn_local(async move {
                while let Some(msg) = stream.recv().await {
                    match msg {
                        Msg::Call { id, from, job } => {
                            let mesh = mesh.clone();
                            let ctx = ctx.clone();
                            glommio::spawn_local(async move {
                                let val = job(ctx).await;
                                if mesh.senders.send_to(from, Msg::Ret { id, val }).await.is_err() {
                                    log::debug!("shard {from} left before its call {id} returned");
                                }
                            })
                            .detach();
                        }
                        Msg::Ret { id, val } => {
                            let tx = mesh.pending.borrow_mut().remove(&id);
                            if let Some(tx) = tx {
                                let _ = tx.try_send(val);
                            }
                        }
                    }
                }
                log::debug!("mesh stream from shard {peer} closed");
            }));
        }
        for t in tasks {
            t.await;
        }
    }

    /// Runs `f` on shard `to` with that shard's context and returns its result. On this shard
    /// it runs directly.
    pub async fn call<R, F, Fut>(&self, ctx: &Rc<C>, to: usize, f: F) -> Result<R, ShardGone>
    where
        R: Send + 'static,
        F: FnOnce(Rc<C>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if to == self.me {
            return Ok(f(ctx.clone()).await);
        }
        let id = self.next.get();
        self.next.set(id + 1);
        let (tx, rx): (LocalSender<AnyBox>, LocalReceiver<AnyBox>) = new_bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        let job: Job<C> = Box::new(move |c: Rc<C>| -> LocalFut {
            Box::pin(async move { Box::new(f(c).await) as AnyBox })
        });
        if self.senders.send_to(to, Msg::Call { id, from: self.me, job }).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(ShardGone(to));
        }
        let val = rx.recv().await.ok_or(ShardGone(to))?;
        val.downcast::<R>().map(|b| *b).map_err(|_| ShardGone(to))
    }
}

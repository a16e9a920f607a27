//! Small executor-agnostic async helpers: joining a batch of futures, and a local event.
//!
//! They keep the OSD independent of the executor: it runs inside glommio on a shard and under
//! `futures_lite::future::block_on` in the deterministic simulator.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A boxed local future.
pub(crate) type LocalFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Polls every future of a batch until all complete; returns their outputs in order.
pub(crate) async fn join_all<'a, T>(futs: Vec<LocalFut<'a, T>>) -> Vec<T> {
    let mut futs: Vec<Option<LocalFut<'a, T>>> = futs.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (slot, res) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *res = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(out.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

/// A single-executor notification: tasks wait for the generation to move past the one they
/// saw; `notify` bumps it and wakes them all. Waiters re-check their condition in a loop.
#[derive(Debug, Default)]
pub(crate) struct Event {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Event {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    pub(crate) fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let ws = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in ws {
            w.wake();
        }
    }

    /// Waits until `notify` is called after `seen` was read.
    pub(crate) fn wait(&self, seen: u64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if self.generation.get() != seen {
                return Poll::Ready(());
            }
            let mut ws = self.waiters.borrow_mut();
            if !ws.iter().any(|w| w.will_wake(cx.waker())) {
                ws.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn join_all_keeps_order() {
        let v = futures_lite::future::block_on(join_all(vec![
            Box::pin(async { 1 }) as LocalFut<'_, i32>,
            Box::pin(async {
                futures_lite::future::yield_now().await;
                2
            }),
            Box::pin(async { 3 }),
        ]));
        assert_eq!(v, vec![1, 2, 3]);
    }

    #[test]
    fn event_wakes_waiter() {
        let ev = Rc::new(Event::default());
        let ev2 = ev.clone();
        let g = ev.generation();
        let r = futures_lite::future::block_on(futures_lite::future::zip(
            async move {
                ev2.wait(g).await;
                7
            },
            async move {
                futures_lite::future::yield_now().await;
                ev.notify();
            },
        ));
        assert_eq!(r.0, 7);
    }
}

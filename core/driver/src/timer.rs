//! A timer that a loop keeps across its turns.
//!
//! Under madsim every poll of a pending `Sleep` adds an entry to the simulator's timer heap,
//! and entries are never cancelled: a loop that builds a fresh `sleep_until` on every turn (or
//! polls one `Sleep` many times) fills the heap with stale wake-ups, and expiring them led the
//! madsim profile. [`LoopTimer`] keeps one `Sleep`, moves its deadline only when it changes,
//! and polls the simulator's timer again only for a new deadline or a new waker.
//!
//! Under tokio (production and turmoil) it is a fresh `sleep_until` per wait, exactly the
//! timers the driver used before, so turmoil's schedule and trace hashes are unchanged.

use std::future::Future;

/// One timer per loop. Build it inside the runtime; [`until`](LoopTimer::until) returns the
/// future to wait on for this turn.
#[derive(Default)]
pub struct LoopTimer {
    #[cfg(madsim)]
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The deadline and waker the simulator will wake, once polled.
    #[cfg(madsim)]
    armed: Option<(tokio::time::Instant, std::task::Waker)>,
}

impl LoopTimer {
    pub fn new() -> LoopTimer {
        LoopTimer::default()
    }

    /// Completes at `deadline` exactly (see [`sleep_until`](crate::sleep_until)).
    #[cfg(not(madsim))]
    pub fn until(&mut self, deadline: tokio::time::Instant) -> impl Future<Output = ()> + '_ {
        crate::sleep_until(deadline)
    }

    /// Completes at `deadline` exactly (see [`sleep_until`](crate::sleep_until)).
    #[cfg(madsim)]
    pub fn until(&mut self, deadline: tokio::time::Instant) -> impl Future<Output = ()> + '_ {
        self.set(deadline);
        std::future::poll_fn(move |cx| self.poll(cx))
    }

    /// [`until`](LoopTimer::until) for code that polls by hand (an `AsyncRead`).
    #[cfg(madsim)]
    pub fn poll_until(
        &mut self,
        cx: &mut std::task::Context<'_>,
        deadline: tokio::time::Instant,
    ) -> std::task::Poll<()> {
        self.set(deadline);
        self.poll(cx)
    }

    #[cfg(madsim)]
    fn set(&mut self, deadline: tokio::time::Instant) {
        match &mut self.sleep {
            Some(sleep) if sleep.deadline() == deadline => {}
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(crate::sleep_until(deadline))),
        }
    }

    #[cfg(madsim)]
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::task::Poll;
        let Some(sleep) = self.sleep.as_mut() else {
            return Poll::Pending;
        };
        if sleep.is_elapsed() {
            self.armed = None;
            return Poll::Ready(());
        }
        let deadline = sleep.deadline();
        if let Some((at, waker)) = &self.armed {
            if *at == deadline && waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        let polled = sleep.as_mut().poll(cx);
        self.armed = polled.is_pending().then(|| (deadline, cx.waker().clone()));
        polled
    }
}

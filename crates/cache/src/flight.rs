//! Single-flight: one loader run per missing key, however many callers ask.
//!
//! A `Flight` is the rendezvous for one load. Sync waiters block on a
//! condition variable; async waiters register a `Waker` and are polled, so
//! an async waiter never blocks a runtime thread and needs no particular
//! runtime. The leader owns a [`LeadGuard`]: if it is dropped before the
//! load finishes (the leader's future was cancelled, or the loader
//! panicked), the flight is marked abandoned and every waiter retries, one
//! of them becoming the new leader; the key is never left stuck.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

/// A loader error with its type erased, so one flight can carry whatever
/// error type its leader's loader returns; waiters downcast it back.
pub(crate) type ErasedError = Arc<dyn Any + Send + Sync>;

enum State<V> {
    Pending(Vec<Waker>),
    Done(Result<V, ErasedError>),
    Abandoned,
}

/// How a flight ended, as seen by a waiter.
pub(crate) enum Outcome<V> {
    Loaded(V),
    Failed(ErasedError),
    Abandoned,
}

pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    done: Condvar,
}

impl<V: Clone> Flight<V> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::Pending(Vec::new())),
            done: Condvar::new(),
        })
    }

    /// Publishes the result (`None`: abandoned) and wakes every waiter.
    pub(crate) fn finish(&self, result: Option<Result<V, ErasedError>>) {
        let next = match result {
            Some(r) => State::Done(r),
            None => State::Abandoned,
        };
        let previous = std::mem::replace(&mut *self.state.lock(), next);
        self.done.notify_all();
        if let State::Pending(wakers) = previous {
            for w in wakers {
                w.wake();
            }
        }
    }

    fn outcome(state: &State<V>) -> Option<Outcome<V>> {
        match state {
            State::Pending(_) => None,
            State::Done(Ok(v)) => Some(Outcome::Loaded(v.clone())),
            State::Done(Err(e)) => Some(Outcome::Failed(Arc::clone(e))),
            State::Abandoned => Some(Outcome::Abandoned),
        }
    }

    /// Blocks the calling thread until the flight ends.
    pub(crate) fn wait(&self) -> Outcome<V> {
        let mut state = self.state.lock();
        loop {
            if let Some(o) = Self::outcome(&state) {
                return o;
            }
            self.done.wait(&mut state);
        }
    }

    /// Waits without blocking: a future that is woken when the flight ends.
    pub(crate) fn wait_async(self: Arc<Self>) -> FlightWait<V> {
        FlightWait { flight: self }
    }
}

/// The future returned by [`Flight::wait_async`]. Dropping it is harmless:
/// its stale waker is simply woken once when the flight ends.
pub(crate) struct FlightWait<V> {
    flight: Arc<Flight<V>>,
}

impl<V: Clone> Future for FlightWait<V> {
    type Output = Outcome<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<V>> {
        let mut state = self.flight.state.lock();
        if let Some(o) = Flight::outcome(&state) {
            return Poll::Ready(o);
        }
        if let State::Pending(wakers) = &mut *state
            && !wakers.iter().any(|w| w.will_wake(cx.waker()))
        {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Removes the flight from its shard's table when the leader is done.
pub(crate) trait FlightTable<K, V> {
    /// Forgets `flight` for `key` if it is still the registered one.
    fn forget(&self, key: &K, hash: u64, flight: &Arc<Flight<V>>);
}

/// Held by the one caller that runs the loader. Finish it with
/// [`LeadGuard::finish`]; dropping it unfinished abandons the flight.
pub(crate) struct LeadGuard<K, V> {
    table: Arc<dyn FlightTable<K, V> + Send + Sync>,
    key: K,
    hash: u64,
    flight: Arc<Flight<V>>,
    finished: bool,
}

impl<K, V: Clone> LeadGuard<K, V> {
    pub(crate) fn new(
        table: Arc<dyn FlightTable<K, V> + Send + Sync>,
        key: K,
        hash: u64,
        flight: Arc<Flight<V>>,
    ) -> Self {
        Self {
            table,
            key,
            hash,
            flight,
            finished: false,
        }
    }

    pub(crate) fn key(&self) -> &K {
        &self.key
    }

    /// Unregisters the flight, then publishes `result` to its waiters.
    /// Callers store a loaded value in the cache *before* this, so a caller
    /// arriving after the flight is gone finds the value.
    pub(crate) fn finish(mut self, result: Result<V, ErasedError>) {
        self.finished = true;
        self.table.forget(&self.key, self.hash, &self.flight);
        self.flight.finish(Some(result));
    }
}

impl<K, V> Drop for LeadGuard<K, V> {
    fn drop(&mut self) {
        if !self.finished {
            self.table.forget(&self.key, self.hash, &self.flight);
            let previous = std::mem::replace(&mut *self.flight.state.lock(), State::Abandoned);
            self.flight.done.notify_all();
            if let State::Pending(wakers) = previous {
                for w in wakers {
                    w.wake();
                }
            }
        }
    }
}

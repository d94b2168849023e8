//! The one trait, [`CircuitBreaker`]: "may this call go through?" answered
//! with a [`Permit`], and "here is how it went" told through that permit.
//!
//! It is plain synchronous code, so it works from threads, from any async
//! runtime, or from no runtime at all.

use std::time::Duration;

use crate::{NotPermitted, Outcome};

/// A circuit breaker, reduced to what a caller needs.
///
/// Implementors hand out a [`Permit`] carrying a [`Ticket`] (whatever the
/// implementation needs to file the outcome later), and receive that ticket
/// back in [`record`](Self::record), or in [`release`](Self::release) when
/// the permit is dropped unused. [`Breaker`](crate::Breaker) is the
/// production implementation.
///
/// ```
/// use std::time::{Duration, Instant};
/// use stratum_breaker::{Breaker, CircuitBreaker, Outcome};
///
/// fn guarded<B: CircuitBreaker>(breaker: &B, work: impl FnOnce() -> Result<u32, String>) -> Option<u32> {
///     let permit = breaker.try_acquire().ok()?;
///     let started = Instant::now();
///     let result = work();
///     let outcome = if result.is_ok() { Outcome::Success } else { Outcome::Failure };
///     permit.record(outcome, started.elapsed());
///     result.ok()
/// }
///
/// let breaker = Breaker::builder("catalog").build().unwrap();
/// assert_eq!(guarded(&breaker, || Ok(7)), Some(7));
/// ```
pub trait CircuitBreaker {
    /// A permit for one call, or the reason it may not go through.
    fn try_acquire(&self) -> Result<Permit<'_, Self>, NotPermitted>;

    /// Files the outcome of the call that `ticket` admitted. Called by
    /// [`Permit::record`]; call it directly only when implementing a permit
    /// of your own.
    fn record(&self, ticket: Ticket, outcome: Outcome, elapsed: Duration);

    /// The call that `ticket` admitted will never report (its permit was
    /// dropped): give back whatever it held, such as a half-open probe slot.
    fn release(&self, ticket: Ticket);
}

/// What an implementation of [`CircuitBreaker`] needs to know, when a call
/// finishes, about how it was admitted. For [`Breaker`](crate::Breaker) it
/// is the state and epoch the call was admitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// Wraps an implementation-defined value.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The implementation-defined value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Leave to make one call; report how it went with [`record`](Self::record)
/// (or [`success`](Self::success), [`failure`](Self::failure),
/// [`ignore`](Self::ignore)).
///
/// Dropping a permit without reporting gives it back: a cancelled half-open
/// probe frees its slot for another probe instead of leaving half-open
/// waiting for it.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::{Breaker, Outcome, State};
///
/// let breaker = Breaker::builder("profile")
///     .permitted_calls_in_half_open(1)
///     .build()
///     .unwrap();
/// breaker.transition_to(State::HalfOpen);
/// let probe = breaker.try_acquire().unwrap();
/// assert!(breaker.try_acquire().is_err()); // the only probe slot is taken
/// drop(probe); // cancelled: the slot comes back
/// let probe = breaker.try_acquire().unwrap();
/// probe.record(Outcome::Success, Duration::from_millis(3));
/// assert_eq!(breaker.state(), State::Closed);
/// ```
#[must_use = "a permit that is dropped unreported is given back; report the call's outcome"]
#[derive(Debug)]
pub struct Permit<'a, B: CircuitBreaker + ?Sized> {
    breaker: &'a B,
    ticket: Ticket,
    settled: bool,
}

impl<'a, B: CircuitBreaker + ?Sized> Permit<'a, B> {
    /// A permit that reports to `breaker` with `ticket` (for implementors of
    /// [`CircuitBreaker`]).
    pub fn new(breaker: &'a B, ticket: Ticket) -> Self {
        Self {
            breaker,
            ticket,
            settled: false,
        }
    }

    /// The ticket this permit reports with.
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// Reports the call's outcome and how long it took; the breaker judges
    /// from `elapsed` whether it was slow.
    #[inline]
    pub fn record(mut self, outcome: Outcome, elapsed: Duration) {
        self.settled = true;
        self.breaker.record(self.ticket, outcome, elapsed);
    }

    /// Reports a success that took `elapsed`.
    #[inline]
    pub fn success(self, elapsed: Duration) {
        self.record(Outcome::Success, elapsed);
    }

    /// Reports a failure that took `elapsed`.
    #[inline]
    pub fn failure(self, elapsed: Duration) {
        self.record(Outcome::Failure, elapsed);
    }

    /// Reports a call that should not count (see [`Outcome::Ignored`]).
    pub fn ignore(self, elapsed: Duration) {
        self.record(Outcome::Ignored, elapsed);
    }
}

impl<B: CircuitBreaker + ?Sized> Drop for Permit<'_, B> {
    #[inline]
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.release(self.ticket);
        }
    }
}

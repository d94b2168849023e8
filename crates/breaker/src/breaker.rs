//! [`Breaker`], the production [`CircuitBreaker`]: the state machine, the
//! lock-free closed-state path and the manual controls.
//!
//! How the hot path stays lock-free: the state lives in one atomic word
//! (state + epoch, see `state.rs`). In the closed state, `try_acquire` is one
//! load of that word; `record` is one more load (is the permit's epoch still
//! current?) and the window's lock-free record. A lock is taken only to
//! change state, so two threads that both see a threshold crossed make one
//! transition, not two: the transition re-checks the word it was decided on.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::baseline::SlowThreshold;
use crate::clock::{Clock, CoarseClock, duration_nanos};
use crate::config::{BreakerConfig, SlidingWindow};
use crate::event::TransitionReason;
use crate::jitter::{SplitMix64, jittered_nanos};
use crate::probes::{Admission, Probes};
use crate::state::Word;
use crate::telemetry::{Telemetry, rates};
use crate::window::{Code, CountWindow, Counts, TimeWindow, Window};
use crate::{
    BreakerBuilder, CallError, CircuitBreaker, Classifier, ConfigError, NotPermitted, Outcome,
    Permit, State, Subscriber, Ticket,
};
use crossbeam_utils::CachePadded;

/// How many times `try_acquire` and `poll` follow a transition they raced
/// with before answering with what they last saw; each retry means another
/// thread changed the state, so this only bounds a pathological storm.
const MAX_RETRIES: usize = 8;

/// A circuit breaker: count- or time-based window, failure-rate and
/// slow-call thresholds, capped half-open probes, manual control, events.
///
/// Cloning is cheap and clones share one state. See the [crate docs](crate)
/// for the guide.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::{Breaker, ManualClock, State};
///
/// let clock = ManualClock::new();
/// let breaker = Breaker::builder("users")
///     .count_based_window(4)
///     .minimum_number_of_calls(4)
///     .failure_rate_threshold(50.0)
///     .wait_in_open(Duration::from_secs(10))
///     .jitter(0.0)
///     .permitted_calls_in_half_open(2)
///     .clock(clock.clone())
///     .build()
///     .unwrap();
///
/// for ok in [true, false, true, false] {
///     let permit = breaker.try_acquire().unwrap();
///     if ok { permit.success(Duration::from_millis(1)) } else { permit.failure(Duration::from_millis(1)) }
/// }
/// assert_eq!(breaker.state(), State::Open); // 2 of 4 failed: 50 %
/// assert!(breaker.try_acquire().is_err());
///
/// clock.advance(Duration::from_secs(10));
/// let probes = [breaker.try_acquire().unwrap(), breaker.try_acquire().unwrap()];
/// assert_eq!(breaker.state(), State::HalfOpen);
/// assert!(breaker.try_acquire().is_err()); // exactly two probes
/// for probe in probes { probe.success(Duration::from_millis(1)) }
/// assert_eq!(breaker.state(), State::Closed);
/// ```
pub struct Breaker<C: Clock = CoarseClock> {
    inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for Breaker<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Clock> std::fmt::Debug for Breaker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.inner.config.name)
            .field("state", &self.current().state())
            .finish_non_exhaustive()
    }
}

struct Inner<C> {
    /// The packed state word; read by every call, written only by
    /// transitions, so alone on its cache line.
    state: CachePadded<AtomicU64>,
    window: Window,
    probes: Probes,
    /// When the current open period ends (clock nanoseconds).
    open_until: AtomicU64,
    /// When the current half-open period began (clock nanoseconds).
    half_open_since: AtomicU64,
    transitions: Mutex<Transitions>,
    /// The slow-call threshold, fixed or learned.
    slow: SlowThreshold,
    settings: Settings,
    config: BreakerConfig,
    clock: C,
    telemetry: Telemetry,
}

/// What only a transition touches, under the transition lock.
struct Transitions {
    /// Openings since the breaker was last closed (drives exponential waits).
    trips: u32,
    rng: SplitMix64,
}

/// The configuration, pre-digested for the hot path.
struct Settings {
    failure_rate_threshold: f64,
    slow_call_rate_threshold: f64,
    /// `minimum_number_of_calls`, capped at a count-based window's size.
    minimum_calls: u64,
    permitted: u32,
    automatic: bool,
    max_half_open_nanos: u64,
    /// `slow_call_duration_threshold`: what "slow" means for a half-open
    /// probe, even when the closed state's threshold is learned (see
    /// `record`).
    probe_slow_nanos: u64,
}

/// A point-in-time view of a breaker, for health checks and dashboards.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::{Breaker, State};
///
/// let breaker = Breaker::builder("docs")
///     .minimum_number_of_calls(2)
///     .failure_rate_threshold(60.0)
///     .build()
///     .unwrap();
/// breaker.try_acquire().unwrap().success(Duration::from_millis(1));
/// assert_eq!(breaker.snapshot().failure_rate, None); // below the minimum
/// breaker.try_acquire().unwrap().failure(Duration::from_millis(1));
/// let snapshot = breaker.snapshot();
/// assert_eq!((snapshot.state, snapshot.calls, snapshot.failed_calls), (State::Closed, 2, 1));
/// assert_eq!(snapshot.failure_rate, Some(50.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The current state (after applying any transition that is due).
    pub state: State,
    /// Calls in the closed-state window (also filled in metrics-only).
    pub calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Slow calls in the window (failed or not).
    pub slow_calls: u64,
    /// The window's failure rate in percent; `None` below the minimum number
    /// of calls.
    pub failure_rate: Option<f64>,
    /// The window's slow-call rate in percent; `None` below the minimum.
    pub slow_call_rate: Option<f64>,
}

impl Breaker<CoarseClock> {
    /// A builder for a breaker named `name`, on the coarse clock (see
    /// [`CoarseClock`]), with the default configuration.
    pub fn builder(name: impl Into<String>) -> BreakerBuilder<CoarseClock> {
        BreakerBuilder::new(name.into())
    }

    /// A breaker from a configuration, on the coarse clock.
    ///
    /// ```
    /// use stratum_breaker::{Breaker, BreakerConfig};
    ///
    /// let breaker = Breaker::new(BreakerConfig { name: "ledger".into(), ..Default::default() }).unwrap();
    /// assert_eq!(breaker.name(), "ledger");
    /// ```
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::with_parts(config, CoarseClock::new(), Vec::new())
    }
}

impl<C: Clock> Breaker<C> {
    pub(crate) fn with_parts(
        config: BreakerConfig,
        clock: C,
        subscribers: Vec<Subscriber>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let (window, minimum_calls) = match config.sliding_window {
            SlidingWindow::CountBased { size } => (
                Window::Count(CountWindow::new(size)),
                config.minimum_number_of_calls.min(size),
            ),
            SlidingWindow::TimeBased { duration } => (
                Window::Time(TimeWindow::new(duration.as_secs())),
                config.minimum_number_of_calls,
            ),
        };
        let settings = Settings {
            failure_rate_threshold: config.failure_rate_threshold,
            slow_call_rate_threshold: config.slow_call_rate_threshold,
            minimum_calls: u64::from(minimum_calls),
            permitted: config.permitted_calls_in_half_open,
            automatic: config.automatic_transition_to_half_open,
            max_half_open_nanos: duration_nanos(config.max_wait_in_half_open),
            probe_slow_nanos: duration_nanos(config.slow_call_duration_threshold),
        };
        let seed = config
            .jitter_seed
            .unwrap_or_else(|| SplitMix64::random_seed(&config.name));
        let telemetry = Telemetry::new(Arc::from(config.name.as_str()), subscribers);
        telemetry.state(State::Closed);
        let slow = SlowThreshold::new(
            config.slow_call_duration_threshold,
            &config.adaptive_slow_call,
        );
        telemetry.slow_call_threshold(slow.nanos(), None);
        Ok(Self {
            inner: Arc::new(Inner {
                state: CachePadded::new(AtomicU64::new(Word::new(0, State::Closed).0)),
                window,
                probes: Probes::default(),
                open_until: AtomicU64::new(0),
                half_open_since: AtomicU64::new(0),
                transitions: Mutex::new(Transitions {
                    trips: 0,
                    rng: SplitMix64::new(seed),
                }),
                slow,
                settings,
                config,
                clock,
                telemetry,
            }),
        })
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The configuration the breaker was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// The breaker's clock.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// A permit for one call, or why not (see [`CircuitBreaker::try_acquire`]).
    ///
    /// In the closed state this is one atomic load. In the open state it
    /// moves to half-open once the wait is over; in half-open it admits
    /// exactly the permitted number of probes.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_, Self>, NotPermitted> {
        let word = self.current();
        if matches!(word.state(), State::Closed) {
            return Ok(Permit::new(self, Ticket::new(word.0)));
        }
        self.try_acquire_slow(word)
    }

    /// Everything but the closed state, kept out of line.
    #[cold]
    fn try_acquire_slow(&self, mut word: Word) -> Result<Permit<'_, Self>, NotPermitted> {
        let inner = &*self.inner;
        for _ in 0..MAX_RETRIES {
            match word.state() {
                State::Closed | State::MetricsOnly | State::Disabled => {
                    return Ok(Permit::new(self, Ticket::new(word.0)));
                }
                State::ForcedOpen => return Err(self.refuse(State::ForcedOpen, None)),
                State::Open => {
                    let now = inner.clock.now_nanos();
                    let until = inner.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Err(self.refuse(State::Open, Some(nanos(until - now))));
                    }
                    self.transition(Some(word), State::HalfOpen, TransitionReason::WaitElapsed);
                }
                State::HalfOpen => {
                    if self.half_open_timed_out() {
                        self.transition(Some(word), State::Open, TransitionReason::HalfOpenTimeout);
                    } else {
                        match inner.probes.admit(word.epoch(), inner.settings.permitted) {
                            Admission::Admitted => {
                                return Ok(Permit::new(self, Ticket::new(word.0)));
                            }
                            Admission::Full => return Err(self.refuse(State::HalfOpen, None)),
                            Admission::Stale => {}
                        }
                    }
                }
            }
            word = self.current();
        }
        Err(self.refuse(word.state(), None))
    }

    /// Runs `fut` if the breaker permits, timing it with the breaker's clock:
    /// `Ok` counts as a success, `Err` as a failure. Works on any runtime.
    ///
    /// Takes anything that turns into a future (`IntoFuture`), such as the
    /// MongoDB driver's actions (`collection.find_one(filter)`), so they can
    /// be passed without `.into_future()`. The future is not polled, and the
    /// call never starts, when the breaker refuses.
    ///
    /// ```
    /// use stratum_breaker::{Breaker, CallError};
    ///
    /// let breaker = Breaker::builder("kv").build().unwrap();
    /// let value = futures::executor::block_on(breaker.call(async { Ok::<_, std::io::Error>(42) }));
    /// assert_eq!(value.unwrap(), 42);
    /// ```
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: IntoFuture<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::NotPermitted)?;
        let started = self.inner.clock.now_nanos();
        let result = fut.await;
        let elapsed = nanos(self.inner.clock.now_nanos().saturating_sub(started));
        let outcome = if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        permit.record(outcome, elapsed);
        result.map_err(CallError::Failed)
    }

    /// Like [`call`](Self::call), with the outcome decided by `classifier`.
    ///
    /// ```
    /// use stratum_breaker::{Breaker, Classifier};
    ///
    /// let breaker = Breaker::builder("kv").build().unwrap();
    /// // A 404 says nothing about the service's health.
    /// let classifier = Classifier::<String, u16>::new().ignore_error(|status| *status == 404);
    /// let missing = futures::executor::block_on(
    ///     breaker.call_with(&classifier, async { Err::<String, u16>(404) }),
    /// );
    /// assert!(missing.is_err());
    /// assert_eq!(breaker.snapshot().calls, 0); // ignored: not in the window
    /// ```
    pub async fn call_with<T, E, F>(
        &self,
        classifier: &Classifier<T, E>,
        fut: F,
    ) -> Result<T, CallError<E>>
    where
        F: IntoFuture<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::NotPermitted)?;
        let started = self.inner.clock.now_nanos();
        let result = fut.await;
        let elapsed = nanos(self.inner.clock.now_nanos().saturating_sub(started));
        permit.record(classifier.classify(&result), elapsed);
        result.map_err(CallError::Failed)
    }

    /// Runs `f` if the breaker permits, timing it with the breaker's clock:
    /// `Ok` counts as a success, `Err` as a failure.
    ///
    /// ```
    /// use stratum_breaker::Breaker;
    ///
    /// let breaker = Breaker::builder("fs").build().unwrap();
    /// assert_eq!(breaker.call_sync(|| "42".parse::<u8>()).unwrap(), 42);
    /// ```
    #[inline]
    pub fn call_sync<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        let permit = self.try_acquire().map_err(CallError::NotPermitted)?;
        let started = self.inner.clock.now_nanos();
        let result = f();
        let elapsed = nanos(self.inner.clock.now_nanos().saturating_sub(started));
        let outcome = if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        permit.record(outcome, elapsed);
        result.map_err(CallError::Failed)
    }

    /// Like [`call_sync`](Self::call_sync), with the outcome decided by
    /// `classifier`.
    pub fn call_sync_with<T, E>(
        &self,
        classifier: &Classifier<T, E>,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, CallError<E>> {
        let permit = self.try_acquire().map_err(CallError::NotPermitted)?;
        let started = self.inner.clock.now_nanos();
        let result = f();
        let elapsed = nanos(self.inner.clock.now_nanos().saturating_sub(started));
        permit.record(classifier.classify(&result), elapsed);
        result.map_err(CallError::Failed)
    }

    /// The current state, after applying a transition that is due: half-open
    /// past its maximum wait opens; with automatic transition, open past its
    /// wait becomes half-open.
    pub fn state(&self) -> State {
        self.poll();
        self.current().state()
    }

    /// Applies the transitions that time alone makes due (see
    /// [`state`](Self::state)), without making a call. Drive it from a timer
    /// to have the open-to-half-open transition happen on time without
    /// traffic when `automatic_transition_to_half_open` is set.
    pub fn poll(&self) {
        let inner = &*self.inner;
        for _ in 0..MAX_RETRIES {
            let word = self.current();
            let moved = match word.state() {
                State::Open if inner.settings.automatic => {
                    inner.clock.now_nanos() >= inner.open_until.load(Ordering::Acquire)
                        && self
                            .transition(Some(word), State::HalfOpen, TransitionReason::WaitElapsed)
                            .is_some()
                }
                State::HalfOpen if self.half_open_timed_out() => self
                    .transition(Some(word), State::Open, TransitionReason::HalfOpenTimeout)
                    .is_some(),
                _ => false,
            };
            if !moved {
                return;
            }
        }
    }

    /// How long until the open state's wait is over; `None` when the breaker
    /// is not open. Useful to schedule [`poll`](Self::poll).
    pub fn remaining_wait(&self) -> Option<Duration> {
        let word = self.current();
        (word.state() == State::Open).then(|| {
            let until = self.inner.open_until.load(Ordering::Acquire);
            nanos(until.saturating_sub(self.inner.clock.now_nanos()))
        })
    }

    /// The slow-call threshold now: a recorded call that took longer is
    /// slow. Fixed, or learned (see
    /// [`AdaptiveSlowCall`](crate::AdaptiveSlowCall)): then
    /// `slow_call_duration_threshold` until the first estimate.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stratum_breaker::{AdaptiveSlowCall, Breaker, ManualClock};
    ///
    /// let breaker = Breaker::builder("kv")
    ///     .slow_call_duration_threshold(Duration::from_secs(1))
    ///     .adaptive_slow_call(AdaptiveSlowCall { min_samples: 100, ..Default::default() })
    ///     .clock(ManualClock::new())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(breaker.slow_call_threshold(), Duration::from_secs(1)); // the fallback
    /// for _ in 0..100 {
    ///     breaker.try_acquire().unwrap().success(Duration::from_millis(10));
    /// }
    /// // 3 x the p99 (10 ms, read from a bucket at most 1/8 wide).
    /// let learned = breaker.slow_call_threshold();
    /// assert!(learned >= Duration::from_millis(30) && learned <= Duration::from_millis(34));
    /// ```
    pub fn slow_call_threshold(&self) -> Duration {
        nanos(self.inner.slow.nanos())
    }

    /// The learned baseline (the smoothed p99 of healthy calls) of an
    /// adaptive threshold; `None` when fixed or before the first estimate.
    pub fn slow_call_baseline(&self) -> Option<Duration> {
        self.inner
            .slow
            .baseline()
            .map(|b| Duration::from_nanos(b as u64))
    }

    /// The window's totals and rates, and the state.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        let counts = self.inner.window.counts(self.inner.clock.now_nanos());
        let (failure_rate, slow_call_rate) = rates(counts, self.inner.settings.minimum_calls);
        Snapshot {
            state,
            calls: counts.calls,
            failed_calls: counts.failures,
            slow_calls: counts.slow,
            failure_rate,
            slow_call_rate,
        }
    }

    /// Back to closed with an empty window and the exponential wait restarted.
    pub fn reset(&self) {
        self.transition(None, State::Closed, TransitionReason::Reset);
    }

    /// Every call goes through and nothing is recorded, until another manual
    /// transition or [`reset`](Self::reset).
    pub fn disable(&self) {
        self.transition_to(State::Disabled);
    }

    /// Every call is refused, until another manual transition or
    /// [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.transition_to(State::ForcedOpen);
    }

    /// Every call goes through and is recorded and reported, but the breaker
    /// never trips (a dry run of a new configuration).
    pub fn metrics_only(&self) {
        self.transition_to(State::MetricsOnly);
    }

    /// Moves to `to` now, as that state is entered normally: closed and
    /// metrics-only start with an empty window, open starts a wait (counted
    /// as a trip), half-open starts with every probe slot free.
    pub fn transition_to(&self, to: State) {
        self.transition(None, to, TransitionReason::Manual);
    }

    #[inline]
    fn current(&self) -> Word {
        Word(self.inner.state.load(Ordering::Acquire))
    }

    fn half_open_timed_out(&self) -> bool {
        let inner = &*self.inner;
        let since = inner.half_open_since.load(Ordering::Acquire);
        inner.clock.now_nanos().saturating_sub(since) >= inner.settings.max_half_open_nanos
    }

    #[cold]
    fn refuse(&self, state: State, retry_after: Option<Duration>) -> NotPermitted {
        let telemetry = &self.inner.telemetry;
        telemetry.not_permitted(state, retry_after);
        NotPermitted::new(Arc::clone(telemetry.name()), state, retry_after)
    }

    /// Moves to `to`, if the state word is still `expected` (any word when
    /// `None`). Returns the new word, or `None` when another thread moved
    /// first.
    fn transition(
        &self,
        expected: Option<Word>,
        to: State,
        reason: TransitionReason,
    ) -> Option<Word> {
        let inner = &*self.inner;
        // The lock guards only `Transitions`, which stays consistent at every
        // step, so a poisoned lock's data is still good.
        let mut guard = inner
            .transitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.current();
        if expected.is_some_and(|e| e != current) {
            return None;
        }
        let next = current.next(to);
        let now = inner.clock.now_nanos();
        match to {
            State::Closed | State::MetricsOnly => {
                inner.window.clear(now);
                if to == State::Closed {
                    guard.trips = 0;
                }
            }
            State::Open => {
                inner.slow.discard();
                guard.trips = guard.trips.saturating_add(1);
                let base = inner.config.wait_in_open.base_wait(guard.trips);
                let wait = jittered_nanos(base, inner.config.jitter, &mut guard.rng);
                inner
                    .open_until
                    .store(now.saturating_add(wait), Ordering::Release);
            }
            State::HalfOpen => {
                inner.probes.reset(next.epoch());
                inner.half_open_since.store(now, Ordering::Release);
            }
            State::Disabled | State::ForcedOpen => {}
        }
        // Publishing the word last makes everything above visible to whoever
        // reads it with Acquire.
        inner.state.store(next.0, Ordering::Release);
        inner.telemetry.state(to);
        drop(guard);
        if matches!(to, State::Closed | State::MetricsOnly) {
            inner
                .telemetry
                .rates(Counts::default(), inner.settings.minimum_calls);
        }
        inner.telemetry.transition(current.state(), to, reason);
        Some(next)
    }

    /// Judges the closed-state window after a record changed its totals.
    fn judge_window(&self, word: Word, counts: Counts) {
        let settings = &self.inner.settings;
        if counts.calls < settings.minimum_calls {
            return;
        }
        if let Some(reason) = verdict(settings, counts.calls, counts.failures, counts.slow) {
            self.transition(Some(word), State::Open, reason);
        }
    }
}

/// Why the rates over `calls` call for opening, if they do. Thresholds are
/// inclusive: a rate equal to its threshold opens.
fn verdict(settings: &Settings, calls: u64, failures: u64, slow: u64) -> Option<TransitionReason> {
    let calls = calls as f64;
    if failures as f64 * 100.0 / calls >= settings.failure_rate_threshold {
        Some(TransitionReason::FailureRate)
    } else if slow as f64 * 100.0 / calls >= settings.slow_call_rate_threshold {
        Some(TransitionReason::SlowCallRate)
    } else {
        None
    }
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

impl<C: Clock> CircuitBreaker for Breaker<C> {
    #[inline]
    fn try_acquire(&self) -> Result<Permit<'_, Self>, NotPermitted> {
        Breaker::try_acquire(self)
    }

    #[inline]
    fn record(&self, ticket: Ticket, outcome: Outcome, elapsed: Duration) {
        let inner = &*self.inner;
        let word = Word(ticket.get());
        let state = word.state();
        if state == State::Disabled {
            return;
        }
        let elapsed_nanos = duration_nanos(elapsed);
        // A half-open probe is judged against the configured threshold, not
        // the learned one. The learned threshold is a multiple of the p99 of
        // warm, steady calls; probes are the first calls after the open wait
        // (connections to re-open, a server to re-select), admitted together
        // and so sharing any such delay: five probes that all succeeded in
        // 1.7 s against a learned 640 ms reopened a breaker whose database
        // had recovered (the fleet's stall drill), again and again. A
        // service still slower than the configured threshold reopens it; one
        // slower only than the learned threshold closes it, and the closed
        // state's window (on the learned threshold) opens it again after
        // `minimum_number_of_calls` slow calls.
        let threshold = if state == State::HalfOpen {
            inner.settings.probe_slow_nanos
        } else {
            inner.slow.nanos()
        };
        let slow = elapsed_nanos > threshold;
        inner.telemetry.call(outcome, slow, elapsed);
        match state {
            State::Closed | State::MetricsOnly => {
                // A call admitted before a transition belongs to no window
                // of the new state.
                if outcome == Outcome::Ignored || self.current() != word {
                    return;
                }
                // Only healthy calls of the closed state teach the baseline:
                // a slow one never does, and nothing is learned while the
                // breaker is anything but closed.
                if state == State::Closed
                    && outcome == Outcome::Success
                    && !slow
                    && inner.slow.is_adaptive()
                    && let Some(change) = inner.slow.learn(elapsed_nanos)
                {
                    inner
                        .telemetry
                        .slow_call_threshold(change.nanos, Some(&change));
                }
                let now = if inner.window.needs_time() {
                    inner.clock.now_nanos()
                } else {
                    0
                };
                let code = Code::new(outcome == Outcome::Failure, slow);
                if let Some(counts) = inner.window.record(code, now) {
                    inner.telemetry.rates(counts, inner.settings.minimum_calls);
                    if state == State::Closed {
                        self.judge_window(word, counts);
                    }
                }
            }
            State::HalfOpen => {
                if outcome == Outcome::Ignored {
                    inner.probes.release(word.epoch());
                    return;
                }
                let failure = outcome == Outcome::Failure;
                let Some(probes) = inner.probes.record(word.epoch(), failure, slow) else {
                    return;
                };
                if probes.recorded >= u64::from(inner.settings.permitted) {
                    let verdict = verdict(
                        &inner.settings,
                        probes.recorded,
                        probes.failures,
                        probes.slow,
                    );
                    match verdict {
                        Some(reason) => self.transition(Some(word), State::Open, reason),
                        None => self.transition(
                            Some(word),
                            State::Closed,
                            TransitionReason::ProbesPassed,
                        ),
                    };
                }
            }
            State::Open | State::ForcedOpen | State::Disabled => {}
        }
    }

    fn release(&self, ticket: Ticket) {
        let word = Word(ticket.get());
        if word.state() == State::HalfOpen {
            self.inner.probes.release(word.epoch());
        }
    }
}

//! The one time source every layer reads: the [`Clock`] trait, the exact
//! [`SystemClock`], the [`CoarseClock`] (one 1 ms ticker thread per process)
//! and the [`ManualClock`] tests move by hand.
//!
//! Every reading is nanoseconds since one process-wide origin ([`origin`]),
//! so readings from different clocks of the same kind, different layers and
//! different threads compare directly, and a layer that wants an [`Instant`]
//! gets one with [`Clock::instant`].
//!
//! Why a coarse clock, and not a faster exact one: on this project's virtual
//! machines an [`Instant::now`] costs about 33 ns, `quanta`'s raw TSC read
//! about 11 ns plus a scaling step (16 ns for a delta), and a relaxed atomic
//! load under 1 ns. A timed breaker call reads the clock twice, so only the
//! atomic load keeps it well under half the cost of the `failsafe` crate's
//! call (see `docs/breaker.md`); `quanta` would also bring a calibration
//! that trusts the TSC, which migrating virtual machines do not always keep.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

/// A monotonic source of time: nanoseconds since the process-wide
/// [`origin`].
///
/// Layers take any `Clock`, so a test drives every timing decision (expiry,
/// waits, call durations, windows) with a [`ManualClock`] instead of
/// sleeping. Implementations must be cheap: the cache and the pool read the
/// clock on every operation.
///
/// ```
/// use std::time::Duration;
/// use stratum_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let before = clock.now();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now() - before, Duration::from_millis(5));
/// assert_eq!(clock.now_nanos(), 5_000_000);
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Nanoseconds since [`origin`]; never decreases.
    fn now_nanos(&self) -> u64;

    /// [`now_nanos`](Clock::now_nanos) as a [`Duration`].
    #[inline]
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }

    /// The reading as an [`Instant`]: [`origin`] plus
    /// [`now_nanos`](Clock::now_nanos). Only differences between instants
    /// of the same clock mean anything (a [`ManualClock`] starts at the
    /// origin, not at the real now).
    #[inline]
    fn instant(&self) -> Instant {
        instant_at(self.now_nanos())
    }
}

/// A shared, type-erased clock: what a layer keeps when it takes any
/// [`Clock`], and what the wiring crate hands every layer of a stack.
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}

/// The instant every reading counts from: fixed the first time any clock
/// (or this function) is read in the process.
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// [`origin`] plus `nanos`, saturating at the latest instant the platform
/// can represent (on Linux every `u64` fits: 584 years).
fn instant_at(nanos: u64) -> Instant {
    let origin = origin();
    let mut by = Duration::from_nanos(nanos);
    loop {
        if let Some(at) = origin.checked_add(by) {
            return at;
        }
        // Only past the platform's range: come back towards it.
        by /= 2;
    }
}

/// `d` in whole nanoseconds, saturating at `u64::MAX` (584 years): the unit
/// every reading and every threshold compared with one is kept in.
///
/// ```
/// use std::time::Duration;
/// use stratum_core::clock::duration_nanos;
///
/// assert_eq!(duration_nanos(Duration::from_micros(3)), 3_000);
/// assert_eq!(duration_nanos(Duration::MAX), u64::MAX);
/// ```
#[inline]
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The exact reading: nanoseconds from [`origin`] to [`Instant::now`].
#[inline]
fn exact_nanos() -> u64 {
    duration_nanos(origin().elapsed())
}

/// The exact clock: [`Instant::now`], nanosecond resolution, one clock read
/// (about 33 ns on this project's virtual machines) per reading.
///
/// For latencies that must resolve below a millisecond (the monitor's
/// percentiles); the layers' hot paths default to [`CoarseClock`].
///
/// ```
/// use stratum_core::clock::{Clock, SystemClock};
///
/// let clock = SystemClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock (a unit value: every `SystemClock` reads the same
    /// time).
    pub const fn new() -> SystemClock {
        SystemClock
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        exact_nanos()
    }
}

/// How often the coarse clock's ticker thread advances it.
const COARSE_TICK: Duration = Duration::from_millis(1);
const COARSE_TICK_NANOS: u64 = 1_000_000;

/// The name of the one ticker thread (`/proc/self/task/*/comm` on Linux).
pub const COARSE_THREAD_NAME: &str = "stratum-clock";

/// The coarse reading: the ticker's last look at real time plus one tick,
/// in nanoseconds since [`origin`] (the tick is added by the ticker, once a
/// tick, not by every reader); 0 while no ticker runs (never started, or it
/// could not be spawned): readers then read [`Instant`] instead of standing
/// still. One load tells both the time and whether the ticker runs.
/// On a cache line of its own: the ticker writes it every tick, and every
/// cache lookup and pool checkout on every core reads it, so no other
/// value should share the line the write invalidates.
static COARSE_NOW: OwnLine = OwnLine(AtomicU64::new(0));
static COARSE_START: Once = Once::new();

/// A value alone on its cache line (128 bytes: adjacent-line prefetch pairs
/// 64-byte lines on x86).
#[repr(align(128))]
struct OwnLine(AtomicU64);

/// The default clock of the breaker, the pool, the cache and the wiring
/// crate: a reading is one relaxed atomic load instead of a clock read.
///
/// One background thread per process (named [`COARSE_THREAD_NAME`],
/// started by the first [`CoarseClock::new`], shared by every layer and
/// every instance) reads [`Instant`] every millisecond and publishes it.
/// A reading is that value plus one tick ([`CoarseClock::RESOLUTION`]), so
/// it is never behind the ticker's last look at real time and at most one
/// tick ahead of it: a TTL expires up to 1 ms early rather than late, and
/// the difference of two readings (a call's duration) is right to within
/// one tick. If the ticker is starved for longer than a tick (a saturated
/// machine), readings lag real time by the starvation. If the thread
/// cannot be spawned, the clock reads [`Instant`] (exact, slower).
///
/// What the layers time with it is far coarser than a millisecond:
/// slow-call thresholds and open waits (seconds), TTLs, idle timeouts and
/// lifetimes (seconds to minutes). Durations shorter than a tick read as 0
/// or 1 ms; use [`SystemClock`] where that matters.
///
/// ```
/// use stratum_core::clock::{Clock, CoarseClock};
///
/// let clock = CoarseClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CoarseClock {
    /// Made only by [`CoarseClock::new`], which starts the ticker.
    _started: (),
}

impl CoarseClock {
    /// The resolution of a reading: the ticker's period.
    pub const RESOLUTION: Duration = COARSE_TICK;

    /// The shared coarse clock; the first call in the process starts the
    /// ticker thread.
    pub fn new() -> CoarseClock {
        COARSE_START.call_once(|| {
            // Published before the thread exists, so every reading after
            // `new` returns is a coarse one and none goes back from an
            // exact one to the tick before it.
            COARSE_NOW.0.store(ticked_reading(), Ordering::Relaxed);
            let ticker = std::thread::Builder::new()
                .name(COARSE_THREAD_NAME.into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(COARSE_TICK);
                        COARSE_NOW.0.store(ticked_reading(), Ordering::Relaxed);
                    }
                });
            if let Err(error) = ticker {
                COARSE_NOW.0.store(0, Ordering::Relaxed);
                tracing::warn!(%error, "no coarse clock thread; reading Instant instead");
            }
        });
        CoarseClock { _started: () }
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        CoarseClock::new()
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        coarse_nanos()
    }
}

/// [`CoarseClock`]'s reading without a clock value or a virtual call, for
/// hot paths that keep "the default clock" as a flag (the cache, the pool).
/// Exact ([`Instant`]) until some [`CoarseClock::new`] has started the
/// ticker.
#[inline]
pub fn coarse_nanos() -> u64 {
    match COARSE_NOW.0.load(Ordering::Relaxed) {
        0 => exact_nanos(),
        t => t,
    }
}

/// What the ticker publishes: real time plus one tick (never 0, which
/// means "no ticker").
fn ticked_reading() -> u64 {
    exact_nanos().saturating_add(COARSE_TICK_NANOS)
}

/// A clock that only moves when told to; clones share the same time. It
/// starts at zero (the [`origin`]).
///
/// Arithmetic saturates: advancing past `u64::MAX` nanoseconds (584 years)
/// stays there.
///
/// ```
/// use std::time::Duration;
/// use stratum_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let hand = clock.clone();
/// hand.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Duration::from_secs(2));
/// clock.set(Duration::from_secs(10));
/// assert_eq!(hand.now_nanos(), 10_000_000_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward by `by`, saturating at `u64::MAX`
    /// nanoseconds.
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        // `fetch_update` cannot fail with a closure that always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock to `to` since the origin (saturating). Setting it
    /// backwards breaks the monotonic promise of [`Clock`]; the layers
    /// tolerate it (they subtract with saturation), but tests should not
    /// rely on it.
    pub fn set(&self, to: Duration) {
        self.nanos.store(duration_nanos(to), Ordering::Release);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Set(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Large steps as well as small ones, so saturation is reached.
        let nanos = prop_oneof![0..1_000_000_000u64, (u64::MAX / 4)..=u64::MAX];
        prop_oneof![
            3 => nanos.clone().prop_map(Op::Advance),
            1 => nanos.prop_map(Op::Set),
        ]
    }

    proptest! {
        /// The manual clock matches a model that adds in `u128` and clamps:
        /// it saturates instead of wrapping, clones share one time, and
        /// `now`, `now_nanos` and `instant` agree.
        #[test]
        fn manual_clock_matches_a_saturating_model(ops in prop::collection::vec(op(), 1..40)) {
            let clock = ManualClock::new();
            let hand = clock.clone();
            let mut model: u128 = 0;
            for op in ops {
                match op {
                    Op::Advance(n) => {
                        hand.advance(Duration::from_nanos(n));
                        model = (model + u128::from(n)).min(u128::from(u64::MAX));
                    }
                    Op::Set(n) => {
                        hand.set(Duration::from_nanos(n));
                        model = u128::from(n);
                    }
                }
                prop_assert_eq!(u128::from(clock.now_nanos()), model);
                prop_assert_eq!(clock.now().as_nanos(), model);
                prop_assert_eq!(clock.instant().duration_since(origin()).as_nanos(), model);
            }
        }
    }

    #[test]
    fn manual_clock_saturates_instead_of_wrapping() {
        let clock = ManualClock::new();
        clock.set(Duration::from_nanos(u64::MAX - 1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_nanos(), u64::MAX);
        clock.set(Duration::MAX);
        assert_eq!(clock.now_nanos(), u64::MAX);
    }

    #[test]
    fn an_arc_reads_the_clock_it_holds() {
        let clock = ManualClock::new();
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        clock.advance(Duration::from_millis(7));
        assert_eq!(shared.now(), Duration::from_millis(7));
    }

    #[test]
    fn the_system_clock_counts_from_the_origin() {
        let before = origin().elapsed();
        let reading = SystemClock::new().now();
        let after = origin().elapsed();
        assert!(
            before <= reading && reading <= after,
            "{before:?} {reading:?} {after:?}"
        );
        // Its instants are real instants.
        let real = Instant::now();
        assert!(SystemClock.instant() >= real);
    }

    /// Coarse readings never go back, and each lies between the exact
    /// reading before it (less what the ticker may lag, bounded here by
    /// the exact time the ticker has been asleep) and one tick after the
    /// exact reading after it.
    #[test]
    fn the_coarse_clock_is_monotonic_and_within_a_tick_of_instant() {
        let clock = CoarseClock::new();
        let mut last = 0;
        let mut within = 0usize;
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            let before = exact_nanos();
            let reading = clock.now_nanos();
            let after = exact_nanos();
            assert!(reading >= last, "went back: {last} then {reading}");
            assert!(
                reading <= after + COARSE_TICK_NANOS,
                "{reading} is more than a tick past {after}"
            );
            // Behind only by how long the ticker slept or was starved;
            // on a loaded machine that can exceed a tick, so count it.
            if reading + COARSE_TICK_NANOS >= before {
                within += 1;
            }
            last = reading;
        }
        assert!(within > 0, "never within a tick of Instant");
        // It moves: after 20 ms of sleep, at least 10 ms more.
        let start = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.now() - start >= Duration::from_millis(10));
    }

    /// Any number of coarse clocks, from any number of threads, share one
    /// ticker thread.
    #[test]
    #[cfg(target_os = "linux")]
    fn coarse_clocks_share_one_ticker_thread() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        let _ = CoarseClock::new();
                    }
                });
            }
        });
        // A spawned thread names itself once it first runs, which on a
        // loaded machine can be after `spawn` returned: wait for the name
        // (CI saw 0 once), then give any second ticker the same time.
        let waiting = std::time::Instant::now();
        while ticker_threads() == 0 && waiting.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticker_threads(), 1);
    }

    /// Threads of this process named like the ticker.
    #[cfg(target_os = "linux")]
    fn ticker_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
            .filter(|name| name.trim_end() == COARSE_THREAD_NAME)
            .count()
    }
}

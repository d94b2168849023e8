//! The injectable time source behind every expiry decision.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic time source.
///
/// The cache never reads the wall clock directly: every TTL, TTI, refresh and
/// staleness decision goes through a `Clock`, so tests drive time with a
/// [`ManualClock`] instead of sleeping.
///
/// ```
/// use stratum_cache::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// ```
pub trait Clock: Send + Sync + Debug + 'static {
    /// Time elapsed since an arbitrary, fixed origin. Never goes backwards.
    fn now(&self) -> Duration;

    /// [`Clock::now`] in whole nanoseconds (saturating). Override it when
    /// the clock has nanoseconds at hand: the cache calls it on every read.
    fn now_nanos(&self) -> u64 {
        ticks(self.now())
    }
}

/// The exact clock: [`Instant`] measured from the clock's creation. Costs
/// one clock read per cache operation; the default is [`CoarseClock`].
///
/// ```
/// use stratum_cache::{CacheBuilder, SystemClock};
///
/// let cache = CacheBuilder::<u32, u32>::new(10).clock(SystemClock::new()).build().unwrap();
/// # let _ = cache;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// How often the coarse clock's ticker thread advances it.
const COARSE_TICK: Duration = Duration::from_millis(1);
const COARSE_TICK_NANOS: u64 = 1_000_000;

/// The process-wide coarse time, in ns since `COARSE_ORIGIN`, kept by one
/// ticker thread that every [`CoarseClock`] shares. 0 until the first tick
/// (and forever if the thread could not start): the clock then reads
/// `Instant` directly (exact, slower) instead of standing still. One load
/// tells both the time and whether the thread runs.
static COARSE_NOW: AtomicU64 = AtomicU64::new(0);
static COARSE_START: std::sync::Once = std::sync::Once::new();
static COARSE_ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// The default clock: a relaxed atomic load (about 1 ns) instead of a
/// clock read (80 ns on this project's virtual machines), which keeps
/// expiry checks off the read path's cost.
///
/// One background thread (`stratum-cache-clock`, shared by every cache in
/// the process, started on first use) advances it every millisecond.
/// Readings are rounded *up* by one tick, so an entry expires up to 1 ms
/// early rather than late. If that thread is starved for longer than a tick
/// (a saturated machine), the clock lags by the starvation time; use
/// [`SystemClock`] when expiry must be exact to the nanosecond.
///
/// ```
/// use stratum_cache::{Clock, CoarseClock};
///
/// let clock = CoarseClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CoarseClock {
    _started: (),
}

impl CoarseClock {
    /// The shared coarse clock (starts the ticker thread on first use).
    pub fn new() -> Self {
        COARSE_START.call_once(|| {
            let origin = *COARSE_ORIGIN.get_or_init(Instant::now);
            let ticker = std::thread::Builder::new()
                .name("stratum-cache-clock".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(COARSE_TICK);
                        // At least 1: 0 means "not ticking".
                        let now = ticks(origin.elapsed()).max(1);
                        COARSE_NOW.store(now, Ordering::Relaxed);
                    }
                });
            if let Err(e) = ticker {
                tracing::warn!(error = %e, "no coarse clock thread; reading Instant instead");
            }
        });
        Self { _started: () }
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        coarse_now_nanos()
    }

    #[inline]
    fn now(&self) -> Duration {
        Duration::from_nanos(coarse_now_nanos())
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use stratum_cache::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let view = clock.clone();
/// clock.advance(Duration::from_millis(10));
/// assert_eq!(view.now(), Duration::from_millis(10));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let add = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(add, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// Converts a clock reading to the nanosecond tick stored in entries.
pub(crate) fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// [`CoarseClock`]'s reading, callable without a `dyn Clock` (the cache's
/// default clock is read this way on every lookup): one relaxed load.
/// Before the first tick it is exact, and every later coarse reading is at
/// least as large (a tick's time plus one tick), so it never goes back.
#[inline]
pub(crate) fn coarse_now_nanos() -> u64 {
    match COARSE_NOW.load(Ordering::Relaxed) {
        0 => ticks(COARSE_ORIGIN.get_or_init(Instant::now).elapsed()),
        t => t.saturating_add(COARSE_TICK_NANOS),
    }
}

//! The injectable clock: every timing decision (idle and lifetime reaping,
//! the health-check skip window, leak detection, adaptive sizing) reads time
//! through [`Clock`], so tests move time forward instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A source of monotonic time.
///
/// The pool asks it for "now" on every checkout and return, so an
/// implementation must be cheap and must never go backwards.
///
/// ```
/// use stratum_pool::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - before, Duration::from_secs(5));
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The exact monotonic clock, [`Instant::now`]: nanosecond resolution, one
/// clock read per call (the default is [`CoarseClock`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How often the coarse clock's ticker thread advances it.
const COARSE_TICK: Duration = Duration::from_millis(1);

/// The origin of the coarse time, fixed on first use.
static COARSE_ORIGIN: OnceLock<Instant> = OnceLock::new();
/// Nanoseconds from `COARSE_ORIGIN` to the ticker's last reading.
static COARSE_NANOS: AtomicU64 = AtomicU64::new(0);
static COARSE_START: Once = Once::new();
/// False if the ticker thread could not be started: the clock then reads
/// [`Instant::now`] (exact, slower) rather than standing still.
static COARSE_TICKING: AtomicBool = AtomicBool::new(false);

/// The default clock: a relaxed atomic load and an addition instead of an
/// [`Instant::now`] call (about 67 ns on this project's virtual machines,
/// which the pool would otherwise pay on every checkout and return).
///
/// One background thread (`stratum-pool-clock`, shared by every pool in the
/// process, started on first use) reads [`Instant::now`] every millisecond
/// and publishes it. A reading therefore lags real time by up to one tick
/// (more if that thread is starved on a saturated machine), which is ample
/// for what the pool times with it: the health-check skip window (500 ms),
/// idle timeouts and lifetimes (minutes), leak detection (seconds) and the
/// acquire-latency histogram, whose resolution becomes one tick (a wait
/// shorter than a millisecond is usually recorded as 0). Use
/// [`SystemClock`] for nanosecond resolution at the cost of the clock reads.
///
/// ```
/// use stratum_pool::{Clock, CoarseClock};
///
/// let clock = CoarseClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CoarseClock {
    origin: Instant,
}

impl CoarseClock {
    /// The shared coarse clock (starts the ticker thread on first use).
    pub fn new() -> CoarseClock {
        let origin = *COARSE_ORIGIN.get_or_init(Instant::now);
        COARSE_START.call_once(|| {
            let ticker = std::thread::Builder::new()
                .name("stratum-pool-clock".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(COARSE_TICK);
                        let nanos = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        COARSE_NANOS.store(nanos, Ordering::Relaxed);
                    }
                });
            match ticker {
                Ok(_) => COARSE_TICKING.store(true, Ordering::Release),
                Err(error) => {
                    tracing::warn!(%error, "no coarse clock thread; the pool reads Instant instead");
                }
            }
        });
        CoarseClock { origin }
    }
}

impl CoarseClock {
    /// The instant coarse readings count from.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }
}

/// The coarse clock's reading as nanoseconds from [`CoarseClock::origin`],
/// without building an `Instant`; `None` if its ticker is not running.
#[inline]
pub(crate) fn coarse_nanos() -> Option<u64> {
    COARSE_TICKING
        .load(Ordering::Relaxed)
        .then(|| COARSE_NANOS.load(Ordering::Relaxed))
}

impl Default for CoarseClock {
    fn default() -> Self {
        CoarseClock::new()
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now(&self) -> Instant {
        if COARSE_TICKING.load(Ordering::Relaxed) {
            self.origin + Duration::from_nanos(COARSE_NANOS.load(Ordering::Relaxed))
        } else {
            Instant::now()
        }
    }
}

/// A clock that only moves when told to: for tests and simulations.
///
/// Clones share the same time.
///
/// ```
/// use stratum_pool::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(shared.now(), clock.now());
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Instant>>,
}

impl ManualClock {
    /// A clock stopped at the current real instant.
    pub fn new() -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock();
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &*self.now.lock())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock()
    }
}

/// A shared, type-erased clock, as the pool stores it.
pub(crate) type SharedClock = Arc<dyn Clock>;

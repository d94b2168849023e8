//! [`BreakerBuilder`]: a configuration plus what cannot be plain data (the
//! clock and the event subscribers).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{AdaptiveSlowCall, BreakerConfig, OpenWait, SlidingWindow};
use crate::event::{Event, Subscriber};
use crate::{Breaker, Clock, CoarseClock, ConfigError};

/// Builds a [`Breaker`]; every setter mirrors a field of [`BreakerConfig`],
/// and [`build`](Self::build) validates the whole.
///
/// ```
/// use std::time::Duration;
/// use stratum_breaker::{Breaker, ManualClock};
///
/// let breaker = Breaker::builder("mongodb")
///     .time_based_window(Duration::from_secs(30))
///     .minimum_number_of_calls(20)
///     .failure_rate_threshold(40.0)
///     .slow_call_rate_threshold(60.0)
///     .slow_call_duration_threshold(Duration::from_millis(200))
///     .exponential_wait_in_open(Duration::from_secs(1), 2.0, Duration::from_secs(60))
///     .permitted_calls_in_half_open(5)
///     .clock(ManualClock::new())
///     .build()
///     .unwrap();
/// assert_eq!(breaker.config().minimum_number_of_calls, 20);
///
/// let refused = Breaker::builder("mongodb").count_based_window(0).build().unwrap_err();
/// assert_eq!(refused.field(), "sliding_window.size");
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct BreakerBuilder<C = CoarseClock> {
    config: BreakerConfig,
    clock: C,
    subscribers: Vec<Subscriber>,
}

impl<C> std::fmt::Debug for BreakerBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("config", &self.config)
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl BreakerBuilder<CoarseClock> {
    pub(crate) fn new(name: String) -> Self {
        Self {
            config: BreakerConfig {
                name,
                ..BreakerConfig::default()
            },
            clock: CoarseClock::new(),
            subscribers: Vec::new(),
        }
    }
}

impl<C: Clock> BreakerBuilder<C> {
    /// Replaces the whole configuration, name included (say, one read from a
    /// file); later setters still apply on top.
    pub fn config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`BreakerConfig::failure_rate_threshold`].
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate_threshold = percent;
        self
    }

    /// See [`BreakerConfig::slow_call_rate_threshold`].
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.config.slow_call_rate_threshold = percent;
        self
    }

    /// See [`BreakerConfig::slow_call_duration_threshold`].
    pub fn slow_call_duration_threshold(mut self, threshold: Duration) -> Self {
        self.config.slow_call_duration_threshold = threshold;
        self
    }

    /// See [`BreakerConfig::adaptive_slow_call`]; disable it with
    /// `AdaptiveSlowCall { enabled: false, ..Default::default() }` for a
    /// fixed threshold.
    pub fn adaptive_slow_call(mut self, adaptive: AdaptiveSlowCall) -> Self {
        self.config.adaptive_slow_call = adaptive;
        self
    }

    /// A window of the last `size` calls (see [`SlidingWindow::CountBased`]).
    pub fn count_based_window(mut self, size: u32) -> Self {
        self.config.sliding_window = SlidingWindow::CountBased { size };
        self
    }

    /// A window of the calls of the last `duration`, in one-second buckets
    /// (see [`SlidingWindow::TimeBased`]).
    pub fn time_based_window(mut self, duration: Duration) -> Self {
        self.config.sliding_window = SlidingWindow::TimeBased { duration };
        self
    }

    /// See [`BreakerConfig::minimum_number_of_calls`].
    pub fn minimum_number_of_calls(mut self, calls: u32) -> Self {
        self.config.minimum_number_of_calls = calls;
        self
    }

    /// See [`BreakerConfig::permitted_calls_in_half_open`].
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.config.permitted_calls_in_half_open = calls;
        self
    }

    /// The same wait every time the breaker opens ([`OpenWait::Constant`]).
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.config.wait_in_open = OpenWait::Constant { wait };
        self
    }

    /// A wait that grows with each consecutive opening, capped
    /// ([`OpenWait::Exponential`]).
    pub fn exponential_wait_in_open(
        mut self,
        initial: Duration,
        multiplier: f64,
        max: Duration,
    ) -> Self {
        self.config.wait_in_open = OpenWait::Exponential {
            initial,
            multiplier,
            max,
        };
        self
    }

    /// See [`BreakerConfig::jitter`].
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// See [`BreakerConfig::jitter_seed`].
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.config.jitter_seed = Some(seed);
        self
    }

    /// See [`BreakerConfig::automatic_transition_to_half_open`].
    pub fn automatic_transition_to_half_open(mut self, automatic: bool) -> Self {
        self.config.automatic_transition_to_half_open = automatic;
        self
    }

    /// See [`BreakerConfig::max_wait_in_half_open`].
    pub fn max_wait_in_half_open(mut self, max: Duration) -> Self {
        self.config.max_wait_in_half_open = max;
        self
    }

    /// Reads time from `clock` instead of the default
    /// [`CoarseClock`](crate::CoarseClock) (1 ms resolution): a
    /// [`SystemClock`](crate::SystemClock) for slow-call thresholds of a few
    /// milliseconds, a [`ManualClock`](crate::ManualClock) in tests.
    pub fn clock<C2: Clock>(self, clock: C2) -> BreakerBuilder<C2> {
        BreakerBuilder {
            config: self.config,
            clock,
            subscribers: self.subscribers,
        }
    }

    /// Calls `subscriber` with every [`Event`], synchronously on the thread
    /// where it happens. Several subscribers may be added.
    pub fn on_event(mut self, subscriber: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.subscribers.push(Arc::new(subscriber));
        self
    }

    /// The breaker, or the first invalid field.
    ///
    /// Metric handles are registered here, with the `metrics` recorder
    /// installed at this moment: install the recorder first.
    pub fn build(self) -> Result<Breaker<C>, ConfigError> {
        Breaker::with_parts(self.config, self.clock, self.subscribers)
    }
}

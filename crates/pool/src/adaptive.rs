//! Adaptive sizing: a pure decision rule that moves the pool's limit between
//! `min_size` and `max_size`, fed by what one maintenance interval saw.
//!
//! The rule, evaluated once per maintenance pass:
//! - **Pressure** is tasks waiting for an object, or more than a tenth of the
//!   interval's acquires slower than `target_acquire_latency`. Under pressure
//!   the limit grows by the number of waiters (at least 1, at least a quarter
//!   of the limit, at most doubling), no sooner than `cooldown` after the
//!   previous growth.
//! - **Calm** is nobody waiting, acquires fast, and idle objects. Once the pool
//!   has been calm for `shrink_after`, the limit shrinks by half the idle
//!   objects (at least 1), and the calm window starts again.
//! - Anything else (every object busy, nobody waiting) holds.
//!
//! The result is always within `[max(min, 1), max]`. Time comes in as an argument, so
//! the rule is tested without a clock at all.
//!
//! ```
//! use stratum_pool::adaptive::{decide, ControllerState, Decision, Observation, Sizing};
//! use std::time::{Duration, Instant};
//!
//! let sizing = Sizing { min: 10, max: 200, target_acquire_latency: Duration::from_millis(10),
//!                       shrink_after: Duration::from_secs(30), cooldown: Duration::from_secs(1) };
//! let mut state = ControllerState::default();
//! let busy = Observation { limit: 10, size: 10, idle: 0, waiting: 6, acquires: 50, slow_acquires: 0 };
//! assert_eq!(decide(&sizing, &mut state, &busy, Instant::now()), Decision::Grow { to: 16 });
//! ```

use std::time::{Duration, Instant};

/// The bounds and tuning of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// The floor of the limit.
    pub min: usize,
    /// The ceiling of the limit.
    pub max: usize,
    /// Acquires slower than this count as slow.
    pub target_acquire_latency: Duration,
    /// How long the pool must stay calm before shrinking.
    pub shrink_after: Duration,
    /// The minimum time between two resizes in the same direction.
    pub cooldown: Duration,
}

/// What one maintenance interval saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// The current limit.
    pub limit: usize,
    /// Live objects.
    pub size: usize,
    /// Idle objects.
    pub idle: usize,
    /// Tasks waiting for an object.
    pub waiting: usize,
    /// Successful acquires during the interval.
    pub acquires: u64,
    /// Of those, how many took longer than the target latency.
    pub slow_acquires: u64,
}

/// What the controller remembers between passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ControllerState {
    /// When the limit last grew.
    pub last_grow: Option<Instant>,
    /// When the limit last shrank.
    pub last_shrink: Option<Instant>,
    /// Since when the pool has been calm, if it is.
    pub calm_since: Option<Instant>,
}

/// The controller's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep the limit.
    Hold,
    /// Raise the limit to `to`.
    Grow {
        /// The new limit.
        to: usize,
    },
    /// Lower the limit to `to`.
    Shrink {
        /// The new limit.
        to: usize,
    },
}

fn cooled(last: Option<Instant>, now: Instant, cooldown: Duration) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= cooldown)
}

/// Decides the next limit and updates `state`. Pure apart from `state`.
pub fn decide(
    sizing: &Sizing,
    state: &mut ControllerState,
    obs: &Observation,
    now: Instant,
) -> Decision {
    // A limit of zero would stall every `get` until the next pass.
    let (min, max) = (sizing.min.max(1).min(sizing.max), sizing.max);
    let limit = obs.limit.clamp(min, max);
    // More than a tenth of acquires slow: the p90 is above target.
    let slow = obs.slow_acquires.saturating_mul(10) > obs.acquires && obs.slow_acquires > 0;
    let pressure = obs.waiting > 0 || slow;
    if pressure {
        state.calm_since = None;
        if limit >= max || !cooled(state.last_grow, now, sizing.cooldown) {
            return clamp_only(obs.limit, limit);
        }
        let step = obs.waiting.max(limit / 4).max(1).min(limit.max(1));
        let to = limit.saturating_add(step).min(max);
        state.last_grow = Some(now);
        return Decision::Grow { to };
    }
    if obs.idle == 0 {
        state.calm_since = None;
        return clamp_only(obs.limit, limit);
    }
    let since = *state.calm_since.get_or_insert(now);
    if now.saturating_duration_since(since) < sizing.shrink_after
        || limit <= min
        || !cooled(state.last_shrink, now, sizing.cooldown)
    {
        return clamp_only(obs.limit, limit);
    }
    let to = limit.saturating_sub((obs.idle / 2).max(1)).max(min);
    state.last_shrink = Some(now);
    state.calm_since = Some(now);
    Decision::Shrink { to }
}

/// A limit found outside the bounds is brought back inside them.
fn clamp_only(observed: usize, clamped: usize) -> Decision {
    if clamped > observed {
        Decision::Grow { to: clamped }
    } else if clamped < observed {
        Decision::Shrink { to: clamped }
    } else {
        Decision::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sizing(min: usize, max: usize) -> Sizing {
        Sizing {
            min,
            max,
            target_acquire_latency: Duration::from_millis(10),
            shrink_after: Duration::from_secs(30),
            cooldown: Duration::from_secs(1),
        }
    }

    #[test]
    fn calm_pool_shrinks_only_after_the_calm_window() {
        let s = sizing(2, 20);
        let mut state = ControllerState::default();
        let t0 = Instant::now();
        let calm = Observation {
            limit: 20,
            size: 20,
            idle: 10,
            ..Observation::default()
        };
        assert_eq!(decide(&s, &mut state, &calm, t0), Decision::Hold);
        assert_eq!(
            decide(&s, &mut state, &calm, t0 + Duration::from_secs(29)),
            Decision::Hold
        );
        assert_eq!(
            decide(&s, &mut state, &calm, t0 + Duration::from_secs(30)),
            Decision::Shrink { to: 15 }
        );
        // The calm window restarts after a shrink.
        let calm = Observation { limit: 15, ..calm };
        assert_eq!(
            decide(&s, &mut state, &calm, t0 + Duration::from_secs(31)),
            Decision::Hold
        );
    }

    #[test]
    fn slow_acquires_grow_without_waiters() {
        let s = sizing(4, 64);
        let mut state = ControllerState::default();
        let slow = Observation {
            limit: 8,
            size: 8,
            acquires: 100,
            slow_acquires: 11,
            ..Observation::default()
        };
        assert_eq!(
            decide(&s, &mut state, &slow, Instant::now()),
            Decision::Grow { to: 10 }
        );
        let fine = Observation {
            slow_acquires: 10,
            ..slow
        };
        let mut state = ControllerState::default();
        assert_eq!(
            decide(&s, &mut state, &fine, Instant::now()),
            Decision::Hold
        );
    }

    #[test]
    fn growth_waits_for_the_cooldown() {
        let s = sizing(1, 100);
        let mut state = ControllerState::default();
        let t0 = Instant::now();
        let busy = Observation {
            limit: 4,
            size: 4,
            waiting: 2,
            ..Observation::default()
        };
        assert_eq!(decide(&s, &mut state, &busy, t0), Decision::Grow { to: 6 });
        let busy = Observation { limit: 6, ..busy };
        assert_eq!(
            decide(&s, &mut state, &busy, t0 + Duration::from_millis(500)),
            Decision::Hold
        );
        assert_eq!(
            decide(&s, &mut state, &busy, t0 + Duration::from_secs(1)),
            Decision::Grow { to: 8 }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever it sees, the controller never leaves [min, max], grows only
        /// under pressure and shrinks only when idle objects exist.
        #[test]
        fn decisions_stay_in_bounds(
            min in 0usize..50, span in 1usize..200,
            steps in proptest::collection::vec(
                (0usize..400, 0usize..400, 0usize..100, 0u64..100, 0u64..100, 0u64..5_000), 1..40),
        ) {
            let s = sizing(min, min + span);
            let mut state = ControllerState::default();
            let mut now = Instant::now();
            let mut limit = s.min.max(1);
            for (size, idle, waiting, acquires, slow, advance_ms) in steps {
                now += Duration::from_millis(advance_ms);
                let obs = Observation {
                    limit, size, idle: idle.min(size), waiting,
                    acquires, slow_acquires: slow.min(acquires),
                };
                let decision = decide(&s, &mut state, &obs, now);
                match decision {
                    Decision::Hold => {}
                    Decision::Grow { to } => {
                        prop_assert!(to > limit && to <= s.max);
                        prop_assert!(waiting > 0 || obs.slow_acquires > 0 || limit < s.min);
                        limit = to;
                    }
                    Decision::Shrink { to } => {
                        prop_assert!(to < limit && to >= s.min);
                        prop_assert!(waiting == 0 && (obs.idle > 0 || limit > s.max));
                        limit = to;
                    }
                }
                prop_assert!(limit >= s.min.max(1).min(s.max) && limit <= s.max);
            }
        }
    }
}

//! Per-operation metric handles, registered once: a counter of outcomes and
//! a duration histogram for each of a fixed set of operations, under one
//! scope label (`collection` for a repository, `backend` for a store).
//!
//! Registering through `metrics::counter!` on every call builds a key (a
//! label vector and its hash) and, with a recorder installed, looks it up
//! in the recorder's registry; a handle made once skips both. The handles
//! bind to the recorder that is current when they are made: the one of the
//! [`MetricsScope`] entered on the thread (a `Stratum` handle builds every
//! layer inside its monitor's scope), else the process-wide one. Errors,
//! rare by design, are counted through the macro, as their kinds are many,
//! inside the scope captured when the handles were made, so they land in
//! the same recorder as the handles whatever is installed globally.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram, Recorder};

thread_local! {
    /// The scope entered on this thread, for [`MetricsScope::current`].
    static CURRENT: RefCell<Option<Arc<dyn Recorder + Send + Sync>>> = const { RefCell::new(None) };
}

/// A `metrics` recorder to record into, or the process-wide one.
///
/// `metrics::with_local_recorder` routes the macros of one synchronous call
/// to a recorder; a scope also remembers it, so code that registers handles
/// inside [`MetricsScope::enter`] can capture the scope
/// ([`MetricsScope::current`]) and later record its rare, dynamically
/// labelled series into the same recorder, from any thread or task.
///
/// ```
/// use std::sync::Arc;
/// use metrics_util::debugging::DebuggingRecorder;
/// use stratum_core::metrics::MetricsScope;
///
/// let recorder = Arc::new(DebuggingRecorder::new());
/// let snapshotter = recorder.snapshotter();
/// let scope = MetricsScope::new(recorder);
/// let captured = scope.enter(MetricsScope::current);
/// // Later, outside the scope: still recorded into the scope's recorder.
/// captured.enter(|| metrics::counter!("t_total").increment(1));
/// assert_eq!(snapshotter.snapshot().into_vec().len(), 1);
/// assert!(MetricsScope::current().is_global());
/// ```
#[derive(Clone, Default)]
pub struct MetricsScope {
    recorder: Option<Arc<dyn Recorder + Send + Sync>>,
}

impl std::fmt::Debug for MetricsScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsScope")
            .field("global", &self.is_global())
            .finish()
    }
}

impl MetricsScope {
    /// A scope recording into `recorder`.
    pub fn new(recorder: Arc<dyn Recorder + Send + Sync>) -> MetricsScope {
        MetricsScope {
            recorder: Some(recorder),
        }
    }

    /// The process-wide recorder (whatever is installed, if anything).
    pub fn global() -> MetricsScope {
        MetricsScope::default()
    }

    /// The scope entered on this thread, or the process-wide one.
    pub fn current() -> MetricsScope {
        MetricsScope {
            recorder: CURRENT.with(|c| c.borrow().clone()),
        }
    }

    /// Whether this is the process-wide recorder.
    pub fn is_global(&self) -> bool {
        self.recorder.is_none()
    }

    /// Runs `f` with this scope's recorder as the thread's `metrics`
    /// recorder and as [`MetricsScope::current`]; the previous ones are back
    /// afterwards (scopes nest).
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let Some(recorder) = &self.recorder else {
            return f();
        };
        struct Restore(Option<Arc<dyn Recorder + Send + Sync>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.borrow_mut().replace(Arc::clone(recorder)));
        let _restore = Restore(previous);
        metrics::with_local_recorder(&**recorder, f)
    }
}

/// Declares an enum whose variants are the values of one metric label, with
/// `ALL` (in declaration order: the order of a table of handles, such as an
/// [`OperationMetrics`]) and `as_str` (the label's value).
#[macro_export]
macro_rules! label_enum {
    ($(#[$doc:meta])* $vis:vis enum $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in the order of the metric handles.
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            /// The label's value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }
    };
}

/// Handles for `N` operations named by `names`.
pub struct OperationMetrics<const N: usize> {
    /// Where the error counters go: the scope the handles were made in.
    recorded_in: MetricsScope,
    counter: &'static str,
    scope: (&'static str, &'static str),
    names: [&'static str; N],
    ok: [Counter; N],
    duration: [Histogram; N],
}

impl<const N: usize> std::fmt::Debug for OperationMetrics<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationMetrics")
            .field("counter", &self.counter)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> OperationMetrics<N> {
    /// Registers `counter{scope, operation, outcome="ok"}` and
    /// `histogram{scope, operation}` for each name, in the current
    /// [`MetricsScope`] (remembered for the error counters).
    pub fn new(
        counter: &'static str,
        histogram: &'static str,
        scope: (&'static str, &'static str),
        names: [&'static str; N],
    ) -> OperationMetrics<N> {
        let (label, value) = scope;
        OperationMetrics {
            recorded_in: MetricsScope::current(),
            counter,
            scope,
            names,
            ok: names.map(|op| {
                metrics::counter!(counter, label => value, "operation" => op, "outcome" => "ok")
            }),
            duration: names.map(|op| metrics::histogram!(histogram, label => value, "operation" => op)),
        }
    }

    /// Records one finished operation: its duration, and `Ok` or the
    /// error's kind as the outcome. An index past `N` records nothing.
    #[inline]
    pub fn finished(&self, op: usize, elapsed: Duration, outcome: Result<(), &'static str>) {
        let (Some(duration), Some(ok), Some(name)) =
            (self.duration.get(op), self.ok.get(op), self.names.get(op))
        else {
            return;
        };
        duration.record(elapsed.as_secs_f64());
        match outcome {
            Ok(()) => ok.increment(1),
            Err(kind) => {
                let (label, value) = self.scope;
                self.recorded_in.enter(|| {
                    metrics::counter!(self.counter, label => value, "operation" => *name, "outcome" => kind)
                        .increment(1);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn outcomes_and_durations_land_on_their_operation() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let m =
                OperationMetrics::new("t_ops_total", "t_seconds", ("backend", "x"), ["get", "put"]);
            m.finished(0, Duration::from_millis(2), Ok(()));
            m.finished(1, Duration::from_millis(3), Err("timeout"));
            m.finished(7, Duration::from_millis(3), Ok(())); // out of range: ignored
        });
        let mut seen = Vec::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n.to_string(),
                DebugValue::Histogram(v) => format!("{} samples", v.len()),
                DebugValue::Gauge(g) => g.to_string(),
            };
            seen.push(format!(
                "{} {} {}",
                key.key().name(),
                labels.join(","),
                value
            ));
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "t_ops_total backend=x,operation=get,outcome=ok 1",
                "t_ops_total backend=x,operation=put,outcome=ok 0",
                "t_ops_total backend=x,operation=put,outcome=timeout 1",
                "t_seconds backend=x,operation=get 1 samples",
                "t_seconds backend=x,operation=put 1 samples",
            ]
        );
    }

    /// Handles made inside a scope record their error outcomes there too,
    /// even when the error happens outside it (another task, later).
    #[test]
    fn error_outcomes_follow_the_scope_the_handles_were_made_in() {
        let global = DebuggingRecorder::new();
        let global_snap = global.snapshotter();
        let scoped = Arc::new(DebuggingRecorder::new());
        let scoped_snap = scoped.snapshotter();
        let m = MetricsScope::new(scoped)
            .enter(|| OperationMetrics::new("t_ops_total", "t_seconds", ("backend", "x"), ["get"]));
        metrics::with_local_recorder(&global, || {
            m.finished(0, Duration::from_millis(2), Err("timeout"));
        });
        assert!(global_snap.snapshot().into_vec().is_empty());
        let outcomes: Vec<String> = scoped_snap
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) if n > 0 => Some(format!(
                    "{} {}",
                    key.key()
                        .labels()
                        .map(|l| l.value().to_owned())
                        .collect::<Vec<_>>()
                        .join(","),
                    n
                )),
                _ => None,
            })
            .collect();
        assert_eq!(outcomes, ["x,get,timeout 1"]);
        // Scopes nest and restore.
        let outer = MetricsScope::new(Arc::new(DebuggingRecorder::new()));
        outer.enter(|| {
            assert!(!MetricsScope::current().is_global());
            MetricsScope::global().enter(|| assert!(!MetricsScope::current().is_global()));
        });
        assert!(MetricsScope::current().is_global());
    }
}

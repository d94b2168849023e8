//! Per-operation metric handles, registered once: a counter of outcomes and
//! a duration histogram for each of a fixed set of operations, under one
//! scope label (`collection` for a repository, `backend` for a store).
//!
//! Registering through `metrics::counter!` on every call builds a key (a
//! label vector and its hash) and, with a recorder installed, looks it up
//! in the recorder's registry; a handle made once skips both. The handles
//! bind to the recorder installed when they are made, so a program installs
//! its recorder before building the store and repositories (as `stratum
//! demo` does). Errors, rare by design, are counted through the macro, as
//! their kinds are many.

use std::time::Duration;

use metrics::{Counter, Histogram};

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
    /// `histogram{scope, operation}` for each name.
    pub fn new(
        counter: &'static str,
        histogram: &'static str,
        scope: (&'static str, &'static str),
        names: [&'static str; N],
    ) -> OperationMetrics<N> {
        let (label, value) = scope;
        OperationMetrics {
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
                metrics::counter!(self.counter, label => value, "operation" => *name, "outcome" => kind)
                    .increment(1);
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
}

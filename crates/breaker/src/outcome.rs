//! How a finished call counts: [`Outcome`], and the [`Classifier`] that turns
//! a `Result` into one with record/ignore predicates on errors and a
//! predicate on successful results.

use std::fmt;

/// How a call went, as far as the breaker is concerned.
///
/// Whether a call was *slow* is not part of the outcome: the breaker decides
/// that from the call's duration and the current slow-call threshold
/// ([`Breaker::slow_call_threshold`](crate::Breaker::slow_call_threshold):
/// fixed, or learned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call worked; it counts towards the failure rate's denominator.
    Success,
    /// The call failed; it counts towards the failure rate.
    Failure,
    /// The call does not count at all (say, a client error that says nothing
    /// about the protected service). In half-open it gives its probe slot back.
    Ignored,
}

impl Outcome {
    /// The outcome's name as used in metric labels (`success`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Ignored => "ignored",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Predicate<X> = Box<dyn Fn(&X) -> bool + Send + Sync>;

/// Classifies a call's `Result<T, E>` into an [`Outcome`].
///
/// The rules, in order (the same as resilience4j's):
/// 1. `Err(e)` where an *ignore* predicate holds: [`Outcome::Ignored`];
/// 2. `Err(e)` where the *record* predicate holds (every error, when none is
///    set): [`Outcome::Failure`];
/// 3. any other `Err(e)`: [`Outcome::Success`], since the service answered;
/// 4. `Ok(v)` where the *failure result* predicate holds: [`Outcome::Failure`]
///    (a "server busy" answer can still count against the service);
/// 5. any other `Ok(v)`: [`Outcome::Success`].
///
/// Build one per call site and reuse it: the predicates are boxed once.
///
/// ```
/// use stratum_breaker::{Classifier, Outcome};
///
/// #[derive(Debug)]
/// enum DbError { Timeout, NotFound, Busy }
///
/// let classifier = Classifier::<u32, DbError>::new()
///     .ignore_error(|e| matches!(e, DbError::NotFound))
///     .failure_result(|rows| *rows == u32::MAX); // the driver's "busy" sentinel
///
/// assert_eq!(classifier.classify(&Err(DbError::Timeout)), Outcome::Failure);
/// assert_eq!(classifier.classify(&Err(DbError::Busy)), Outcome::Failure);
/// assert_eq!(classifier.classify(&Err(DbError::NotFound)), Outcome::Ignored);
/// assert_eq!(classifier.classify(&Ok(3)), Outcome::Success);
/// assert_eq!(classifier.classify(&Ok(u32::MAX)), Outcome::Failure);
/// ```
pub struct Classifier<T, E> {
    record_error: Option<Predicate<E>>,
    ignore_error: Vec<Predicate<E>>,
    failure_result: Option<Predicate<T>>,
}

impl<T, E> Classifier<T, E> {
    /// Every error is a failure, every `Ok` a success.
    pub fn new() -> Self {
        Self {
            record_error: None,
            ignore_error: Vec::new(),
            failure_result: None,
        }
    }

    /// Only errors for which `predicate` holds count as failures; the others
    /// count as successes (the service answered). Replaces an earlier record
    /// predicate.
    pub fn record_error(mut self, predicate: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.record_error = Some(Box::new(predicate));
        self
    }

    /// Errors for which `predicate` holds are ignored; this wins over the
    /// record predicate. Several ignore predicates may be added.
    pub fn ignore_error(mut self, predicate: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.ignore_error.push(Box::new(predicate));
        self
    }

    /// Successful results for which `predicate` holds count as failures.
    /// Replaces an earlier result predicate.
    pub fn failure_result(
        mut self,
        predicate: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.failure_result = Some(Box::new(predicate));
        self
    }

    /// The outcome of `result` under these rules.
    pub fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Err(e) => {
                if self.ignore_error.iter().any(|p| p(e)) {
                    Outcome::Ignored
                } else if self.record_error.as_ref().is_none_or(|p| p(e)) {
                    Outcome::Failure
                } else {
                    Outcome::Success
                }
            }
            Ok(v) => {
                if self.failure_result.as_ref().is_some_and(|p| p(v)) {
                    Outcome::Failure
                } else {
                    Outcome::Success
                }
            }
        }
    }
}

impl<T, E> Default for Classifier<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> fmt::Debug for Classifier<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("record_error", &self.record_error.is_some())
            .field("ignore_error", &self.ignore_error.len())
            .field("failure_result", &self.failure_result.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counts_errors_as_failures() {
        let c = Classifier::<(), &str>::new();
        assert_eq!(c.classify(&Ok(())), Outcome::Success);
        assert_eq!(c.classify(&Err("x")), Outcome::Failure);
    }

    #[test]
    fn unrecorded_errors_count_as_successes() {
        let c = Classifier::<(), u16>::new().record_error(|code| *code >= 500);
        assert_eq!(c.classify(&Err(503)), Outcome::Failure);
        assert_eq!(c.classify(&Err(404)), Outcome::Success);
    }

    #[test]
    fn ignore_wins_over_record() {
        let c = Classifier::<(), u16>::new()
            .record_error(|_| true)
            .ignore_error(|code| *code == 499)
            .ignore_error(|code| *code == 408);
        assert_eq!(c.classify(&Err(499)), Outcome::Ignored);
        assert_eq!(c.classify(&Err(408)), Outcome::Ignored);
        assert_eq!(c.classify(&Err(500)), Outcome::Failure);
    }
}

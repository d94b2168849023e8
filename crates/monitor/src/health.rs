//! Health: a registry of named checks, each liveness or readiness (the Spring
//! Boot Actuator convention), aggregated to the worst status.
//!
//! **Liveness** says the process itself works (never checks a dependency:
//! restarting a process because the database is down only adds a restart
//! storm). **Readiness** says it should get traffic: an open breaker, an
//! exhausted pool, a failing database ping take it out.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use parking_lot::RwLock;
use serde::Serialize;

use crate::error::{MonitorError, validate_name};

/// A contributor's status. Ordered from best to worst, so the overall status
/// is the maximum.
///
/// ```
/// use stratum_monitor::Status;
///
/// let worst = [Status::Up, Status::Down, Status::Degraded].into_iter().max().unwrap();
/// assert_eq!(worst, Status::Down);
/// assert_eq!(worst.http_code(), 503);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Working.
    Up,
    /// Working, but impaired (still answers HTTP 200: traffic keeps flowing).
    Degraded,
    /// Not working (HTTP 503).
    Down,
}

impl Status {
    /// The HTTP status code a health endpoint answers with.
    pub fn http_code(self) -> u16 {
        match self {
            Status::Up | Status::Degraded => 200,
            Status::Down => 503,
        }
    }

    /// The value of the `stratum_monitor_health_status` gauge: 2 up,
    /// 1 degraded, 0 down (so `== 0` alerts on down).
    pub fn gauge_value(self) -> f64 {
        match self {
            Status::Up => 2.0,
            Status::Degraded => 1.0,
            Status::Down => 0.0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

/// Which probe a check contributes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// `/health/live`: the process itself; never a dependency.
    Liveness,
    /// `/health/ready`: dependencies (database, breaker, pool).
    Readiness,
}

impl CheckKind {
    fn label(self) -> &'static str {
        match self {
            CheckKind::Liveness => "liveness",
            CheckKind::Readiness => "readiness",
        }
    }
}

/// One check's answer: a status and, unless up, a reason.
///
/// ```
/// use stratum_monitor::{Health, Status};
///
/// let h = Health::degraded("replica lag 12s");
/// assert_eq!(h.status, Status::Degraded);
/// assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"status":"DEGRADED","reason":"replica lag 12s"}"#);
/// assert_eq!(serde_json::to_string(&Health::up()).unwrap(), r#"{"status":"UP"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The status.
    pub status: Status,
    /// Why, for an operator (never a secret: it is served over HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Health {
    /// Up, no reason.
    pub fn up() -> Self {
        Self {
            status: Status::Up,
            reason: None,
        }
    }
    /// Degraded, with a reason.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Self {
            status: Status::Degraded,
            reason: Some(reason.into()),
        }
    }
    /// Down, with a reason.
    pub fn down(reason: impl Into<String>) -> Self {
        Self {
            status: Status::Down,
            reason: Some(reason.into()),
        }
    }
}

/// A health check. Implement it for anything asynchronous (a database
/// ping); synchronous closures go through [`HealthRegistry::register_fn`].
///
/// ```
/// use stratum_monitor::{Health, HealthCheck};
///
/// struct AlwaysUp;
///
/// #[async_trait::async_trait]
/// impl HealthCheck for AlwaysUp {
///     async fn check(&self) -> Health {
///         Health::up()
///     }
/// }
/// ```
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Runs the check.
    async fn check(&self) -> Health;
}

struct FnCheck<F>(F);

#[async_trait]
impl<F> HealthCheck for FnCheck<F>
where
    F: Fn() -> Health + Send + Sync,
{
    async fn check(&self) -> Health {
        (self.0)()
    }
}

struct AsyncFnCheck<F>(F);

#[async_trait]
impl<F, Fut> HealthCheck for AsyncFnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Health> + Send,
{
    async fn check(&self) -> Health {
        (self.0)().await
    }
}

struct Entry {
    name: String,
    kind: CheckKind,
    check: Arc<dyn HealthCheck>,
}

/// The aggregated answer of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// The worst contributor's status; `UP` when there are none.
    pub status: Status,
    /// The probe this report answers (not serialized: the URL says it).
    #[serde(skip)]
    pub kind: CheckKind,
    /// Every contributor by name.
    pub components: BTreeMap<String, Health>,
}

impl HealthReport {
    /// The HTTP status code for this report (200, or 503 when down).
    pub fn http_code(&self) -> u16 {
        self.status.http_code()
    }

    /// Writes each contributor to the `stratum_monitor_health_status{check,kind}`
    /// gauge (2 up, 1 degraded, 0 down) through the `metrics` facade, and logs
    /// the ones not up at debug level.
    pub fn export(&self) {
        for (name, health) in &self.components {
            metrics::gauge!(
                "stratum_monitor_health_status",
                "check" => name.clone(),
                "kind" => self.kind.label()
            )
            .set(health.status.gauge_value());
            if health.status != Status::Up {
                tracing::debug!(
                    check = %name,
                    kind = self.kind.label(),
                    status = health.status.label(),
                    reason = ?health.reason,
                    "health check not up"
                );
            }
        }
    }

    /// The JSON body served by the health endpoints.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and enums cannot fail; an empty object is
        // the fallback rather than a panic.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// The registry of named checks.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use stratum_monitor::{CheckKind, Health, HealthRegistry, Status};
///
/// let health = HealthRegistry::new(Duration::from_secs(1));
/// health.register_fn("process", CheckKind::Liveness, Health::up).unwrap();
/// health.register_fn("database", CheckKind::Readiness, || Health::down("ping failed")).unwrap();
///
/// assert_eq!(health.report(CheckKind::Liveness).await.status, Status::Up);
/// let ready = health.report(CheckKind::Readiness).await;
/// assert_eq!(ready.status, Status::Down);
/// assert_eq!(ready.http_code(), 503);
/// assert!(ready.to_json().contains("ping failed"));
/// # });
/// ```
pub struct HealthRegistry {
    entries: RwLock<Vec<Entry>>,
    timeout: Duration,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.entries.read().iter().map(|e| e.name.clone()).collect();
        f.debug_struct("HealthRegistry")
            .field("checks", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HealthRegistry {
    /// An empty registry; a check running longer than `timeout` is `DOWN`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            entries: RwLock::new(Vec::new()),
            timeout,
        }
    }

    /// Registers a check under `name` (`[a-z0-9_.-]{1,64}`, unique).
    pub fn register(
        &self,
        name: &str,
        kind: CheckKind,
        check: impl HealthCheck + 'static,
    ) -> Result<(), MonitorError> {
        validate_name(name)?;
        let mut entries = self.entries.write();
        if entries.iter().any(|e| e.name == name) {
            return Err(MonitorError::Duplicate {
                name: name.to_owned(),
            });
        }
        entries.push(Entry {
            name: name.to_owned(),
            kind,
            check: Arc::new(check),
        });
        Ok(())
    }

    /// Registers a synchronous closure as a check.
    pub fn register_fn<F>(&self, name: &str, kind: CheckKind, check: F) -> Result<(), MonitorError>
    where
        F: Fn() -> Health + Send + Sync + 'static,
    {
        self.register(name, kind, FnCheck(check))
    }

    /// Registers an async closure as a check.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use stratum_monitor::{CheckKind, Health, HealthRegistry, Status};
    ///
    /// let health = HealthRegistry::new(Duration::from_secs(1));
    /// health.register_async("ping", CheckKind::Readiness, || async { Health::degraded("slow") }).unwrap();
    /// assert_eq!(health.report(CheckKind::Readiness).await.status, Status::Degraded);
    /// # });
    /// ```
    pub fn register_async<F, Fut>(
        &self,
        name: &str,
        kind: CheckKind,
        check: F,
    ) -> Result<(), MonitorError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Health> + Send + 'static,
    {
        self.register(name, kind, AsyncFnCheck(check))
    }

    /// Removes a check; `true` if it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        let mut entries = self.entries.write();
        let before = entries.len();
        entries.retain(|e| e.name != name);
        entries.len() != before
    }

    /// Runs every check of `kind` concurrently, each bounded by the timeout,
    /// and aggregates them (worst wins).
    pub async fn report(&self, kind: CheckKind) -> HealthReport {
        let checks: Vec<(String, Arc<dyn HealthCheck>)> = self
            .entries
            .read()
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| (e.name.clone(), Arc::clone(&e.check)))
            .collect();
        let timeout = self.timeout;
        let results =
            futures::future::join_all(checks.into_iter().map(|(name, check)| async move {
                // A panicking check is a failing check, not a crashed probe.
                let guarded = std::panic::AssertUnwindSafe(check.check()).catch_unwind();
                let health = match tokio::time::timeout(timeout, guarded).await {
                    Ok(Ok(health)) => health,
                    Ok(Err(_)) => Health::down("check panicked"),
                    Err(_) => Health::down(format!("check timed out after {timeout:?}")),
                };
                (name, health)
            }))
            .await;
        let status = results
            .iter()
            .map(|(_, h)| h.status)
            .max()
            .unwrap_or(Status::Up);
        HealthReport {
            status,
            kind,
            components: results.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn overall_is_the_worst_and_kinds_are_separate() {
        rt().block_on(async {
            let health = HealthRegistry::new(Duration::from_secs(1));
            let db = Arc::new(AtomicU8::new(0));
            let db2 = Arc::clone(&db);
            health
                .register_fn("process", CheckKind::Liveness, Health::up)
                .unwrap();
            health
                .register_fn("database", CheckKind::Readiness, move || {
                    match db2.load(Ordering::SeqCst) {
                        0 => Health::up(),
                        1 => Health::degraded("slow"),
                        _ => Health::down("unreachable"),
                    }
                })
                .unwrap();
            health
                .register_fn("breaker", CheckKind::Readiness, Health::up)
                .unwrap();

            for (state, want) in [
                (0, Status::Up),
                (1, Status::Degraded),
                (2, Status::Down),
                (0, Status::Up),
            ] {
                db.store(state, Ordering::SeqCst);
                let ready = health.report(CheckKind::Readiness).await;
                assert_eq!(ready.status, want);
                assert_eq!(ready.components.len(), 2);
                // A dependency never takes liveness down.
                assert_eq!(health.report(CheckKind::Liveness).await.status, Status::Up);
            }
        });
    }

    #[test]
    fn empty_probe_is_up() {
        rt().block_on(async {
            let health = HealthRegistry::new(Duration::from_secs(1));
            let r = health.report(CheckKind::Readiness).await;
            assert_eq!(r.status, Status::Up);
            assert_eq!(r.to_json(), r#"{"status":"UP","components":{}}"#);
        });
    }

    #[test]
    fn a_hanging_check_is_down_after_the_timeout() {
        // Paused tokio time: the timeout elapses without real waiting.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let health = HealthRegistry::new(Duration::from_millis(50));
                health
                    .register_async(
                        "hangs",
                        CheckKind::Readiness,
                        futures::future::pending::<Health>,
                    )
                    .unwrap();
                let r = health.report(CheckKind::Readiness).await;
                assert_eq!(r.status, Status::Down);
                assert!(
                    r.components["hangs"]
                        .reason
                        .as_deref()
                        .unwrap()
                        .contains("timed out")
                );
            });
    }

    #[test]
    #[allow(clippy::panic)]
    fn a_panicking_check_is_down_and_the_others_still_report() {
        rt().block_on(async {
            let health = HealthRegistry::new(Duration::from_secs(1));
            health
                .register_fn("boom", CheckKind::Readiness, || panic!("bug in a check"))
                .unwrap();
            health
                .register_fn("db", CheckKind::Readiness, Health::up)
                .unwrap();
            let r = health.report(CheckKind::Readiness).await;
            assert_eq!(r.status, Status::Down);
            assert_eq!(
                r.components["boom"].reason.as_deref(),
                Some("check panicked")
            );
            assert_eq!(r.components["db"].status, Status::Up);
        });
    }

    #[test]
    fn names_are_unique_and_bounded() {
        let health = HealthRegistry::new(Duration::from_secs(1));
        health
            .register_fn("db", CheckKind::Readiness, Health::up)
            .unwrap();
        assert!(matches!(
            health.register_fn("db", CheckKind::Liveness, Health::up),
            Err(MonitorError::Duplicate { .. })
        ));
        assert!(matches!(
            health.register_fn("", CheckKind::Liveness, Health::up),
            Err(MonitorError::InvalidName { .. })
        ));
        assert!(health.unregister("db"));
        assert!(!health.unregister("db"));
        health
            .register_fn("db", CheckKind::Readiness, Health::up)
            .unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Against a reference model (a map name -> (kind, status)): after any
        /// sequence of register / unregister / status changes, each probe
        /// reports exactly the model's contributors of its kind and the worst
        /// of their statuses.
        #[test]
        fn registry_matches_reference_model(
            ops in proptest::collection::vec((0u8..3, 0usize..4, 0u8..3, proptest::bool::ANY), 1..40),
        ) {
            use std::collections::BTreeMap;
            let names = ["a", "b", "c", "d"];
            let statuses: Vec<Arc<AtomicU8>> = (0..4).map(|_| Arc::new(AtomicU8::new(0))).collect();
            let health = HealthRegistry::new(Duration::from_secs(1));
            let mut model: BTreeMap<&str, (CheckKind, u8)> = BTreeMap::new();
            let runtime = rt();
            for (op, n, status, live) in ops {
                let name = names[n];
                let kind = if live { CheckKind::Liveness } else { CheckKind::Readiness };
                match op {
                    0 => {
                        let cell = Arc::clone(&statuses[n]);
                        let result = health.register_fn(name, kind, move || match cell.load(Ordering::SeqCst) {
                            0 => Health::up(),
                            1 => Health::degraded("d"),
                            _ => Health::down("x"),
                        });
                        proptest::prop_assert_eq!(result.is_ok(), !model.contains_key(name));
                        model.entry(name).or_insert((kind, statuses[n].load(Ordering::SeqCst)));
                    }
                    1 => {
                        proptest::prop_assert_eq!(health.unregister(name), model.remove(name).is_some());
                    }
                    _ => {
                        statuses[n].store(status, Ordering::SeqCst);
                        if let Some(entry) = model.get_mut(name) {
                            entry.1 = status;
                        }
                    }
                }
                for probe in [CheckKind::Liveness, CheckKind::Readiness] {
                    let report = runtime.block_on(health.report(probe));
                    let want: BTreeMap<&str, u8> =
                        model.iter().filter(|(_, (k, _))| *k == probe).map(|(n, (_, s))| (*n, *s)).collect();
                    let worst = match want.values().max() {
                        None | Some(0) => Status::Up,
                        Some(1) => Status::Degraded,
                        Some(_) => Status::Down,
                    };
                    proptest::prop_assert_eq!(report.status, worst);
                    let got: Vec<&str> = report.components.keys().map(String::as_str).collect();
                    let want_names: Vec<&str> = want.keys().copied().collect();
                    proptest::prop_assert_eq!(got, want_names);
                }
            }
        }
    }

    #[test]
    fn status_order_and_codes() {
        assert!(Status::Up < Status::Degraded && Status::Degraded < Status::Down);
        assert_eq!(Status::Up.http_code(), 200);
        assert_eq!(Status::Degraded.http_code(), 200);
        assert_eq!(Status::Down.http_code(), 503);
    }
}

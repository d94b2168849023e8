//! The HTTP listener: `/metrics`, `/health/live`, `/health/ready`, and the
//! background loop (upkeep, resource sampling, alert evaluation).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::MonitorError;
use crate::health::CheckKind;
use crate::monitor::Monitor;

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A started monitor: the bound address and the tasks behind it. Dropping it
/// stops the tasks; [`RunningMonitor::shutdown`] stops them gracefully.
#[derive(Debug)]
#[must_use = "dropping a RunningMonitor stops serving /metrics and the background work"]
pub struct RunningMonitor {
    local_addr: SocketAddr,
    tasks: MonitorTasks,
}

impl RunningMonitor {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and the background loop, evaluates the alert rules and
    /// runs the collectors one last time, posts what the webhook still has
    /// queued (one attempt each), and waits for every task.
    pub async fn shutdown(self) {
        self.tasks.shutdown().await;
    }

    /// The tasks, the listener's among them, without the address.
    pub fn into_tasks(self) -> MonitorTasks {
        self.tasks
    }
}

/// A monitor's background work (upkeep and collectors, resource sampling,
/// alert evaluation, webhook delivery) and, when it serves, its listener.
/// [`Monitor::spawn_background`] gives one without a listener, for a program
/// that mounts [`Monitor::router`] in its own server. Dropping it aborts the
/// tasks; [`MonitorTasks::shutdown`] stops them gracefully.
#[derive(Debug)]
#[must_use = "dropping MonitorTasks stops the monitor's background work"]
pub struct MonitorTasks {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl MonitorTasks {
    /// Stops every task after a last alert evaluation and collection, posts
    /// what the webhook still has queued (one attempt each), and waits.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for MonitorTasks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The routes, for the listener and for [`Monitor::router`].
pub(crate) fn router(monitor: Monitor) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(monitor)
}

pub(crate) fn spawn(monitor: Monitor) -> Result<RunningMonitor, MonitorError> {
    let addr = monitor.config().listen;
    let bind = |addr| -> std::io::Result<tokio::net::TcpListener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    };
    let listener = bind(addr).map_err(|source| MonitorError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| MonitorError::Bind { addr, source })?;
    let app = router(monitor.clone());
    let (stop, stopped) = watch::channel(false);
    let mut server_stop = stopped.clone();
    let server = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "monitor HTTP listener stopped");
        }
    });
    tracing::info!(%local_addr, "monitor listening");
    Ok(RunningMonitor {
        local_addr,
        tasks: spawn_tasks(monitor, vec![server], stop, stopped),
    })
}

/// The background work, with `tasks` already running under `stop`.
pub(crate) fn spawn_tasks(
    monitor: Monitor,
    mut tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
) -> MonitorTasks {
    // The webhook flushes once the background loop has made its last
    // evaluation (or is gone), so the events of that evaluation are posted.
    let (flush, flushing) = watch::channel(false);
    if let Some(delivery) = monitor.webhook().and_then(|w| w.run(flushing)) {
        tasks.push(tokio::spawn(delivery));
    }
    tasks.push(tokio::spawn(background(monitor, stopped, flush)));
    MonitorTasks { stop, tasks }
}

/// Upkeep, sampling and alert evaluation on their own intervals. Upkeep is
/// what keeps exporter memory bounded: it drains buffered histogram samples.
async fn background(
    monitor: Monitor,
    mut stopped: watch::Receiver<bool>,
    flush: watch::Sender<bool>,
) {
    let config = monitor.config().clone();
    let mut upkeep = tokio::time::interval(config.upkeep_interval);
    let mut sample = tokio::time::interval(config.resource_interval);
    let mut alerts = tokio::time::interval(config.alert_interval);
    for timer in [&mut upkeep, &mut sample, &mut alerts] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => {
                // The last word: events of the final evaluation reach the
                // webhook's queue before it is flushed.
                monitor.evaluate_alerts();
                monitor.run_upkeep();
                let _ = flush.send(true);
                return;
            }
            _ = upkeep.tick() => monitor.run_upkeep(),
            _ = sample.tick() => { monitor.sample_resources(); }
            _ = alerts.tick() => { monitor.evaluate_alerts(); }
        }
    }
}

async fn metrics(State(monitor): State<Monitor>) -> Response {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], monitor.render()).into_response()
}

async fn live(State(monitor): State<Monitor>) -> Response {
    health(monitor, CheckKind::Liveness).await
}

async fn ready(State(monitor): State<Monitor>) -> Response {
    health(monitor, CheckKind::Readiness).await
}

async fn health(monitor: Monitor, kind: CheckKind) -> Response {
    let report = monitor.health().report(kind).await;
    monitor.in_scope(|| report.export());
    let code = StatusCode::from_u16(report.http_code()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        report.to_json(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::{DEFAULT_LISTEN, MonitorConfig};

    /// The default address is loopback, and a monitor started on it (port 0,
    /// since the default port may be taken) binds loopback and nothing wider.
    #[tokio::test]
    async fn the_default_bind_is_loopback() {
        assert_eq!(DEFAULT_LISTEN.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(MonitorConfig::default().listen, DEFAULT_LISTEN);
        assert!(!MonitorConfig::default().allow_non_loopback);
        let config = MonitorConfig {
            listen: SocketAddr::new(DEFAULT_LISTEN.ip(), 0),
            ..MonitorConfig::default()
        };
        let running = Monitor::new(config).unwrap().start().await.unwrap();
        assert_eq!(running.local_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        tokio::net::TcpStream::connect(running.local_addr())
            .await
            .unwrap();
        running.shutdown().await;
    }

    /// Any non-loopback address is refused unless `allow_non_loopback` is
    /// set; set, it is honoured: the listener binds every interface.
    #[tokio::test]
    async fn a_wide_bind_is_honoured_only_when_asked() {
        for wide in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0", "[::ffff:127.0.0.1]:0"] {
            let config = MonitorConfig {
                listen: wide.parse().unwrap(),
                ..MonitorConfig::default()
            };
            let err = Monitor::new(config).unwrap_err();
            assert_eq!(err.field(), "listen", "{wide}");
            assert!(
                err.reason()
                    .unwrap_or_default()
                    .contains("allow_non_loopback"),
                "{err}"
            );
        }
        let asked = MonitorConfig {
            listen: "0.0.0.0:0".parse().unwrap(),
            allow_non_loopback: true,
            ..MonitorConfig::default()
        };
        let running = Monitor::new(asked).unwrap().start().await.unwrap();
        assert!(running.local_addr().ip().is_unspecified(), "{running:?}");
        let port = running.local_addr().port();
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        running.shutdown().await;
    }
}

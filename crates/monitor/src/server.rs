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
pub struct RunningMonitor {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningMonitor {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and the background loop, and waits for both.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for RunningMonitor {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub(crate) async fn start(monitor: Monitor) -> Result<RunningMonitor, MonitorError> {
    let addr = monitor.config().listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MonitorError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| MonitorError::Bind { addr, source })?;
    let (stop, stopped) = watch::channel(false);

    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(monitor.clone());
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
    let background = tokio::spawn(background(monitor, stopped));
    tracing::info!(%local_addr, "monitor listening");
    Ok(RunningMonitor {
        local_addr,
        stop,
        tasks: vec![server, background],
    })
}

/// Upkeep, sampling and alert evaluation on their own intervals. Upkeep is
/// what keeps exporter memory bounded: it drains buffered histogram samples.
async fn background(monitor: Monitor, mut stopped: watch::Receiver<bool>) {
    let config = monitor.config().clone();
    let mut upkeep = tokio::time::interval(config.upkeep_interval);
    let mut sample = tokio::time::interval(config.resource_interval);
    let mut alerts = tokio::time::interval(config.alert_interval);
    for timer in [&mut upkeep, &mut sample, &mut alerts] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
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

//! Alert delivery to an HTTP webhook in Alertmanager's format: a bounded
//! queue filled by the alert engine's callback (never waits), drained by one
//! task that posts with retries and exponential backoff.
//!
//! The body is what Alertmanager's `POST /api/v2/alerts` takes: a JSON array
//! of alerts, each with `labels` (`alertname` is the rule's name),
//! `annotations`, `startsAt` and, once resolved, `endsAt` (RFC 3339).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::{Request, Uri, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use metrics::Counter;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::alert::{AlertEvent, AlertEventKind};
use crate::config::WebhookConfig;
use crate::error::ConfigError;

/// Where alerts are posted: an `http://host:port/path` URL, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    uri: Uri,
    authority: String,
    host: String,
    port: u16,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Endpoint, ConfigError> {
        let refuse = |why: &str| ConfigError::invalid("url", why.to_owned());
        let uri: Uri = url
            .parse()
            .map_err(|_| refuse("is not a URL (http://host:port/path)"))?;
        if uri.scheme_str() != Some("http") {
            return Err(refuse(
                "must start with http:// (TLS is not spoken: post to a local Alertmanager or a sidecar)",
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| refuse("has no host"))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(refuse("must not hold credentials"));
        }
        Ok(Endpoint {
            host: authority.host().trim_matches(['[', ']']).to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            uri,
        })
    }
}

/// One alert in Alertmanager's JSON shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireAlert {
    labels: BTreeMap<&'static str, String>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The delivery counters, registered once in the monitor's recorder.
#[derive(Clone)]
pub(crate) struct DeliveryMetrics {
    delivered: Counter,
    failed: Counter,
    dropped: Counter,
    retries: Counter,
}

impl DeliveryMetrics {
    pub(crate) fn new() -> DeliveryMetrics {
        let result = |r: &'static str| metrics::counter!("stratum_monitor_alert_deliveries_total", "sink" => "webhook", "result" => r);
        DeliveryMetrics {
            delivered: result("delivered"),
            failed: result("failed"),
            dropped: result("dropped"),
            retries: metrics::counter!("stratum_monitor_alert_delivery_retries_total", "sink" => "webhook"),
        }
    }
}

/// An event as queued: the rule, what happened, the value, and the wall
/// time it happened at.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    rule: String,
    kind: AlertEventKind,
    value: f64,
    at: SystemTime,
    details: Vec<(&'static str, f64)>,
}

/// A firing alert as re-posted: when it started, its value and details.
type Firing = (SystemTime, f64, Vec<(&'static str, f64)>);

/// The sending half, owned by the monitor: enqueues without waiting.
pub(crate) struct Webhook {
    queue: mpsc::Sender<Queued>,
    /// Taken by the task that drains it when the monitor starts.
    receiver: parking_lot::Mutex<Option<mpsc::Receiver<Queued>>>,
    config: WebhookConfig,
    endpoint: Endpoint,
    metrics: DeliveryMetrics,
}

impl Webhook {
    /// `None` when no URL is configured.
    pub(crate) fn new(config: &WebhookConfig) -> Result<Option<Arc<Webhook>>, ConfigError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let endpoint = Endpoint::parse(url).map_err(|e| e.within("alerts.webhook"))?;
        let (queue, receiver) = mpsc::channel(config.queue_capacity);
        Ok(Some(Arc::new(Webhook {
            queue,
            receiver: parking_lot::Mutex::new(Some(receiver)),
            config: config.clone(),
            endpoint,
            metrics: DeliveryMetrics::new(),
        })))
    }

    /// Queues `event`; a full queue drops it (counted), never waits.
    pub(crate) fn enqueue(&self, event: &AlertEvent) {
        let queued = Queued {
            rule: event.rule.clone(),
            kind: event.kind,
            value: event.value,
            at: SystemTime::now(),
            details: event.details.clone(),
        };
        if self.queue.try_send(queued).is_err() {
            self.metrics.dropped.increment(1);
            tracing::warn!(alert = %event.rule, "alert webhook queue full: event dropped");
        }
    }

    /// The delivery task: drains the queue until `stopped`, then posts what
    /// is still queued (the flush) and returns. `None` if already running.
    pub(crate) fn run(
        self: &Arc<Self>,
        stopped: watch::Receiver<bool>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let receiver = self.receiver.lock().take()?;
        let this = Arc::clone(self);
        Some(async move { this.deliver(receiver, stopped).await })
    }

    async fn deliver(
        &self,
        mut receiver: mpsc::Receiver<Queued>,
        mut stopped: watch::Receiver<bool>,
    ) {
        // Firing alerts by rule, with when they started: re-posted every
        // `repeat_interval` so the receiver does not time them out.
        let mut firing: BTreeMap<String, Firing> = BTreeMap::new();
        let mut repeat = tokio::time::interval(self.config.repeat_interval);
        repeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        repeat.tick().await;
        loop {
            let batch = tokio::select! {
                biased;
                event = receiver.recv() => match event {
                    Some(event) => self.drain(event, &mut receiver, &mut firing),
                    None => return,
                },
                _ = repeat.tick() => firing
                    .iter()
                    .map(|(rule, (since, value, details))| {
                        wire(rule, AlertEventKind::Fired, *value, *since, None, details)
                    })
                    .collect(),
                () = stop_signal(&mut stopped) => {
                    // Flush: what is queued now is posted, with one attempt
                    // each, so shutdown is bounded by the timeout.
                    receiver.close();
                    let mut batch = Vec::new();
                    while let Ok(event) = receiver.try_recv() {
                        batch.push(self.to_wire(event, &mut firing));
                    }
                    if !batch.is_empty() {
                        self.post(&batch, 1).await;
                    }
                    return;
                }
            };
            if !batch.is_empty() {
                self.post(&batch, self.config.max_attempts).await;
            }
        }
    }

    /// `event` and whatever else is queued now, as one batch.
    fn drain(
        &self,
        event: Queued,
        receiver: &mut mpsc::Receiver<Queued>,
        firing: &mut BTreeMap<String, Firing>,
    ) -> Vec<WireAlert> {
        let mut batch = vec![self.to_wire(event, firing)];
        while let Ok(event) = receiver.try_recv() {
            batch.push(self.to_wire(event, firing));
        }
        batch
    }

    fn to_wire(&self, event: Queued, firing: &mut BTreeMap<String, Firing>) -> WireAlert {
        match event.kind {
            AlertEventKind::Fired => {
                let alert = wire(
                    &event.rule,
                    event.kind,
                    event.value,
                    event.at,
                    None,
                    &event.details,
                );
                firing.insert(event.rule, (event.at, event.value, event.details));
                alert
            }
            AlertEventKind::Resolved => {
                let started = firing.remove(&event.rule).map_or(event.at, |(at, ..)| at);
                wire(
                    &event.rule,
                    event.kind,
                    event.value,
                    started,
                    Some(event.at),
                    &event.details,
                )
            }
        }
    }

    /// Posts `batch`, up to `attempts` times with backoff.
    async fn post(&self, batch: &[WireAlert], attempts: u32) {
        let body = match serde_json::to_vec(batch) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                // Strings and numbers only: cannot happen; counted if it does.
                tracing::error!(%error, "alert webhook body could not be encoded");
                self.metrics.failed.increment(1);
                return;
            }
        };
        let mut backoff = self.config.initial_backoff;
        for attempt in 1..=attempts {
            let result =
                tokio::time::timeout(self.config.timeout, self.attempt(body.clone())).await;
            let error = match result {
                Ok(Ok(())) => {
                    self.metrics.delivered.increment(batch.len() as u64);
                    return;
                }
                Ok(Err(error)) => error,
                Err(_) => format!("timed out after {:?}", self.config.timeout),
            };
            tracing::debug!(attempt, %error, "alert webhook post failed");
            if attempt < attempts {
                self.metrics.retries.increment(1);
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff, self.config.max_backoff);
            } else {
                tracing::warn!(attempts, %error, alerts = batch.len(), "alert webhook post given up");
                self.metrics.failed.increment(batch.len() as u64);
            }
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<(), String> {
        let e = &self.endpoint;
        let stream = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let connection = tokio::spawn(connection);
        let request = Request::post(e.uri.clone())
            .header(header::HOST, e.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string());
        connection.abort();
        let status = response?.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

fn wire(
    rule: &str,
    kind: AlertEventKind,
    value: f64,
    started: SystemTime,
    ended: Option<SystemTime>,
    details: &[(&'static str, f64)],
) -> WireAlert {
    let what = match kind {
        AlertEventKind::Fired => "firing",
        AlertEventKind::Resolved => "resolved",
    };
    let mut annotations = BTreeMap::from([
        ("summary", format!("stratum alert {rule} is {what}")),
        ("value", format!("{value}")),
    ]);
    // A rule's named figures (a regression's baseline, a burn rate's
    // windows) as annotations of their own; never over the two above.
    for (name, figure) in details {
        annotations
            .entry(*name)
            .or_insert_with(|| format!("{figure}"));
    }
    WireAlert {
        labels: BTreeMap::from([
            ("alertname", rule.to_owned()),
            ("service", "stratum".to_owned()),
        ]),
        annotations,
        starts_at: rfc3339(started),
        ends_at: ended.map(rfc3339),
    }
}

/// Resolves once `stopped` says so (or its sender is gone); the watch
/// guard is dropped here, not held across the flush.
async fn stop_signal(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The wait after one more failure: double the last one, capped.
fn next_backoff(last: Duration, max: Duration) -> Duration {
    last.saturating_mul(2).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(Endpoint::parse("http://127.0.0.1:9093/api/v2/alerts").is_ok());
        let e = Endpoint::parse("http://alertmanager/api/v2/alerts").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("alertmanager", 80));
        for bad in [
            "https://x/y",
            "ftp://x",
            "not a url",
            "http://user:pw@x/y",
            "/path",
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert_eq!(err.field(), "url", "{bad}");
            // A refused URL is never echoed back (it may hold a secret).
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn the_wire_format_is_alertmanagers() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fired = wire("breaker_open", AlertEventKind::Fired, 1.0, at, None, &[]);
        let json = serde_json::to_value([&fired]).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "labels": { "alertname": "breaker_open", "service": "stratum" },
                "annotations": { "summary": "stratum alert breaker_open is firing", "value": "1" },
                "startsAt": "2023-11-14T22:13:20.000Z"
            }])
        );
        let resolved = wire(
            "breaker_open",
            AlertEventKind::Resolved,
            0.0,
            at,
            Some(at + Duration::from_secs(90)),
            &[],
        );
        let json = serde_json::to_value(&resolved).unwrap();
        assert_eq!(json["endsAt"], "2023-11-14T22:14:50.000Z");
        assert_eq!(json["startsAt"], "2023-11-14T22:13:20.000Z");
        // A rule's details become annotations, never over summary or value.
        let regression = wire(
            "latency_regression",
            AlertEventKind::Fired,
            2.0,
            at,
            None,
            &[
                ("baseline_seconds", 0.02),
                ("level_seconds", 0.04),
                ("value", 9.0),
            ],
        );
        let json = serde_json::to_value(&regression).unwrap();
        assert_eq!(json["annotations"]["baseline_seconds"], "0.02");
        assert_eq!(json["annotations"]["level_seconds"], "0.04");
        assert_eq!(json["annotations"]["value"], "2");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_millis(500);
        let waits: Vec<u128> = std::iter::successors(Some(Duration::from_millis(100)), |b| {
            Some(next_backoff(*b, max))
        })
        .take(5)
        .map(|b| b.as_millis())
        .collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }
}

//! Following a collection's change stream (feature `mongodb`): every changed
//! document's id handed to a callback, with resume tokens, retries and
//! credentials scrubbed from every log line.
//!
//! Where the server supports change streams (a replica set or a sharded
//! cluster), [`MongoStore::follow`] opens the collection's stream and calls
//! the callback with [`Change::Document`] for every document inserted,
//! updated, replaced or deleted, and [`Change::Everything`] when the whole
//! collection may have changed (dropped, renamed, or the stream had to start
//! afresh). Where it does not (a standalone server), the follower logs the
//! refusal and retries every few seconds. A stream that breaks is reopened
//! from the resume token of the last event handed over, so changes made
//! while it was down are not missed.
//!
//! Metrics, labelled by `collection`: `stratum_change_stream_events_total`
//! (events handed over), `stratum_change_stream_resumes_total` (reopened
//! from a resume token), `stratum_change_stream_restarts_total` (started
//! afresh: the token was unusable), `stratum_change_stream_open` (1 while
//! the stream is open) and `stratum_change_stream_lag_seconds` (from the
//! server's wall time of the write to the event handed over; servers before
//! MongoDB 6.0 send no wall time, and then nothing is recorded).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bson::{Bson, Document};
use futures::StreamExt;
use mongodb::change_stream::event::{OperationType, ResumeToken};
use mongodb::error::ErrorKind;
use tokio::sync::Notify;

use crate::validate::check_collection_name;
use crate::{MongoStore, StoreError};

/// How long the follower waits before reopening a failed change stream.
const RETRY: Duration = Duration::from_secs(2);

/// Server codes meaning a resume token cannot be used any more: the events
/// after it are gone (ChangeStreamHistoryLost, ChangeStreamFatalError) or it
/// is not a token (InvalidResumeToken).
const TOKEN_UNUSABLE: &[i32] = &[260, 280, 286];

/// Counter: change events handed over, by collection.
pub(crate) const EVENTS: &str = "stratum_change_stream_events_total";
/// Counter: streams reopened from a resume token, by collection.
pub(crate) const RESUMES: &str = "stratum_change_stream_resumes_total";
/// Counter: streams started afresh (the token was unusable), by collection.
pub(crate) const RESTARTS: &str = "stratum_change_stream_restarts_total";
/// Gauge: 1 while the collection's stream is open, else 0.
pub(crate) const OPEN: &str = "stratum_change_stream_open";
/// Histogram (seconds): from the server's wall time of a write to its event
/// handed over, by collection.
pub(crate) const LAG: &str = "stratum_change_stream_lag_seconds";

/// The follower's metric handles, registered once per follower.
struct FollowMetrics {
    events: metrics::Counter,
    resumes: metrics::Counter,
    restarts: metrics::Counter,
    open: metrics::Gauge,
    lag: metrics::Histogram,
}

impl FollowMetrics {
    fn new(collection: &str) -> FollowMetrics {
        let label = ("collection", collection.to_owned());
        let labels = [label];
        FollowMetrics {
            events: metrics::counter!(EVENTS, &labels),
            resumes: metrics::counter!(RESUMES, &labels),
            restarts: metrics::counter!(RESTARTS, &labels),
            open: metrics::gauge!(OPEN, &labels),
            lag: metrics::histogram!(LAG, &labels),
        }
    }

    /// Records the delay from the write (the server's wall clock) to now.
    fn lag(&self, wall_time: Option<bson::DateTime>) {
        if let Some(at) = wall_time
            && let Ok(lag) = SystemTime::now().duration_since(at.to_system_time())
        {
            self.lag.record(lag.as_secs_f64());
        }
    }
}

/// What changed, as a change stream reports it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// The document with this `_id` was inserted, updated, replaced or deleted.
    Document(Bson),
    /// Anything in the collection may have changed: it was dropped or
    /// renamed, the stream was invalidated, or the stream could not resume
    /// and started afresh (changes in between are unknown).
    Everything,
}

/// What a follower has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FollowState {
    /// Whether the change stream is open.
    pub open: bool,
    /// Change events handed to the callback.
    pub events: u64,
    /// Of those, the ones that named one document.
    pub documents: u64,
    /// Times the stream was reopened from the last event's resume token
    /// (after a failure), so the events in between were not lost.
    pub resumes: u64,
    /// Times the stream had to start afresh because its resume token was no
    /// longer usable; each time the callback got [`Change::Everything`].
    pub restarts: u64,
}

/// A running change-stream follower; dropping it stops it.
#[derive(Debug)]
#[must_use = "dropping the follower stops it"]
pub struct ChangeFollower {
    task: tokio::task::JoinHandle<()>,
    state: tokio::sync::watch::Receiver<FollowState>,
    reconnect: Arc<Notify>,
}

impl ChangeFollower {
    /// Waits until the change stream is open (changes made from then on are
    /// seen), or the follower stopped.
    pub async fn opened(&mut self) {
        let _ = self.state.wait_for(|s| s.open).await;
    }

    /// Waits until the change stream is closed (after a failure or
    /// [`reconnect`](Self::reconnect)), or the follower stopped.
    pub async fn closed(&mut self) {
        let _ = self.state.wait_for(|s| !s.open).await;
    }

    /// Waits until at least `events` change events were handed over.
    pub async fn applied(&mut self, events: u64) {
        let _ = self.state.wait_for(|s| s.events >= events).await;
    }

    /// What the follower has done so far.
    pub fn state(&self) -> FollowState {
        *self.state.borrow()
    }

    /// A receiver of the follower's state, told of every change (the stream
    /// opening or closing, events handed over), for a task that acts on
    /// them; it sees the sender closed once the follower stopped.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<FollowState> {
        self.state.clone()
    }

    /// Drops the current stream and, after the usual retry pause, reopens it
    /// from the last event handed over, exactly as after a network failure
    /// (for tests, and for an operator who moved the application to another
    /// server): changes made in between are still handed over.
    pub fn reconnect(&self) {
        self.reconnect.notify_one();
    }
}

impl Drop for ChangeFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MongoStore {
    /// Follows `collection`'s change stream and calls `on_change` for every
    /// change, in the stream's order; an event counts as handed over (and
    /// its resume token is kept) once `on_change` returned. The stream is one
    /// long-lived cursor on the store's client, outside the operation
    /// deadline. Needs a tokio runtime.
    ///
    /// When the stream breaks (a network error, a failover, a server
    /// restart), the follower reopens it with `resume_after` and the token of
    /// the last event handed over. If the server cannot resume from that
    /// token (its history is gone), `on_change` gets [`Change::Everything`]
    /// and the stream starts afresh.
    ///
    /// ```no_run
    /// # async fn demo(store: stratum_store::MongoStore) -> Result<(), stratum_store::StoreError> {
    /// use stratum_store::Change;
    ///
    /// let mut follower = store.follow("conversations", |change| match change {
    ///     Change::Document(id) => println!("{id} changed"),
    ///     _ => println!("anything may have changed"),
    /// })?;
    /// follower.opened().await;
    /// # Ok(()) }
    /// ```
    pub fn follow(
        &self,
        collection: &str,
        on_change: impl Fn(Change) + Send + Sync + 'static,
    ) -> Result<ChangeFollower, StoreError> {
        check_collection_name(collection)?;
        let coll = self.database().collection::<Document>(collection);
        let name = collection.to_owned();
        let uri = self.uri.clone();
        let scrub = move |e: &mongodb::error::Error| match &uri {
            Some(uri) => uri.scrub(&e.to_string()),
            None => crate::uri::scrub(&e.to_string()),
        };
        let (send, state) = tokio::sync::watch::channel(FollowState::default());
        let metrics = FollowMetrics::new(collection);
        let reconnect = Arc::new(Notify::new());
        let asked = Arc::clone(&reconnect);
        let task = tokio::spawn(async move {
            let mut token: Option<ResumeToken> = None;
            loop {
                let resuming = token.is_some();
                let mut open = coll.watch();
                if let Some(token) = token.clone() {
                    open = open.resume_after(token);
                }
                match open.await {
                    Ok(mut stream) => {
                        send.send_modify(|s| {
                            s.open = true;
                            s.resumes += u64::from(resuming);
                        });
                        metrics.open.set(1.0);
                        if resuming {
                            metrics.resumes.increment(1);
                        }
                        // The server may accept `resume_after` and refuse the
                        // token only on the first getMore (SecantusDB after
                        // a restart: error 280, history lost).
                        let mut lost = false;
                        loop {
                            let next = tokio::select! {
                                next = stream.next() => next,
                                () = asked.notified() => break,
                            };
                            let event = match next {
                                Some(Ok(event)) => event,
                                Some(Err(e)) if token.is_some() && token_unusable(&e) => {
                                    tracing::warn!(collection = %name, error = %scrub(&e), "the change stream cannot resume; starting afresh");
                                    lost = true;
                                    break;
                                }
                                Some(Err(e)) => {
                                    tracing::warn!(collection = %name, error = %scrub(&e), "change stream failed; resuming");
                                    break;
                                }
                                None => break,
                            };
                            let change = match event.operation_type {
                                OperationType::Drop
                                | OperationType::DropDatabase
                                | OperationType::Rename
                                | OperationType::Invalidate => Some(Change::Everything),
                                _ => event
                                    .document_key
                                    .as_ref()
                                    .and_then(|k| k.get("_id"))
                                    .map(|id| Change::Document(id.clone())),
                            };
                            let document = matches!(change, Some(Change::Document(_)));
                            if let Some(change) = change {
                                on_change(change);
                            }
                            metrics.events.increment(1);
                            metrics.lag(event.wall_time);
                            // Handed over: resuming from here loses nothing.
                            token = Some(event.id);
                            send.send_modify(|s| {
                                s.events += 1;
                                s.documents += u64::from(document);
                            });
                        }
                        // Only the last handed-over event's token is kept:
                        // the driver's `resume_token()` may not be read after
                        // a `next()` was cancelled (driver 3.9 panics), and a
                        // post-batch token would only save replaying events
                        // that are already handed over.
                        send.send_modify(|s| s.open = false);
                        metrics.open.set(0.0);
                        if lost {
                            token = None;
                            start_afresh(&on_change, &send, &metrics);
                            continue;
                        }
                    }
                    Err(e) if resuming && token_unusable(&e) => {
                        tracing::warn!(
                            collection = %name,
                            error = %scrub(&e),
                            "the change stream cannot resume; starting afresh"
                        );
                        token = None;
                        start_afresh(&on_change, &send, &metrics);
                        continue;
                    }
                    Err(e) => tracing::warn!(
                        collection = %name,
                        error = %scrub(&e),
                        "no change stream (a standalone server, or unreachable); retrying"
                    ),
                }
                tokio::time::sleep(RETRY).await;
            }
        });
        Ok(ChangeFollower {
            task,
            state,
            reconnect,
        })
    }
}

/// The events since the last one handed over are lost: anything in the
/// collection may have changed.
fn start_afresh(
    on_change: &impl Fn(Change),
    send: &tokio::sync::watch::Sender<FollowState>,
    metrics: &FollowMetrics,
) {
    on_change(Change::Everything);
    send.send_modify(|s| s.restarts += 1);
    metrics.restarts.increment(1);
}

/// Whether the server refused the resume token itself (rather than being
/// unreachable, when the token stays good for the next attempt).
fn token_unusable(error: &mongodb::error::Error) -> bool {
    matches!(error.kind.as_ref(), ErrorKind::Command(e) if TOKEN_UNUSABLE.contains(&e.code))
}

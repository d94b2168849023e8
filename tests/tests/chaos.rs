//! Fault drills with real processes: each drill starts its own SecantusDB
//! server ([`ServerProcess`]), puts the facade (`Stratum`, `Repository<T>`
//! over `MongoStore`) in front of it with short breaker windows and
//! timeouts, and then kills (SIGKILL), freezes (SIGSTOP) or resumes
//! (SIGCONT) the process while calls are in flight.
//!
//! Assertions are on states, counts and configured bounds, never on speed:
//! a call must come back within its configured timeouts plus [`SLACK`] (a
//! hang fails the drill; a busy machine does not), the breaker's transitions
//! are read from its log, and every acknowledged write is looked up with the
//! raw driver afterwards. Each drill prints its measured figures as
//! `chaos figure:` lines; `cargo xtask chaos` runs the drills one at a time
//! and collects them (`docs/reliability.md`, "Faults").
//!
//! Durability: SecantusDB acknowledges a write before its journal record
//! reaches the file system unless it runs with `--sync-on-commit` (it
//! accepts `j: true` but does not wait for the journal), so a SIGKILL can
//! lose acknowledged writes (see `the_servers_default_durability_under_sigkill`).
//! The drills run it with `--sync-on-commit` and write with
//! `w=majority&journal=true`, what a real `mongod` needs for the same promise.

// The drill helpers below are test code outside #[test] functions.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document as BsonDocument, RawDocumentBuf, doc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use stratum::breaker::{State, TransitionReason};
use stratum::models::Document;
use stratum::{
    BreakerTransition, Filter, Origin, Query, Repository, RepositoryError, Store, StoreError,
    Stratum, StratumConfig, Update,
};
use stratum_tests::server::ServerProcess;

/// Room on top of a configured timeout before a call counts as hung: wide,
/// so a loaded 2-core machine never fails a drill, and finite, so a call
/// that ignores its timeout does.
const SLACK: Duration = Duration::from_secs(5);
/// A call still running after this long is recorded as hung (and fails the
/// drill) instead of blocking the test.
const HANG: Duration = Duration::from_secs(60);
/// How long the drills wait for a state they expect (the breaker opening,
/// closing) before failing.
const EXPECT_WITHIN: Duration = Duration::from_secs(30);

/// The document the drills write and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    #[serde(rename = "_id")]
    id: i64,
    value: i64,
}

impl Reading {
    fn new(id: i64) -> Reading {
        Reading { id, value: id * 7 }
    }
}

impl Document for Reading {
    const COLLECTION: &'static str = "readings";
    const SCHEMA_VERSION: i32 = 1;
    type Id = i64;

    fn id(&self) -> &i64 {
        &self.id
    }
}

/// Prints one measured figure for `cargo xtask chaos` to collect.
// The figures are the drills' report: stdout is where they belong.
#[allow(clippy::print_stdout)]
fn figure(drill: &str, name: &str, value: impl Display) {
    println!("chaos figure: {drill}: {name} = {value}");
}

/// The breaker's path, e.g. `closed -> open (failure_rate), open -> half_open (wait_elapsed)`.
fn path(transitions: &[BreakerTransition]) -> String {
    let steps: Vec<String> = transitions
        .iter()
        .map(|t| {
            format!(
                "{} -> {} ({})",
                t.from.as_str(),
                t.to.as_str(),
                t.reason.as_str()
            )
        })
        .collect();
    steps.join(", ")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Starts a server with durable commits (see the module docs).
fn durable_server() -> ServerProcess {
    ServerProcess::start_with_args(&["--sync-on-commit"]).expect("a drill server starts")
}

/// The facade's configuration for a drill: the server's URI with durable
/// writes, a fresh database, short timeouts and a small breaker window;
/// `change` adjusts it per drill.
fn drill_config(
    server: &ServerProcess,
    label: &str,
    change: impl FnOnce(&mut StratumConfig) + Send + 'static,
) -> StratumConfig {
    let database = stratum_tests::unique_name(label);
    StratumConfig::builder()
        .mongodb_uri(format!("{}&w=majority&journal=true", server.uri()))
        .configure(move |c| {
            c.mongodb.database = database;
            c.mongodb.connect_timeout = Duration::from_millis(500);
            c.mongodb.server_selection_timeout = Duration::from_millis(500);
            c.mongodb.operation_timeout = Duration::from_secs(1);
            c.breaker.sliding_window = stratum::breaker::SlidingWindow::CountBased { size: 20 };
            c.breaker.minimum_number_of_calls = 10;
            c.breaker.failure_rate_threshold = 50.0;
            c.breaker.wait_in_open = stratum::breaker::OpenWait::Constant {
                wait: Duration::from_millis(500),
            };
            c.breaker.permitted_calls_in_half_open = 2;
            c.cache.time_to_live = Some(Duration::from_millis(100));
            c.cache.max_stale = Some(Duration::from_secs(60));
            c.pool.max_size = 8;
            c.pool.acquire_timeout = Duration::from_secs(1);
            change(c);
        })
        .build()
        .expect("the drill configuration is valid")
}

/// The longest a call may take by configuration: a slot, then the store
/// call under its deadline.
fn configured_bound(config: &StratumConfig) -> Duration {
    config.pool.acquire_timeout + config.mongodb.operation_timeout
}

/// A store wrapper that counts the calls that reached the database and
/// those that failed in a way the breaker records as a failure.
struct Counting<S> {
    inner: S,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl<S: Store> Counting<S> {
    fn new(inner: S) -> Counting<S> {
        Counting {
            inner,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    fn count<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result
            && e.is_breaker_failure()
        {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

#[async_trait]
impl<S: Store> Store for Counting<S> {
    async fn get(&self, c: &str, id: &Bson) -> Result<Option<BsonDocument>, StoreError> {
        self.count(self.inner.get(c, id).await)
    }
    async fn find(&self, c: &str, q: &Query) -> Result<Vec<BsonDocument>, StoreError> {
        self.count(self.inner.find(c, q).await)
    }
    // Forwarded, so the drills read and write through MongoStore's encoded
    // paths, as a repository does without this wrapper.
    async fn get_raw(&self, c: &str, id: &Bson) -> Result<Option<RawDocumentBuf>, StoreError> {
        self.count(self.inner.get_raw(c, id).await)
    }
    async fn insert_raw(&self, c: &str, d: RawDocumentBuf) -> Result<Bson, StoreError> {
        self.count(self.inner.insert_raw(c, d).await)
    }
    async fn insert(&self, c: &str, d: BsonDocument) -> Result<Bson, StoreError> {
        self.count(self.inner.insert(c, d).await)
    }
    async fn update(&self, c: &str, id: &Bson, u: &Update) -> Result<BsonDocument, StoreError> {
        self.count(self.inner.update(c, id, u).await)
    }
    async fn upsert(&self, c: &str, id: &Bson, u: &Update) -> Result<BsonDocument, StoreError> {
        self.count(self.inner.upsert(c, id, u).await)
    }
    async fn delete(&self, c: &str, id: &Bson) -> Result<bool, StoreError> {
        self.count(self.inner.delete(c, id).await)
    }
    async fn count(&self, c: &str, f: &Filter) -> Result<u64, StoreError> {
        self.count(self.inner.count(c, f).await)
    }
    async fn ensure_index(&self, c: &str, i: &stratum::IndexSpec) -> Result<(), StoreError> {
        self.count(self.inner.ensure_index(c, i).await)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.count(self.inner.ping().await)
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// A drill's stack: the server, the facade over it, and the counter of
/// calls that reached the database.
struct Drill {
    server: ServerProcess,
    config: StratumConfig,
    stratum: Stratum,
    readings: Repository<Reading>,
    counts: Counted,
}

/// The facade's store, wrapped to count the calls that reach it.
type Counted = Arc<Counting<Arc<dyn Store>>>;

impl Drill {
    async fn open(server: ServerProcess, config: StratumConfig) -> Drill {
        let counts: Arc<Mutex<Option<Counted>>> = Arc::default();
        let slot = Arc::clone(&counts);
        let stratum = Stratum::builder(config.clone())
            .open_wrapped(move |store| {
                let counting = Arc::new(Counting::new(store));
                *slot.lock() = Some(Arc::clone(&counting));
                counting
            })
            .await
            .expect("the facade opens over the drill server");
        let counts = counts.lock().take().expect("open_wrapped ran the wrapper");
        let readings = stratum.repository::<Reading>().expect("a repository");
        // The driver finds the fresh server in the background: wait for it
        // (straight to the store, past the breaker) before the drill counts.
        let started = Instant::now();
        while let Err(e) = stratum.store().ping().await {
            assert!(
                started.elapsed() < EXPECT_WITHIN,
                "the drill server does not answer: {e}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Drill {
            server,
            config,
            stratum,
            readings,
            counts,
        }
    }

    fn transitions(&self) -> Vec<BreakerTransition> {
        self.stratum.breaker_transitions().1
    }

    fn state(&self) -> State {
        self.stratum.breaker().expect("the breaker is on").state()
    }

    /// The stack's clock now (the time base of the transition log).
    fn now(&self) -> Duration {
        self.stratum.clock().now()
    }

    /// Polls until `done` holds; fails the drill after [`EXPECT_WITHIN`].
    async fn wait_for(&self, what: &str, mut done: impl FnMut(&Drill) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < EXPECT_WITHIN,
                "{what} did not happen within {EXPECT_WITHIN:?}; transitions: {:?}",
                self.transitions()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The first transition to `to` at or after `since` (stack clock).
    fn first_transition(&self, to: State, since: Duration) -> Option<BreakerTransition> {
        self.transitions()
            .into_iter()
            .find(|t| t.to == to && t.at >= since)
    }

    /// Every `_id` in the drill's collection, read with the raw driver on a
    /// client of its own (not through the facade under test).
    async fn stored_ids(&self) -> HashSet<i64> {
        let client = mongodb::Client::with_uri_str(self.server.uri())
            .await
            .expect("a raw driver client");
        let coll = client
            .database(&self.config.mongodb.database)
            .collection::<BsonDocument>(Reading::COLLECTION);
        let docs: Vec<BsonDocument> = coll
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .await
            .expect("find all ids")
            .try_collect()
            .await
            .expect("read all ids");
        docs.iter()
            .map(|d| d.get_i64("_id").expect("an i64 id"))
            .collect()
    }
}

/// What one call through the facade came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered by the database or a fresh cache entry.
    Ok,
    /// A stale cache entry, served because the database could not be asked.
    Stale,
    /// A typed error, by `RepositoryError::kind`.
    Err(&'static str),
    /// Still running after [`HANG`].
    Hung,
}

/// Where the drill was when a call started or ended.
const HEALTHY: u8 = 0;
const DOWN: u8 = 1;
const RECOVERED: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Call {
    /// The document's id.
    id: i64,
    /// An insert (else a read by id).
    write: bool,
    started_in: u8,
    ended_in: u8,
    elapsed: Duration,
    outcome: Outcome,
}

impl Call {
    fn during_outage(&self) -> bool {
        self.started_in == DOWN || self.ended_in == DOWN
    }
}

/// Every call the load made, and the phase the drill is in.
#[derive(Default)]
struct Load {
    calls: Mutex<Vec<Call>>,
    phase: AtomicU8,
    stop: AtomicBool,
}

impl Load {
    /// Runs `call`, timing it, with [`HANG`] as the last resort.
    async fn record<T>(
        &self,
        id: i64,
        write: bool,
        call: impl Future<Output = Result<T, RepositoryError>>,
        ok: impl FnOnce(&T) -> Outcome,
    ) -> Outcome {
        let started_in = self.phase.load(Ordering::SeqCst);
        let started = Instant::now();
        let outcome = match tokio::time::timeout(HANG, call).await {
            Ok(Ok(value)) => ok(&value),
            Ok(Err(e)) => Outcome::Err(e.kind()),
            Err(_) => Outcome::Hung,
        };
        self.calls.lock().push(Call {
            id,
            write,
            started_in,
            ended_in: self.phase.load(Ordering::SeqCst),
            elapsed: started.elapsed(),
            outcome,
        });
        outcome
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
    }
}

fn read_outcome(read: &stratum::Read<Reading>) -> Outcome {
    match read.origin {
        Origin::Stale { .. } => Outcome::Stale,
        Origin::Cache | Origin::Store => Outcome::Ok,
    }
}

/// Starts `writers` tasks inserting new readings (ids from `next_id`) and
/// `readers` tasks reading the `hot` ids (read before, so cached) and ids
/// never read (cold: every such read asks the database), each pausing
/// `pace` between calls, until `load.stop` is set.
fn start_load(
    drill: &Drill,
    load: &Arc<Load>,
    writers: usize,
    readers: usize,
    hot: i64,
    pace: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let next_id = Arc::new(AtomicI64::new(1_000_000));
    let cold_id = Arc::new(AtomicI64::new(-1));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (repo, load, next_id) = (drill.readings.clone(), Arc::clone(load), next_id.clone());
        tasks.push(tokio::spawn(async move {
            while !load.stop.load(Ordering::SeqCst) {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                load.record(id, true, repo.insert(&Reading::new(id)), |()| Outcome::Ok)
                    .await;
                tokio::time::sleep(pace).await;
            }
        }));
    }
    for r in 0..readers {
        let (repo, load, cold_id) = (drill.readings.clone(), Arc::clone(load), cold_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = r as i64;
            while !load.stop.load(Ordering::SeqCst) {
                let id = if n % 2 == 0 {
                    n % hot
                } else {
                    cold_id.fetch_sub(1, Ordering::Relaxed)
                };
                n += 1;
                load.record(id, false, repo.get(&id), read_outcome).await;
                tokio::time::sleep(pace).await;
            }
        }));
    }
    tasks
}

fn count(calls: &[Call], pred: impl Fn(&Call) -> bool) -> usize {
    calls.iter().filter(|c| pred(c)).count()
}

fn max_elapsed(calls: &[Call], pred: impl Fn(&Call) -> bool) -> Duration {
    calls
        .iter()
        .filter(|c| pred(c))
        .map(|c| c.elapsed)
        .max()
        .unwrap_or_default()
}

/// Every call came back, within its configured bound plus [`SLACK`].
fn assert_bounded(calls: &[Call], bound: Duration) {
    let hung = count(calls, |c| c.outcome == Outcome::Hung);
    assert_eq!(hung, 0, "{hung} calls hung past {HANG:?}");
    let worst = max_elapsed(calls, |_| true);
    assert!(
        worst <= bound + SLACK,
        "a call took {worst:?}, past its configured bound {bound:?} plus {SLACK:?}"
    );
}

/// Kinds of the errors among `calls`, most frequent first, for a figure.
fn error_kinds(calls: &[Call]) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for call in calls {
        if let Outcome::Err(kind) = call.outcome {
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((kind, 1)),
            }
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    let text: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if text.is_empty() {
        "none".into()
    } else {
        text.join(", ")
    }
}

/// What an outage drill saw: every call, the breaker's opening and
/// closing, and the acknowledged writes checked against the database.
struct Outage {
    calls: Vec<Call>,
    /// When the fault was applied, on the stack's clock.
    faulted_at: Duration,
    opened: BreakerTransition,
    /// When the server was back (restarted or resumed), on the stack's clock.
    recovered_at: Duration,
    closed: BreakerTransition,
    /// Database calls that failed between the fault and the opening.
    failed_until_open: u64,
    acknowledged: Vec<i64>,
    /// Acknowledged writes the database does not hold afterwards.
    lost: Vec<i64>,
}

impl Outage {
    /// The calls that started or ended while the server was down.
    fn during(&self) -> Vec<Call> {
        self.calls
            .iter()
            .copied()
            .filter(Call::during_outage)
            .collect()
    }

    /// Prints the figures every outage drill measures; `fault` and
    /// `recovery` name what was done to the server.
    fn report(&self, d: &str, drill: &Drill, fault: &str, recovery: &str) {
        let during = self.during();
        let after = self.after();
        figure(d, "calls made", self.calls.len());
        figure(d, "calls during the outage", during.len());
        figure(d, "errors during the outage", error_kinds(&during));
        figure(
            d,
            "stale reads served during the outage",
            count(&during, |c| c.outcome == Outcome::Stale),
        );
        figure(
            d,
            &format!("time from {fault} to open"),
            ms(self.opened.at - self.faulted_at),
        );
        figure(
            d,
            "max call latency during the outage",
            ms(max_elapsed(&during, |_| true)),
        );
        figure(
            d,
            "configured bound (acquire + operation timeout)",
            ms(configured_bound(&drill.config)),
        );
        figure(
            d,
            &format!("time from {recovery} to closed"),
            ms(self.closed.at - self.recovered_at),
        );
        figure(
            d,
            "calls after recovery (ok / failed)",
            format!(
                "{} / {}",
                count(&after, |c| c.outcome == Outcome::Ok),
                count(&after, |c| matches!(c.outcome, Outcome::Err(_)))
            ),
        );
        figure(
            d,
            "acknowledged writes (lost)",
            format!("{} ({})", self.acknowledged.len(), self.lost.len()),
        );
        figure(d, "breaker path", path(&drill.transitions()));
    }

    /// The calls that started after the breaker closed again.
    fn after(&self) -> Vec<Call> {
        self.calls
            .iter()
            .copied()
            .filter(|c| c.started_in == RECOVERED)
            .collect()
    }
}

/// The shape of drills (a) and (b): `hot` documents inserted and read (so
/// cached); `writers` and `readers` running (see [`start_load`]); after
/// `healthy_for`, `fault` applied to the server; `down_for` after the
/// breaker opened, `recover` applied; 300 ms of load after it closed.
async fn outage(
    drill: &mut Drill,
    hot: i64,
    (writers, readers): (usize, usize),
    healthy_for: Duration,
    fault: impl FnOnce(&mut ServerProcess),
    down_for: Duration,
    recover: impl FnOnce(&mut ServerProcess),
) -> Outage {
    for id in 0..hot {
        drill.readings.insert(&Reading::new(id)).await.unwrap();
        drill.readings.get(&id).await.unwrap();
    }
    let load = Arc::new(Load::default());
    let tasks = start_load(
        drill,
        &load,
        writers,
        readers,
        hot,
        Duration::from_millis(2),
    );
    tokio::time::sleep(healthy_for).await;

    let faulted_at = drill.now();
    let failures_before = drill.counts.failures.load(Ordering::SeqCst);
    load.set_phase(DOWN);
    fault(&mut drill.server);
    drill
        .wait_for("the breaker opening", |d| {
            d.first_transition(State::Open, faulted_at).is_some()
        })
        .await;
    let failed_until_open = drill.counts.failures.load(Ordering::SeqCst) - failures_before;
    let opened = drill.first_transition(State::Open, faulted_at).unwrap();
    // Down for a while: the breaker refuses, probes fail, stale reads serve.
    tokio::time::sleep(down_for).await;

    recover(&mut drill.server);
    let recovered_at = drill.now();
    drill
        .wait_for("the breaker closing after the recovery", |d| {
            d.state() == State::Closed && d.first_transition(State::Closed, recovered_at).is_some()
        })
        .await;
    let closed = drill.first_transition(State::Closed, recovered_at).unwrap();
    load.set_phase(RECOVERED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    load.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }

    let calls = load.calls();
    let acknowledged: Vec<i64> = calls
        .iter()
        .filter(|c| c.write && c.outcome == Outcome::Ok)
        .map(|c| c.id)
        .collect();
    let stored = drill.stored_ids().await;
    let lost = acknowledged
        .iter()
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    Outage {
        calls,
        faulted_at,
        opened,
        recovered_at,
        closed,
        failed_until_open,
        acknowledged,
        lost,
    }
}

/// What every outage drill asserts: no call hung or overran its bound,
/// nothing acknowledged was lost, every call after the recovery
/// succeeded, and the pool is whole.
fn assert_recovered(drill: &Drill, outage: &Outage) {
    assert_bounded(&outage.calls, configured_bound(&drill.config));
    assert!(!outage.acknowledged.is_empty());
    assert!(
        outage.lost.is_empty(),
        "{} acknowledged writes are missing after the recovery: {:?}",
        outage.lost.len(),
        outage.lost
    );
    let after = outage.after();
    assert!(
        after.iter().any(|c| c.outcome == Outcome::Ok),
        "no call succeeded after the recovery: {}",
        error_kinds(&after)
    );
    let status = drill.stratum.pool_status().unwrap();
    assert_eq!((status.in_use, status.waiting), (0, 0), "{status:?}");
}

/// Full recovery, checked once the load has stopped: writes and reads go
/// through. (Right after the recovery, a call may still time out while the
/// server works off what queued up; the drills report those as a figure.)
async fn assert_serves(drill: &Drill) {
    for id in 3_000_000..3_000_010 {
        drill.readings.insert(&Reading::new(id)).await.unwrap();
        let read = drill.readings.get(&id).await.unwrap();
        assert_eq!(read.value.as_deref(), Some(&Reading::new(id)));
    }
    assert_eq!(drill.state(), State::Closed);
}

/// (a) SIGKILL mid-load, then a restart on the same port and data folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_opens_the_breaker_and_loses_no_acknowledged_write() {
    const D: &str = "kill";
    let server = durable_server();
    let config = drill_config(&server, "chaos_kill", |_| {});
    let mut drill = Drill::open(server, config).await;
    let o = outage(
        &mut drill,
        16,
        (4, 4),
        Duration::from_millis(400),
        ServerProcess::kill,
        Duration::from_millis(1500),
        |s| s.restart().expect("the server restarts"),
    )
    .await;

    let during = o.during();
    let refused = count(&during, |c| c.outcome == Outcome::Err("not_permitted"));
    let stale = count(&during, |c| c.outcome == Outcome::Stale);
    // Reads of documents read before the kill: answered, fresh or stale.
    let hot_reads_failed: Vec<Call> = o
        .calls
        .iter()
        .copied()
        .filter(|c| !c.write && c.id >= 0 && matches!(c.outcome, Outcome::Err(_)))
        .collect();
    let transitions = drill.transitions();
    o.report(D, &drill, "SIGKILL", "restart");
    figure(
        D,
        "calls before the kill",
        count(&o.calls, |c| c.started_in == HEALTHY),
    );
    figure(D, "failed database calls until open", o.failed_until_open);

    assert_eq!(
        o.opened.reason,
        TransitionReason::FailureRate,
        "{transitions:?}"
    );
    // Count-based window: it opens once failures reach the threshold share
    // of at most `window_size` calls; calls in flight when it opened (at
    // most one per task) may add to the count.
    let stratum::breaker::SlidingWindow::CountBased { size: window } =
        drill.config.breaker.sliding_window
    else {
        panic!("the drill configures a count-based window");
    };
    assert!(
        o.failed_until_open <= u64::from(window) + 8,
        "{} failed calls before the breaker opened",
        o.failed_until_open
    );
    assert!(
        refused > 0,
        "no call was refused while the breaker was open"
    );
    assert!(stale > 0, "no stale read was served during the outage");
    assert!(
        hot_reads_failed.is_empty(),
        "reads of cached documents failed instead of being served stale: {hot_reads_failed:?}"
    );
    assert!(
        transitions
            .iter()
            .any(|t| t.from == State::HalfOpen && t.to == State::Closed && t.at >= o.recovered_at),
        "the breaker never closed through half-open after the restart: {transitions:?}"
    );
    assert_recovered(&drill, &o);
    assert_serves(&drill).await;
}

/// (b) SIGSTOP mid-load: connections stay open and nothing answers; then SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_a_frozen_server_times_calls_out_and_recovers_after_sigcont() {
    const D: &str = "freeze";
    let server = durable_server();
    let config = drill_config(&server, "chaos_freeze", |c| {
        c.mongodb.operation_timeout = Duration::from_millis(500);
    });
    let mut drill = Drill::open(server, config).await;
    let o = outage(
        &mut drill,
        8,
        (2, 2),
        Duration::from_millis(200),
        |s| s.freeze().expect("SIGSTOP"),
        Duration::from_millis(1000),
        |s| s.resume().expect("SIGCONT"),
    )
    .await;

    let during = o.during();
    let timeouts = count(&during, |c| c.outcome == Outcome::Err("timeout"));
    o.report(D, &drill, "SIGSTOP", "SIGCONT");

    assert!(
        timeouts > 0,
        "no call failed with a typed timeout while the server was frozen: {}",
        error_kinds(&during)
    );
    assert_recovered(&drill, &o);
    assert_serves(&drill).await;
}

/// (c) More callers than admission slots, with a short acquire timeout.
///
/// Two callers take both slots and wait on a frozen server; eight more then
/// ask for a slot: each gets a typed `Overloaded` after the acquire timeout
/// and the database is not called for them. After SIGCONT the two holders
/// get their answers, and the pool is whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_pool_exhaustion_gives_typed_timeouts_and_full_recovery() {
    const D: &str = "pool";
    const HOLDERS: usize = 2;
    const WAITERS: usize = 8;
    let server = durable_server();
    let config = drill_config(&server, "chaos_pool", |c| {
        c.pool.max_size = HOLDERS;
        c.pool.acquire_timeout = Duration::from_millis(200);
        // The holders wait for the frozen server, well past the waiters' timeout.
        c.mongodb.operation_timeout = Duration::from_secs(20);
        c.mongodb.connect_timeout = Duration::from_secs(20);
        c.mongodb.server_selection_timeout = Duration::from_secs(20);
        c.cache.enabled = false;
    });
    let acquire_timeout = config.pool.acquire_timeout;
    let drill = Drill::open(server, config).await;
    for id in 0..4 {
        drill.readings.insert(&Reading::new(id)).await.unwrap();
    }
    let timeouts_before = drill.stratum.pool_stats().unwrap().timeouts;
    let refused_before = refused(&drill);

    drill.server.freeze().expect("SIGSTOP");
    let mut holders: Vec<_> = (0..HOLDERS as i64)
        .map(|id| {
            let repo = drill.readings.clone();
            tokio::spawn(async move { repo.get(&id).await })
        })
        .collect();
    // Both slots held by calls the frozen server does not answer.
    let started = Instant::now();
    while drill.stratum.pool_status().unwrap().in_use < HOLDERS {
        if let Some(i) = (0..HOLDERS).find(|&i| holders[i].is_finished()) {
            let early = holders.swap_remove(i).await.unwrap();
            panic!("a holder came back from the frozen server: {early:?}");
        }
        assert!(
            started.elapsed() < EXPECT_WITHIN,
            "the holders never took both slots"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let database_calls_before = drill.counts.calls.load(Ordering::SeqCst);
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let repo = drill.readings.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = tokio::time::timeout(HANG, repo.get(&3)).await;
                (result, started.elapsed())
            })
        })
        .collect();
    let mut overloaded = 0;
    let mut worst = Duration::ZERO;
    let mut message = String::new();
    for waiter in waiters {
        let (result, elapsed) = waiter.await.unwrap();
        worst = worst.max(elapsed);
        match result.expect("a waiter hung") {
            Err(RepositoryError::Overloaded { message: m }) => {
                overloaded += 1;
                message = m;
            }
            other => {
                let early: Vec<_> = holders.iter().map(|h| h.is_finished()).collect();
                for h in holders.drain(..) {
                    if h.is_finished() {
                        eprintln!("holder result: {:?}", h.await);
                    }
                }
                panic!("expected Overloaded, got {other:?}; holders finished: {early:?}")
            }
        }
    }
    let database_calls_during = drill.counts.calls.load(Ordering::SeqCst) - database_calls_before;
    let status_exhausted = drill.stratum.pool_status().unwrap();

    drill.server.resume().expect("SIGCONT");
    let mut held_ok = 0;
    for holder in holders {
        let read = holder
            .await
            .unwrap()
            .expect("a holder is answered after SIGCONT");
        assert!(read.value.is_some());
        held_ok += 1;
    }
    // Full recovery: the slots are back, and calls go through.
    assert_serves(&drill).await;
    let status = drill.stratum.pool_status().unwrap();
    let timeouts = drill.stratum.pool_stats().unwrap().timeouts - timeouts_before;
    let refusals = refused(&drill) - refused_before;

    figure(D, "admission slots", HOLDERS);
    figure(D, "callers waiting for a slot", WAITERS);
    figure(D, "typed Overloaded errors", overloaded);
    figure(D, "error message", &message);
    figure(D, "max waiter latency", ms(worst));
    figure(D, "configured acquire timeout", ms(acquire_timeout));
    figure(
        D,
        "database calls made for the waiters",
        database_calls_during,
    );
    figure(D, "holders answered after SIGCONT", held_ok);
    figure(D, "pool acquire timeouts counted", timeouts);
    figure(D, "refused by the concurrency limit", refusals);
    figure(
        D,
        "pool after recovery (in use / waiting / size)",
        format!("{} / {} / {}", status.in_use, status.waiting, status.size),
    );

    assert_eq!(overloaded, WAITERS);
    assert!(
        worst <= acquire_timeout + SLACK,
        "a waiter took {worst:?}, past the acquire timeout {acquire_timeout:?} plus {SLACK:?}"
    );
    assert_eq!(
        database_calls_during, 0,
        "a refused caller reached the database"
    );
    assert_eq!(status_exhausted.in_use, HOLDERS);
    // The concurrency limit (its ceiling is pool.max_size) refuses them
    // after its bounded wait, before they queue for a pool slot.
    assert_eq!(refusals, WAITERS as u64);
    assert_eq!(timeouts, 0);
    assert_eq!((status.in_use, status.waiting), (0, 0), "{status:?}");
    // Waiting for a slot says nothing about the database's health.
    assert_eq!(drill.state(), State::Closed);
    assert!(drill.transitions().is_empty(), "{:?}", drill.transitions());
}

/// Callers the admission's concurrency limit refused so far.
fn refused(drill: &Drill) -> u64 {
    let limit = drill.stratum.limit_status().expect("admission is on");
    limit.rejected_standing_queue + limit.rejected_queue_timeout
}

/// (d) Slow responses: the breaker opens on its slow-call rate although every
/// call succeeds.
///
/// The slowness is real and server-side: the server process is paused with
/// SIGSTOP while four reads are in flight and resumed with SIGCONT after
/// four times the slow-call threshold, so every read gets its complete,
/// correct answer, late (what a stalled disk, a long GC-like pause or a
/// saturated host looks like to a client). SecantusDB has no `$where` or
/// sleep command to slow one query down, and `FaultyStore`'s injected
/// latency would be the client delaying itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_slow_responses_trip_the_breaker_on_its_slow_call_rate() {
    const D: &str = "slow";
    const SLOW_CALLS: usize = 4;
    let server = durable_server();
    let config = drill_config(&server, "chaos_slow", |c| {
        c.mongodb.operation_timeout = Duration::from_secs(20);
        c.mongodb.connect_timeout = Duration::from_secs(20);
        c.mongodb.server_selection_timeout = Duration::from_secs(20);
        c.breaker.sliding_window = stratum::breaker::SlidingWindow::CountBased {
            size: SLOW_CALLS as u32,
        };
        c.breaker.minimum_number_of_calls = SLOW_CALLS as u32;
        c.breaker.slow_call_duration_threshold = Duration::from_millis(100);
        // Every call in the window slow: it opens on the last slow answer,
        // and stays open long enough to see it refuse.
        c.breaker.slow_call_rate_threshold = 100.0;
        c.breaker.wait_in_open = stratum::breaker::OpenWait::Constant {
            wait: Duration::from_secs(1),
        };
        c.cache.enabled = false;
    });
    let slow_threshold = config.breaker.slow_call_duration_threshold;
    let drill = Drill::open(server, config).await;
    for id in 0..SLOW_CALLS as i64 {
        drill.readings.insert(&Reading::new(id)).await.unwrap();
    }
    assert_eq!(drill.state(), State::Closed);

    drill.server.freeze().expect("SIGSTOP");
    let paused_at = drill.now();
    let reads: Vec<_> = (0..SLOW_CALLS as i64)
        .map(|id| {
            let repo = drill.readings.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = tokio::time::timeout(HANG, repo.get(&id)).await;
                (result, started.elapsed())
            })
        })
        .collect();
    // Every read holds a slot: each was sent (or is being sent) to the frozen server.
    drill
        .wait_for("every read admitted", |d| {
            d.stratum.pool_status().unwrap().in_use == SLOW_CALLS
        })
        .await;
    tokio::time::sleep(slow_threshold * 4).await;
    drill.server.resume().expect("SIGCONT");
    let mut latencies = Vec::new();
    for read in reads {
        let (result, elapsed) = read.await.unwrap();
        let read = result
            .expect("a slow read hung")
            .expect("a slow read succeeds");
        assert!(read.value.is_some());
        latencies.push(elapsed);
    }
    let opened = drill.first_transition(State::Open, paused_at);
    // Open now: refused without calling the database (unless the open wait
    // already ran out on a very busy machine, which the log would show).
    let database_calls = drill.counts.calls.load(Ordering::SeqCst);
    let refused = drill.readings.get(&0).await;
    let refused_without_call = matches!(refused, Err(RepositoryError::NotPermitted { .. }))
        && drill.counts.calls.load(Ordering::SeqCst) == database_calls;
    let wait_elapsed = drill
        .transitions()
        .iter()
        .any(|t| t.reason == TransitionReason::WaitElapsed);
    // Half-open decides on probe calls: keep reading until the probes
    // (answered at the server's normal speed) have closed it.
    let started = Instant::now();
    while drill.first_transition(State::Closed, paused_at).is_none() {
        assert!(
            started.elapsed() < EXPECT_WITHIN,
            "the breaker did not close on fast probes: {:?}",
            drill.transitions()
        );
        let _ = drill.readings.get(&1).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = drill.first_transition(State::Closed, paused_at).unwrap();
    for id in 0..SLOW_CALLS as i64 {
        assert!(drill.readings.get(&id).await.unwrap().value.is_some());
    }

    figure(D, "slow-call threshold", ms(slow_threshold));
    figure(
        D,
        "slow read latencies (min / max)",
        format!(
            "{} / {}",
            ms(*latencies.iter().min().unwrap()),
            ms(*latencies.iter().max().unwrap())
        ),
    );
    figure(
        D,
        "opened by",
        opened.map_or("not opened".into(), |t| t.reason.as_str().to_owned()),
    );
    figure(
        D,
        "next call refused without a database call",
        refused_without_call,
    );
    figure(
        D,
        "time from open to closed (open wait, then probes)",
        ms(closed.at.saturating_sub(opened.map_or(closed.at, |t| t.at))),
    );
    figure(D, "breaker path", path(&drill.transitions()));

    let opened = opened.expect("the slow calls opened the breaker");
    assert_eq!(opened.reason, TransitionReason::SlowCallRate);
    assert!(
        refused_without_call || wait_elapsed,
        "the open breaker let a call through: {refused:?}"
    );
    assert!(
        drill
            .transitions()
            .iter()
            .any(|t| t.from == State::HalfOpen && t.to == State::Closed),
        "{:?}",
        drill.transitions()
    );
}

/// Slows the server process down without stopping it for good: SIGSTOP for
/// `stopped`, SIGCONT for `running`, over and over until `stop` is set (and
/// always ending on SIGCONT). The server answers every call, at a fraction
/// of its speed: what a saturated host looks like to its clients.
fn throttle(
    pid: u32,
    stopped: Duration,
    running: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let signal = move |name: &str| {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} {pid} failed");
    };
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            signal("STOP");
            std::thread::sleep(stopped);
            signal("CONT");
            std::thread::sleep(running);
        }
        signal("CONT");
    })
}

/// One sample of the concurrency limit, at `at` since the drill started.
#[derive(Debug, Clone, Copy)]
struct LimitSample {
    at: Duration,
    limit: usize,
}

/// (d) Slow responses, seen by the adaptive concurrency limit: the stack's
/// limit (`pool.limit`, here between 16 and 128) under a steady read load
/// falls while the server is slowed, and rises again once it is not.
///
/// The slowdown is server-side, as in the slow-call drill: the process is
/// stopped 40 ms of every 50 ms (SIGSTOP/SIGCONT), so it runs a fifth of
/// the time and every call still gets its answer. The breaker and the cache
/// are off so every read is a database call the limit times; the no-load
/// latency is re-measured every 60 s instead of every 10 s, so no
/// re-measurement falls inside the drill (one during the slowdown would
/// make the slow latency the new normal, which is what it is for, but not
/// what this drill measures). Asserts the direction (the limit is above its
/// floor before, reaches the floor while slowed, and rises above it after),
/// never the speed; the speeds are the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_slow_server_lowers_the_concurrency_limit_and_recovery_raises_it() {
    const D: &str = "slow limit";
    const READERS: usize = 64;
    const DOCUMENTS: i64 = 1_000;
    let server = ServerProcess::start().expect("a drill server starts");
    let config = drill_config(&server, "chaos_slow_limit", |c| {
        c.pool = StratumConfig::default().pool;
        c.pool.limit.probe_interval = Duration::from_secs(60);
        // Floor and initial at 16: 64 readers without a cache at a healthy
        // server complete as many calls at 4 in flight as at 16, and the
        // stack's floor of 4 would send the limit there before the
        // slowdown. The slowed server completes a few dozen calls per
        // window, too thin to take the limit below the initial (24 in the
        // stack), so the floor is the initial; at 24 the limit sat one
        // step above it (27) and fell in one window. At 16 the climber
        // moves it a few steps above 16 first (16-25 with the goodput
        // climber, 16-22 with power), so the drill measures a fall and a
        // rise, as it did before the stack's initial became 24.
        c.pool.limit.min = 16;
        c.pool.limit.initial = 16;
        // Slow, not down: no call or connection should time out.
        c.mongodb.operation_timeout = Duration::from_secs(20);
        c.mongodb.connect_timeout = Duration::from_secs(20);
        c.mongodb.server_selection_timeout = Duration::from_secs(20);
        c.breaker.enabled = false;
        c.cache.enabled = false;
    });
    let floor = config.pool.limit.min;
    let drill = Drill::open(server, config).await;
    let raw = mongodb::Client::with_uri_str(drill.server.uri())
        .await
        .unwrap()
        .database(&drill.config.mongodb.database)
        .collection::<BsonDocument>(Reading::COLLECTION);
    raw.insert_many((0..DOCUMENTS).map(|id| doc! { "_id": id, "value": id * 7 }))
        .await
        .unwrap();

    let started = Instant::now();
    let load = Arc::new(Load::default());
    // The first error of each kind but `overloaded`, for the figures.
    let examples: Arc<Mutex<Vec<String>>> = Arc::default();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (repo, load, examples) = (
                drill.readings.clone(),
                Arc::clone(&load),
                Arc::clone(&examples),
            );
            tokio::spawn(async move {
                let mut id = r as i64;
                while !load.stop.load(Ordering::SeqCst) {
                    id = (id * 31 + 17) % DOCUMENTS;
                    let read = async {
                        let read = repo.get(&id).await;
                        if let Err(e) = &read
                            && e.kind() != "overloaded"
                        {
                            let mut examples = examples.lock();
                            if !examples.iter().any(|x| x.starts_with(e.kind())) {
                                examples.push(format!("{}: {e}", e.kind()));
                            }
                        }
                        read
                    };
                    load.record(id, false, read, read_outcome).await;
                }
            })
        })
        .collect();
    let samples: Arc<Mutex<Vec<LimitSample>>> = Arc::default();
    let sampler = {
        let (stratum, samples, load) = (
            drill.stratum.clone(),
            Arc::clone(&samples),
            Arc::clone(&load),
        );
        tokio::spawn(async move {
            while !load.stop.load(Ordering::SeqCst) {
                let limit = stratum.limit_status().expect("admission is on").limit;
                samples.lock().push(LimitSample {
                    at: started.elapsed(),
                    limit,
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let limit = |d: &Drill| d.stratum.limit_status().unwrap().limit;

    // Healthy: the limit rises off its floor; then two seconds more to
    // settle.
    drill
        .wait_for("the limit rising off its floor", |d| limit(d) > floor)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The goodput climber moves the limit up and down while healthy, so
    // the slowdown starts at a moment the limit is off its floor (CI once
    // slowed it at 16, leaving nothing to fall).
    let before = {
        let waited = Instant::now();
        loop {
            let now = limit(&drill);
            if now > floor || waited.elapsed() > EXPECT_WITHIN {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let slowed_at = started.elapsed();
    load.set_phase(DOWN);
    let stop_throttle = Arc::new(AtomicBool::new(false));
    let throttling = throttle(
        drill.server.pid().expect("the server runs"),
        Duration::from_millis(40),
        Duration::from_millis(10),
        Arc::clone(&stop_throttle),
    );
    drill
        .wait_for("the limit falling to its floor", |d| limit(d) == floor)
        .await;
    // A second more at the floor, to show it stays there while slow.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_throttle.store(true, Ordering::SeqCst);
    throttling.join().expect("the throttle ends with SIGCONT");
    let recovered_at = started.elapsed();
    load.set_phase(RECOVERED);
    let back = before * 9 / 10;
    let rose = {
        let waited = Instant::now();
        while limit(&drill) < back && waited.elapsed() < EXPECT_WITHIN {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        limit(&drill) >= back
    };
    // A second more, to show where it settles.
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    sampler.await.unwrap();

    let samples = samples.lock().clone();
    let calls = load.calls();
    let in_phase = |phase: u8| -> Vec<Call> {
        calls
            .iter()
            .filter(|c| c.started_in == phase && c.ended_in == phase)
            .copied()
            .collect()
    };
    let mean = |calls: &[Call]| {
        let ok: Vec<_> = calls.iter().filter(|c| c.outcome == Outcome::Ok).collect();
        ok.iter().map(|c| c.elapsed).sum::<Duration>() / ok.len().max(1) as u32
    };
    let first = |from: Duration, pred: &dyn Fn(usize) -> bool| {
        samples
            .iter()
            .find(|s| s.at >= from && pred(s.limit))
            .map(|s| s.at - from)
    };
    let lowest_slowed = samples
        .iter()
        .filter(|s| s.at >= slowed_at && s.at < recovered_at)
        .map(|s| s.limit)
        .min()
        .unwrap_or(before);
    let highest_after = samples
        .iter()
        .filter(|s| s.at >= recovered_at)
        .map(|s| s.limit)
        .max()
        .unwrap_or(0);
    let halfway = (before + floor) / 2;
    let since = |d: Option<Duration>| d.map_or_else(|| "not reached".to_owned(), ms);
    let timeline: Vec<String> = samples
        .iter()
        .step_by(25)
        .map(|s| {
            let t = s.at.as_secs_f64() - slowed_at.as_secs_f64();
            format!("{t:+.2} s: {}", s.limit)
        })
        .collect();

    figure(D, "readers (closed loop, no cache, no breaker)", READERS);
    figure(D, "slowdown", "SIGSTOP 40 ms of every 50 ms");
    figure(
        D,
        "limit floor / ceiling",
        format!("{floor} / {}", drill.config.pool.max_size),
    );
    figure(D, "limit before the slowdown", before);
    figure(D, "lowest limit while slowed", lowest_slowed);
    figure(
        D,
        "time to fall halfway to the floor",
        since(first(slowed_at, &|l| l <= halfway)),
    );
    figure(
        D,
        "time to reach the floor",
        since(first(slowed_at, &|l| l == floor)),
    );
    figure(D, "slowed for", ms(recovered_at.saturating_sub(slowed_at)));
    figure(
        D,
        "time after the slowdown to rise halfway back",
        since(first(recovered_at, &|l| l >= halfway)),
    );
    figure(
        D,
        "time after the slowdown to reach 90 % of the limit before",
        since(first(recovered_at, &|l| l >= back)),
    );
    figure(D, "highest limit after the slowdown", highest_after);
    figure(D, "back to 90 % of the limit before (within 30 s)", rose);
    figure(
        D,
        "mean read latency (healthy / slowed / after)",
        format!(
            "{} / {} / {}",
            ms(mean(&in_phase(HEALTHY))),
            ms(mean(&in_phase(DOWN))),
            ms(mean(&in_phase(RECOVERED)))
        ),
    );
    figure(D, "errors", error_kinds(&calls));
    for example in examples.lock().iter() {
        figure(D, "error example", example);
    }
    figure(
        D,
        "limit every 250 ms from the slowdown",
        timeline.join(", "),
    );

    assert_bounded(&calls, configured_bound(&drill.config));
    assert!(before > floor, "the limit never rose off its floor");
    assert_eq!(lowest_slowed, floor, "the limit did not fall while slowed");
    assert!(
        highest_after > floor,
        "the limit did not rise after the slowdown: {timeline:?}"
    );
    // Every read was answered by the database (the cache is off).
    assert_eq!(count(&calls, |c| c.outcome == Outcome::Stale), 0);
}

/// The server's own promise, measured with the raw driver: acknowledged
/// inserts from four concurrent writers, SIGKILL, restart, count what is
/// left. A measurement of the test server rather than of Stratum (the
/// default loses writes at random), so it runs under `cargo xtask chaos`
/// only; the one assertion is that durable commits lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of the test server; `cargo xtask chaos` runs it"]
async fn the_servers_default_durability_under_sigkill() {
    const D: &str = "durability";
    let setups: [(&str, &[&str], &str); 3] = [
        ("server defaults, w:1", &[], ""),
        ("server defaults, j:true", &[], "&journal=true"),
        (
            "--sync-on-commit, w:majority, j:true",
            &["--sync-on-commit"],
            "&w=majority&journal=true",
        ),
    ];
    for (name, args, uri_options) in setups {
        let mut server = ServerProcess::start_with_args(args).expect("a server starts");
        let client = mongodb::Client::with_uri_str(format!("{}{uri_options}", server.uri()))
            .await
            .unwrap();
        let coll = client.database("d").collection::<BsonDocument>("c");
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4_i64)
            .map(|w| {
                let (coll, stop) = (coll.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let id = w * 1_000_000 + i;
                        let insert = coll.insert_one(doc! { "_id": id, "pad": "x".repeat(200) });
                        if let Ok(Ok(_)) =
                            tokio::time::timeout(Duration::from_secs(2), insert).await
                        {
                            acked.push(id);
                        }
                    }
                    acked
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        let mut acked = Vec::new();
        for writer in writers {
            acked.extend(writer.await.unwrap());
        }
        server.restart().expect("the server restarts");
        let check = mongodb::Client::with_uri_str(server.uri()).await.unwrap();
        let docs: Vec<BsonDocument> = check
            .database("d")
            .collection::<BsonDocument>("c")
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let stored: HashSet<i64> = docs.iter().filter_map(|d| d.get_i64("_id").ok()).collect();
        let lost = acked.iter().filter(|id| !stored.contains(id)).count();
        figure(
            D,
            name,
            format!("{} acknowledged, {lost} lost after SIGKILL", acked.len()),
        );
        assert!(!acked.is_empty(), "{name}: no write was acknowledged");
        if !args.is_empty() {
            assert_eq!(lost, 0, "{name}: acknowledged writes lost");
        }
    }
}

/// The handle itself: SIGTERM is a clean shutdown, and a restart on the same
/// port and data folder finds what was written before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_server_restarts_with_its_data() {
    let mut server = durable_server();
    let port = server.port();
    let uri = format!("{}&w=majority&journal=true", server.uri());
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let coll = client.database("d").collection::<BsonDocument>("c");
    coll.insert_one(doc! { "_id": 1, "kept": true })
        .await
        .unwrap();
    assert!(server.terminate(), "the server ignored SIGTERM");
    assert!(!server.is_running());
    server.restart().unwrap();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    let client = mongodb::Client::with_uri_str(server.uri()).await.unwrap();
    let found = client
        .database("d")
        .collection::<BsonDocument>("c")
        .find_one(doc! { "_id": 1 })
        .await
        .unwrap();
    assert_eq!(found, Some(doc! { "_id": 1, "kept": true }));
}

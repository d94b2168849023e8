//! `stratum load` as one process of a fleet (`--fleet-dir`): many load
//! processes over one database, what each was told written to a file, and
//! the fleet's verifier that joins the files with what the database holds.
//!
//! Each process preloads the shared documents if nobody has (duplicates are
//! ignored), waits until its change streams are open, drives its workload
//! (its own range of insert ids, `$inc` updates on the same Zipf-hot
//! documents as every other process), and meanwhile *probes* the hottest
//! documents (ids `0..--probe-documents`) through its cache every
//! millisecond, logging each version it reads with the first and last time
//! it read it. Its
//! acknowledged updates of those documents are logged with their
//! acknowledgement time. At the end it writes `process-INDEX.txt` in the
//! fleet directory (acknowledged and unknown-outcome writes, the two logs,
//! its figures, its pool and breaker and change streams at the end) and
//! does not drop the database.
//!
//! [`verify`] reads the files back: the union of every process's
//! acknowledged writes checked against the database (the same check as a
//! single load, `verify.rs`), and the cross-process staleness: for each
//! reader, each update acknowledged by *another* process joined with the
//! reader's reads (as `stratum coherence` joins its two processes' logs,
//! into its [`Delays`]): how long after the acknowledgement the reader
//! could still read an older version as fresh.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use stratum::watch::Support;
use stratum::{Origin, Repository, Stratum};

use super::verify::{self, Expected, Verdict};
use super::workload::LoadDoc;
use crate::coherence::{Ack, Delays};
use crate::report::RunFigures;

/// Unix time in nanoseconds: every process on the machine reads one clock.
pub(crate) fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The first insert id of fleet process `index`: far apart, so two
/// processes never insert the same id.
pub(crate) fn first_insert_id(documents: usize, index: u32) -> i64 {
    documents as i64 + (i64::from(index) << 40)
}

/// What a fleet process records beyond a single load's tally.
#[derive(Debug, Default)]
pub(crate) struct FleetLog {
    /// Documents `0..hot` are probed: their acknowledged updates are logged.
    pub(crate) hot: usize,
    /// Acknowledged updates of the hot documents.
    pub(crate) acks: Mutex<Vec<Ack>>,
    /// Per Unix second: reads ok, reads failed, writes ok, writes failed.
    pub(crate) seconds: Mutex<BTreeMap<u64, [u64; 4]>>,
}

impl FleetLog {
    pub(crate) fn new(hot: usize) -> FleetLog {
        FleetLog {
            hot,
            ..FleetLog::default()
        }
    }

    /// Counts one operation in the current second.
    pub(crate) fn count(&self, write: bool, ok: bool) {
        let second = (unix_nanos() / 1_000_000_000) as u64;
        let slot = usize::from(write) * 2 + usize::from(!ok);
        self.seconds.lock().entry(second).or_default()[slot] += 1;
    }

    /// Logs an acknowledged update of document `id` at `version`.
    pub(crate) fn acked(&self, id: usize, version: i64) {
        if id < self.hot
            && let Ok(seq) = u64::try_from(version)
        {
            self.acks.lock().push(Ack {
                doc: id as u32,
                seq,
                at: unix_nanos(),
            });
        }
    }
}

/// The probe's log: per hot document, each version it read (not declared
/// stale) with when it read it first and last; and when it probed.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProbeLog {
    pub(crate) reads: BTreeMap<u32, Vec<(i64, u128, u128)>>,
    pub(crate) window: (u128, u128),
}

impl ProbeLog {
    /// Records a read of `version` of `doc` at `at`.
    fn read(&mut self, doc: u32, version: i64, at: u128) {
        let reads = self.reads.entry(doc).or_default();
        match reads.last_mut() {
            Some((v, _, last)) if *v == version => *last = at,
            _ => reads.push((version, at, at)),
        }
    }

    /// How long after `ack` this reader could still read an older version
    /// (its last read of one, not declared stale, minus the
    /// acknowledgement; 0 when none came after it), and when it first read
    /// `ack`'s version or a later one (`None`: never, while it probed).
    fn stale_for(&self, ack: &Ack) -> (Duration, Option<u128>) {
        let Some(reads) = self.reads.get(&ack.doc) else {
            return (Duration::ZERO, None);
        };
        let seq = i64::try_from(ack.seq).unwrap_or(i64::MAX);
        let first_new = reads.iter().find(|(v, _, _)| *v >= seq).map(|r| r.1);
        let last_old = reads
            .iter()
            .filter(|(v, _, _)| *v < seq)
            .map(|(_, _, last)| *last)
            .max()
            .unwrap_or(0);
        let nanos = last_old.saturating_sub(ack.at);
        (
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
            first_new,
        )
    }
}

/// Reads documents `0..hot` through `repo` every millisecond until `stop`
/// is notified.
pub(crate) async fn probe(
    repo: Repository<LoadDoc>,
    hot: usize,
    stop: Arc<tokio::sync::Notify>,
) -> ProbeLog {
    let mut log = ProbeLog::default();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    log.window.0 = unix_nanos();
    loop {
        tokio::select! {
            () = stop.notified() => break,
            _ = tick.tick() => {}
        }
        for doc in 0..hot {
            // A failed read (an outage) is tried again next tick; a copy
            // served as stale says so and is not a claim of freshness.
            let Ok(read) = repo.get(&(doc as i64)).await else {
                continue;
            };
            if matches!(read.origin, Origin::Stale { .. }) {
                continue;
            }
            let version = read.value.map_or(-1, |d| d.version);
            log.read(doc as u32, version, unix_nanos());
        }
        log.window.1 = unix_nanos();
    }
    log
}

/// Waits until the stack's change streams are open (or known not to be
/// there), so the probe measures coherence, not the start.
pub(crate) async fn streams_open(stratum: &Stratum) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let now = stratum.coherence();
        let waiting = match now.support {
            Support::Detecting => true,
            Support::Supported => !now.all_open(),
            _ => false,
        };
        if !waiting {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the change streams did not open: {now:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What one fleet process was told and measured, as its file says.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ProcessOutcome {
    /// The process's index in the fleet.
    pub index: u32,
    expected: Expected,
    acks: Vec<Ack>,
    probe: ProbeLog,
    /// Per Unix second: reads ok, reads failed, writes ok, writes failed.
    pub seconds: BTreeMap<u64, [u64; 4]>,
    /// Operations completed (failed ones included) and succeeded.
    pub completed: u64,
    /// Operations that succeeded.
    pub succeeded: u64,
    /// From the first operation to the last task's end.
    pub elapsed: Duration,
    /// Errors by kind (`timeout`, `network`, `unavailable`...).
    pub errors: BTreeMap<String, u64>,
    /// The slowest call, failed ones included.
    pub slowest: Duration,
    /// The configured bound of one call: the admission wait plus the
    /// operation timeout.
    pub bound: Duration,
    /// Calls in flight, callers waiting for admission, and driver
    /// connections checked out after the run (all 0: the process went
    /// back to idle, nothing leaked).
    pub busy_after: (usize, usize, u64),
    /// The breaker's state at the end and its state changes in the run.
    pub breaker: (String, u64),
    /// The change stream at the end: open, events, resumes, restarts.
    pub stream: Option<(bool, u64, u64, u64)>,
}

impl ProcessOutcome {
    /// Whether the process was back to idle at the end.
    pub fn idle(&self) -> bool {
        self.busy_after == (0, 0, 0)
    }

    /// Successful operations per second.
    pub fn ok_per_s(&self) -> f64 {
        self.succeeded as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Reads (`write = false`) or writes: (succeeded, failed) in the Unix
    /// seconds `from..to`.
    pub fn between(&self, from: u64, to: u64, write: bool) -> (u64, u64) {
        let slot = usize::from(write) * 2;
        self.seconds
            .range(from..to)
            .fold((0, 0), |(ok, failed), (_, s)| {
                (ok + s[slot], failed + s[slot + 1])
            })
    }

    /// The file of process `index` in `dir`.
    pub fn path(dir: &Path, index: u32) -> PathBuf {
        dir.join(format!("process-{index}.txt"))
    }

    /// Reads process `index`'s file in `dir`.
    pub fn read(dir: &Path, index: u32) -> Result<ProcessOutcome, String> {
        let path = ProcessOutcome::path(dir, index);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        ProcessOutcome::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a process's file (the lines [`ProcessOutcome::render`] writes).
    fn parse(text: &str) -> Result<ProcessOutcome, String> {
        let mut o = ProcessOutcome::default();
        for (n, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let bad = || format!("line {}: cannot read {line:?}", n + 1);
            let num = |i: usize| -> Result<u128, String> {
                words.get(i).and_then(|w| w.parse().ok()).ok_or_else(bad)
            };
            let small = |i: usize| -> Result<u64, String> {
                num(i).and_then(|v| u64::try_from(v).map_err(|_| bad()))
            };
            let signed = |i: usize| -> Result<i64, String> {
                words.get(i).and_then(|w| w.parse().ok()).ok_or_else(bad)
            };
            match words.first().copied() {
                Some("index") => o.index = small(1)? as u32,
                Some("i") => o.expected.inserted.push(signed(1)?),
                Some("u") => o.expected.unknown_inserts.push(signed(1)?),
                Some("w") => {
                    let id = usize::try_from(small(1)?).map_err(|_| bad())?;
                    if o.expected.updates.len() <= id {
                        o.expected.updates.resize(id + 1, (0, 0, 0));
                    }
                    o.expected.updates[id] = (small(2)?, small(3)?, signed(4)?);
                }
                Some("documents") => {
                    let n = usize::try_from(small(1)?).map_err(|_| bad())?;
                    o.expected.updates.resize(n, (0, 0, 0));
                }
                Some("ack") => o.acks.push(Ack {
                    doc: small(1)? as u32,
                    seq: small(2)?,
                    at: num(3)?,
                }),
                Some("seen") => o.probe.reads.entry(small(1)? as u32).or_default().push((
                    signed(2)?,
                    num(3)?,
                    num(4)?,
                )),
                Some("window") => o.probe.window = (num(1)?, num(2)?),
                Some("second") => {
                    o.seconds
                        .insert(small(1)?, [small(2)?, small(3)?, small(4)?, small(5)?]);
                }
                Some("ops") => {
                    o.completed = small(1)?;
                    o.succeeded = small(2)?;
                    o.elapsed = Duration::from_micros(small(3)?);
                }
                Some("error") => {
                    let kind = words.get(1).ok_or_else(bad)?;
                    o.errors.insert((*kind).to_owned(), small(2)?);
                }
                Some("slowest_us") => o.slowest = Duration::from_micros(small(1)?),
                Some("bound_us") => o.bound = Duration::from_micros(small(1)?),
                Some("busy") => {
                    o.busy_after = (small(1)? as usize, small(2)? as usize, small(3)?);
                }
                Some("breaker") => {
                    o.breaker = ((*words.get(1).ok_or_else(bad)?).to_owned(), small(2)?);
                }
                Some("stream") => {
                    o.stream = Some((small(1)? == 1, small(2)?, small(3)?, small(4)?));
                }
                _ => return Err(bad()),
            }
        }
        Ok(o)
    }

    /// The file's text.
    fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "index {}", self.index);
        let _ = writeln!(s, "documents {}", self.expected.updates.len());
        for id in &self.expected.inserted {
            let _ = writeln!(s, "i {id}");
        }
        for id in &self.expected.unknown_inserts {
            let _ = writeln!(s, "u {id}");
        }
        for (id, &(acked, unknown, max)) in self.expected.updates.iter().enumerate() {
            if (acked, unknown, max) != (0, 0, 0) {
                let _ = writeln!(s, "w {id} {acked} {unknown} {max}");
            }
        }
        for a in &self.acks {
            let _ = writeln!(s, "ack {} {} {}", a.doc, a.seq, a.at);
        }
        for (doc, reads) in &self.probe.reads {
            for (version, first, last) in reads {
                let _ = writeln!(s, "seen {doc} {version} {first} {last}");
            }
        }
        let _ = writeln!(s, "window {} {}", self.probe.window.0, self.probe.window.1);
        for (second, c) in &self.seconds {
            let _ = writeln!(s, "second {second} {} {} {} {}", c[0], c[1], c[2], c[3]);
        }
        let _ = writeln!(
            s,
            "ops {} {} {}",
            self.completed,
            self.succeeded,
            self.elapsed.as_micros()
        );
        for (kind, n) in &self.errors {
            let _ = writeln!(s, "error {kind} {n}");
        }
        let _ = writeln!(s, "slowest_us {}", self.slowest.as_micros());
        let _ = writeln!(s, "bound_us {}", self.bound.as_micros());
        let (in_use, waiting, connections) = self.busy_after;
        let _ = writeln!(s, "busy {in_use} {waiting} {connections}");
        let _ = writeln!(s, "breaker {} {}", self.breaker.0, self.breaker.1);
        if let Some((open, events, resumes, restarts)) = self.stream {
            let _ = writeln!(s, "stream {} {events} {resumes} {restarts}", u8::from(open));
        }
        s
    }
}

/// What the process knows at the end of its run, gathered into its outcome.
pub(crate) struct Finished<'a> {
    pub(crate) index: u32,
    pub(crate) expected: Expected,
    pub(crate) log: &'a FleetLog,
    pub(crate) probe: ProbeLog,
    pub(crate) run: &'a RunFigures,
    pub(crate) stratum: &'a Stratum,
    pub(crate) bound: Duration,
}

/// Stops the stack's background work (its change-stream watchers, whose
/// waiting cursors hold driver connections) and writes the process's file
/// into `dir`, with what is still busy once the stack had a moment to
/// settle: calls in flight, callers waiting, connections checked out.
pub(crate) async fn write(dir: &Path, f: Finished<'_>) -> Result<(), String> {
    let stream = f
        .stratum
        .coherence()
        .watchers
        .first()
        .and_then(|(_, s)| *s)
        .map(|s| (s.open, s.events, s.resumes, s.restarts));
    f.stratum.shutdown().await;
    let busy = || {
        f.stratum.pool_status().map_or((0, 0, 0), |s| {
            (s.in_use, s.waiting, s.connections.map_or(0, |c| c.in_use))
        })
    };
    // A connection whose cursor was just closed goes back within
    // milliseconds; one still out after 5 s has leaked.
    // The one reading the verifier judges is the one that ended the wait:
    // a second, later reading once caught a connection checked out after
    // the stack had settled (CI at 3210e33: the wait ended idle, the file
    // said `busy 0 0 1`), a call of unknown origin rather than a leak.
    let settling = Instant::now();
    let busy_after = loop {
        let now = busy();
        if now == (0, 0, 0) || settling.elapsed() >= Duration::from_secs(5) {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if busy_after != (0, 0, 0) {
        // The verifier fails the drill on it; what the driver's pool and
        // the watchers say is the only trace of who holds what.
        eprintln!(
            "fleet: still busy 5 s after shutdown (in use, waiting, driver connections in use) {busy_after:?}: driver {:?}; change streams {:?}",
            f.stratum.pool_status().and_then(|s| s.connections),
            f.stratum.coherence(),
        );
    }
    let slowest = f
        .run
        .operations
        .iter()
        .filter_map(|o| o.latency.as_ref().map(|l| l.max))
        .chain(f.run.failed_latency.as_ref().map(|l| l.max))
        .max()
        .unwrap_or_default();
    let mut errors = BTreeMap::new();
    for e in &f.run.errors {
        *errors.entry(e.kind.to_owned()).or_insert(0) += e.count;
    }
    let outcome = ProcessOutcome {
        index: f.index,
        expected: f.expected,
        acks: f.log.acks.lock().clone(),
        probe: f.probe,
        seconds: f.log.seconds.lock().clone(),
        completed: f.run.completed(),
        succeeded: f.run.succeeded(),
        elapsed: f.run.elapsed,
        errors,
        slowest,
        bound: f.bound,
        busy_after,
        breaker: f.stratum.breaker().map_or_else(
            || ("off".to_owned(), 0),
            |b| {
                (
                    b.state().as_str().to_owned(),
                    f.stratum.breaker_transitions().0,
                )
            },
        ),
        stream,
    };
    let path = ProcessOutcome::path(dir, f.index);
    std::fs::write(&path, outcome.render())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The fleet's verdict: the union of every process's writes checked against
/// the database, and the cross-process staleness.
#[derive(Debug)]
#[non_exhaustive]
pub struct FleetVerdict {
    verdict: Verdict,
    /// Per reader (process index): the delays of the other processes'
    /// acknowledged updates of the hot documents until the reader read them.
    pub staleness: Vec<(u32, Delays)>,
    /// Every reader's delays together.
    pub total: Delays,
}

impl FleetVerdict {
    /// Whether every acknowledged write of every process is in the database
    /// and nothing else is.
    pub fn passed(&self) -> bool {
        self.verdict.passed()
    }

    /// Acknowledged inserts and updates lost.
    pub fn lost(&self) -> usize {
        self.verdict.missing_inserts.0
            + self.verdict.missing_documents.0
            + self.verdict.lost_updates.0
    }

    /// Writes in the database that no process was told about.
    pub fn phantoms(&self) -> usize {
        self.verdict.phantoms.0
    }

    /// Unknown-outcome writes, and how many of them were applied.
    pub fn unknown(&self) -> (u64, u64) {
        (self.verdict.unknown_total, self.verdict.unknown_applied)
    }

    /// Acknowledged inserts and updates checked.
    pub fn checked(&self) -> (usize, u64) {
        (self.verdict.inserts_checked, self.verdict.updates_checked)
    }
}

impl fmt::Display for FleetVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict)?;
        for (reader, delays) in &self.staleness {
            writeln!(f, "  staleness seen by process {reader}: {delays}")?;
        }
        writeln!(f, "  staleness, every reader: {}", self.total)?;
        writeln!(
            f,
            "result:       {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Joins the processes' acknowledgements with each reader's probe: an
/// update counts for a reader when it was acknowledged by another process
/// while the reader probed, at least `settle` before its last probe read
/// (a later one it may not have had time to read). Its staleness is how
/// long after the acknowledgement the reader could still read an older
/// version (as fresh); `missed` counts the updates it never read, while
/// it probed (its reads failed or were declared stale until the end).
pub fn staleness(outcomes: &[ProcessOutcome], settle: Duration) -> (Vec<(u32, Delays)>, Delays) {
    let settle_nanos = settle.as_nanos();
    let mut per_reader = Vec::new();
    let mut all = Delays {
        writes: 0,
        missed: 0,
        early: 0,
        sorted: Vec::new(),
    };
    for reader in outcomes {
        let (from, to) = reader.probe.window;
        let acks: Vec<Ack> = outcomes
            .iter()
            .filter(|w| w.index != reader.index)
            .flat_map(|w| w.acks.iter().copied())
            .filter(|a| a.at >= from && a.at + settle_nanos <= to)
            .collect();
        let mut delays = Delays {
            writes: acks.len(),
            missed: 0,
            early: 0,
            sorted: Vec::with_capacity(acks.len()),
        };
        for ack in &acks {
            let (stale, first_new) = reader.probe.stale_for(ack);
            delays.sorted.push(stale);
            match first_new {
                Some(at) => delays.early += usize::from(at < ack.at),
                None => delays.missed += 1,
            }
        }
        delays.sorted.sort_unstable();
        all.writes += delays.writes;
        all.missed += delays.missed;
        all.early += delays.early;
        all.sorted.extend_from_slice(&delays.sorted);
        per_reader.push((reader.index, delays));
    }
    all.sorted.sort_unstable();
    (per_reader, all)
}

/// Reads back the fleet's database at `uri` (directly, not through any
/// proxy) and checks it against every process's outcome.
pub async fn verify(
    uri: &str,
    database: &str,
    outcomes: &[ProcessOutcome],
    settle: Duration,
) -> Result<FleetVerdict, String> {
    let mut expected = Expected::default();
    for o in outcomes {
        expected.inserted.extend(&o.expected.inserted);
        expected.unknown_inserts.extend(&o.expected.unknown_inserts);
        if expected.updates.len() < o.expected.updates.len() {
            expected.updates.resize(o.expected.updates.len(), (0, 0, 0));
        }
        for (sum, &(acked, unknown, max)) in expected.updates.iter_mut().zip(&o.expected.updates) {
            sum.0 += acked;
            sum.1 += unknown;
            sum.2 = sum.2.max(max);
        }
    }
    let client = mongodb::Client::with_uri_str(uri).await.map_err(|e| {
        format!(
            "connecting the verifier: {}",
            stratum_store::uri::scrub(&e.to_string())
        )
    })?;
    let raw = client
        .database(database)
        .collection::<mongodb::bson::Document>(<LoadDoc as stratum::models::Document>::COLLECTION);
    let found = verify::read_back(&raw).await?;
    let verdict = verify::check(&expected, &found);
    let (staleness, total) = staleness(outcomes, settle);
    Ok(FleetVerdict {
        verdict,
        staleness,
        total,
    })
}

/// Drops the fleet's database.
pub async fn drop_database(uri: &str, database: &str) -> Result<(), String> {
    let client = mongodb::Client::with_uri_str(uri)
        .await
        .map_err(|e| stratum_store::uri::scrub(&e.to_string()))?;
    client
        .database(database)
        .drop()
        .await
        .map_err(|e| stratum_store::uri::scrub(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(index: u32, acks: &[(u32, u64, u128)], seen: &[(u32, i64, u128)]) -> ProcessOutcome {
        let mut o = ProcessOutcome {
            index,
            ..ProcessOutcome::default()
        };
        o.acks = acks
            .iter()
            .map(|&(doc, seq, at)| Ack { doc, seq, at })
            .collect();
        for &(doc, v, at) in seen {
            o.probe.read(doc, v, at);
        }
        o.probe.window = (100, 10_000);
        o
    }

    #[test]
    fn a_file_reads_back_as_written() {
        let mut o = outcome(2, &[(0, 3, 500)], &[(0, 3, 600), (1, 7, 700)]);
        o.expected = Expected {
            inserted: vec![1 << 40, (1 << 40) + 1],
            unknown_inserts: vec![(1 << 40) + 2],
            updates: vec![(2, 1, 3), (0, 0, 0), (0, 0, 0)],
        };
        o.seconds.insert(17, [1, 2, 3, 4]);
        o.completed = 10;
        o.succeeded = 9;
        o.elapsed = Duration::from_millis(1500);
        o.errors.insert("timeout".into(), 1);
        o.slowest = Duration::from_millis(900);
        o.bound = Duration::from_secs(3);
        o.busy_after = (1, 0, 2);
        o.breaker = ("closed".into(), 2);
        o.stream = Some((true, 5, 1, 0));
        let back = ProcessOutcome::parse(&o.render()).unwrap();
        assert_eq!(back.render(), o.render());
        assert_eq!(back.expected.updates, o.expected.updates);
        assert_eq!(back.between(17, 18, true), (3, 4));
        assert!(!back.idle());
        assert!(ProcessOutcome::parse("nonsense 1").is_err());
    }

    #[test]
    fn staleness_is_the_last_read_of_an_older_version_after_the_ack() {
        // Process 0 wrote version 3 of document 0 at 500 and version 4 at
        // 9,990 (too late for the readers to be asked about). Process 1
        // read version 2 until 640 and 3 from 650; process 2 read 2 until
        // 450 (before the ack), then 4 (covering 3) at 800.
        let writer = outcome(0, &[(0, 3, 500), (0, 4, 9_990)], &[(0, 4, 9_995)]);
        let one = outcome(1, &[], &[(0, 2, 200), (0, 2, 640), (0, 3, 650)]);
        let two = outcome(2, &[(0, 9, 50)], &[(0, 2, 450), (0, 4, 800)]);
        let (per, all) = staleness(&[writer, one, two], Duration::from_nanos(100));
        // Process 0 is asked about nothing: process 2's ack was before it probed.
        assert_eq!(per[0].1.writes, 0);
        assert_eq!(per[1].1.sorted, vec![Duration::from_nanos(140)]);
        assert_eq!(per[2].1.sorted, vec![Duration::ZERO]);
        assert_eq!((all.writes, all.missed), (2, 0));
        assert_eq!(all.max(), Some(Duration::from_nanos(140)));
        // A reader that never read the version misses it.
        let blind = outcome(1, &[], &[]);
        let writer = outcome(0, &[(0, 3, 500)], &[]);
        let (_, all) = staleness(&[writer, blind], Duration::from_nanos(100));
        assert_eq!(all.missed, 1);
    }

    proptest::proptest! {
        /// The probe keeps runs of one version (first and last read), not
        /// every read: its answers are those of a model holding every read.
        #[test]
        fn the_probe_log_answers_as_every_read_would(
            reads in proptest::collection::vec((0u32..2, 0i64..6, 1u128..50), 0..60),
            acks in proptest::collection::vec((0u32..2, 0u64..7, 0u128..3_000), 1..20),
        ) {
            // Reads happen in time order, each at least 1 ns after the last.
            let mut at = 0;
            let reads: Vec<(u32, i64, u128)> = reads
                .into_iter()
                .map(|(doc, version, gap)| {
                    at += gap;
                    (doc, version, at)
                })
                .collect();
            let mut log = ProbeLog::default();
            for &(doc, version, at) in &reads {
                log.read(doc, version, at);
            }
            for (doc, seq, at) in acks {
                let ack = Ack { doc, seq, at };
                let mine = reads.iter().filter(|r| r.0 == doc);
                let last_old = mine
                    .clone()
                    .filter(|r| r.1 < seq as i64)
                    .map(|r| r.2)
                    .max()
                    .unwrap_or(0);
                let first_new = mine.clone().find(|r| r.1 >= seq as i64).map(|r| r.2);
                let stale = Duration::from_nanos(last_old.saturating_sub(at) as u64);
                proptest::prop_assert_eq!(log.stale_for(&ack), (stale, first_new));
            }
        }
    }

    #[test]
    fn fleet_processes_never_share_an_insert_id() {
        assert_eq!(first_insert_id(1000, 0), 1000);
        assert!(first_insert_id(1000, 1) > first_insert_id(1000, 0) + 1_000_000_000);
    }
}

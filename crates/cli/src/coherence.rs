//! `stratum coherence`: how long a write made by one process takes to reach
//! another process's reads, measured with two `stratum` processes over one
//! server.
//!
//! A *reader* process opens a `Stratum` over the server (the default
//! configuration: a cached repository whose change-stream watcher drops the
//! entries other processes change) and reads a handful of conversations by
//! id every millisecond, printing each new version it sees with the time.
//! A *writer* process updates those conversations one after another (a
//! sequence number in `message_count`), printing each write's
//! acknowledgement time. Both are `stratum coherence-reader|writer`
//! children of the `stratum coherence` that starts them, which joins the
//! two logs: a write's delay is the time from its acknowledgement (in the
//! writer) to the first read (in the reader) that returned it or a later
//! version. The processes run on one machine and read one clock
//! (`SystemTime`); a read that saw a write before its acknowledgement
//! reached the writer counts as 0.
//!
//! The cross-process test (`crates/cli/tests/coherence.rs`) drives the same
//! children through [`Reader`] and [`write()`], restarting the server between
//! two rounds of writes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bson::oid::ObjectId;
use parking_lot::Mutex;
use stratum::models::Conversation;
use stratum::watch::Support;
use stratum::{Repository, RepositoryError, StoreError, Stratum, StratumConfig, Update};

/// The flags both roles share: the server and the documents.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct ProbeTarget {
    /// The server (its password is never printed).
    #[arg(
        long,
        value_name = "URI",
        env = "STRATUM_TEST_MONGODB_URI",
        hide_env_values = true
    )]
    pub mongodb_uri: String,
    /// The database the probe writes its conversations in.
    #[arg(long, value_name = "NAME", default_value = "stratum_coherence")]
    pub database: String,
    /// How many conversations the writer updates in turn (and the reader
    /// reads every poll).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub docs: u32,
}

impl ProbeTarget {
    /// The probe's conversations (`docs` of them) in `database` on the
    /// server at `mongodb_uri`.
    pub fn new(mongodb_uri: impl Into<String>, database: impl Into<String>, docs: u32) -> Self {
        ProbeTarget {
            mongodb_uri: mongodb_uri.into(),
            database: database.into(),
            docs,
        }
    }
}

/// The flags of `stratum coherence` (the measurement).
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct CoherenceArgs {
    /// The server and the documents.
    #[command(flatten)]
    pub target: ProbeTarget,
    /// Writes to measure.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub writes: u64,
    /// The writer's pause between two writes.
    #[arg(long, value_name = "DURATION", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How long the reader may take to see a write before it counts as
    /// missed (and the run fails).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub give_up: Duration,
}

/// The flags of `stratum coherence-writer`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct WriterArgs {
    /// The server and the documents.
    #[command(flatten)]
    pub target: ProbeTarget,
    /// The first sequence number written (at least 1); by default one
    /// above the highest the documents hold (an earlier run's).
    #[arg(long, value_name = "N")]
    pub start: Option<u64>,
    /// Writes to make.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub writes: u64,
    /// The pause between two writes.
    #[arg(long, value_name = "DURATION", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How long one write may keep failing (the server restarting) before
    /// the writer gives up.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_for: Duration,
}

/// Why a probe could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A child process could not be started or talked to.
    #[error("the {role} process: {source}")]
    Process {
        /// `reader` or `writer`.
        role: &'static str,
        /// What failed.
        source: std::io::Error,
    },
    /// A child process failed.
    #[error("the {role} process failed: {message}")]
    Failed {
        /// `reader` or `writer`.
        role: &'static str,
        /// Its exit status and the last lines it logged.
        message: String,
    },
    /// The stack could not be opened or a call failed for good.
    #[error("{0}")]
    Stack(String),
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The id of the probe's conversation `doc`: the same in every process.
fn doc_id(doc: u32) -> ObjectId {
    let mut bytes = *b"coherence\0\0\0";
    bytes[8..].copy_from_slice(&doc.to_be_bytes());
    ObjectId::from_bytes(bytes)
}

/// The probe's stack: the default configuration over `target`'s server
/// (and whatever `STRATUM_*` variables say), and the conversations. Its
/// monitor listens on a free port: the reader and the writer run side by
/// side and would otherwise both ask for the default one.
async fn open(target: &ProbeTarget) -> Result<(Stratum, Repository<Conversation>), ProbeError> {
    let database = target.database.clone();
    let config = StratumConfig::builder()
        .env()
        .mongodb_uri(&target.mongodb_uri)
        .configure(move |c| {
            c.mongodb.database = database;
            c.monitor.settings.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        })
        .build()
        .map_err(|e| ProbeError::Stack(format!("configuration: {e}")))?;
    let stratum = Stratum::builder(config)
        .open()
        .await
        .map_err(|e| ProbeError::Stack(format!("opening the stack: {e}")))?;
    let repo = stratum
        .repository::<Conversation>()
        .map_err(|e| ProbeError::Stack(e.to_string()))?;
    Ok((stratum, repo))
}

fn say(line: std::fmt::Arguments<'_>) -> Result<(), ProbeError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|source| ProbeError::Process {
            role: "this",
            source,
        })
}

/// `stratum coherence-reader` (a child of `stratum coherence`): reads the
/// conversations every millisecond; prints `ready` once every change stream
/// is open, then `seen DOC SEQ UNIX_NANOS` for each new version and `state
/// OPEN EVENTS RESUMES RESTARTS` when the watcher's state changes; stops
/// when stdin closes.
pub async fn read(target: &ProbeTarget) -> Result<(), ProbeError> {
    let (stratum, repo) = open(target).await?;
    let started = Instant::now();
    // Ready once the change streams are open, or known not to be there
    // (switched off, a standalone server): the reader then measures the TTL.
    while {
        let now = stratum.coherence();
        match now.support {
            Support::Detecting => true,
            Support::Supported => !now.all_open(),
            _ => false,
        }
    } {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(ProbeError::Stack(format!(
                "the change streams did not open: {:?}",
                stratum.coherence()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    say(format_args!("ready"))?;
    // Stop when the parent closes stdin (or goes away).
    let stop = Arc::new(tokio::sync::Notify::new());
    let told = Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        told.notify_one();
    });
    let mut newest: Vec<i64> = vec![-1; target.docs as usize];
    let mut last_state = None;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.notified() => break,
            _ = tick.tick() => {}
        }
        for doc in 0..target.docs {
            // A failed read (the server restarting) is retried next tick.
            let Ok(read) = repo.get(&doc_id(doc)).await else {
                continue;
            };
            let at = unix_nanos();
            let seq = read.value.map_or(-1, |c| c.message_count);
            if seq > newest[doc as usize] {
                newest[doc as usize] = seq;
                say(format_args!("seen {doc} {seq} {at}"))?;
            }
        }
        let state = stratum.coherence().watchers.first().and_then(|(_, s)| *s);
        if let Some(s) = state
            && last_state != Some(s)
        {
            last_state = Some(s);
            say(format_args!(
                "state {} {} {} {}",
                u8::from(s.open),
                s.events,
                s.resumes,
                s.restarts
            ))?;
        }
    }
    stratum.shutdown().await;
    Ok(())
}

/// `stratum coherence-writer` (a child of `stratum coherence`): creates the
/// conversations if missing, then updates them in turn, printing `ack DOC
/// SEQ UNIX_NANOS` after each acknowledged write.
pub async fn write_role(args: &WriterArgs) -> Result<(), ProbeError> {
    let (stratum, repo) = open(&args.target).await?;
    for doc in 0..args.target.docs {
        let mut c = Conversation::new("coherence-probe", bson::DateTime::now());
        c.id = doc_id(doc);
        match retry(args.retry_for, || repo.insert(&c)).await {
            Ok(()) | Err(RepositoryError::Store(StoreError::DuplicateKey { .. })) => {}
            Err(e) => return Err(ProbeError::Stack(format!("creating the documents: {e}"))),
        }
    }
    let start = match args.start {
        Some(start) => start.max(1),
        None => {
            let mut highest = 0;
            for doc in 0..args.target.docs {
                let id = doc_id(doc);
                let read = retry(args.retry_for, || repo.get(&id))
                    .await
                    .map_err(|e| ProbeError::Stack(format!("reading the documents: {e}")))?;
                highest = highest.max(read.value.map_or(0, |c| c.message_count));
            }
            u64::try_from(highest).unwrap_or(0) + 1
        }
    };
    let docs = u64::from(args.target.docs.max(1));
    for seq in start..start + args.writes {
        let doc = u32::try_from(seq % docs).unwrap_or(0);
        let id = doc_id(doc);
        let value = i64::try_from(seq).unwrap_or(i64::MAX);
        let update = Update::new().set("message_count", value);
        retry(args.retry_for, || repo.update(&id, &update))
            .await
            .map_err(|e| ProbeError::Stack(format!("write {seq}: {e}")))?;
        say(format_args!("ack {doc} {seq} {}", unix_nanos()))?;
        tokio::time::sleep(args.interval).await;
    }
    stratum.shutdown().await;
    Ok(())
}

/// Retries `call` while it fails for an outage (the server restarting),
/// for at most `budget`.
async fn retry<R, F, Fut>(budget: Duration, mut call: F) -> Result<R, RepositoryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, RepositoryError>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Err(e) if e.is_unavailable() && started.elapsed() < budget => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// One acknowledged write: which document, its sequence number, when the
/// writer had the acknowledgement (Unix nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The conversation written.
    pub doc: u32,
    /// The sequence number written.
    pub seq: u64,
    /// When the acknowledgement arrived.
    pub at: u128,
}

/// A reader child process and what it printed so far.
#[derive(Debug)]
pub struct Reader {
    child: Child,
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<ReaderLog>>,
}

/// What a reader printed: the versions it saw per document, its watcher's
/// latest state, its other lines.
#[derive(Debug, Default, Clone)]
pub struct ReaderLog {
    /// Whether the reader's change streams are open and it reads.
    pub ready: bool,
    /// Per document, each new version seen: (sequence, Unix nanoseconds).
    pub seen: BTreeMap<u32, Vec<(i64, u128)>>,
    /// The watcher's latest state: open, events, resumes, restarts.
    pub state: Option<(bool, u64, u64, u64)>,
}

impl ReaderLog {
    /// When a read first returned `ack`'s version or a later one.
    pub fn seen_at(&self, ack: &Ack) -> Option<u128> {
        let seq = i64::try_from(ack.seq).ok()?;
        self.seen
            .get(&ack.doc)?
            .iter()
            .find(|(s, _)| *s >= seq)
            .map(|(_, at)| *at)
    }
}

impl Reader {
    /// Starts `stratum coherence-reader` (the program at `program`) and
    /// waits until it reads with every change stream open.
    pub fn spawn(
        program: &Path,
        target: &ProbeTarget,
        env: &[(&str, &str)],
    ) -> Result<Reader, ProbeError> {
        let process = |source| ProbeError::Process {
            role: "reader",
            source,
        };
        let mut child = Command::new(program)
            .arg("coherence-reader")
            .args(target_args(target))
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(process)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| process(std::io::Error::other("no stdout")))?;
        let log = Arc::new(Mutex::new(ReaderLog::default()));
        let filled = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                parse_reader_line(&line, &mut filled.lock());
            }
        });
        let stdin = child.stdin.take();
        let mut reader = Reader { child, stdin, log };
        let started = Instant::now();
        while !reader.log.lock().ready {
            if let Ok(Some(status)) = reader.child.try_wait() {
                return Err(ProbeError::Failed {
                    role: "reader",
                    message: format!("exited before it was ready ({status})"),
                });
            }
            if started.elapsed() > Duration::from_secs(90) {
                return Err(ProbeError::Failed {
                    role: "reader",
                    message: "not ready after 90 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(reader)
    }

    /// What the reader printed so far.
    pub fn log(&self) -> ReaderLog {
        self.log.lock().clone()
    }

    /// Waits until the reader saw every write of `acks` (or `give_up`
    /// passed); the log then.
    pub fn wait_for(&self, acks: &[Ack], give_up: Duration) -> ReaderLog {
        let started = Instant::now();
        loop {
            let log = self.log();
            if acks.iter().all(|a| log.seen_at(a).is_some()) || started.elapsed() > give_up {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the reader's stdin (it stops) and waits for it.
    pub fn stop(mut self) -> Result<ReaderLog, ProbeError> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|source| ProbeError::Process {
            role: "reader",
            source,
        })?;
        if !status.success() {
            return Err(ProbeError::Failed {
                role: "reader",
                message: status.to_string(),
            });
        }
        Ok(self.log())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // A reader still running (a failed test): it must not outlive us.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_reader_line(line: &str, log: &mut ReaderLog) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["ready"] => log.ready = true,
        ["seen", doc, seq, at] => {
            if let (Ok(doc), Ok(seq), Ok(at)) = (doc.parse(), seq.parse(), at.parse()) {
                log.seen.entry(doc).or_default().push((seq, at));
            }
        }
        ["state", open, events, resumes, restarts] => {
            if let (Ok(events), Ok(resumes), Ok(restarts)) =
                (events.parse(), resumes.parse(), restarts.parse())
            {
                log.state = Some((*open == "1", events, resumes, restarts));
            }
        }
        _ => {}
    }
}

fn target_args(target: &ProbeTarget) -> Vec<String> {
    vec![
        "--mongodb-uri".into(),
        target.mongodb_uri.clone(),
        "--database".into(),
        target.database.clone(),
        "--docs".into(),
        target.docs.to_string(),
    ]
}

/// Runs `stratum coherence-writer` (the program at `program`) to the end:
/// `writes` writes from sequence `start` (by default above what the
/// documents hold), `interval` apart; what it acknowledged.
pub fn write(
    program: &Path,
    target: &ProbeTarget,
    start: Option<u64>,
    writes: u64,
    interval: Duration,
) -> Result<Vec<Ack>, ProbeError> {
    let out = Command::new(program)
        .arg("coherence-writer")
        .args(target_args(target))
        .args(start.map(|start| format!("--start={start}")))
        .args(["--writes", &writes.to_string()])
        .args([
            "--interval",
            &humantime::format_duration(interval).to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| ProbeError::Process {
            role: "writer",
            source,
        })?;
    if !out.status.success() {
        return Err(ProbeError::Failed {
            role: "writer",
            message: out.status.to_string(),
        });
    }
    let acks = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["ack", doc, seq, at] => Some(Ack {
                    doc: doc.parse().ok()?,
                    seq: seq.parse().ok()?,
                    at: at.parse().ok()?,
                }),
                _ => None,
            },
        )
        .collect();
    Ok(acks)
}

/// The delays of a round of writes, as the reader saw them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Delays {
    /// Writes acknowledged.
    pub writes: usize,
    /// Of those, writes the reader never saw (within the wait).
    pub missed: usize,
    /// Of those seen, writes a read returned before their acknowledgement
    /// reached the writer (their delay counts as 0).
    pub early: usize,
    /// Each seen write's delay, sorted.
    pub sorted: Vec<Duration>,
}

impl Delays {
    /// Joins the writer's acknowledgements with the reader's log.
    pub fn join(acks: &[Ack], log: &ReaderLog) -> Delays {
        let mut early = 0;
        let mut sorted: Vec<Duration> = acks
            .iter()
            .filter_map(|ack| {
                let seen = log.seen_at(ack)?;
                early += usize::from(seen < ack.at);
                let nanos = seen.saturating_sub(ack.at);
                Some(Duration::from_nanos(
                    u64::try_from(nanos).unwrap_or(u64::MAX),
                ))
            })
            .collect();
        sorted.sort_unstable();
        Delays {
            writes: acks.len(),
            missed: acks.len() - sorted.len(),
            early,
            sorted,
        }
    }

    /// The `q` quantile (0..=1) of the seen writes' delays (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.sorted.is_empty() {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted.get(rank.saturating_sub(1)).copied()
    }

    /// The longest delay.
    pub fn max(&self) -> Option<Duration> {
        self.sorted.last().copied()
    }
}

impl fmt::Display for Delays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_owned(),
                |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
            )
        };
        write!(
            f,
            "{} writes, {} missed, {} seen before the writer had the acknowledgement; \
             delay p50 {}, p99 {}, max {}",
            self.writes,
            self.missed,
            self.early,
            ms(self.quantile(0.50)),
            ms(self.quantile(0.99)),
            ms(self.max())
        )
    }
}

/// `stratum coherence`: a reader child, a writer child, the delays.
pub fn measure(program: PathBuf, args: &CoherenceArgs) -> Result<Delays, ProbeError> {
    let reader = Reader::spawn(&program, &args.target, &[])?;
    let acks = write(&program, &args.target, None, args.writes, args.interval)?;
    let log = reader.wait_for(&acks, args.give_up);
    reader.stop()?;
    Ok(Delays::join(&acks, &log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_seen_by_the_first_read_of_it_or_a_later_version() {
        let mut log = ReaderLog::default();
        for line in [
            "ready",
            "seen 0 -1 5",
            "seen 0 2 100",
            "seen 0 6 300",
            "seen 1 5 200",
        ] {
            parse_reader_line(line, &mut log);
        }
        assert!(log.ready);
        let ack = |doc, seq, at| Ack { doc, seq, at };
        assert_eq!(log.seen_at(&ack(0, 2, 90)), Some(100));
        // Version 4 was never read itself: version 6 read at 300 covers it.
        assert_eq!(log.seen_at(&ack(0, 4, 150)), Some(300));
        assert_eq!(log.seen_at(&ack(0, 7, 310)), None);
        let acks = [
            ack(0, 2, 90),
            ack(0, 4, 150),
            ack(1, 5, 250),
            ack(0, 7, 310),
        ];
        let delays = Delays::join(&acks, &log);
        // Seen before the acknowledgement arrived: 0.
        assert_eq!(
            delays.sorted,
            [0, 10, 150].map(Duration::from_nanos).to_vec()
        );
        assert_eq!((delays.writes, delays.missed, delays.early), (4, 1, 1));
        assert_eq!(delays.quantile(0.5), Some(Duration::from_nanos(10)));
        assert_eq!(delays.max(), Some(Duration::from_nanos(150)));
    }

    #[test]
    fn probe_ids_are_fixed_per_document() {
        assert_eq!(doc_id(3), doc_id(3));
        assert_ne!(doc_id(3), doc_id(4));
    }
}

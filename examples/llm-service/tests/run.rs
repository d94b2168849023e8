//! The example program, run as a user runs it: against the real test server
//! (twice, as two processes sharing the response cache) and on the embedded
//! store, its output checked and its `/metrics` and `/health/ready` scraped
//! while it serves. Also: the README shows exactly this program.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// What one run printed, and what its listener served while it ran.
struct Run {
    lines: Vec<String>,
    metrics: String,
    ready_status: u16,
    ready: serde_json::Value,
}

impl Run {
    /// The line that starts with `prefix`.
    fn line(&self, prefix: &str) -> &str {
        self.lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in {:#?}", self.lines))
    }

    /// The number just before ` word` in the line that starts with `prefix`.
    fn before(&self, prefix: &str, word: &str) -> f64 {
        let line = self.line(prefix);
        let (head, _) = line
            .split_once(&format!(" {word}"))
            .unwrap_or_else(|| panic!("no {word:?} in {line:?}"));
        number(head.rsplit([' ', '(']).next().unwrap_or_default(), line)
    }

    /// The number just after `word` in the line that starts with `prefix`.
    fn after(&self, prefix: &str, word: &str) -> f64 {
        let line = self.line(prefix);
        let (_, tail) = line
            .split_once(word)
            .unwrap_or_else(|| panic!("no {word:?} in {line:?}"));
        let text: String = tail
            .trim_start_matches([' ', '$'])
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        number(&text, line)
    }

    /// The sum of the samples of every series whose line starts with `start`.
    fn series(&self, start: &str) -> f64 {
        self.metrics
            .lines()
            .filter(|l| l.starts_with(start))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn number(text: &str, line: &str) -> f64 {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} in {line:?} is not a number"))
}

/// Runs the example with `env` (on top of a clean `STRATUM_*` environment
/// and a free port for its listener), scrapes it while it serves, then
/// presses Enter and checks it exits 0.
async fn run(env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llm-service"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("STRATUM_")) {
        command.env_remove(key);
    }
    command
        .env("STRATUM_MONITOR_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.unwrap();
        text
    });
    let mut lines = Vec::new();
    let addr: SocketAddr = loop {
        let line = stdout
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the example stopped before serving: {lines:#?}"));
        if let Some(rest) = line.strip_prefix("serving http://") {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
        lines.push(line);
    };
    let (metrics_status, metrics) = get(addr, "/metrics").await;
    assert_eq!(metrics_status, 200, "{metrics}");
    let (ready_status, ready) = get(addr, "/health/ready").await;
    let ready = serde_json::from_str(&ready).unwrap_or_else(|e| panic!("{e}: {ready}"));

    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\n").await.unwrap();
    drop(stdin);
    while let Some(line) = stdout.next_line().await.unwrap() {
        lines.push(line);
    }
    let status = child.wait().await.unwrap();
    let stderr = stderr.await.unwrap();
    assert!(
        status.success(),
        "the example exited with {status}: {lines:#?}\n{stderr}"
    );
    // A panic on a background task would not change the exit status.
    assert!(!stderr.contains("panicked"), "{stderr}");
    Run {
        lines,
        metrics,
        ready_status,
        ready,
    }
}

/// `GET path` over HTTP/1.0 (the answer is delimited by the close).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

const USERS: [&str; 2] = ["usage alice:", "usage bob:"];

/// What holds for every run: the provider called exactly for the misses of
/// all runs so far on this database (`misses`), 30 questions per run, hits
/// and misses adding up, the long conversation's context under the budget
/// with its system prompt, and every layer's series and the readiness
/// checks served while it runs.
fn check_every_run(run: &Run, runs: f64, misses: f64) {
    let total = |word| USERS.iter().map(|u| run.before(u, word)).sum::<f64>();
    assert_eq!(total("requests"), 30.0 * runs, "{:#?}", run.lines);
    assert_eq!(total("misses"), misses, "{:#?}", run.lines);
    for user in USERS {
        assert_eq!(
            run.before(user, "hits") + run.before(user, "misses"),
            run.before(user, "requests"),
            "{}",
            run.line(user)
        );
    }

    let budget = run.after("conversation:", "(budget");
    assert!(run.before("conversation:", "tokens stored") > budget);
    assert!(run.before("conversation:", "tokens (budget") <= budget);
    assert!(
        run.line("conversation:")
            .ends_with("system prompt kept: true")
    );

    // 20 turns: 41 messages with the system prompt; the header is read
    // through the conversations' cache (over MongoDB the change stream may
    // have just invalidated it after the last append: then from the store).
    assert_eq!(run.before("conversation:", "messages (header"), 41.0);
    let line = run.line("conversation:");
    assert!(
        line.contains("(header read from Cache)") || line.contains("(header read from Store)"),
        "{line}"
    );

    // Every layer in front of the store: breaker, admission pool, caches,
    // repositories, the LLM helpers, the models, the process.
    for series in [
        "stratum_breaker_calls_total",
        "stratum_pool_created_total",
        "stratum_repository_operations_total",
        "stratum_llm_prompt_answers_total{source=\"memory\"}",
        "stratum_models_compressions_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            run.series(series) > 0.0,
            "/metrics has no {series}:\n{}",
            run.metrics
        );
    }
    // The conversations' cache was looked up (over MongoDB its hits depend
    // on when the change stream invalidated what the appends wrote).
    let lookups = run.series("stratum_cache_hits_total{cache=\"conversations\"}")
        + run.series("stratum_cache_misses_total{cache=\"conversations\"}");
    assert!(
        lookups > 0.0,
        "no conversations cache lookups:\n{}",
        run.metrics
    );
    assert_eq!(run.ready_status, 200, "{}", run.ready);
    assert_eq!(run.ready["status"], "UP", "{}", run.ready);
    for check in ["breaker.store", "database"] {
        assert_eq!(
            run.ready["components"][check]["status"], "UP",
            "{}",
            run.ready
        );
    }
}

/// Over the test server: the second identical question does not call the
/// provider, eight at once call it once; a second process on the same
/// database answers everything from the store and spends nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn the_service_on_the_server_caches_shares_and_serves() {
    let db = stratum_tests::TestDb::new("llm_service").await;
    let uri = stratum_tests::mongodb_uri();
    let env = [
        ("STRATUM_MONGODB_URI", uri.as_str()),
        ("STRATUM_MONGODB_DATABASE", db.name()),
    ];

    let first = run(&env).await;
    assert_eq!(first.line("store:"), "store: mongodb");
    assert!(
        first
            .line("alice asks")
            .ends_with("answered from Provider, provider calls so far 1")
    );
    assert!(
        first
            .line("bob asks")
            .ends_with("answered from Memory, provider calls so far 1")
    );
    assert_eq!(
        first.before("8 identical questions", "provider call(s)"),
        1.0
    );
    // 1 + 1 + one per turn of the 20-turn conversation.
    let calls = first.after("provider calls:", ":");
    assert_eq!(calls, 22.0);
    check_every_run(&first, 1.0, calls);
    // Over MongoDB also the store's own calls and the driver's connections.
    assert!(first.series("stratum_store_operations_total") > 0.0);
    assert!(first.series("stratum_mongo_connections_created_total") > 0.0);

    let second = run(&env).await;
    assert!(
        second
            .line("alice asks")
            .ends_with("answered from Store, provider calls so far 0")
    );
    assert_eq!(second.after("provider calls:", ":"), 0.0);
    check_every_run(&second, 2.0, calls);
    // Hits are savings, never spend: the second run added none.
    for user in USERS {
        assert_eq!(second.after(user, "spent"), first.after(user, "spent"));
        assert!(second.after(user, "saved") > first.after(user, "saved"));
    }
    db.cleanup().await;
}

/// Without a URI the same program runs on the embedded store.
#[tokio::test(flavor = "multi_thread")]
async fn the_service_runs_on_the_embedded_store() {
    let run = run(&[]).await;
    assert_eq!(run.line("store:"), "store: memory");
    assert!(
        run.line("bob asks")
            .ends_with("answered from Memory, provider calls so far 1")
    );
    assert_eq!(run.before("8 identical questions", "provider call(s)"), 1.0);
    let calls = run.after("provider calls:", ":");
    assert_eq!(calls, 22.0);
    check_every_run(&run, 1.0, calls);
    // No other process writes here: the header comes from the cache.
    assert!(
        run.line("conversation:")
            .contains("(header read from Cache)")
    );
    assert!(run.series("stratum_cache_hits_total{cache=\"conversations\"}") > 0.0);
}

/// The README's "Use it as a library" shows exactly this program, and its
/// dependency lines name exactly this crate's dependencies.
#[test]
fn the_readme_shows_this_program_and_its_dependencies() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let program = include_str!("../src/main.rs");
    assert!(
        readme.contains(&format!("```rust no_run\n{program}```\n")),
        "README.md must show examples/llm-service/src/main.rs as it is"
    );

    let (_, after) = readme.split_once("```toml cargo\n").unwrap();
    let (lines, _) = after.split_once("```").unwrap();
    let names = |manifest: &str| -> Vec<String> {
        let table: toml::Table = toml::from_str(manifest).unwrap();
        let mut names: Vec<String> = table["dependencies"]
            .as_table()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(lines),
        names(include_str!("../Cargo.toml")),
        "the README's dependency lines and examples/llm-service/Cargo.toml differ"
    );
}

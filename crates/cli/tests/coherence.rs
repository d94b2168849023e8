//! Coherence between two `stratum` processes over one test server: a write
//! acknowledged in the writer process reaches the reader process's next
//! read within a bound, over 1,000 writes; then the server is killed and
//! restarted, and every write made from the outage on (issued while the
//! server is down, retried until it is back) reaches the reader within a
//! bound that allows for the driver's 500 ms re-check of a server it lost,
//! while its change stream resumes; once it is open again,
//! writes reach the reader through it.
//!
//! Fails when the reader's repository does not follow the change stream
//! (every write is then missed until the cache's 60 s TTL), and when a
//! reader whose stream is down serves its cache as fresh (the writes after
//! the restart then wait for the stream's 2 s retry pause).

// The test prints the figures it measured (`--nocapture`).
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Duration;

use stratum_cli::coherence::{Delays, ProbeTarget, Reader, write};
use stratum_tests::server::ServerProcess;

/// How long the slowest 1 % of writes may take to reach the reader: the
/// measured p99 is a few milliseconds (`stratum coherence`, see
/// docs/stratum.md); the margin is for a debug build on a loaded machine.
const P99_BOUND: Duration = Duration::from_millis(250);
/// The p99 bound for the writes made across the restart: the reader reads
/// again only once its driver has found the server back, and the driver
/// checks a server it lost at most every 500 ms (the specification's
/// minimum heartbeat), so the first writes after the restart may wait up to
/// that long in a reader whose cache is kept coherent (seen in CI: p99 415
/// ms, max 427 ms). A reader that served its cache as fresh would make them
/// wait for the stream's 2 s retry pause.
const RESTART_P99_BOUND: Duration = Duration::from_millis(750);
/// How long any write may take to reach the reader.
const MAX_BOUND: Duration = Duration::from_secs(1);
/// How long the reader is given to see a round's writes before the missing
/// ones count as missed.
const GIVE_UP: Duration = Duration::from_secs(10);

fn check(round: &str, delays: &Delays, p99_bound: Duration) {
    println!("{round}: {delays}");
    assert_eq!(delays.missed, 0, "{round}: {delays}");
    let p99 = delays.quantile(0.99).unwrap_or_default();
    let max = delays.max().unwrap_or_default();
    assert!(
        p99 <= p99_bound,
        "{round}: p99 over {p99_bound:?}: {delays}"
    );
    assert!(
        max <= MAX_BOUND,
        "{round}: max over {MAX_BOUND:?}: {delays}"
    );
}

#[test]
#[allow(clippy::expect_used)] // a test: failing to run the processes fails it
fn writes_reach_another_process_within_the_bound_across_a_server_restart() {
    let program = Path::new(env!("CARGO_BIN_EXE_stratum"));
    let mut server = ServerProcess::start().expect("a test server starts");
    let target = ProbeTarget::new(server.uri(), "coherence_probe", 4);
    let reader = Reader::spawn(program, &target, &[]).expect("the reader starts");

    let acks =
        write(program, &target, None, 1000, Duration::from_millis(2)).expect("the writer runs");
    assert_eq!(acks.len(), 1000);
    check(
        "steady",
        &Delays::join(&acks, &reader.wait_for(&acks, GIVE_UP)),
        P99_BOUND,
    );

    // The outage: the server is killed, a writer starts while it is down
    // (its first writes wait for it), and the server comes back on the
    // same port and data.
    server.kill();
    let during = {
        let (program, target) = (program.to_owned(), target.clone());
        std::thread::spawn(move || write(&program, &target, None, 300, Duration::from_millis(2)))
    };
    std::thread::sleep(Duration::from_secs(1));
    server.restart().expect("the server restarts");
    let acks = during
        .join()
        .expect("the writer thread")
        .expect("the writer runs across the restart");
    assert_eq!(acks.len(), 300);
    let log = reader.wait_for(&acks, GIVE_UP);
    check(
        "after the restart",
        &Delays::join(&acks, &log),
        RESTART_P99_BOUND,
    );

    // The reader's watcher comes back: open again, and either reopened by
    // the follower (from its token, or afresh when the server lost its
    // history, which drops every cached entry) or resumed inside the
    // driver (whose one automatic retry may outlast a short outage), in
    // which case every event up to now reached it: 4 inserts, 1,300 updates.
    let reopened = |state: Option<(bool, u64, u64, u64)>| {
        state.is_some_and(|(open, events, resumes, restarts)| {
            open && (resumes + restarts >= 1 || events >= 1304)
        })
    };
    let started = std::time::Instant::now();
    while !reopened(reader.log().state) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = reader.log().state;
    println!("reader's watcher (open, events, resumes, restarts): {state:?}");
    assert!(reopened(state), "the stream reopened: {state:?}");

    // And the reopened stream keeps the cache coherent again.
    let acks =
        write(program, &target, None, 300, Duration::from_millis(2)).expect("the writer runs");
    check(
        "resumed",
        &Delays::join(&acks, &reader.wait_for(&acks, GIVE_UP)),
        P99_BOUND,
    );
    reader.stop().expect("the reader stops cleanly");
}

//! Fired and resolved alerts are `tracing` events (`warn` and `info`).
//!
//! A binary of its own with the subscriber installed process-wide: in the
//! crate's unit tests, other test threads register the same callsites while
//! no subscriber wants them, and the cached "never" interest lost an event
//! now and then (about 1 run in 15).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use stratum_monitor::{AlertEngine, AlertRule, Figure, ManualClock};

/// Collects what a `tracing` fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn fired_and_resolved_are_tracing_events() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let engine = AlertEngine::with_clock(Arc::new(ManualClock::new()));
    let cell = Arc::new(AtomicU64::new(0));
    let read = Arc::clone(&cell);
    engine
        .add(
            AlertRule::above(
                "queue_deep",
                Figure::custom(move || Some(read.load(Ordering::SeqCst) as f64)),
                10.0,
            )
            .build()
            .unwrap(),
        )
        .unwrap();
    cell.store(12, Ordering::SeqCst);
    engine.evaluate();
    cell.store(3, Ordering::SeqCst);
    engine.evaluate();
    let text = String::from_utf8(captured.0.lock().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("alert fired"),
        "{text}"
    );
    assert!(
        lines[0].contains("alert=queue_deep") && lines[0].contains("value=12"),
        "{text}"
    );
    assert!(
        lines[1].contains("INFO") && lines[1].contains("alert resolved"),
        "{text}"
    );
}

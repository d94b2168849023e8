//! The `stratum` binary, run as a user would: `stratum check` against the
//! test server, and against a dead address with a planted password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn stratum() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stratum"));
    // The developer's own environment must not change what is checked.
    cmd.env_remove("STRATUM_MONGODB_URI");
    cmd
}

#[test]
fn check_reports_version_and_topology() {
    let out = stratum()
        .args(["check", "--mongodb-uri", &stratum_tests::mongodb_uri()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("connectivity: ok"), "{stdout}");
    let version = stdout
        .lines()
        .find_map(|l| l.strip_prefix("version:"))
        .unwrap()
        .trim();
    assert!(
        version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{stdout}"
    );
    let topology = stdout
        .lines()
        .find_map(|l| l.strip_prefix("topology:"))
        .unwrap()
        .trim();
    assert!(
        topology == "standalone"
            || topology.starts_with("replica set ")
            || topology.starts_with("sharded"),
        "{stdout}"
    );
}

#[test]
fn check_fails_cleanly_and_never_prints_the_password() {
    let out = stratum()
        .args([
            "check",
            "--mongodb-uri",
            "mongodb://me:Pl4nted-s3cret@127.0.0.1:1/?directConnection=true",
            "--timeout",
            "300ms",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("me:****@127.0.0.1:1"), "{all}");
    assert!(all.contains("database unavailable"), "{all}");
    assert!(!all.contains("Pl4nted-s3cret"), "{all}");
}

#[test]
fn check_without_a_server_says_how_to_name_one() {
    let out = stratum().arg("check").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mongodb-uri"));
}

/// The declared indexes: created as declared (`Repository::ensure_indexes`:
/// names, uniqueness, TTL), created by another tool under the server's name
/// for their keys, or not at all; `check` reports each as present (found by
/// keys) or missing.
#[test]
fn check_reports_the_declared_indexes() {
    use stratum::models::{Conversation, ResponseCacheEntry};
    use stratum::{MongoStore, Stratum, StratumConfig};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(stratum_tests::TestDb::new("facade_check"));
    rt.block_on(async {
        let store = std::sync::Arc::new(MongoStore::new(db.db().clone()));
        let stack = Stratum::builder(StratumConfig::default())
            .store(store)
            .build()
            .unwrap();
        stack
            .repository::<Conversation>()
            .unwrap()
            .ensure_indexes()
            .await
            .unwrap();
        stack
            .repository::<ResponseCacheEntry>()
            .unwrap()
            .ensure_indexes()
            .await
            .unwrap();
        // Another tool's index: unnamed, so the server names it by its keys.
        let unnamed = mongodb::IndexModel::builder()
            .keys(stratum::bson::doc! { "conversation_id": 1, "seq": 1 })
            .options(
                mongodb::options::IndexOptions::builder()
                    .unique(true)
                    .build(),
            )
            .build();
        db.db()
            .collection::<stratum::bson::Document>("messages")
            .create_index(unnamed)
            .await
            .unwrap();
    });
    let out = stratum()
        .args(["check", "--mongodb-uri", &stratum_tests::mongodb_uri()])
        .env("STRATUM_MONGODB_DATABASE", db.name())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line for {prefix}:\n{stdout}"))
            .to_owned()
    };
    // Named as declared.
    assert!(
        line("conversations.user_id_updated_at ").ends_with("present as `user_id_updated_at`"),
        "{stdout}"
    );
    // Created by another tool: found by its keys, whatever its name.
    assert!(
        line("messages.conversation_id_seq_unique ")
            .ends_with("present as `conversation_id_1_seq_1`"),
        "{stdout}"
    );
    // The TTL index, created with its TTL through the repository.
    assert!(
        line("llm_response_cache.expires_at_ttl ").ends_with("present as `expires_at_ttl`"),
        "{stdout}"
    );
    // Never created.
    assert!(line("usage_records.").ends_with("missing"), "{stdout}");
    assert!(line("context_snapshots.").ends_with("missing"), "{stdout}");
    let summary = line("indexes:");
    assert!(summary.contains("declared indexes present"), "{stdout}");
    rt.block_on(db.cleanup());
}

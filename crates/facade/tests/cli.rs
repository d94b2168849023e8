//! The `stratum` binary, run as a user would: `stratum check` against the
//! test server, and against a dead address with a planted password.
#![cfg(all(feature = "cli", feature = "mongodb"))]
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

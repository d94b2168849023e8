//! The `stratum` command never prints a connection string's password: not
//! in its output, its logs or its errors, whatever source set the URI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stratum_tests::planted::{assert_no_planted, planted_uris};

/// The `stratum` command with a planted password in the URI, the
/// environment and a configuration file, at TRACE log level: stdout and
/// stderr are searched.
#[test]
fn the_command_never_prints_the_password() {
    use std::process::Command;

    let dir = std::env::temp_dir().join(format!("stratum-redaction-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut runs = 0;
    let mut everything = String::new();
    for uri in planted_uris() {
        let file = dir.join("stratum.toml");
        // A file with the URI and a mistake after it.
        std::fs::write(
            &file,
            format!("[mongodb]\nuri = \"{uri}\"\n[cache]\nttl = \"soon\"\n"),
        )
        .unwrap();
        let broken = file.display().to_string();
        let good = dir.join("good.toml");
        std::fs::write(&good, format!("[mongodb]\nuri = \"{uri}\"\n")).unwrap();
        let good = good.display().to_string();
        let invocations: Vec<(Vec<&str>, Option<&str>)> = vec![
            (
                vec!["check", "--mongodb-uri", &uri, "--timeout", "500ms"],
                None,
            ),
            (vec!["check", "--timeout", "500ms"], Some(uri.as_str())),
            (vec!["check", "--config", &broken], None),
            (vec!["check", "--config", &good, "--timeout", "500ms"], None),
            (
                vec![
                    "demo",
                    "--mongodb-uri",
                    &uri,
                    "--duration",
                    "1s",
                    "--no-progress",
                    "--listen",
                    "127.0.0.1:0",
                ],
                None,
            ),
            (
                vec![
                    "demo",
                    "--config",
                    &good,
                    "--duration",
                    "1s",
                    "--concurrency",
                    "4",
                    "--no-progress",
                    "--listen",
                    "127.0.0.1:0",
                ],
                None,
            ),
        ];
        for (args, env_uri) in invocations {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_stratum"));
            // Short driver timeouts, so the dead port fails in well under a second.
            cmd.args(&args)
                .env("RUST_LOG", "trace")
                .env("STRATUM_MONGODB_SERVER_SELECTION_TIMEOUT", "300ms")
                .env("STRATUM_MONGODB_CONNECT_TIMEOUT", "300ms")
                .env_remove("STRATUM_MONGODB_URI");
            if let Some(uri) = env_uri {
                cmd.env("STRATUM_MONGODB_URI", uri);
            }
            let out = cmd.output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() || args[0] == "demo",
                "{args:?} cannot succeed: {stdout}{stderr}"
            );
            assert!(
                !stdout.is_empty() || !stderr.is_empty(),
                "{args:?} said something"
            );
            assert_no_planted(&format!("stratum {args:?}"), &format!("{stdout}\n{stderr}"));
            everything.push_str(&stdout);
            everything.push_str(&stderr);
            runs += 1;
        }
    }
    assert_eq!(runs, 12);
    // What was searched is the real output of each failure.
    for expected in [
        "Authentication failed",
        "database unavailable",
        "`cache.ttl`",
        "admin:****@127.0.0.1",
    ] {
        assert!(everything.contains(expected), "{expected}: {everything}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

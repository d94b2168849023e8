//! [`ServerProcess`]: a test server this test owns, as a process it can
//! kill, freeze, resume and restart, for fault drills.
//!
//! Most tests share the server `cargo xtask ci` starts ([`crate::mongodb_uri`]).
//! A fault drill cannot: it kills its server. So each drill starts its own
//! SecantusDB process (the MongoDB wire protocol over WiredTiger) on a free
//! loopback port with its own data folder, and can then
//!
//! - [`kill`](ServerProcess::kill) it (SIGKILL: no shutdown, no checkpoint,
//!   what a crash or the OOM killer does),
//! - [`terminate`](ServerProcess::terminate) it (SIGTERM: a clean shutdown),
//! - [`freeze`](ServerProcess::freeze) and [`resume`](ServerProcess::resume)
//!   it (SIGSTOP / SIGCONT: connections stay open and nothing answers, what a
//!   stalled disk or a long pause looks like from outside),
//! - [`restart`](ServerProcess::restart) it on the same port and the same
//!   data folder, so WiredTiger recovers from its own journal.
//!
//! The binary is `$STRATUM_TEST_SERVER_BIN` ([`binary`]), which `cargo xtask
//! ci` and `cargo xtask chaos` set to the build `cargo xtask test-server
//! install` made.
//! Signals are sent with the `kill` command (the workspace forbids `unsafe`,
//! so no `libc::kill`); SIGKILL uses [`std::process::Child::kill`].
//! Dropping the handle kills the process (SIGKILL also ends a frozen one)
//! and removes the data folder, also when the test panics.
//!
//! [`ServerProcess::start_with_fail_points`] starts the PyPI build instead
//! (`secantusd-py`, `$STRATUM_TEST_SERVER_PY_BIN`, which `cargo xtask fleet`
//! and `cargo xtask ci` install into a venv beside the Rust build) with its
//! test commands on: it has `configureFailPoint` (`failCommand` with an
//! error code, `closeConnection`, `blockConnection`), which the pinned Rust
//! build lacks, and it is much slower ([`fail_command`] arms one).
//!
//! ```no_run
//! use stratum_tests::server::ServerProcess;
//!
//! let mut server = ServerProcess::start().unwrap();
//! let uri = server.uri(); // mongodb://127.0.0.1:PORT/?directConnection=true
//! server.kill();          // SIGKILL
//! server.restart().unwrap(); // same port, same data
//! # let _ = uri;
//! ```

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The environment variable that names the server binary to run.
pub const BINARY_VAR: &str = "STRATUM_TEST_SERVER_BIN";

/// How long a fresh or restarted server may take to accept connections
/// (about 0.4 s when fresh; a restart first replays the journal).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server gets to stop after SIGTERM before it is killed (it
/// needs about 2 s).
const STOP_GRACE: Duration = Duration::from_secs(6);

/// The environment variable that names the PyPI build's launcher
/// (`secantusd-py`), the build with fail points.
pub const PY_BINARY_VAR: &str = "STRATUM_TEST_SERVER_PY_BIN";

/// The server binary to run: `$STRATUM_TEST_SERVER_BIN`.
///
/// Where the binary lives is `cargo xtask test-server`'s business (one rule,
/// in `xtask/src/test_server.rs`): `cargo xtask ci` and `cargo xtask chaos`
/// set the variable, and by hand `export STRATUM_TEST_SERVER_BIN=$(cargo
/// xtask test-server path)` does.
pub fn binary() -> io::Result<PathBuf> {
    binary_named(BINARY_VAR, "path")
}

/// The PyPI build's launcher: `$STRATUM_TEST_SERVER_PY_BIN` (by hand:
/// `export STRATUM_TEST_SERVER_PY_BIN=$(cargo xtask test-server path-py)`).
pub fn py_binary() -> io::Result<PathBuf> {
    binary_named(PY_BINARY_VAR, "path-py")
}

fn binary_named(var: &str, task: &str) -> io::Result<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{var} is not set: run the drills through `cargo xtask ci` or \
                     `cargo xtask fleet`, or `export {var}=$(cargo xtask test-server {task})`"
                ),
            ));
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no test server at {}: install it with `cargo xtask test-server install` \
                 (both builds), or set {var} to one",
                path.display()
            ),
        ))
    }
}

/// A SecantusDB server process owned by one test.
#[derive(Debug)]
pub struct ServerProcess {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    /// Holds `data/` and `server.log`; removed on drop.
    dir: PathBuf,
    /// The build's own arguments, then the caller's.
    args: Vec<String>,
}

impl ServerProcess {
    /// Starts a server on a free loopback port with a fresh data folder and
    /// waits until it accepts connections.
    pub fn start() -> io::Result<ServerProcess> {
        ServerProcess::start_with_args(&[])
    }

    /// Like [`start`](Self::start), passing `args` to the server on every
    /// (re)start (`--sync-on-commit`, say).
    pub fn start_with_args(args: &[&str]) -> io::Result<ServerProcess> {
        // Without a cap the write-ahead log preallocates 128 MB.
        ServerProcess::launch(binary()?, &["--log-file-max", "16MB"], args)
    }

    /// The PyPI build (`$STRATUM_TEST_SERVER_PY_BIN`) with its test commands
    /// on, so [`fail_command`] can arm a fail point; `args` as in
    /// [`start_with_args`](Self::start_with_args).
    pub fn start_with_fail_points(args: &[&str]) -> io::Result<ServerProcess> {
        ServerProcess::launch(py_binary()?, &["--enable-test-commands"], args)
    }

    fn launch(binary: PathBuf, own: &[&str], args: &[&str]) -> io::Result<ServerProcess> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "stratum-drill-{}-{port}-{}",
            std::process::id(),
            crate::unique_name("d")
        ));
        fs::create_dir_all(dir.join("data"))?;
        let mut server = ServerProcess {
            binary,
            child: None,
            port,
            dir,
            args: own.iter().chain(args).map(|a| (*a).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let log_err = log.try_clone()?;
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.data_dir())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let started = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(io::Error::other(format!(
                    "test server exited at start ({status}); log:\n{}",
                    self.log_tail()
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            sleep(Duration::from_millis(20));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "test server not ready after {READY_TIMEOUT:?}; log:\n{}",
                self.log_tail()
            ),
        ))
    }

    /// The URI to connect with.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// The loopback port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data folder (the same across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The process id, while a process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive (a frozen process is alive).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, and waits for the process to be gone: no shutdown, no
    /// checkpoint; what survives is what WiredTiger's journal holds.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (a clean shutdown), then SIGKILL if it has not exited within
    /// a few seconds. Returns whether it exited on its own.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // A frozen process cannot handle SIGTERM: let it run first.
        let _ = signal(child.id(), "CONT");
        let _ = signal(child.id(), "TERM");
        let started = Instant::now();
        while started.elapsed() < STOP_GRACE {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGSTOP: the process stops running; its sockets stay open, so
    /// clients connect and send, and nothing answers.
    ///
    /// Returns once every thread of the process is stopped (read from
    /// `/proc` where there is one): the signal only asks, and a thread busy
    /// in a system call (an fsync, say) stops when the call returns.
    pub fn freeze(&self) -> io::Result<()> {
        self.signal_running("STOP")?;
        match self.pid() {
            Some(pid) => wait_until_stopped(pid),
            None => Ok(()),
        }
    }

    /// SIGCONT: a frozen process runs again and answers what waited.
    pub fn resume(&self) -> io::Result<()> {
        self.signal_running("CONT")
    }

    /// Starts the server again on the same port and data folder (after
    /// [`kill`](Self::kill) or [`terminate`](Self::terminate); a running
    /// process is killed first) and waits until it accepts connections.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// The last lines of the server's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn signal_running(&self, name: &str) -> io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other("the server is not running"))?;
        signal(pid, name)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process; a drill's data is not kept.
        self.kill();
        remove_dir(&self.dir);
    }
}

fn remove_dir(dir: &Path) {
    if !dir.as_os_str().is_empty() {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Sends `SIG<name>` to `pid` with the `kill` command.
fn signal(pid: u32, name: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -{name} {pid} failed: {status}"
        )))
    }
}

/// Waits until every thread of `pid` is stopped, as `/proc/PID/task/*/stat`
/// shows it (`T`, or `t` when traced). Without procfs there is nothing to
/// wait on, and the signal is all this can do.
fn wait_until_stopped(pid: u32) -> io::Result<()> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    if !tasks.is_dir() {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        let mut running = 0;
        for task in fs::read_dir(&tasks)? {
            let stat = fs::read_to_string(task?.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses
            // and may itself hold spaces or parentheses.
            let state = stat
                .rfind(')')
                .and_then(|end| stat[end + 1..].trim_start().chars().next());
            if !matches!(state, Some('T' | 't') | None) {
                running += 1;
            }
        }
        if running == 0 {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{running} threads of {pid} still run {READY_TIMEOUT:?} after SIGSTOP"),
            ));
        }
        sleep(Duration::from_millis(1));
    }
}

/// Arms the server's `failCommand` fail point (a server started with
/// [`ServerProcess::start_with_fail_points`]): `mode` is `"alwaysOn"`,
/// `"off"` or `{ times: N }`, `data` names the commands and what they do
/// (`failCommands`, `errorCode`, `closeConnection`, `blockConnection` with
/// `blockTimeMS`). Sent straight to the server at `uri`.
pub async fn fail_command(
    uri: &str,
    mode: mongodb::bson::Bson,
    data: mongodb::bson::Document,
) -> mongodb::error::Result<()> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    client
        .database("admin")
        .run_command(mongodb::bson::doc! {
            "configureFailPoint": "failCommand",
            "mode": mode,
            "data": data,
        })
        .await?;
    client.shutdown().await;
    Ok(())
}

/// A loopback port nobody listens on right now (the OS picks it).
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

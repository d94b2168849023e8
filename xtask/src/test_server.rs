//! The MongoDB-compatible test server: SecantusDB's `secantusd-rs`, the MongoDB
//! wire protocol over WiredTiger (see `../shared/test-server.md`).
//!
//! The server is GPL-licensed and runs as a separate process: it is built with
//! `cargo install` into a cache folder outside the clone, once per machine, and
//! never becomes a dependency of a Stratum crate.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::shell::{self, Result};

/// The pinned server: a pre-release, so the exact version matters.
const CRATE: &str = "secantus-mdb";
const VERSION: &str = "0.5.3-beta.196";
const BINARY: &str = "secantusd-rs";
/// The PyPI build: the one with fail points (`configureFailPoint`'s
/// `failCommand`), much slower; installed with pip into a venv of its own.
const PY_PACKAGE: &str = "SecantusDB";
const PY_VERSION: &str = "0.7.0b3";
const PY_LAUNCHER: &str = "secantusd-py";
/// How long a fresh server may take to accept connections (it needs about 0.4 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server gets to stop after SIGTERM before it is killed (it needs about 2 s).
const STOP_GRACE: Duration = Duration::from_secs(6);

/// The cache folder that holds server builds: `$STRATUM_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/stratum`, else `~/.cache/stratum` (an empty variable
/// counts as unset, as in `stratum_semantic::default_model_dir`, so the
/// model and the server builds always share one folder).
pub(crate) fn cache_dir() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("STRATUM_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("stratum");
    }
    let home = var("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("stratum")
}

fn install_root() -> PathBuf {
    cache_dir().join(format!("secantus-{VERSION}"))
}

/// Where the server binary lives once installed.
pub(crate) fn binary_path() -> Result<PathBuf> {
    Ok(install_root().join("bin").join(BINARY))
}

/// Builds the pinned server into the cache folder unless it is there already.
pub(crate) fn install() -> Result<PathBuf> {
    let binary = binary_path()?;
    if binary.is_file() {
        eprintln!("test server: {} already installed", binary.display());
        return Ok(binary);
    }
    if !shell::available("cmake", &["--version"]) {
        return Err("building the test server needs cmake: run `apt-get install -y cmake`".into());
    }
    println!(
        "test server: building {CRATE} {VERSION} into {} (5-13 minutes on 2 cores)",
        install_root().display()
    );
    shell::run(
        shell::cargo()
            .args([
                "install",
                CRATE,
                "--version",
                VERSION,
                "--ignore-rust-version",
                "--locked",
                "--root",
            ])
            .arg(install_root()),
    )?;
    installed(binary, "cargo install")
}

/// `path` once `installer` has finished: an error naming both when the
/// file it should have put there is missing.
fn installed(path: PathBuf, installer: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{installer} finished but {} is missing",
            path.display()
        ))
    }
}

fn py_root() -> PathBuf {
    cache_dir().join(format!("secantus-py-{PY_VERSION}"))
}

/// Where the PyPI build's launcher lives once installed.
pub(crate) fn py_binary_path() -> PathBuf {
    py_root().join("bin").join(PY_LAUNCHER)
}

/// Installs the PyPI build (`secantusd-py`, with fail points) into a venv
/// in the cache folder unless it is there already (about 25 s). Never into
/// the repository, and never into the system's Python.
pub(crate) fn install_py() -> Result<PathBuf> {
    let launcher = py_binary_path();
    if launcher.is_file() {
        eprintln!("test server: {} already installed", launcher.display());
        return Ok(launcher);
    }
    let root = py_root();
    println!(
        "test server: installing {PY_PACKAGE} {PY_VERSION} (secantusd-py) into {}",
        root.display()
    );
    shell::run(Command::new("python3").args(["-m", "venv"]).arg(&root))?;
    shell::run(
        Command::new(root.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("{PY_PACKAGE}=={PY_VERSION}")),
    )?;
    installed(launcher, "pip")
}

/// A running server with its own fresh data folder. Dropping it stops the
/// server and removes the folder, so a failing task never leaves one behind.
pub(crate) struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Server {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    pub(crate) fn start() -> Result<Server> {
        let binary = install()?;
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("stratum-test-server-{}-{port}", std::process::id()));
        let data = dir.join("data");
        fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        let log = fs::File::create(dir.join("server.log"))
            .map_err(|e| format!("cannot create the server log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot share the server log: {e}"))?;
        let child = Command::new(&binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--log-file-max",
                "16MB",
                "--storage-path",
            ])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut server = Server {
            child: Some(child),
            port,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// The URI tests connect with.
    pub(crate) fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    fn wait_ready(&mut self) -> Result {
        let started = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "test server exited at start ({status}); log: {}",
                    self.log_tail()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        Err(format!(
            "test server not ready after {READY_TIMEOUT:?}; log: {}",
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Leaves the server running after this process exits, for `test-server start`.
    fn detach(mut self) -> (u32, u16, PathBuf) {
        let pid = self.child.take().map_or(0, |c| c.id());
        (pid, self.port, std::mem::take(&mut self.dir))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_pid(child.id(), || matches!(child.try_wait(), Ok(Some(_))));
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// SIGTERM, then up to `STOP_GRACE` for `exited` to become true, then SIGKILL.
fn stop_pid(pid: u32, mut exited: impl FnMut() -> bool) {
    let pid = pid.to_string();
    let _ = Command::new("kill")
        .args(["-TERM", &pid])
        .stderr(Stdio::null())
        .status();
    let started = Instant::now();
    while started.elapsed() < STOP_GRACE {
        if exited() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-KILL", &pid])
        .stderr(Stdio::null())
        .status();
}

/// A loopback port nobody listens on right now (the OS picks it).
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Where `test-server start` records the server it left running.
fn state_file() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    root.join("target").join("xtask").join("test-server.state")
}

/// `cargo xtask test-server start`: start a server and leave it running.
pub(crate) fn start_detached() -> Result {
    let state = state_file();
    if state.exists() {
        return Err(format!(
            "a test server is already recorded in {}: run `cargo xtask test-server stop` first",
            state.display()
        ));
    }
    let server = Server::start()?;
    let uri = server.uri();
    let (pid, port, dir) = server.detach();
    if let Some(parent) = state.parent() {
        fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    fs::write(&state, format!("{pid}\n{port}\n{}\n", dir.display())).map_err(|e| e.to_string())?;
    eprintln!(
        "test server: pid {pid}, data in {}; stop it with `cargo xtask test-server stop`",
        dir.display()
    );
    println!("{uri}");
    Ok(())
}

/// `cargo xtask test-server stop`: stop the server `start` left running.
pub(crate) fn stop_detached() -> Result {
    let state = state_file();
    let text = fs::read_to_string(&state)
        .map_err(|_| "no test server is recorded as running".to_string())?;
    let mut lines = text.lines();
    let pid = lines.next().unwrap_or_default().to_owned();
    let _port = lines.next();
    let dir = lines.next().unwrap_or_default().to_owned();
    if let Ok(pid) = pid.parse::<u32>() {
        let alive = || {
            Command::new("kill")
                .args(["-0", &pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        stop_pid(pid, || !alive());
    }
    if !dir.is_empty() {
        let _ = fs::remove_dir_all(&dir);
    }
    let _ = fs::remove_file(&state);
    println!("test server stopped");
    Ok(())
}

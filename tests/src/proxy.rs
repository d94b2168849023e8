//! A fault-injecting TCP proxy: test infrastructure that sits between
//! application processes and the server and does to their connections what
//! a network does (added latency, stalls, resets, a blackhole), per
//! direction, while the drill that owns it says so.
//!
//! It works against any server (the test server, a real `mongod`), which
//! the server's own fail points do not: the pinned test server build has
//! no `configureFailPoint`.
//!
//! The proxy listens on a free loopback port and runs on its own thread
//! (its own tokio runtime), so a drill can hold it from synchronous code
//! and block without stopping it. Each accepted connection gets its own
//! upstream connection; bytes are forwarded as they are read, one queue per
//! direction, so a delayed or held chunk never overtakes an earlier one.
//!
//! - [`FaultProxy::set_latency`]: every chunk is forwarded `d` after it was read;
//! - [`FaultProxy::stall`]: chunks are read and held (not forwarded, not
//!   dropped) until [`FaultProxy::clear`]; the connections stay open;
//! - [`FaultProxy::blackhole`]: chunks are read and dropped; a connection
//!   accepted while the blackhole is on [`Direction::ToServer`] is never
//!   connected upstream, and is closed when the blackhole ends;
//! - [`FaultProxy::reset_all`]: every open connection is closed with a TCP
//!   reset on both sides, whatever it was doing.
//!
//! ```no_run
//! use std::time::Duration;
//! use stratum_tests::proxy::{Direction, FaultProxy};
//!
//! let proxy = FaultProxy::start("127.0.0.1:27017".parse().unwrap()).unwrap();
//! let uri = proxy.uri(); // give this to the application
//! proxy.set_latency(Direction::ToClient, Duration::from_millis(200));
//! proxy.clear();
//! proxy.reset_all();
//! ```

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the application to the server (requests).
    ToServer,
    /// From the server to the application (replies).
    ToClient,
}

/// What happens to one direction's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionFaults {
    /// Added to every chunk's forwarding time.
    pub latency: Duration,
    /// Chunks are held until this is cleared.
    pub stalled: bool,
    /// Chunks are dropped.
    pub blackhole: bool,
}

/// The faults in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Requests.
    pub to_server: DirectionFaults,
    /// Replies.
    pub to_client: DirectionFaults,
    /// Bumped by [`FaultProxy::reset_all`]: every connection open at that
    /// moment is reset.
    reset_generation: u64,
}

impl Faults {
    fn direction(&self, d: Direction) -> &DirectionFaults {
        match d {
            Direction::ToServer => &self.to_server,
            Direction::ToClient => &self.to_client,
        }
    }

    fn direction_mut(&mut self, d: Direction) -> &mut DirectionFaults {
        match d {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    reset: AtomicU64,
    dropped_bytes: AtomicU64,
    forwarded_bytes: AtomicU64,
}

/// What the proxy did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections closed by a reset (of [`FaultProxy::reset_all`]).
    pub reset: u64,
    /// Bytes a blackhole swallowed.
    pub dropped_bytes: u64,
    /// Bytes forwarded, both directions.
    pub forwarded_bytes: u64,
}

/// A running proxy; stops (closing every connection) when dropped.
#[must_use = "the proxy stops when dropped"]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("faults", &*self.faults.borrow())
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `upstream`, with no fault until told.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let (faults, _) = watch::channel(Faults::default());
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = oneshot::channel();
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Shared {
            upstream,
            faults: faults.clone(),
            counters: Arc::clone(&counters),
        };
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, shared) => {}
                    }
                });
                // Dropping the runtime cancels every connection task: their
                // sockets close.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(FaultProxy {
            addr,
            upstream,
            faults,
            counters,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A MongoDB URI that reaches the server through the proxy (a direct
    /// connection: the server's `hello` names its own address, which the
    /// driver must not follow around the proxy).
    pub fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            self.addr.port()
        )
    }

    /// The faults in force now.
    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    /// Every chunk going `direction` is forwarded `latency` after it was
    /// read (zero: no added latency).
    pub fn set_latency(&self, direction: Direction, latency: Duration) {
        self.faults
            .send_modify(|f| f.direction_mut(direction).latency = latency);
    }

    /// Holds every chunk going `direction` (open connections stay open)
    /// until [`clear`](Self::clear).
    pub fn stall(&self, direction: Direction) {
        self.faults
            .send_modify(|f| f.direction_mut(direction).stalled = true);
    }

    /// Drops every chunk going `direction` until [`clear`](Self::clear);
    /// on [`Direction::ToServer`], new connections are accepted and never
    /// connected upstream.
    pub fn blackhole(&self, direction: Direction) {
        self.faults
            .send_modify(|f| f.direction_mut(direction).blackhole = true);
    }

    /// Ends every fault (held chunks are forwarded); resets are one-off and
    /// not undone.
    pub fn clear(&self) {
        self.faults.send_modify(|f| {
            f.to_server = DirectionFaults::default();
            f.to_client = DirectionFaults::default();
        });
    }

    /// Closes every connection open now with a TCP reset on both sides
    /// (new connections are served as usual).
    pub fn reset_all(&self) {
        self.faults.send_modify(|f| f.reset_generation += 1);
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            dropped_bytes: c.dropped_bytes.load(Ordering::Relaxed),
            forwarded_bytes: c.forwarded_bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What every connection task shares.
#[derive(Clone)]
struct Shared {
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    counters: Arc<Counters>,
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.counters.open.fetch_add(1, Ordering::Relaxed);
            connection(client, &shared).await;
            shared.counters.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Makes dropping the socket send a reset (RST) instead of a FIN.
fn reset_on_close(stream: &TcpStream) {
    // A zero linger closes at once (with a reset): it never blocks the
    // thread, which is why tokio's deprecation of `set_linger` (about
    // blocking on a non-zero linger) does not apply.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// One application connection: connects upstream (unless a blackhole is
/// on) and pumps both directions until either side closes or a reset.
async fn connection(client: TcpStream, shared: &Shared) {
    let mut faults = shared.faults.subscribe();
    let generation = faults.borrow().reset_generation;
    reset_on_close(&client);
    let _ = client.set_nodelay(true);
    if faults.borrow().to_server.blackhole {
        hold(client, &mut faults, generation, shared).await;
        return;
    }
    let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
        // The server is down: the application sees its connection reset.
        return;
    };
    reset_on_close(&upstream);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    tokio::select! {
        () = pump(client_read, upstream_write, Direction::ToServer, shared) => {}
        () = pump(upstream_read, client_write, Direction::ToClient, shared) => {}
        // Counted before the select drops the halves (which sends the
        // resets): counted in its handler, a client could see its error
        // and read the stats first (CI saw `reset: 0` after a reset).
        () = async {
            reset_after(&mut faults, generation).await;
            shared.counters.reset.fetch_add(1, Ordering::Relaxed);
        } => {}
    }
    // Dropping the halves closes both sockets, with a reset.
}

/// Waits until a reset newer than `generation` is asked for.
async fn reset_after(faults: &mut watch::Receiver<Faults>, generation: u64) {
    while faults.borrow_and_update().reset_generation == generation {
        if faults.changed().await.is_err() {
            // The proxy is stopping: its runtime cancels this task.
            std::future::pending::<()>().await;
        }
    }
}

/// A connection accepted into a blackhole: read and drop what it sends
/// until the blackhole ends (or a reset), then close it.
async fn hold(
    mut client: TcpStream,
    faults: &mut watch::Receiver<Faults>,
    generation: u64,
    shared: &Shared,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    shared.counters.dropped_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            },
            changed = faults.changed() => {
                let now = *faults.borrow_and_update();
                if changed.is_err() || !now.to_server.blackhole || now.reset_generation != generation {
                    return;
                }
            }
        }
    }
}

/// One direction of one connection: a reader that stamps each chunk (or
/// drops it in a blackhole) and a writer that forwards the chunks in order,
/// each once its latency has passed and no stall holds it.
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf, direction: Direction, shared: &Shared) {
    let (queue, chunks) = mpsc::unbounded_channel();
    tokio::select! {
        () = read_side(from, queue, direction, shared) => {}
        () = write_side(to, chunks, direction, shared) => {}
    }
}

async fn read_side(
    mut from: OwnedReadHalf,
    queue: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    direction: Direction,
    shared: &Shared,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.faults.borrow().direction(direction).blackhole {
            shared
                .counters
                .dropped_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        if queue.send((Instant::now(), buf[..n].to_vec())).is_err() {
            break;
        }
    }
    // The peer closed: let the writer drain what is queued and then end
    // the connection (dropping `queue` ends its loop).
    drop(queue);
    std::future::pending::<()>().await;
}

async fn write_side(
    mut to: OwnedWriteHalf,
    mut chunks: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    direction: Direction,
    shared: &Shared,
) {
    let mut faults = shared.faults.subscribe();
    while let Some((read_at, chunk)) = chunks.recv().await {
        loop {
            let now = *faults.borrow_and_update();
            let f = now.direction(direction);
            if f.stalled {
                if faults.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let due = read_at + f.latency;
            if Instant::now() >= due {
                break;
            }
            // A stall (or a latency change) while waiting is looked at
            // again when it comes.
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                changed = faults.changed() => if changed.is_err() { return; },
            }
        }
        if to.write_all(&chunk).await.is_err() {
            return;
        }
        shared
            .counters
            .forwarded_bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

/// The one `host:port` of a `mongodb://` URI (credentials and options
/// skipped), resolved: where a proxy in front of that server forwards to.
pub fn address_of(uri: &str) -> io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "not a one-host mongodb:// URI");
    let rest = uri.strip_prefix("mongodb://").ok_or_else(invalid)?;
    let hosts = rest.split(['/', '?']).next().unwrap_or_default();
    let host = hosts.rsplit_once('@').map_or(hosts, |(_, h)| h);
    if host.is_empty() || host.contains(',') {
        return Err(invalid());
    }
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:27017")
    };
    host.to_socket_addrs()?.next().ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_address_is_read_from_the_uri() {
        let a = |uri| address_of(uri).ok();
        assert_eq!(
            a("mongodb://127.0.0.1:4242/?directConnection=true"),
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 4242)))
        );
        assert_eq!(
            a("mongodb://u:p@127.0.0.1:4242"),
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 4242)))
        );
        assert_eq!(
            a("mongodb://127.0.0.1/db"),
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 27017)))
        );
        assert_eq!(a("mongodb://a:1,b:2/"), None);
        assert_eq!(a("http://x"), None);
    }
}

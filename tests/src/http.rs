//! Tiny HTTP/1.1 pieces for tests against real listeners: a client for the
//! tests that scrape one (`/metrics`, `/health/*`), one `GET` with
//! `Connection: close`; and a receiver of Alertmanager webhook posts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response: the status code and the body (de-chunked).
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// `GET path` from `addr`, read to the end.
///
/// # Panics
/// When the connection or the response fails (a failed test).
#[allow(clippy::expect_used)]
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    try_get(addr, path).await.expect("a response")
}

/// `GET path` from `addr`, read to the end; an error when the connection
/// fails or closes without a response (a listener that is gone, going, or
/// not there yet).
pub async fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let not_http = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let raw = String::from_utf8(raw).map_err(|_| not_http())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(not_http)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_http)?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The alerts a [`receive_alerts`] receiver was posted, each with when its
/// post arrived, in arrival order.
pub type PostedAlerts = Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

/// A receiver of Alertmanager webhook posts on `127.0.0.1:0`, served by
/// tasks on the current tokio runtime: every post's body (a JSON array of
/// alerts) is read by its `Content-Length`, its alerts recorded, and `200`
/// answered.
///
/// # Panics
/// When there is no runtime, or a post is not HTTP with a JSON array body
/// (a failed test).
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub async fn receive_alerts() -> (SocketAddr, PostedAlerts) {
    let seen = PostedAlerts::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                let body = read_post_body(&mut socket).await;
                let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
                let at = Instant::now();
                sink.lock().extend(
                    alerts
                        .as_array()
                        .expect("a JSON array of alerts")
                        .iter()
                        .map(|a| (at, a.clone())),
                );
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
            });
        }
    });
    (addr, seen)
}

/// Reads a request's head, then `Content-Length` bytes of body.
#[allow(clippy::unwrap_used, clippy::expect_used)]
async fn read_post_body(socket: &mut tokio::net::TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length header");
            if body.len() >= length {
                return body[..length].to_owned();
            }
        }
        assert!(n > 0, "the post ended early");
    }
}

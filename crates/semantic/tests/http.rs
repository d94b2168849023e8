//! `HttpEmbedder` against a local fake `/v1/embeddings` server (this machine
//! reaches no provider): the wire format, the errors, and the key kept out of
//! every Debug and error text.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use stratum_semantic::{ApiKey, EmbedError, Embedder, HttpEmbedder, HttpEmbedderConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const KEY: &str = "sk-test-0123456789abcdef";

/// What the fake server answers to each request.
#[derive(Clone)]
enum Answer {
    /// Status and body.
    Reply(u16, String),
    /// Reads the request and never answers.
    Hang,
}

/// Starts a one-connection-at-a-time server on a free loopback port; each
/// request (head and body, as text) is sent on the channel.
async fn fake_server(answer: Answer) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let request = loop {
                let n = stream.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break String::from_utf8_lossy(&buf).into_owned();
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break text;
                    }
                }
            };
            tx.send(request).unwrap();
            match &answer {
                Answer::Reply(status, body) => {
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    stream.write_all(response.as_bytes()).await.unwrap();
                }
                Answer::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
            }
        }
    });
    (url, rx)
}

fn embedder(url: &str, dimensions: usize) -> HttpEmbedder {
    HttpEmbedder::new(
        HttpEmbedderConfig::new(url, "test-model", dimensions)
            .api_key(ApiKey::new(KEY))
            .timeout(Duration::from_millis(500)),
    )
    .unwrap()
}

#[tokio::test]
async fn sends_the_openai_request_and_orders_vectors_by_index() {
    // Answered out of order: `index` decides.
    let body = r#"{"object":"list","data":[
        {"object":"embedding","index":1,"embedding":[0.0,1.0,0.0]},
        {"object":"embedding","index":0,"embedding":[1.0,0.0,0.0]}],"model":"test-model"}"#;
    let (url, mut requests) = fake_server(Answer::Reply(200, body.into())).await;
    let vectors = embedder(&url, 3)
        .embed_batch(&["first", "second"])
        .await
        .unwrap();
    assert_eq!(vectors, vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]]);
    let request = requests.recv().await.unwrap();
    assert!(
        request.starts_with("POST /v1/embeddings HTTP/1.1"),
        "{request}"
    );
    assert!(
        request.contains(&format!("authorization: Bearer {KEY}")),
        "{request}"
    );
    let json: serde_json::Value =
        serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"model": "test-model", "input": ["first", "second"]})
    );
}

#[tokio::test]
async fn embed_one_text() {
    let body = r#"{"data":[{"index":0,"embedding":[0.5,0.5]}]}"#;
    let (url, _requests) = fake_server(Answer::Reply(200, body.into())).await;
    assert_eq!(
        embedder(&url, 2).embed("only").await.unwrap(),
        vec![0.5, 0.5]
    );
}

#[tokio::test]
async fn the_key_never_shows_in_debug_or_errors() {
    // A server that echoes the key back in its error body.
    let body = format!(r#"{{"error":"invalid key {KEY}"}}"#);
    let (url, _requests) = fake_server(Answer::Reply(401, body)).await;
    let e = embedder(&url, 3);
    let error = e.embed("x").await.unwrap_err();
    assert!(
        matches!(error, EmbedError::Status { status: 401, .. }),
        "{error:?}"
    );
    for text in [format!("{error}"), format!("{error:?}"), format!("{e:?}")] {
        assert!(!text.contains(KEY), "key leaked: {text}");
    }
    assert!(format!("{error}").contains("<redacted>"), "{error}");
}

#[tokio::test]
async fn wrong_dimensions_count_and_json_are_typed_errors() {
    let cases = [
        (
            r#"{"data":[{"index":0,"embedding":[1.0,2.0]}]}"#,
            "dimensions",
        ),
        (r#"{"data":[]}"#, "count"),
        (
            r#"{"data":[{"index":0,"embedding":[1.0,2.0,3.0]}"#,
            "decode",
        ),
        (
            r#"{"data":[{"index":5,"embedding":[1.0,2.0,3.0]}]}"#,
            "decode",
        ),
    ];
    for (body, kind) in cases {
        let (url, _requests) = fake_server(Answer::Reply(200, body.into())).await;
        let error = embedder(&url, 3).embed("x").await.unwrap_err();
        let matched = match kind {
            "dimensions" => matches!(
                error,
                EmbedError::Dimensions {
                    expected: 3,
                    got: 2
                }
            ),
            "count" => matches!(
                error,
                EmbedError::Count {
                    sent: 1,
                    received: 0
                }
            ),
            _ => matches!(error, EmbedError::Decode(_)),
        };
        assert!(matched, "{body}: {error:?}");
    }
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (url, _requests) = fake_server(Answer::Hang).await;
    let error = embedder(&url, 3).embed("x").await.unwrap_err();
    assert!(matches!(error, EmbedError::Timeout(_)), "{error:?}");
}

#[tokio::test]
async fn unreachable_endpoint_is_a_connect_error() {
    // Bind then drop: the port is free and nobody listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = embedder(&format!("http://127.0.0.1:{port}/v1/embeddings"), 3)
        .embed("x")
        .await
        .unwrap_err();
    assert!(matches!(error, EmbedError::Connect(_)), "{error:?}");
}

#[test]
fn bad_settings_are_refused_by_field() {
    for (url, dims, field) in [
        ("https://api.example/v1/embeddings", 3, "url"),
        ("not a url", 3, "url"),
        ("http://127.0.0.1:1/v1/embeddings", 0, "dimensions"),
    ] {
        let Err(EmbedError::Config(e)) = HttpEmbedder::new(HttpEmbedderConfig::new(url, "m", dims))
        else {
            panic!("{url} {dims} accepted");
        };
        assert_eq!(e.field(), field);
    }
}

#[test]
fn config_debug_and_serialisation_hide_the_key() {
    let config = HttpEmbedderConfig::new("http://127.0.0.1:1/v1/embeddings", "m", 3)
        .api_key(ApiKey::new(KEY));
    assert!(!format!("{config:?}").contains(KEY));
    let json = serde_json::to_string(&config).unwrap();
    assert!(!json.contains(KEY), "{json}");
}

//! `HttpEmbedder`: an OpenAI-compatible `/v1/embeddings` endpoint over HTTP/1.1.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use stratum_core::ConfigError;

use crate::{EmbedError, Embedder};

/// How much of an error body is quoted in [`EmbedError::Status`].
const QUOTED_BODY: usize = 512;

/// An API key: sent as `Authorization: Bearer`, never shown by `Debug`,
/// `Display` or any error.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    #[must_use]
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Settings of an [`HttpEmbedder`]: plain data, serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpEmbedderConfig {
    /// The endpoint, `http://host:port/v1/embeddings`. Plain HTTP only (a
    /// local server such as vLLM, llama.cpp, Ollama or TEI, or a TLS-ending
    /// sidecar); `https` is refused with a [`ConfigError`]. No default.
    pub url: String,
    /// The `model` field of the request. No default.
    pub model: String,
    /// The length of the vectors the model returns; an answer of another
    /// length is an [`EmbedError::Dimensions`]. No default.
    pub dimensions: usize,
    /// How long one request may take, connection included. Default 10 s.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// The bearer token, if the endpoint needs one. Default none. Never
    /// serialised.
    #[serde(default, skip_serializing)]
    pub api_key: Option<ApiKey>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl HttpEmbedderConfig {
    /// A configuration with the default timeout and no key.
    #[must_use]
    pub fn new(url: impl Into<String>, model: impl Into<String>, dimensions: usize) -> Self {
        HttpEmbedderConfig {
            url: url.into(),
            model: model.into(),
            dimensions,
            timeout: default_timeout(),
            api_key: None,
        }
    }

    /// Sets the bearer token.
    #[must_use]
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Sets the request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Embeds through an OpenAI-compatible `/v1/embeddings` endpoint: one POST
/// per batch (`{"model", "input": [texts]}`), vectors read from
/// `data[].embedding` in `data[].index` order.
///
/// ```no_run
/// # async fn run() -> Result<(), stratum_semantic::EmbedError> {
/// use stratum_semantic::{Embedder, HttpEmbedder, HttpEmbedderConfig};
///
/// let embedder = HttpEmbedder::new(HttpEmbedderConfig::new(
///     "http://127.0.0.1:8080/v1/embeddings",
///     "all-MiniLM-L6-v2",
///     384,
/// ))?;
/// let vector = embedder.embed("What is the capital of Canada?").await?;
/// assert_eq!(vector.len(), 384);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HttpEmbedder {
    config: HttpEmbedderConfig,
    /// The origin-form target (`/v1/embeddings`): what an HTTP/1.1 request
    /// line names when not talking to a proxy.
    path: Uri,
    host: String,
    port: u16,
    authority: String,
}

impl HttpEmbedder {
    /// Checks the settings; refuses an unparsable or non-`http` URL and zero
    /// dimensions.
    pub fn new(config: HttpEmbedderConfig) -> Result<HttpEmbedder, EmbedError> {
        let uri: Uri = config
            .url
            .parse()
            .map_err(|e| ConfigError::invalid("url", format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(ConfigError::invalid("url", "only http:// endpoints are supported").into());
        }
        let host = uri
            .host()
            .ok_or_else(|| ConfigError::invalid("url", "has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| host.clone());
        if config.dimensions == 0 {
            return Err(ConfigError::invalid("dimensions", "must be at least 1").into());
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::invalid("timeout", "must be more than zero").into());
        }
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| ConfigError::invalid("url", format!("bad path: {e}")))?;
        Ok(HttpEmbedder {
            config,
            path,
            host,
            port,
            authority,
        })
    }

    async fn post(&self, body: Bytes) -> Result<(u16, Bytes), EmbedError> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| EmbedError::Connect(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| EmbedError::Connect(e.to_string()))?;
        let connection = tokio::spawn(connection);
        let mut request = Request::post(self.path.clone())
            .header(header::HOST, self.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.config.api_key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", key.0));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| EmbedError::Connect(self.redact(&e.to_string())))?;
        let answer = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| EmbedError::Connect(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| EmbedError::Connect(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        connection.abort();
        answer
    }

    /// Removes the API key from text quoted from the server.
    fn redact(&self, text: &str) -> String {
        match &self.config.api_key {
            Some(key) if !key.0.is_empty() => text.replace(&key.0, "<redacted>"),
            _ => text.to_owned(),
        }
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    input: &'a [&'a str],
}

#[derive(Deserialize)]
struct WireResponse {
    data: Vec<WireEmbedding>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

#[async_trait]
impl Embedder for HttpEmbedder {
    fn dimensions(&self) -> usize {
        self.config.dimensions
    }

    async fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let body = serde_json::to_vec(&WireRequest {
            model: &self.config.model,
            input: texts,
        })
        .map_err(|e| EmbedError::Decode(e.to_string()))?;
        let (status, body) = tokio::time::timeout(self.config.timeout, self.post(body.into()))
            .await
            .map_err(|_| EmbedError::Timeout(self.config.timeout))??;
        if !(200..300).contains(&status) {
            let quoted = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY)]).into_owned();
            return Err(EmbedError::Status {
                status,
                body: self.redact(&quoted),
            });
        }
        let mut wire: WireResponse = serde_json::from_slice(&body)
            .map_err(|e| EmbedError::Decode(self.redact(&e.to_string())))?;
        if wire.data.len() != texts.len() {
            return Err(EmbedError::Count {
                sent: texts.len(),
                received: wire.data.len(),
            });
        }
        // The specification orders `data` by `index`; servers that omit it
        // answer in input order.
        wire.data.sort_by_key(|e| e.index.unwrap_or(usize::MAX));
        let mut seen = vec![false; texts.len()];
        for (position, e) in wire.data.iter().enumerate() {
            let index = e.index.unwrap_or(position);
            match seen.get_mut(index) {
                Some(s) if !*s => *s = true,
                _ => return Err(EmbedError::Decode(format!("bad or repeated index {index}"))),
            }
        }
        wire.data
            .into_iter()
            .map(|e| {
                if e.embedding.len() == self.config.dimensions {
                    Ok(e.embedding)
                } else {
                    Err(EmbedError::Dimensions {
                        expected: self.config.dimensions,
                        got: e.embedding.len(),
                    })
                }
            })
            .collect()
    }
}

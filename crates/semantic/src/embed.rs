//! The `Embedder` trait: text in, a fixed-size vector out.

use async_trait::async_trait;

use crate::EmbedError;

/// Turns texts into vectors of a fixed length, [`dimensions`](Self::dimensions).
///
/// Implementations: [`HttpEmbedder`](crate::HttpEmbedder) (an
/// OpenAI-compatible `/v1/embeddings` endpoint) and, with the `local-model`
/// feature, `LocalEmbedder` (all-MiniLM-L6-v2 on the CPU). The vectors need
/// not be normalised: the cache normalises them.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The length of every vector this embedder returns.
    fn dimensions(&self) -> usize;

    /// Embeds every text, in order: the answer has `texts.len()` vectors of
    /// [`dimensions`](Self::dimensions) each, or an error.
    async fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Whether [`embed_batch`](Self::embed_batch) computes on the calling
    /// thread without waiting on I/O (a local model): an async caller should
    /// then run it where blocking is allowed (`tokio::task::spawn_blocking`).
    /// Default `false`.
    fn runs_on_cpu(&self) -> bool {
        false
    }

    /// Embeds one text.
    async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed_batch(&[text]).await?;
        match vectors.pop() {
            Some(v) if vectors.is_empty() => Ok(v),
            _ => Err(EmbedError::Count {
                sent: 1,
                received: vectors.len() + 1,
            }),
        }
    }
}

/// Scales `v` to unit length in place; refuses a vector with no direction.
pub fn normalize(v: &mut [f32]) -> Result<(), EmbedError> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return Err(EmbedError::Degenerate);
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Ok(())
}

/// The dot product over the shorter length; for unit vectors, their cosine
/// similarity.
#[must_use]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums: the compiler vectorises this loop.
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

//! What the LLM tests share: the request they cache answers for.

use stratum::models::{CacheKeyRequest, ChatMessage, RequestParams};

/// A request to one provider's model with `messages` and `params`.
pub(crate) fn request<'a>(
    messages: &'a [ChatMessage],
    params: &'a RequestParams,
) -> CacheKeyRequest<'a> {
    CacheKeyRequest {
        provider: "openai",
        model: "gpt-4o",
        messages,
        params,
    }
}

//! `Scope`: everything that must match exactly for two requests to share an
//! answer, and its digest, the key of a partition of the cache.

use sha2::{Digest, Sha256};

/// What must match exactly for two requests to share an answer. A semantic
/// hit is only ever looked for among entries of the same scope: never across
/// tenants, models, parameter sets, system prompts or tool lists.
///
/// Each field is canonical text the caller chooses (say, the sampling
/// parameters as canonical JSON); the digest separates fields, so
/// `("ab", "c")` and `("a", "bc")` differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Scope<'a> {
    /// The model's name.
    pub model: &'a str,
    /// The sampling parameters (temperature, max tokens...), canonical text.
    pub parameters: &'a str,
    /// The system prompt.
    pub system_prompt: &'a str,
    /// The tool definitions, canonical text.
    pub tools: &'a str,
    /// The tenant.
    pub tenant: &'a str,
}

impl<'a> Scope<'a> {
    /// A scope for `model` with every other field empty.
    #[must_use]
    pub fn model(model: &'a str) -> Self {
        Scope {
            model,
            ..Scope::default()
        }
    }

    /// Sets the sampling parameters.
    #[must_use]
    pub fn parameters(mut self, parameters: &'a str) -> Self {
        self.parameters = parameters;
        self
    }

    /// Sets the system prompt.
    #[must_use]
    pub fn system_prompt(mut self, system_prompt: &'a str) -> Self {
        self.system_prompt = system_prompt;
        self
    }

    /// Sets the tool definitions.
    #[must_use]
    pub fn tools(mut self, tools: &'a str) -> Self {
        self.tools = tools;
        self
    }

    /// Sets the tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: &'a str) -> Self {
        self.tenant = tenant;
        self
    }

    /// The SHA-256 of the fields, each tagged and length-prefixed.
    #[must_use]
    pub fn digest(&self) -> ScopeDigest {
        let mut hash = Sha256::new();
        for (tag, field) in [
            (b'm', self.model),
            (b'p', self.parameters),
            (b's', self.system_prompt),
            (b't', self.tools),
            (b'n', self.tenant),
        ] {
            hash.update([tag]);
            hash.update((field.len() as u64).to_le_bytes());
            hash.update(field.as_bytes());
        }
        ScopeDigest(hash.finalize().into())
    }
}

/// The digest of a [`Scope`]: the key of one partition of the cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeDigest(pub [u8; 32]);

impl std::fmt::Debug for ScopeDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScopeDigest(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

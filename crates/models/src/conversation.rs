//! Conversations, their messages (one document per message, so a long
//! conversation never meets the 16 MiB limit) and compressed-context snapshots.

use std::collections::BTreeMap;

use bson::DateTime;
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

use crate::validate;
use crate::{
    ChatMessage, CompressionReport, Document, Encoding, IndexDirection, IndexSpec, Role,
    ValidationError,
};

/// A conversation's header. Collection `conversations`; its messages live in
/// `messages`, keyed by `(conversation_id, seq)`.
///
/// ```
/// use stratum_models::{Conversation, Document};
///
/// let now = bson::DateTime::from_millis(1_700_000_000_000);
/// let c = Conversation::new("gpt-4o", now).with_user("user-42");
/// c.validate()?;
/// assert_eq!(c.message_count, 0);
/// # Ok::<(), stratum_models::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The conversation's id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The stored shape's version.
    pub schema_version: i32,
    /// The owner, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// A title for lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The model it talks to.
    pub model: String,
    /// Messages stored so far.
    pub message_count: i64,
    /// Tokens in all its messages.
    pub total_tokens: i64,
    /// When it started.
    pub created_at: DateTime,
    /// When a message was last added.
    pub updated_at: DateTime,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Conversation {
    /// An empty conversation with `model`, started at `now`.
    pub fn new(model: impl Into<String>, now: DateTime) -> Self {
        Conversation {
            id: ObjectId::new(),
            schema_version: Self::SCHEMA_VERSION,
            user_id: None,
            title: None,
            model: model.into(),
            message_count: 0,
            total_tokens: 0,
            created_at: now,
            updated_at: now,
            metadata: BTreeMap::new(),
        }
    }

    /// Sets the owner.
    pub fn with_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }
}

impl Document for Conversation {
    const COLLECTION: &'static str = "conversations";
    const SCHEMA_VERSION: i32 = 1;
    type Id = ObjectId;

    fn id(&self) -> &ObjectId {
        &self.id
    }

    fn indexes() -> Vec<IndexSpec> {
        // "My recent conversations".
        vec![IndexSpec::compound(
            "user_id_updated_at",
            [
                ("user_id", IndexDirection::Ascending),
                ("updated_at", IndexDirection::Descending),
            ],
        )]
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::schema_version(self.schema_version, Self::SCHEMA_VERSION)?;
        validate::not_blank("model", &self.model)?;
        validate::in_range("message_count", self.message_count, 0, i64::from(u32::MAX))?;
        validate::token_count("total_tokens", self.total_tokens)?;
        if self.updated_at < self.created_at {
            return Err(ValidationError::Invalid {
                field: "updated_at".into(),
                reason: "is before created_at".into(),
            });
        }
        Ok(())
    }
}

/// One message of a conversation. Collection `messages`, unique on
/// `(conversation_id, seq)` so a retried append cannot store a turn twice.
///
/// ```
/// use stratum_models::{Document, Message, Role, ValidationError};
///
/// let now = bson::DateTime::from_millis(1_700_000_000_000);
/// let conversation = bson::oid::ObjectId::new();
/// let mut m = Message::new(conversation, 0, Role::User, "Hello", 1, now);
/// m.validate()?;
/// m.role = Role::parse("");
/// assert!(matches!(m.validate(), Err(ValidationError::Blank { .. })));
/// # Ok::<(), ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The message's id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The stored shape's version.
    pub schema_version: i32,
    /// The conversation it belongs to.
    pub conversation_id: ObjectId,
    /// Its position in the conversation, from 0.
    pub seq: i64,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// The author's name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tokens of the content (see [`TokenCounter::count`](crate::TokenCounter::count)).
    pub token_count: i64,
    /// When it was written.
    pub created_at: DateTime,
}

impl Message {
    /// A message at position `seq` of `conversation_id`.
    pub fn new(
        conversation_id: ObjectId,
        seq: i64,
        role: Role,
        content: impl Into<String>,
        token_count: i64,
        created_at: DateTime,
    ) -> Self {
        Message {
            id: ObjectId::new(),
            schema_version: Self::SCHEMA_VERSION,
            conversation_id,
            seq,
            role,
            content: content.into(),
            name: None,
            token_count,
            created_at,
        }
    }

    /// The message as a provider sees it.
    pub fn to_chat(&self) -> ChatMessage {
        ChatMessage {
            role: self.role.clone(),
            content: self.content.clone(),
            name: self.name.clone(),
        }
    }
}

impl Document for Message {
    const COLLECTION: &'static str = "messages";
    const SCHEMA_VERSION: i32 = 1;
    type Id = ObjectId;

    fn id(&self) -> &ObjectId {
        &self.id
    }

    fn indexes() -> Vec<IndexSpec> {
        vec![
            IndexSpec::ascending("conversation_id_seq_unique", ["conversation_id", "seq"]).unique(),
        ]
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::schema_version(self.schema_version, Self::SCHEMA_VERSION)?;
        validate::in_range("seq", self.seq, 0, i64::from(u32::MAX))?;
        validate::not_blank("role", self.role.as_str())?;
        validate::token_count("token_count", self.token_count)
    }
}

/// A compressed context as it was sent: the messages, the budget and the
/// compression report. Collection `context_snapshots`.
///
/// ```
/// use stratum_models::{ChatMessage, CompressionConfig, ContextCompressor, ContextSnapshot, Document};
///
/// let compressor = ContextCompressor::new(CompressionConfig::builder().budget_tokens(64).build()?)?;
/// let context = compressor.compress(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")])?;
/// let now = bson::DateTime::from_millis(1_700_000_000_000);
/// let snapshot = ContextSnapshot::new(bson::oid::ObjectId::new(), &compressor, context, now);
/// snapshot.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextSnapshot {
    /// The snapshot's id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The stored shape's version.
    pub schema_version: i32,
    /// The conversation compressed.
    pub conversation_id: ObjectId,
    /// The encoding the budget was counted in.
    pub encoding: Encoding,
    /// The token budget.
    pub budget_tokens: i64,
    /// The compressed messages, in order.
    pub messages: Vec<ChatMessage>,
    /// What compression did.
    pub report: CompressionReport,
    /// When it was taken.
    pub created_at: DateTime,
}

impl ContextSnapshot {
    /// A snapshot of `context`, produced by `compressor`, for `conversation_id`.
    pub fn new(
        conversation_id: ObjectId,
        compressor: &crate::ContextCompressor,
        context: crate::CompressedContext,
        now: DateTime,
    ) -> Self {
        ContextSnapshot {
            id: ObjectId::new(),
            schema_version: Self::SCHEMA_VERSION,
            conversation_id,
            encoding: compressor.config().encoding,
            budget_tokens: i64::try_from(compressor.config().budget_tokens).unwrap_or(i64::MAX),
            messages: context.messages,
            report: context.report,
            created_at: now,
        }
    }
}

impl Document for ContextSnapshot {
    const COLLECTION: &'static str = "context_snapshots";
    const SCHEMA_VERSION: i32 = 1;
    type Id = ObjectId;

    fn id(&self) -> &ObjectId {
        &self.id
    }

    fn indexes() -> Vec<IndexSpec> {
        vec![IndexSpec::compound(
            "conversation_id_created_at",
            [
                ("conversation_id", IndexDirection::Ascending),
                ("created_at", IndexDirection::Descending),
            ],
        )]
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::schema_version(self.schema_version, Self::SCHEMA_VERSION)?;
        validate::token_count("budget_tokens", self.budget_tokens)?;
        for (i, m) in self.messages.iter().enumerate() {
            validate::not_blank(format!("messages[{i}].role"), m.role.as_str())?;
        }
        self.report.validate()?;
        if self.report.tokens_after > self.budget_tokens {
            return Err(ValidationError::Invalid {
                field: "report.tokens_after".into(),
                reason: "exceeds budget_tokens".into(),
            });
        }
        Ok(())
    }
}

//! Chat roles and the plain message shape shared by token counting, cache keys
//! and compression.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who wrote a message.
///
/// Stored as its lowercase name (`"user"`). A role this crate does not know
/// (a provider's new one) is kept as [`Role::Other`] rather than refused at
/// decode time, so an empty role reaches validation and gets a typed error.
///
/// ```
/// use stratum_models::Role;
///
/// assert_eq!(Role::parse("assistant"), Role::Assistant);
/// assert_eq!(Role::parse("critic").as_str(), "critic");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// OpenAI's successor to `system` for reasoning models.
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
    /// Any other role, by name.
    Other(String),
}

impl Role {
    /// Maps a name to a role; unknown names become [`Role::Other`].
    pub fn parse(name: &str) -> Role {
        match name {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => Role::Other(other.to_owned()),
        }
    }

    /// The role's name as providers spell it.
    pub fn as_str(&self) -> &str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Other(name) => name,
        }
    }

    /// `system` or `developer`: instructions compression always keeps.
    pub fn is_instruction(&self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Role::parse(&name))
    }
}

/// One chat message as a provider sees it: role, content, optional author name.
///
/// ```
/// use stratum_models::ChatMessage;
///
/// let m = ChatMessage::user("Hello");
/// assert_eq!(m.role.as_str(), "user");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// The author's name (OpenAI's `name` field), counted as one extra token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            name: None,
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage::new(Role::System, content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage::new(Role::User, content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage::new(Role::Assistant, content)
    }

    /// Sets the author's name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

//! The [`Document`] trait: what every stored type declares (collection, id,
//! schema version, indexes) and how it is checked before it reaches a database.

use bson::RawDocumentBuf;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{IndexSpec, ValidationError};

/// MongoDB's hard limit on one BSON document: 16 MiB.
pub const MAX_BSON_DOCUMENT_SIZE: usize = 16 * 1024 * 1024;

/// The largest token count any field accepts. The largest context windows are
/// a few million tokens; a billion is a corrupt value, not a big request.
pub const MAX_TOKEN_COUNT: i64 = 1_000_000_000;

/// A type stored as one MongoDB document.
///
/// Small on purpose (as tower's `Service`): a collection name, an id, a schema
/// version, the indexes the queries need and a validation rule. The defaulted
/// methods turn it into checked BSON, so nothing invalid or oversized is ever
/// handed to the driver.
///
/// ```
/// use stratum_models::{Document, IndexSpec, ValidationError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Note {
///     #[serde(rename = "_id")]
///     id: String,
///     text: String,
/// }
///
/// impl Document for Note {
///     const COLLECTION: &'static str = "notes";
///     const SCHEMA_VERSION: i32 = 1;
///     type Id = String;
///     fn id(&self) -> &String { &self.id }
///     fn indexes() -> Vec<IndexSpec> { vec![IndexSpec::ascending("text_1", ["text"])] }
///     fn validate(&self) -> Result<(), ValidationError> {
///         stratum_models::validate::not_blank("text", &self.text)
///     }
/// }
///
/// let note = Note { id: "n1".into(), text: " ".into() };
/// assert!(matches!(note.to_bson_checked(), Err(ValidationError::Blank { .. })));
/// ```
pub trait Document: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    /// The collection the documents live in.
    const COLLECTION: &'static str;
    /// The version of the stored shape; written into every document as `schema_version`.
    const SCHEMA_VERSION: i32;
    /// The type of `_id`.
    type Id: Serialize;

    /// The document's `_id`.
    fn id(&self) -> &Self::Id;

    /// The indexes the collection needs, with their names, uniqueness and
    /// TTLs; a store creates them as declared (`Repository::ensure_indexes`
    /// in `stratum`, `Store::ensure_index` in `stratum-store`). None beyond
    /// `_id`'s unless a type says so.
    fn indexes() -> Vec<IndexSpec> {
        Vec::new()
    }

    /// Checks every field rule; the first broken rule is returned. A type
    /// without rules keeps this default, which accepts every value.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    /// Validates, encodes and checks the 16 MiB limit: the bytes a write sends.
    fn to_raw_checked(&self) -> Result<RawDocumentBuf, ValidationError> {
        let checked = self.validate().and_then(|()| {
            let raw =
                bson::to_raw_document_buf(self).map_err(|e| ValidationError::Unencodable {
                    reason: e.to_string(),
                })?;
            check_size(raw.as_bytes().len())?;
            Ok(raw)
        });
        if let Err(e) = &checked {
            crate::telemetry::validation_failed(Self::COLLECTION, e);
        }
        checked
    }

    /// As [`Document::to_raw_checked`], as an owned [`bson::Document`].
    fn to_bson_checked(&self) -> Result<bson::Document, ValidationError> {
        let raw = self.to_raw_checked()?;
        raw.to_document().map_err(|e| ValidationError::Unencodable {
            reason: e.to_string(),
        })
    }

    /// Decodes a stored document and validates it: a missing required field or
    /// a wrong type is [`ValidationError::Malformed`], never a panic.
    fn from_bson_checked(doc: bson::Document) -> Result<Self, ValidationError> {
        let value: Self = bson::from_document(doc).map_err(|e| ValidationError::Malformed {
            reason: e.to_string(),
        })?;
        value.validate()?;
        Ok(value)
    }
}

/// Refuses an encoded size over [`MAX_BSON_DOCUMENT_SIZE`].
pub(crate) fn check_size(size: usize) -> Result<(), ValidationError> {
    if size > MAX_BSON_DOCUMENT_SIZE {
        return Err(ValidationError::TooLarge {
            size,
            limit: MAX_BSON_DOCUMENT_SIZE,
        });
    }
    Ok(())
}

/// Field-rule helpers shared by the models and usable by a caller's own [`Document`]s.
pub mod validate {
    use std::borrow::Cow;

    use crate::{MAX_TOKEN_COUNT, ValidationError};

    /// Refuses an empty or whitespace-only text.
    ///
    /// ```
    /// assert!(stratum_models::validate::not_blank("role", "  ").is_err());
    /// assert!(stratum_models::validate::not_blank("role", "user").is_ok());
    /// ```
    pub fn not_blank(
        field: impl Into<Cow<'static, str>>,
        value: &str,
    ) -> Result<(), ValidationError> {
        if value.trim().is_empty() {
            return Err(ValidationError::Blank {
                field: field.into(),
            });
        }
        Ok(())
    }

    /// The longest [`identifier`] accepted, in bytes.
    pub const MAX_IDENTIFIER_BYTES: usize = 256;

    /// Refuses an identifier (a user, a tenant) that is empty or only
    /// whitespace, longer than [`MAX_IDENTIFIER_BYTES`], or holds a control
    /// character (a newline would forge a line in a log or a report).
    ///
    /// ```
    /// use stratum_models::validate::identifier;
    ///
    /// assert!(identifier("user", "ann@example.com").is_ok());
    /// assert!(identifier("user", "").is_err());
    /// assert!(identifier("user", "ann\nadmin").is_err());
    /// assert!(identifier("user", &"x".repeat(257)).is_err());
    /// ```
    pub fn identifier(
        field: impl Into<Cow<'static, str>>,
        value: &str,
    ) -> Result<(), ValidationError> {
        let field = field.into();
        not_blank(field.clone(), value)?;
        let reason = if value.len() > MAX_IDENTIFIER_BYTES {
            "is longer than 256 bytes"
        } else if value.chars().any(char::is_control) {
            "holds a control character"
        } else {
            return Ok(());
        };
        Err(ValidationError::Invalid {
            field,
            reason: Cow::Borrowed(reason),
        })
    }

    /// Refuses a token count below zero or above [`MAX_TOKEN_COUNT`].
    ///
    /// ```
    /// assert!(stratum_models::validate::token_count("usage.prompt_tokens", -1).is_err());
    /// assert!(stratum_models::validate::token_count("usage.prompt_tokens", 12).is_ok());
    /// ```
    pub fn token_count(
        field: impl Into<Cow<'static, str>>,
        value: i64,
    ) -> Result<(), ValidationError> {
        in_range(field, value, 0, MAX_TOKEN_COUNT)
    }

    /// Refuses a value outside `[min, max]`.
    pub fn in_range(
        field: impl Into<Cow<'static, str>>,
        value: i64,
        min: i64,
        max: i64,
    ) -> Result<(), ValidationError> {
        if value < min || value > max {
            return Err(ValidationError::OutOfRange {
                field: field.into(),
                value,
                min,
                max,
            });
        }
        Ok(())
    }

    /// Refuses a NaN, an infinity or a negative amount (a cost, a price).
    ///
    /// ```
    /// assert!(stratum_models::validate::non_negative_finite("cost_usd", f64::NAN).is_err());
    /// ```
    pub fn non_negative_finite(
        field: impl Into<Cow<'static, str>>,
        value: f64,
    ) -> Result<(), ValidationError> {
        if !value.is_finite() || value < 0.0 {
            return Err(ValidationError::Invalid {
                field: field.into(),
                reason: Cow::Owned(format!("{value} is not a finite, non-negative number")),
            });
        }
        Ok(())
    }

    /// Refuses a schema version newer than the code understands, or below 1.
    pub fn schema_version(found: i32, current: i32) -> Result<(), ValidationError> {
        in_range("schema_version", i64::from(found), 1, i64::from(current))
    }
}

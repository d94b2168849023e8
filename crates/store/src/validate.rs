//! The rules that keep user data from becoming query syntax, applied the same
//! way by every store.
//!
//! A field name is refused when it is empty, starts with `$` (an operator),
//! contains `.` (a path) or NUL (a C-string terminator for the server). Values
//! are checked recursively: a document value holding such keys is refused, so
//! `{"$ne": null}` can only ever arrive as a string, never as an operator.

use bson::{Bson, Document, RawDocumentBuf};

use super::StoreError;
#[cfg(feature = "mongodb")]
use crate::config::MONGODB_MAX_DOCUMENT_BYTES;

/// The longest field name accepted, in bytes.
const MAX_FIELD_BYTES: usize = 1024;
/// How deep documents may nest (MongoDB allows 100 levels).
pub(crate) const MAX_DEPTH: usize = 100;

/// Checks one field name.
///
/// ```
/// use stratum_store::check_field_name;
///
/// assert!(check_field_name("title").is_ok());
/// assert!(check_field_name("$where").is_err());
/// assert!(check_field_name("a.b").is_err());
/// assert!(check_field_name("nul\0").is_err());
/// ```
pub fn check_field_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::invalid_field(name, "is empty"));
    }
    if name.starts_with('$') {
        return Err(StoreError::invalid_field(
            name,
            "starts with `$`, which would make it an operator",
        ));
    }
    if name.contains('.') {
        return Err(StoreError::invalid_field(
            name,
            "contains `.`, which would make it a path",
        ));
    }
    if name.contains('\0') {
        return Err(StoreError::invalid_field(name, "contains NUL"));
    }
    if name.len() > MAX_FIELD_BYTES {
        return Err(StoreError::invalid_field(name, "is longer than 1024 bytes"));
    }
    Ok(())
}

/// The longest index name accepted, in bytes (MongoDB's own limit on a
/// namespace plus the name is far above what any declared name needs).
const MAX_INDEX_NAME_BYTES: usize = 128;
/// The longest TTL MongoDB accepts: `expireAfterSeconds` is a 32-bit integer.
const MAX_TTL_SECONDS: u64 = i32::MAX as u64;

/// Checks an index before any store sees it: 1 to 32 keys with valid field
/// names, a name MongoDB accepts, and a TTL only on a single key, in whole
/// seconds up to `i32::MAX` (what `expireAfterSeconds` holds).
pub(crate) fn check_index(index: &stratum_core::IndexSpec) -> Result<(), StoreError> {
    if index.keys.is_empty() || index.keys.len() > 32 {
        return Err(StoreError::validation("an index needs 1 to 32 keys"));
    }
    for (field, _) in &index.keys {
        check_field_name(field)?;
    }
    let name = index.name.as_ref();
    if name.is_empty() || name == "*" || name.contains('\0') || name.len() > MAX_INDEX_NAME_BYTES {
        return Err(StoreError::validation(
            "an index name is empty, `*`, holds NUL or is longer than 128 bytes",
        ));
    }
    if let Some(after) = index.expire_after {
        if index.keys.len() != 1 {
            return Err(StoreError::validation("a TTL index has exactly one key"));
        }
        if after.subsec_nanos() != 0 || after.as_secs() > MAX_TTL_SECONDS {
            return Err(StoreError::validation(
                "a TTL is whole seconds, at most 2147483647",
            ));
        }
    }
    Ok(())
}

/// Checks a collection name: MongoDB's rules plus no `$` and no `system.` prefix.
pub(crate) fn check_collection_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "a collection name is empty"
    } else if name.len() > 120 {
        "a collection name is longer than 120 bytes"
    } else if name.contains('$') || name.contains('\0') {
        "a collection name contains `$` or NUL"
    } else if name.starts_with("system.") || name.starts_with('.') || name.ends_with('.') {
        "a collection name starts with `system.` or starts or ends with `.`"
    } else {
        return Ok(());
    };
    Err(StoreError::validation(reason))
}

/// Checks every key of a value, recursively.
pub(crate) fn check_value(value: &Bson) -> Result<(), StoreError> {
    check_value_at(value, 0)
}

fn check_value_at(value: &Bson, depth: usize) -> Result<(), StoreError> {
    if depth > MAX_DEPTH {
        return Err(StoreError::validation(
            "documents nest deeper than 100 levels",
        ));
    }
    match value {
        Bson::Document(doc) => check_keys_at(doc, depth + 1),
        Bson::Array(items) => items.iter().try_for_each(|v| check_value_at(v, depth + 1)),
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
            Err(StoreError::validation("JavaScript values are not accepted"))
        }
        _ => Ok(()),
    }
}

fn check_keys_at(doc: &Document, depth: usize) -> Result<(), StoreError> {
    for (key, value) in doc {
        check_field_name(key)?;
        check_value_at(value, depth)?;
    }
    Ok(())
}

/// Checks a whole document for storage: every key, every nested key, and the
/// `_id` when there is one.
pub(crate) fn check_document(doc: &Document, max_bytes: usize) -> Result<(), StoreError> {
    encode_checked(doc, max_bytes).map(drop)
}

/// [`check_document`], returning the encoding it had to make to measure the
/// size, so a store that sends the bytes does not encode twice.
pub(crate) fn encode_checked(
    doc: &Document,
    max_bytes: usize,
) -> Result<RawDocumentBuf, StoreError> {
    check_keys_at(doc, 0)?;
    if let Some(id) = doc.get("_id") {
        check_id(id)?;
    }
    encode_within(doc, max_bytes)
}

/// Checks an update document's encoded size against `max_bytes`, and, when
/// `max_bytes` is below the server's own 16 MiB limit (which the server
/// enforces exactly), returns the query condition that lets the update apply
/// only to a document that stays within `max_bytes` whatever it adds.
///
/// The bound is conservative: an update adds at most its own encoded size
/// plus 16 bytes per field (an array index key longer than the field name, an
/// int32 widened by `$inc`, a new array's header), so a stored document may
/// take the update when its size plus that bound fits.
#[cfg(feature = "mongodb")]
pub(crate) fn growth_guard(
    update: &Document,
    max_bytes: usize,
) -> Result<Option<Document>, StoreError> {
    let len = encode_within(update, max_bytes)?.as_bytes().len();
    if max_bytes >= MONGODB_MAX_DOCUMENT_BYTES {
        return Ok(None);
    }
    let fields: usize = update
        .values()
        .map(|v| match v {
            Bson::Document(fields) => fields.len(),
            _ => 1,
        })
        .sum();
    let headroom = max_bytes.saturating_sub(len.saturating_add(fields.saturating_mul(16)));
    let headroom = i64::try_from(headroom).unwrap_or(i64::MAX);
    Ok(Some(bson::doc! {
        "$expr": { "$lte": [{ "$bsonSize": "$$ROOT" }, headroom] }
    }))
}

fn encode_within(doc: &Document, max_bytes: usize) -> Result<RawDocumentBuf, StoreError> {
    // The size as it would travel: encoding is the only exact measure.
    let raw = RawDocumentBuf::from_document(doc)
        .map_err(|e| StoreError::validation(format!("the document cannot be encoded: {e}")))?;
    let len = raw.as_bytes().len();
    if len > max_bytes {
        return Err(StoreError::validation(format!(
            "the document is {len} bytes, over the limit of {max_bytes}"
        )));
    }
    Ok(raw)
}

/// Checks a value used as an `_id`: not an array, a regex, undefined or code,
/// and no operator-like keys inside.
pub(crate) fn check_id(id: &Bson) -> Result<(), StoreError> {
    match id {
        Bson::Array(_) | Bson::RegularExpression(_) | Bson::Undefined => Err(
            StoreError::validation("an `_id` cannot be an array, a regex or undefined"),
        ),
        other => check_value(other),
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[test]
    fn field_names() {
        for ok in ["a", "_id", "a$", "ünï", "with space"] {
            assert!(check_field_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "$ne", "$", "a.b", ".", "a\0b"] {
            assert!(
                matches!(check_field_name(bad), Err(StoreError::InvalidField { .. })),
                "{bad:?}"
            );
        }
        assert!(check_field_name(&"k".repeat(2000)).is_err());
    }

    #[test]
    fn nested_operator_keys_are_refused_anywhere() {
        let bad = doc! { "a": { "b": [ { "$where": "1" } ] } };
        assert!(matches!(
            check_document(&bad, 1 << 20),
            Err(StoreError::InvalidField { .. })
        ));
        assert!(check_value(&Bson::String("{\"$ne\": null}".into())).is_ok());
    }

    #[test]
    fn ids_and_sizes() {
        assert!(check_id(&Bson::Array(vec![])).is_err());
        assert!(check_id(&Bson::Document(doc! { "$gt": 1 })).is_err());
        assert!(check_id(&Bson::Int32(1)).is_ok());
        let big = doc! { "blob": "x".repeat(2000) };
        assert!(check_document(&big, 1000).is_err());
        assert!(check_document(&big, 4000).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let mut value = Bson::Int32(1);
        for _ in 0..500 {
            value = Bson::Document(doc! { "a": value });
        }
        assert!(check_value(&value).is_err());
    }

    #[test]
    fn collection_names() {
        for bad in ["", "a$b", "system.users", ".x", "x.", "n\0"] {
            assert!(check_collection_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_collection_name("conversations.archive").is_ok());
    }
}

//! The document rules of [`validate`](super::validate), applied to encoded
//! BSON without decoding it: a typed write arrives as the bytes its type
//! encoded, and checking those in place (no allocation per field) is what
//! keeps a write through the repository close to the raw driver's cost.
//!
//! The rules are the same: every key at every depth passes
//! [`check_field_name`], no JavaScript values, at most 100 levels, an `_id`
//! that [`check_id`] accepts, and the size measured on the bytes themselves.

use bson::{Bson, RawBsonRef, RawDocument};

use super::StoreError;
use super::validate::{check_field_name, check_id};

/// How deep documents may nest (the limit [`validate`](super::validate) applies).
const MAX_DEPTH: usize = 100;

/// Checks an encoded document for storage. `Ok(true)` when its first field
/// is `_id` (the order stores keep); `Ok(false)` when it must be reordered
/// (or given an id) first.
pub(crate) fn check_raw_document(doc: &RawDocument, max_bytes: usize) -> Result<bool, StoreError> {
    let len = doc.as_bytes().len();
    if len > max_bytes {
        return Err(StoreError::validation(format!(
            "the document is {len} bytes, over the limit of {max_bytes}"
        )));
    }
    check_keys(doc, 0)?;
    let mut first = true;
    let mut id_first = false;
    for element in doc {
        let (key, value) = element.map_err(malformed)?;
        if key == "_id" {
            let id = Bson::try_from(value.to_raw_bson()).map_err(malformed)?;
            check_id(&id)?;
            id_first = first;
            break;
        }
        first = false;
    }
    Ok(id_first)
}

fn check_keys(doc: &RawDocument, depth: usize) -> Result<(), StoreError> {
    for element in doc {
        let (key, value) = element.map_err(malformed)?;
        check_field_name(key)?;
        check_value(value, depth)?;
    }
    Ok(())
}

fn check_value(value: RawBsonRef<'_>, depth: usize) -> Result<(), StoreError> {
    if depth > MAX_DEPTH {
        return Err(StoreError::validation(
            "documents nest deeper than 100 levels",
        ));
    }
    match value {
        RawBsonRef::Document(doc) => check_keys(doc, depth + 1),
        RawBsonRef::Array(items) => items
            .into_iter()
            .try_for_each(|item| check_value(item.map_err(malformed)?, depth + 1)),
        RawBsonRef::JavaScriptCode(_) | RawBsonRef::JavaScriptCodeWithScope(_) => {
            Err(StoreError::validation("JavaScript values are not accepted"))
        }
        _ => Ok(()),
    }
}

fn malformed(e: impl std::fmt::Display) -> StoreError {
    StoreError::validation(format!("the document is not valid BSON: {e}"))
}

#[cfg(test)]
mod tests {
    use bson::{Document, RawDocumentBuf, doc};
    use proptest::prelude::*;

    use super::*;
    use crate::validate::check_document;

    fn raw(doc: &Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(doc).unwrap()
    }

    #[test]
    fn the_same_refusals_as_the_document_rules() {
        let bad = doc! { "_id": 1, "a": { "b": [ { "$where": "1" } ] } };
        assert!(matches!(
            check_raw_document(&raw(&bad), 1 << 20),
            Err(StoreError::InvalidField { .. })
        ));
        let js = doc! { "_id": 1, "f": Bson::JavaScriptCode("1".into()) };
        assert!(check_raw_document(&raw(&js), 1 << 20).is_err());
        let array_id = doc! { "_id": [1, 2] };
        assert!(check_raw_document(&raw(&array_id), 1 << 20).is_err());
        let operator_id = doc! { "_id": { "$gt": 1 } };
        assert!(check_raw_document(&raw(&operator_id), 1 << 20).is_err());
    }

    #[test]
    fn size_is_the_encoded_length() {
        let big = raw(&doc! { "_id": 1, "blob": "x".repeat(2000) });
        let len = big.as_bytes().len();
        assert!(check_raw_document(&big, len - 1).is_err());
        assert!(check_raw_document(&big, len).is_ok());
    }

    #[test]
    fn reports_whether_the_id_comes_first() {
        assert!(check_raw_document(&raw(&doc! { "_id": 1, "a": 2 }), 1 << 20).unwrap());
        assert!(!check_raw_document(&raw(&doc! { "a": 2, "_id": 1 }), 1 << 20).unwrap());
        assert!(!check_raw_document(&raw(&doc! { "a": 2 }), 1 << 20).unwrap());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let mut value = Bson::Int32(1);
        for _ in 0..150 {
            value = Bson::Document(doc! { "a": value });
        }
        let deep = raw(&doc! { "_id": 1, "v": value });
        assert!(check_raw_document(&deep, usize::MAX).is_err());
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{1,6}",
            Just("$ne".to_owned()),
            Just("a.b".to_owned()),
            // (NUL cannot be encoded at all, so it never reaches this check.)
            Just(String::new()),
        ]
    }

    fn value() -> impl Strategy<Value = Bson> {
        let leaf = prop_oneof![
            any::<i32>().prop_map(Bson::Int32),
            "[a-z$.]{0,5}".prop_map(Bson::String),
            Just(Bson::JavaScriptCode("x".into())),
            Just(Bson::Null),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
                prop::collection::vec((key(), inner), 0..4)
                    .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The raw check accepts exactly what the document check accepts.
        #[test]
        fn agrees_with_the_document_rules(
            fields in prop::collection::vec((key(), value()), 0..5),
            limit in 5usize..400,
        ) {
            let mut doc = doc! { "_id": 1 };
            for (k, v) in fields {
                doc.insert(k, v);
            }
            let encoded = raw(&doc);
            prop_assert_eq!(
                check_raw_document(&encoded, limit).is_ok(),
                check_document(&doc, limit).is_ok()
            );
        }
    }
}

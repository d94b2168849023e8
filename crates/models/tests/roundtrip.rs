//! Every model survives BSON (document and raw bytes) unchanged, and stays valid.

use proptest::prelude::*;
use stratum_models::Document;

use crate::support;

fn round_trip<D: Document + PartialEq + std::fmt::Debug>(value: &D) -> Result<(), TestCaseError> {
    let doc = value
        .to_bson_checked()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(doc.contains_key("_id") && doc.contains_key("schema_version"));
    let back = D::from_bson_checked(doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    let raw = value
        .to_raw_checked()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let from_bytes: D =
        bson::from_slice(raw.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&from_bytes, value);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn response_cache_entry(entry in support::cache_entry()) {
        round_trip(&entry)?;
    }

    #[test]
    fn conversation(c in support::conversation()) {
        round_trip(&c)?;
    }

    #[test]
    fn message(m in support::message()) {
        round_trip(&m)?;
    }

    #[test]
    fn context_snapshot(s in support::snapshot()) {
        round_trip(&s)?;
    }

    #[test]
    fn usage_record(r in support::usage_record()) {
        round_trip(&r)?;
    }
}

//! Whether a store has the indexes a caller declares: found by keys, with
//! any difference in uniqueness or TTL named (what `stratum check` reports).
//!
//! An index is found by its keys, not its name: one created before it was
//! declared, or by another tool, has a name of its own, and what matters to
//! the queries is the keys, then whether it is unique and when it expires.

use std::fmt;
use std::time::Duration;

use crate::{IndexSpec, Store, StoreError};

/// What the store has for one declared index.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexState {
    /// An index with the declared keys, uniqueness and TTL.
    Present {
        /// Its name in the store.
        name: String,
    },
    /// An index with the declared keys that differs in uniqueness or TTL.
    Differs {
        /// Its name in the store.
        name: String,
        /// What differs (`not unique`, `without the TTL of 1h`, ...).
        reason: String,
    },
    /// No index with the declared keys (or no such collection yet).
    Missing,
}

/// One declared index and what the store has for it.
///
/// `Display` gives one line: `collection.name ({keys}): present as `name``,
/// `differs: `name` is <reason>` or `missing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStatus {
    /// The collection it belongs to.
    pub collection: String,
    /// The declared index.
    pub declared: IndexSpec,
    /// What the store has.
    pub state: IndexState,
}

impl IndexStatus {
    /// Whether the store has the index as declared.
    pub fn is_present(&self) -> bool {
        matches!(self.state, IndexState::Present { .. })
    }
}

impl fmt::Display for IndexStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{} ({{{}}}): ",
            self.collection,
            self.declared.name,
            self.declared.keys_text()
        )?;
        match &self.state {
            IndexState::Present { name } => write!(f, "present as `{name}`"),
            IndexState::Differs { name, reason } => write!(f, "differs: `{name}` is {reason}"),
            IndexState::Missing => write!(f, "missing"),
        }
    }
}

/// The declared indexes of `collection`, each with what `store` has for it.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// use stratum_store::{IndexSpec, IndexState, MemoryStore, Order, Store, check_indexes};
///
/// let store = MemoryStore::new();
/// store.ensure_index("cache", &IndexSpec::new([("key", Order::Ascending)])).await?;
/// let declared = [
///     IndexSpec::ascending("key_unique", ["key"]).unique(),
///     IndexSpec::ttl("expires_at_ttl", "expires_at", Duration::ZERO),
/// ];
/// let report = check_indexes(&store, "cache", &declared).await?;
/// assert_eq!(report[0].to_string(), "cache.key_unique ({key: 1}): differs: `key_1` is not unique");
/// assert_eq!(report[1].state, IndexState::Missing);
/// # Ok::<(), stratum_store::StoreError>(())
/// # }).unwrap();
/// ```
pub async fn check_indexes<S: Store + ?Sized>(
    store: &S,
    collection: &str,
    declared: &[IndexSpec],
) -> Result<Vec<IndexStatus>, StoreError> {
    let existing = store.indexes(collection).await?;
    Ok(declared
        .iter()
        .map(|spec| IndexStatus {
            collection: collection.to_owned(),
            declared: spec.clone(),
            state: compare(spec, &existing),
        })
        .collect())
}

/// What `existing` holds for `declared`: the index over the same keys (in
/// order and direction), and how it differs.
pub fn compare(declared: &IndexSpec, existing: &[IndexSpec]) -> IndexState {
    let Some(found) = existing.iter().find(|e| e.same_keys(declared)) else {
        return IndexState::Missing;
    };
    let name = found.name.to_string();
    let mut differences = Vec::new();
    match (declared.unique, found.unique) {
        (true, false) => differences.push("not unique".to_owned()),
        (false, true) => differences.push("unique, declared not unique".to_owned()),
        _ => {}
    }
    let secs = |d: Duration| Duration::from_secs(d.as_secs());
    let text = |d: Duration| humantime::format_duration(secs(d)).to_string();
    match (declared.expire_after, found.expire_after) {
        (Some(want), None) => differences.push(format!("without the TTL of {}", text(want))),
        (Some(want), Some(have)) if want.as_secs() != have.as_secs() => {
            differences.push(format!("a TTL of {}, declared {}", text(have), text(want)));
        }
        (None, Some(have)) => differences.push(format!("a TTL of {}, declared none", text(have))),
        _ => {}
    }
    if differences.is_empty() {
        IndexState::Present { name }
    } else {
        IndexState::Differs {
            name,
            reason: differences.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IndexDirection, Order};

    fn declared(unique: bool, ttl: Option<u64>) -> IndexSpec {
        let mut s = IndexSpec::ascending("a_b", ["a", "b"]);
        s.unique = unique;
        s.expire_after = ttl.map(Duration::from_secs);
        s
    }

    fn have(keys: &[(&'static str, Order)], unique: bool, ttl: Option<u64>) -> IndexSpec {
        let mut s = IndexSpec::new(keys.iter().copied()).named("server_named");
        s.unique = unique;
        s.expire_after = ttl.map(Duration::from_secs);
        s
    }

    const AB: &[(&str, Order)] = &[("a", Order::Ascending), ("b", Order::Ascending)];

    #[test]
    fn found_by_keys_whatever_its_name() {
        assert_eq!(
            compare(&declared(true, None), &[have(AB, true, None)]),
            IndexState::Present {
                name: "server_named".into()
            }
        );
        let reversed = [("b", Order::Ascending), ("a", Order::Ascending)];
        assert_eq!(
            compare(&declared(true, None), &[have(&reversed, true, None)]),
            IndexState::Missing
        );
        let descending = [("a", Order::Descending), ("b", Order::Ascending)];
        assert_eq!(
            compare(&declared(true, None), &[have(&descending, true, None)]),
            IndexState::Missing
        );
        assert_eq!(compare(&declared(false, None), &[]), IndexState::Missing);
        assert_eq!(IndexDirection::from(Order::Descending).as_i32(), -1);
    }

    #[test]
    fn uniqueness_and_ttl_differences_are_named() {
        let plain = [have(AB, false, None)];
        let reason = |state| match state {
            IndexState::Differs { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(compare(&declared(true, None), &plain)), "not unique");
        assert_eq!(
            reason(compare(&declared(false, Some(60)), &plain)),
            "without the TTL of 1m"
        );
        assert_eq!(
            reason(compare(&declared(false, None), &[have(AB, true, Some(60))])),
            "unique, declared not unique, a TTL of 1m, declared none"
        );
        assert_eq!(
            reason(compare(
                &declared(false, Some(60)),
                &[have(AB, false, Some(30))]
            )),
            "a TTL of 30s, declared 1m"
        );
        assert!(matches!(
            compare(&declared(false, Some(60)), &[have(AB, false, Some(60))]),
            IndexState::Present { .. }
        ));
    }
}

//! Whether the indexes the document types declare exist on a server
//! (feature `mongodb`): what `stratum check` reports.
//!
//! Every [`Document`] type declares its indexes
//! ([`Document::indexes`]); they are created by
//! `stratum_models::ensure_indexes` (with their declared names and TTLs) or
//! by [`Repository::ensure_indexes`](crate::Repository::ensure_indexes)
//! (through the `Store` contract: server-chosen names, no TTL). So an index
//! is found by its keys, not its name, and a difference in uniqueness or
//! expiry is reported as such rather than as a missing index.

use std::fmt;
use std::time::Duration;

use bson::{Bson, Document as BsonDocument};
use futures::TryStreamExt;
use mongodb::Database;
use stratum_models::{
    ContextSnapshot, Conversation, Document, IndexDirection, IndexSpec, Message,
    ResponseCacheEntry, UsageRecord,
};

use crate::StoreError;
use stratum_store::classify;

/// What the server has for one declared index.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexState {
    /// An index with the declared keys, uniqueness and expiry.
    Present {
        /// Its name on the server.
        name: String,
    },
    /// An index with the declared keys that differs in uniqueness or expiry.
    Differs {
        /// Its name on the server.
        name: String,
        /// What differs (`not unique`, `no TTL`, ...).
        reason: String,
    },
    /// No index with the declared keys (or no such collection yet).
    Missing,
}

/// One declared index and what the server has for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStatus {
    /// The collection it belongs to.
    pub collection: &'static str,
    /// The declared name.
    pub declared: String,
    /// The declared keys, rendered `field: 1, other: -1`.
    pub keys: String,
    /// What the server has.
    pub state: IndexState,
}

impl IndexStatus {
    /// Whether the server has the index as declared.
    pub fn is_present(&self) -> bool {
        matches!(self.state, IndexState::Present { .. })
    }
}

impl fmt::Display for IndexStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{} ({{{}}}): ",
            self.collection, self.declared, self.keys
        )?;
        match &self.state {
            IndexState::Present { name } => write!(f, "present as `{name}`"),
            IndexState::Differs { name, reason } => write!(f, "differs: `{name}` is {reason}"),
            IndexState::Missing => write!(f, "missing"),
        }
    }
}

/// The indexes every document type of `stratum_models` declares, checked
/// against `db`.
///
/// ```no_run
/// # async fn demo(db: mongodb::Database) -> Result<(), stratum::StoreError> {
/// for status in stratum::indexes::check_declared(&db).await? {
///     println!("{status}");
/// }
/// # Ok(()) }
/// ```
pub async fn check_declared(db: &Database) -> Result<Vec<IndexStatus>, StoreError> {
    let mut out = Vec::new();
    out.extend(check::<Conversation>(db).await?);
    out.extend(check::<Message>(db).await?);
    out.extend(check::<ContextSnapshot>(db).await?);
    out.extend(check::<ResponseCacheEntry>(db).await?);
    out.extend(check::<UsageRecord>(db).await?);
    Ok(out)
}

/// The indexes `T` declares, checked against `db`.
pub async fn check<T: Document>(db: &Database) -> Result<Vec<IndexStatus>, StoreError> {
    let existing = existing(db, T::COLLECTION).await?;
    Ok(T::indexes()
        .iter()
        .map(|spec| IndexStatus {
            collection: T::COLLECTION,
            declared: spec.name.to_string(),
            keys: render_keys(spec),
            state: state(spec, &existing),
        })
        .collect())
}

/// The collection's index descriptions; none when it does not exist.
async fn existing(db: &Database, collection: &str) -> Result<Vec<BsonDocument>, StoreError> {
    let names = db
        .list_collection_names()
        .await
        .map_err(|e| classify(e, None))?;
    if !names.iter().any(|n| n == collection) {
        return Ok(Vec::new());
    }
    let cursor = db
        .collection::<BsonDocument>(collection)
        .list_indexes()
        .await
        .map_err(|e| classify(e, None))?;
    let models: Vec<mongodb::IndexModel> =
        cursor.try_collect().await.map_err(|e| classify(e, None))?;
    Ok(models
        .into_iter()
        .map(|m| {
            let mut d = BsonDocument::new();
            d.insert("key", m.keys);
            if let Some(options) = m.options {
                d.insert("name", options.name.unwrap_or_default());
                d.insert("unique", options.unique.unwrap_or(false));
                if let Some(ttl) = options.expire_after {
                    d.insert("ttl_secs", ttl.as_secs() as i64);
                }
            }
            d
        })
        .collect())
}

fn state(spec: &IndexSpec, existing: &[BsonDocument]) -> IndexState {
    let Some(found) = existing.iter().find(|d| same_keys(spec, d)) else {
        return IndexState::Missing;
    };
    let name = found.get_str("name").unwrap_or("").to_owned();
    let unique = found.get_bool("unique").unwrap_or(false);
    let ttl = found
        .get_i64("ttl_secs")
        .ok()
        .map(|s| Duration::from_secs(s as u64));
    let mut differences = Vec::new();
    if spec.unique && !unique {
        differences.push("not unique".to_owned());
    }
    if !spec.unique && unique {
        differences.push("unique, declared not unique".to_owned());
    }
    match (spec.expire_after, ttl) {
        (Some(want), None) => differences.push(format!(
            "without the TTL of {}",
            humantime::format_duration(want)
        )),
        (Some(want), Some(have)) if want.as_secs() != have.as_secs() => differences.push(format!(
            "a TTL of {}, declared {}",
            humantime::format_duration(have),
            humantime::format_duration(want)
        )),
        (None, Some(have)) => differences.push(format!(
            "a TTL of {}, declared none",
            humantime::format_duration(have)
        )),
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

/// Whether an index description has exactly the declared keys, in order and
/// direction (numbers compare across types: the server may say `1.0`).
fn same_keys(spec: &IndexSpec, description: &BsonDocument) -> bool {
    let Ok(keys) = description.get_document("key") else {
        return false;
    };
    keys.len() == spec.keys.len()
        && keys
            .iter()
            .zip(&spec.keys)
            .all(|((field, dir), (want, want_dir))| {
                let sign = match dir {
                    Bson::Int32(n) => f64::from(*n),
                    Bson::Int64(n) => *n as f64,
                    Bson::Double(n) => *n,
                    _ => return false,
                };
                field == want.as_ref()
                    && match want_dir {
                        IndexDirection::Ascending => sign > 0.0,
                        IndexDirection::Descending => sign < 0.0,
                    }
            })
}

fn render_keys(spec: &IndexSpec) -> String {
    spec.keys
        .iter()
        .map(|(field, dir)| {
            let n = match dir {
                IndexDirection::Ascending => 1,
                IndexDirection::Descending => -1,
            };
            format!("{field}: {n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn spec(unique: bool, ttl: Option<u64>) -> IndexSpec {
        let mut s = IndexSpec::ascending("a_1_b_1", ["a", "b"]);
        s.unique = unique;
        s.expire_after = ttl.map(Duration::from_secs);
        s
    }

    #[test]
    fn found_by_keys_whatever_its_name() {
        let have =
            [doc! { "key": { "a": 1.0, "b": 1i64 }, "name": "server_named", "unique": true }];
        assert_eq!(
            state(&spec(true, None), &have),
            IndexState::Present {
                name: "server_named".into()
            }
        );
        let reversed = [doc! { "key": { "b": 1, "a": 1 }, "name": "x", "unique": true }];
        assert_eq!(state(&spec(true, None), &reversed), IndexState::Missing);
        let descending = [doc! { "key": { "a": -1, "b": 1 }, "name": "x", "unique": true }];
        assert_eq!(state(&spec(true, None), &descending), IndexState::Missing);
    }

    #[test]
    fn uniqueness_and_ttl_differences_are_named() {
        let plain = [doc! { "key": { "a": 1, "b": 1 }, "name": "x", "unique": false }];
        assert!(matches!(
            state(&spec(true, None), &plain),
            IndexState::Differs { reason, .. } if reason == "not unique"
        ));
        assert!(matches!(
            state(&spec(false, Some(60)), &plain),
            IndexState::Differs { reason, .. } if reason.contains("without the TTL of 1m")
        ));
        let ttl =
            [doc! { "key": { "a": 1, "b": 1 }, "name": "x", "unique": false, "ttl_secs": 60i64 }];
        assert!(matches!(
            state(&spec(false, Some(60)), &ttl),
            IndexState::Present { .. }
        ));
    }
}

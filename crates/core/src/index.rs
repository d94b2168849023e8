//! [`IndexSpec`]: the one description of an index, declared by document types
//! and created by stores (name, keys with direction, uniqueness, TTL).
//!
//! It lives here, in the shared foundation, because two layers speak it: the
//! models declare indexes (`Document::indexes`) and the stores create and
//! list them (`Store::ensure_index`, `Store::indexes`). One type means a
//! declared TTL or name cannot be lost on the way from one to the other.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// The sort direction of one key of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexDirection {
    /// `1`
    Ascending,
    /// `-1`
    Descending,
}

impl IndexDirection {
    /// MongoDB's number for the direction: `1` or `-1`.
    pub fn as_i32(self) -> i32 {
        match self {
            IndexDirection::Ascending => 1,
            IndexDirection::Descending => -1,
        }
    }
}

/// An index on a collection: its name, its keys in order, whether it is
/// unique, and, for a TTL index, how long after the date in its (single) key
/// field a document expires.
///
/// Every index has a name. [`IndexSpec::new`] gives it MongoDB's default
/// (`field_1_other_-1`); a document type names its indexes itself, so that
/// declaring one again is a no-op and a changed definition is refused
/// instead of becoming a second index.
///
/// ```
/// use std::time::Duration;
/// use stratum_core::{IndexDirection, IndexSpec};
///
/// let by_email = IndexSpec::new([("email", IndexDirection::Ascending)]).unique();
/// assert_eq!(by_email.name, "email_1");
/// assert!(by_email.is_unique());
///
/// let ttl = IndexSpec::ttl("expires_at_ttl", "expires_at", Duration::ZERO);
/// assert_eq!(ttl.expire_after, Some(Duration::ZERO));
/// assert_eq!(ttl.to_string(), "expires_at_ttl {expires_at: 1} expire after 0s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexSpec {
    /// The index name.
    pub name: Cow<'static, str>,
    /// The keys, in order (more than one makes a compound index).
    pub keys: Vec<(Cow<'static, str>, IndexDirection)>,
    /// Refuse a second document with the same key values. A missing field
    /// counts as `null`, so two documents both missing it conflict.
    pub unique: bool,
    /// A TTL index: a document expires this long after the date in the
    /// (single) key field; `Duration::ZERO` means "at that date". Whole
    /// seconds (the unit MongoDB stores).
    pub expire_after: Option<Duration>,
}

impl IndexSpec {
    /// An index over these fields, in this order, named as MongoDB names
    /// an unnamed index (`field_1_other_-1`).
    pub fn new<K, D>(keys: impl IntoIterator<Item = (K, D)>) -> IndexSpec
    where
        K: Into<Cow<'static, str>>,
        D: Into<IndexDirection>,
    {
        let keys: Vec<_> = keys
            .into_iter()
            .map(|(k, d)| (k.into(), d.into()))
            .collect();
        IndexSpec {
            name: Cow::Owned(default_name(&keys)),
            keys,
            unique: false,
            expire_after: None,
        }
    }

    /// A named index over `(field, direction)` pairs.
    pub fn compound<I, K>(name: impl Into<Cow<'static, str>>, keys: I) -> IndexSpec
    where
        I: IntoIterator<Item = (K, IndexDirection)>,
        K: Into<Cow<'static, str>>,
    {
        IndexSpec {
            name: name.into(),
            ..IndexSpec::new(keys)
        }
    }

    /// A named ascending index over `keys` (compound when there is more than one).
    pub fn ascending<I, K>(name: impl Into<Cow<'static, str>>, keys: I) -> IndexSpec
    where
        I: IntoIterator<Item = K>,
        K: Into<Cow<'static, str>>,
    {
        IndexSpec::compound(
            name,
            keys.into_iter().map(|k| (k, IndexDirection::Ascending)),
        )
    }

    /// A named TTL index on a date field.
    pub fn ttl(
        name: impl Into<Cow<'static, str>>,
        field: impl Into<Cow<'static, str>>,
        expire_after: Duration,
    ) -> IndexSpec {
        IndexSpec::ascending(name, [field]).expiring_after(expire_after)
    }

    /// Makes the index unique.
    #[must_use]
    pub fn unique(mut self) -> IndexSpec {
        self.unique = true;
        self
    }

    /// Renames the index.
    #[must_use]
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> IndexSpec {
        self.name = name.into();
        self
    }

    /// Makes it a TTL index: documents expire `after` the date in its key field.
    #[must_use]
    pub fn expiring_after(mut self, after: Duration) -> IndexSpec {
        self.expire_after = Some(after);
        self
    }

    /// Whether the index is unique.
    pub fn is_unique(&self) -> bool {
        self.unique
    }

    /// Whether `other` has the same keys, in the same order and directions.
    pub fn same_keys(&self, other: &IndexSpec) -> bool {
        self.keys == other.keys
    }

    /// Whether `other` defines the same index: name, keys, uniqueness and
    /// TTL (compared in whole seconds, the unit a server keeps).
    pub fn same_definition(&self, other: &IndexSpec) -> bool {
        self.name == other.name && self.same_index(other)
    }

    /// Whether `other` is the same index under any name: keys, uniqueness
    /// and TTL. What `ensure_index` accepts as already there, so a database
    /// whose indexes were created under other names (by another tool, or
    /// by an earlier release that let the server choose) keeps working.
    pub fn same_index(&self, other: &IndexSpec) -> bool {
        self.same_keys(other)
            && self.unique == other.unique
            && self.expire_after.map(|d| d.as_secs()) == other.expire_after.map(|d| d.as_secs())
    }

    /// The keys as MongoDB writes them: `field: 1, other: -1`.
    pub fn keys_text(&self) -> String {
        self.keys
            .iter()
            .map(|(field, direction)| format!("{field}: {}", direction.as_i32()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `name {keys}`, then `unique` and `expire after <duration>` when they apply.
impl fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {{{}}}", self.name, self.keys_text())?;
        if self.unique {
            f.write_str(" unique")?;
        }
        if let Some(after) = self.expire_after {
            write!(f, " expire after {}s", after.as_secs())?;
        }
        Ok(())
    }
}

/// MongoDB's name for an index given without one: each key and its
/// direction, joined by `_`.
fn default_name(keys: &[(Cow<'static, str>, IndexDirection)]) -> String {
    keys.iter()
        .map(|(field, direction)| format!("{field}_{}", direction.as_i32()))
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_mongodb() {
        let spec = IndexSpec::new([
            ("conversation_id", IndexDirection::Ascending),
            ("seq", IndexDirection::Descending),
        ]);
        assert_eq!(spec.name, "conversation_id_1_seq_-1");
        assert_eq!(spec.keys_text(), "conversation_id: 1, seq: -1");
    }

    #[test]
    fn definitions_compare_every_part() {
        let base = IndexSpec::ttl("t", "at", Duration::from_secs(60));
        assert!(base.same_definition(&base.clone()));
        // Sub-second parts are not kept by a server.
        assert!(base.same_definition(&IndexSpec::ttl("t", "at", Duration::from_millis(60_400))));
        assert!(!base.same_definition(&base.clone().named("u")));
        assert!(!base.same_definition(&base.clone().unique()));
        assert!(!base.same_definition(&IndexSpec::ascending("t", ["at"])));
        assert!(!base.same_definition(&IndexSpec::ttl("t", "at", Duration::from_secs(61))));
        assert!(!base.same_definition(&IndexSpec::ttl("t", "other", Duration::from_secs(60))));
        assert!(base.same_keys(&IndexSpec::ascending("other_name", ["at"])));
    }

    #[test]
    fn display_names_every_option() {
        let spec = IndexSpec::compound("k", [("a", IndexDirection::Descending)]).unique();
        assert_eq!(spec.to_string(), "k {a: -1} unique");
    }
}

//! [`Grouping`]: a small typed aggregation (group by fields and day
//! buckets of dates, count, sum numbers), the same on every store, built
//! from field names and a [`Filter`], so a user's value never becomes an
//! operator.

use std::cmp::Ordering;

use bson::{Bson, DateTime, Document, doc};

use super::compare::compare;
use super::validate::check_field_name;
use super::{Filter, StoreError};

/// The most keys, and the most sums, one grouping takes.
const MAX_PARTS: usize = 32;

const DAY_MS: i64 = 86_400_000;

/// What documents are grouped by: a field's value, or the UTC day of a
/// date field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupKey {
    /// The field's value; a missing field groups with `null`.
    Field(String),
    /// The UTC day of the date in the field, as the date at 00:00 UTC;
    /// a missing field or one holding no date groups under `null`.
    Day(String),
}

impl GroupKey {
    /// The field it reads; also the key's name in [`GroupRow::key`].
    pub fn field(&self) -> &str {
        match self {
            GroupKey::Field(f) | GroupKey::Day(f) => f,
        }
    }

    /// The key's value for `doc`.
    pub(crate) fn value_of(&self, doc: &Document) -> Bson {
        match self {
            GroupKey::Field(f) => doc.get(f).cloned().unwrap_or(Bson::Null),
            GroupKey::Day(f) => match doc.get(f) {
                Some(Bson::DateTime(at)) => Bson::DateTime(day_of(*at)),
                _ => Bson::Null,
            },
        }
    }
}

/// 00:00 UTC of the day `at` falls in.
pub(crate) fn day_of(at: DateTime) -> DateTime {
    DateTime::from_millis(at.timestamp_millis().div_euclid(DAY_MS) * DAY_MS)
}

/// A grouping of the documents a filter selects: by zero or more keys,
/// counting the documents of each group and summing numeric fields.
///
/// Only `int`, `long` and `double` values are summed; anything else (a
/// string, an array, a missing field, a decimal) adds nothing. A sum is an
/// `Int64` while every value summed is an integer and the total fits, a
/// `Double` otherwise. Rows come back sorted by their key values, in key
/// order.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use stratum_store::bson::{DateTime, doc};
/// use stratum_store::{Filter, Grouping, MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// let day = 86_400_000;
/// for (user, at, tokens) in [("ann", 10, 100), ("ann", 20, 50), ("bob", 30, 7), ("ann", day + 5, 1)] {
///     store.insert("calls", doc! { "user": user, "at": DateTime::from_millis(at), "tokens": tokens }).await?;
/// }
/// let per_user_per_day = Grouping::new(Filter::all()).by("user").by_day("at").sum("tokens");
/// let rows = store.group("calls", &per_user_per_day).await?;
/// assert_eq!(rows.len(), 3);
/// assert_eq!(rows[0].key, doc! { "user": "ann", "at": DateTime::from_millis(0) });
/// assert_eq!((rows[0].count, rows[0].sum_i64("tokens")), (2, 150));
/// assert_eq!(rows[2].key.get_str("user")?, "bob");
///
/// // A user's value is compared as a value, in the filter as everywhere.
/// let hostile = Grouping::new(Filter::eq("user", r#"{"$ne": null}"#)).by("user");
/// assert!(store.group("calls", &hostile).await?.is_empty());
/// // A field name that would be an operator or a path is refused.
/// assert!(store.group("calls", &Grouping::new(Filter::all()).sum("$tokens")).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use]
pub struct Grouping {
    pub(crate) filter: Filter,
    pub(crate) keys: Vec<GroupKey>,
    pub(crate) sums: Vec<String>,
}

impl Grouping {
    /// Groups the documents `filter` selects (into one group until a key is added).
    pub fn new(filter: Filter) -> Grouping {
        Grouping {
            filter,
            keys: Vec::new(),
            sums: Vec::new(),
        }
    }

    /// Adds a key: the value of `field`.
    pub fn by(mut self, field: impl Into<String>) -> Grouping {
        self.keys.push(GroupKey::Field(field.into()));
        self
    }

    /// Adds a key: the UTC day of the date in `field`.
    pub fn by_day(mut self, field: impl Into<String>) -> Grouping {
        self.keys.push(GroupKey::Day(field.into()));
        self
    }

    /// Sums `field` in each group.
    pub fn sum(mut self, field: impl Into<String>) -> Grouping {
        self.sums.push(field.into());
        self
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[GroupKey] {
        &self.keys
    }

    /// The summed fields, in order.
    pub fn sums(&self) -> &[String] {
        &self.sums
    }

    /// Checks the filter and every field name (no operator, no path), at
    /// most 32 keys and 32 sums, and no field used as two keys or summed
    /// twice. Both stores call this first.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.filter.validate()?;
        if self.keys.len() > MAX_PARTS || self.sums.len() > MAX_PARTS {
            return Err(StoreError::validation(
                "a grouping takes at most 32 keys and 32 sums",
            ));
        }
        for (i, field) in self.keys.iter().map(GroupKey::field).enumerate() {
            check_field_name(field)?;
            if self.keys[..i].iter().any(|k| k.field() == field) {
                return Err(StoreError::invalid_field(field, "is a grouping key twice"));
            }
        }
        for (i, field) in self.sums.iter().enumerate() {
            check_field_name(field)?;
            if self.sums[..i].contains(field) {
                return Err(StoreError::invalid_field(field, "is summed twice"));
            }
        }
        Ok(())
    }

    /// The row for a group's key values, count and sums.
    pub(crate) fn row(&self, values: Vec<Bson>, count: u64, sums: Vec<Bson>) -> GroupRow {
        GroupRow {
            key: self
                .keys
                .iter()
                .map(|k| k.field().to_owned())
                .zip(values)
                .collect(),
            count,
            sums: self.sums.iter().cloned().zip(sums).collect(),
        }
    }

    /// Sorts rows by their key values, in key order (MongoDB's order).
    pub(crate) fn sort(&self, rows: &mut [GroupRow]) {
        rows.sort_by(|a, b| {
            for key in &self.keys {
                let (x, y) = (a.key.get(key.field()), b.key.get(key.field()));
                let ord = compare(x.unwrap_or(&Bson::Null), y.unwrap_or(&Bson::Null));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }

    /// The aggregation pipeline MongoDB runs for it. Keys and sums get
    /// positional names (`k0`, `s0`) so no field name is ever read as
    /// anything but a field; every value comes from the validated filter.
    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    pub(crate) fn pipeline(&self) -> Result<Vec<Document>, StoreError> {
        self.validate()?;
        let mut id = Document::new();
        for (i, key) in self.keys.iter().enumerate() {
            let path = format!("${}", key.field());
            let value = match key {
                GroupKey::Field(_) => doc! { "$ifNull": [path, Bson::Null] },
                GroupKey::Day(_) => doc! {
                    "$cond": [
                        { "$eq": [{ "$type": &path }, "date"] },
                        { "$dateFromParts": {
                            "year": { "$year": &path },
                            "month": { "$month": &path },
                            "day": { "$dayOfMonth": &path },
                        } },
                        Bson::Null,
                    ]
                },
            };
            id.insert(format!("k{i}"), value);
        }
        let mut group = doc! { "_id": id, "count": { "$sum": 1 } };
        for (i, field) in self.sums.iter().enumerate() {
            let path = format!("${field}");
            group.insert(
                format!("s{i}"),
                doc! { "$sum": { "$cond": [
                    { "$in": [{ "$type": &path }, ["int", "long", "double"]] },
                    &path,
                    0,
                ] } },
            );
        }
        let sort: Document = (0..self.keys.len())
            .map(|i| (format!("_id.k{i}"), Bson::Int32(1)))
            .collect();
        let mut pipeline = vec![
            doc! { "$match": self.filter.to_document()? },
            doc! { "$group": group },
        ];
        if !sort.is_empty() {
            pipeline.push(doc! { "$sort": sort });
        }
        Ok(pipeline)
    }

    /// A row from one document the pipeline returned.
    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    pub(crate) fn row_from_server(&self, doc: &Document) -> Result<GroupRow, StoreError> {
        let bad = || StoreError::validation("the server's grouping result has an unexpected shape");
        let id = doc.get_document("_id").map_err(|_| bad())?;
        let values = (0..self.keys.len())
            .map(|i| id.get(format!("k{i}")).cloned().unwrap_or(Bson::Null))
            .collect();
        let count = match doc.get("count") {
            Some(Bson::Int32(n)) => u64::try_from(*n).map_err(|_| bad())?,
            Some(Bson::Int64(n)) => u64::try_from(*n).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        let sums = (0..self.sums.len())
            .map(|i| match doc.get(format!("s{i}")) {
                Some(Bson::Int32(n)) => Ok(Bson::Int64(i64::from(*n))),
                Some(n @ (Bson::Int64(_) | Bson::Double(_))) => Ok(n.clone()),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.row(values, count, sums))
    }
}

/// One group: its key values, how many documents it holds, and its sums.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GroupRow {
    /// Each key's field name and the group's value for it, in key order.
    pub key: Document,
    /// Documents in the group.
    pub count: u64,
    /// Each summed field and its total (`Int64` or `Double`).
    pub sums: Document,
}

impl GroupRow {
    /// The sum of `field` as an integer (a `Double` sum truncated; 0 when
    /// the field was not summed).
    pub fn sum_i64(&self, field: &str) -> i64 {
        match self.sums.get(field) {
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(f)) => *f as i64,
            _ => 0,
        }
    }

    /// The sum of `field` as a float (0.0 when the field was not summed).
    pub fn sum_f64(&self, field: &str) -> f64 {
        match self.sums.get(field) {
            Some(Bson::Int64(n)) => *n as f64,
            Some(Bson::Double(f)) => *f,
            _ => 0.0,
        }
    }
}

/// A running `$sum`: an exact integer until a double arrives or the total
/// overflows, then a compensated (Neumaier) float sum, close to the
/// server's double-double summation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Summer {
    Int(i64),
    Float { sum: f64, compensation: f64 },
}

impl Default for Summer {
    fn default() -> Self {
        Summer::Int(0)
    }
}

impl Summer {
    pub(crate) fn add(&mut self, value: Option<&Bson>) {
        let (int, float) = match value {
            Some(Bson::Int32(n)) => (Some(i64::from(*n)), f64::from(*n)),
            Some(Bson::Int64(n)) => (Some(*n), *n as f64),
            Some(Bson::Double(f)) => (None, *f),
            _ => return,
        };
        if let (Summer::Int(total), Some(n)) = (&mut *self, int)
            && let Some(next) = total.checked_add(n)
        {
            *total = next;
            return;
        }
        if let Summer::Int(total) = *self {
            *self = Summer::Float {
                sum: total as f64,
                compensation: 0.0,
            };
        }
        if let Summer::Float { sum, compensation } = self {
            let next = *sum + float;
            *compensation += if sum.abs() >= float.abs() {
                (*sum - next) + float
            } else {
                (float - next) + *sum
            };
            *sum = next;
        }
    }

    pub(crate) fn total(self) -> Bson {
        match self {
            Summer::Int(n) => Bson::Int64(n),
            Summer::Float { sum, compensation } => Bson::Double(sum + compensation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_midnight_utc_before_the_epoch_too() {
        assert_eq!(
            day_of(DateTime::from_millis(DAY_MS + 5)).timestamp_millis(),
            DAY_MS
        );
        assert_eq!(
            day_of(DateTime::from_millis(-1)).timestamp_millis(),
            -DAY_MS
        );
    }

    #[test]
    fn sums_stay_integers_until_a_double_or_an_overflow() {
        let mut s = Summer::default();
        s.add(Some(&Bson::Int32(2)));
        s.add(Some(&Bson::Int64(3)));
        s.add(Some(&Bson::String("9".into())));
        s.add(None);
        assert_eq!(s.total(), Bson::Int64(5));
        s.add(Some(&Bson::Double(0.5)));
        assert_eq!(s.total(), Bson::Double(5.5));
        let mut big = Summer::default();
        big.add(Some(&Bson::Int64(i64::MAX)));
        big.add(Some(&Bson::Int64(1)));
        assert_eq!(big.total(), Bson::Double(i64::MAX as f64 + 1.0));
    }

    #[test]
    fn bad_field_names_and_repeats_are_refused() {
        let ok = Grouping::new(Filter::all()).by("a").by_day("b").sum("c");
        assert!(ok.validate().is_ok());
        for bad in [
            Grouping::new(Filter::all()).by("$a"),
            Grouping::new(Filter::all()).by_day("a.b"),
            Grouping::new(Filter::all()).sum(""),
            Grouping::new(Filter::all()).by("a").by_day("a"),
            Grouping::new(Filter::all()).sum("c").sum("c"),
            Grouping::new(Filter::eq("$where", 1)),
        ] {
            assert!(
                matches!(
                    bad.validate(),
                    Err(StoreError::InvalidField { .. } | StoreError::Validation { .. })
                ),
                "{bad:?}"
            );
            assert!(bad.pipeline().is_err());
        }
    }
}

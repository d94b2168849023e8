//! Filters, sort orders and queries, built from values that stay values.
//!
//! A [`Filter`] is a small tree of comparisons; every value is compared as a
//! value. It renders to MongoDB with explicit operators (`{field: {$eq: v}}`),
//! so a user's string `{"$ne": null}` stays a string, and a user-supplied
//! document holding `$` keys is refused before it reaches any store.

use bson::{Bson, Document, doc};

use super::StoreError;
use super::validate::{MAX_DEPTH, check_field_name, check_value};

/// A comparison operator of a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    fn operator(self) -> &'static str {
        match self {
            Cmp::Eq => "$eq",
            Cmp::Ne => "$ne",
            Cmp::Gt => "$gt",
            Cmp::Gte => "$gte",
            Cmp::Lt => "$lt",
            Cmp::Lte => "$lte",
        }
    }
}

/// The shape of a filter; private so that every filter is built through the
/// constructors and checked the same way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    All,
    Compare { field: String, op: Cmp, value: Bson },
    In { field: String, values: Vec<Bson> },
    Exists { field: String, exists: bool },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// Which documents an operation applies to.
///
/// ```
/// use stratum_store::Filter;
///
/// let filter = Filter::eq("role", "user").and(Filter::gte("tokens", 100));
/// // Rendered with explicit operators:
/// let rendered = filter.to_document().unwrap();
/// assert_eq!(rendered.to_string(), r#"{ "$and": [{ "role": { "$eq": "user" } }, { "tokens": { "$gte": 100 } }] }"#);
///
/// // A hostile value stays a value:
/// let hostile = Filter::eq("name", r#"{"$ne": null}"#).to_document().unwrap();
/// assert_eq!(hostile.get_document("name").unwrap().get_str("$eq").unwrap(), r#"{"$ne": null}"#);
/// // A hostile field name is refused:
/// assert!(Filter::eq("$where", 1).to_document().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(pub(crate) Node);

impl Default for Filter {
    fn default() -> Self {
        Filter::all()
    }
}

impl Filter {
    /// Matches every document.
    pub fn all() -> Filter {
        Filter(Node::All)
    }

    fn compare(field: impl Into<String>, op: Cmp, value: impl Into<Bson>) -> Filter {
        Filter(Node::Compare {
            field: field.into(),
            op,
            value: value.into(),
        })
    }

    /// The document whose `_id` equals `id`.
    pub fn id(id: impl Into<Bson>) -> Filter {
        Filter::eq("_id", id)
    }

    /// `field` equals `value` (or, for an array field, holds it). A `null`
    /// value also matches a missing field, as in MongoDB.
    pub fn eq(field: impl Into<String>, value: impl Into<Bson>) -> Filter {
        Filter::compare(field, Cmp::Eq, value)
    }

    /// The negation of [`eq`](Filter::eq).
    pub fn ne(field: impl Into<String>, value: impl Into<Bson>) -> Filter {
        Filter::compare(field, Cmp::Ne, value)
    }

    /// `field` is greater than `value`, compared within the same type family
    /// (numbers with numbers, strings with strings), as in MongoDB.
    pub fn gt(field: impl Into<String>, value: impl Into<Bson>) -> Filter {
        Filter::compare(field, Cmp::Gt, value)
    }

    /// `field` is greater than or equal to `value`.
    pub fn gte(field: impl Into<String>, value: impl Into<Bson>) -> Filter {
        Filter::compare(field, Cmp::Gte, value)
    }

    /// `field` is less than `value`.
    pub fn lt(field: impl Into<String>, value: impl Into<Bson>) -> Filter {
        Filter::compare(field, Cmp::Lt, value)
    }

    /// `field` is less than or equal to `value`.
    pub fn lte(field: impl Into<String>, value: impl Into<Bson>) -> Filter {
        Filter::compare(field, Cmp::Lte, value)
    }

    /// `field` equals one of `values`.
    pub fn is_in<V: Into<Bson>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter(Node::In {
            field: field.into(),
            values: values.into_iter().map(Into::into).collect(),
        })
    }

    /// `field` is present (`true`, even when `null`) or absent (`false`).
    pub fn exists(field: impl Into<String>, exists: bool) -> Filter {
        Filter(Node::Exists {
            field: field.into(),
            exists,
        })
    }

    /// Both this filter and `other` match.
    pub fn and(self, other: Filter) -> Filter {
        match self.0 {
            Node::All => other,
            Node::And(mut all) => {
                all.push(other);
                Filter(Node::And(all))
            }
            node => Filter(Node::And(vec![Filter(node), other])),
        }
    }

    /// This filter or `other` matches.
    pub fn or(self, other: Filter) -> Filter {
        match self.0 {
            Node::Or(mut any) => {
                any.push(other);
                Filter(Node::Or(any))
            }
            node => Filter(Node::Or(vec![Filter(node), other])),
        }
    }

    /// Checks every field name and value, and that `and`/`or` nest at most
    /// 100 levels deep (MongoDB's own limit; deeper would also risk the
    /// stack of every recursive walk). Both stores call this first.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.validate_at(0)
    }

    fn validate_at(&self, depth: usize) -> Result<(), StoreError> {
        if depth > MAX_DEPTH {
            return Err(StoreError::validation(
                "filters nest `and`/`or` deeper than 100 levels",
            ));
        }
        match &self.0 {
            Node::All => Ok(()),
            Node::Compare { field, value, .. } => {
                check_field_name(field)?;
                check_filter_value(value)
            }
            Node::In { field, values } => {
                check_field_name(field)?;
                values.iter().try_for_each(check_filter_value)
            }
            Node::Exists { field, .. } => check_field_name(field),
            Node::And(parts) | Node::Or(parts) => parts
                .iter()
                .try_for_each(|part| part.validate_at(depth + 1)),
        }
    }

    /// Renders the filter as a MongoDB query document, after validating it.
    pub fn to_document(&self) -> Result<Document, StoreError> {
        self.validate()?;
        Ok(self.render())
    }

    fn render(&self) -> Document {
        match &self.0 {
            Node::All => Document::new(),
            Node::Compare { field, op, value } => {
                doc! { field.as_str(): { op.operator(): value.clone() } }
            }
            Node::In { field, values } => doc! { field.as_str(): { "$in": values.clone() } },
            Node::Exists { field, exists } => doc! { field.as_str(): { "$exists": *exists } },
            Node::And(parts) => {
                doc! { "$and": parts.iter().map(|p| Bson::Document(p.render())).collect::<Vec<_>>() }
            }
            Node::Or(parts) => {
                doc! { "$or": parts.iter().map(|p| Bson::Document(p.render())).collect::<Vec<_>>() }
            }
        }
    }
}

/// Values in filters: everything [`check_value`] allows, minus regexes, which
/// MongoDB would read as a pattern rather than a value.
fn check_filter_value(value: &Bson) -> Result<(), StoreError> {
    if let Bson::RegularExpression(_) = value {
        return Err(StoreError::validation(
            "a regex is not accepted as a filter value",
        ));
    }
    check_value(value)
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest first.
    Ascending,
    /// Largest first.
    Descending,
}

/// An index key sorts as a query would.
impl From<Order> for stratum_core::IndexDirection {
    fn from(order: Order) -> Self {
        match order {
            Order::Ascending => stratum_core::IndexDirection::Ascending,
            Order::Descending => stratum_core::IndexDirection::Descending,
        }
    }
}

/// A filter with a sort order, a number of documents to skip and a limit.
///
/// Documents whose sort keys tie come back in an unspecified order, as in
/// MongoDB: add `_id` as a last key for a stable order.
///
/// ```
/// use stratum_store::{Filter, Order, Query};
///
/// let recent = Query::new(Filter::eq("conversation", "c1"))
///     .sort("at", Order::Descending)
///     .limit(20);
/// assert_eq!(recent.limit_value(), Some(20));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub(crate) filter: Filter,
    pub(crate) sort: Vec<(String, Order)>,
    pub(crate) skip: u64,
    pub(crate) limit: Option<u64>,
}

impl Query {
    /// All documents `filter` matches, in no particular order.
    pub fn new(filter: Filter) -> Query {
        Query {
            filter,
            ..Query::default()
        }
    }

    /// Adds a sort key; earlier keys take precedence.
    pub fn sort(mut self, field: impl Into<String>, order: Order) -> Query {
        self.sort.push((field.into(), order));
        self
    }

    /// Skips the first `n` documents (after sorting).
    pub fn skip(mut self, n: u64) -> Query {
        self.skip = n;
        self
    }

    /// Returns at most `n` documents; `0` returns none.
    pub fn limit(mut self, n: u64) -> Query {
        self.limit = Some(n);
        self
    }

    /// The filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The limit, if any.
    pub fn limit_value(&self) -> Option<u64> {
        self.limit
    }

    /// Checks the filter and the sort keys.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.filter.validate()?;
        for (field, _) in &self.sort {
            check_field_name(field)?;
        }
        if self.sort.len() > 32 {
            return Err(StoreError::validation("more than 32 sort keys"));
        }
        Ok(())
    }

    /// The sort as a MongoDB sort document.
    #[cfg(feature = "mongodb")]
    pub(crate) fn sort_document(&self) -> Document {
        let mut sort = Document::new();
        for (field, order) in &self.sort {
            let direction = match order {
                Order::Ascending => 1,
                Order::Descending => -1,
            };
            sort.insert(field.as_str(), direction);
        }
        sort
    }
}

#[cfg(test)]
mod tests {
    use bson::Regex;

    use super::*;

    #[test]
    fn hostile_values_stay_values() {
        let filter = Filter::eq("name", r#"{"$ne": null}"#);
        let rendered = filter.to_document().unwrap();
        assert_eq!(rendered, doc! { "name": { "$eq": r#"{"$ne": null}"# } });
    }

    #[test]
    fn operator_documents_as_values_are_refused() {
        for filter in [
            Filter::eq("name", doc! { "$ne": Bson::Null }),
            Filter::is_in("name", [Bson::Document(doc! { "$gt": "" })]),
            Filter::gt(
                "a",
                Bson::Array(vec![Bson::Document(doc! { "x": { "$where": "1" } })]),
            ),
        ] {
            assert!(
                matches!(filter.to_document(), Err(StoreError::InvalidField { .. })),
                "{filter:?}"
            );
        }
    }

    #[test]
    fn hostile_field_names_are_refused_everywhere() {
        for name in ["$where", "a.b", "nul\0", ""] {
            let filters = [
                Filter::eq(name, 1),
                Filter::exists(name, true),
                Filter::is_in(name, [1]),
                Filter::eq("ok", 1).and(Filter::eq(name, 1)),
                Filter::eq("ok", 1).or(Filter::lt(name, 1)),
            ];
            for filter in filters {
                assert!(filter.validate().is_err(), "{filter:?}");
            }
            assert!(
                Query::new(Filter::all())
                    .sort(name, Order::Ascending)
                    .validate()
                    .is_err()
            );
        }
    }

    #[test]
    fn regex_values_are_refused() {
        let regex = Bson::RegularExpression(Regex {
            pattern: ".*".into(),
            options: String::new(),
        });
        assert!(Filter::eq("a", regex).validate().is_err());
    }

    #[test]
    fn deep_filters_are_refused_without_overflow() {
        let nest = |depth: i32| {
            (0..depth).fold(Filter::eq("a", 1), |inner, i| {
                if i % 2 == 0 {
                    Filter::eq("b", i).or(inner)
                } else {
                    Filter::eq("c", i).and(inner)
                }
            })
        };
        assert!(nest(100).validate().is_ok());
        for depth in [101, 1_000] {
            let err = nest(depth).to_document().unwrap_err();
            assert!(err.to_string().contains("deeper than 100"), "{err}");
        }
    }

    #[test]
    fn and_or_flatten() {
        let f = Filter::all()
            .and(Filter::eq("a", 1))
            .and(Filter::eq("b", 2))
            .and(Filter::eq("c", 3));
        let Node::And(parts) = &f.0 else {
            panic!("{f:?}")
        };
        assert_eq!(parts.len(), 3);
    }
}

//! Updates: a list of field operations with values that stay values.

use bson::{Bson, Document};

use super::StoreError;
use super::validate::{check_field_name, check_value};

/// One operation on one field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Set(String, Bson),
    Unset(String),
    Inc(String, Bson),
    Push(String, Bson),
}

impl Op {
    pub(crate) fn field(&self) -> &str {
        match self {
            Op::Set(f, _) | Op::Unset(f) | Op::Inc(f, _) | Op::Push(f, _) => f,
        }
    }
}

/// A change to one document: `$set`, `$unset`, `$inc` and `$push` on
/// top-level fields.
///
/// Each field may appear once per update, and `_id` never (it is immutable).
///
/// ```
/// use stratum_store::Update;
///
/// let update = Update::new().set("title", "Trip plan").inc("turns", 1).push("tags", "travel");
/// assert_eq!(
///     update.to_document().unwrap().to_string(),
///     r#"{ "$set": { "title": "Trip plan" }, "$inc": { "turns": 1 }, "$push": { "tags": "travel" } }"#,
/// );
/// assert!(Update::new().set("$where", 1).to_document().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub(crate) ops: Vec<Op>,
}

impl Update {
    /// An empty update (invalid until an operation is added).
    pub fn new() -> Update {
        Update::default()
    }

    /// Sets `field` to `value`.
    pub fn set(mut self, field: impl Into<String>, value: impl Into<Bson>) -> Update {
        self.ops.push(Op::Set(field.into(), value.into()));
        self
    }

    /// Removes `field`.
    pub fn unset(mut self, field: impl Into<String>) -> Update {
        self.ops.push(Op::Unset(field.into()));
        self
    }

    /// Adds `by` (an `i32`, `i64` or `f64`) to the number in `field`; a
    /// missing field starts at zero.
    pub fn inc(mut self, field: impl Into<String>, by: impl Into<Bson>) -> Update {
        self.ops.push(Op::Inc(field.into(), by.into()));
        self
    }

    /// Appends `value` to the array in `field`; a missing field becomes a
    /// one-element array.
    pub fn push(mut self, field: impl Into<String>, value: impl Into<Bson>) -> Update {
        self.ops.push(Op::Push(field.into(), value.into()));
        self
    }

    /// Checks field names, values, and that the update is well formed.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.ops.is_empty() {
            return Err(StoreError::validation(
                "an update needs at least one operation",
            ));
        }
        for (i, op) in self.ops.iter().enumerate() {
            let field = op.field();
            check_field_name(field)?;
            if field == "_id" {
                return Err(StoreError::validation("an update cannot change `_id`"));
            }
            if self.ops[..i].iter().any(|earlier| earlier.field() == field) {
                return Err(StoreError::validation(format!(
                    "the field `{field}` appears twice in one update"
                )));
            }
            match op {
                Op::Set(_, value) | Op::Push(_, value) => check_value(value)?,
                Op::Inc(_, by) => {
                    if !matches!(by, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_)) {
                        return Err(StoreError::validation("`inc` takes an i32, i64 or f64"));
                    }
                }
                Op::Unset(_) => {}
            }
        }
        Ok(())
    }

    /// Renders the update as a MongoDB update document, after validating it.
    pub fn to_document(&self) -> Result<Document, StoreError> {
        self.validate()?;
        let mut set = Document::new();
        let mut unset = Document::new();
        let mut inc = Document::new();
        let mut push = Document::new();
        for op in &self.ops {
            match op {
                Op::Set(f, v) => set.insert(f.as_str(), v.clone()),
                Op::Unset(f) => unset.insert(f.as_str(), ""),
                Op::Inc(f, v) => inc.insert(f.as_str(), v.clone()),
                Op::Push(f, v) => push.insert(f.as_str(), v.clone()),
            };
        }
        let mut update = Document::new();
        for (operator, part) in [
            ("$set", set),
            ("$unset", unset),
            ("$inc", inc),
            ("$push", push),
        ] {
            if !part.is_empty() {
                update.insert(operator, part);
            }
        }
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[test]
    fn malformed_updates_are_refused() {
        let cases = [
            Update::new(),
            Update::new().set("_id", 2),
            Update::new().set("a", 1).inc("a", 1),
            Update::new().inc("n", "one"),
            Update::new().set("a.b", 1),
            Update::new().push("$each", 1),
            Update::new().set("a", doc! { "$gt": 1 }),
        ];
        for update in cases {
            assert!(update.to_document().is_err(), "{update:?}");
        }
    }

    #[test]
    fn hostile_strings_are_set_verbatim() {
        let rendered = Update::new()
            .set("name", r#"{"$ne": null}"#)
            .to_document()
            .unwrap();
        assert_eq!(rendered, doc! { "$set": { "name": r#"{"$ne": null}"# } });
    }
}

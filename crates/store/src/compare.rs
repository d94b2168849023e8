//! MongoDB's comparison rules for BSON values, for the in-memory store.
//!
//! Values of different types order by MongoDB's type ranks (null < numbers <
//! strings < documents < arrays < binary < ObjectId < booleans < dates <
//! timestamps < regexes); numbers compare across their types. Range
//! operators (`$gt`...) only compare within one rank ("type bracketing").

use std::cmp::Ordering;

use bson::{Bson, Document};

/// The rank of a value's type in MongoDB's cross-type order.
pub(crate) fn rank(value: &Bson) -> u8 {
    match value {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::DbPointer(_) => 12,
        Bson::JavaScriptCode(_) => 13,
        Bson::JavaScriptCodeWithScope(_) => 14,
        Bson::MaxKey => 15,
    }
}

/// A number as the pair MongoDB compares: exact integers where possible.
enum Num {
    Int(i64),
    Float(f64),
}

fn number(value: &Bson) -> Option<Num> {
    match value {
        Bson::Int32(i) => Some(Num::Int(i64::from(*i))),
        Bson::Int64(i) => Some(Num::Int(*i)),
        Bson::Double(f) => Some(Num::Float(*f)),
        // Decimal128 has no arithmetic in `bson`; compare through its text.
        Bson::Decimal128(d) => d.to_string().parse().ok().map(Num::Float),
        _ => None,
    }
}

fn compare_numbers(a: &Num, b: &Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(y),
        // Precision loss past 2^53 is accepted; MongoDB's exact mixed
        // comparison matters only for ids that large.
        (Num::Int(x), Num::Float(y)) => compare_floats(*x as f64, *y),
        (Num::Float(x), Num::Int(y)) => compare_floats(*x, *y as f64),
        (Num::Float(x), Num::Float(y)) => compare_floats(*x, *y),
    }
}

/// NaN sorts below every other number, as in MongoDB.
fn compare_floats(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// The total order MongoDB sorts by.
pub(crate) fn compare(a: &Bson, b: &Bson) -> Ordering {
    let by_rank = rank(a).cmp(&rank(b));
    if by_rank != Ordering::Equal {
        return by_rank;
    }
    match (a, b) {
        _ if rank(a) == 2 => match (number(a), number(b)) {
            (Some(x), Some(y)) => compare_numbers(&x, &y),
            _ => Ordering::Equal,
        },
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => x.cmp(y),
        (Bson::Document(x), Bson::Document(y)) => compare_documents(x, y),
        (Bson::Array(x), Bson::Array(y)) => compare_slices(x, y),
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then(u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then(x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.cmp(y),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => {
            (&x.pattern, &x.options).cmp(&(&y.pattern, &y.options))
        }
        _ => Ordering::Equal,
    }
}

fn compare_slices(x: &[Bson], y: &[Bson]) -> Ordering {
    for (a, b) in x.iter().zip(y) {
        let ord = compare(a, b);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    x.len().cmp(&y.len())
}

/// Documents compare field by field, in order: type rank, name, value.
fn compare_documents(x: &Document, y: &Document) -> Ordering {
    for ((ka, va), (kb, vb)) in x.iter().zip(y.iter()) {
        let ord = rank(va)
            .cmp(&rank(vb))
            .then_with(|| ka.cmp(kb))
            .then_with(|| compare(va, vb));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    x.len().cmp(&y.len())
}

/// Equality as `$eq` sees it (numbers across types, documents in field order).
pub(crate) fn equal(a: &Bson, b: &Bson) -> bool {
    rank(a) == rank(b) && compare(a, b) == Ordering::Equal
}

/// A byte string that is equal for exactly the values MongoDB's comparison
/// calls equal (`1`, `1.0` and `1i64` alike), for hashing ids and
/// unique-index keys.
pub fn key(value: &Bson) -> Vec<u8> {
    let mut out = Vec::new();
    write_key(value, &mut out);
    out
}

fn write_key(value: &Bson, out: &mut Vec<u8>) {
    out.push(rank(value));
    match value {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => {
            match number(value) {
                Some(Num::Int(i)) => write_int(i, out),
                Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                    write_int(f as i64, out);
                }
                Some(Num::Float(f)) if f.is_nan() => out.push(b'N'),
                Some(Num::Float(f)) => {
                    out.push(b'f');
                    out.extend_from_slice(&f.to_bits().to_be_bytes());
                }
                None => out.push(b'?'),
            }
        }
        Bson::String(s) | Bson::Symbol(s) => write_bytes(s.as_bytes(), out),
        Bson::Document(doc) => {
            for (k, v) in doc {
                write_bytes(k.as_bytes(), out);
                write_key(v, out);
            }
            out.push(0xff);
        }
        Bson::Array(items) => {
            for v in items {
                write_key(v, out);
            }
            out.push(0xff);
        }
        Bson::Binary(b) => {
            out.push(u8::from(b.subtype));
            write_bytes(&b.bytes, out);
        }
        Bson::ObjectId(oid) => out.extend_from_slice(&oid.bytes()),
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::DateTime(d) => out.extend_from_slice(&d.timestamp_millis().to_be_bytes()),
        Bson::Timestamp(t) => {
            out.extend_from_slice(&t.time.to_be_bytes());
            out.extend_from_slice(&t.increment.to_be_bytes());
        }
        Bson::RegularExpression(r) => {
            write_bytes(r.pattern.as_bytes(), out);
            write_bytes(r.options.as_bytes(), out);
        }
        _ => {}
    }
}

fn write_int(i: i64, out: &mut Vec<u8>) {
    out.push(b'i');
    out.extend_from_slice(&i.to_be_bytes());
}

/// Length-prefixed, so that concatenations cannot collide.
fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use bson::oid::ObjectId;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn numbers_compare_across_types() {
        assert!(equal(&Bson::Int32(1), &Bson::Double(1.0)));
        assert!(equal(&Bson::Int64(7), &Bson::Int32(7)));
        assert_eq!(key(&Bson::Int32(1)), key(&Bson::Double(1.0)));
        assert_ne!(key(&Bson::Int32(1)), key(&Bson::String("1".into())));
        assert_eq!(
            compare(&Bson::Int32(2), &Bson::Double(1.5)),
            Ordering::Greater
        );
    }

    #[test]
    fn cross_type_order() {
        let ordered = [
            Bson::Null,
            Bson::Int32(5),
            Bson::String("a".into()),
            Bson::Document(Document::new()),
            Bson::Array(vec![]),
            Bson::ObjectId(ObjectId::new()),
            Bson::Boolean(false),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(compare(&pair[0], &pair[1]), Ordering::Less, "{pair:?}");
        }
    }

    fn scalar() -> impl Strategy<Value = Bson> {
        prop_oneof![
            any::<i32>().prop_map(Bson::Int32),
            any::<i64>().prop_map(Bson::Int64),
            (-1000i32..1000).prop_map(|i| Bson::Double(f64::from(i) / 4.0)),
            "[a-c]{0,3}".prop_map(Bson::String),
            any::<bool>().prop_map(Bson::Boolean),
            Just(Bson::Null),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Keys are equal exactly when values are equal.
        #[test]
        fn key_agrees_with_equal(a in scalar(), b in scalar()) {
            prop_assert_eq!(key(&a) == key(&b), equal(&a, &b), "{:?} {:?}", a, b);
        }

        /// The order is antisymmetric.
        #[test]
        fn compare_is_antisymmetric(a in scalar(), b in scalar()) {
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        }
    }
}

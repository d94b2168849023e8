//! The verification pass: every acknowledged write read back with the raw
//! driver, around the facade, after the run.

use std::collections::HashMap;
use std::fmt;

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};

/// What the tasks were told about their writes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Expected {
    /// Ids of acknowledged inserts.
    pub(crate) inserted: Vec<i64>,
    /// Ids of inserts whose outcome is unknown (they reached the database
    /// and the answer was lost, or the driver's retry was answered "not
    /// the primary").
    pub(crate) unknown_inserts: Vec<i64>,
    /// Per preloaded document (index = id): acknowledged updates, updates
    /// with an unknown outcome, the highest version an update returned.
    pub(crate) updates: Vec<(u64, u64, i64)>,
}

/// What the database holds: `_id` to `version`.
pub(crate) type Found = HashMap<i64, i64>;

/// Reads every document's id and version with the raw driver.
pub(crate) async fn read_back(collection: &mongodb::Collection<Document>) -> Result<Found, String> {
    let mut cursor = collection
        .find(doc! {})
        .projection(doc! { "_id": 1, "version": 1 })
        .batch_size(10_000)
        .await
        .map_err(|e| format!("reading back: {e}"))?;
    let mut found = Found::new();
    while let Some(d) = cursor
        .try_next()
        .await
        .map_err(|e| format!("reading back: {e}"))?
    {
        let id = d
            .get_i64("_id")
            .map_err(|e| format!("a document's _id: {e}"))?;
        let version = d
            .get_i64("version")
            .map_err(|e| format!("document {id}'s version: {e}"))?;
        found.insert(id, version);
    }
    Ok(found)
}

/// How many examples of each kind of discrepancy the report quotes.
const EXAMPLES: usize = 5;

/// The verdict of comparing [`Expected`] with [`Found`].
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    /// Acknowledged inserts checked.
    pub(crate) inserts_checked: usize,
    /// Preloaded documents checked, and how many acknowledged updates they carry.
    pub(crate) documents_checked: usize,
    pub(crate) updates_checked: u64,
    /// Acknowledged inserts not in the database (count, first ids).
    pub(crate) missing_inserts: (usize, Vec<i64>),
    /// Preloaded documents gone from the database.
    pub(crate) missing_documents: (usize, Vec<i64>),
    /// Documents whose version is below their acknowledged updates (lost
    /// updates): (count, first `(id, version in the database, acknowledged)`).
    pub(crate) lost_updates: (usize, Vec<(i64, i64, u64)>),
    /// Writes the database holds that no caller could have made: inserted
    /// ids never attempted or refused before reaching the database, versions
    /// above acknowledged plus unknown-outcome updates.
    pub(crate) phantoms: (usize, Vec<i64>),
    /// Unknown-outcome writes that turned out applied / not applied.
    pub(crate) unknown_applied: u64,
    pub(crate) unknown_total: u64,
}

impl Verdict {
    /// Whether every acknowledged write is there and nothing else is.
    pub(crate) fn passed(&self) -> bool {
        self.missing_inserts.0 == 0
            && self.missing_documents.0 == 0
            && self.lost_updates.0 == 0
            && self.phantoms.0 == 0
    }
}

fn note<T>(tally: &mut (usize, Vec<T>), example: T) {
    tally.0 += 1;
    if tally.1.len() < EXAMPLES {
        tally.1.push(example);
    }
}

/// Compares what callers were told with what the database holds.
pub(crate) fn check(expected: &Expected, found: &Found) -> Verdict {
    let mut v = Verdict {
        inserts_checked: expected.inserted.len(),
        documents_checked: expected.updates.len(),
        ..Verdict::default()
    };
    for &id in &expected.inserted {
        match found.get(&id) {
            Some(0) => {}
            // Inserted documents are never updated: any other version is not ours.
            Some(_) => note(&mut v.phantoms, id),
            None => note(&mut v.missing_inserts, id),
        }
    }
    for &id in &expected.unknown_inserts {
        v.unknown_total += 1;
        if found.contains_key(&id) {
            v.unknown_applied += 1;
        }
    }
    for (id, &(acked, unknown, max_version)) in expected.updates.iter().enumerate() {
        let id = id as i64;
        v.updates_checked += acked;
        v.unknown_total += unknown;
        let Some(&version) = found.get(&id) else {
            note(&mut v.missing_documents, id);
            continue;
        };
        // Each applied update added one: the acknowledged ones all count,
        // the unknown ones may, nothing else may.
        let applied = u64::try_from(version).unwrap_or(0);
        if applied < acked || version < max_version {
            note(&mut v.lost_updates, (id, version, acked));
        } else if applied > acked + unknown {
            note(&mut v.phantoms, id);
        } else {
            v.unknown_applied += applied - acked;
        }
    }
    let preloaded = expected.updates.len() as i64;
    let known: std::collections::HashSet<i64> = expected
        .inserted
        .iter()
        .chain(&expected.unknown_inserts)
        .copied()
        .collect();
    for &id in found.keys() {
        if id >= preloaded && !known.contains(&id) {
            note(&mut v.phantoms, id);
        }
    }
    v
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "verification: read back with the raw driver: {} acknowledged inserts, {} acknowledged updates over {} documents",
            self.inserts_checked, self.updates_checked, self.documents_checked
        )?;
        writeln!(
            f,
            "  missing acknowledged inserts: {}{}",
            self.missing_inserts.0,
            examples(&self.missing_inserts.1)
        )?;
        writeln!(
            f,
            "  missing preloaded documents:  {}{}",
            self.missing_documents.0,
            examples(&self.missing_documents.1)
        )?;
        writeln!(
            f,
            "  lost acknowledged updates:    {}{}",
            self.lost_updates.0,
            examples(
                &self
                    .lost_updates
                    .1
                    .iter()
                    .map(|(id, version, acked)| format!(
                        "{id} at version {version} after {acked} acknowledged"
                    ))
                    .collect::<Vec<_>>()
            )
        )?;
        writeln!(
            f,
            "  writes nobody was told about: {}{}",
            self.phantoms.0,
            examples(&self.phantoms.1)
        )?;
        writeln!(
            f,
            "  unknown-outcome writes (reached the database, answer lost or not primary): {}, of which {} applied",
            self.unknown_total, self.unknown_applied
        )
    }
}

fn examples<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        let shown: Vec<String> = items.iter().map(ToString::to_string).collect();
        format!(" (e.g. {})", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            inserted: vec![10, 11],
            unknown_inserts: vec![12],
            // Documents 0..3: 2 acknowledged; 0 acknowledged + 1 unknown; untouched.
            updates: vec![(2, 0, 2), (0, 1, 0), (0, 0, 0)],
        }
    }

    fn found() -> Found {
        [(0, 2), (1, 1), (2, 0), (10, 0), (11, 0)]
            .into_iter()
            .collect()
    }

    #[test]
    fn everything_acknowledged_present_passes() {
        let v = check(&expected(), &found());
        assert!(v.passed(), "{v}");
        assert_eq!((v.inserts_checked, v.updates_checked), (2, 2));
        assert_eq!((v.unknown_total, v.unknown_applied), (2, 1));
    }

    #[test]
    fn a_missing_insert_fails() {
        let mut found = found();
        found.remove(&11);
        let v = check(&expected(), &found);
        assert!(!v.passed());
        assert_eq!(v.missing_inserts, (1, vec![11]));
    }

    #[test]
    fn a_lost_update_fails() {
        let mut found = found();
        found.insert(0, 1);
        let v = check(&expected(), &found);
        assert!(!v.passed());
        assert_eq!(v.lost_updates, (1, vec![(0, 1, 2)]));
    }

    #[test]
    fn a_missing_preloaded_document_fails() {
        let mut found = found();
        found.remove(&2);
        assert_eq!(check(&expected(), &found).missing_documents, (1, vec![2]));
    }

    #[test]
    fn writes_nobody_made_fail() {
        let mut found = found();
        found.insert(2, 1); // an update on an untouched document
        found.insert(13, 0); // an insert never attempted or refused
        let v = check(&expected(), &found);
        assert!(!v.passed());
        assert_eq!(v.phantoms.0, 2);
    }

    #[test]
    fn an_unknown_insert_may_be_absent() {
        let v = check(&expected(), &found());
        assert!(v.passed());
        let mut found = found();
        found.insert(12, 0);
        let v = check(&expected(), &found);
        assert!(v.passed());
        assert_eq!(v.unknown_applied, 2);
    }
}

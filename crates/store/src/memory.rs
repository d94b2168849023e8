//! `MemoryStore`: the embedded, in-process store, the default when no
//! MongoDB URI is configured.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use bson::oid::ObjectId;
use bson::{Bson, Document};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::compare::{compare, equal, key, rank};
use super::group::{GroupRow, Grouping, Summer};
use super::query::{Cmp, Node};
use super::ttl::{WallClock, expiry_millis};
use super::update::Op;
use super::validate::{check_collection_name, check_document, check_id, check_index};
use super::{Filter, IndexSpec, Order, Query, Store, StoreError, Update};
use crate::config::{MONGODB_MAX_DOCUMENT_BYTES, StoreConfig};

/// Documents in memory, with MongoDB's semantics for the operations of
/// [`Store`]: the same filters, sort order across types, update operators,
/// unique indexes and errors, checked by the shared conformance suite.
///
/// Cloning is cheap and clones share the data. Each collection has its own
/// lock, so operations on different collections do not contend.
///
/// TTL indexes are honoured: a document whose date plus the index's
/// `expire_after` is at or before now (on the store's [`WallClock`], see
/// [`MemoryStore::with_clock`]) is never returned, counted, grouped, updated
/// or held against a unique key; every operation on a collection first
/// deletes its expired documents (MongoDB deletes them in a sweep every
/// 60 s and returns them until then). [`MemoryStore::reap_expired`]
/// deletes them in every collection at once, to give the memory back.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use stratum_store::{IndexSpec, MemoryStore, Order, Store, StoreError};
/// use stratum_store::bson::doc;
///
/// let store = MemoryStore::new();
/// store.ensure_index("users", &IndexSpec::new([("email", Order::Ascending)]).unique()).await?;
/// store.insert("users", doc! { "email": "a@example.com" }).await?;
/// let again = store.insert("users", doc! { "email": "a@example.com" }).await;
/// assert!(matches!(again, Err(StoreError::DuplicateKey { .. })));
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    collections: Arc<RwLock<HashMap<String, Arc<RwLock<Collection>>>>>,
    max_document_bytes: usize,
    clock: WallClock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

/// One collection: documents in insertion order, the `_id` index and the
/// declared indexes.
#[derive(Debug, Default)]
struct Collection {
    docs: BTreeMap<u64, Document>,
    by_id: HashMap<Vec<u8>, u64>,
    next_seq: u64,
    indexes: Vec<MemIndex>,
    /// `(expiry in ms since the epoch, seq)` of every document a TTL index
    /// will expire, earliest first: reaping pops from the front.
    expiries: BTreeSet<(i64, u64)>,
}

#[derive(Debug)]
struct MemIndex {
    spec: IndexSpec,
    /// Key -> document, for unique indexes only.
    entries: HashMap<Vec<u8>, u64>,
}

impl MemIndex {
    fn key_of(&self, doc: &Document) -> Vec<u8> {
        let mut out = Vec::new();
        for (field, _) in &self.spec.keys {
            out.extend(key(doc.get(field.as_ref()).unwrap_or(&Bson::Null)));
        }
        out
    }

    fn fields(&self) -> String {
        let names: Vec<&str> = self.spec.keys.iter().map(|(f, _)| f.as_ref()).collect();
        names.join(", ")
    }
}

impl Collection {
    fn seq_of(&self, id: &Bson) -> Option<u64> {
        self.by_id.get(&key(id)).copied()
    }

    /// When `doc` expires: the earliest of its TTL indexes' expiries.
    fn expiry(&self, doc: &Document) -> Option<i64> {
        self.indexes
            .iter()
            .filter_map(|i| expiry_millis(&i.spec, doc))
            .min()
    }

    /// Deletes every document expired at `now_ms`; how many it deleted.
    fn reap(&mut self, now_ms: i64) -> usize {
        let mut reaped = 0;
        while let Some(&(at, seq)) = self.expiries.first()
            && at <= now_ms
        {
            self.remove(seq);
            // `remove` drops the entry; this guards against a stray one.
            self.expiries.remove(&(at, seq));
            reaped += 1;
        }
        reaped
    }

    /// Rebuilds the expiry queue (after a TTL index is declared).
    fn rebuild_expiries(&mut self) {
        let expiries = self
            .docs
            .iter()
            .filter_map(|(&seq, doc)| self.expiry(doc).map(|at| (at, seq)))
            .collect();
        self.expiries = expiries;
    }

    /// Refuses `doc` when it would repeat a unique key held by another document.
    fn check_unique(&self, name: &str, doc: &Document, own: Option<u64>) -> Result<(), StoreError> {
        for index in self.indexes.iter().filter(|i| i.spec.unique) {
            if let Some(&holder) = index.entries.get(&index.key_of(doc))
                && Some(holder) != own
            {
                return Err(StoreError::DuplicateKey {
                    collection: name.to_owned(),
                    message: format!(
                        "unique index on ({}) already holds this key",
                        index.fields()
                    ),
                });
            }
        }
        Ok(())
    }

    fn add(&mut self, doc: Document, id_key: Vec<u8>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(id_key, seq);
        for index in self.indexes.iter_mut().filter(|i| i.spec.unique) {
            let k = index.key_of(&doc);
            index.entries.insert(k, seq);
        }
        if let Some(at) = self.expiry(&doc) {
            self.expiries.insert((at, seq));
        }
        self.docs.insert(seq, doc);
        seq
    }

    fn replace(&mut self, seq: u64, doc: Document) {
        if let Some(old) = self.docs.get(&seq) {
            for index in self.indexes.iter_mut().filter(|i| i.spec.unique) {
                let old_key = index.key_of(old);
                index.entries.remove(&old_key);
                index.entries.insert(index.key_of(&doc), seq);
            }
            if let Some(at) = self.expiry(old) {
                self.expiries.remove(&(at, seq));
            }
        }
        if let Some(at) = self.expiry(&doc) {
            self.expiries.insert((at, seq));
        }
        self.docs.insert(seq, doc);
    }

    fn remove(&mut self, seq: u64) {
        if let Some(old) = self.docs.remove(&seq) {
            if let Some(id) = old.get("_id") {
                self.by_id.remove(&key(id));
            }
            for index in self.indexes.iter_mut().filter(|i| i.spec.unique) {
                let old_key = index.key_of(&old);
                index.entries.remove(&old_key);
            }
            if let Some(at) = self.expiry(&old) {
                self.expiries.remove(&(at, seq));
            }
        }
    }
}

impl MemoryStore {
    /// An empty store accepting documents up to MongoDB's 16 MiB.
    pub fn new() -> MemoryStore {
        MemoryStore {
            collections: Arc::default(),
            max_document_bytes: MONGODB_MAX_DOCUMENT_BYTES,
            clock: WallClock::system(),
        }
    }

    /// The same store reading "now" for TTL expiry from `clock` (the
    /// system's time by default), so a test moves time with a `ManualClock`.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use std::time::Duration;
    /// use stratum_core::clock::ManualClock;
    /// use stratum_store::bson::{DateTime, doc};
    /// use stratum_store::{Filter, IndexSpec, MemoryStore, Store, WallClock};
    ///
    /// let time = ManualClock::new();
    /// let wall = WallClock::starting_at(time.clone(), DateTime::from_millis(1_700_000_000_000));
    /// let store = MemoryStore::new().with_clock(wall.clone());
    /// store.ensure_index("sessions", &IndexSpec::ttl("seen_ttl", "seen", Duration::from_secs(60))).await?;
    /// let id = store.insert("sessions", doc! { "seen": wall.now() }).await?;
    ///
    /// time.advance(Duration::from_secs(59));
    /// assert!(store.get("sessions", &id).await?.is_some());
    /// time.advance(Duration::from_secs(1)); // seen + 60 s: expired
    /// assert_eq!(store.get("sessions", &id).await?, None);
    /// assert_eq!(store.count("sessions", &Filter::all()).await?, 0);
    /// # Ok::<(), stratum_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: WallClock) -> MemoryStore {
        self.clock = clock;
        self
    }

    /// Deletes the expired documents of every collection now (each
    /// operation already deletes those of its own collection first); how
    /// many it deleted.
    pub fn reap_expired(&self) -> usize {
        let now = self.now_ms();
        let collections: Vec<_> = self.collections.read().values().cloned().collect();
        collections.iter().map(|c| c.write().reap(now)).sum()
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// The collection, read-locked, after deleting what has expired.
    /// A collection with no document under a TTL costs no clock read.
    fn read_live<'a>(&self, coll: &'a RwLock<Collection>) -> RwLockReadGuard<'a, Collection> {
        let guard = coll.read();
        let Some(&(earliest, _)) = guard.expiries.first() else {
            return guard;
        };
        let now = self.now_ms();
        if earliest > now {
            return guard;
        }
        drop(guard);
        let mut guard = coll.write();
        guard.reap(now);
        RwLockWriteGuard::downgrade(guard)
    }

    /// The collection, write-locked, after deleting what has expired.
    fn write_live<'a>(&self, coll: &'a RwLock<Collection>) -> RwLockWriteGuard<'a, Collection> {
        let mut guard = coll.write();
        if !guard.expiries.is_empty() {
            guard.reap(self.now_ms());
        }
        guard
    }

    /// An empty store that applies the store section's rules.
    pub fn from_config(config: &StoreConfig) -> MemoryStore {
        MemoryStore {
            max_document_bytes: config.max_document_bytes,
            ..MemoryStore::new()
        }
    }

    fn existing(&self, name: &str) -> Result<Option<Arc<RwLock<Collection>>>, StoreError> {
        check_collection_name(name)?;
        Ok(self.collections.read().get(name).cloned())
    }

    fn collection(&self, name: &str) -> Result<Arc<RwLock<Collection>>, StoreError> {
        if let Some(found) = self.existing(name)? {
            return Ok(found);
        }
        Ok(Arc::clone(
            self.collections.write().entry(name.to_owned()).or_default(),
        ))
    }

    /// Applies `update` to a copy of `doc` and checks the result, so a
    /// failing update leaves the stored document untouched.
    fn updated(&self, doc: &Document, update: &Update) -> Result<Document, StoreError> {
        let mut next = doc.clone();
        apply(&mut next, update)?;
        check_document(&next, self.max_document_bytes)?;
        Ok(next)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, collection: &str, id: &Bson) -> Result<Option<Document>, StoreError> {
        check_id(id)?;
        let Some(coll) = self.existing(collection)? else {
            return Ok(None);
        };
        let coll = self.read_live(&coll);
        Ok(coll.seq_of(id).and_then(|seq| coll.docs.get(&seq)).cloned())
    }

    async fn find(&self, collection: &str, query: &Query) -> Result<Vec<Document>, StoreError> {
        query.validate()?;
        let Some(coll) = self.existing(collection)? else {
            return Ok(Vec::new());
        };
        if query.limit == Some(0) {
            return Ok(Vec::new());
        }
        let coll = self.read_live(&coll);
        let mut hits: Vec<&Document> = match &query.filter.0 {
            // `_id: {$in: [...]}` (a repository's prefetch): through the id
            // index, in insertion order as a scan would find them.
            crate::query::Node::In { field, values } if field == "_id" => {
                let mut seqs: Vec<u64> = values.iter().filter_map(|v| coll.seq_of(v)).collect();
                seqs.sort_unstable();
                seqs.dedup();
                seqs.iter()
                    .filter_map(|seq| coll.docs.get(seq))
                    .filter(|doc| matches(doc, &query.filter))
                    .collect()
            }
            _ => coll
                .docs
                .values()
                .filter(|doc| matches(doc, &query.filter))
                .collect(),
        };
        if !query.sort.is_empty() {
            // Stable: ties keep insertion order.
            hits.sort_by(|a, b| compare_for_sort(a, b, &query.sort));
        }
        let skip = usize::try_from(query.skip).unwrap_or(usize::MAX);
        let limit = query
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        Ok(hits.into_iter().skip(skip).take(limit).cloned().collect())
    }

    async fn insert(&self, collection: &str, document: Document) -> Result<Bson, StoreError> {
        let document = with_id_first(document);
        check_document(&document, self.max_document_bytes)?;
        let id = document.get("_id").cloned().unwrap_or(Bson::Null);
        let coll = self.collection(collection)?;
        let mut coll = self.write_live(&coll);
        let id_key = key(&id);
        if coll.by_id.contains_key(&id_key) {
            return Err(StoreError::DuplicateKey {
                collection: collection.to_owned(),
                message: "a document with this `_id` exists".into(),
            });
        }
        coll.check_unique(collection, &document, None)?;
        coll.add(document, id_key);
        Ok(id)
    }

    async fn update(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError> {
        check_id(id)?;
        update.validate()?;
        let not_found = || StoreError::NotFound {
            collection: collection.to_owned(),
        };
        let coll = self.existing(collection)?.ok_or_else(not_found)?;
        let mut coll = self.write_live(&coll);
        let seq = coll.seq_of(id).ok_or_else(not_found)?;
        let current = coll.docs.get(&seq).ok_or_else(not_found)?;
        let next = self.updated(current, update)?;
        coll.check_unique(collection, &next, Some(seq))?;
        coll.replace(seq, next.clone());
        Ok(next)
    }

    async fn upsert(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError> {
        check_id(id)?;
        update.validate()?;
        let coll = self.collection(collection)?;
        let mut coll = self.write_live(&coll);
        match coll.seq_of(id) {
            Some(seq) => {
                let current = coll.docs.get(&seq).cloned().unwrap_or_default();
                let next = self.updated(&current, update)?;
                coll.check_unique(collection, &next, Some(seq))?;
                coll.replace(seq, next.clone());
                Ok(next)
            }
            None => {
                let mut seed = Document::new();
                seed.insert("_id", id.clone());
                let next = self.updated(&seed, update)?;
                coll.check_unique(collection, &next, None)?;
                coll.add(next.clone(), key(id));
                Ok(next)
            }
        }
    }

    async fn delete(&self, collection: &str, id: &Bson) -> Result<bool, StoreError> {
        check_id(id)?;
        let Some(coll) = self.existing(collection)? else {
            return Ok(false);
        };
        let mut coll = self.write_live(&coll);
        match coll.seq_of(id) {
            Some(seq) => {
                coll.remove(seq);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        filter.validate()?;
        let Some(coll) = self.existing(collection)? else {
            return Ok(0);
        };
        let coll = self.read_live(&coll);
        let n = coll.docs.values().filter(|d| matches(d, filter)).count();
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn group(
        &self,
        collection: &str,
        grouping: &Grouping,
    ) -> Result<Vec<GroupRow>, StoreError> {
        grouping.validate()?;
        let Some(coll) = self.existing(collection)? else {
            return Ok(Vec::new());
        };
        let coll = self.read_live(&coll);
        // Groups by the encoded key values, under which equal numbers of
        // different types are one key, as they are one `_id` on MongoDB.
        let mut groups: HashMap<Vec<u8>, (Vec<Bson>, u64, Vec<Summer>)> = HashMap::new();
        for doc in coll.docs.values().filter(|d| matches(d, &grouping.filter)) {
            let values: Vec<Bson> = grouping.keys.iter().map(|k| k.value_of(doc)).collect();
            let encoded: Vec<u8> = values.iter().flat_map(key).collect();
            let (_, count, sums) = groups
                .entry(encoded)
                .or_insert_with(|| (values, 0, vec![Summer::default(); grouping.sums.len()]));
            *count += 1;
            for (sum, field) in sums.iter_mut().zip(&grouping.sums) {
                sum.add(doc.get(field));
            }
        }
        let mut rows: Vec<GroupRow> = groups
            .into_values()
            .map(|(values, count, sums)| {
                grouping.row(values, count, sums.into_iter().map(Summer::total).collect())
            })
            .collect();
        grouping.sort(&mut rows);
        Ok(rows)
    }

    async fn ensure_index(&self, collection: &str, index: &IndexSpec) -> Result<(), StoreError> {
        check_index(index)?;
        let coll = self.collection(collection)?;
        let mut coll = self.write_live(&coll);
        // The same index again, under any name, is a no-op (MongoDB refuses
        // another name; MongoStore accepts it the same way); the same name
        // or the same keys with other options is refused.
        if let Some(existing) = coll
            .indexes
            .iter()
            .find(|i| i.spec.name == index.name || i.spec.same_keys(index))
        {
            return if existing.spec.same_index(index) {
                Ok(())
            } else {
                Err(StoreError::validation(format!(
                    "an index `{}` over ({}) exists with another name or other options",
                    existing.spec.name,
                    existing.fields()
                )))
            };
        }
        let mut built = MemIndex {
            spec: index.clone(),
            entries: HashMap::new(),
        };
        if index.unique {
            for (&seq, doc) in &coll.docs {
                if built.entries.insert(built.key_of(doc), seq).is_some() {
                    return Err(StoreError::DuplicateKey {
                        collection: collection.to_owned(),
                        message: format!(
                            "existing documents repeat a key of the unique index on ({})",
                            built.fields()
                        ),
                    });
                }
            }
        }
        coll.indexes.push(built);
        if index.expire_after.is_some() {
            coll.rebuild_expiries();
        }
        Ok(())
    }

    /// `_id_` and the declared indexes, as declared.
    async fn indexes(&self, collection: &str) -> Result<Vec<IndexSpec>, StoreError> {
        let Some(coll) = self.existing(collection)? else {
            return Ok(Vec::new());
        };
        let coll = coll.read();
        let id = IndexSpec::new([("_id", Order::Ascending)]).named("_id_");
        Ok(std::iter::once(id)
            .chain(coll.indexes.iter().map(|i| i.spec.clone()))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// Puts `_id` first, generating an `ObjectId` when there is none (as the
/// driver and the server do).
pub(crate) fn with_id_first(document: Document) -> Document {
    if document.keys().next().map(String::as_str) == Some("_id") {
        return document;
    }
    let mut out = Document::new();
    let mut rest = document;
    let id = rest
        .remove("_id")
        .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
    out.insert("_id", id);
    out.extend(rest);
    out
}

/// Whether `doc` satisfies `filter`, with MongoDB's rules.
pub(crate) fn matches(doc: &Document, filter: &Filter) -> bool {
    match &filter.0 {
        Node::All => true,
        Node::Compare { field, op, value } => {
            let present = doc.get(field);
            match op {
                Cmp::Eq => eq_match(present, value),
                Cmp::Ne => !eq_match(present, value),
                Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte => range_match(present, *op, value),
            }
        }
        Node::In { field, values } => values.iter().any(|v| eq_match(doc.get(field), v)),
        Node::Exists { field, exists } => doc.contains_key(field) == *exists,
        Node::And(parts) => parts.iter().all(|p| matches(doc, p)),
        Node::Or(parts) => parts.iter().any(|p| matches(doc, p)),
    }
}

/// `$eq`: equal, or an array holding an equal element; `null` matches missing.
fn eq_match(present: Option<&Bson>, value: &Bson) -> bool {
    match present {
        None => matches!(value, Bson::Null),
        Some(found) => {
            equal(found, value)
                || matches!(found, Bson::Array(items) if items.iter().any(|i| equal(i, value)))
        }
    }
}

/// `$gt` and friends, within one type bracket; arrays match by any element.
fn range_match(present: Option<&Bson>, op: Cmp, value: &Bson) -> bool {
    let holds = |candidate: &Bson| {
        rank(candidate) == rank(value)
            && match compare(candidate, value) {
                Ordering::Less => matches!(op, Cmp::Lt | Cmp::Lte),
                Ordering::Equal => matches!(op, Cmp::Gte | Cmp::Lte),
                Ordering::Greater => matches!(op, Cmp::Gt | Cmp::Gte),
            }
    };
    match present {
        None => matches!(value, Bson::Null) && matches!(op, Cmp::Gte | Cmp::Lte),
        Some(found @ Bson::Array(items)) => holds(found) || items.iter().any(holds),
        Some(found) => holds(found),
    }
}

/// The value a document sorts by: missing is `null`; an array sorts by its
/// smallest element ascending and its largest descending, an empty array
/// below `null`.
fn sort_value(doc: &Document, field: &str, order: Order) -> Bson {
    match doc.get(field) {
        None => Bson::Null,
        Some(Bson::Array(items)) => {
            let pick = match order {
                Order::Ascending => items.iter().min_by(|a, b| compare(a, b)),
                Order::Descending => items.iter().max_by(|a, b| compare(a, b)),
            };
            pick.cloned().unwrap_or(Bson::MinKey)
        }
        Some(value) => value.clone(),
    }
}

fn compare_for_sort(a: &Document, b: &Document, sort: &[(String, Order)]) -> Ordering {
    for (field, order) in sort {
        let ord = compare(&sort_value(a, field, *order), &sort_value(b, field, *order));
        let ord = match order {
            Order::Ascending => ord,
            Order::Descending => ord.reverse(),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Applies an update the way MongoDB 5+ does: existing fields change in
/// place, new fields are appended in lexicographic order of their names.
fn apply(doc: &mut Document, update: &Update) -> Result<(), StoreError> {
    let mut ops: Vec<&Op> = update.ops.iter().collect();
    ops.sort_by(|a, b| a.field().cmp(b.field()));
    for op in ops {
        match op {
            Op::Set(field, value) => {
                doc.insert(field.as_str(), value.clone());
            }
            Op::Unset(field) => {
                doc.remove(field);
            }
            Op::Inc(field, by) => {
                let next = match doc.get(field) {
                    None => by.clone(),
                    Some(current) => add(current, by).ok_or_else(|| {
                        StoreError::validation(format!(
                            "cannot apply `inc` to the field `{field}`: not a number, or the sum overflows"
                        ))
                    })?,
                };
                doc.insert(field.as_str(), next);
            }
            Op::Push(field, value) => match doc.get_mut(field) {
                None => {
                    doc.insert(field.as_str(), Bson::Array(vec![value.clone()]));
                }
                Some(Bson::Array(items)) => items.push(value.clone()),
                Some(_) => {
                    return Err(StoreError::validation(format!(
                        "cannot `push` to the field `{field}`: not an array"
                    )));
                }
            },
        }
    }
    Ok(())
}

/// `$inc` arithmetic: i32 widens to i64 on overflow, anything with a double is a double.
fn add(current: &Bson, by: &Bson) -> Option<Bson> {
    match (current, by) {
        (Bson::Int32(a), Bson::Int32(b)) => Some(
            a.checked_add(*b)
                .map_or(Bson::Int64(i64::from(*a) + i64::from(*b)), Bson::Int32),
        ),
        (Bson::Int32(a), Bson::Int64(b)) => i64::from(*a).checked_add(*b).map(Bson::Int64),
        (Bson::Int64(a), Bson::Int32(b)) => a.checked_add(i64::from(*b)).map(Bson::Int64),
        (Bson::Int64(a), Bson::Int64(b)) => a.checked_add(*b).map(Bson::Int64),
        (Bson::Double(a), _) => as_f64(by).map(|b| Bson::Double(a + b)),
        (_, Bson::Double(b)) => as_f64(current).map(|a| Bson::Double(a + b)),
        _ => None,
    }
}

fn as_f64(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(i) => Some(f64::from(*i)),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(f) => Some(*f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bson::{DateTime, doc};
    use proptest::prelude::*;

    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn inc_widens_and_refuses_non_numbers() {
        assert_eq!(
            add(&Bson::Int32(i32::MAX), &Bson::Int32(1)),
            Some(Bson::Int64(i64::from(i32::MAX) + 1))
        );
        assert_eq!(add(&Bson::Int64(i64::MAX), &Bson::Int32(1)), None);
        assert_eq!(
            add(&Bson::Int32(1), &Bson::Double(0.5)),
            Some(Bson::Double(1.5))
        );
        assert_eq!(add(&Bson::String("1".into()), &Bson::Int32(1)), None);
    }

    #[test]
    fn a_failed_update_changes_nothing() {
        block_on(async {
            let store = MemoryStore::new();
            let id = store
                .insert("c", doc! { "s": "text", "n": 1 })
                .await
                .unwrap();
            let err = store
                .update("c", &id, &Update::new().inc("n", 1).inc("s", 1))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Validation { .. }), "{err}");
            assert_eq!(
                store.get("c", &id).await.unwrap().unwrap(),
                doc! { "_id": id.clone(), "s": "text", "n": 1 }
            );
        });
    }

    #[test]
    fn new_fields_are_appended_in_name_order() {
        block_on(async {
            let store = MemoryStore::new();
            let doc = store
                .upsert("c", &Bson::Int32(1), &Update::new().set("b", 1).set("a", 2))
                .await
                .unwrap();
            let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
            assert_eq!(keys, ["_id", "a", "b"]);
        });
    }

    /// One step of the reference-model test.
    #[derive(Debug, Clone)]
    enum Step {
        Insert(i32, i32),
        Upsert(i32, i32),
        IncExisting(i32, i32),
        Delete(i32),
        Get(i32),
        CountAtLeast(i32),
    }

    fn step() -> impl Strategy<Value = Step> {
        let id = 0..8i32;
        let v = -50..50i32;
        prop_oneof![
            (id.clone(), v.clone()).prop_map(|(i, v)| Step::Insert(i, v)),
            (id.clone(), v.clone()).prop_map(|(i, v)| Step::Upsert(i, v)),
            (id.clone(), v.clone()).prop_map(|(i, v)| Step::IncExisting(i, v)),
            id.clone().prop_map(Step::Delete),
            id.prop_map(Step::Get),
            v.prop_map(Step::CountAtLeast),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The store behaves like a map from id to value under random operations.
        #[test]
        fn behaves_like_a_map(steps in proptest::collection::vec(step(), 1..40)) {
            block_on(async {
                let store = MemoryStore::new();
                let mut model: BTreeMap<i32, i64> = BTreeMap::new();
                for step in steps {
                    match step {
                        Step::Insert(id, v) => {
                            let got = store.insert("m", doc! { "_id": id, "v": i64::from(v) }).await;
                            match model.entry(id) {
                                std::collections::btree_map::Entry::Occupied(_) => {
                                    prop_assert!(matches!(got, Err(StoreError::DuplicateKey { .. })), "expected a duplicate key");
                                }
                                std::collections::btree_map::Entry::Vacant(slot) => {
                                    prop_assert_eq!(got.unwrap(), Bson::Int32(id));
                                    slot.insert(i64::from(v));
                                }
                            }
                        }
                        Step::Upsert(id, v) => {
                            let doc = store.upsert("m", &Bson::Int32(id), &Update::new().inc("v", i64::from(v))).await.unwrap();
                            let entry = model.entry(id).or_insert(0);
                            *entry += i64::from(v);
                            prop_assert_eq!(doc.get_i64("v").unwrap(), *entry);
                        }
                        Step::IncExisting(id, v) => {
                            let got = store.update("m", &Bson::Int32(id), &Update::new().inc("v", i64::from(v))).await;
                            match model.get_mut(&id) {
                                Some(value) => {
                                    *value += i64::from(v);
                                    prop_assert_eq!(got.unwrap().get_i64("v").unwrap(), *value);
                                }
                                None => prop_assert!(matches!(got, Err(StoreError::NotFound { .. })), "expected not found"),
                            }
                        }
                        Step::Delete(id) => {
                            prop_assert_eq!(store.delete("m", &Bson::Int32(id)).await.unwrap(), model.remove(&id).is_some());
                        }
                        Step::Get(id) => {
                            let got = store.get("m", &Bson::Int32(id)).await.unwrap();
                            prop_assert_eq!(got.map(|d| d.get_i64("v").unwrap()), model.get(&id).copied());
                        }
                        Step::CountAtLeast(v) => {
                            let got = store.count("m", &Filter::gte("v", v)).await.unwrap();
                            let expected = model.values().filter(|x| **x >= i64::from(v)).count() as u64;
                            prop_assert_eq!(got, expected);
                        }
                    }
                }
                let all = store.find("m", &Query::new(Filter::all()).sort("_id", Order::Ascending)).await.unwrap();
                let ids: Vec<i32> = all.iter().map(|d| d.get_i32("_id").unwrap()).collect();
                prop_assert_eq!(ids, model.keys().copied().collect::<Vec<_>>());
                Ok(())
            })?;
        }
    }

    /// One step of the TTL reference-model test.
    #[derive(Debug, Clone)]
    enum TtlStep {
        /// Insert `{_id, u, at: now + secs}` (`None`: no date, never expires).
        Insert(i32, i32, Option<i64>),
        /// Upsert `{u, at}` onto the id.
        Upsert(i32, i32, Option<i64>),
        Delete(i32),
        Get(i32),
        Count,
        Advance(u64),
    }

    fn ttl_step() -> impl Strategy<Value = TtlStep> {
        let id = 0..6i32;
        let u = 0..4i32;
        let secs = proptest::option::weighted(0.85, -20..20i64);
        prop_oneof![
            (id.clone(), u.clone(), secs.clone()).prop_map(|(i, u, s)| TtlStep::Insert(i, u, s)),
            (id.clone(), u, secs).prop_map(|(i, u, s)| TtlStep::Upsert(i, u, s)),
            id.clone().prop_map(TtlStep::Delete),
            id.prop_map(TtlStep::Get),
            Just(TtlStep::Count),
            (0..15u64).prop_map(TtlStep::Advance),
        ]
    }

    const T0: i64 = 1_700_000_000_000;
    const TTL_MS: i64 = 10_000;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Under a TTL index of 10 s and a unique index, the store behaves
        /// like a map that drops each entry once `at + 10 s <= now`: an
        /// expired document is never read, counted, or held against an
        /// `_id` or a unique key.
        #[test]
        fn ttl_reaping_matches_a_model(steps in proptest::collection::vec(ttl_step(), 1..40)) {
            block_on(async {
                let time = stratum_core::ManualClock::new();
                let store = MemoryStore::new().with_clock(WallClock::starting_at(time.clone(), DateTime::from_millis(T0)));
                store.ensure_index("t", &IndexSpec::ttl("at_ttl", "at", std::time::Duration::from_secs(10))).await.unwrap();
                store.ensure_index("t", &IndexSpec::ascending("u_unique", ["u"]).unique()).await.unwrap();
                let mut now = T0;
                // id -> (u, expiry in ms)
                let mut model: BTreeMap<i32, (i32, Option<i64>)> = BTreeMap::new();
                let date = |now: i64, secs: Option<i64>| secs.map(|s| now + s * 1_000);
                let fields = |u: i32, at: Option<i64>| {
                    let mut d = doc! { "u": u };
                    if let Some(at) = at {
                        d.insert("at", DateTime::from_millis(at));
                    }
                    d
                };
                for step in steps {
                    model.retain(|_, (_, expiry)| expiry.is_none_or(|e| e > now));
                    match step {
                        TtlStep::Insert(id, u, secs) => {
                            let at = date(now, secs);
                            let mut d = doc! { "_id": id };
                            d.extend(fields(u, at));
                            let got = store.insert("t", d).await;
                            let taken = model.contains_key(&id) || model.values().any(|(v, _)| *v == u);
                            prop_assert_eq!(got.is_err(), taken, "{:?}", got);
                            if !taken {
                                model.insert(id, (u, at.map(|a| a + TTL_MS)));
                            }
                        }
                        TtlStep::Upsert(id, u, secs) => {
                            let at = date(now, secs);
                            let mut update = Update::new().set("u", u);
                            update = match at {
                                Some(at) => update.set("at", DateTime::from_millis(at)),
                                None => update.unset("at"),
                            };
                            let got = store.upsert("t", &Bson::Int32(id), &update).await;
                            let taken = model.iter().any(|(other, (v, _))| *other != id && *v == u);
                            prop_assert_eq!(got.is_err(), taken, "{:?}", got);
                            if !taken {
                                model.insert(id, (u, at.map(|a| a + TTL_MS)));
                            }
                        }
                        TtlStep::Delete(id) => {
                            prop_assert_eq!(store.delete("t", &Bson::Int32(id)).await.unwrap(), model.remove(&id).is_some());
                        }
                        TtlStep::Get(id) => {
                            let got = store.get("t", &Bson::Int32(id)).await.unwrap();
                            prop_assert_eq!(got.map(|d| d.get_i32("u").unwrap()), model.get(&id).map(|(u, _)| *u));
                        }
                        TtlStep::Count => {
                            prop_assert_eq!(store.count("t", &Filter::all()).await.unwrap(), model.len() as u64);
                        }
                        TtlStep::Advance(secs) => {
                            time.advance(std::time::Duration::from_secs(secs));
                            now += i64::try_from(secs).unwrap() * 1_000;
                        }
                    }
                }
                model.retain(|_, (_, expiry)| expiry.is_none_or(|e| e > now));
                let all = store.find("t", &Query::new(Filter::all()).sort("_id", Order::Ascending)).await.unwrap();
                let ids: Vec<i32> = all.iter().map(|d| d.get_i32("_id").unwrap()).collect();
                prop_assert_eq!(ids, model.keys().copied().collect::<Vec<_>>());
                Ok(())
            })?;
        }

        /// Grouping by a field and the day of a date, summing a number,
        /// gives what a map from (value, day) to (count, sum) gives.
        #[test]
        fn grouping_matches_a_model(
            docs in proptest::collection::vec(
                (proptest::option::of(0..3u8), proptest::option::weighted(0.9, -3..5i64), -1_000..1_000i64, 0..86_400i64),
                0..40,
            ),
            min in proptest::option::of(-1_000..1_000i64),
        ) {
            block_on(async {
                let store = MemoryStore::new();
                let mut model: BTreeMap<(Option<String>, Option<i64>), (u64, i64)> = BTreeMap::new();
                for (i, (user, day, n, second)) in docs.into_iter().enumerate() {
                    let mut d = doc! { "_id": i as i32, "n": n };
                    let user = user.map(|u| format!("user{u}"));
                    if let Some(user) = &user {
                        d.insert("user", user.clone());
                    }
                    match day {
                        Some(day) => d.insert("at", DateTime::from_millis((day * 86_400 + second) * 1_000)),
                        None => d.insert("at", "no date"),
                    };
                    store.insert("g", d).await.unwrap();
                    if min.is_none_or(|m| n >= m) {
                        let entry = model.entry((user, day.map(|d| d * 86_400_000))).or_default();
                        entry.0 += 1;
                        entry.1 += n;
                    }
                }
                let filter = min.map_or(Filter::all(), |m| Filter::gte("n", m));
                let rows = store.group("g", &Grouping::new(filter).by("user").by_day("at").sum("n")).await.unwrap();
                type Groups = Vec<((Option<String>, Option<i64>), (u64, i64))>;
                let got: Groups = rows
                    .iter()
                    .map(|r| {
                        let user = r.key.get_str("user").ok().map(str::to_owned);
                        let day = r.key.get_datetime("at").ok().map(|d| d.timestamp_millis());
                        ((user, day), (r.count, r.sum_i64("n")))
                    })
                    .collect();
                prop_assert_eq!(got, model.into_iter().collect::<Vec<_>>());
                Ok(())
            })?;
        }
    }
}

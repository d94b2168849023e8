//! The database side (feature `mongodb`): creating a document type's declared
//! indexes, and writes that validate before anything is sent.

use bson::RawDocumentBuf;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use crate::{Document, IndexSpec, ValidationError};

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;
/// `IndexOptionsConflict` and `IndexKeySpecsConflict`: an index of that name exists with another definition.
const INDEX_CONFLICT: [i32; 2] = [85, 86];

/// A failed database step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The document was refused before the database; nothing was written.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A unique index already holds this key (E11000).
    #[error("duplicate key in `{collection}`: {message}")]
    DuplicateKey {
        /// The collection.
        collection: &'static str,
        /// The server's message (names the index).
        message: String,
    },
    /// An index of the same name exists with a different definition; drop it or rename the new one.
    #[error("index conflict in `{collection}`: {message}")]
    IndexConflict {
        /// The collection.
        collection: &'static str,
        /// The server's message.
        message: String,
    },
    /// Any other driver or server error.
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
}

fn classify(collection: &'static str, error: mongodb::error::Error) -> StoreError {
    let code = match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some((e.code, e.message.clone())),
        ErrorKind::Command(e) => Some((e.code, e.message.clone())),
        _ => None,
    };
    match code {
        Some((DUPLICATE_KEY, message)) => StoreError::DuplicateKey {
            collection,
            message,
        },
        Some((c, message)) if INDEX_CONFLICT.contains(&c) => StoreError::IndexConflict {
            collection,
            message,
        },
        _ => StoreError::Mongo(error),
    }
}

impl IndexSpec {
    /// The driver's form of this index.
    pub fn to_index_model(&self) -> IndexModel {
        let options = IndexOptions::builder()
            .name(self.name.to_string())
            .unique(self.unique.then_some(true))
            .expire_after(self.expire_after)
            .build();
        IndexModel::builder()
            .keys(self.key_document())
            .options(options)
            .build()
    }
}

/// Creates `D`'s declared indexes on `db`, returning their names.
///
/// Idempotent: every index has a fixed name, and creating an existing index
/// with the same name and definition is a no-op on the server. A changed
/// definition is a [`StoreError::IndexConflict`], never a second index.
///
/// ```no_run
/// # async fn demo(db: mongodb::Database) -> Result<(), stratum_models::StoreError> {
/// use stratum_models::{ensure_indexes, ResponseCacheEntry};
///
/// let names = ensure_indexes::<ResponseCacheEntry>(&db).await?;
/// assert!(names.contains(&"cache_key_unique".to_string()));
/// # Ok(()) }
/// ```
pub async fn ensure_indexes<D: Document>(db: &Database) -> Result<Vec<String>, StoreError> {
    let specs = D::indexes();
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let models: Vec<IndexModel> = specs.iter().map(IndexSpec::to_index_model).collect();
    db.collection::<RawDocumentBuf>(D::COLLECTION)
        .create_indexes(models)
        .await
        .map_err(|e| classify(D::COLLECTION, e))?;
    metrics::counter!(crate::telemetry::INDEXES_ENSURED, "collection" => D::COLLECTION)
        .increment(specs.len() as u64);
    tracing::debug!(
        collection = D::COLLECTION,
        count = specs.len(),
        "indexes ensured"
    );
    Ok(specs.into_iter().map(|s| s.name.into_owned()).collect())
}

/// Validates `doc` and inserts it into `D::COLLECTION`. An invalid or
/// oversized document is refused before anything is sent.
///
/// ```no_run
/// # async fn demo(db: mongodb::Database, entry: stratum_models::ResponseCacheEntry) {
/// use stratum_models::{insert, StoreError};
///
/// match insert(&db, &entry).await {
///     Ok(()) => {}
///     Err(StoreError::DuplicateKey { .. }) => { /* another task cached it first */ }
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
pub async fn insert<D: Document>(db: &Database, doc: &D) -> Result<(), StoreError> {
    let raw = doc.to_raw_checked()?;
    db.collection::<RawDocumentBuf>(D::COLLECTION)
        .insert_one(raw)
        .await
        .map_err(|e| classify(D::COLLECTION, e))?;
    Ok(())
}

/// Reads one document by `_id` and validates it; a stored document that no
/// longer decodes is a [`ValidationError::Malformed`], not a panic.
pub async fn find_by_id<D: Document>(db: &Database, id: &D::Id) -> Result<Option<D>, StoreError> {
    let id = bson::to_bson(id).map_err(|e| ValidationError::Unencodable {
        reason: e.to_string(),
    })?;
    let found = db
        .collection::<bson::Document>(D::COLLECTION)
        .find_one(bson::doc! { "_id": id })
        .await
        .map_err(|e| classify(D::COLLECTION, e))?;
    match found {
        Some(doc) => Ok(Some(D::from_bson_checked(doc)?)),
        None => Ok(None),
    }
}

/// Serves a cached response: finds the live entry for `key` and increments its
/// `hit_count` in one atomic step, returning the entry as updated.
///
/// An entry whose `expires_at` is at or before `now` is a miss even while it
/// is still stored: the server's TTL sweep runs only every 60 s, and a stale
/// response must never outlive its expiry.
///
/// ```no_run
/// # async fn demo(db: mongodb::Database, key: stratum_models::CacheKey) -> Result<(), stratum_models::StoreError> {
/// use stratum_models::lookup_response;
///
/// if let Some(entry) = lookup_response(&db, &key, bson::DateTime::now()).await? {
///     println!("{} (served {} times)", entry.response.content, entry.hit_count);
/// }
/// # Ok(()) }
/// ```
pub async fn lookup_response(
    db: &Database,
    key: &crate::CacheKey,
    now: bson::DateTime,
) -> Result<Option<crate::ResponseCacheEntry>, StoreError> {
    use crate::ResponseCacheEntry;
    let filter = bson::doc! {
        "cache_key": key.as_str(),
        "$or": [
            { "expires_at": { "$gt": now } },
            { "expires_at": { "$exists": false } },
        ],
    };
    let found = db
        .collection::<bson::Document>(ResponseCacheEntry::COLLECTION)
        .find_one_and_update(filter, bson::doc! { "$inc": { "hit_count": 1_i64 } })
        .return_document(mongodb::options::ReturnDocument::After)
        .await
        .map_err(|e| classify(ResponseCacheEntry::COLLECTION, e))?;
    let outcome = if found.is_some() { "hit" } else { "miss" };
    metrics::counter!(crate::telemetry::CACHE_LOOKUPS, "outcome" => outcome).increment(1);
    match found {
        Some(doc) => Ok(Some(ResponseCacheEntry::from_bson_checked(doc)?)),
        None => Ok(None),
    }
}

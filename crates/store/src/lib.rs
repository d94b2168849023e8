//! Stratum's document store: one small contract, [`Store`], over MongoDB or an
//! embedded in-memory store.
//!
//! Two implementations share one contract, checked by one conformance suite
//! (`crates/store/tests/conformance/`): [`MemoryStore`], embedded and the
//! default when no URI is configured, and `MongoStore` on the official driver
//! (feature `mongodb`). Both validate requests with the same code
//! ([`Filter::validate`], [`Update::validate`], the document rules in
//! [`check_field_name`]) before touching any data.
//!
//! # Brief overview
//!
//! - [`Store`]: get by id, find with sort and limit, insert, update, upsert,
//!   delete, count, indexes (named, unique, TTL: one [`IndexSpec`] shared
//!   with the document types), over BSON [`Document`]s. [`Filter`] and
//!   [`Update`] take values as values, so user input never becomes a query
//!   operator. Errors are a typed [`StoreError`] that says whether a circuit
//!   breaker should count it.
//! - [`Grouping`]: group by fields and UTC days of dates, count and sum
//!   ([`Store::group`]; an aggregation pipeline on MongoDB).
//! - TTL indexes expire documents on both stores: MongoDB's sweep deletes
//!   them (every 60 s); [`MemoryStore`] never returns them, on a
//!   [`WallClock`] a test can move.
//! - [`StoreConfig`] and [`MongoConfig`]: which store, the server and the
//!   driver's timeouts; [`open`] picks the store they select.
//! - [`MongoUri`]: a connection string whose credentials never show in
//!   `Debug`, `Display`, logs or errors (the only redaction in the workspace).
//! - [`check_indexes`]: what a store has for a list of declared indexes,
//!   found by keys, with differences in uniqueness or TTL named.
//! - `MongoStore::follow` (feature `mongodb`): a collection's change stream,
//!   each changed id handed to a callback, resumed after failures.
//! - [`FaultyStore`] (feature `fault`): injected latency and errors in front
//!   of any store, for tests and the demo.
//!
//! ```
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! use stratum_store::bson::doc;
//! use stratum_store::{Filter, MemoryStore, Order, Query, Store};
//!
//! let store = MemoryStore::new();
//! for (turn, text) in ["hello", "how are you?"].into_iter().enumerate() {
//!     store.insert("messages", doc! { "conversation": "c1", "turn": turn as i32, "text": text }).await?;
//! }
//! // A user's string is compared as a string, never read as an operator.
//! let hostile = Filter::eq("conversation", r#"{"$ne": null}"#);
//! assert_eq!(store.count("messages", &hostile).await?, 0);
//!
//! let latest = store
//!     .find("messages", &Query::new(Filter::eq("conversation", "c1")).sort("turn", Order::Descending).limit(1))
//!     .await?;
//! assert_eq!(latest[0].get_str("text")?, "how are you?");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

mod compare;
#[cfg(feature = "mongodb")]
mod deadline;
mod error;
#[cfg(feature = "mongodb")]
mod follow;
mod group;
mod indexes;
mod memory;
#[cfg(feature = "mongodb")]
mod mongo;
mod query;
#[cfg(feature = "mongodb")]
mod raw;
mod ttl;
mod update;
mod validate;

pub mod config;
#[cfg(feature = "fault")]
mod fault;
pub mod uri;

use async_trait::async_trait;
use bson::{Bson, Document, RawDocumentBuf};

pub use self::compare::key as id_key;
pub use self::error::StoreError;
#[cfg(feature = "mongodb")]
pub use self::follow::{Change, ChangeFollower, FollowState};
pub use self::group::{GroupKey, GroupRow, Grouping};
pub use self::indexes::{IndexState, IndexStatus, check_indexes, compare as compare_index};
pub use self::memory::MemoryStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::classify;
#[cfg(feature = "mongodb")]
pub use self::mongo::{MongoStore, ServerInfo};
pub use self::query::{Filter, Order, Query};
pub use self::ttl::WallClock;
pub use self::update::Update;
pub use self::validate::check_field_name;
pub use crate::config::{Backend, MONGODB_MAX_DOCUMENT_BYTES, MongoConfig, StoreConfig};
#[cfg(feature = "fault")]
pub use crate::fault::{FaultPlan, FaultyStore};
pub use crate::uri::{MongoUri, UriError};
/// The one index description, shared with the document types (stratum-core).
pub use stratum_core::{IndexDirection, IndexSpec};

/// The BSON crate the stores speak (the same one the driver re-exports as
/// `mongodb::bson`).
pub use bson;

/// Document storage by collection: the contract every store fulfils.
///
/// Ids are any BSON value but an array, a regex or undefined; `insert`
/// generates an `ObjectId` when the document has no `_id`. Numbers compare
/// across types (`1`, `1i64` and `1.0` are the same id).
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use stratum_store::{Filter, MemoryStore, Query, Store, Update};
/// use stratum_store::bson::doc;
///
/// let store = MemoryStore::new();
/// let id = store.insert("notes", doc! { "text": "hi", "n": 1 }).await?;
/// let updated = store.update("notes", &id, &Update::new().inc("n", 1)).await?;
/// assert_eq!(updated.get_i32("n")?, 2);
/// assert_eq!(store.count("notes", &Filter::eq("text", "hi")).await?, 1);
/// let found = store.find("notes", &Query::new(Filter::all()).limit(10)).await?;
/// assert_eq!(found.len(), 1);
/// assert!(store.delete("notes", &id).await?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Store: Send + Sync {
    /// The document with this `_id`, if any.
    async fn get(&self, collection: &str, id: &Bson) -> Result<Option<Document>, StoreError>;

    /// The documents `query` selects, sorted and limited.
    async fn find(&self, collection: &str, query: &Query) -> Result<Vec<Document>, StoreError>;

    /// Stores a new document and returns its `_id`; fails with
    /// [`StoreError::DuplicateKey`] when the id or a unique key is taken.
    async fn insert(&self, collection: &str, document: Document) -> Result<Bson, StoreError>;

    /// Applies `update` to the document with this `_id` and returns it as it
    /// is afterwards; [`StoreError::NotFound`] when there is none.
    async fn update(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError>;

    /// Like [`update`](Store::update), but when no document has this `_id`,
    /// creates `{_id: id}` and applies `update` to it. Returns the document
    /// as it is afterwards.
    async fn upsert(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError>;

    /// Removes the document with this `_id`; `false` when there was none.
    async fn delete(&self, collection: &str, id: &Bson) -> Result<bool, StoreError>;

    /// How many documents `filter` matches.
    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError>;

    /// Declares an index with its name, uniqueness and TTL; declaring the
    /// same index again is a no-op. An index of that name, or over those
    /// keys, that exists with another definition is refused with
    /// [`StoreError::Validation`] (as MongoDB refuses it), never made a
    /// second index; a unique index over data that already repeats a key
    /// fails with [`StoreError::DuplicateKey`].
    async fn ensure_index(&self, collection: &str, index: &IndexSpec) -> Result<(), StoreError>;

    /// The indexes the collection has, `_id_` included, as [`IndexSpec`]s
    /// (none when the collection does not exist). An index an `IndexSpec`
    /// cannot describe (text, geo, hashed keys) is left out. The default
    /// refuses: a store that cannot list its indexes says so.
    async fn indexes(&self, collection: &str) -> Result<Vec<IndexSpec>, StoreError> {
        let _ = collection;
        Err(StoreError::validation(format!(
            "the `{}` store cannot list its indexes",
            self.backend()
        )))
    }

    /// The documents `grouping`'s filter selects, grouped by its keys,
    /// each group counted and its fields summed, sorted by key (see
    /// [`Grouping`]). The default refuses: a store that cannot group says so.
    async fn group(
        &self,
        collection: &str,
        grouping: &Grouping,
    ) -> Result<Vec<GroupRow>, StoreError> {
        let _ = (collection, grouping);
        Err(StoreError::validation(format!(
            "the `{}` store cannot group documents",
            self.backend()
        )))
    }

    /// Checks the store answers (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// [`get`](Store::get), as encoded BSON: for a caller that decodes into
    /// its own type, so the bytes are decoded once. The default encodes what
    /// `get` returns; `MongoStore` hands over the bytes the server sent.
    async fn get_raw(
        &self,
        collection: &str,
        id: &Bson,
    ) -> Result<Option<RawDocumentBuf>, StoreError> {
        match self.get(collection, id).await? {
            Some(doc) => RawDocumentBuf::from_document(&doc).map(Some).map_err(|e| {
                StoreError::validation(format!("the document cannot be encoded: {e}"))
            }),
            None => Ok(None),
        }
    }

    /// [`insert`](Store::insert) of an encoded document, under the same rules
    /// (field names, `_id`, size): for a caller that encoded its own type.
    /// The default decodes it and calls `insert`; `MongoStore` checks the
    /// bytes in place and sends them.
    async fn insert_raw(
        &self,
        collection: &str,
        document: RawDocumentBuf,
    ) -> Result<Bson, StoreError> {
        let document = document
            .to_document()
            .map_err(|e| StoreError::validation(format!("the document is not valid BSON: {e}")))?;
        self.insert(collection, document).await
    }

    /// A short, fixed name for the kind of store (`memory`, `mongodb`), fit
    /// for a metric label.
    fn backend(&self) -> &'static str {
        "custom"
    }
}

/// A shared store is a store: `Arc<MemoryStore>`, `Arc<dyn Store>`.
#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    async fn get(&self, collection: &str, id: &Bson) -> Result<Option<Document>, StoreError> {
        (**self).get(collection, id).await
    }

    async fn find(&self, collection: &str, query: &Query) -> Result<Vec<Document>, StoreError> {
        (**self).find(collection, query).await
    }

    async fn insert(&self, collection: &str, document: Document) -> Result<Bson, StoreError> {
        (**self).insert(collection, document).await
    }

    async fn update(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError> {
        (**self).update(collection, id, update).await
    }

    async fn upsert(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError> {
        (**self).upsert(collection, id, update).await
    }

    async fn delete(&self, collection: &str, id: &Bson) -> Result<bool, StoreError> {
        (**self).delete(collection, id).await
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        (**self).count(collection, filter).await
    }

    async fn ensure_index(&self, collection: &str, index: &IndexSpec) -> Result<(), StoreError> {
        (**self).ensure_index(collection, index).await
    }

    async fn indexes(&self, collection: &str) -> Result<Vec<IndexSpec>, StoreError> {
        (**self).indexes(collection).await
    }

    async fn group(
        &self,
        collection: &str,
        grouping: &Grouping,
    ) -> Result<Vec<GroupRow>, StoreError> {
        (**self).group(collection, grouping).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        (**self).ping().await
    }

    async fn get_raw(
        &self,
        collection: &str,
        id: &Bson,
    ) -> Result<Option<RawDocumentBuf>, StoreError> {
        (**self).get_raw(collection, id).await
    }

    async fn insert_raw(
        &self,
        collection: &str,
        document: RawDocumentBuf,
    ) -> Result<Bson, StoreError> {
        (**self).insert_raw(collection, document).await
    }

    fn backend(&self) -> &'static str {
        (**self).backend()
    }
}

/// The store a configuration selects: `MongoStore` when `mongodb.uri` is set
/// (or `store.backend = "mongodb"`), the embedded [`MemoryStore`] otherwise.
///
/// The MongoDB client connects lazily; call [`Store::ping`] to check it.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use stratum_store::{MongoConfig, Store, StoreConfig, open};
///
/// let store = open(&MongoConfig::default(), &StoreConfig::default()).await?;
/// assert_eq!(store.backend(), "memory"); // no URI: the embedded store
/// store.ping().await?;
/// # Ok::<(), stratum_store::StoreError>(())
/// # }).unwrap();
/// ```
pub async fn open(
    mongodb: &MongoConfig,
    store: &StoreConfig,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if !store.uses_mongodb(mongodb) {
        return Ok(std::sync::Arc::new(MemoryStore::from_config(store)));
    }
    #[cfg(feature = "mongodb")]
    {
        let store = MongoStore::connect(mongodb, store).await?;
        Ok(std::sync::Arc::new(store))
    }
    #[cfg(not(feature = "mongodb"))]
    {
        Err(StoreError::validation(
            "the configuration selects MongoDB, but stratum-store was built without its `mongodb` feature",
        ))
    }
}

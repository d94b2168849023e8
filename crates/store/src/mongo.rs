//! `MongoStore`: the [`Store`] contract on the official MongoDB driver.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bson::{Bson, Document, RawDocumentBuf, doc};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use parking_lot::RwLock;

use super::deadline::Deadlines;
use super::memory::with_id_first;
use super::raw::check_raw_document;
use super::validate::{check_collection_name, check_id, check_index, encode_checked, growth_guard};
use super::{
    Filter, GroupRow, Grouping, IndexDirection, IndexSpec, Query, Store, StoreError, Update,
};
use crate::MongoUri;
use crate::config::{MONGODB_MAX_DOCUMENT_BYTES, MongoConfig, StoreConfig};
use stratum_core::label_enum;
use stratum_core::metrics::OperationMetrics;

/// Documents in a MongoDB database, through the official driver.
///
/// Every request is validated by the same code as [`MemoryStore`](super::MemoryStore)'s
/// before it is sent; every operation has a deadline
/// (`mongodb.operation_timeout`) and fails with [`StoreError::Timeout`] when
/// it has not finished by then (checked in sixteenths of the timeout by one
/// task per store, so the error comes between 15/16 of the timeout and the
/// timeout). Driver errors are classified into [`StoreError`] with credentials
/// masked in every message.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use stratum_store::{MongoConfig, MongoStore, Store, StoreConfig};
///
/// let mongodb = MongoConfig { uri: Some("mongodb://127.0.0.1:27017".parse()?), ..MongoConfig::default() };
/// let store = MongoStore::connect(&mongodb, &StoreConfig::default()).await?;
/// store.ping().await?;
/// println!("{:?}", store.server_info().await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MongoStore {
    db: Database,
    /// The URI, for its password in the error scrubber (`follow.rs` too).
    pub(crate) uri: Option<MongoUri>,
    max_document_bytes: usize,
    /// Collection handles by name (see `raw_collection`).
    handles: Handles,
    /// Metric handles, one set per operation (see `StoreOp`).
    metrics: Arc<OperationMetrics<{ StoreOp::ALL.len() }>>,
    /// The per-call deadline, `mongodb.operation_timeout` (see `deadline.rs`).
    deadlines: Arc<Deadlines>,
}

label_enum! {
    /// The operations a `MongoStore` reports.
    enum StoreOp {
        Get => "get",
        Find => "find",
        Insert => "insert",
        Update => "update",
        Upsert => "upsert",
        Delete => "delete",
        Count => "count",
        Group => "group",
        EnsureIndex => "ensure_index",
        ListIndexes => "list_indexes",
        Ping => "ping",
        Hello => "hello",
        BuildInfo => "build_info",
    }
}

/// `stratum_store_operations_total` and `..._duration_seconds` handles.
fn store_metrics() -> Arc<OperationMetrics<{ StoreOp::ALL.len() }>> {
    Arc::new(OperationMetrics::new(
        "stratum_store_operations_total",
        "stratum_store_operation_duration_seconds",
        ("backend", "mongodb"),
        StoreOp::ALL.map(StoreOp::as_str),
    ))
}

/// Collection handles by name; `Debug` shows only how many.
#[derive(Clone, Default)]
struct Handles(Arc<RwLock<HashMap<Box<str>, Collection<RawDocumentBuf>>>>);

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} collection handles", self.0.read().len())
    }
}

/// How many collection handles a store keeps before starting over.
const MAX_HANDLES: usize = 256;

/// What `hello` and `buildInfo` tell about the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The version the server reports (`8.2.0`, say).
    pub version: String,
    /// `standalone`, `replica set <name>` or `sharded (mongos)`.
    pub topology: String,
    /// The highest wire protocol version the server speaks.
    pub max_wire_version: i32,
}

impl MongoStore {
    /// A client for `config.uri` with the configured timeouts. The driver
    /// connects lazily: call [`ping`](Store::ping) to check the server answers.
    pub async fn connect(
        config: &MongoConfig,
        store: &StoreConfig,
    ) -> Result<MongoStore, StoreError> {
        let options = MongoStore::client_options(config).await?;
        let client = Client::with_options(options).map_err(|e| classify(e, config.uri.as_ref()))?;
        Ok(MongoStore::from_client(client, config, store))
    }

    /// The driver options `config` describes (URI, application name,
    /// timeouts), for a caller that builds its own client (a pool that sizes
    /// the driver's connection pool, say).
    pub async fn client_options(config: &MongoConfig) -> Result<ClientOptions, StoreError> {
        let uri = config
            .uri
            .as_ref()
            .ok_or_else(|| StoreError::validation("`mongodb.uri` is not set"))?;
        let mut options = ClientOptions::parse(uri.expose_secret())
            .await
            .map_err(|e| classify(e, Some(uri)))?;
        options.app_name = Some(config.app_name.clone());
        options.connect_timeout = Some(config.connect_timeout);
        options.server_selection_timeout = Some(config.server_selection_timeout);
        Ok(options)
    }

    /// A store over a client built from [`client_options`](Self::client_options),
    /// with the configured database, deadline and document limit (and the
    /// URI's password known to the error scrubber).
    pub fn from_client(client: Client, config: &MongoConfig, store: &StoreConfig) -> MongoStore {
        MongoStore {
            db: client.database(&config.database),
            uri: config.uri.clone(),
            deadlines: Arc::new(Deadlines::new(config.operation_timeout)),
            max_document_bytes: store.max_document_bytes,
            handles: Handles::default(),
            metrics: store_metrics(),
        }
    }

    /// A store over a database handle the caller already has, with the
    /// default deadline (5 s) and document limit (16 MiB).
    pub fn new(db: Database) -> MongoStore {
        MongoStore {
            db,
            uri: None,
            deadlines: Arc::new(Deadlines::new(MongoConfig::default().operation_timeout)),
            max_document_bytes: MONGODB_MAX_DOCUMENT_BYTES,
            handles: Handles::default(),
            metrics: store_metrics(),
        }
    }

    /// Changes the deadline of each operation.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> MongoStore {
        self.deadlines = Arc::new(Deadlines::new(timeout));
        self
    }

    /// Changes the largest document accepted.
    pub fn with_max_document_bytes(mut self, bytes: usize) -> MongoStore {
        self.max_document_bytes = bytes;
        self
    }

    /// The database handle.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The driver's client.
    pub fn client(&self) -> &Client {
        self.db.client()
    }

    /// The server's version and topology, from `hello` and `buildInfo`.
    pub async fn server_info(&self) -> Result<ServerInfo, StoreError> {
        let hello = self
            .run(StoreOp::Hello, self.db.run_command(doc! { "hello": 1 }))
            .await?;
        let build = self
            .run(
                StoreOp::BuildInfo,
                self.db.run_command(doc! { "buildInfo": 1 }),
            )
            .await?;
        let topology = if hello.get_str("msg") == Ok("isdbgrid") {
            "sharded (mongos)".to_owned()
        } else if let Ok(set) = hello.get_str("setName") {
            format!("replica set {set}")
        } else {
            "standalone".to_owned()
        };
        Ok(ServerInfo {
            version: build.get_str("version").unwrap_or("unknown").to_owned(),
            topology,
            max_wire_version: hello.get_i32("maxWireVersion").unwrap_or(0),
        })
    }

    fn collection(&self, name: &str) -> Result<Collection<Document>, StoreError> {
        Ok(self.raw_collection(name)?.clone_with_type())
    }

    /// The handle of a collection, made (and its name checked) once: a
    /// driver handle allocates its namespace and clones the database's
    /// options, which is a visible share of a fast round trip.
    fn raw_collection(&self, name: &str) -> Result<Collection<RawDocumentBuf>, StoreError> {
        if let Some(coll) = self.handles.0.read().get(name) {
            return Ok(coll.clone());
        }
        check_collection_name(name)?;
        let coll = self.db.collection::<RawDocumentBuf>(name);
        let mut handles = self.handles.0.write();
        // Names are few (one per document type), but a program that makes
        // up names must not grow this without bound.
        if handles.len() >= MAX_HANDLES {
            handles.clear();
        }
        handles.insert(name.into(), coll.clone());
        Ok(coll)
    }

    /// Runs one driver call under the operation deadline, classifies its
    /// error and reports it (see "Metrics" in `docs/stratum.md`).
    async fn run<T>(
        &self,
        operation: StoreOp,
        call: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let call = self.deadlines.bound(call.into_future());
        let result = match call.await {
            Some(result) => result.map_err(|e| classify(e, self.uri.as_ref())),
            None => Err(StoreError::Timeout {
                message: format!(
                    "no answer within {}",
                    humantime::format_duration(self.deadlines.timeout())
                ),
            }),
        };
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(operation = operation.as_str(), kind = e.kind(), error = %e, "mongodb operation failed");
                Err(e.kind())
            }
        };
        self.metrics
            .finished(operation as usize, started.elapsed(), outcome);
        result
    }

    async fn find_and_update(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
        upsert: bool,
    ) -> Result<Option<Document>, StoreError> {
        check_id(id)?;
        let update = update.to_document()?;
        // An update larger than the document limit can only produce a
        // document over it: refuse it here, as the memory store would.
        let guard = growth_guard(&update, self.max_document_bytes)?;
        let coll = self.collection(collection)?;
        if let Some(guard) = guard {
            // A limit below the server's own: update only a document that
            // stays within it (the server refuses `$expr` in an upsert).
            let mut filter = doc! { "_id": id.clone() };
            filter.extend(guard);
            let call = coll
                .find_one_and_update(filter, update.clone())
                .return_document(ReturnDocument::After);
            if let Some(updated) = self.run(StoreOp::Update, call).await? {
                return Ok(Some(updated));
            }
            let exists = coll.count_documents(doc! { "_id": id.clone() });
            if self.run(StoreOp::Count, exists).await? > 0 {
                return Err(StoreError::validation(format!(
                    "the update could grow the document over the limit of {} bytes",
                    self.max_document_bytes
                )));
            }
            if !upsert {
                return Ok(None);
            }
            // Absent: an upsert builds it from the update alone, checked above.
        }
        // `id` passed `check_id`: no operator keys, so it matches as a value.
        let call = coll
            .find_one_and_update(doc! { "_id": id.clone() }, update)
            .upsert(upsert)
            .return_document(ReturnDocument::After);
        self.run(
            if upsert {
                StoreOp::Upsert
            } else {
                StoreOp::Update
            },
            call,
        )
        .await
        .map_err(|e| with_collection(e, collection))
    }
}

impl MongoStore {
    /// Sends an insert of bytes that passed the document rules.
    async fn send_insert(&self, collection: &str, raw: RawDocumentBuf) -> Result<Bson, StoreError> {
        let coll = self.raw_collection(collection)?;
        let result = self
            .run(StoreOp::Insert, coll.insert_one(raw))
            .await
            .map_err(|e| with_collection(e, collection))?;
        Ok(result.inserted_id)
    }
}

/// Fills in the collection name of a duplicate-key error.
fn with_collection(error: StoreError, collection: &str) -> StoreError {
    match error {
        StoreError::DuplicateKey { message, .. } => StoreError::DuplicateKey {
            collection: collection.to_owned(),
            message,
        },
        other => other,
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn get(&self, collection: &str, id: &Bson) -> Result<Option<Document>, StoreError> {
        check_id(id)?;
        let coll = self.collection(collection)?;
        self.run(StoreOp::Get, coll.find_one(doc! { "_id": id.clone() }))
            .await
    }

    async fn find(&self, collection: &str, query: &Query) -> Result<Vec<Document>, StoreError> {
        query.validate()?;
        let coll = self.collection(collection)?;
        if query.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut find = coll.find(query.filter.to_document()?);
        if !query.sort.is_empty() {
            find = find.sort(query.sort_document());
        }
        if query.skip > 0 {
            find = find.skip(query.skip);
        }
        if let Some(limit) = query.limit {
            find = find.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        self.run(StoreOp::Find, async move {
            find.await?.try_collect::<Vec<Document>>().await
        })
        .await
    }

    async fn insert(&self, collection: &str, document: Document) -> Result<Bson, StoreError> {
        let document = with_id_first(document);
        // Sent as the bytes the size check produced: encoded once, as the raw
        // driver would.
        let raw = encode_checked(&document, self.max_document_bytes)?;
        self.send_insert(collection, raw).await
    }

    async fn get_raw(
        &self,
        collection: &str,
        id: &Bson,
    ) -> Result<Option<RawDocumentBuf>, StoreError> {
        check_id(id)?;
        // The server's bytes as they arrived: the caller decodes them once.
        let coll = self.raw_collection(collection)?;
        self.run(StoreOp::Get, coll.find_one(doc! { "_id": id.clone() }))
            .await
    }

    async fn insert_raw(
        &self,
        collection: &str,
        document: RawDocumentBuf,
    ) -> Result<Bson, StoreError> {
        if check_raw_document(&document, self.max_document_bytes)? {
            return self.send_insert(collection, document).await;
        }
        // No `_id`, or not first: reorder as `insert` does (rare for typed
        // documents, whose id is their first field).
        let document = document
            .to_document()
            .map_err(|e| StoreError::validation(format!("the document is not valid BSON: {e}")))?;
        self.insert(collection, document).await
    }

    async fn update(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError> {
        self.find_and_update(collection, id, update, false)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                collection: collection.to_owned(),
            })
    }

    async fn upsert(
        &self,
        collection: &str,
        id: &Bson,
        update: &Update,
    ) -> Result<Document, StoreError> {
        self.find_and_update(collection, id, update, true)
            .await?
            .ok_or_else(|| StoreError::Backend {
                code: None,
                message: "the server returned no document for an upsert".into(),
            })
    }

    async fn delete(&self, collection: &str, id: &Bson) -> Result<bool, StoreError> {
        check_id(id)?;
        let coll = self.collection(collection)?;
        let result = self
            .run(StoreOp::Delete, coll.delete_one(doc! { "_id": id.clone() }))
            .await?;
        Ok(result.deleted_count > 0)
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        let filter = filter.to_document()?;
        let coll = self.collection(collection)?;
        self.run(StoreOp::Count, coll.count_documents(filter)).await
    }

    async fn group(
        &self,
        collection: &str,
        grouping: &Grouping,
    ) -> Result<Vec<GroupRow>, StoreError> {
        let pipeline = grouping.pipeline()?;
        let coll = self.collection(collection)?;
        let docs = self
            .run(StoreOp::Group, async move {
                coll.aggregate(pipeline)
                    .await?
                    .try_collect::<Vec<Document>>()
                    .await
            })
            .await?;
        docs.iter().map(|d| grouping.row_from_server(d)).collect()
    }

    async fn ensure_index(&self, collection: &str, index: &IndexSpec) -> Result<(), StoreError> {
        check_index(index)?;
        let coll = self.collection(collection)?;
        let keys: Document = index
            .keys
            .iter()
            .map(|(field, direction)| (field.to_string(), Bson::Int32(direction.as_i32())))
            .collect();
        // `unique: false` and no TTL are left out rather than sent, so the
        // server lists the index exactly as an unnamed one would be.
        let options = IndexOptions::builder()
            .name(index.name.to_string())
            .unique(index.unique.then_some(true))
            .expire_after(index.expire_after)
            .build();
        let model = IndexModel::builder().keys(keys).options(options).build();
        match self
            .run(StoreOp::EnsureIndex, coll.create_index(model))
            .await
        {
            Ok(_) => Ok(()),
            // The server refuses the same index under another name
            // (IndexOptionsConflict); it is there, so that is success. Any
            // other refusal stands.
            Err(e @ StoreError::Validation { .. }) => {
                let existing = self.indexes(collection).await?;
                if existing.iter().any(|i| i.same_index(index)) {
                    Ok(())
                } else {
                    Err(with_collection(e, collection))
                }
            }
            Err(e) => Err(with_collection(e, collection)),
        }
    }

    async fn indexes(&self, collection: &str) -> Result<Vec<IndexSpec>, StoreError> {
        let coll = self.collection(collection)?;
        let listed = self
            .run(StoreOp::ListIndexes, async move {
                coll.list_indexes()
                    .await?
                    .try_collect::<Vec<IndexModel>>()
                    .await
            })
            .await;
        match listed {
            Ok(models) => Ok(models.iter().filter_map(index_spec).collect()),
            // NamespaceNotFound: no collection, so no indexes.
            Err(StoreError::Backend { code: Some(26), .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(StoreOp::Ping, self.db.run_command(doc! { "ping": 1 }))
            .await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "mongodb"
    }
}

/// A listed index as an [`IndexSpec`]; `None` for one whose keys are not
/// all numeric directions (text, geo, hashed), which an `IndexSpec` cannot
/// describe. The server may write a direction as `1`, `1i64` or `1.0`.
fn index_spec(model: &IndexModel) -> Option<IndexSpec> {
    let mut keys = Vec::with_capacity(model.keys.len());
    for (field, direction) in &model.keys {
        let sign = match direction {
            Bson::Int32(n) => f64::from(*n),
            Bson::Int64(n) => *n as f64,
            Bson::Double(n) => *n,
            _ => return None,
        };
        let direction = if sign > 0.0 {
            IndexDirection::Ascending
        } else if sign < 0.0 {
            IndexDirection::Descending
        } else {
            return None;
        };
        keys.push((field.clone(), direction));
    }
    let mut spec = IndexSpec::new(keys);
    if let Some(options) = &model.options {
        if let Some(name) = &options.name {
            spec = spec.named(name.clone());
        }
        spec.unique = options.unique.unwrap_or(false);
        spec.expire_after = options.expire_after;
    }
    Some(spec)
}

/// Server error codes, by what they mean to a caller.
const DUPLICATE_KEY: &[i32] = &[11000, 11001, 12582];
const TIMEOUT: &[i32] = &[50, 89, 202, 262];
/// BadValue, FailedToParse, TypeMismatch, InvalidLength, ImmutableField,
/// DollarPrefixedFieldName, EmptyFieldName, DocumentValidationFailure,
/// IndexOptionsConflict, IndexKeySpecsConflict, CannotCreateIndex,
/// ConflictingUpdateOperators, BSONObjectTooLarge, and friends.
const VALIDATION: &[i32] = &[
    2, 9, 14, 16, 28, 40, 52, 55, 56, 66, 67, 85, 86, 121, 10334, 17419,
];
/// HostUnreachable, HostNotFound, ShutdownInProgress, SocketException,
/// InterruptedAtShutdown, NotPrimaryOrSecondary: the node is unreachable,
/// going away, or serves nothing (reads included), which is the breaker's
/// business. ShutdownInProgress (91) is here and not with the not-primary
/// codes although the driver retries it too: a node shutting down stops
/// answering reads as well, within seconds.
const UNAVAILABLE: &[i32] = &[6, 7, 91, 9001, 11600, 13436];
/// NotWritablePrimary, NotPrimaryNoSecondaryOk, PrimarySteppedDown,
/// InterruptedDueToReplStateChange: the node answered, and is not the
/// primary now (a step-down, an election); it may still serve reads.
const NOT_PRIMARY: &[i32] = &[10107, 13435, 189, 11602];
/// Unauthorized: the server answered, and refuses the operation to this user.
const NOT_AUTHORIZED: &[i32] = &[13];

/// Sorts a driver error into a [`StoreError`], masking credentials: the one
/// classification of MongoDB errors in the workspace.
pub fn classify(error: mongodb::error::Error, uri: Option<&MongoUri>) -> StoreError {
    // The server's own message when there is one: the driver's `Display`
    // appends the whole raw response.
    let (code, text) = match error.kind.as_ref() {
        ErrorKind::Command(e) => (Some(e.code), format!("{} ({})", e.message, e.code_name)),
        ErrorKind::Write(WriteFailure::WriteError(e)) => (Some(e.code), e.message.clone()),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => (Some(e.code), e.message.clone()),
        other => (None, other.to_string()),
    };
    let message = match uri {
        Some(uri) => uri.scrub(&text),
        None => crate::uri::scrub(&text),
    };
    if let Some(code) = code {
        return if DUPLICATE_KEY.contains(&code) {
            StoreError::DuplicateKey {
                collection: String::new(),
                message,
            }
        } else if TIMEOUT.contains(&code) {
            StoreError::Timeout { message }
        } else if VALIDATION.contains(&code) {
            StoreError::Validation { reason: message }
        } else if UNAVAILABLE.contains(&code) {
            StoreError::Unavailable { message }
        } else if NOT_PRIMARY.contains(&code) {
            StoreError::NotPrimary { code, message }
        } else if NOT_AUTHORIZED.contains(&code) {
            StoreError::NotAuthorized { code, message }
        } else {
            StoreError::Backend {
                code: Some(code),
                message,
            }
        };
    }
    match error.kind.as_ref() {
        ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            StoreError::Timeout { message }
        }
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
            StoreError::Network { message }
        }
        ErrorKind::ServerSelection { .. } | ErrorKind::DnsResolve { .. } => {
            StoreError::Unavailable { message }
        }
        ErrorKind::InvalidArgument { .. }
        | ErrorKind::BsonSerialization(_)
        | ErrorKind::BsonDeserialization(_) => StoreError::Validation { reason: message },
        _ => StoreError::Backend {
            code: None,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's command error with `code`, as the driver reports it.
    fn command_error(code: i32) -> mongodb::error::Error {
        let error: mongodb::error::CommandError = bson::from_document(doc! {
            "code": code,
            "codeName": "Named",
            "errmsg": "mongodb://admin:hunter2@db.example answered",
        })
        .expect("a command error decodes from its reply's fields");
        ErrorKind::Command(error).into()
    }

    #[test]
    fn server_codes_by_what_they_mean() {
        let kind = |code| classify(command_error(code), None).kind();
        // The node is not the primary (a step-down): answered, retryable,
        // not the breaker's business.
        for code in [10107, 13435, 189, 11602] {
            let error = classify(command_error(code), None);
            assert_eq!(error.kind(), "not_primary", "{code}");
            assert!(
                !error.is_breaker_failure() && error.is_retryable(),
                "{code}"
            );
            assert!(
                matches!(error, StoreError::NotPrimary { code: c, .. } if c == code),
                "{error:?}"
            );
        }
        // Going away or serving nothing: the breaker counts it.
        for code in [6, 7, 91, 9001, 11600, 13436] {
            assert_eq!(kind(code), "unavailable", "{code}");
        }
        // A user without the privilege: answered, final, not the breaker's.
        let error = classify(command_error(13), None);
        assert!(
            matches!(error, StoreError::NotAuthorized { code: 13, .. }),
            "{error:?}"
        );
        assert!(!error.is_breaker_failure() && !error.is_retryable() && !error.is_unavailable());
        assert_eq!(kind(11000), "duplicate_key");
        assert_eq!(kind(50), "timeout");
        assert_eq!(kind(2), "validation");
        assert_eq!(kind(8000), "backend");
    }

    #[test]
    fn a_not_primary_message_is_masked() {
        let error = classify(command_error(10107), None);
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}

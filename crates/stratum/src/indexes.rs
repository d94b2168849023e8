//! Whether the indexes the LLM document types declare exist on a store
//! (feature `mongodb`): what `stratum check` reports.
//!
//! The comparison (found by keys, differences in uniqueness or TTL named)
//! is the store's, [`stratum_store::check_indexes`]; this module only lists
//! the document types of `stratum_models`.

use stratum_models::{
    ContextSnapshot, Conversation, Document, Message, ResponseCacheEntry, UsageRecord,
};
pub use stratum_store::{IndexState, IndexStatus};

use crate::{MongoStore, Store, StoreError};

/// The indexes every document type of `stratum_models` declares, checked
/// against `store`.
///
/// ```no_run
/// # async fn demo(store: stratum::MongoStore) -> Result<(), stratum::StoreError> {
/// for status in stratum::indexes::check_declared(&store).await? {
///     println!("{status}");
/// }
/// # Ok(()) }
/// ```
pub async fn check_declared(store: &MongoStore) -> Result<Vec<IndexStatus>, StoreError> {
    let mut out = Vec::new();
    out.extend(check::<Conversation>(store).await?);
    out.extend(check::<Message>(store).await?);
    out.extend(check::<ContextSnapshot>(store).await?);
    out.extend(check::<ResponseCacheEntry>(store).await?);
    out.extend(check::<UsageRecord>(store).await?);
    Ok(out)
}

/// The indexes `T` declares, checked against `store`.
pub async fn check<T: Document>(store: &dyn Store) -> Result<Vec<IndexStatus>, StoreError> {
    stratum_store::check_indexes(store, T::COLLECTION, &T::indexes()).await
}

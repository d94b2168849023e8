//! The caches a stack built (repository caches, the prompt cache's memory
//! tier), each under a name unique within the handle: the `cache` label of
//! its series, so two caches never write over each other's figures.

use parking_lot::Mutex;
use stratum_cache::{CacheStats, ShardedCache};

type Stats = Box<dyn Fn() -> CacheStats + Send + Sync>;
type Publish = Box<dyn Fn() + Send + Sync>;

struct Registered {
    name: String,
    stats: Stats,
    publish: Publish,
}

/// Every cache of one stack, by name.
#[derive(Default)]
pub(crate) struct CacheRegistry {
    caches: Mutex<Vec<Registered>>,
}

impl std::fmt::Debug for CacheRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl CacheRegistry {
    /// `name`, or `name_2`, `name_3`, ... when it is taken, reserved under a
    /// held lock by `build`, which makes the cache under that name; the
    /// cache is registered when `build` returns one.
    pub(crate) fn register<K, V, E>(
        &self,
        name: &str,
        build: impl FnOnce(String) -> Result<Option<ShardedCache<K, V>>, E>,
    ) -> Result<Option<ShardedCache<K, V>>, E>
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let mut caches = self.caches.lock();
        let taken = |n: &str| caches.iter().any(|c| c.name == n);
        let unique = std::iter::once(name.to_owned())
            .chain((2..).map(|i| format!("{name}_{i}")))
            .find(|n| !taken(n))
            .unwrap_or_else(|| name.to_owned());
        let Some(cache) = build(unique.clone())? else {
            return Ok(None);
        };
        let (for_stats, for_publish) = (cache.clone(), cache.clone());
        caches.push(Registered {
            name: unique,
            stats: Box::new(move || for_stats.stats()),
            publish: Box::new(move || for_publish.publish_metrics()),
        });
        Ok(Some(cache))
    }

    /// The names in registration order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.caches.lock().iter().map(|c| c.name.clone()).collect()
    }

    /// Each cache's statistics now, by name, in registration order.
    pub(crate) fn stats(&self) -> Vec<(String, CacheStats)> {
        self.caches
            .lock()
            .iter()
            .map(|c| (c.name.clone(), (c.stats)()))
            .collect()
    }

    /// Sends every cache's statistics to the current `metrics` recorder.
    #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
    pub(crate) fn publish(&self) {
        for c in self.caches.lock().iter() {
            (c.publish)();
        }
    }
}

impl crate::Stratum {
    /// Every cache the stack built so far (one per repository used, the
    /// prompt cache's memory tier `llm_prompts`) with its statistics now, by
    /// the name its series carry on `/metrics` (`cache` label), in the order
    /// they were built. Two caches asking for one name get `name`,
    /// `name_2`, ...
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use stratum::models::Conversation;
    /// use stratum::{Stratum, StratumConfig};
    ///
    /// let stratum = Stratum::builder(StratumConfig::default()).build()?;
    /// let conversations = stratum.repository::<Conversation>()?;
    /// let c = Conversation::new("gpt-4o", stratum::bson::DateTime::now());
    /// conversations.insert(&c).await?;
    /// conversations.get(&c.id).await?; // miss, loaded
    /// conversations.get(&c.id).await?; // hit
    /// let stats = stratum.cache_stats();
    /// let (name, s) = &stats[0];
    /// assert_eq!((name.as_str(), s.hits, s.misses), ("conversations", 1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn cache_stats(&self) -> Vec<(String, CacheStats)> {
        self.layers.caches.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use stratum_cache::CacheBuilder;

    fn registry_names(requests: &[&str]) -> (CacheRegistry, Vec<String>) {
        let registry = CacheRegistry::default();
        let names = requests
            .iter()
            .map(|name| {
                let cache = registry
                    .register(name, |unique| {
                        CacheBuilder::<u8, u8>::new(4)
                            .name(unique)
                            .build()
                            .map(Some)
                    })
                    .unwrap()
                    .unwrap();
                cache.name().to_owned()
            })
            .collect();
        (registry, names)
    }

    proptest! {
        /// Whatever names are asked for, in any order: every cache gets a
        /// name no other cache of the stack has (so no two write one
        /// series), the name it asked for when that was free, else that
        /// name with the smallest free `_N` suffix; and the cache is built
        /// under the name it is registered with.
        #[test]
        fn names_are_unique_and_the_first_free_one(
            requests in proptest::collection::vec(
                prop_oneof![Just("a"), Just("a_2"), Just("b"), Just("a_2_2")],
                1..24,
            )
        ) {
            let (registry, names) = registry_names(&requests);
            let mut taken: Vec<String> = Vec::new();
            for (asked, got) in requests.iter().zip(&names) {
                prop_assert!(!taken.contains(got), "{got} given twice: {names:?}");
                let want = if taken.iter().any(|t| t == asked) {
                    (2..)
                        .map(|i| format!("{asked}_{i}"))
                        .find(|n| !taken.contains(n))
                        .unwrap()
                } else {
                    (*asked).to_owned()
                };
                prop_assert_eq!(got, &want);
                taken.push(got.clone());
            }
            prop_assert_eq!(registry.names(), names);
        }
    }

    /// A cache switched off (the builder returns none) takes no name.
    #[test]
    fn a_cache_not_built_reserves_nothing() {
        let registry = CacheRegistry::default();
        let none: Option<ShardedCache<u8, u8>> =
            registry.register("a", |_| Ok::<_, ()>(None)).unwrap();
        assert!(none.is_none());
        assert!(registry.names().is_empty());
        let (_, names) = registry_names(&["a"]);
        assert_eq!(names, ["a"]);
    }
}

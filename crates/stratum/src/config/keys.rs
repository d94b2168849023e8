//! Every configuration key, generated from the configuration types, and the
//! keys of earlier releases with their spelling now.
//!
//! The key list is the serialized default configuration walked to its
//! leaves, so a field added to any layer's configuration type is a key, an
//! environment variable and a line of `docs/configuration.md` without being
//! listed anywhere by hand.

use std::sync::OnceLock;

use super::StratumConfig;

/// One configuration value: its dotted path in the file and its variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The dotted path (`breaker.failure_rate_threshold`).
    pub path: String,
    /// The environment variable that sets it
    /// (`STRATUM_BREAKER_FAILURE_RATE_THRESHOLD`).
    pub env: String,
    /// The default, as serialized (JSON; `null` for an unset option).
    pub default: serde_json::Value,
}

/// A key of an earlier release and its spelling now (see the changelog in
/// `docs/configuration.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renamed {
    /// The old dotted path.
    pub from: &'static str,
    /// The dotted path now.
    pub to: &'static str,
}

/// Every renamed key; the old variables follow from the paths.
pub const RENAMED: &[Renamed] = &[
    Renamed {
        from: "cache.max_entries",
        to: "cache.max_capacity",
    },
    Renamed {
        from: "cache.ttl",
        to: "cache.time_to_live",
    },
    Renamed {
        from: "cache.stale_for",
        to: "cache.max_stale",
    },
    Renamed {
        from: "breaker.slow_call_duration",
        to: "breaker.slow_call_duration_threshold",
    },
    Renamed {
        from: "breaker.window_size",
        to: "breaker.sliding_window",
    },
    Renamed {
        from: "breaker.minimum_calls",
        to: "breaker.minimum_number_of_calls",
    },
    Renamed {
        from: "breaker.open_wait",
        to: "breaker.wait_in_open",
    },
    Renamed {
        from: "breaker.half_open_calls",
        to: "breaker.permitted_calls_in_half_open",
    },
    Renamed {
        from: "pool.min_idle",
        to: "pool.min_size",
    },
];

/// The variable of a dotted path: `STRATUM_` and the path upper-cased, dots
/// and underscores alike as `_`.
///
/// ```
/// assert_eq!(stratum::config::env_name("pool.adaptive.enabled"), "STRATUM_POOL_ADAPTIVE_ENABLED");
/// ```
pub fn env_name(path: &str) -> String {
    format!("STRATUM_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// Every key of this build's configuration, in file order.
///
/// A table holding a `type` key is one value (a choice among variants, such
/// as `breaker.sliding_window = { type = "time_based", duration = "30s" }`):
/// its fields depend on the variant, so it is set whole. A section whose
/// layer is compiled out has only its `enabled` key here.
pub fn keys() -> &'static [Key] {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = Vec::new();
        // Serializing plain data with string keys cannot fail.
        #[allow(clippy::expect_used)]
        let defaults =
            serde_json::to_value(StratumConfig::default()).expect("the default serializes");
        walk("", &defaults, &mut keys);
        keys
    })
}

fn walk(prefix: &str, value: &serde_json::Value, keys: &mut Vec<Key>) {
    match value {
        serde_json::Value::Object(map) if prefix.is_empty() || !map.contains_key("type") => {
            for (name, value) in map {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                walk(&path, value, keys);
            }
        }
        leaf => keys.push(Key {
            env: env_name(prefix),
            path: prefix.to_owned(),
            default: leaf.clone(),
        }),
    }
}

/// The key at this path.
#[cfg(test)]
pub(crate) fn key(path: &str) -> Option<&'static Key> {
    keys().iter().find(|k| k.path == path)
}

/// The renaming of an old dotted path.
pub(crate) fn renamed(path: &str) -> Option<&'static Renamed> {
    RENAMED.iter().find(|r| r.from == path)
}

/// The closest valid spelling of `wrong` among `candidates` (an old
/// spelling counts as its new one), when one is close enough to be a typo.
pub(crate) fn closest<'a>(
    wrong: &str,
    candidates: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let wrong = wrong.to_ascii_lowercase();
    let (distance, best) = candidates
        .map(|(spelling, meant)| (edit_distance(&wrong, &spelling.to_ascii_lowercase()), meant))
        .min_by_key(|(d, _)| *d)?;
    // A third of the name may be wrong: `ttll` finds `ttl`, `nosuch` nothing.
    (distance <= (wrong.len() / 3).max(1)).then(|| best.to_owned())
}

/// Dotted-path candidates for [`closest`]: every key and table, and the
/// renamed ones.
pub(crate) fn path_candidates() -> impl Iterator<Item = (&'static str, &'static str)> {
    let tables = keys().iter().flat_map(|k| {
        k.path
            .match_indices('.')
            .map(|(i, _)| (&k.path[..i], &k.path[..i]))
    });
    keys()
        .iter()
        .map(|k| (k.path.as_str(), k.path.as_str()))
        .chain(tables)
        .chain(RENAMED.iter().map(|r| (r.from, r.to)))
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("ttl", "ttl"), 0);
        assert_eq!(edit_distance("ttll", "ttl"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn closest_finds_typos_only() {
        let c = [
            ("cache.ttl", "cache.time_to_live"),
            ("cache.name", "cache.name"),
        ];
        assert_eq!(
            closest("cache.ttll", c.into_iter()).as_deref(),
            Some("cache.time_to_live")
        );
        assert_eq!(closest("breaker.anything_else", c.into_iter()), None);
    }

    #[test]
    fn every_variable_is_distinct_and_no_old_key_is_a_key() {
        let mut names: Vec<&str> = keys().iter().map(|k| k.env.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "two keys share a variable");
        for r in RENAMED {
            assert!(key(r.from).is_none(), "{} is both old and current", r.from);
        }
    }
}

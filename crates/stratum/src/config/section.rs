//! [`Section`]: a layer's own configuration type plus the switch that leaves
//! the layer out, read and written as one flat TOML table.
//!
//! `[breaker]` holds `enabled` next to every field of
//! `stratum_breaker::BreakerConfig`, so each knob has the one name the layer
//! gives it. serde's `flatten` cannot do this (it drops
//! `deny_unknown_fields` and the parser's positions), so the deserializer
//! below hands the layer's own `Deserialize` the table with `enabled` taken
//! out on the fly: unknown keys, wrong types and their line numbers are
//! reported exactly as for the layer's type alone.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The key of the switch in every layer section.
pub const ENABLED: &str = "enabled";

/// One layer's section: whether the layer is used, and its own
/// configuration type.
///
/// It dereferences to the layer's type, so code spells a knob as the file
/// does: `config.breaker.failure_rate_threshold` is `failure_rate_threshold`
/// under `[breaker]` and `STRATUM_BREAKER_FAILURE_RATE_THRESHOLD`.
///
/// ```
/// # #[cfg(feature = "breaker")] {
/// let config = stratum::StratumConfig::from_toml_str(
///     "[breaker]\nenabled = false\nfailure_rate_threshold = 25.0\n",
/// )
/// .unwrap();
/// assert!(!config.breaker.enabled);
/// assert_eq!(config.breaker.failure_rate_threshold, 25.0); // the layer's own field
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Section<T> {
    /// Whether the layer is used. Default `true`. `false` leaves it out: its
    /// settings are still parsed and validated, so switching it back on
    /// cannot surface an old mistake.
    pub enabled: bool,
    /// The layer's own configuration.
    pub settings: T,
}

impl<T: Default> Default for Section<T> {
    fn default() -> Self {
        Section::on(T::default())
    }
}

impl<T> Section<T> {
    /// An enabled section with these settings.
    pub fn on(settings: T) -> Section<T> {
        Section {
            enabled: true,
            settings,
        }
    }
}

// A section is its settings plus one switch; dereferencing lets code name a
// knob by the same path as the file and the environment.
impl<T> Deref for Section<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.settings
    }
}

impl<T> DerefMut for Section<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.settings
    }
}

impl<T: Serialize> Serialize for Section<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Serializing has no unknown keys to refuse, so flatten is fine here.
        #[derive(Serialize)]
        struct Flat<'a, T> {
            enabled: bool,
            #[serde(flatten)]
            settings: &'a T,
        }
        Flat {
            enabled: self.enabled,
            settings: &self.settings,
        }
        .serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Section<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let enabled = Cell::new(None);
        let settings = T::deserialize(WithoutSwitch {
            inner: deserializer,
            enabled: &enabled,
        })?;
        Ok(Section {
            enabled: enabled.get().unwrap_or(true),
            settings,
        })
    }
}

/// Deserializes the layer's type from a table, keeping `enabled` aside.
struct WithoutSwitch<'a, D> {
    inner: D,
    enabled: &'a Cell<Option<bool>>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithoutSwitch<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            SwitchVisitor {
                visitor,
                enabled: self.enabled,
            },
        )
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(SwitchVisitor {
            visitor,
            enabled: self.enabled,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct enum identifier ignored_any
    }
}

struct SwitchVisitor<'a, V> {
    visitor: V,
    enabled: &'a Cell<Option<bool>>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SwitchVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(SwitchMap {
            map,
            enabled: self.enabled,
        })
    }
}

struct SwitchMap<'a, A> {
    map: A,
    enabled: &'a Cell<Option<bool>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SwitchMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = seed;
        loop {
            match self.map.next_key_seed(KeySeed(seed))? {
                None => return Ok(None),
                Some(Key::Other(key)) => return Ok(Some(key)),
                Some(Key::Enabled(unused)) => {
                    self.enabled.set(Some(self.map.next_value()?));
                    seed = unused;
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A key: the switch (handing the layer's seed back unused), or one of the
/// layer's keys as the layer's seed read it.
enum Key<K, V> {
    Enabled(K),
    Other(V),
}

/// Reads a key through the parser's own key deserializer, so an unknown key
/// is reported at its position.
struct KeySeed<K>(K);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<K> {
    type Value = Key<K, K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor(self.0, PhantomData))
    }
}

struct KeyVisitor<'de, K>(K, PhantomData<&'de ()>);

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KeyVisitor<'de, K> {
    type Value = Key<K, K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if key == ENABLED {
            return Ok(Key::Enabled(self.0));
        }
        let key: de::value::StrDeserializer<'_, E> = key.into_deserializer();
        self.0.deserialize(key).map(Key::Other)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Knobs {
        size: u32,
        #[serde(with = "humantime_serde")]
        wait: Duration,
    }

    #[test]
    fn the_switch_sits_beside_the_layers_own_keys() {
        let s: Section<Knobs> = toml::from_str("size = 3\nenabled = false\nwait = \"2s\"").unwrap();
        assert_eq!(
            s,
            Section {
                enabled: false,
                settings: Knobs {
                    size: 3,
                    wait: Duration::from_secs(2)
                }
            }
        );
        let s: Section<Knobs> = toml::from_str("size = 3").unwrap();
        assert!(s.enabled, "enabled unless switched off");
        let text = toml::to_string(&s).unwrap();
        assert_eq!(
            toml::from_str::<Section<Knobs>>(&text).unwrap(),
            s,
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_keep_their_position() {
        let err = toml::from_str::<Section<Knobs>>("enabled = true\nsise = 3").unwrap_err();
        assert!(err.message().contains("unknown field `sise`"), "{err}");
        let at = err.span().unwrap().start;
        assert_eq!(&"enabled = true\nsise = 3"[at..at + 4], "sise");
        let err = toml::from_str::<Section<Knobs>>("enabled = \"yes\"").unwrap_err();
        assert!(err.span().is_some(), "{err}");
        assert!(toml::from_str::<Section<Knobs>>("wait = \"soon\"").is_err());
    }

    #[test]
    fn an_opaque_table_takes_any_keys() {
        let s: Section<toml::Table> = toml::from_str("enabled = false\nanything = 1").unwrap();
        assert!(!s.enabled);
        assert_eq!(s.settings.len(), 1);
    }
}

//! Serde for an optional duration that a TOML file can switch off: a
//! humantime string (`"30s"`, `"5m"`) is `Some`, `"off"` is `None`.
//!
//! TOML has no null, so a field whose default is `Some` could otherwise never
//! be turned off from a file or the environment: leaving it out gives the
//! default back. Every layer's `Option<Duration>` knob uses this module, so
//! one spelling (`"off"`) works for all of them, and a configuration
//! serialized to TOML reads back equal.
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Knobs {
//!     #[serde(with = "stratum_core::optional_duration")]
//!     idle_timeout: Option<Duration>,
//! }
//!
//! let on: Knobs = serde_json::from_str(r#"{ "idle_timeout": "10m" }"#).unwrap();
//! assert_eq!(on.idle_timeout, Some(Duration::from_secs(600)));
//! let off: Knobs = serde_json::from_str(r#"{ "idle_timeout": "off" }"#).unwrap();
//! assert_eq!(off.idle_timeout, None);
//! assert_eq!(serde_json::to_string(&off).unwrap(), r#"{"idle_timeout":"off"}"#);
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// The spelling of `None`.
pub const OFF: &str = "off";

/// Writes `Some(d)` as a humantime string, `None` as `"off"`.
pub fn serialize<S: Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.collect_str(&humantime::format_duration(*d)),
        None => serializer.serialize_str(OFF),
    }
}

/// Reads a humantime string as `Some`, `"off"` (or a null, where the format
/// has one) as `None`.
pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_option(OptionalDuration)
}

struct OptionalDuration;

impl<'de> Visitor<'de> for OptionalDuration {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration such as \"250ms\" or \"5m\", or \"{OFF}\"")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(OptionalDuration)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim() == OFF {
            return Ok(None);
        }
        humantime::parse_duration(v.trim()).map(Some).map_err(|e| {
            E::custom(format!(
                "not a duration such as \"250ms\" or \"5m\", nor \"{OFF}\": {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super")]
        d: Option<Duration>,
    }

    #[test]
    fn round_trips_some_and_none() {
        for d in [
            None,
            Some(Duration::from_millis(1500)),
            Some(Duration::from_secs(86_400)),
        ] {
            let text = serde_json::to_string(&T { d }).unwrap();
            assert_eq!(serde_json::from_str::<T>(&text).unwrap(), T { d }, "{text}");
        }
    }

    #[test]
    fn refuses_nonsense_naming_the_way_out() {
        let err = serde_json::from_str::<T>(r#"{ "d": "soon" }"#).unwrap_err();
        assert!(err.to_string().contains("\"off\""), "{err}");
        assert!(serde_json::from_str::<T>(r#"{ "d": 5 }"#).is_err());
    }
}

//! One shape for a refused configuration, shared by every crate.

use std::fmt;
use std::path::PathBuf;

/// A configuration that cannot be used: the field it is about and why.
///
/// Every crate's builder and validator returns this type, so a program that
/// configures several layers handles one error shape. The field is the dotted
/// path in the crate's own configuration (`failure_rate_threshold`,
/// `wait_in_open.initial`), or, once the wiring crate has placed the layer's
/// section in its file, the full path (`breaker.failure_rate_threshold`) or
/// the environment variable that set it. Messages never quote a connection
/// string's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    kind: ConfigErrorKind,
    location: Option<Location>,
}

/// Where in a configuration file an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file path, or `<toml>` for text given in code.
    pub source_name: String,
    /// 1-based line of the offending text (0 when unknown).
    pub line: usize,
    /// 1-based column of the offending text (0 when unknown).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source_name, self.line, self.column)
    }
}

/// What is wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A value is out of range or malformed.
    Invalid {
        /// What is wrong, and what would be right.
        reason: String,
    },
    /// A key or environment variable that names no field.
    Unknown {
        /// The closest valid spelling, when one is close.
        suggestion: Option<String>,
    },
    /// A key or environment variable of an earlier release, renamed since.
    Renamed {
        /// Its spelling now.
        to: String,
    },
    /// The configuration file could not be read (the field is empty).
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The TOML text is malformed or a value does not fit its type (a
    /// nonsense duration, a string where a number belongs). The field is the
    /// dotted path of the value that does not fit, or empty for a syntax
    /// error, which belongs to no field; [`ConfigError::location`] says where.
    Parse {
        /// The parser's message, with any credentials masked.
        message: String,
    },
}

impl ConfigError {
    /// An error of `kind` about `field`.
    pub fn new(field: impl Into<String>, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            field: field.into(),
            kind,
            location: None,
        }
    }

    /// The same error, found at `location` in a file.
    #[must_use]
    pub fn at(mut self, location: Location) -> ConfigError {
        self.location = Some(location);
        self
    }

    /// Where in a file the error was found, when it came from one.
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    /// A value refused by validation.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(
            field,
            ConfigErrorKind::Invalid {
                reason: reason.into(),
            },
        )
    }

    /// The dotted path of the field (or the variable) this error is about;
    /// empty when it is about no one field (an unreadable file, a syntax
    /// error).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// The reason a value was refused, for [`ConfigErrorKind::Invalid`].
    pub fn reason(&self) -> Option<&str> {
        match &self.kind {
            ConfigErrorKind::Invalid { reason } => Some(reason),
            _ => None,
        }
    }

    /// The same error about `prefix.field`: how the wiring crate names a
    /// layer's field inside its own section.
    #[must_use]
    pub fn within(mut self, prefix: &str) -> ConfigError {
        if !prefix.is_empty() && !self.field.is_empty() {
            self.field = format!("{prefix}.{}", self.field);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        match &self.kind {
            ConfigErrorKind::Invalid { reason } => write!(f, "invalid `{field}`: {reason}"),
            ConfigErrorKind::Unknown { suggestion: None } => write!(f, "unknown `{field}`"),
            ConfigErrorKind::Unknown {
                suggestion: Some(s),
            } => write!(f, "unknown `{field}`; did you mean `{s}`?"),
            ConfigErrorKind::Renamed { to } => {
                write!(f, "`{field}` was renamed: it is `{to}` now")
            }
            ConfigErrorKind::Read { path, reason } => write!(
                f,
                "cannot read the configuration file {}: {reason}",
                path.display()
            ),
            ConfigErrorKind::Parse { message } => {
                if !field.is_empty() {
                    write!(f, "`{field}`: ")?;
                }
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_prefixes_the_field_and_keeps_the_kind() {
        let err =
            ConfigError::invalid("wait_in_open.initial", "must be positive").within("breaker");
        assert_eq!(err.field(), "breaker.wait_in_open.initial");
        assert_eq!(err.reason(), Some("must be positive"));
        assert_eq!(
            err.to_string(),
            "invalid `breaker.wait_in_open.initial`: must be positive"
        );
    }

    #[test]
    fn unknown_names_the_closest_spelling() {
        let err = ConfigError::new(
            "STRATUM_CACHE_TLL",
            ConfigErrorKind::Unknown {
                suggestion: Some("STRATUM_CACHE_TTL".into()),
            },
        );
        assert_eq!(
            err.to_string(),
            "unknown `STRATUM_CACHE_TLL`; did you mean `STRATUM_CACHE_TTL`?"
        );
    }

    #[test]
    fn a_syntax_error_names_no_field() {
        let err = ConfigError::new(
            "",
            ConfigErrorKind::Parse {
                message: "expected `=`".into(),
            },
        )
        .within("cache")
        .at(Location {
            source_name: "<toml>".into(),
            line: 2,
            column: 5,
        });
        assert_eq!(err.field(), "");
        assert_eq!(err.to_string(), "<toml>:2:5: expected `=`");
        assert_eq!(err.location().map(|l| l.line), Some(2));
    }

    #[test]
    fn a_located_unknown_key_says_where_and_what_instead() {
        let err = ConfigError::new(
            "cache.ttll",
            ConfigErrorKind::Unknown {
                suggestion: Some("cache.time_to_live".into()),
            },
        )
        .at(Location {
            source_name: "stratum.toml".into(),
            line: 3,
            column: 1,
        });
        assert_eq!(
            err.to_string(),
            "stratum.toml:3:1: unknown `cache.ttll`; did you mean `cache.time_to_live`?"
        );
    }
}

//! MongoDB connection strings whose credentials never leave the process by accident.
//!
//! A [`MongoUri`] keeps the connection string it was given, but its `Debug` and
//! `Display` show `mongodb://user:****@host/...`: the password, and the values
//! of the query options that can carry secrets, are masked. The only way to
//! read the real string is [`MongoUri::expose_secret`], a name that is easy to
//! find in review. [`scrub`] masks credentials in arbitrary text (driver error
//! messages, parser messages) before it reaches an error, a log line or a label.

use std::fmt;

/// What replaces a secret in every rendering.
pub const MASK: &str = "****";

/// Whether a query option's value can carry a secret (the name compared
/// case-insensitively): `authMechanismProperties` (an `AWS_SESSION_TOKEN`,
/// an OIDC `TOKEN_RESOURCE`), and every option named for a password:
/// `tlsCertificateKeyFilePassword`, `proxyPassword` in the URI options
/// specification, and the legacy or driver-specific spellings
/// (`sslPEMKeyPassword`, `sslClientCertificateKeyPassword`) a copied URI
/// may still carry. Matching on the word errs on the side of masking.
fn is_secret_option(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authmechanismproperties" || name.contains("password") || name.contains("secret")
}

/// A MongoDB connection string with its credentials redacted in `Debug` and `Display`.
///
/// ```
/// use stratum_store::MongoUri;
///
/// let uri = MongoUri::parse("mongodb://app:s3cret@db1:27017/?replicaSet=rs0").unwrap();
/// assert_eq!(uri.to_string(), "mongodb://app:****@db1:27017/?replicaSet=rs0");
/// assert!(!format!("{uri:?}").contains("s3cret"));
/// // Only this call, easy to find in review, hands the real string out:
/// assert!(uri.expose_secret().contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MongoUri {
    full: String,
    redacted: String,
    password: Option<String>,
}

/// Why a string is not a usable MongoDB URI. The message never repeats the
/// input, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MongoDB URI: {reason}")]
pub struct UriError {
    /// What is wrong, without the input.
    pub reason: &'static str,
}

impl MongoUri {
    /// Parses and checks a `mongodb://` or `mongodb+srv://` connection string.
    ///
    /// Credentials must be percent-encoded (as the MongoDB URI specification
    /// requires): an `@` outside the credentials is refused, because it would
    /// make the password's extent ambiguous and so impossible to mask reliably.
    ///
    /// ```
    /// use stratum_store::MongoUri;
    ///
    /// assert!(MongoUri::parse("postgres://x").is_err());
    /// let err = MongoUri::parse("mongodb://u:p@ss@host").unwrap_err();
    /// assert!(!err.to_string().contains("p@ss"));
    /// ```
    pub fn parse(uri: &str) -> Result<MongoUri, UriError> {
        let uri = uri.trim();
        if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(UriError {
                reason: "contains whitespace or control characters",
            });
        }
        let (scheme, rest) = if let Some(rest) = uri.strip_prefix("mongodb://") {
            ("mongodb://", rest)
        } else if let Some(rest) = uri.strip_prefix("mongodb+srv://") {
            ("mongodb+srv://", rest)
        } else {
            return Err(UriError {
                reason: "must start with `mongodb://` or `mongodb+srv://`",
            });
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if tail.contains('@') {
            return Err(UriError {
                reason: "an `@` outside the credentials: percent-encode it as `%40`",
            });
        }
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if hosts.is_empty() {
            return Err(UriError {
                reason: "names no host",
            });
        }
        let mut redacted = String::with_capacity(uri.len());
        redacted.push_str(scheme);
        let mut password = None;
        if let Some(userinfo) = userinfo {
            if userinfo.contains('@') {
                return Err(UriError {
                    reason: "an `@` inside the credentials: percent-encode it as `%40`",
                });
            }
            match userinfo.split_once(':') {
                Some((user, pass)) => {
                    redacted.push_str(user);
                    redacted.push(':');
                    redacted.push_str(MASK);
                    if !pass.is_empty() {
                        password = Some(pass.to_owned());
                    }
                }
                None => redacted.push_str(userinfo),
            }
            redacted.push('@');
        }
        redacted.push_str(hosts);
        redacted.push_str(&redact_options(tail));
        Ok(MongoUri {
            full: uri.to_owned(),
            redacted,
            password,
        })
    }

    /// The real connection string, credentials included: hand it to the driver
    /// and to nothing else.
    pub fn expose_secret(&self) -> &str {
        &self.full
    }

    /// The connection string with its secrets masked; the same as `Display`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Whether the string carries a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Masks this URI's password (raw and percent-decoded) and any credentials
    /// in other URIs found in `text`.
    ///
    /// ```
    /// use stratum_store::MongoUri;
    ///
    /// let uri = MongoUri::parse("mongodb://app:hunter2@db").unwrap();
    /// let message = uri.scrub("auth failed for hunter2 at mongodb://app:hunter2@db");
    /// assert!(!message.contains("hunter2"));
    /// ```
    pub fn scrub(&self, text: &str) -> String {
        let mut out = scrub(text);
        if let Some(password) = &self.password {
            out = out.replace(password.as_str(), MASK);
            let decoded = percent_decode(password);
            if !decoded.is_empty() && decoded != *password {
                out = out.replace(decoded.as_str(), MASK);
            }
        }
        out
    }
}

impl fmt::Debug for MongoUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MongoUri").field(&self.redacted).finish()
    }
}

impl fmt::Display for MongoUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl std::str::FromStr for MongoUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MongoUri::parse(s)
    }
}

/// Writes the redacted form: a configuration printed or serialized (the
/// effective-configuration report, a TOML dump) never carries the password.
/// Reading that text back gives a URI whose password is the mask, so keep the
/// real string in the file or the environment, not in a dump.
///
/// ```
/// let uri = stratum_store::MongoUri::parse("mongodb://app:s3cret@db").unwrap();
/// assert_eq!(serde_json::to_string(&uri).unwrap(), r#""mongodb://app:****@db""#);
/// ```
impl serde::Serialize for MongoUri {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted)
    }
}

impl<'de> serde::Deserialize<'de> for MongoUri {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // The error names the reason only: serde's own messages would quote the value.
        MongoUri::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Masks the values of query options that can carry secrets.
fn redact_options(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let options: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_option(key) => {
                format!("{key}={MASK}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", options.join("&"))
}

/// Masks the password of every `scheme://user:password@` found in `text`,
/// and the value of every secret query option (`authMechanismProperties=`,
/// `tlsCertificateKeyFilePassword=`, `proxyPassword=`, any option named for
/// a password; up to the next `&` or whitespace).
///
/// It errs on the side of masking: the credentials run from `://` to the last
/// `@` before the next whitespace, so a password holding characters
/// that should have been percent-encoded is still covered.
///
/// ```
/// assert_eq!(
///     stratum_store::uri::scrub("cannot reach mongodb://app:pw@db:27017 (timeout)"),
///     "cannot reach mongodb://app:****@db:27017 (timeout)",
/// );
/// ```
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        out.push_str(before);
        // Only whitespace ends the window: a password may hold quotes or
        // brackets, and masking too much is the safe mistake.
        let window_end = after.find(char::is_whitespace).unwrap_or(after.len());
        let window = &after[..window_end];
        match window.rfind('@') {
            Some(at) => {
                let userinfo = &window[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) if !user.contains('/') => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    _ => out.push_str(MASK),
                }
                rest = &after[at..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    mask_secret_options(&out)
}

/// Masks the values of secret query options wherever they appear in `text`:
/// the value after `name=` (up to the next `&` or whitespace) of every
/// option name [`is_secret_option`] accepts.
fn mask_secret_options(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut search = 0;
    while let Some(eq) = text
        .get(search..)
        .and_then(|t| t.find('='))
        .map(|i| search + i)
    {
        // The option name: the ASCII letters, digits and `_` just before `=`.
        let name_start = text[..eq]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let value_start = eq + 1;
        let value_end = text[value_start..]
            .find(|c: char| c == '&' || c.is_whitespace())
            .map_or(text.len(), |end| value_start + end);
        if name_start < eq && is_secret_option(&text[name_start..eq]) {
            out.push_str(&text[at..value_start]);
            out.push_str(MASK);
            at = value_end;
        }
        search = value_start.max(at);
    }
    out.push_str(&text[at..]);
    out
}

/// Decodes `%XX` escapes; anything malformed is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_the_password_and_keeps_the_rest() {
        let uri = MongoUri::parse("mongodb://user:pa%40ss@h1:1,h2:2/db?tls=true").unwrap();
        assert_eq!(uri.to_string(), "mongodb://user:****@h1:1,h2:2/db?tls=true");
        assert_eq!(
            format!("{uri:?}"),
            "MongoUri(\"mongodb://user:****@h1:1,h2:2/db?tls=true\")"
        );
        assert!(uri.has_password());
    }

    #[test]
    fn keeps_uris_without_credentials_as_they_are() {
        let text = "mongodb+srv://cluster.example.net/?retryWrites=true";
        let uri = MongoUri::parse(text).unwrap();
        assert_eq!(uri.redacted(), text);
        assert!(!uri.has_password());
    }

    /// Every option of the URI options specification that carries a
    /// secret, and the legacy spellings, in any case: masked in `Display`,
    /// `Debug` and `scrub`, with the other options kept.
    #[test]
    fn masks_every_secret_query_option() {
        let secrets = [
            ("authMechanismProperties", "AWS_SESSION_TOKEN:tok123"),
            ("authMechanismProperties", "TOKEN_RESOURCE:oidc456"),
            ("tlsCertificateKeyFilePassword", "pem789"),
            ("proxyPassword", "socks012"),
            ("sslPEMKeyPassword", "legacy345"),
            ("sslClientCertificateKeyPassword", "dotnet678"),
            ("PROXYPASSWORD", "upper901"),
        ];
        for (option, value) in secrets {
            let text = format!("mongodb://u:pw@h/?tls=true&{option}={value}&w=1");
            let uri = MongoUri::parse(&text).unwrap();
            assert_eq!(
                uri.to_string(),
                format!("mongodb://u:****@h/?tls=true&{option}=****&w=1")
            );
            assert!(!format!("{uri:?}").contains(value), "{uri:?}");
            let scrubbed = uri.scrub(&format!("bad option {text} ({option}={value})"));
            assert!(!scrubbed.contains(value), "{scrubbed}");
        }
        // Names merely near a secret one are kept.
        let kept = "mongodb://h/?authMechanism=MONGODB-AWS&authSource=%24external&proxyHost=p";
        assert_eq!(MongoUri::parse(kept).unwrap().to_string(), kept);
    }

    #[test]
    fn refuses_malformed_uris_without_quoting_them() {
        for bad in [
            "",
            "http://u:secretpw@h",
            "mongodb://",
            "mongodb://u:secretpw@",
            "mongodb://u:secret/pw@h",
            "mongodb://u:secret?pw@h",
            "mongodb://u:secret@pw@h",
            "mongodb://u:secret pw@h",
        ] {
            let err = MongoUri::parse(bad).unwrap_err();
            assert!(!err.to_string().contains("secret"), "{bad}: {err}");
        }
    }

    #[test]
    fn scrub_masks_credentials_in_free_text() {
        let text = "connect to 'mongodb://u:p/w@h:1' failed; also mongodb://x@y and http://a.b";
        let out = scrub(text);
        assert_eq!(
            out,
            "connect to 'mongodb://u:****@h:1' failed; also mongodb://****@y and http://a.b"
        );
    }

    #[test]
    fn scrub_masks_secret_options_in_free_text() {
        let text = "bad uri mongodb://h/?tls=true&AUTHMECHANISMPROPERTIES=AWS_SESSION_TOKEN:tok123&w=1 \
                    and tlsCertificateKeyFilePassword=pem456";
        let out = scrub(text);
        assert_eq!(
            out,
            "bad uri mongodb://h/?tls=true&AUTHMECHANISMPROPERTIES=****&w=1 \
             and tlsCertificateKeyFilePassword=****"
        );
        assert_eq!(
            scrub("authmechanismproperties="),
            "authmechanismproperties=****"
        );
    }

    #[test]
    fn scrub_masks_the_decoded_password_too() {
        let uri = MongoUri::parse("mongodb://u:p%40ssw0rd@h").unwrap();
        assert_eq!(uri.scrub("bad password p@ssw0rd"), "bad password ****");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// A planted password never shows in any rendering, whatever it holds.
        #[test]
        fn planted_password_never_renders(password in "[A-Za-z0-9%._~!$&'()*+,;=-]{6,24}", user in "[a-z]{1,8}") {
            let text = format!("mongodb://{user}:{password}@db.internal:27017/app?w=majority");
            if let Ok(uri) = MongoUri::parse(&text) {
                let debug = format!("{uri:?}");
                prop_assert!(!debug.contains(&password));
                prop_assert!(!uri.to_string().contains(&password));
                let message = format!("error near {text}");
                prop_assert!(!uri.scrub(&message).contains(&password));
            }
            prop_assert!(!scrub(&text).contains(&password));
        }

        /// Parsing arbitrary input never panics.
        #[test]
        fn parse_never_panics(text in ".{0,64}") {
            let _ = MongoUri::parse(&text);
            let _ = scrub(&text);
        }
    }
}

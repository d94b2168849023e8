//! A planted password for the redaction tests: put it in a connection
//! string, run the code, and search everything it printed for it.

/// The password, holding characters a URI must percent-encode, so both of
/// its forms can be searched for.
pub const PLANTED: &str = "PLANTED-s3cr3t/@:x";
/// [`PLANTED`] as it is written in a URI.
pub const PLANTED_ENCODED: &str = "PLANTED-s3cr3t%2F%40%3Ax";

/// Fails when `text` holds the planted password in any form: raw, encoded,
/// or its distinctive stem in any case (a partial or re-cased leak).
pub fn assert_no_planted(what: &str, text: &str) {
    for form in [PLANTED, PLANTED_ENCODED] {
        assert!(!text.contains(form), "{what} shows the password: {text}");
    }
    assert!(
        !text.to_ascii_lowercase().contains("planted-s3cr3t"),
        "{what} shows part of the password: {text}"
    );
}

/// With the password planted: the test server's URI (the server will refuse
/// the login: it does not know the user), and a port where nothing listens.
pub fn planted_uris() -> [String; 2] {
    let base = crate::mongodb_uri();
    [
        base.replacen(
            "mongodb://",
            &format!("mongodb://admin:{PLANTED_ENCODED}@"),
            1,
        ),
        format!("mongodb://admin:{PLANTED_ENCODED}@127.0.0.1:1/?directConnection=true"),
    ]
}

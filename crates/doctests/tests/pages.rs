//! The pages themselves: every page is a doc-test module, every fenced block
//! says what it is, and every configuration block parses as the type it
//! claims to be.

// Helpers of a test: a broken page fails the test that read it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `README.md` and every `docs/*.md`, as paths relative to the workspace root.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    pages.sort();
    pages
}

/// A fenced block: the page, the line of its opening fence, its info string
/// and its text.
struct Block {
    page: String,
    line: usize,
    info: String,
    text: String,
}

fn blocks(page: &str) -> Vec<Block> {
    let source = std::fs::read_to_string(root().join(page)).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in source.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (fence, open.take()) {
            (Some(_), Some(block)) => blocks.push(block),
            (Some(info), None) => {
                open = Some(Block {
                    page: page.to_owned(),
                    line: i + 1,
                    info: info.trim().to_owned(),
                    text: String::new(),
                });
            }
            (None, Some(mut block)) => {
                block.text.push_str(line);
                block.text.push('\n');
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{page}: a fenced block is never closed");
    blocks
}

fn all_blocks() -> Vec<Block> {
    pages().iter().flat_map(|p| blocks(p)).collect()
}

/// A page left out of `src/lib.rs` would have its code blocks never
/// compiled: adding a page to `docs/` without its module fails here.
#[test]
fn every_page_is_a_doc_test_module() {
    let lib = std::fs::read_to_string(root().join("crates/doctests/src/lib.rs")).unwrap();
    let missing: Vec<String> = pages()
        .into_iter()
        .filter(|page| !lib.contains(&format!("include_str!(\"../../../{page}\")")))
        .collect();
    assert!(
        missing.is_empty(),
        "add a `#[doc = include_str!(..)] pub mod` to crates/doctests/src/lib.rs for {missing:?}"
    );
}

/// A block with no language is Rust to rustdoc and plain text to GitHub:
/// every block names its language, so both read it the same way.
#[test]
fn every_block_names_its_language() {
    let bare: Vec<String> = all_blocks()
        .into_iter()
        .filter(|b| b.info.is_empty())
        .map(|b| format!("{}:{}", b.page, b.line))
        .collect();
    assert!(
        bare.is_empty(),
        "fenced blocks without a language (`text` for output): {bare:?}"
    );
}

/// Every TOML block says what it configures after `toml` (`toml stratum`:
/// a whole `StratumConfig` file; `toml stratum-breaker`, `toml
/// stratum-cache`: that layer's own configuration type; `toml cargo`: lines
/// of a `Cargo.toml`), and parses, validated, as that type.
#[test]
fn every_configuration_block_parses_as_what_it_claims() {
    let mut checked = 0;
    for block in all_blocks() {
        let mut words = block.info.split_whitespace();
        if words.next() != Some("toml") {
            continue;
        }
        let at = format!("{}:{}", block.page, block.line);
        match words.next() {
            Some("stratum") => {
                if let Err(e) = stratum::StratumConfig::from_toml_str(&block.text) {
                    panic!("{at}: not a valid stratum configuration: {e}");
                }
            }
            Some("stratum-breaker") => {
                let config: stratum_breaker::BreakerConfig = toml::from_str(&block.text)
                    .unwrap_or_else(|e| panic!("{at}: not a BreakerConfig: {e}"));
                if let Err(e) = config.validate() {
                    panic!("{at}: an invalid BreakerConfig: {e}");
                }
            }
            Some("stratum-cache") => {
                let config: stratum_cache::CacheConfig = toml::from_str(&block.text)
                    .unwrap_or_else(|e| panic!("{at}: not a CacheConfig: {e}"));
                if let Err(e) =
                    stratum_cache::CacheBuilder::<String, String>::from_config(config).build()
                {
                    panic!("{at}: an invalid CacheConfig: {e}");
                }
            }
            Some("cargo") => check_cargo_lines(&at, &block.text),
            other => panic!(
                "{at}: a TOML block must say what it is (`toml stratum`, `toml stratum-breaker`, \
                 `toml stratum-cache`, `toml cargo`), not {other:?}"
            ),
        }
        checked += 1;
    }
    // The pages hold configuration blocks: a parser that finds none is broken.
    assert!(checked >= 3, "only {checked} TOML blocks found");
}

/// A JSON block that names a configuration type after `json` parses as it
/// (`json price-table`: a `PriceTable`, validated on load). Untagged JSON
/// blocks are output samples.
#[test]
fn every_tagged_json_block_parses_as_what_it_claims() {
    let mut checked = 0;
    for block in all_blocks() {
        let mut words = block.info.split_whitespace();
        if words.next() != Some("json") {
            continue;
        }
        let at = format!("{}:{}", block.page, block.line);
        match words.next() {
            None => continue,
            Some("price-table") => {
                if let Err(e) = serde_json::from_str::<stratum_models::PriceTable>(&block.text) {
                    panic!("{at}: not a valid PriceTable: {e}");
                }
            }
            Some(other) => panic!("{at}: no such JSON configuration type: {other:?}"),
        }
        checked += 1;
    }
    assert!(
        checked >= 1,
        "the price table block of docs/models.md was not found"
    );
}

/// `Cargo.toml` lines in a page: they parse, and every `stratum*`
/// dependency they name is a package of this workspace with the features
/// they ask for.
fn check_cargo_lines(at: &str, text: &str) {
    let manifest: toml::Table =
        toml::from_str(text).unwrap_or_else(|e| panic!("{at}: not TOML: {e}"));
    let deps = manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .unwrap_or_else(|| panic!("{at}: no [dependencies] table"));
    for (name, spec) in deps.iter().filter(|(n, _)| n.starts_with("stratum")) {
        let features = package_features(name)
            .unwrap_or_else(|| panic!("{at}: `{name}` is not a package of this workspace"));
        for wanted in spec
            .get("features")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let wanted = wanted.as_str().unwrap_or_default();
            assert!(
                features.iter().any(|f| f == wanted),
                "{at}: `{name}` has no feature `{wanted}` (it has {features:?})"
            );
        }
    }
}

/// The features of the workspace package `name`, or `None` when there is
/// no such package.
fn package_features(name: &str) -> Option<Vec<String>> {
    for dir in std::fs::read_dir(root().join("crates")).unwrap() {
        let manifest = dir.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        if manifest["package"]["name"].as_str() == Some(name) {
            let features = manifest
                .get("features")
                .and_then(toml::Value::as_table)
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            return Some(features);
        }
    }
    None
}

//! The shared LIRS traces (`shared/traces/*.txt.gz`, one integer key per
//! line): where to find them, and reading one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The eight traces, in report order, and whether each was in the tuning
/// set (the others are held out: constants were never chosen on them).
pub(crate) const TRACES: [(&str, bool); 8] = [
    ("loop", true),
    ("gli", true),
    ("multi2", true),
    ("2_pools", true),
    ("cs", false),
    ("cpp", false),
    ("multi1", false),
    ("sprite", false),
];

/// The folder of traces: `$STRATUM_TRACES` if set, else the first
/// `shared/traces` found in this crate's folder or an ancestor, or in a
/// sibling of one (`<clone>/../shared/traces` in CI).
pub(crate) fn dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("STRATUM_TRACES") {
        return Some(PathBuf::from(d)).filter(|p| p.is_dir());
    }
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    start.ancestors().find_map(|a| {
        let here = a.join("shared").join("traces");
        here.is_dir().then_some(here)
    })
}

/// Reads `<dir>/<name>.txt.gz`: one key per line (blank lines skipped).
pub(crate) fn load(dir: &Path, name: &str) -> Result<Vec<u64>, String> {
    let path = dir.join(format!("{name}.txt.gz"));
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for line in BufReader::new(flate2::read::GzDecoder::new(file)).lines() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        keys.push(
            t.parse()
                .map_err(|e| format!("{}: bad key {t:?}: {e}", path.display()))?,
        );
    }
    Ok(keys)
}

/// Number of distinct keys.
pub(crate) fn unique(trace: &[u64]) -> usize {
    trace.iter().collect::<std::collections::HashSet<_>>().len()
}

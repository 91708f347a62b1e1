//! Every command in a `console` block of README.md and docs/guide.md runs here, from the
//! repository root, and must print what the document shows (trycmd; `...` elides lines).
//! Commands that need root or a cluster stand in `text` blocks, each with the reason.
//! After an intended change of output: `TRYCMD=overwrite cargo test -p bulkhead-cli --test docs`
//! and review the diff.

use std::path::PathBuf;

#[test]
fn documented_commands_print_what_the_documents_show() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root");
    // The documents use paths relative to the repository root. The other test of this
    // binary uses absolute paths only, so changing the directory here is safe.
    std::env::set_current_dir(&root).expect("cd to the repository root");
    trycmd::TestCases::new()
        .register_bin("bulkhead", PathBuf::from(env!("CARGO_BIN_EXE_bulkhead")))
        .case(root.join("README.md"))
        .case(root.join("docs/guide.md"));
}

/// The documents cite files of the repository (README once cited `semantics.md` and
/// `design.md`, which were not in it): every relative Markdown link must resolve.
#[test]
fn every_relative_link_in_the_documents_resolves() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut missing = Vec::new();
    for doc in [
        "README.md",
        "ARCHITECTURE.md",
        "docs/guide.md",
        "BENCHMARKS.md",
    ] {
        let path = root.join(doc);
        let text = std::fs::read_to_string(&path).expect("document");
        let base = path.parent().expect("parent").to_path_buf();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !base.join(target).exists() {
                missing.push(format!("{doc}: {target}"));
            }
        }
    }
    for file in [
        "LICENSE",
        "docs/semantics.md",
        "docs/design.md",
        "docs/guide.md",
    ] {
        if !root.join(file).exists() {
            missing.push(file.to_string());
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

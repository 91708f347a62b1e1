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
    // The documents use paths relative to the repository root; this binary runs one test.
    std::env::set_current_dir(&root).expect("cd to the repository root");
    trycmd::TestCases::new()
        .register_bin("bulkhead", PathBuf::from(env!("CARGO_BIN_EXE_bulkhead")))
        .case(root.join("README.md"))
        .case(root.join("docs/guide.md"));
}

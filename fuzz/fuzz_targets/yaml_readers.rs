//! The YAML reader users get (saphyr-parser where it may read, granit-parser for the rest)
//! against granit-parser alone: the same trees, spans and errors for any text
//! (`crates/k8s/src/yaml_events.rs` says why there are two).
#![no_main]

use bulkhead_k8s::yaml_tree::both_readings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Debug text, not ==: `.nan` is not equal to itself.
    let [users, granit] = both_readings(text).map(|reading| format!("{reading:?}"));
    assert_eq!(users, granit, "the readings of {text:?} differ");
});

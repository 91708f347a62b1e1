//! Any bytes in, diagnostics out: the loader must never panic, and whatever it loads must be
//! evaluable by the engine without panicking either.
#![no_main]

use bulkhead_engine::{ConnectivityOptions, Engine, EngineOptions};
use bulkhead_k8s::{Input, LoadOptions, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let snapshot = load(&[Input::new("fuzz.yaml", text)], &LoadOptions::default());
    for d in &snapshot.diagnostics {
        assert!(!d.message.is_empty());
    }
    if snapshot.cluster.pods.len() <= 16 {
        let engine = Engine::new(&snapshot.cluster, EngineOptions::default());
        let _ = engine.connectivity(&ConnectivityOptions::default());
    }
});

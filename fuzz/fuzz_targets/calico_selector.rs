//! Any text in: the Calico selector parser must never panic, and whatever parses must print
//! to text that parses back to the same tree.
#![no_main]

use bulkhead_model::CalicoSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(selector) = CalicoSelector::parse(text) {
        let printed = selector.to_string();
        assert_eq!(CalicoSelector::parse(&printed).ok(), Some(selector), "{printed}");
    }
});

#![no_main]
//! Any bytes as a state document.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::state_document(data));

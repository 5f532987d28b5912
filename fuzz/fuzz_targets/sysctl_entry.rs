#![no_main]
//! One sysctl key and value in an otherwise valid document: validation, rendering, reading back.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|input: (&str, &str, bool)| props::sysctl_entry(input.0, input.1, input.2));

#![no_main]
//! A sysctl key as a document names it.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|s: &str| props::sysctl_key(s));

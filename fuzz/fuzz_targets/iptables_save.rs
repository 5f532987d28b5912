#![no_main]
//! iptables-save output: parsed, rendered as restore input, parsed again.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|s: &str| props::iptables_save(s));

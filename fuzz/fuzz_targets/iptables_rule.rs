#![no_main]
//! A rule string as a document writes it.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|s: &str| props::iptables_rule(s));

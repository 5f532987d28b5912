#![no_main]
//! A string as an nftables rule and as a set element of a document.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|s: &str| props::nft_rule(s));

#![no_main]
//! `nft list` output: parsed, rendered as an `nft -f` definition, parsed again.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|s: &str| props::nft_listing(s));

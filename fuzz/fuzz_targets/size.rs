#![no_main]
//! A size string ("512M", "max").

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|s: &str| props::size(s));

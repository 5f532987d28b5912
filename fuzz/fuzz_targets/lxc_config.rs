#![no_main]
//! An LXC container config.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|s: &str| props::lxc_config(s));

#![no_main]
//! A line of a sysctl.d file, and its key as a glob against a path.

#[path = "../../agent/tests/props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|input: (&str, &str)| props::sysctl_line(input.0, input.1));

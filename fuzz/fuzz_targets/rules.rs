#![no_main]
//! cargo-fuzz target: see `weir_fuzz::rules`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::rules(data));

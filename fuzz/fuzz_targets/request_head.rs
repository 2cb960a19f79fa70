#![no_main]
//! cargo-fuzz target: see `weir_fuzz::request_head`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::request_head(data));

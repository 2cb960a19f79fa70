#![no_main]
//! cargo-fuzz target: see `weir_fuzz::http1`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::http1(data));

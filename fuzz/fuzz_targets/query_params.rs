#![no_main]
//! cargo-fuzz target: see `weir_fuzz::query_params`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::query_params(data));

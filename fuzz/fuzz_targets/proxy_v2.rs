#![no_main]
//! cargo-fuzz target: see `weir_fuzz::proxy_v2`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::proxy_v2(data));

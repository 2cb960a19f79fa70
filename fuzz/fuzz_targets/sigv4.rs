#![no_main]
//! cargo-fuzz target: see `weir_fuzz::sigv4`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::sigv4(data));

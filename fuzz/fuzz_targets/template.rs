#![no_main]
//! cargo-fuzz target: see `weir_fuzz::template`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::template(data));

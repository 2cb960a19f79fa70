#![no_main]
//! cargo-fuzz target: see `weir_fuzz::geneve`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::geneve(data));

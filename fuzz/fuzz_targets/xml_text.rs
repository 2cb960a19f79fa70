#![no_main]
//! cargo-fuzz target: see `weir_fuzz::xml_text`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::xml_text(data));

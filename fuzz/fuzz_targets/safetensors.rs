//! Fuzzes `ropo_fuzz::safetensors` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| ropo_fuzz::safetensors(bytes));

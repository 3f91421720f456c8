//! Fuzzes `ropo_fuzz::llama2c` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| ropo_fuzz::llama2c(bytes));

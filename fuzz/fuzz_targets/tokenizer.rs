//! Fuzzes `ropo_fuzz::tokenizer` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| ropo_fuzz::tokenizer(bytes));

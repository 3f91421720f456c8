//! Fuzzes `ropo_fuzz::dataset` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| ropo_fuzz::dataset(bytes));

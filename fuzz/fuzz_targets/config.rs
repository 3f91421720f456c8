//! Fuzzes `ropo_fuzz::config` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| ropo_fuzz::config(bytes));

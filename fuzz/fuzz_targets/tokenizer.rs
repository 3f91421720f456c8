//! Fuzzes `ropo_fuzz::tokenizer` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // The tokenizers library panics on some malformed files; ropo catches those panics
        // where it calls it and returns an error. libFuzzer's hook would abort on them even
        // so; this one lets them be caught. A panic that escapes ropo still aborts (the
        // harness turns it into a crash).
        std::panic::set_hook(Box::new(|_| {}));
    },
    |bytes: &[u8]| ropo_fuzz::tokenizer(bytes)
);

#![no_main]
//! See herald_tests::fuzz::render for what this target feeds and checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_tests::fuzz::render(data));

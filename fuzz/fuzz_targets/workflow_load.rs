#![no_main]
//! See herald_tests::fuzz::workflow_load for what this target feeds and checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_tests::fuzz::workflow_load(data));

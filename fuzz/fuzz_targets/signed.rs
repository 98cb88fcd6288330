#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mediaedge_fuzz::checks::signed(data));

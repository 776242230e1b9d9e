//! cargo-fuzz target: see ferrovia_fuzz_harness::l3_parse.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrovia_fuzz_harness::l3_parse(data);
});

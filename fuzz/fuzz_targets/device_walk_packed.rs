//! cargo-fuzz target: see ferrovia_fuzz_harness::device_walk_packed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrovia_fuzz_harness::device_walk_packed(data);
});

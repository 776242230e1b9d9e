//! cargo-fuzz target: see ferrovia_fuzz_harness::switch_frames.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrovia_fuzz_harness::switch_frames(data);
});

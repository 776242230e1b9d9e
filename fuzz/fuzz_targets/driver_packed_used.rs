//! cargo-fuzz target: see ferrovia_fuzz_harness::driver_packed_used.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrovia_fuzz_harness::driver_packed_used(data);
});

//! cargo-fuzz target: see ferrovia_fuzz_harness::vhost_user_sequence.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrovia_fuzz_harness::vhost_user_sequence(data);
});

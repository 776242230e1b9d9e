//! cargo-fuzz target: see ferrovia_fuzz_harness::frontend_link_messages.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrovia_fuzz_harness::frontend_link_messages(data);
});

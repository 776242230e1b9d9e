//! Replays every committed fuzz corpus entry and crash regression through the harness, so the
//! normal test suite covers what fuzzing found (no libFuzzer needed).

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_file() {
            f(&std::fs::read(&p).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "no corpus for {target}");
    eprintln!("{target}: replayed {n} inputs");
}

#[test]
fn vhost_user_messages_corpus() {
    replay(
        "vhost_user_messages",
        ferrovia_fuzz_harness::vhost_user_messages,
    );
}

#[test]
fn device_walk_corpus() {
    replay("device_walk", ferrovia_fuzz_harness::device_walk);
}

#[test]
fn driver_used_corpus() {
    replay("driver_used", ferrovia_fuzz_harness::driver_used);
}

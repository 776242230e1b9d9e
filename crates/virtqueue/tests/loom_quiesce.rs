//! loom model of the control/poller handshake: once `publish` returns, no burst uses the old
//! configuration. Run with `RUSTFLAGS="--cfg loom" cargo test -p ferrovia-virtqueue --release
//! --test loom_quiesce` (scripts/loom.sh).
#![cfg(loom)]

use ferrovia_virtqueue::quiesce::{Entered, Quiesce, QuiesceReader};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// A configuration that records whether it has been retired.
struct Cfg {
    retired: AtomicBool,
}

#[test]
fn retired_config_is_never_used() {
    loom::model(|| {
        let q = Arc::new(Quiesce::<Cfg>::default());
        let first = Arc::new(Cfg {
            retired: AtomicBool::new(false),
        });
        q.publish(Some(first.clone()));
        let q2 = q.clone();
        let poller = thread::spawn(move || {
            let mut r = QuiesceReader::default();
            for _ in 0..2 {
                if let Entered::Same(c) | Entered::Changed(c) = r.enter(&q2) {
                    // The burst body: using a retired configuration is the bug.
                    assert!(
                        !c.retired.load(Ordering::SeqCst),
                        "used a retired configuration"
                    );
                }
                r.exit(&q2);
            }
        });
        // Control: replace the configuration (e.g. a new memory table), then retire the old one
        // (unmap it): from here on no burst may use it.
        q.publish(Some(Arc::new(Cfg {
            retired: AtomicBool::new(false),
        })));
        first.retired.store(true, Ordering::SeqCst);
        poller.join().unwrap();
    });
}

#[test]
fn pause_stops_the_poller() {
    loom::model(|| {
        let q = Arc::new(Quiesce::<Cfg>::default());
        let cfg = Arc::new(Cfg {
            retired: AtomicBool::new(false),
        });
        q.publish(Some(cfg.clone()));
        let q2 = q.clone();
        let poller = thread::spawn(move || {
            let mut r = QuiesceReader::default();
            if let Entered::Same(c) | Entered::Changed(c) = r.enter(&q2) {
                assert!(!c.retired.load(Ordering::SeqCst));
            }
            r.exit(&q2);
        });
        q.publish(None); // disconnect
        cfg.retired.store(true, Ordering::SeqCst);
        poller.join().unwrap();
    });
}

/// The control thread changes the configuration (a new memory table), then disables the queue
/// (a disconnect), retiring each old configuration as soon as `publish` returns, while the
/// poller runs bursts: no burst ever uses a retired configuration.
#[test]
fn change_then_disable_while_polling() {
    loom::model(|| {
        let q = Arc::new(Quiesce::<Cfg>::default());
        let a = Arc::new(Cfg {
            retired: AtomicBool::new(false),
        });
        q.publish(Some(a.clone()));
        let q2 = q.clone();
        let poller = thread::spawn(move || {
            let mut r = QuiesceReader::default();
            for _ in 0..2 {
                if let Entered::Same(c) | Entered::Changed(c) = r.enter(&q2) {
                    assert!(
                        !c.retired.load(Ordering::SeqCst),
                        "used a retired configuration"
                    );
                }
                r.exit(&q2);
            }
        });
        let b = Arc::new(Cfg {
            retired: AtomicBool::new(false),
        });
        q.publish(Some(b.clone()));
        a.retired.store(true, Ordering::SeqCst);
        q.publish(None);
        b.retired.store(true, Ordering::SeqCst);
        poller.join().unwrap();
    });
}

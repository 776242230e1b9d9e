//! Link state set on a vhost port reaches our virtio-user driver on the other end (one
//! process, a real unix socket): the device's config space status and CONFIG_CHANGE_MSG on the
//! backend channel, the driver's GET_CONFIG, its `link()` and its link-state event.
//!
//! The machine may have few cores shared with busy-polling threads: every wait has a generous
//! deadline and nothing is asserted on timing.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Error, Port, PortConf, PortEvent, PortEventKind, VirtioFeatures, events};
use ferrovia_memory::{Mempool, MempoolConfig};

const DEADLINE: Duration = Duration::from_secs(20);

fn pool(name: &str) -> Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count: 4096,
        ..Default::default()
    })
    .unwrap()
}

fn sock(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ferrovia-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p.display().to_string()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `kind` from port `port` (other events are skipped).
fn wait_event(rx: &Receiver<PortEvent>, port: u16, kind: PortEventKind) {
    let t = Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(t.elapsed());
        assert!(!left.is_zero(), "no {kind:?} event from port {port}");
        if let Ok(e) = rx.recv_timeout(left)
            && e.port_id == port
            && e.kind == kind
        {
            return;
        }
    }
}

struct Pair {
    vh: Box<dyn Port>,
    vu: Box<dyn Port>,
    vh_events: Receiver<PortEvent>,
    vu_events: Receiver<PortEvent>,
}

/// A vhost port (port 0, extra devargs `vh_args`) and our virtio-user driver (port 1) on it,
/// both up.
fn pair(name: &str, vh_args: &str) -> Pair {
    let s = sock(name);
    let p = pool(name);
    let (vh_sink, vh_events) = events::channel();
    let (vu_sink, vu_events) = events::channel();
    let mut c = PortConf::new(0, p.clone());
    c.events = Some(vh_sink);
    let mut vh = ferrovia_pmd::open(&format!("net_vhost0,iface={s}{vh_args}"), &c).unwrap();
    vh.start().unwrap();
    let mut c = PortConf::new(1, p);
    c.events = Some(vu_sink);
    let mut vu = ferrovia_pmd::open(&format!("net_virtio_user0,path={s}"), &c).unwrap();
    vu.start().unwrap();
    wait_for("the vhost link", || vh.link().up);
    wait_for("the virtio-user link", || vu.link().up);
    Pair {
        vh,
        vu,
        vh_events,
        vu_events,
    }
}

fn xstat(p: &dyn Port, name: &str) -> u64 {
    p.xstats()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no xstat {name}"))
}

#[test]
fn link_down_reaches_the_container() {
    let mut p = pair("down.sock", "");
    let f = p.vu.info().virtio_features.expect("negotiated");
    assert!(f.contains(VirtioFeatures::NET_STATUS), "{f}");
    wait_event(&p.vu_events, 1, PortEventKind::LinkUp);

    p.vh.set_link_down().unwrap();
    assert!(!p.vh.link().up, "the vhost port's own link says down");
    wait_event(&p.vh_events, 0, PortEventKind::LinkDown);
    wait_for("the driver's link to go down", || !p.vu.link().up);
    wait_event(&p.vu_events, 1, PortEventKind::LinkDown);

    p.vh.set_link_up().unwrap();
    assert!(p.vh.link().up);
    wait_event(&p.vh_events, 0, PortEventKind::LinkUp);
    wait_for("the driver's link to come back", || p.vu.link().up);
    wait_event(&p.vu_events, 1, PortEventKind::LinkUp);

    // Down and up quickly: the driver ends where the device is.
    for _ in 0..5 {
        p.vh.set_link_down().unwrap();
        p.vh.set_link_up().unwrap();
    }
    p.vh.set_link_down().unwrap();
    wait_for("the driver to settle down", || !p.vu.link().up);
    p.vh.set_link_up().unwrap();
    wait_for("the driver to settle up", || p.vu.link().up);

    assert!(xstat(&*p.vh, "vhost_config_notified") >= 2);
    assert_eq!(xstat(&*p.vh, "vhost_config_notify_failed"), 0);
    assert_eq!(xstat(&*p.vu, "virtio_user_bad_messages"), 0);
}

#[test]
fn a_link_set_down_before_the_driver_connects_is_seen_at_once() {
    let s = sock("early.sock");
    let p = pool("early");
    let mut vh = ferrovia_pmd::open(
        &format!("net_vhost0,iface={s}"),
        &PortConf::new(0, p.clone()),
    )
    .unwrap();
    vh.start().unwrap();
    vh.set_link_down().unwrap();
    let (sink, rx) = events::channel();
    let mut c = PortConf::new(1, p);
    c.events = Some(sink);
    // A client port returns once its handshake is done, GET_CONFIG included.
    let mut vu = ferrovia_pmd::open(&format!("net_virtio_user0,path={s}"), &c).unwrap();
    vu.start().unwrap();
    assert!(
        !vu.link().up,
        "the config space said down during the handshake"
    );
    assert!(
        rx.try_iter().all(|e| e.kind != PortEventKind::LinkUp),
        "no link-up event while the device is down"
    );
    vh.set_link_up().unwrap();
    wait_for("the driver's link to come up", || vu.link().up);
    wait_event(&rx, 1, PortEventKind::LinkUp);
}

#[test]
fn without_link_events_the_driver_link_stays_as_before() {
    let mut p = pair("quiet.sock", ",link-events=0");
    let f = p.vu.info().virtio_features.expect("negotiated");
    assert!(!f.contains(VirtioFeatures::NET_STATUS), "{f}");
    p.vh.set_link_down().unwrap();
    assert!(!p.vh.link().up, "the vhost port's own link says down");
    // Nothing can reach the driver: give the control loop time to prove it, then check.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        p.vu.link().up,
        "the driver's link follows the connection only"
    );
    assert!(
        p.vu_events
            .try_iter()
            .all(|e| e.kind != PortEventKind::LinkDown),
        "no link-down event on the driver"
    );
    p.vh.set_link_up().unwrap();
    assert!(p.vh.link().up);
    assert_eq!(xstat(&*p.vu, "virtio_user_bad_messages"), 0);
}

#[test]
fn drivers_that_cannot_set_their_link_say_so() {
    let mut n = ferrovia_pmd::open("net_null0", &PortConf::new(0, pool("null"))).unwrap();
    assert!(n.link_admin().is_none());
    match n.set_link_down() {
        Err(Error::Unsupported(m)) => assert!(m.contains("net_null0"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

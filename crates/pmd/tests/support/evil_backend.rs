//! A hostile vhost-user backend for tests: serves one session of our virtio-user with our own
//! request handler, so that the test reaches the rings and writes any used entry, length or
//! receive header it likes.

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

use ferrovia_ethdev::{Burst, Port, PortConf, RxQueue, TxQueue};
use ferrovia_memory::{LcoreCaches, Mempool};
use ferrovia_transport::backend::{BackendHandler, DeviceShared};
use ferrovia_virtqueue::device::ActiveVring;
use vhost::vhost_user::BackendReqHandler;

/// Serves one session on `sock`. Returns the shared device state, a handle on the session
/// socket (shut it down to end the session) and the serving thread.
pub fn evil_backend(
    sock: &str,
) -> (
    Arc<DeviceShared>,
    Arc<Mutex<Option<UnixStream>>>,
    std::thread::JoinHandle<()>,
) {
    let l = UnixListener::bind(sock).unwrap();
    let shared = DeviceShared::new(1);
    let conn = Arc::new(Mutex::new(None));
    let (sh, c) = (shared.clone(), conn.clone());
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        *c.lock().unwrap() = Some(s.try_clone().unwrap());
        let handler = Arc::new(Mutex::new(BackendHandler::new("evil", sh)));
        let mut req = BackendReqHandler::from_stream(s, handler.clone());
        while req.handle_request().is_ok() {}
        handler.lock().unwrap().reset();
    });
    (shared, conn, h)
}

/// The configuration of vring `vring` once the handler has published it.
pub fn active(shared: &DeviceShared, vring: usize) -> Arc<ActiveVring> {
    let mut a = None;
    super::wait("vring published", || {
        a = shared.vrings[vring].cfg.current();
        a.is_some()
    });
    a.unwrap()
}

/// Host pointer for `len` bytes at guest address `gpa` of `a`'s memory.
pub fn host_ptr(a: &ActiveVring, gpa: u64, len: u64) -> *mut u8 {
    a.mem
        .translate(gpa, len)
        .into_iter()
        .next()
        .expect("a buffer our driver posted translates")
}

/// The hostile session is over (link down); a good backend (our vhost port on `sock`) takes
/// over and both directions carry `n` numbered frames intact again.
pub fn recover(
    sock: &str,
    pool: &Mempool,
    vu: &dyn Port,
    tx: &mut Box<dyn TxQueue>,
    rx: &mut Box<dyn RxQueue>,
    caches: &mut LcoreCaches,
    n: u8,
) {
    super::wait("link down", || !vu.link().up);
    let mut good = ferrovia_pmd::open(
        &format!("net_vhost0,iface={sock}"),
        &PortConf::new(1, pool.clone()),
    )
    .unwrap();
    good.start().unwrap();
    super::wait("reconnected", || vu.link().up && good.link().up);
    let mut hrx = good.rx_queue(0).unwrap();
    let mut htx = good.tx_queue(0).unwrap();
    let mut out = Burst::new();
    for i in 0..n {
        let mut x = pool.alloc().unwrap();
        x.append(128).unwrap().fill(i);
        out.push(x);
    }
    let mut seen = Vec::new();
    super::wait("virtio-user -> vhost after recovery", || {
        tx.tx_burst(caches, &mut out);
        let mut r = Burst::new();
        hrx.rx_burst(caches, &mut r, 32);
        seen.extend(
            r.drain(..)
                .filter(|m| m.data_len() == 128)
                .map(|m| m.data()[0]),
        );
        seen.len() >= n as usize
    });
    assert_eq!(seen, (0..n).collect::<Vec<u8>>());
    let mut back = Burst::new();
    for i in 0..n {
        let mut x = pool.alloc().unwrap();
        x.append(300).unwrap().fill(100 + i);
        back.push(x);
    }
    let mut seen = Vec::new();
    super::wait("vhost -> virtio-user after recovery", || {
        htx.tx_burst(caches, &mut back);
        let mut r = Burst::new();
        rx.rx_burst(caches, &mut r, 32);
        seen.extend(r.drain(..).map(|m| (m.data_len(), m.data()[0])));
        seen.len() >= n as usize
    });
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, &(l, b))| l == 300 && b == 100 + i as u8)
    );
    drop((hrx, htx, good));
}

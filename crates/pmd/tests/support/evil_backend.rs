//! A hostile vhost-user backend for tests: serves one session of our virtio-user with our own
//! request handler, so that the test reaches the rings and writes any used entry, length or
//! receive header it likes.

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

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

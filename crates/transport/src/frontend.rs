//! The vhost-user frontend handshake used by virtio-user, as a state machine that never blocks.
//!
//! [`Handshake::start`] sends `SET_OWNER` and `GET_FEATURES` on a non-blocking stream; each
//! time the stream is readable the owner calls [`Handshake::on_readable`], which consumes the
//! backend's replies and sends what follows. When features are agreed it reports
//! [`Progress::Negotiated`]; the owner then prepares its rings and calls [`Handshake::setup`]
//! with the memory table and vrings, and the handshake reports [`Progress::Ready`] once every
//! reply it waits for has arrived. A backend that does not answer is the owner's to time out
//! (the reactor's per-source deadline): nothing here waits.
//!
//! Messages are encoded here (they are few and fixed); the backend side keeps rust-vmm's
//! parser. Errors name the socket, the step and what to check.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use ferrovia_memory::registry::RegionInfo;
use ferrovia_virtqueue::layout::{bit, feature};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Most regions a plain SET_MEM_TABLE may carry (vhost-user's fd limit for most backends).
pub const MAX_TABLE_REGIONS: usize = 8;

/// vhost-user request codes the frontend sends.
mod req {
    pub const GET_FEATURES: u32 = 1;
    pub const SET_FEATURES: u32 = 2;
    pub const SET_OWNER: u32 = 3;
    pub const SET_MEM_TABLE: u32 = 5;
    pub const SET_VRING_NUM: u32 = 8;
    pub const SET_VRING_ADDR: u32 = 9;
    pub const SET_VRING_BASE: u32 = 10;
    pub const SET_VRING_KICK: u32 = 12;
    pub const SET_VRING_CALL: u32 = 13;
    pub const GET_PROTOCOL_FEATURES: u32 = 15;
    pub const SET_PROTOCOL_FEATURES: u32 = 16;
    pub const SET_VRING_ENABLE: u32 = 18;
    pub const GET_MAX_MEM_SLOTS: u32 = 36;
    pub const ADD_MEM_REG: u32 = 37;
}

/// Protocol feature bits we use.
pub mod protocol {
    /// `VHOST_USER_PROTOCOL_F_MQ`.
    pub const MQ: u64 = 1 << 0;
    /// `VHOST_USER_PROTOCOL_F_REPLY_ACK`.
    pub const REPLY_ACK: u64 = 1 << 3;
    /// `VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS`.
    pub const CONFIGURE_MEM_SLOTS: u64 = 1 << 15;
}

const FLAG_VERSION: u32 = 0x1;
const FLAG_REPLY: u32 = 0x4;
const FLAG_NEED_REPLY: u32 = 0x8;
const HDR_LEN: usize = 12;

fn name_of(code: u32) -> &'static str {
    match code {
        req::GET_FEATURES => "GET_FEATURES",
        req::SET_FEATURES => "SET_FEATURES",
        req::SET_OWNER => "SET_OWNER",
        req::SET_MEM_TABLE => "SET_MEM_TABLE",
        req::SET_VRING_NUM => "SET_VRING_NUM",
        req::SET_VRING_ADDR => "SET_VRING_ADDR",
        req::SET_VRING_BASE => "SET_VRING_BASE",
        req::SET_VRING_KICK => "SET_VRING_KICK",
        req::SET_VRING_CALL => "SET_VRING_CALL",
        req::GET_PROTOCOL_FEATURES => "GET_PROTOCOL_FEATURES",
        req::SET_PROTOCOL_FEATURES => "SET_PROTOCOL_FEATURES",
        req::SET_VRING_ENABLE => "SET_VRING_ENABLE",
        req::GET_MAX_MEM_SLOTS => "GET_MAX_MEM_SLOTS",
        req::ADD_MEM_REG => "ADD_MEM_REG",
        _ => "an unknown request",
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The socket failed while sending or receiving.
    #[error("{path}: vhost-user {step} failed: {source} (is the peer a vhost-user net backend?)")]
    Io {
        /// Socket path.
        path: String,
        /// The message being sent or awaited.
        step: &'static str,
        /// The socket error.
        source: io::Error,
    },
    /// The backend closed the connection.
    #[error(
        "{path}: the vhost-user backend closed the connection during {step} (did it refuse our features or memory table? see its log)"
    )]
    Closed {
        /// Socket path.
        path: String,
        /// The message being awaited.
        step: &'static str,
    },
    /// The backend answered something we cannot use.
    #[error("{path}: {what}")]
    Protocol {
        /// Socket path.
        path: String,
        /// What was wrong, and what to do.
        what: String,
    },
}

/// One vring to set up.
#[derive(Debug, Clone, Copy)]
pub struct VringSpec {
    /// Ring size.
    pub size: u16,
    /// Descriptor table address (our virtual address).
    pub desc: u64,
    /// Avail ring (packed: driver event area) address.
    pub avail: u64,
    /// Used ring (packed: device event area) address.
    pub used: u64,
    /// Avail index the backend starts from.
    pub base: u16,
}

/// What a call to the handshake achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for the backend.
    Waiting,
    /// Features are agreed (`features`): call [`Handshake::setup`] next.
    Negotiated {
        /// Negotiated virtio features.
        features: u64,
    },
    /// Every ring is set up and enabled; the session is established.
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Features,
    Protocol,
    Negotiated,
    Slots,
    Acks,
    Ready,
}

/// The setup the owner handed over while we wait for GET_MAX_MEM_SLOTS.
struct PendingSetup {
    regions: Vec<RegionInfo>,
    vrings: Vec<VringSpec>,
    kicks: Vec<RawFd>,
    calls: Vec<RawFd>,
}

/// A vhost-user frontend handshake in progress (or done) on one connection.
pub struct Handshake {
    stream: UnixStream,
    path: String,
    want: u64,
    queue_pairs: u16,
    stage: Stage,
    /// Negotiated virtio features (valid from [`Progress::Negotiated`]).
    pub features: u64,
    /// Negotiated protocol features.
    pub protocol: u64,
    rbuf: Vec<u8>,
    /// Replies still expected, by request code, in order.
    expect: std::collections::VecDeque<u32>,
    pending: Option<PendingSetup>,
    /// Region fds, kept open until the messages carrying them are sent.
    _fds: Vec<OwnedFd>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("path", &self.path)
            .field("stage", &self.stage)
            .field("features", &format_args!("{:#x}", self.features))
            .finish()
    }
}

impl Handshake {
    /// Starts a handshake on a connected stream: makes it non-blocking and sends `SET_OWNER`
    /// and `GET_FEATURES`. `want` are the virtio features we would like.
    pub fn start(
        stream: UnixStream,
        path: &str,
        want: u64,
        queue_pairs: u16,
    ) -> Result<Handshake, FrontendError> {
        stream
            .set_nonblocking(true)
            .map_err(|e| FrontendError::Io {
                path: path.to_string(),
                step: "set-up",
                source: e,
            })?;
        let mut h = Handshake {
            stream,
            path: path.to_string(),
            want,
            queue_pairs,
            stage: Stage::Features,
            features: 0,
            protocol: 0,
            rbuf: Vec::with_capacity(64),
            expect: Default::default(),
            pending: None,
            _fds: Vec::new(),
        };
        h.send(req::SET_OWNER, 0, &[], &[])?;
        h.send(req::GET_FEATURES, 0, &[], &[])?;
        h.expect.push_back(req::GET_FEATURES);
        Ok(h)
    }

    /// The connection's fd, to watch.
    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// What the handshake is waiting for, for timeout messages.
    pub fn waiting_for(&self) -> &'static str {
        match self.expect.front() {
            Some(&c) => name_of(c),
            None if self.stage == Stage::Negotiated => "the ring set-up",
            None => "nothing",
        }
    }

    /// The connection, once the handshake is over (to watch for the backend's hang-up).
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// True once every ring is set up.
    pub fn is_ready(&self) -> bool {
        self.stage == Stage::Ready
    }

    fn proto_err(&self, what: String) -> FrontendError {
        FrontendError::Protocol {
            path: self.path.clone(),
            what,
        }
    }

    fn send(
        &mut self,
        code: u32,
        flags: u32,
        body: &[u8],
        fds: &[RawFd],
    ) -> Result<(), FrontendError> {
        let mut msg = Vec::with_capacity(HDR_LEN + body.len());
        msg.extend(code.to_le_bytes());
        msg.extend((FLAG_VERSION | flags).to_le_bytes());
        msg.extend((body.len() as u32).to_le_bytes());
        msg.extend_from_slice(body);
        let io_err = |e: io::Error| FrontendError::Io {
            path: self.path.clone(),
            step: name_of(code),
            source: if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    e.kind(),
                    "the backend is not reading its socket (send buffer full)",
                )
            } else {
                e
            },
        };
        let n = self
            .stream
            .send_with_fds(&[&msg[..]], fds)
            .map_err(|e| io_err(io::Error::from_raw_os_error(e.errno())))?;
        if n != msg.len() {
            return Err(io_err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "short send",
            )));
        }
        Ok(())
    }

    fn send_u64(&mut self, code: u32, v: u64, flags: u32) -> Result<(), FrontendError> {
        self.send(code, flags, &v.to_le_bytes(), &[])
    }

    fn send_state(&mut self, code: u32, index: u32, num: u32) -> Result<(), FrontendError> {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&index.to_le_bytes());
        b[4..].copy_from_slice(&num.to_le_bytes());
        self.send(code, 0, &b, &[])
    }

    fn ack_flag(&self) -> u32 {
        if self.protocol & protocol::REPLY_ACK != 0 {
            FLAG_NEED_REPLY
        } else {
            0
        }
    }

    /// Reads what the backend sent and moves on. Call when the stream is readable (or hung up).
    pub fn on_readable(&mut self) -> Result<Progress, FrontendError> {
        let mut progress = Progress::Waiting;
        loop {
            let mut chunk = [0u8; 256];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(FrontendError::Closed {
                        path: self.path.clone(),
                        step: self.waiting_for(),
                    });
                }
                Ok(n) => {
                    if self.rbuf.len() + n > 4096 {
                        return Err(self.proto_err(format!(
                            "the backend sent {} bytes we did not ask for; is the peer a vhost-user backend?",
                            self.rbuf.len() + n
                        )));
                    }
                    self.rbuf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FrontendError::Io {
                        path: self.path.clone(),
                        step: self.waiting_for(),
                        source: e,
                    });
                }
            }
        }
        while self.rbuf.len() >= HDR_LEN + 8 {
            let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
            let (code, flags, size) = (
                word(&self.rbuf, 0),
                word(&self.rbuf, 4),
                word(&self.rbuf, 8),
            );
            let value = u64::from_le_bytes(self.rbuf[12..20].try_into().expect("8 bytes"));
            self.rbuf.drain(..HDR_LEN + 8);
            let Some(want) = self.expect.pop_front() else {
                return Err(self.proto_err(format!(
                    "the backend sent an unexpected {} message",
                    name_of(code)
                )));
            };
            if code != want || flags & FLAG_REPLY == 0 || size != 8 {
                return Err(self.proto_err(format!(
                    "expected the reply to {}, got request {code} flags {flags:#x} size {size}; is the peer a vhost-user backend?",
                    name_of(want)
                )));
            }
            if let Some(p) = self.on_reply(code, value)? {
                progress = p;
            }
        }
        if self.stage == Stage::Acks && self.expect.is_empty() {
            self.stage = Stage::Ready;
            self._fds.clear();
            progress = Progress::Ready;
        }
        Ok(progress)
    }

    fn on_reply(&mut self, code: u32, value: u64) -> Result<Option<Progress>, FrontendError> {
        match code {
            req::GET_FEATURES => {
                let mut features = value & self.want;
                if features & bit(feature::F_VERSION_1) == 0 {
                    return Err(self.proto_err(format!(
                        "the backend does not offer VIRTIO_F_VERSION_1 (offered {value:#x}); legacy virtio is not supported"
                    )));
                }
                if self.queue_pairs <= 1 {
                    features &= !bit(feature::NET_F_MQ);
                }
                self.features = features;
                if features & bit(feature::VHOST_USER_F_PROTOCOL_FEATURES) != 0 {
                    self.stage = Stage::Protocol;
                    self.send(req::GET_PROTOCOL_FEATURES, 0, &[], &[])?;
                    self.expect.push_back(req::GET_PROTOCOL_FEATURES);
                    Ok(None)
                } else {
                    self.finish_features().map(Some)
                }
            }
            req::GET_PROTOCOL_FEATURES => {
                self.protocol =
                    value & (protocol::MQ | protocol::REPLY_ACK | protocol::CONFIGURE_MEM_SLOTS);
                self.send_u64(req::SET_PROTOCOL_FEATURES, self.protocol, 0)?;
                self.finish_features().map(Some)
            }
            req::GET_MAX_MEM_SLOTS => {
                let p = self
                    .pending
                    .take()
                    .expect("slots asked with a pending set-up");
                if p.regions.len() as u64 > value {
                    return Err(self.proto_err(format!(
                        "{} memory regions but the backend accepts only {value}; use fewer or larger mempools",
                        p.regions.len()
                    )));
                }
                for r in &p.regions {
                    let mut b = Vec::with_capacity(40);
                    b.extend(0u64.to_le_bytes());
                    region_bytes(&mut b, r);
                    let flag = self.ack_flag();
                    self.send(req::ADD_MEM_REG, flag, &b, &[r.fd])?;
                    if flag != 0 {
                        self.expect.push_back(req::ADD_MEM_REG);
                    }
                }
                self.send_vrings(&p.vrings, &p.kicks, &p.calls)?;
                Ok(None)
            }
            _ => {
                // An ack (REPLY_ACK): 0 is success.
                if value != 0 {
                    return Err(self.proto_err(format!(
                        "the backend refused {} (it answered {value}); see its log (memory it cannot map? too few queues?)",
                        name_of(code)
                    )));
                }
                Ok(None)
            }
        }
    }

    fn finish_features(&mut self) -> Result<Progress, FrontendError> {
        if self.queue_pairs > 1
            && (self.features & bit(feature::NET_F_MQ) == 0 || self.protocol & protocol::MQ == 0)
        {
            return Err(self.proto_err(format!(
                "queues={} needs multiqueue, but the backend does not offer VIRTIO_NET_F_MQ; use queues=1 or enable queues on the backend",
                self.queue_pairs
            )));
        }
        self.send_u64(req::SET_FEATURES, self.features, 0)?;
        self.stage = Stage::Negotiated;
        Ok(Progress::Negotiated {
            features: self.features,
        })
    }

    /// Sends the memory table and sets up and enables every vring (index = position in
    /// `vrings`). `fds` keeps the region fds open until they are sent. Returns
    /// [`Progress::Ready`] when nothing more is awaited, else [`Progress::Waiting`].
    pub fn setup(
        &mut self,
        regions: &[RegionInfo],
        fds: Vec<OwnedFd>,
        vrings: &[VringSpec],
        kicks: &[RawFd],
        calls: &[RawFd],
    ) -> Result<Progress, FrontendError> {
        if self.stage != Stage::Negotiated {
            return Err(self.proto_err("ring set-up before features were agreed".into()));
        }
        self._fds = fds;
        self.stage = Stage::Acks;
        if regions.len() <= MAX_TABLE_REGIONS {
            let mut b = Vec::with_capacity(8 + 32 * regions.len());
            b.extend((regions.len() as u32).to_le_bytes());
            b.extend(0u32.to_le_bytes());
            for r in regions {
                region_bytes(&mut b, r);
            }
            let rfds: Vec<RawFd> = regions.iter().map(|r| r.fd).collect();
            let flag = self.ack_flag();
            self.send(req::SET_MEM_TABLE, flag, &b, &rfds)?;
            if flag != 0 {
                self.expect.push_back(req::SET_MEM_TABLE);
            }
            self.send_vrings(vrings, kicks, calls)?;
        } else if self.protocol & protocol::CONFIGURE_MEM_SLOTS != 0 {
            self.stage = Stage::Slots;
            self.pending = Some(PendingSetup {
                regions: regions.to_vec(),
                vrings: vrings.to_vec(),
                kicks: kicks.to_vec(),
                calls: calls.to_vec(),
            });
            self.send(req::GET_MAX_MEM_SLOTS, 0, &[], &[])?;
            self.expect.push_back(req::GET_MAX_MEM_SLOTS);
            return Ok(Progress::Waiting);
        } else {
            return Err(self.proto_err(format!(
                "{} memory regions but the backend accepts at most {MAX_TABLE_REGIONS} and does not offer CONFIGURE_MEM_SLOTS; use fewer or larger mempools",
                regions.len()
            )));
        }
        if self.expect.is_empty() {
            self.stage = Stage::Ready;
            self._fds.clear();
            Ok(Progress::Ready)
        } else {
            Ok(Progress::Waiting)
        }
    }

    fn send_vrings(
        &mut self,
        vrings: &[VringSpec],
        kicks: &[RawFd],
        calls: &[RawFd],
    ) -> Result<(), FrontendError> {
        self.stage = Stage::Acks;
        for (i, v) in vrings.iter().enumerate() {
            let i32_ = i as u32;
            self.send_state(req::SET_VRING_NUM, i32_, v.size as u32)?;
            self.send_state(req::SET_VRING_BASE, i32_, v.base as u32)?;
            let mut b = Vec::with_capacity(40);
            b.extend(i32_.to_le_bytes());
            b.extend(0u32.to_le_bytes());
            b.extend(v.desc.to_le_bytes());
            b.extend(v.used.to_le_bytes());
            b.extend(v.avail.to_le_bytes());
            b.extend(0u64.to_le_bytes());
            self.send(req::SET_VRING_ADDR, 0, &b, &[])?;
            self.send(
                req::SET_VRING_KICK,
                0,
                &(i as u64).to_le_bytes(),
                &[kicks[i]],
            )?;
            self.send(
                req::SET_VRING_CALL,
                0,
                &(i as u64).to_le_bytes(),
                &[calls[i]],
            )?;
        }
        if self.features & bit(feature::VHOST_USER_F_PROTOCOL_FEATURES) != 0 {
            for i in 0..vrings.len() {
                self.send_state(req::SET_VRING_ENABLE, i as u32, 1)?;
            }
        }
        Ok(())
    }
}

fn region_bytes(b: &mut Vec<u8>, r: &RegionInfo) {
    b.extend(r.addr.to_le_bytes()); // guest physical address = our virtual address
    b.extend(r.len.to_le_bytes());
    b.extend(r.addr.to_le_bytes()); // userspace address
    b.extend(0u64.to_le_bytes()); // mmap offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reply(code: u32, v: u64) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(code.to_le_bytes());
        m.extend((FLAG_VERSION | FLAG_REPLY).to_le_bytes());
        m.extend(8u32.to_le_bytes());
        m.extend(v.to_le_bytes());
        m
    }

    fn read_request(s: &mut UnixStream) -> (u32, Vec<u8>) {
        let mut h = [0u8; 12];
        s.read_exact(&mut h).unwrap();
        let code = u32::from_le_bytes(h[0..4].try_into().unwrap());
        let size = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let mut body = vec![0u8; size];
        s.read_exact(&mut body).unwrap();
        (code, body)
    }

    #[test]
    fn refuses_a_backend_without_version_1_and_never_blocks() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut h = Handshake::start(a, "/tmp/test.sock", bit(feature::F_VERSION_1), 1).unwrap();
        assert_eq!(h.on_readable().unwrap(), Progress::Waiting, "no reply yet");
        assert_eq!(read_request(&mut b).0, req::SET_OWNER);
        assert_eq!(read_request(&mut b).0, req::GET_FEATURES);
        assert_eq!(h.waiting_for(), "GET_FEATURES");
        // Half a reply: still waiting, nothing blocks.
        let r = reply(req::GET_FEATURES, 0);
        b.write_all(&r[..7]).unwrap();
        assert_eq!(h.on_readable().unwrap(), Progress::Waiting);
        b.write_all(&r[7..]).unwrap();
        let e = h.on_readable().unwrap_err().to_string();
        assert!(e.contains("VIRTIO_F_VERSION_1"), "{e}");
    }

    #[test]
    fn negotiates_then_sets_up_rings() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let want = bit(feature::F_VERSION_1) | bit(feature::VHOST_USER_F_PROTOCOL_FEATURES);
        let mut h = Handshake::start(a, "/tmp/t", want, 1).unwrap();
        read_request(&mut b);
        read_request(&mut b);
        b.write_all(&reply(
            req::GET_FEATURES,
            want | bit(feature::F_RING_PACKED),
        ))
        .unwrap();
        assert_eq!(h.on_readable().unwrap(), Progress::Waiting);
        assert_eq!(read_request(&mut b).0, req::GET_PROTOCOL_FEATURES);
        b.write_all(&reply(req::GET_PROTOCOL_FEATURES, protocol::REPLY_ACK))
            .unwrap();
        assert_eq!(
            h.on_readable().unwrap(),
            Progress::Negotiated { features: want }
        );
        let (c, body) = read_request(&mut b);
        assert_eq!(c, req::SET_PROTOCOL_FEATURES);
        assert_eq!(body, protocol::REPLY_ACK.to_le_bytes());
        assert_eq!(read_request(&mut b).0, req::SET_FEATURES);
        let efd = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
        let region = RegionInfo {
            addr: 0x1000,
            len: 0x1000,
            fd: efd.as_raw_fd(),
            id: 0,
        };
        let v = VringSpec {
            size: 256,
            desc: 0x1000,
            avail: 0x2000,
            used: 0x3000,
            base: 0,
        };
        let p = h
            .setup(
                &[region],
                Vec::new(),
                &[v],
                &[efd.as_raw_fd()],
                &[efd.as_raw_fd()],
            )
            .unwrap();
        assert_eq!(p, Progress::Waiting, "awaits the memory table's ack");
        let (c, body) = read_request(&mut b);
        assert_eq!(c, req::SET_MEM_TABLE);
        assert_eq!(body.len(), 8 + 32);
        for want in [
            req::SET_VRING_NUM,
            req::SET_VRING_BASE,
            req::SET_VRING_ADDR,
            req::SET_VRING_KICK,
            req::SET_VRING_CALL,
            req::SET_VRING_ENABLE,
        ] {
            assert_eq!(read_request(&mut b).0, want);
        }
        b.write_all(&reply(req::SET_MEM_TABLE, 1)).unwrap();
        let e = h.on_readable().unwrap_err().to_string();
        assert!(e.contains("refused SET_MEM_TABLE"), "{e}");
    }
}

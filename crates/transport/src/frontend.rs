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
    pub const SET_BACKEND_REQ_FD: u32 = 21;
    pub const GET_CONFIG: u32 = 24;
    pub const GET_MAX_MEM_SLOTS: u32 = 36;
    pub const ADD_MEM_REG: u32 = 37;
}

/// Protocol feature bits we use.
pub mod protocol {
    /// `VHOST_USER_PROTOCOL_F_MQ`.
    pub const MQ: u64 = 1 << 0;
    /// `VHOST_USER_PROTOCOL_F_REPLY_ACK`.
    pub const REPLY_ACK: u64 = 1 << 3;
    /// `VHOST_USER_PROTOCOL_F_BACKEND_REQ` (the backend channel).
    pub const BACKEND_REQ: u64 = 1 << 5;
    /// `VHOST_USER_PROTOCOL_F_CONFIG` (GET_CONFIG).
    pub const CONFIG: u64 = 1 << 9;
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
        req::SET_BACKEND_REQ_FD => "SET_BACKEND_REQ_FD",
        req::GET_CONFIG => "GET_CONFIG",
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
    /// Our end of the backend channel (when `BACKEND_REQ` was negotiated).
    channel: Option<UnixStream>,
    /// The link status the backend's config space reported (when `CONFIG` was negotiated
    /// and it answered GET_CONFIG with a payload).
    link_status: Option<bool>,
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
            channel: None,
            link_status: None,
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

    /// The connection once the handshake is over, as a [`Session`] that also serves the
    /// backend channel (link changes), when one was negotiated.
    pub fn into_session(self) -> Session {
        Session {
            config: self.protocol & protocol::CONFIG != 0
                && self.features & bit(feature::NET_F_STATUS) != 0,
            link: self.link_status.unwrap_or(true),
            stream: self.stream,
            path: self.path,
            rbuf: Vec::new(),
            channel: self.channel,
            cbuf: Vec::new(),
            pending: false,
            again: false,
            bad_messages: 0,
        }
    }

    /// The link status the backend reported during the handshake (`None`: it has no config
    /// space for us, the link is up while connected).
    pub fn link_status(&self) -> Option<bool> {
        self.link_status
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
        while self.rbuf.len() >= HDR_LEN {
            let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
            let (code, flags, size) = (
                word(&self.rbuf, 0),
                word(&self.rbuf, 4),
                word(&self.rbuf, 8) as usize,
            );
            if size > MAX_REPLY_BODY {
                return Err(self.proto_err(format!(
                    "the backend sent a {size}-byte reply body (at most {MAX_REPLY_BODY} expected); is the peer a vhost-user backend?"
                )));
            }
            if self.rbuf.len() < HDR_LEN + size {
                break;
            }
            let body: Vec<u8> = self.rbuf.drain(..HDR_LEN + size).skip(HDR_LEN).collect();
            let Some(want) = self.expect.pop_front() else {
                return Err(self.proto_err(format!(
                    "the backend sent an unexpected {} message",
                    name_of(code)
                )));
            };
            let size_ok = if want == req::GET_CONFIG {
                size >= 12
            } else {
                size == 8
            };
            if code != want || flags & FLAG_REPLY == 0 || !size_ok {
                return Err(self.proto_err(format!(
                    "expected the reply to {}, got request {code} flags {flags:#x} size {size}; is the peer a vhost-user backend?",
                    name_of(want)
                )));
            }
            if code == req::GET_CONFIG {
                self.link_status = parse_config_reply(&body)
                    .map_err(|e| self.proto_err(e))?
                    .map(status_link_up);
                if self.link_status.is_none() {
                    log::info!(
                        "{}: the backend answered GET_CONFIG with no config space; the link follows the connection only",
                        self.path
                    );
                }
                continue;
            }
            let value = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
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
                // The link status: CONFIG (GET_CONFIG) with BACKEND_REQ (told when it
                // changes), only together and only for a device that offers the status.
                let link = protocol::CONFIG | protocol::BACKEND_REQ;
                if value & link == link && self.features & bit(feature::NET_F_STATUS) != 0 {
                    self.protocol |= link;
                }
                self.send_u64(req::SET_PROTOCOL_FEATURES, self.protocol, 0)?;
                if self.protocol & protocol::BACKEND_REQ != 0 {
                    self.send_backend_channel()?;
                }
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

    /// Creates the backend channel (a socket pair) and sends its other end with
    /// SET_BACKEND_REQ_FD.
    fn send_backend_channel(&mut self) -> Result<(), FrontendError> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| FrontendError::Io {
            path: self.path.clone(),
            step: "SET_BACKEND_REQ_FD",
            source: e,
        })?;
        ours.set_nonblocking(true).map_err(|e| FrontendError::Io {
            path: self.path.clone(),
            step: "SET_BACKEND_REQ_FD",
            source: e,
        })?;
        let flag = self.ack_flag();
        self.send(req::SET_BACKEND_REQ_FD, flag, &[], &[theirs.as_raw_fd()])?;
        if flag != 0 {
            self.expect.push_back(req::SET_BACKEND_REQ_FD);
        }
        self.channel = Some(ours);
        Ok(())
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
        if self.protocol & protocol::CONFIG != 0 && self.features & bit(feature::NET_F_STATUS) != 0
        {
            let m = get_config_request();
            send_raw(&self.stream, &m).map_err(|e| FrontendError::Io {
                path: self.path.clone(),
                step: "GET_CONFIG",
                source: e,
            })?;
            self.expect.push_back(req::GET_CONFIG);
        }
        Ok(())
    }
}

/// Largest reply body the handshake accepts (a GET_CONFIG reply is 12 bytes plus the config
/// asked for; every other reply is 8).
const MAX_REPLY_BODY: usize = 64;

/// The part of the virtio-net config space we ask for: `mac` and `status`.
const CONFIG_ASK: u32 = 8;

/// `VIRTIO_NET_S_LINK_UP`.
const NET_S_LINK_UP: u16 = 1;

/// `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`.
const BACKEND_CONFIG_CHANGE_MSG: u32 = 2;

/// A GET_CONFIG request for the first [`CONFIG_ASK`] bytes of the config space (the payload
/// is sent zeroed, as the protocol has it).
pub fn get_config_request() -> Vec<u8> {
    let mut m = Vec::with_capacity(HDR_LEN + 12 + CONFIG_ASK as usize);
    m.extend(req::GET_CONFIG.to_le_bytes());
    m.extend(FLAG_VERSION.to_le_bytes());
    m.extend((12 + CONFIG_ASK).to_le_bytes());
    m.extend(0u32.to_le_bytes()); // offset
    m.extend(CONFIG_ASK.to_le_bytes());
    m.extend(0u32.to_le_bytes()); // flags
    m.resize(HDR_LEN + 12 + CONFIG_ASK as usize, 0);
    m
}

/// The payload of a GET_CONFIG reply body (`offset`, `size`, `flags`, then `size` bytes) to
/// our [`get_config_request`]: `Ok(None)` when the backend answered with an empty payload
/// (the protocol's way to refuse), an error when the body does not match what we asked.
pub fn parse_config_reply(body: &[u8]) -> Result<Option<[u8; CONFIG_ASK as usize]>, String> {
    if body.len() < 12 {
        return Err(format!(
            "GET_CONFIG reply of {} bytes is shorter than its 12-byte header",
            body.len()
        ));
    }
    let word = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().expect("4 bytes"));
    let (offset, size) = (word(0), word(4));
    let payload = &body[12..];
    if size as usize != payload.len() {
        return Err(format!(
            "GET_CONFIG reply says {size} bytes of config but carries {}; is the peer a vhost-user backend?",
            payload.len()
        ));
    }
    if size == 0 {
        return Ok(None);
    }
    if offset != 0 || size != CONFIG_ASK {
        return Err(format!(
            "GET_CONFIG reply has {size} bytes at offset {offset}; we asked for {CONFIG_ASK} at offset 0"
        ));
    }
    Ok(Some(payload.try_into().expect("checked size")))
}

/// Whether the virtio-net config bytes from offset 0 (mac, status) say the link is up.
pub fn status_link_up(cfg: [u8; CONFIG_ASK as usize]) -> bool {
    u16::from_le_bytes([cfg[6], cfg[7]]) & NET_S_LINK_UP != 0
}

/// A message the backend sent on the backend channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendMessage {
    /// `CONFIG_CHANGE_MSG`: read the config space again; `need_reply`: answer it.
    ConfigChange {
        /// The backend set NEED_REPLY.
        need_reply: bool,
    },
}

/// Parses the front of what the backend channel delivered: `Ok(None)` while a message is
/// incomplete, `Ok(Some((message, bytes used)))`, or an error for anything but a well-formed
/// `CONFIG_CHANGE_MSG` (no body, or a u64 body, as backends send it).
pub fn parse_backend_message(buf: &[u8]) -> Result<Option<(BackendMessage, usize)>, String> {
    if buf.len() < HDR_LEN {
        return Ok(None);
    }
    let word = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
    let (code, flags, size) = (word(0), word(4), word(8));
    if code != BACKEND_CONFIG_CHANGE_MSG {
        return Err(format!(
            "the backend sent request {code} on the backend channel; only CONFIG_CHANGE_MSG ({BACKEND_CONFIG_CHANGE_MSG}) is accepted"
        ));
    }
    if flags & 0x3 != FLAG_VERSION || flags & FLAG_REPLY != 0 {
        return Err(format!(
            "CONFIG_CHANGE_MSG with flags {flags:#x} (version 1 and no reply flag expected)"
        ));
    }
    if size != 0 && size != 8 {
        return Err(format!(
            "CONFIG_CHANGE_MSG with a {size}-byte body (0 or 8 expected)"
        ));
    }
    let len = HDR_LEN + size as usize;
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some((
        BackendMessage::ConfigChange {
            need_reply: flags & FLAG_NEED_REPLY != 0,
        },
        len,
    )))
}

/// The reply to a backend-channel request flagged NEED_REPLY (`value` 0: success).
pub fn backend_reply(code: u32, value: u64) -> [u8; HDR_LEN + 8] {
    let mut m = [0u8; HDR_LEN + 8];
    m[0..4].copy_from_slice(&code.to_le_bytes());
    m[4..8].copy_from_slice(&(FLAG_VERSION | FLAG_REPLY).to_le_bytes());
    m[8..12].copy_from_slice(&8u32.to_le_bytes());
    m[12..20].copy_from_slice(&value.to_le_bytes());
    m
}

/// Sends a whole message on a non-blocking socket without waiting: a short or refused send
/// is an error (the message is too small to be split by a socket with any room).
fn send_raw(s: &UnixStream, m: &[u8]) -> io::Result<()> {
    // SAFETY: sends `m`, which we own, on a socket we own; never blocks.
    let n = unsafe {
        libc::send(
            s.as_raw_fd(),
            m.as_ptr().cast(),
            m.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != m.len() {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("short send ({n} of {} bytes)", m.len()),
        ));
    }
    Ok(())
}

/// Reads what a non-blocking socket has into `buf` (at most `cap` bytes in all): `Ok(true)`
/// when the peer hung up.
fn read_available(s: &mut UnixStream, buf: &mut Vec<u8>, cap: usize) -> io::Result<bool> {
    let mut chunk = [0u8; 256];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                if buf.len() + n > cap {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("more than {cap} bytes were sent that we did not ask for"),
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What [`Session`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// Nothing that changes the link.
    Nothing,
    /// The backend's config space says the link is up (`true`) or down.
    Link(bool),
    /// A GET_CONFIG was sent: its reply is awaited (the owner sets a deadline).
    Asked,
}

/// An established vhost-user connection: watches for the backend's hang-up and, when the
/// backend channel was negotiated, follows the link status (CONFIG_CHANGE_MSG, then
/// GET_CONFIG). Everything the backend sends is checked; a bad message is counted in
/// [`Session::bad_messages`] and dropped (a bad backend channel is closed), never trusted.
#[derive(Debug)]
pub struct Session {
    stream: UnixStream,
    path: String,
    rbuf: Vec<u8>,
    channel: Option<UnixStream>,
    cbuf: Vec<u8>,
    /// CONFIG and STATUS negotiated: GET_CONFIG may be sent.
    config: bool,
    /// The link as the config space last said (true without one).
    link: bool,
    /// A GET_CONFIG reply is awaited.
    pending: bool,
    /// Another CONFIG_CHANGE_MSG came while one was pending: ask again after it.
    again: bool,
    /// Messages from the backend that were refused.
    pub bad_messages: u64,
}

impl Session {
    /// The main connection's fd, to watch.
    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The backend channel's fd, to watch (while it is open).
    pub fn channel_fd(&self) -> Option<RawFd> {
        self.channel.as_ref().map(|c| c.as_raw_fd())
    }

    /// The link as the backend's config space last said (true when it has none).
    pub fn link(&self) -> bool {
        self.link
    }

    fn bad(&mut self, what: String) {
        self.bad_messages += 1;
        log::error!("{}: {what}; message dropped", self.path);
    }

    /// The main connection is readable: `Err` when the backend hung up or the socket failed
    /// (the connection is over); otherwise what the GET_CONFIG reply, if any, said.
    pub fn on_stream_readable(&mut self) -> Result<SessionEvent, FrontendError> {
        match read_available(&mut self.stream, &mut self.rbuf, 4096) {
            Ok(false) => {}
            Ok(true) => {
                return Err(FrontendError::Closed {
                    path: self.path.clone(),
                    step: "the session",
                });
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                self.rbuf.clear();
                self.bad(format!("the backend {e} on the vhost-user socket"));
                return Ok(SessionEvent::Nothing);
            }
            Err(e) => {
                return Err(FrontendError::Io {
                    path: self.path.clone(),
                    step: "the session",
                    source: e,
                });
            }
        }
        let mut ev = SessionEvent::Nothing;
        while self.rbuf.len() >= HDR_LEN {
            let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
            let (code, flags, size) = (
                word(&self.rbuf, 0),
                word(&self.rbuf, 4),
                word(&self.rbuf, 8) as usize,
            );
            if !self.pending
                || code != req::GET_CONFIG
                || flags & FLAG_REPLY == 0
                || !(12..=MAX_REPLY_BODY).contains(&size)
            {
                self.rbuf.clear();
                self.bad(format!(
                    "the backend sent request {code} flags {flags:#x} size {size} on the vhost-user socket, which we did not ask for"
                ));
                break;
            }
            if self.rbuf.len() < HDR_LEN + size {
                break;
            }
            let body: Vec<u8> = self.rbuf.drain(..HDR_LEN + size).skip(HDR_LEN).collect();
            self.pending = false;
            match parse_config_reply(&body) {
                Ok(Some(c)) => {
                    self.link = status_link_up(c);
                    ev = SessionEvent::Link(self.link);
                }
                Ok(None) => log::warn!(
                    "{}: the backend answered GET_CONFIG with no config; link unchanged",
                    self.path
                ),
                Err(e) => self.bad(e),
            }
            if self.again {
                self.again = false;
                if self.ask() {
                    ev = match ev {
                        SessionEvent::Link(_) => ev,
                        _ => SessionEvent::Asked,
                    };
                }
            }
        }
        Ok(ev)
    }

    /// Sends GET_CONFIG; false if it could not be sent (counted).
    fn ask(&mut self) -> bool {
        match send_raw(&self.stream, &get_config_request()) {
            Ok(()) => {
                self.pending = true;
                true
            }
            Err(e) => {
                self.bad_messages += 1;
                log::error!(
                    "{}: cannot send GET_CONFIG ({e}); the link state is not updated",
                    self.path
                );
                false
            }
        }
    }

    /// The awaited GET_CONFIG reply did not come in time: counted, and the next
    /// CONFIG_CHANGE_MSG asks again.
    pub fn config_timed_out(&mut self) {
        if self.pending {
            self.pending = false;
            self.bad(
                "the backend did not answer GET_CONFIG in time (the link state is not updated)"
                    .to_string(),
            );
        }
    }

    /// Whether a GET_CONFIG reply is awaited.
    pub fn config_pending(&self) -> bool {
        self.pending
    }

    /// The backend channel is readable: answers each CONFIG_CHANGE_MSG that wants a reply
    /// and asks for the config space (returns [`SessionEvent::Asked`]). A bad message or a
    /// hang-up closes the channel (counted; the connection stays); the caller stops watching
    /// the fd it had when [`Session::channel_fd`] turns `None`.
    pub fn on_channel_readable(&mut self) -> SessionEvent {
        let Some(ch) = self.channel.as_mut() else {
            return SessionEvent::Nothing;
        };
        let r = read_available(ch, &mut self.cbuf, 4096);
        let mut changed = false;
        let mut close = match r {
            Ok(hung_up) => hung_up.then(|| "the backend closed its backend channel".to_string()),
            Err(e) => Some(format!("backend channel: {e}")),
        };
        loop {
            match parse_backend_message(&self.cbuf) {
                Ok(None) => break,
                Ok(Some((BackendMessage::ConfigChange { need_reply }, used))) => {
                    self.cbuf.drain(..used);
                    changed = true;
                    if need_reply {
                        let ok = self
                            .channel
                            .as_ref()
                            .map(|c| send_raw(c, &backend_reply(BACKEND_CONFIG_CHANGE_MSG, 0)));
                        if let Some(Err(e)) = ok {
                            close = Some(format!("cannot answer CONFIG_CHANGE_MSG: {e}"));
                            break;
                        }
                    }
                }
                Err(e) => {
                    self.bad_messages += 1;
                    close = Some(e);
                    break;
                }
            }
        }
        if let Some(why) = close {
            log::error!(
                "{}: {why}; backend channel closed (link changes are no longer seen until the backend reconnects)",
                self.path
            );
            self.channel = None;
            self.cbuf.clear();
        }
        if changed && self.config {
            if self.pending {
                self.again = true;
            } else if self.ask() {
                return SessionEvent::Asked;
            }
        }
        SessionEvent::Nothing
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

    #[test]
    fn backend_channel_messages_are_checked() {
        let ok = backend_reply(BACKEND_CONFIG_CHANGE_MSG, 0);
        // A well-formed CONFIG_CHANGE_MSG with a u64 body (our reply's layout, flags fixed).
        let mut m = ok;
        m[4..8].copy_from_slice(&(FLAG_VERSION | FLAG_NEED_REPLY).to_le_bytes());
        assert_eq!(
            parse_backend_message(&m).unwrap(),
            Some((BackendMessage::ConfigChange { need_reply: true }, 20))
        );
        assert_eq!(parse_backend_message(&m[..15]).unwrap(), None, "incomplete");
        // DPDK sends it with no body.
        let mut z = m[..12].to_vec();
        z[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            parse_backend_message(&z).unwrap(),
            Some((BackendMessage::ConfigChange { need_reply: true }, 12))
        );
        // Another request, a reply flag, a wrong version or a bad size: refused.
        for (at, v) in [(0, 7u32), (4, FLAG_VERSION | FLAG_REPLY), (4, 2), (8, 4096)] {
            let mut b = m;
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            assert!(parse_backend_message(&b).is_err(), "field {at} = {v}");
        }
    }

    #[test]
    fn config_replies_are_checked() {
        let mut body = Vec::new();
        body.extend(0u32.to_le_bytes());
        body.extend(CONFIG_ASK.to_le_bytes());
        body.extend(0u32.to_le_bytes());
        body.extend([2, 0, 0, 0, 0, 1, 1, 0]);
        let c = parse_config_reply(&body).unwrap().unwrap();
        assert!(status_link_up(c));
        let mut down = body.clone();
        down[12 + 6] = 0;
        assert!(!status_link_up(parse_config_reply(&down).unwrap().unwrap()));
        // The protocol's error: no payload.
        let mut empty = body[..12].to_vec();
        empty[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(parse_config_reply(&empty).unwrap(), None);
        // Short, a size that lies, a part we did not ask for.
        assert!(parse_config_reply(&body[..11]).is_err());
        assert!(parse_config_reply(&body[..16]).is_err());
        let mut off = body.clone();
        off[0] = 2;
        assert!(parse_config_reply(&off).is_err());
    }

    /// A handshake with CONFIG and BACKEND_REQ, then link changes on the backend channel, and
    /// a hostile message that closes the channel without ending the session.
    #[test]
    fn follows_the_link_and_refuses_bad_channel_messages() {
        use vmm_sys_util::sock_ctrl_msg::ScmSocket;
        let (a, mut b) = UnixStream::pair().unwrap();
        let want = bit(feature::F_VERSION_1)
            | bit(feature::VHOST_USER_F_PROTOCOL_FEATURES)
            | bit(feature::NET_F_STATUS);
        let mut h = Handshake::start(a, "/tmp/t", want, 1).unwrap();
        read_request(&mut b);
        read_request(&mut b);
        b.write_all(&reply(req::GET_FEATURES, want)).unwrap();
        h.on_readable().unwrap();
        assert_eq!(read_request(&mut b).0, req::GET_PROTOCOL_FEATURES);
        b.write_all(&reply(
            req::GET_PROTOCOL_FEATURES,
            protocol::CONFIG | protocol::BACKEND_REQ,
        ))
        .unwrap();
        assert_eq!(
            h.on_readable().unwrap(),
            Progress::Negotiated { features: want }
        );
        let (c, body) = read_request(&mut b);
        assert_eq!(c, req::SET_PROTOCOL_FEATURES);
        assert_eq!(
            body,
            (protocol::CONFIG | protocol::BACKEND_REQ).to_le_bytes()
        );
        let mut hdr = [0u8; 12];
        let (n, fd) = b.recv_with_fd(&mut hdr).unwrap();
        assert_eq!(n, 12);
        assert_eq!(
            u32::from_le_bytes(hdr[0..4].try_into().unwrap()),
            req::SET_BACKEND_REQ_FD
        );
        let mut chan = UnixStream::from(std::os::fd::OwnedFd::from(fd.expect("the channel")));
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
        let fds = [efd.as_raw_fd()];
        assert_eq!(
            h.setup(&[region], Vec::new(), &[v], &fds, &fds).unwrap(),
            Progress::Waiting,
            "awaits GET_CONFIG"
        );
        let config_reply = |status: u8| {
            let mut m = Vec::new();
            m.extend(req::GET_CONFIG.to_le_bytes());
            m.extend((FLAG_VERSION | FLAG_REPLY).to_le_bytes());
            m.extend((12 + CONFIG_ASK).to_le_bytes());
            m.extend(0u32.to_le_bytes());
            m.extend(CONFIG_ASK.to_le_bytes());
            m.extend(0u32.to_le_bytes());
            m.extend([2, 0, 0, 0, 0, 1, status, 0]);
            m
        };
        loop {
            let (c, body) = read_request(&mut b);
            if c == req::GET_CONFIG {
                assert_eq!(body.len(), 12 + CONFIG_ASK as usize);
                break;
            }
        }
        b.write_all(&config_reply(0)).unwrap();
        assert_eq!(h.on_readable().unwrap(), Progress::Ready);
        assert_eq!(h.link_status(), Some(false));
        let mut s = h.into_session();
        assert!(!s.link());
        // CONFIG_CHANGE_MSG with NEED_REPLY: answered, then GET_CONFIG.
        let mut m = backend_reply(BACKEND_CONFIG_CHANGE_MSG, 0);
        m[4..8].copy_from_slice(&(FLAG_VERSION | FLAG_NEED_REPLY).to_le_bytes());
        chan.write_all(&m).unwrap();
        assert_eq!(s.on_channel_readable(), SessionEvent::Asked);
        let mut r = [0u8; 20];
        chan.read_exact(&mut r).unwrap();
        assert_eq!(r, backend_reply(BACKEND_CONFIG_CHANGE_MSG, 0));
        assert_eq!(read_request(&mut b).0, req::GET_CONFIG);
        assert!(s.config_pending());
        let up = config_reply(1);
        b.write_all(&up[..10]).unwrap();
        assert_eq!(s.on_stream_readable().unwrap(), SessionEvent::Nothing);
        b.write_all(&up[10..]).unwrap();
        assert_eq!(s.on_stream_readable().unwrap(), SessionEvent::Link(true));
        assert!(s.link());
        // A reply nobody asked for is counted and dropped.
        b.write_all(&config_reply(0)).unwrap();
        assert_eq!(s.on_stream_readable().unwrap(), SessionEvent::Nothing);
        assert!(s.link());
        assert_eq!(s.bad_messages, 1);
        // A hostile channel message: counted, the channel closed, the session goes on.
        chan.write_all(&reply(99, 0)).unwrap();
        assert_eq!(s.on_channel_readable(), SessionEvent::Nothing);
        assert_eq!(s.bad_messages, 2);
        assert_eq!(s.channel_fd(), None);
        let mut x = [0u8; 1];
        assert_eq!(chan.read(&mut x).unwrap(), 0, "our end was closed");
        // The backend hanging up ends the session.
        drop(b);
        assert!(s.on_stream_readable().is_err());
    }
}

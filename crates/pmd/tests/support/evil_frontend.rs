//! A hostile vhost-user frontend for tests: raw messages over a `UnixStream` with full control
//! of the header (request, flags, size field), the payload bytes and the fds attached with
//! `SCM_RIGHTS`; helpers for a correct handshake; and a guest memory of memfd regions in which
//! it lays out split rings, so that it can then write any descriptor or avail entry it likes.
//! Like QEMU's and DPDK's, its memfds are not sealed, so it can also truncate them.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// An unsealed memfd mapped here, as a guest's memory (QEMU and DPDK do not seal theirs).
pub struct PeerMemfd {
    file: std::fs::File,
    base: *mut u8,
    len: usize,
}

impl PeerMemfd {
    /// A zeroed memfd of `len` bytes (rounded up to 4 KiB), mapped shared.
    pub fn new(len: usize) -> PeerMemfd {
        let len = len.next_multiple_of(4096);
        // SAFETY: plain syscall with a valid name; the fd is owned by the File below.
        let fd = unsafe { libc::memfd_create(c"evil-guest".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: fresh fd, ours.
        let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        file.set_len(len as u64).unwrap();
        // SAFETY: mapping `len` bytes of a file that is `len` bytes long.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        PeerMemfd {
            file,
            base: p.cast(),
            len,
        }
    }
    /// First byte of our mapping (the region's frontend virtual address).
    pub fn base(&self) -> *mut u8 {
        self.base
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// The memfd, to send.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
    /// The attack: shrinks the file to `len` bytes. Our own mapping must not be touched
    /// beyond `len` afterwards (this process has no handler for it).
    pub fn truncate(&self, len: u64) {
        self.file.set_len(len).unwrap();
    }
}

impl Drop for PeerMemfd {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our own mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// vhost-user request codes (frontend -> backend).
pub mod req {
    /// GET_FEATURES.
    pub const GET_FEATURES: u32 = 1;
    /// SET_FEATURES.
    pub const SET_FEATURES: u32 = 2;
    /// SET_OWNER.
    pub const SET_OWNER: u32 = 3;
    /// RESET_OWNER.
    pub const RESET_OWNER: u32 = 4;
    /// SET_MEM_TABLE.
    pub const SET_MEM_TABLE: u32 = 5;
    /// SET_LOG_BASE.
    pub const SET_LOG_BASE: u32 = 6;
    /// SET_VRING_NUM.
    pub const SET_VRING_NUM: u32 = 8;
    /// SET_VRING_ADDR.
    pub const SET_VRING_ADDR: u32 = 9;
    /// SET_VRING_BASE.
    pub const SET_VRING_BASE: u32 = 10;
    /// GET_VRING_BASE.
    pub const GET_VRING_BASE: u32 = 11;
    /// SET_VRING_KICK.
    pub const SET_VRING_KICK: u32 = 12;
    /// SET_VRING_CALL.
    pub const SET_VRING_CALL: u32 = 13;
    /// SET_VRING_ERR.
    pub const SET_VRING_ERR: u32 = 14;
    /// GET_PROTOCOL_FEATURES.
    pub const GET_PROTOCOL_FEATURES: u32 = 15;
    /// SET_PROTOCOL_FEATURES.
    pub const SET_PROTOCOL_FEATURES: u32 = 16;
    /// GET_QUEUE_NUM.
    pub const GET_QUEUE_NUM: u32 = 17;
    /// SET_VRING_ENABLE.
    pub const SET_VRING_ENABLE: u32 = 18;
    /// GET_MAX_MEM_SLOTS.
    pub const GET_MAX_MEM_SLOTS: u32 = 36;
    /// ADD_MEM_REG.
    pub const ADD_MEM_REG: u32 = 37;
    /// REM_MEM_REG.
    pub const REM_MEM_REG: u32 = 38;
}

/// Header flag: protocol version 1.
pub const FLAG_VERSION: u32 = 0x1;
/// Header flag: this is a reply.
pub const FLAG_REPLY: u32 = 0x4;
/// Header flag: the sender wants a REPLY_ACK.
pub const FLAG_NEED_REPLY: u32 = 0x8;
/// Payload bit of SET_VRING_KICK/CALL/ERR: no fd attached.
pub const VRING_NOFD: u64 = 0x100;

/// Virtio feature bits the tests negotiate.
pub mod feat {
    /// VIRTIO_NET_F_MRG_RXBUF.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// VIRTIO_RING_F_INDIRECT_DESC.
    pub const INDIRECT: u64 = 1 << 28;
    /// VIRTIO_RING_F_EVENT_IDX.
    pub const EVENT_IDX: u64 = 1 << 29;
    /// VHOST_USER_F_PROTOCOL_FEATURES.
    pub const PROTOCOL: u64 = 1 << 30;
    /// VIRTIO_F_VERSION_1.
    pub const V1: u64 = 1 << 32;
    /// Protocol feature REPLY_ACK.
    pub const P_REPLY_ACK: u64 = 1 << 3;
    /// Protocol feature CONFIGURE_MEM_SLOTS.
    pub const P_MEM_SLOTS: u64 = 1 << 15;
}

/// Descriptor flags.
pub const F_NEXT: u16 = 1;
/// Descriptor flag: device-writable.
pub const F_WRITE: u16 = 2;
/// Descriptor flag: indirect table.
pub const F_INDIRECT: u16 = 4;

/// One memory region as a SET_MEM_TABLE / ADD_MEM_REG payload describes it.
#[derive(Clone, Copy, Debug)]
pub struct RegionDesc {
    /// Guest physical address.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Frontend virtual address.
    pub uva: u64,
    /// Offset into the fd.
    pub offset: u64,
}

impl RegionDesc {
    fn put(&self, v: &mut Vec<u8>) {
        for x in [self.gpa, self.size, self.uva, self.offset] {
            v.extend(x.to_le_bytes());
        }
    }
}

/// SET_MEM_TABLE payload: `num_regions`, padding, then the regions.
pub fn mem_table_payload(regions: &[RegionDesc]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend((regions.len() as u32).to_le_bytes());
    v.extend(0u32.to_le_bytes());
    regions.iter().for_each(|r| r.put(&mut v));
    v
}

/// ADD_MEM_REG / REM_MEM_REG payload: padding, then one region.
pub fn single_region_payload(r: &RegionDesc) -> Vec<u8> {
    let mut v = 0u64.to_le_bytes().to_vec();
    r.put(&mut v);
    v
}

/// `VhostUserVringState` payload (index, num).
pub fn vring_state(index: u32, num: u32) -> Vec<u8> {
    let mut v = index.to_le_bytes().to_vec();
    v.extend(num.to_le_bytes());
    v
}

/// `VhostUserVringAddr` payload.
pub fn vring_addr(index: u32, flags: u32, desc: u64, used: u64, avail: u64, log: u64) -> Vec<u8> {
    let mut v = index.to_le_bytes().to_vec();
    v.extend(flags.to_le_bytes());
    for x in [desc, used, avail, log] {
        v.extend(x.to_le_bytes());
    }
    v
}

/// A reply from the backend.
#[derive(Debug)]
pub struct Reply {
    /// Request code it answers.
    pub req: u32,
    /// Header flags.
    pub flags: u32,
    /// Payload.
    pub body: Vec<u8>,
}

impl Reply {
    /// The payload as one u64 (GET_FEATURES, REPLY_ACK, ...).
    pub fn u64(&self) -> u64 {
        u64::from_le_bytes(self.body[..8].try_into().expect("8-byte reply"))
    }
}

/// A raw vhost-user connection under the test's full control.
pub struct EvilFrontend {
    sock: UnixStream,
    /// Whether REPLY_ACK was negotiated (then [`EvilFrontend::call`] asks for an ack).
    pub reply_ack: bool,
}

impl EvilFrontend {
    /// Connects to a listening backend.
    pub fn connect(path: &str) -> EvilFrontend {
        let sock = UnixStream::connect(path).expect("connect to the vhost port");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        EvilFrontend {
            sock,
            reply_ack: false,
        }
    }

    /// The socket (for shutdown or non-blocking sends).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Sends `bytes` in one `sendmsg` with `fds` attached (`SCM_RIGHTS`).
    pub fn send_bytes(&self, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
        send_with_fds(self.sock.as_raw_fd(), bytes, fds)
    }

    /// Sends a message with a header of the caller's choosing: `size` is written as given,
    /// whatever the length of `payload`.
    pub fn send_raw(
        &self,
        req: u32,
        flags: u32,
        size: u32,
        payload: &[u8],
        fds: &[RawFd],
    ) -> io::Result<usize> {
        let mut b = Vec::with_capacity(12 + payload.len());
        b.extend(req.to_le_bytes());
        b.extend(flags.to_le_bytes());
        b.extend(size.to_le_bytes());
        b.extend(payload);
        self.send_bytes(&b, fds)
    }

    /// Sends a well-formed message (version 1, correct size field).
    pub fn send(&self, req: u32, payload: &[u8], fds: &[RawFd]) -> io::Result<usize> {
        self.send_raw(req, FLAG_VERSION, payload.len() as u32, payload, fds)
    }

    /// Reads one reply (header + payload); errors on EOF or after the read timeout.
    pub fn recv(&self) -> io::Result<Reply> {
        let mut s = &self.sock;
        let mut h = [0u8; 12];
        s.read_exact(&mut h)?;
        let w = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        let mut body = vec![0u8; w(8) as usize];
        s.read_exact(&mut body)?;
        Ok(Reply {
            req: w(0),
            flags: w(4),
            body,
        })
    }

    /// Sends a request that has a reply (GET_*) and returns the reply.
    pub fn get(&self, req: u32, payload: &[u8]) -> io::Result<Reply> {
        self.send(req, payload, &[])?;
        let r = self.recv()?;
        assert_eq!(r.req, req, "reply to the wrong request");
        Ok(r)
    }

    /// Sends a request without a reply of its own. With REPLY_ACK negotiated, asks for an ack
    /// and returns Ok(true) for success, Ok(false) for a refusal; otherwise Ok(true) once sent.
    pub fn call(&self, req: u32, payload: &[u8], fds: &[RawFd]) -> io::Result<bool> {
        if !self.reply_ack {
            self.send(req, payload, fds)?;
            return Ok(true);
        }
        self.send_raw(
            req,
            FLAG_VERSION | FLAG_NEED_REPLY,
            payload.len() as u32,
            payload,
            fds,
        )?;
        let r = self.recv()?;
        assert_eq!(r.req, req, "ack for the wrong request");
        Ok(r.u64() == 0)
    }

    /// A round trip (GET_FEATURES): every message sent before it has been handled.
    pub fn barrier(&self) -> io::Result<u64> {
        Ok(self.get(req::GET_FEATURES, &[])?.u64())
    }

    /// Waits until the backend closes the session (EOF or a reset), discarding any replies.
    /// Panics if the session is still open after the read timeout.
    pub fn expect_closed(&self) {
        let mut s = &self.sock;
        let mut b = [0u8; 256];
        loop {
            match s.read(&mut b) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    panic!("the backend did not close the session")
                }
                Err(_) => return, // ECONNRESET: closed
            }
        }
    }

    /// The start of a correct handshake: SET_OWNER, GET_FEATURES, SET_FEATURES(`features`),
    /// and, when `features` has PROTOCOL_FEATURES, GET/SET_PROTOCOL_FEATURES(`protocol`).
    /// Returns the features the backend offered.
    pub fn handshake(&mut self, features: u64, protocol: u64) -> u64 {
        self.send(req::SET_OWNER, &[], &[]).unwrap();
        let offered = self.barrier().unwrap();
        assert_eq!(
            features & !offered,
            0,
            "asking for {features:#x}, offered {offered:#x}"
        );
        self.send(req::SET_FEATURES, &features.to_le_bytes(), &[])
            .unwrap();
        if features & feat::PROTOCOL != 0 {
            let p = self.get(req::GET_PROTOCOL_FEATURES, &[]).unwrap().u64();
            assert_eq!(
                protocol & !p,
                0,
                "protocol features {protocol:#x} of {p:#x}"
            );
            self.send(req::SET_PROTOCOL_FEATURES, &protocol.to_le_bytes(), &[])
                .unwrap();
            self.reply_ack = protocol & feat::P_REPLY_ACK != 0;
        }
        offered
    }

    /// SET_MEM_TABLE for `mem`'s regions (one fd per region).
    pub fn set_mem_table(&self, mem: &GuestMem) -> io::Result<bool> {
        let fds: Vec<RawFd> = mem.regions.iter().map(|r| r.mem.fd()).collect();
        self.call(req::SET_MEM_TABLE, &mem_table_payload(&mem.descs()), &fds)
    }

    /// NUM, BASE, ADDR, CALL (no fd) and KICK (no fd) for vring `index` laid out as `ring`,
    /// then SET_VRING_ENABLE when `enable` (needed once PROTOCOL_FEATURES is acked).
    pub fn setup_vring(&self, index: u32, ring: &SplitLayout, enable: bool) {
        let addrs = (ring.desc_uva(), ring.used_uva(), ring.avail_uva());
        self.setup_ring(index, ring.size, 0, addrs, enable);
    }

    /// NUM (`num`), BASE (`base`), ADDR (`addrs`: desc, used, avail), CALL and KICK (no fd),
    /// then SET_VRING_ENABLE when `enable`; panics on a refusal.
    fn setup_ring(&self, index: u32, num: u16, base: u32, addrs: (u64, u64, u64), enable: bool) {
        let ok = |r: io::Result<bool>, what: &str| {
            assert!(r.unwrap(), "vring {index}: {what} refused");
        };
        ok(
            self.call(req::SET_VRING_NUM, &vring_state(index, num as u32), &[]),
            "SET_VRING_NUM",
        );
        ok(
            self.call(req::SET_VRING_BASE, &vring_state(index, base), &[]),
            "SET_VRING_BASE",
        );
        let (desc, used, avail) = addrs;
        ok(
            self.call(
                req::SET_VRING_ADDR,
                &vring_addr(index, 0, desc, used, avail, 0),
                &[],
            ),
            "SET_VRING_ADDR",
        );
        for (r, what) in [
            (req::SET_VRING_CALL, "SET_VRING_CALL"),
            (req::SET_VRING_KICK, "SET_VRING_KICK"),
        ] {
            ok(
                self.call(r, &(index as u64 | VRING_NOFD).to_le_bytes(), &[]),
                what,
            );
        }
        if enable {
            ok(
                self.call(req::SET_VRING_ENABLE, &vring_state(index, 1), &[]),
                "SET_VRING_ENABLE",
            );
        }
    }
}

/// `sendmsg` of `bytes` with `fds` in one `SCM_RIGHTS` control message.
pub fn send_with_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let fd_bytes = std::mem::size_of_val(fds) as u32;
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure computation.
        unsafe { libc::CMSG_SPACE(fd_bytes) as usize }
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one cmsg carrying `fds`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
    }
    // SAFETY: msg describes valid buffers.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One guest region: a memfd mapped here, placed at `gpa`.
pub struct GuestRegion {
    /// The memory (its address is the region's frontend virtual address).
    pub mem: PeerMemfd,
    /// Guest physical address of its start.
    pub gpa: u64,
}

/// A guest's memory: memfd regions at chosen guest physical addresses.
pub struct GuestMem {
    /// The regions, in table order.
    pub regions: Vec<GuestRegion>,
}

impl GuestMem {
    /// Regions of `sizes` bytes placed back to back from `gpa` (adjacent in guest physical
    /// space, but separate mappings here and in the backend).
    pub fn new(gpa: u64, sizes: &[usize]) -> GuestMem {
        let mut at = gpa;
        let regions = sizes
            .iter()
            .map(|&len| {
                let r = GuestRegion {
                    mem: PeerMemfd::new(len),
                    gpa: at,
                };
                at += len as u64;
                r
            })
            .collect();
        GuestMem { regions }
    }

    /// The table describing these regions.
    pub fn descs(&self) -> Vec<RegionDesc> {
        self.regions
            .iter()
            .map(|r| RegionDesc {
                gpa: r.gpa,
                size: r.mem.len() as u64,
                uva: r.mem.base() as u64,
                offset: 0,
            })
            .collect()
    }

    /// Host pointer for `off` bytes into region `r` (bounds-checked for `len` bytes).
    pub fn ptr(&self, r: usize, off: usize, len: usize) -> *mut u8 {
        let reg = &self.regions[r];
        assert!(off + len <= reg.mem.len(), "outside the test's own region");
        // SAFETY: inside the region, checked above.
        unsafe { reg.mem.base().add(off) }
    }

    /// Guest physical address of `off` bytes into region `r`.
    pub fn gpa(&self, r: usize, off: usize) -> u64 {
        self.regions[r].gpa + off as u64
    }

    /// Writes `data` at `off` in region `r`.
    pub fn write(&self, r: usize, off: usize, data: &[u8]) {
        let p = self.ptr(r, off, data.len());
        // SAFETY: `ptr` checked the range.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }

    /// Reads `len` bytes at `off` in region `r`.
    pub fn read(&self, r: usize, off: usize, len: usize) -> Vec<u8> {
        let p = self.ptr(r, off, len);
        let mut v = vec![0u8; len];
        // SAFETY: `ptr` checked the range.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len) };
        v
    }
}

/// A split ring of `size` entries laid out at one offset of one guest region: descriptor table,
/// then the avail ring at +16*size, then the used ring at the next 4 KiB boundary.
pub struct SplitLayout {
    base: *mut u8,
    uva: u64,
    /// Ring size.
    pub size: u16,
    /// The next avail index this guest will publish.
    pub avail_idx: u16,
}

impl SplitLayout {
    /// Bytes a ring of `size` needs.
    pub fn bytes(size: u16) -> usize {
        Self::used_off(size) + 4 + 8 * size as usize + 2
    }
    fn avail_off(size: u16) -> usize {
        16 * size as usize
    }
    fn used_off(size: u16) -> usize {
        (Self::avail_off(size) + 6 + 2 * size as usize).next_multiple_of(4096)
    }

    /// Lays a zeroed ring out at `off` in region `r` of `mem`.
    pub fn new(mem: &GuestMem, r: usize, off: usize, size: u16) -> SplitLayout {
        assert!(off.is_multiple_of(4096));
        let base = mem.ptr(r, off, Self::bytes(size));
        // SAFETY: inside the region (checked by `ptr`).
        unsafe { std::ptr::write_bytes(base, 0, Self::bytes(size)) };
        SplitLayout {
            base,
            uva: mem.regions[r].mem.base() as u64 + off as u64,
            size,
            avail_idx: 0,
        }
    }
    /// Frontend address of the descriptor table.
    pub fn desc_uva(&self) -> u64 {
        self.uva
    }
    /// Frontend address of the avail ring.
    pub fn avail_uva(&self) -> u64 {
        self.uva + Self::avail_off(self.size) as u64
    }
    /// Frontend address of the used ring.
    pub fn used_uva(&self) -> u64 {
        self.uva + Self::used_off(self.size) as u64
    }
    fn at(&self, off: usize) -> *mut u8 {
        assert!(off < Self::bytes(self.size));
        // SAFETY: inside the ring's bytes.
        unsafe { self.base.add(off) }
    }

    /// Writes descriptor `i` (any value; `i` wraps at the ring size).
    pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let p = self.at(16 * (i % self.size) as usize);
        // SAFETY: a 16-byte, 16-aligned descriptor slot inside the ring.
        unsafe {
            p.cast::<u64>().write_volatile(addr);
            p.add(8).cast::<u32>().write_volatile(len);
            p.add(12).cast::<u16>().write_volatile(flags);
            p.add(14).cast::<u16>().write_volatile(next);
        }
    }

    /// Puts `head` (any value) in the next avail slot and publishes the avail index.
    pub fn push(&mut self, head: u16) {
        let slot = Self::avail_off(self.size) + 4 + 2 * (self.avail_idx % self.size) as usize;
        // SAFETY: an avail ring entry inside the ring.
        unsafe { self.at(slot).cast::<u16>().write_volatile(head) };
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(self.avail_idx);
    }

    /// Publishes `idx` as avail.idx (any value; the guest's own counter is not changed).
    pub fn set_avail_idx(&self, idx: u16) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: avail.idx inside the ring.
        unsafe {
            self.at(Self::avail_off(self.size) + 2)
                .cast::<u16>()
                .write_volatile(idx)
        };
    }

    /// The backend's used.idx.
    pub fn used_idx(&self) -> u16 {
        // SAFETY: used.idx inside the ring.
        unsafe {
            self.at(Self::used_off(self.size) + 2)
                .cast::<u16>()
                .read_volatile()
        }
    }

    /// Used entry `i` (wrapping): (id, len).
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let p = self.at(Self::used_off(self.size) + 4 + 8 * (i % self.size) as usize);
        // SAFETY: a used entry inside the ring.
        unsafe {
            (
                p.cast::<u32>().read_volatile(),
                p.add(4).cast::<u32>().read_volatile(),
            )
        }
    }
}

/// Packed descriptor flag: available (its value must equal the driver's wrap counter).
pub const PK_AVAIL: u16 = 1 << 7;
/// Packed descriptor flag: used (its value must differ from the driver's wrap counter).
pub const PK_USED: u16 = 1 << 15;
/// Feature bit VIRTIO_F_RING_PACKED.
pub const F_RING_PACKED: u64 = 1 << 34;

/// A packed ring of `size` descriptors laid out at one offset of one guest region: the
/// descriptor ring, then the driver event area, then the device event area (4 bytes each).
/// The guest keeps its own avail position and wrap counter, and the position where it
/// expects the device's next used descriptor.
pub struct PackedLayout {
    base: *mut u8,
    uva: u64,
    /// Ring size.
    pub size: u16,
    /// The slot the guest makes available next, and its wrap counter.
    pub avail: (u16, bool),
    /// The slot where the guest expects the next used descriptor, and its wrap counter.
    pub used: (u16, bool),
}

impl PackedLayout {
    /// Bytes a ring of `size` needs.
    pub fn bytes(size: u16) -> usize {
        16 * size as usize + 8
    }

    /// Lays a zeroed ring out at `off` in region `r` of `mem`.
    pub fn new(mem: &GuestMem, r: usize, off: usize, size: u16) -> PackedLayout {
        assert!(off.is_multiple_of(4096));
        let base = mem.ptr(r, off, Self::bytes(size));
        // SAFETY: inside the region (checked by `ptr`).
        unsafe { std::ptr::write_bytes(base, 0, Self::bytes(size)) };
        PackedLayout {
            base,
            uva: mem.regions[r].mem.base() as u64 + off as u64,
            size,
            avail: (0, true),
            used: (0, true),
        }
    }
    /// Frontend address of the descriptor ring.
    pub fn desc_uva(&self) -> u64 {
        self.uva
    }
    /// Frontend address of the driver event area (SET_VRING_ADDR's avail field).
    pub fn driver_uva(&self) -> u64 {
        self.uva + 16 * self.size as u64
    }
    /// Frontend address of the device event area (SET_VRING_ADDR's used field).
    pub fn device_uva(&self) -> u64 {
        self.driver_uva() + 4
    }

    /// Writes slot `i` (wrapping at the ring size) with the flags given as they are.
    pub fn write(&self, i: u16, addr: u64, len: u32, id: u16, flags: u16) {
        let p = self.base.wrapping_add(16 * (i % self.size) as usize);
        // SAFETY: a 16-byte, 16-aligned descriptor slot inside the ring; flags last, after a
        // fence, as a driver publishes a descriptor.
        unsafe {
            p.cast::<u64>().write_volatile(addr);
            p.add(8).cast::<u32>().write_volatile(len);
            p.add(12).cast::<u16>().write_volatile(id);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            p.add(14).cast::<u16>().write_volatile(flags);
        }
    }

    /// Reads slot `i`: (addr, len, id, flags).
    pub fn read(&self, i: u16) -> (u64, u32, u16, u16) {
        let p = self.base.wrapping_add(16 * (i % self.size) as usize);
        // SAFETY: a descriptor slot inside the ring.
        unsafe {
            (
                p.cast::<u64>().read_volatile(),
                p.add(8).cast::<u32>().read_volatile(),
                p.add(12).cast::<u16>().read_volatile(),
                p.add(14).cast::<u16>().read_volatile(),
            )
        }
    }

    /// The ownership bits that make a descriptor available under wrap counter `wrap`.
    pub fn avail_bits(wrap: bool) -> u16 {
        if wrap { PK_AVAIL } else { PK_USED }
    }

    /// Makes a chain available at the guest's avail position: each `(addr, len, flags)` (flags
    /// without the ownership bits) goes in the next slot with buffer id `id`; the head's flags
    /// are written last. Returns the number of slots used.
    pub fn push_chain(&mut self, descs: &[(u64, u32, u16)], id: u16) -> u16 {
        let start = self.avail.0;
        let mut slots = Vec::new();
        for &(a, l, f) in descs {
            let (i, w) = self.avail;
            slots.push((i, a, l, f | Self::avail_bits(w)));
            self.avail = if i + 1 == self.size {
                (0, !w)
            } else {
                (i + 1, w)
            };
        }
        for &(i, a, l, f) in slots.iter().skip(1) {
            self.write(i, a, l, id, f);
        }
        if let Some(&(_, a, l, f)) = slots.first() {
            self.write(start, a, l, id, f);
        }
        slots.len() as u16
    }

    /// The used descriptor at the guest's used position, if the device wrote one: (id, len).
    /// It then moves the used position on by `slots` (the chain's length).
    pub fn take_used(&mut self, slots: u16) -> Option<(u16, u32)> {
        let (i, w) = self.used;
        let (_, len, id, flags) = self.read(i);
        let want = if w { PK_AVAIL | PK_USED } else { 0 };
        if flags & (PK_AVAIL | PK_USED) != want {
            return None;
        }
        let n = i as u32 + slots as u32;
        self.used = if n >= self.size as u32 {
            ((n - self.size as u32) as u16, !w)
        } else {
            (n as u16, w)
        };
        Some((id, len))
    }
}

impl EvilFrontend {
    /// NUM, BASE (slot 0, wrap counter 1), ADDR, CALL (no fd) and KICK (no fd) for packed
    /// vring `index` laid out as `ring`, then SET_VRING_ENABLE when `enable`.
    pub fn setup_packed_vring(&self, index: u32, ring: &PackedLayout, enable: bool) {
        let addrs = (ring.desc_uva(), ring.device_uva(), ring.driver_uva());
        self.setup_ring(index, ring.size, 0x8000, addrs, enable);
    }
}

//! The vhost-user frontend handshake used by virtio-user, over rust-vmm's `Frontend`.
//!
//! [`negotiate`] agrees features with the backend; [`Session::setup`] then sends the memory
//! table and every vring. Errors name the step and the backend's answer.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use ferrovia_memory::registry::RegionInfo;
use ferrovia_virtqueue::layout::{bit, feature};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

/// Most regions a plain SET_MEM_TABLE may carry (vhost-user's fd limit for most backends).
pub const MAX_TABLE_REGIONS: usize = 8;

/// One vring to set up.
#[derive(Debug, Clone, Copy)]
pub struct VringSpec {
    /// Ring size.
    pub size: u16,
    /// Descriptor table address (our virtual address).
    pub desc: u64,
    /// Avail ring address.
    pub avail: u64,
    /// Used ring address.
    pub used: u64,
    /// Avail index the backend starts from.
    pub base: u16,
}

/// An established session.
pub struct Session {
    fe: Frontend,
    /// Negotiated virtio features.
    pub features: u64,
    /// Negotiated protocol features.
    pub protocol: VhostUserProtocolFeatures,
    path: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("features", &format_args!("{:#x}", self.features))
            .field("path", &self.path)
            .finish()
    }
}

fn step<T, E: std::fmt::Debug>(path: &str, what: &str, r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| {
        format!("{path}: vhost-user {what} failed: {e:?} (is the peer a vhost-user net backend?)")
    })
}

/// Agrees features with the backend on `stream`. `want` are the virtio features we would like;
/// the result is their intersection with the backend's offer. Fails if VERSION_1 is missing or
/// the backend has fewer queue pairs than `queue_pairs`.
pub fn negotiate(
    stream: UnixStream,
    path: &str,
    want: u64,
    queue_pairs: u16,
) -> Result<Session, String> {
    let mut fe = Frontend::from_stream(stream, queue_pairs as u64 * 2);
    step(path, "SET_OWNER", fe.set_owner())?;
    let offered = step(path, "GET_FEATURES", fe.get_features())?;
    let mut features = offered & want;
    if features & bit(feature::F_VERSION_1) == 0 {
        return Err(format!(
            "{path}: the backend does not offer VIRTIO_F_VERSION_1 (offered {offered:#x}); legacy virtio is not supported"
        ));
    }
    let mut protocol = VhostUserProtocolFeatures::empty();
    if features & bit(feature::VHOST_USER_F_PROTOCOL_FEATURES) != 0 {
        let theirs = step(path, "GET_PROTOCOL_FEATURES", fe.get_protocol_features())?;
        let ours = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS;
        protocol = theirs & ours;
        step(
            path,
            "SET_PROTOCOL_FEATURES",
            fe.set_protocol_features(protocol),
        )?;
    }
    if queue_pairs > 1 {
        if features & bit(feature::NET_F_MQ) == 0
            || !protocol.contains(VhostUserProtocolFeatures::MQ)
        {
            return Err(format!(
                "{path}: queues={queue_pairs} needs multiqueue, but the backend does not offer VIRTIO_NET_F_MQ; use queues=1 or enable queues on the backend"
            ));
        }
        // GET_QUEUE_NUM is not sent: rust-vmm's frontend would take its answer (queue pairs,
        // as QEMU and DPDK mean it) as a vring count and refuse our upper vrings. A backend with
        // too few queues refuses SET_VRING_* for them instead; `setup` explains that error.
    } else {
        features &= !bit(feature::NET_F_MQ);
    }
    step(path, "SET_FEATURES", fe.set_features(features))?;
    Ok(Session {
        fe,
        features,
        protocol,
        path: path.to_string(),
    })
}

impl Session {
    /// Sends the memory table and sets up every vring (index = position in `vrings`), then
    /// enables them.
    pub fn setup(
        &mut self,
        regions: &[RegionInfo],
        vrings: &[VringSpec],
        kicks: &[EventFd],
        calls: &[EventFd],
    ) -> Result<(), String> {
        let path = self.path.clone();
        let infos: Vec<VhostUserMemoryRegionInfo> = regions
            .iter()
            .map(|r| VhostUserMemoryRegionInfo {
                guest_phys_addr: r.addr,
                memory_size: r.len,
                userspace_addr: r.addr,
                mmap_offset: 0,
                mmap_handle: r.fd,
            })
            .collect();
        if infos.len() <= MAX_TABLE_REGIONS {
            step(&path, "SET_MEM_TABLE", self.fe.set_mem_table(&infos))?;
        } else if self
            .protocol
            .contains(VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS)
        {
            let slots = step(&path, "GET_MAX_MEM_SLOTS", self.fe.get_max_mem_slots())?;
            if infos.len() as u64 > slots {
                return Err(format!(
                    "{path}: {} memory regions but the backend accepts only {slots}; use fewer or larger mempools",
                    infos.len()
                ));
            }
            for i in &infos {
                step(&path, "ADD_MEM_REG", self.fe.add_mem_region(i))?;
            }
        } else {
            return Err(format!(
                "{path}: {} memory regions but the backend accepts at most {MAX_TABLE_REGIONS} and does not offer CONFIGURE_MEM_SLOTS; use fewer or larger mempools",
                infos.len()
            ));
        }
        for (i, v) in vrings.iter().enumerate() {
            self.fe.set_vring_num(i, v.size).map_err(|e| {
                format!(
                    "{path}: the backend refused vring {i} ({e:?}); does it have at least queues={}?",
                    vrings.len() / 2
                )
            })?;
            step(&path, "SET_VRING_BASE", self.fe.set_vring_base(i, v.base))?;
            let cfg = VringConfigData {
                queue_max_size: v.size,
                queue_size: v.size,
                flags: 0,
                desc_table_addr: v.desc,
                used_ring_addr: v.used,
                avail_ring_addr: v.avail,
                log_addr: None,
            };
            step(&path, "SET_VRING_ADDR", self.fe.set_vring_addr(i, &cfg))?;
            step(
                &path,
                "SET_VRING_KICK",
                self.fe.set_vring_kick(i, &kicks[i]),
            )?;
            step(
                &path,
                "SET_VRING_CALL",
                self.fe.set_vring_call(i, &calls[i]),
            )?;
        }
        if self.features & bit(feature::VHOST_USER_F_PROTOCOL_FEATURES) != 0 {
            for i in 0..vrings.len() {
                step(&path, "SET_VRING_ENABLE", self.fe.set_vring_enable(i, true))?;
            }
        }
        Ok(())
    }

    /// The socket, to watch for hang-ups.
    pub fn raw_fd(&self) -> i32 {
        self.fe.as_raw_fd()
    }
}

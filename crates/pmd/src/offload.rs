//! Checksum and segmentation offloads of the virtio ports (virtio-user and vhost): which
//! feature bits the application's offload configuration turns on, and the per-burst passes
//! that translate virtio-net headers to and from mbuf offload flags.
//!
//! Nothing here runs while no offload is negotiated: a queue checks once per burst whether
//! its connection negotiated any (`HdrAccept::any`) or its application enabled any Tx
//! offload, and otherwise takes the zero-header path unchanged.

use ferrovia_ethdev::{Burst, ErrorCause, PortConf, QueueStats, RxOffloads, TxOffloads};
use ferrovia_memory::{LcoreCaches, Mbuf, MbufCache};
use ferrovia_virtqueue::layout::{bit, feature};
use ferrovia_virtqueue::net_hdr::{HdrAccept, RxPolicy, rx_apply_in_front, tx_prepare};

/// Receive offloads a virtio port can do.
pub(crate) const RX_CAPA: RxOffloads = RxOffloads::TCP_CKSUM
    .union(RxOffloads::UDP_CKSUM)
    .union(RxOffloads::TCP_LRO)
    .union(RxOffloads::SCATTER);

/// Transmit offloads a virtio port can do (the IPv4 header checksum in software: the virtio
/// header has no field for it).
pub(crate) const TX_CAPA: TxOffloads = TxOffloads::IPV4_CKSUM
    .union(TxOffloads::TCP_CKSUM)
    .union(TxOffloads::UDP_CKSUM)
    .union(TxOffloads::TCP_TSO)
    .union(TxOffloads::MULTI_SEGS);

const CSUM: u64 = bit(feature::NET_F_CSUM);
const GUEST_CSUM: u64 = bit(feature::NET_F_GUEST_CSUM);
const HOST_TSO: u64 = bit(feature::NET_F_HOST_TSO4) | bit(feature::NET_F_HOST_TSO6);
const GUEST_TSO: u64 = bit(feature::NET_F_GUEST_TSO4) | bit(feature::NET_F_GUEST_TSO6);

fn rx_csum(rx: RxOffloads) -> bool {
    rx.intersects(RxOffloads::TCP_CKSUM | RxOffloads::UDP_CKSUM)
}

fn tx_csum(tx: TxOffloads) -> bool {
    tx.intersects(TxOffloads::TCP_CKSUM | TxOffloads::UDP_CKSUM)
}

/// Features a driver (virtio-user) asks for: Tx checksum → CSUM, TSO → CSUM + HOST_TSO4/6
/// (the device takes our partial checksums and large packets); Rx checksum → GUEST_CSUM,
/// LRO → GUEST_CSUM + GUEST_TSO4/6 (we take the device's).
pub(crate) fn driver_features(rx: RxOffloads, tx: TxOffloads) -> u64 {
    let mut f = 0;
    if tx_csum(tx) {
        f |= CSUM;
    }
    if tx.contains(TxOffloads::TCP_TSO) {
        f |= CSUM | HOST_TSO;
    }
    if rx_csum(rx) {
        f |= GUEST_CSUM;
    }
    if rx.contains(RxOffloads::TCP_LRO) {
        f |= GUEST_CSUM | GUEST_TSO;
    }
    f
}

/// Features a device (vhost) offers: the mirror of [`driver_features`]. Rx checksum → CSUM
/// and LRO → CSUM + HOST_TSO4/6 (the guest may send us partial checksums and large
/// packets, which our application takes as flags); Tx checksum → GUEST_CSUM, TSO →
/// GUEST_CSUM + GUEST_TSO4/6 (we may pass our application's requests to the guest).
pub(crate) fn device_features(rx: RxOffloads, tx: TxOffloads) -> u64 {
    let mut f = 0;
    if rx_csum(rx) {
        f |= CSUM;
    }
    if rx.contains(RxOffloads::TCP_LRO) {
        f |= CSUM | HOST_TSO;
    }
    if tx_csum(tx) {
        f |= GUEST_CSUM;
    }
    if tx.contains(TxOffloads::TCP_TSO) {
        f |= GUEST_CSUM | GUEST_TSO;
    }
    f
}

/// What the application accepts on receive.
pub(crate) fn rx_policy(conf: &PortConf) -> RxPolicy {
    RxPolicy {
        csum: rx_csum(conf.rx_offloads),
        lro: conf.rx_offloads.contains(RxOffloads::TCP_LRO),
    }
}

/// True when the application may set Tx offload flags on this port's packets.
pub(crate) fn tx_enabled(conf: &PortConf) -> bool {
    conf.tx_offloads
        .intersects(TX_CAPA.difference(TxOffloads::MULTI_SEGS))
}

/// Receive pass over `burst[start..]`: applies the virtio-net header each packet carries
/// `hdr_len` bytes in front of its data; a packet whose header is malformed (or asks for
/// what was not negotiated or accepted) is removed, freed and counted as `BadNetHdr`.
/// Returns how many were removed and their bytes.
pub(crate) fn rx_pass(
    burst: &mut Burst,
    start: usize,
    hdr_len: usize,
    acc: HdrAccept,
    pol: RxPolicy,
    cache: &mut MbufCache,
    stats: &QueueStats,
) -> (usize, usize) {
    remove_if(
        burst,
        start,
        stats,
        ErrorCause::BadNetHdr,
        |m| rx_apply_in_front(m, hdr_len, acc, pol).is_err(),
        |m| cache.free(m),
    )
}

/// Transmit pass over `burst`: does in software what the peer cannot ([`tx_prepare`]); a
/// packet asking for what neither can do is removed, freed and counted as
/// `OffloadUnsupported`.
pub(crate) fn tx_pass(
    burst: &mut Burst,
    peer: HdrAccept,
    cache: &mut MbufCache,
    stats: &QueueStats,
) {
    remove_if(
        burst,
        0,
        stats,
        ErrorCause::OffloadUnsupported,
        |m| tx_prepare(m, peer).is_err(),
        |m| cache.free(m),
    );
}

/// [`tx_pass`] for a port whose queues have no pool of their own (tap): refused packets go
/// back to their pools through the thread's caches.
pub(crate) fn tx_pass_any_pool(
    burst: &mut Burst,
    peer: HdrAccept,
    caches: &mut LcoreCaches,
    stats: &QueueStats,
) {
    remove_if(
        burst,
        0,
        stats,
        ErrorCause::OffloadUnsupported,
        |m| tx_prepare(m, peer).is_err(),
        |m| caches.free(m),
    );
}

/// Removes (keeping the order of the rest), frees with `free` and counts the packets of
/// `burst[start..]` for which `bad` is true. Returns how many were removed and their bytes.
fn remove_if(
    burst: &mut Burst,
    start: usize,
    stats: &QueueStats,
    cause: ErrorCause,
    mut bad: impl FnMut(&mut Mbuf) -> bool,
    mut free: impl FnMut(Mbuf),
) -> (usize, usize) {
    let mut i = start;
    let (mut n, mut bytes) = (0, 0);
    while i < burst.len() {
        if bad(&mut burst[i]) {
            let m = burst.remove(i);
            bytes += m.pkt_len();
            n += 1;
            free(m);
        } else {
            i += 1;
        }
    }
    if n > 0 {
        stats.error(cause, n as u64);
    }
    (n, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_mapping_mirrors() {
        let none = (RxOffloads::empty(), TxOffloads::empty());
        assert_eq!(driver_features(none.0, none.1), 0);
        assert_eq!(device_features(none.0, none.1), 0);
        // testpmd --tx-offloads=0x2c (IPv4/TCP checksum, TSO) --enable-lro.
        let tx = TxOffloads::from_bits_retain(0x2c);
        let rx = RxOffloads::TCP_LRO;
        assert_eq!(
            driver_features(rx, tx),
            CSUM | HOST_TSO | GUEST_CSUM | GUEST_TSO
        );
        assert_eq!(
            driver_features(RxOffloads::TCP_CKSUM, TxOffloads::empty()),
            GUEST_CSUM
        );
        assert_eq!(
            device_features(RxOffloads::TCP_CKSUM, TxOffloads::empty()),
            CSUM
        );
        assert_eq!(
            device_features(RxOffloads::empty(), TxOffloads::UDP_CKSUM),
            GUEST_CSUM
        );
        // IPv4 header checksum alone needs no feature (done in software).
        assert_eq!(
            driver_features(RxOffloads::empty(), TxOffloads::IPV4_CKSUM),
            0
        );
    }
}

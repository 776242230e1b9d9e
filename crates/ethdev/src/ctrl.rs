//! The virtio-net control queue's commands (virtio 1.2, 5.1.6.5): the requests a VF's driver
//! sends its device (MAC, VLAN filter, receive modes, queue pairs), typed.
//!
//! Pure: [`CtrlRequest::parse`] takes the device-readable bytes of one control chain (the
//! `{class, command}` header and the command's data) and returns the typed request or the
//! reason it is malformed; [`CtrlRequest::encode`] writes them, for a driver. Nothing here
//! allocates when parsing but a MAC table, whose size is capped by [`MAX_TABLE_MACS`].
//!
//! A port whose device side serves a control queue hands it out as a [`CtrlQueue`]
//! ([`crate::Port::ctrl_queue`]); the port's owner (the eswitch's PF) judges each request.

use crate::MacAddr;

/// `VIRTIO_NET_F_CTRL_VQ`: the device has a control queue.
pub const F_CTRL_VQ: u32 = 17;
/// `VIRTIO_NET_F_CTRL_RX`: receive-mode commands (promiscuous, all-multicast).
pub const F_CTRL_RX: u32 = 18;
/// `VIRTIO_NET_F_CTRL_VLAN`: VLAN filter commands.
pub const F_CTRL_VLAN: u32 = 19;
/// `VIRTIO_NET_F_CTRL_RX_EXTRA`: the extra receive-mode commands (all-unicast, no multicast,
/// no unicast, no broadcast).
pub const F_CTRL_RX_EXTRA: u32 = 20;
/// `VIRTIO_NET_F_CTRL_MAC_ADDR`: the MAC address command.
pub const F_CTRL_MAC_ADDR: u32 = 23;

/// The ack a device writes: `VIRTIO_NET_OK`.
pub const ACK_OK: u8 = 0;
/// The ack a device writes: `VIRTIO_NET_ERR`.
pub const ACK_ERR: u8 = 1;

/// Class `VIRTIO_NET_CTRL_RX`.
pub const CLASS_RX: u8 = 0;
/// Class `VIRTIO_NET_CTRL_MAC`.
pub const CLASS_MAC: u8 = 1;
/// Class `VIRTIO_NET_CTRL_VLAN`.
pub const CLASS_VLAN: u8 = 2;
/// Class `VIRTIO_NET_CTRL_MQ`.
pub const CLASS_MQ: u8 = 4;

/// Command `VIRTIO_NET_CTRL_MAC_TABLE_SET`.
pub const MAC_TABLE_SET: u8 = 0;
/// Command `VIRTIO_NET_CTRL_MAC_ADDR_SET`.
pub const MAC_ADDR_SET: u8 = 1;
/// Command `VIRTIO_NET_CTRL_VLAN_ADD`.
pub const VLAN_ADD: u8 = 0;
/// Command `VIRTIO_NET_CTRL_VLAN_DEL`.
pub const VLAN_DEL: u8 = 1;
/// Command `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`.
pub const MQ_VQ_PAIRS_SET: u8 = 0;

/// Most addresses one MAC table (unicast or multicast) may hold; a larger table is refused as
/// malformed (a NIC's filter is far smaller; Linux falls back to promiscuous long before).
pub const MAX_TABLE_MACS: usize = 64;

/// Most device-readable bytes a control chain may carry: the header and two full MAC tables.
pub const MAX_CTRL_BYTES: usize = 2 + 2 * (4 + 6 * MAX_TABLE_MACS);

/// A receive mode of class `VIRTIO_NET_CTRL_RX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RxMode {
    /// `PROMISC` (0): every unicast frame.
    Promisc,
    /// `ALLMULTI` (1): every multicast frame.
    AllMulti,
    /// `ALLUNI` (2): every unicast frame (`CTRL_RX_EXTRA`).
    AllUni,
    /// `NOMULTI` (3): no multicast (`CTRL_RX_EXTRA`).
    NoMulti,
    /// `NOUNI` (4): no unicast (`CTRL_RX_EXTRA`).
    NoUni,
    /// `NOBCAST` (5): no broadcast (`CTRL_RX_EXTRA`).
    NoBcast,
}

impl RxMode {
    /// The mode of command `cmd`, if it is one.
    pub fn from_cmd(cmd: u8) -> Option<RxMode> {
        Some(match cmd {
            0 => RxMode::Promisc,
            1 => RxMode::AllMulti,
            2 => RxMode::AllUni,
            3 => RxMode::NoMulti,
            4 => RxMode::NoUni,
            5 => RxMode::NoBcast,
            _ => return None,
        })
    }
    /// The command number.
    pub fn cmd(self) -> u8 {
        self as u8
    }
    /// The spec's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            RxMode::Promisc => "PROMISC",
            RxMode::AllMulti => "ALLMULTI",
            RxMode::AllUni => "ALLUNI",
            RxMode::NoMulti => "NOMULTI",
            RxMode::NoUni => "NOUNI",
            RxMode::NoBcast => "NOBCAST",
        }
    }
}

/// One control-queue request, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtrlRequest {
    /// `VIRTIO_NET_CTRL_RX`: turn a receive mode on or off.
    Rx {
        /// Which mode.
        mode: RxMode,
        /// On (data byte not 0) or off.
        on: bool,
    },
    /// `VIRTIO_NET_CTRL_MAC_ADDR_SET`: the device's (the VF's) MAC address.
    MacAddrSet(MacAddr),
    /// `VIRTIO_NET_CTRL_MAC_TABLE_SET`: the unicast and multicast addresses to receive beyond
    /// the device's own.
    MacTableSet {
        /// Extra unicast addresses.
        unicast: Vec<MacAddr>,
        /// Multicast addresses.
        multicast: Vec<MacAddr>,
    },
    /// `VIRTIO_NET_CTRL_VLAN_ADD`: receive this VLAN.
    VlanAdd(u16),
    /// `VIRTIO_NET_CTRL_VLAN_DEL`: stop receiving this VLAN.
    VlanDel(u16),
    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`: how many queue pairs the driver uses.
    MqPairs(u16),
}

/// Why a control chain's bytes are not a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlError {
    /// Fewer than the two header bytes.
    NoHeader,
    /// A class this device does not know.
    UnknownClass(u8),
    /// A command its class does not have.
    UnknownCommand {
        /// The class.
        class: u8,
        /// The command.
        cmd: u8,
    },
    /// The command's data is shorter or longer than the command needs.
    BadLength {
        /// The class.
        class: u8,
        /// The command.
        cmd: u8,
        /// Data bytes given (after the header).
        got: usize,
    },
    /// A MAC table holds more than [`MAX_TABLE_MACS`] addresses.
    TableTooLarge(u32),
    /// A VLAN id outside 0..=4095 (the spec's filter has 4096 entries).
    BadVlan(u16),
    /// More device-readable bytes than [`MAX_CTRL_BYTES`].
    TooLong,
}

impl std::fmt::Display for CtrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            CtrlError::NoHeader => write!(f, "a control chain shorter than its 2-byte header"),
            CtrlError::UnknownClass(c) => write!(f, "unknown control class {c}"),
            CtrlError::UnknownCommand { class, cmd } => {
                write!(f, "unknown command {cmd} of control class {class}")
            }
            CtrlError::BadLength { class, cmd, got } => write!(
                f,
                "control command {class}/{cmd} with {got} data bytes (not what it carries)"
            ),
            CtrlError::TableTooLarge(n) => write!(
                f,
                "a MAC table of {n} entries (at most {MAX_TABLE_MACS} are accepted)"
            ),
            CtrlError::BadVlan(v) => write!(f, "VLAN {v} is outside 0..4095"),
            CtrlError::TooLong => write!(
                f,
                "a control chain of more than {MAX_CTRL_BYTES} device-readable bytes"
            ),
        }
    }
}

impl std::error::Error for CtrlError {}

fn mac_at(d: &[u8], off: usize) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&d[off..off + 6]);
    MacAddr(m)
}

/// Reads one MAC table at the start of `d`: the addresses and the bytes it took.
fn table(d: &[u8]) -> Result<Option<(Vec<MacAddr>, usize)>, CtrlError> {
    let Some(n) = d.get(..4) else {
        return Ok(None);
    };
    let n = u32::from_le_bytes(n.try_into().expect("4 bytes"));
    if n as usize > MAX_TABLE_MACS {
        return Err(CtrlError::TableTooLarge(n));
    }
    let len = 4 + 6 * n as usize;
    if d.len() < len {
        return Ok(None);
    }
    Ok(Some((
        (0..n as usize).map(|i| mac_at(d, 4 + 6 * i)).collect(),
        len,
    )))
}

impl CtrlRequest {
    /// Parses the device-readable bytes of one control chain (header, then data).
    pub fn parse(b: &[u8]) -> Result<CtrlRequest, CtrlError> {
        if b.len() > MAX_CTRL_BYTES {
            return Err(CtrlError::TooLong);
        }
        let [class, cmd, data @ ..] = b else {
            return Err(CtrlError::NoHeader);
        };
        let (class, cmd) = (*class, *cmd);
        let bad = || CtrlError::BadLength {
            class,
            cmd,
            got: data.len(),
        };
        let exact = |n: usize| if data.len() == n { Ok(()) } else { Err(bad()) };
        match class {
            CLASS_RX => {
                let mode = RxMode::from_cmd(cmd).ok_or(CtrlError::UnknownCommand { class, cmd })?;
                exact(1)?;
                Ok(CtrlRequest::Rx {
                    mode,
                    on: data[0] != 0,
                })
            }
            CLASS_MAC => match cmd {
                MAC_ADDR_SET => {
                    exact(6)?;
                    Ok(CtrlRequest::MacAddrSet(mac_at(data, 0)))
                }
                MAC_TABLE_SET => {
                    let (unicast, a) = table(data)?.ok_or_else(bad)?;
                    let (multicast, b) = table(&data[a..])?.ok_or_else(bad)?;
                    if a + b != data.len() {
                        return Err(bad());
                    }
                    Ok(CtrlRequest::MacTableSet { unicast, multicast })
                }
                _ => Err(CtrlError::UnknownCommand { class, cmd }),
            },
            CLASS_VLAN => {
                if cmd != VLAN_ADD && cmd != VLAN_DEL {
                    return Err(CtrlError::UnknownCommand { class, cmd });
                }
                exact(2)?;
                let vid = u16::from_le_bytes([data[0], data[1]]);
                if vid > 4095 {
                    return Err(CtrlError::BadVlan(vid));
                }
                Ok(if cmd == VLAN_ADD {
                    CtrlRequest::VlanAdd(vid)
                } else {
                    CtrlRequest::VlanDel(vid)
                })
            }
            CLASS_MQ => {
                if cmd != MQ_VQ_PAIRS_SET {
                    return Err(CtrlError::UnknownCommand { class, cmd });
                }
                exact(2)?;
                Ok(CtrlRequest::MqPairs(u16::from_le_bytes([data[0], data[1]])))
            }
            _ => Err(CtrlError::UnknownClass(class)),
        }
    }

    /// Appends the request's header and data to `out`, as a driver sends them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            CtrlRequest::Rx { mode, on } => out.extend([CLASS_RX, mode.cmd(), *on as u8]),
            CtrlRequest::MacAddrSet(m) => {
                out.extend([CLASS_MAC, MAC_ADDR_SET]);
                out.extend(m.0);
            }
            CtrlRequest::MacTableSet { unicast, multicast } => {
                out.extend([CLASS_MAC, MAC_TABLE_SET]);
                for t in [unicast, multicast] {
                    out.extend((t.len() as u32).to_le_bytes());
                    for m in t {
                        out.extend(m.0);
                    }
                }
            }
            CtrlRequest::VlanAdd(v) => {
                out.extend([CLASS_VLAN, VLAN_ADD]);
                out.extend(v.to_le_bytes());
            }
            CtrlRequest::VlanDel(v) => {
                out.extend([CLASS_VLAN, VLAN_DEL]);
                out.extend(v.to_le_bytes());
            }
            CtrlRequest::MqPairs(n) => {
                out.extend([CLASS_MQ, MQ_VQ_PAIRS_SET]);
                out.extend(n.to_le_bytes());
            }
        }
    }

    /// A short description for logs and events, e.g. `MAC_ADDR_SET 02:00:00:00:00:01`.
    pub fn describe(&self) -> String {
        match self {
            CtrlRequest::Rx { mode, on } => {
                format!("RX {} {}", mode.name(), if *on { "on" } else { "off" })
            }
            CtrlRequest::MacAddrSet(m) => format!("MAC_ADDR_SET {m}"),
            CtrlRequest::MacTableSet { unicast, multicast } => format!(
                "MAC_TABLE_SET ({} unicast, {} multicast)",
                unicast.len(),
                multicast.len()
            ),
            CtrlRequest::VlanAdd(v) => format!("VLAN_ADD {v}"),
            CtrlRequest::VlanDel(v) => format!("VLAN_DEL {v}"),
            CtrlRequest::MqPairs(n) => format!("MQ_VQ_PAIRS_SET {n}"),
        }
    }
}

/// What one control chain held, as a device's control queue hands it to its judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtrlInput {
    /// A well-formed request with a writable ack byte.
    Request(CtrlRequest),
    /// Bytes that are not a request (the device acks `VIRTIO_NET_ERR` if it can).
    Malformed(CtrlError),
    /// A chain the device could not read (a descriptor outside the driver's memory, a loop,
    /// an index out of range, a bad indirect table) or with no device-writable ack byte; no
    /// ack is written, the chain is returned as used with length 0. The text says which.
    BadChain(&'static str),
}

/// The device side of a control queue, handed to the port's owner
/// ([`crate::Port::ctrl_queue`]), which polls it off the data path.
pub trait CtrlQueue: Send {
    /// Serves at most `max` pending chains: each goes to `judge`, whose answer (`true`:
    /// `VIRTIO_NET_OK`, `false`: `VIRTIO_NET_ERR`) is written as its ack where the chain has
    /// an ack byte; then the chains are returned to the driver. Returns how many were served.
    ///
    /// `judge` runs while the queue is in use: a control thread that reconfigures it (the
    /// peer reconnecting, a new memory table) waits until `serve` returns, so a judge should
    /// take milliseconds at most (the eswitch's applies a policy snapshot the switch thread
    /// picks up in microseconds).
    fn serve(&mut self, max: usize, judge: &mut dyn FnMut(CtrlInput) -> bool) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &CtrlRequest) -> Vec<u8> {
        let mut v = Vec::new();
        r.encode(&mut v);
        v
    }

    #[test]
    fn parses_each_command() {
        let m = MacAddr([2, 0, 0, 0, 0, 9]);
        for r in [
            CtrlRequest::Rx {
                mode: RxMode::Promisc,
                on: true,
            },
            CtrlRequest::Rx {
                mode: RxMode::NoBcast,
                on: false,
            },
            CtrlRequest::MacAddrSet(m),
            CtrlRequest::MacTableSet {
                unicast: vec![m],
                multicast: vec![MacAddr([1, 0, 0x5e, 0, 0, 1]), m],
            },
            CtrlRequest::MacTableSet {
                unicast: vec![],
                multicast: vec![],
            },
            CtrlRequest::VlanAdd(10),
            CtrlRequest::VlanDel(4095),
            CtrlRequest::MqPairs(2),
        ] {
            assert_eq!(CtrlRequest::parse(&enc(&r)), Ok(r));
        }
        assert_eq!(
            CtrlRequest::parse(&[1, 1, 2, 0, 0, 0, 0, 9]),
            Ok(CtrlRequest::MacAddrSet(m))
        );
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(CtrlRequest::parse(&[]), Err(CtrlError::NoHeader));
        assert_eq!(CtrlRequest::parse(&[0]), Err(CtrlError::NoHeader));
        assert_eq!(CtrlRequest::parse(&[9, 0]), Err(CtrlError::UnknownClass(9)));
        assert_eq!(
            CtrlRequest::parse(&[0, 6, 1]),
            Err(CtrlError::UnknownCommand { class: 0, cmd: 6 })
        );
        assert_eq!(
            CtrlRequest::parse(&[1, 7]),
            Err(CtrlError::UnknownCommand { class: 1, cmd: 7 })
        );
        assert_eq!(
            CtrlRequest::parse(&[0, 0]),
            Err(CtrlError::BadLength {
                class: 0,
                cmd: 0,
                got: 0
            })
        );
        assert!(matches!(
            CtrlRequest::parse(&[1, 1, 1, 2, 3]),
            Err(CtrlError::BadLength { .. })
        ));
        // A table claiming 65 entries.
        assert_eq!(
            CtrlRequest::parse(&[1, 0, 65, 0, 0, 0]),
            Err(CtrlError::TableTooLarge(65))
        );
        // A table claiming more entries than present; trailing bytes.
        assert!(matches!(
            CtrlRequest::parse(&[1, 0, 1, 0, 0, 0, 1, 2]),
            Err(CtrlError::BadLength { .. })
        ));
        assert!(matches!(
            CtrlRequest::parse(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]),
            Err(CtrlError::BadLength { .. })
        ));
        assert_eq!(
            CtrlRequest::parse(&[2, 0, 0x00, 0x10]),
            Err(CtrlError::BadVlan(4096))
        );
        assert_eq!(
            CtrlRequest::parse(&vec![1u8; MAX_CTRL_BYTES + 1]),
            Err(CtrlError::TooLong)
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn mac() -> impl Strategy<Value = MacAddr> {
            any::<[u8; 6]>().prop_map(MacAddr)
        }

        fn request() -> impl Strategy<Value = CtrlRequest> {
            prop_oneof![
                (0u8..6, any::<bool>()).prop_map(|(c, on)| CtrlRequest::Rx {
                    mode: RxMode::from_cmd(c).expect("0..6"),
                    on
                }),
                mac().prop_map(CtrlRequest::MacAddrSet),
                (
                    proptest::collection::vec(mac(), 0..=MAX_TABLE_MACS),
                    proptest::collection::vec(mac(), 0..=MAX_TABLE_MACS)
                )
                    .prop_map(|(unicast, multicast)| CtrlRequest::MacTableSet {
                        unicast,
                        multicast
                    }),
                (0u16..4096).prop_map(CtrlRequest::VlanAdd),
                (0u16..4096).prop_map(CtrlRequest::VlanDel),
                any::<u16>().prop_map(CtrlRequest::MqPairs),
            ]
        }

        proptest! {
            #[test]
            fn round_trip(r in request()) {
                prop_assert_eq!(CtrlRequest::parse(&enc(&r)), Ok(r));
            }

            #[test]
            fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1024)) {
                if let Ok(r) = CtrlRequest::parse(&b) {
                    // Whatever parses encodes back to the same bytes (one form per request,
                    // except RX's data byte, any non-zero value meaning on).
                    let e = enc(&r);
                    if b[0] != CLASS_RX {
                        prop_assert_eq!(e, b);
                    }
                }
            }

            #[test]
            fn cut_requests_are_refused(r in request(), cut in 0usize..800) {
                let e = enc(&r);
                let k = cut % e.len();
                prop_assert!(CtrlRequest::parse(&e[..k]).is_err());
            }
        }
    }
}

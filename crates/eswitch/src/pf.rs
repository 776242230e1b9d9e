//! `net_eswitch`: the software NIC as a PF port, for applications (testpmd) that set VF policy
//! the way they would on a NIC with SR-IOV (`set vf ...`, DPDK's `rte_pmd_*_set_vf_*`).
//!
//! Opening `net_eswitch0,vfs=4,sock_dir=/run/nic0,uplink=vhost:/run/nic0/wire.sock` starts an
//! [`Eswitch`] with VFs `vf0` .. `vf3` on vhost-user sockets in `sock_dir` (containers attach
//! with virtio-user), and one more switch port for the PF itself: the PF port's own traffic
//! goes through the switch like a VF's, with a trusted policy (its MAC, every receive mode,
//! no anti-spoofing), over an internal vhost-user pair (`sock_dir/pf.sock`). The switch runs
//! one polling thread of its own.
//!
//! The VFs start enabled with VFd's default policy (a MAC of `02:fe:00:00:00:<vf>`, anti-
//! spoofing on); [`VfControl`] changes them one setting at a time, each change checked as a
//! VFd configuration file is, and in force for the next frame.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ferrovia_ethdev::{
    Devargs, DriverSpec, Error, KeySpec, Link, Port, PortConf, PortInfo, PortStats, Result,
    RxModeFlag, RxQueue, TxQueue, VfControl, VfRequestPolicy, VfSetting, VfStats,
};

use crate::veb::{DROP_CAUSES, Eswitch, EswitchConfig, VfSpec};
use crate::vfconfig::{Limits, QueueShare, RequestPolicy, Share, VfConfig};

/// The devargs keys of `net_eswitch`.
const KEYS: &[KeySpec] = &[
    KeySpec::number("vfs", 1, 63, "number of VFs").default_value("4"),
    KeySpec::number(
        "vf_queues",
        1,
        8,
        "queue pairs of each VF (its traffic classes: set vf tc tx min-bandwidth)",
    )
    .default_value("1"),
    KeySpec::path(
        "sock_dir",
        "directory of the VF sockets vf<N>.sock (created if missing)",
    )
    .default_value("/tmp/ferrovia-eswitch-<pid>-<port>"),
    KeySpec::text(
        "uplink",
        "the wire: null (a sink), vhost:<socket path> (a vhost-user server socket) or af_packet:<interface>",
    )
    .default_value("null"),
    KeySpec::flag(
        "tx_loopback",
        "1: frames between two VFs stay inside the NIC; 0: they go out of the uplink",
    )
    .default_value("1"),
    KeySpec::number("line_rate", 1, 10_000_000, "line rate in Mbit/s (the ceiling of rate limits)")
        .default_value("10000"),
    KeySpec::MAC,
];

/// The `net_eswitch` driver, to register with `ferrovia_pmd::register` (testpmd does).
pub static DRIVER: DriverSpec = DriverSpec {
    name: "net_eswitch",
    aliases: &["eth_eswitch"],
    summary: "a software NIC with SR-IOV: this port is the PF, its VFs are vhost-user sockets, `set vf ...` sets their policy",
    keys: KEYS,
    open: |d, c| Ok(Box::new(PfPort::open(d, c)?)),
};

/// The PF port.
pub struct PfPort {
    name: String,
    inner: Box<dyn Port>,
    control: Arc<PfControl>,
}

fn cfg(e: String) -> Error {
    Error::Config(e)
}

/// The uplink's devargs from the `uplink=` value.
fn uplink_devargs(v: &str, dir: &std::path::Path, id: u16) -> Result<String> {
    match v.split_once(':') {
        None if v == "null" => Ok(format!("net_null{id},no-rx=1")),
        Some(("vhost", p)) if !p.is_empty() => Ok(format!("net_vhost{id},iface={p}")),
        Some(("af_packet", i)) if !i.is_empty() => Ok(format!("net_af_packet{id},iface={i}")),
        _ => Err(Error::Config(format!(
            "uplink={v}: say null, vhost:<socket path> or af_packet:<interface> (e.g. uplink=vhost:{}/wire.sock)",
            dir.display()
        ))),
    }
}

impl PfPort {
    /// Starts the switch and connects the PF's own port to it.
    pub fn open(d: &Devargs, conf: &PortConf) -> Result<PfPort> {
        let nvf = d.number("vfs", 4, 1, 63)? as u32;
        let vf_queues = d.number("vf_queues", 1, 1, 8)?;
        let line_rate_mbps = d.number("line_rate", 10_000, 1, 10_000_000)? as f64;
        let dir = match d.get("sock_dir") {
            Some(p) => PathBuf::from(p),
            None => std::env::temp_dir().join(format!(
                "ferrovia-eswitch-{}-{}",
                std::process::id(),
                conf.port_id
            )),
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Config(format!(
                "{}: cannot create sock_dir {}: {e} (choose a writable directory)",
                d.name,
                dir.display()
            ))
        })?;
        let mac = d.mac_or_derived(conf.port_id)?;
        // Internal port numbers, apart from the application's.
        let base = 9000 + conf.port_id.saturating_mul(100) % 50_000;
        let uplink = uplink_devargs(d.get("uplink").unwrap_or("null"), &dir, base)?;
        let limits = Limits {
            max_vfs: nvf + 1,
            line_rate_mbps,
        };
        let mut vfs = Vec::new();
        for i in 0..nvf {
            let config = VfConfig::parse(
                &format!(r#"{{"name":"vf{i}","vfid":{i}}}"#),
                &d.name,
                &limits,
            )
            .map_err(cfg)?;
            vfs.push(VfSpec {
                devargs: format!(
                    "net_vhost{},iface={},queues={vf_queues},ctrl-vq=1",
                    base + 1 + i as u16,
                    dir.join(format!("vf{i}.sock")).display()
                ),
                config,
                enabled: true,
            });
        }
        let pf_sock = dir.join("pf.sock");
        let _ = std::fs::remove_file(&pf_sock);
        let pf_policy = format!(
            r#"{{"name":"pf","vfid":{nvf},"macs":["{mac}"],"allow_bcast":true,"allow_mcast":true,"allow_un_ucast":true,"allow_untagged":true,"mac_anti_spoof":false,"vlan_anti_spoof":false}}"#
        );
        vfs.push(VfSpec {
            devargs: format!("net_vhost{},iface={}", base + 99, pf_sock.display()),
            config: VfConfig::parse(&pf_policy, &d.name, &limits).map_err(cfg)?,
            enabled: true,
        });
        let sw = Eswitch::start(&EswitchConfig {
            uplink: uplink.clone(),
            vfs,
            tx_loopback: d.flag("tx_loopback", true)?,
            mbufs: 8192,
        })
        .map_err(|e| Error::Config(format!("{}: {e}", d.name)))?;
        let inner = ferrovia_pmd::open(
            &format!(
                "net_virtio_user{},path={},mac={mac}",
                base + 98,
                pf_sock.display()
            ),
            conf,
        )?;
        log::info!(
            "{}: software NIC with {nvf} VFs on {}/vf<N>.sock, uplink {uplink}",
            d.name,
            dir.display()
        );
        Ok(PfPort {
            name: d.name.clone(),
            inner,
            control: Arc::new(PfControl {
                sw,
                nvf: nvf as u16,
                line_rate_mbps,
                baselines: Mutex::new(vec![VfStats::default(); nvf as usize]),
            }),
        })
    }
}

impl Port for PfPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "net_eswitch",
            name: self.name.clone(),
            ..self.inner.info()
        }
    }
    fn start(&mut self) -> Result<()> {
        self.inner.start()
    }
    fn stop(&mut self) -> Result<()> {
        self.inner.stop()
    }
    fn link(&self) -> Link {
        self.inner.link()
    }
    fn stats(&self) -> PortStats {
        self.inner.stats()
    }
    fn xstats(&self) -> Vec<(String, u64)> {
        self.inner.xstats()
    }
    fn reset_stats(&self) {
        self.inner.reset_stats()
    }
    fn rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>> {
        self.inner.rx_queue(q)
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        self.inner.tx_queue(q)
    }
    fn vf_control(&self) -> Option<Arc<dyn VfControl>> {
        Some(self.control.clone())
    }
}

/// The VF side of the PF port.
pub struct PfControl {
    sw: Eswitch,
    nvf: u16,
    line_rate_mbps: f64,
    /// Each VF's raw counters at its last reset.
    baselines: Mutex<Vec<VfStats>>,
}

impl PfControl {
    fn check_vf(&self, vf: u16) -> Result<()> {
        if vf >= self.nvf {
            return Err(Error::Config(format!(
                "VF {vf} does not exist: this PF has VFs 0..{}",
                self.nvf - 1
            )));
        }
        Ok(())
    }

    fn raw_stats(&self, vf: u16) -> VfStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = self.sw.counters(vf as u32).expect("checked VF");
        let sum = |a: &[std::sync::atomic::AtomicU64; DROP_CAUSES]| {
            a.iter().map(|x| x.load(Relaxed)).sum::<u64>()
        };
        VfStats {
            rx_packets: c.rx_packets.load(Relaxed),
            rx_bytes: c.rx_bytes.load(Relaxed),
            rx_dropped: sum(&c.rx_dropped),
            tx_packets: c.tx_packets.load(Relaxed),
            tx_bytes: c.tx_bytes.load(Relaxed),
            tx_dropped: sum(&c.tx_dropped),
            requests: c.requests.load(Relaxed),
            req_allowed: c.req_allowed.load(Relaxed),
            req_denied: c.req_denied.load(Relaxed),
            req_rate_limited: c.req_rate_limited.load(Relaxed),
            req_malformed: c.req_malformed.load(Relaxed),
        }
    }
}

fn vlan_ok(v: u16) -> Result<u16> {
    if (1..=4094).contains(&v) {
        Ok(v)
    } else {
        Err(Error::Config(format!("VLAN {v} is outside 1..4094")))
    }
}

impl VfControl for PfControl {
    fn num_vfs(&self) -> u16 {
        self.nvf
    }

    fn vf_set(&self, vf: u16, setting: VfSetting) -> Result<()> {
        self.check_vf(vf)?;
        if let VfSetting::Rx(on) | VfSetting::Tx(on) = setting {
            let (rx, tx) = self.sw.enabled(vf as u32).expect("checked VF");
            let (rx, tx) = match setting {
                VfSetting::Rx(_) => (on, tx),
                _ => (rx, on),
            };
            return self.sw.set_enabled(vf as u32, rx, tx).map_err(cfg);
        }
        let mut c = self.sw.config(vf as u32).expect("checked VF");
        match setting {
            VfSetting::Mac(m) => {
                if c.macs.is_empty() {
                    c.macs.push(m);
                } else {
                    c.macs[0] = m;
                }
            }
            VfSetting::AddMac(m) => {
                if !c.macs.contains(&m) {
                    c.macs.push(m);
                }
            }
            VfSetting::MacAntiSpoof(on) => c.mac_anti_spoof = on,
            VfSetting::VlanAntiSpoof(on) => c.vlan_anti_spoof = on,
            VfSetting::VlanInsert(Some(v)) => {
                c.vlans = vec![vlan_ok(v)?];
                c.strip_stag = true;
            }
            // The port VLAN goes away with its insertion (as a NIC's port VLAN does).
            VfSetting::VlanInsert(None) => {
                if c.strip_stag {
                    c.vlans.clear();
                }
                c.strip_stag = false;
            }
            VfSetting::VlanStrip(on) => c.strip_ctag = on,
            VfSetting::VlanFilter { vlan, on } => {
                let v = vlan_ok(vlan)?;
                if on {
                    if !c.vlans.contains(&v) {
                        if c.strip_stag && !c.vlans.is_empty() {
                            return Err(Error::Config(format!(
                                "VF {vf} inserts VLAN {} on send: it cannot also admit VLAN {v} (set vf vlan insert {vf} 0 first)",
                                c.vlans[0]
                            )));
                        }
                        c.vlans.push(v);
                        c.vlans.sort_unstable();
                    }
                } else {
                    c.vlans.retain(|&x| x != v);
                }
            }
            VfSetting::RxMode(flag, on) => match flag {
                RxModeFlag::Aupe => c.allow_untagged = on,
                RxModeFlag::Rope => c.allow_un_ucast = on,
                RxModeFlag::Bam => c.allow_bcast = on,
                RxModeFlag::Mpe => c.allow_mcast = on,
            },
            VfSetting::MaxBandwidthMbps(0) => c.rate_mbps = None,
            VfSetting::MaxBandwidthMbps(r) => {
                if r as f64 > self.line_rate_mbps {
                    return Err(Error::Config(format!(
                        "VF {vf}: a rate of {r} Mbit/s is above the line rate ({} Mbit/s)",
                        self.line_rate_mbps
                    )));
                }
                c.rate_mbps = Some(r as f64);
            }
            VfSetting::TcMinBandwidth { shares, count } => {
                let used = &shares[..(count as usize).min(8)];
                let total: u32 = used.iter().map(|&b| b as u32).sum();
                if !used.is_empty() && total != 100 {
                    return Err(Error::Config(format!(
                        "VF {vf}: the traffic classes' minimum bandwidths add up to {total} %, not 100 %"
                    )));
                }
                c.queues = used
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| QueueShare {
                        priority: i as u8,
                        share: Share::Number(b as f64),
                    })
                    .collect();
            }
            VfSetting::Requests(p) => {
                c.vf_requests = match p {
                    VfRequestPolicy::Allow => RequestPolicy::Allow,
                    VfRequestPolicy::Deny => RequestPolicy::Deny,
                    VfRequestPolicy::Log => RequestPolicy::Log,
                }
            }
            VfSetting::Rx(_) | VfSetting::Tx(_) => unreachable!("handled above"),
        }
        self.sw
            .set_policy(c)
            .map_err(|e| Error::Config(format!("VF {vf}: {e}")))
    }

    fn set_tx_loopback(&self, on: bool) -> Result<()> {
        self.sw.set_tx_loopback(on).map_err(cfg)
    }

    fn vf_stats(&self, vf: u16) -> Result<VfStats> {
        self.check_vf(vf)?;
        let now = self.raw_stats(vf);
        let b = self.baselines.lock().unwrap_or_else(|p| p.into_inner())[vf as usize];
        Ok(VfStats {
            rx_packets: now.rx_packets - b.rx_packets,
            rx_bytes: now.rx_bytes - b.rx_bytes,
            rx_dropped: now.rx_dropped - b.rx_dropped,
            tx_packets: now.tx_packets - b.tx_packets,
            tx_bytes: now.tx_bytes - b.tx_bytes,
            tx_dropped: now.tx_dropped - b.tx_dropped,
            requests: now.requests - b.requests,
            req_allowed: now.req_allowed - b.req_allowed,
            req_denied: now.req_denied - b.req_denied,
            req_rate_limited: now.req_rate_limited - b.req_rate_limited,
            req_malformed: now.req_malformed - b.req_malformed,
        })
    }

    fn vf_stats_reset(&self, vf: u16) -> Result<()> {
        self.check_vf(vf)?;
        let now = self.raw_stats(vf);
        self.baselines.lock().unwrap_or_else(|p| p.into_inner())[vf as usize] = now;
        Ok(())
    }
}

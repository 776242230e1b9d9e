//! The vRouter: router interfaces on bridges, static routes, ARP and ICMP echo.
//!
//! (Being written: the L3 path lands with the `ferrovia-route` crate.)

use std::net::Ipv4Addr;
use std::sync::Arc;

use ferrovia_memory::{LcoreCaches, Mbuf, Mempool};

use crate::config::RouterInterfaceConfig;
use crate::error::{SwitchError, SwitchResult};

use crate::counters::DropCause;
use crate::frame::L2Header;
use crate::pipeline::BurstCtx;

/// One router interface: an address on a bridge's VLAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterInterface {
    /// Bridge id.
    pub bridge: u16,
    /// VLAN on that bridge.
    pub vlan: u16,
    /// The interface's MAC address.
    pub mac: [u8; 6],
    /// IPv4 address (host order).
    pub ip: u32,
    /// Prefix length of the connected subnet.
    pub prefix_len: u8,
}

/// The data-path view of the router.
#[derive(Debug, Default)]
pub struct RouterView {
    /// Interfaces.
    pub interfaces: Vec<RouterInterface>,
}

impl RouterView {
    /// True when `mac` on `vlan` is one of the router's interface addresses.
    #[inline]
    pub fn owns_mac(&self, mac: &[u8; 6], vlan: u16) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.vlan == vlan && &i.mac == mac)
    }
}

/// What the router did with a frame.
pub enum RouteResult {
    /// Forward the rewritten frame on a bridge's VLAN to a MAC.
    Forward {
        /// The frame.
        m: Mbuf,
        /// Egress bridge.
        bridge: u16,
        /// Egress VLAN.
        vlan: u16,
        /// Destination MAC (the next hop).
        dst: [u8; 6],
    },
    /// Send the (rewritten) frame back out of its ingress port.
    Reply {
        /// The frame.
        m: Mbuf,
    },
    /// Dropped (and freed).
    Dropped(DropCause),
}

/// Routes one frame addressed to the router.
pub fn route(
    _r: &RouterView,
    _cx: BurstCtx<'_>,
    caches: &mut LcoreCaches,
    _pool: &Mempool,
    m: Mbuf,
    _h: &L2Header,
    _vlan: u16,
) -> RouteResult {
    caches.free(m);
    RouteResult::Dropped(DropCause::RouterUnhandled)
}

/// Parses `a.b.c.d/len`.
pub fn parse_prefix(s: &str) -> Result<(u32, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not an IPv4 prefix (write it as 10.0.1.0/24)"))?;
    let ip: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{a:?} in {s:?} is not an IPv4 address"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|&l| l <= 32)
        .ok_or_else(|| format!("prefix length {l:?} in {s:?} is not 0..=32"))?;
    Ok((u32::from(ip), len))
}

/// The netmask of a prefix length.
#[inline]
pub fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

struct Interface {
    name: String,
    cfg: RouterInterface,
}

struct Route {
    prefix: u32,
    len: u8,
    via: u32,
}

/// The router's control-side state: interfaces, routes and neighbours.
#[derive(Default)]
pub struct RouterState {
    interfaces: Vec<Interface>,
    routes: Vec<Route>,
    next_mac: u32,
}

impl RouterState {
    /// True when a router interface sits on `bridge`.
    pub fn on_bridge(&self, bridge: u16) -> bool {
        self.interfaces.iter().any(|i| i.cfg.bridge == bridge)
    }

    /// Adds an interface.
    pub fn add_interface(&mut self, c: &RouterInterfaceConfig, bridge: u16) -> SwitchResult<()> {
        if self.interfaces.iter().any(|i| i.name == c.name) {
            return Err(SwitchError::Exists {
                kind: "router interface",
                name: c.name.clone(),
            });
        }
        if c.vlan > crate::vlan::MAX_VID {
            return Err(SwitchError::Invalid(format!(
                "router interface {}: VLAN {} is out of range (use 0..=4094)",
                c.name, c.vlan
            )));
        }
        let (ip, len) = parse_prefix(&c.address)
            .map_err(|e| SwitchError::Invalid(format!("router interface {}: {e}", c.name)))?;
        if len == 0 || len > 30 {
            return Err(SwitchError::Invalid(format!(
                "router interface {}: prefix length /{len} leaves no room for hosts (use /1 to /30)",
                c.name
            )));
        }
        if let Some(o) = self
            .interfaces
            .iter()
            .find(|i| (i.cfg.ip ^ ip) & mask(i.cfg.prefix_len.min(len)) == 0)
        {
            return Err(SwitchError::Invalid(format!(
                "router interface {}: {} overlaps interface {} ({}/{})",
                c.name,
                c.address,
                o.name,
                Ipv4Addr::from(o.cfg.ip),
                o.cfg.prefix_len
            )));
        }
        let mac = match &c.mac {
            Some(m) => {
                m.parse::<ferrovia_ethdev::MacAddr>()
                    .map_err(|e| SwitchError::Invalid(format!("router interface {}: {e}", c.name)))?
                    .0
            }
            None => {
                self.next_mac += 1;
                let n = self.next_mac.to_be_bytes();
                [0x02, 0xfe, n[0], n[1], n[2], n[3]]
            }
        };
        self.interfaces.push(Interface {
            name: c.name.clone(),
            cfg: RouterInterface {
                bridge,
                vlan: c.vlan,
                mac,
                ip,
                prefix_len: len,
            },
        });
        Ok(())
    }

    /// Deletes an interface (and the routes through it).
    pub fn del_interface(&mut self, name: &str) -> SwitchResult<()> {
        let i = self
            .interfaces
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| SwitchError::NotFound {
                kind: "router interface",
                name: name.into(),
                hint: "list them with show routes".into(),
            })?;
        let gone = self.interfaces.remove(i);
        let m = mask(gone.cfg.prefix_len);
        self.routes.retain(|r| (r.via ^ gone.cfg.ip) & m != 0);
        Ok(())
    }

    /// Adds (or replaces) a static route.
    pub fn add_route(&mut self, prefix: &str, via: &str) -> SwitchResult<()> {
        let (p, len) = parse_prefix(prefix).map_err(SwitchError::Invalid)?;
        if p & !mask(len) != 0 {
            return Err(SwitchError::Invalid(format!(
                "route {prefix} has host bits set (did you mean {}/{len}?)",
                Ipv4Addr::from(p & mask(len))
            )));
        }
        let gw: Ipv4Addr = via
            .parse()
            .map_err(|_| SwitchError::Invalid(format!("gateway {via:?} is not an IPv4 address")))?;
        let gw = u32::from(gw);
        if self.connected(gw).is_none() {
            return Err(SwitchError::Invalid(format!(
                "gateway {via} is not on the subnet of any router interface (add an interface on its subnet first)"
            )));
        }
        self.routes.retain(|r| !(r.prefix == p && r.len == len));
        self.routes.push(Route {
            prefix: p,
            len,
            via: gw,
        });
        Ok(())
    }

    /// Deletes a static route.
    pub fn del_route(&mut self, prefix: &str) -> SwitchResult<()> {
        let (p, len) = parse_prefix(prefix).map_err(SwitchError::Invalid)?;
        let before = self.routes.len();
        self.routes.retain(|r| !(r.prefix == p && r.len == len));
        if self.routes.len() == before {
            return Err(SwitchError::NotFound {
                kind: "route",
                name: prefix.into(),
                hint: "list them with show routes".into(),
            });
        }
        Ok(())
    }

    fn connected(&self, ip: u32) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| (i.cfg.ip ^ ip) & mask(i.cfg.prefix_len) == 0)
    }

    /// The data-path view for `bridge` (None when the router has no interface on it).
    pub fn view_for(&self, bridge: u16) -> Option<Arc<RouterView>> {
        if !self.on_bridge(bridge) {
            return None;
        }
        Some(Arc::new(RouterView {
            interfaces: self.interfaces.iter().map(|i| i.cfg.clone()).collect(),
        }))
    }

    /// Interfaces and routes as JSON (`show routes`).
    pub fn show(&self, bridge_name: &dyn Fn(u16) -> String) -> serde_json::Value {
        let mac = |m: [u8; 6]| ferrovia_ethdev::MacAddr(m).to_string();
        serde_json::json!({
            "interfaces": self.interfaces.iter().map(|i| serde_json::json!({
                "name": i.name,
                "bridge": bridge_name(i.cfg.bridge),
                "vlan": i.cfg.vlan,
                "address": format!("{}/{}", Ipv4Addr::from(i.cfg.ip), i.cfg.prefix_len),
                "mac": mac(i.cfg.mac),
            })).collect::<Vec<_>>(),
            "routes": self.interfaces.iter().map(|i| serde_json::json!({
                "prefix": format!("{}/{}", Ipv4Addr::from(i.cfg.ip & mask(i.cfg.prefix_len)), i.cfg.prefix_len),
                "via": "connected",
                "interface": i.name,
            })).chain(self.routes.iter().map(|r| serde_json::json!({
                "prefix": format!("{}/{}", Ipv4Addr::from(r.prefix), r.len),
                "via": Ipv4Addr::from(r.via).to_string(),
                "interface": self.connected(r.via).map(|i| i.name.clone()),
            }))).collect::<Vec<_>>(),
        })
    }
}

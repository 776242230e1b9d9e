//! The vRouter: router interfaces on bridges' VLANs, connected and static routes in a
//! DIR-24-8 table, ARP (answers for its addresses, resolves next hops, learns neighbours),
//! ICMP echo replies on its addresses, TTL decrement with an incremental checksum update.
//!
//! Data path: a frame reaches [`route`] when its destination MAC is a router interface's MAC
//! on the frame's VLAN; a broadcast ARP also goes to [`arp_snoop`] besides being flooded. The
//! router's answers go back out of the ingress port; routed frames are switched on the egress
//! interface's bridge and VLAN like any other frame. Neighbours are learned on the control
//! thread (from ARP and from the sources of routed packets, through the same queue as MAC
//! learning) and published in the next snapshot, so the data path reads them without locks.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ferrovia_memory::{LcoreCaches, Mbuf, Mempool};
use ferrovia_route::{arp, ipv4, lpm};

use crate::config::RouterInterfaceConfig;
use crate::counters::DropCause;
use crate::counters::PmdCounters;
use crate::error::{SwitchError, SwitchResult};
use crate::frame::{self, ETH_P_ARP, ETH_P_IPV4, L2Header};
use crate::learn::LearnRequest;

/// One router interface: an address on a bridge's VLAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterInterface {
    /// The interface's id (never reused while the switch runs; next hops refer to it).
    pub id: u16,
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

/// Where a route leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Id of the egress interface ([`RouterInterface::id`]).
    pub iface: u16,
    /// The gateway (host order), or 0 for a connected route (the destination itself).
    pub gateway: u32,
}

/// The data-path view of the router (one per snapshot, shared by its bridges).
#[derive(Debug)]
pub struct RouterView {
    /// Interfaces.
    pub interfaces: Vec<RouterInterface>,
    /// Next hops by id (the values in the LPM table).
    pub next_hops: Vec<Option<NextHop>>,
    /// The route table.
    pub lpm: lpm::LpmReader,
    /// Resolved neighbours: IPv4 (host order) → MAC.
    pub neighbours: HashMap<u32, [u8; 6]>,
}

impl RouterView {
    /// True when `mac` on `vlan` of `bridge` is one of the router's interface addresses.
    #[inline]
    pub fn owns_mac(&self, bridge: u16, mac: &[u8; 6], vlan: u16) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.bridge == bridge && i.vlan == vlan && &i.mac == mac)
    }

    fn iface_on(&self, bridge: u16, vlan: u16) -> Option<&RouterInterface> {
        self.interfaces
            .iter()
            .find(|i| i.bridge == bridge && i.vlan == vlan)
    }
}

/// What the router did with a frame.
pub enum RouteResult {
    /// Forward the rewritten (untagged) frame on a bridge's VLAN to a MAC.
    Forward {
        /// The frame.
        m: Mbuf,
        /// Egress bridge.
        bridge: u16,
        /// Egress VLAN.
        vlan: u16,
        /// Destination MAC (the next hop, or broadcast for an ARP request).
        dst: [u8; 6],
    },
    /// Send the (rewritten) frame back out of its ingress port, tag as it came.
    Reply {
        /// The frame.
        m: Mbuf,
    },
    /// Dropped (and freed).
    Dropped(DropCause),
}

/// Per-PMD router state: which next hops this thread asked for recently.
#[derive(Debug)]
pub struct ArpLimiter {
    recent: [(u32, u32); 64],
}

impl Default for ArpLimiter {
    fn default() -> ArpLimiter {
        ArpLimiter {
            recent: [(0, u32::MAX); 64],
        }
    }
}

impl ArpLimiter {
    /// True when an ARP request for `ip` may go out at second `now` (one per address per
    /// second per thread).
    fn allow(&mut self, ip: u32, now: u32) -> bool {
        let slot = &mut self.recent[(ip.wrapping_mul(0x9e37_79b9) >> 26) as usize];
        if *slot == (ip, now) {
            return false;
        }
        *slot = (ip, now);
        true
    }
}

/// Context the router needs from the pipeline.
pub struct RouteCtx<'a> {
    /// The FDB clock (seconds).
    pub now: u32,
    /// This thread's counters.
    pub counters: &'a PmdCounters,
    /// Ingress bridge id.
    pub bridge: u16,
    /// Ingress port slot.
    pub in_slot: u16,
    /// The frame's VLAN.
    pub vlan: u16,
    /// Pool for frames the router makes.
    pub pool: &'a Mempool,
    /// This thread's ARP rate limiter.
    pub arp: &'a mut ArpLimiter,
    /// Where neighbour learning requests go.
    pub learn: &'a crossbeam_queue::ArrayQueue<LearnRequest>,
}

fn learn_neighbour(rc: &RouteCtx<'_>, r: &RouterView, ip: u32, mac: [u8; 6]) {
    if mac[0] & 1 != 0 || r.neighbours.get(&ip) == Some(&mac) {
        return;
    }
    let connected = r
        .interfaces
        .iter()
        .any(|i| (i.ip ^ ip) & mask(i.prefix_len) == 0 && i.ip != ip);
    if connected && rc.learn.push(LearnRequest::Neighbour { ip, mac }).is_err() {
        rc.counters.own.learn_queue_full.add(1);
    }
}

/// Looks at a broadcast ARP frame flooded on a bridge with a router interface: learns the
/// sender, and returns the reply when the request is for the interface's address.
pub fn arp_snoop(
    r: &RouterView,
    rc: &mut RouteCtx<'_>,
    caches: &mut LcoreCaches,
    m: &Mbuf,
    h: &L2Header,
) -> Option<Mbuf> {
    let iface = r.iface_on(rc.bridge, rc.vlan)?;
    let p = arp::parse(m.data(), h.l3_offset).ok()?;
    learn_neighbour(rc, r, u32::from(p.sender_ip), p.sender_mac);
    if p.op != arp::ArpOp::Request || u32::from(p.target_ip) != iface.ip {
        return None;
    }
    let mut reply = crate::frame::copy_mbuf(caches, rc.pool, m)?;
    let ok = arp::reply_in_place(reply.data_mut(), h.l3_offset, iface.mac, |ip| {
        u32::from(ip) == iface.ip
    });
    match ok {
        Ok(true) => Some(reply),
        _ => {
            caches.free(reply);
            None
        }
    }
}

/// Routes one frame addressed to a router interface's MAC.
pub fn route(
    r: &RouterView,
    rc: &mut RouteCtx<'_>,
    caches: &mut LcoreCaches,
    mut m: Mbuf,
    h: &L2Header,
) -> RouteResult {
    let drop = |caches: &mut LcoreCaches, m: Mbuf, c: DropCause| {
        caches.free(m);
        RouteResult::Dropped(c)
    };
    let Some(iface) = r.iface_on(rc.bridge, rc.vlan) else {
        return drop(caches, m, DropCause::RouterUnhandled);
    };
    let l3 = h.l3_offset;
    match h.ethertype {
        ETH_P_ARP => {
            let Ok(p) = arp::parse(m.data(), l3) else {
                return drop(caches, m, DropCause::BadL3);
            };
            learn_neighbour(rc, r, u32::from(p.sender_ip), p.sender_mac);
            match arp::reply_in_place(m.data_mut(), l3, iface.mac, |ip| u32::from(ip) == iface.ip) {
                Ok(true) => RouteResult::Reply { m },
                Ok(false) => drop(caches, m, DropCause::RouterUnhandled),
                Err(_) => drop(caches, m, DropCause::BadL3),
            }
        }
        ETH_P_IPV4 => {
            if m.nb_segs() != 1 {
                return drop(caches, m, DropCause::RouterUnhandled);
            }
            let (src, dst) = match ipv4::Ipv4Header::parse(m.data(), l3) {
                Ok(ip) => (ip.src(), ip.dst()),
                Err(_) => return drop(caches, m, DropCause::BadL3),
            };
            // Glean: the sender of a packet from a connected subnet is a neighbour.
            learn_neighbour(rc, r, src, h.src);
            if let Some(me) = r.interfaces.iter().find(|i| i.ip == dst) {
                // For the router itself: only ICMP echo is answered.
                if ipv4::icmp_echo_reply(m.data_mut(), l3).is_err() {
                    return drop(caches, m, DropCause::RouterUnhandled);
                }
                let d = m.data_mut();
                d.copy_within(6..12, 0);
                d[6..12].copy_from_slice(&me.mac);
                return RouteResult::Reply { m };
            }
            forward(r, rc, caches, m, h, dst)
        }
        _ => drop(caches, m, DropCause::RouterUnhandled),
    }
}

fn forward(
    r: &RouterView,
    rc: &mut RouteCtx<'_>,
    caches: &mut LcoreCaches,
    mut m: Mbuf,
    h: &L2Header,
    dst: u32,
) -> RouteResult {
    let Some(nh) = r
        .lpm
        .lookup(dst)
        .and_then(|id| r.next_hops.get(id as usize).copied().flatten())
    else {
        caches.free(m);
        return RouteResult::Dropped(DropCause::NoRoute);
    };
    let Some(out) = r.interfaces.iter().find(|i| i.id == nh.iface) else {
        caches.free(m);
        return RouteResult::Dropped(DropCause::NoRoute);
    };
    let target = if nh.gateway == 0 { dst } else { nh.gateway };
    let Some(&mac) = r.neighbours.get(&target) else {
        caches.free(m);
        if rc.arp.allow(target, rc.now)
            && let Some(req) = arp_request(caches, rc.pool, out, target)
        {
            // The packet is dropped (counted here) and the request goes out instead.
            rc.counters.ports[rc.in_slot as usize].drop(DropCause::ArpMiss, 1);
            return RouteResult::Forward {
                m: req,
                bridge: out.bridge,
                vlan: out.vlan,
                dst: [0xff; 6],
            };
        }
        return RouteResult::Dropped(DropCause::ArpMiss);
    };
    match ipv4::decrement_ttl(m.data_mut(), h.l3_offset) {
        Ok(_) => {}
        Err(ipv4::Ipv4Error::TtlExpired(_)) => {
            caches.free(m);
            return RouteResult::Dropped(DropCause::TtlExpired);
        }
        Err(_) => {
            caches.free(m);
            return RouteResult::Dropped(DropCause::BadL3);
        }
    }
    if h.vid.is_some() && !frame::pop_vlan(&mut m) {
        caches.free(m);
        return RouteResult::Dropped(DropCause::BadL3);
    }
    let d = m.data_mut();
    d[0..6].copy_from_slice(&mac);
    d[6..12].copy_from_slice(&out.mac);
    RouteResult::Forward {
        m,
        bridge: out.bridge,
        vlan: out.vlan,
        dst: mac,
    }
}

fn arp_request(
    caches: &mut LcoreCaches,
    pool: &Mempool,
    out: &RouterInterface,
    target: u32,
) -> Option<Mbuf> {
    let mut m = caches.for_pool(pool).alloc()?;
    let buf = m.append(arp::MIN_FRAME_LEN)?;
    let n = arp::build_request(
        buf,
        None,
        out.mac,
        Ipv4Addr::from(out.ip),
        Ipv4Addr::from(target),
    )
    .ok()?;
    m.set_data_len(n);
    m.set_pkt_len(n);
    Some(m)
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

/// The router's control-side state: interfaces, routes and neighbours, and the writer of
/// the route table.
pub struct RouterState {
    interfaces: Vec<Interface>,
    routes: Vec<Route>,
    neighbours: HashMap<u32, [u8; 6]>,
    lpm: lpm::LpmWriter,
    reader: lpm::LpmReader,
    /// Next hops as last published (the LPM values index this).
    next_hops: Vec<Option<NextHop>>,
    next_mac: u32,
    next_id: u16,
}

impl Default for RouterState {
    fn default() -> RouterState {
        let (lpm, reader) = lpm::new(lpm::DEFAULT_TBL8_GROUPS).expect("default LPM size is valid");
        RouterState {
            interfaces: Vec::new(),
            routes: Vec::new(),
            neighbours: HashMap::new(),
            lpm,
            reader,
            next_hops: Vec::new(),
            next_mac: 0,
            next_id: 0,
        }
    }
}

/// Most neighbours the router keeps.
pub const MAX_NEIGHBOURS: usize = 65536;

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
                id: {
                    self.next_id = self.next_id.wrapping_add(1);
                    self.next_id
                },
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
        self.neighbours.retain(|ip, _| (ip ^ gone.cfg.ip) & m != 0);
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

    /// Forgets every learned neighbour (`ferrovia-ctl` has no command for it yet; tests and the
    /// fuzz harness start each case from an empty table).
    pub fn clear_neighbours(&mut self) {
        self.neighbours.clear();
    }

    /// Records a neighbour; true when the table changed.
    pub fn learn_neighbour(&mut self, ip: u32, mac: [u8; 6]) -> bool {
        if self.connected(ip).is_none() || self.interfaces.iter().any(|i| i.cfg.ip == ip) {
            return false;
        }
        if self.neighbours.len() >= MAX_NEIGHBOURS && !self.neighbours.contains_key(&ip) {
            return false;
        }
        self.neighbours.insert(ip, mac) != Some(mac)
    }

    /// Recomputes next hops and the route table from interfaces and routes. Returns the
    /// next-hop table to publish *before* the table changes take effect for readers that
    /// look up new ids; ids of removed next hops stay valid (as None) until the next sync.
    pub fn sync_table(&mut self) -> SwitchResult<()> {
        // Wanted: (prefix, len) -> next hop.
        let mut want: Vec<(u32, u8, NextHop)> = Vec::new();
        for i in &self.interfaces {
            want.push((
                i.cfg.ip & mask(i.cfg.prefix_len),
                i.cfg.prefix_len,
                NextHop {
                    iface: i.cfg.id,
                    gateway: 0,
                },
            ));
        }
        for r in &self.routes {
            if let Some(i) = self.connected(r.via) {
                want.push((
                    r.prefix,
                    r.len,
                    NextHop {
                        iface: i.cfg.id,
                        gateway: r.via,
                    },
                ));
            }
        }
        // Next-hop ids: reuse equal entries, else append (ids are never reused within a
        // publish, so a reader with an older snapshot never maps an id to a wrong hop).
        let mut hops: Vec<Option<NextHop>> = self.next_hops.clone();
        let mut ids = Vec::with_capacity(want.len());
        for (_, _, nh) in &want {
            let id = match hops.iter().position(|h| h.as_ref() == Some(nh)) {
                Some(id) => id,
                None => {
                    hops.push(Some(*nh));
                    hops.len() - 1
                }
            };
            ids.push(id as u32);
        }
        let existing: Vec<(u32, u8)> = self.lpm.rules().map(|r| (r.prefix, r.len)).collect();
        for (p, l) in existing {
            if !want.iter().any(|w| w.0 == p && w.1 == l) {
                let _ = self.lpm.del(p, l);
            }
        }
        for ((p, l, _), id) in want.iter().zip(&ids) {
            if self.lpm.get(*p, *l) != Some(*id) {
                self.lpm
                    .add(*p, *l, *id)
                    .map_err(|e| SwitchError::Full(format!("route table: {e}")))?;
            }
        }
        // Forget hops no route uses any more (their ids become None, not reused until a
        // later sync compacts; the table is small).
        for (id, h) in hops.iter_mut().enumerate() {
            if !ids.contains(&(id as u32)) {
                *h = None;
            }
        }
        self.next_hops = hops;
        Ok(())
    }

    /// Frees route-table memory released by deletions; call only after every PMD thread
    /// applied the snapshot published after the change (see `ferrovia_route::lpm`).
    pub fn reclaim(&mut self) {
        self.lpm.reclaim();
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
            next_hops: self.next_hops.clone(),
            lpm: self.reader.clone(),
            neighbours: self.neighbours.clone(),
        }))
    }

    /// Interfaces and routes as JSON (`show routes`).
    pub fn show(&self, bridge_name: &dyn Fn(u16) -> String) -> serde_json::Value {
        let mac = |m: [u8; 6]| ferrovia_ethdev::MacAddr(m).to_string();
        let mut n: Vec<_> = self.neighbours.iter().collect();
        n.sort();
        let neighbours: Vec<serde_json::Value> = n
            .into_iter()
            .map(|(ip, m)| {
                serde_json::json!({
                    "ip": Ipv4Addr::from(*ip).to_string(),
                    "mac": mac(*m),
                })
            })
            .collect();
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
            "neighbours": neighbours,
        })
    }
}

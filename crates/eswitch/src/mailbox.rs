//! VF → PF requests: each VF's virtio-net control queue, served as a NIC's PF serves its VFs'
//! mailbox messages.
//!
//! A VF's driver asks for a MAC, a VLAN in its filter or a receive mode over its control
//! queue. The eswitch's mailbox thread (not the switch thread: the data path never waits for
//! it) takes each request and judges it by the VF's `vf_requests`:
//! - `allow`: the request is applied to the VF's policy (through the same path as a PF
//!   command: a new snapshot the switch thread picks up before the ack) and acked OK;
//! - `deny` (the default): acked `VIRTIO_NET_ERR`, the policy unchanged;
//! - `log`: as `allow`, and the request and the policy it changed are written to the log.
//!
//! Every request is counted on the VF (`requests`, `allowed`, `denied`, `rate_limited`,
//! `malformed`). Before any judgement each VF's requests pass a token bucket (a burst of
//! [`REQUEST_BURST`], then `vf_request_rate` per second): over it, the request is acked
//! `VIRTIO_NET_ERR` and counted as `rate_limited`, with no other work. The thread serves at
//! most [`PER_ROUND`] chains of one VF before it turns to the next, so a flooding VF delays
//! the others by at most that many cheap refusals.

use std::time::{Duration, Instant};

use ferrovia_ethdev::MacAddr;
use ferrovia_ethdev::ctrl::{CtrlRequest, RxMode};

use crate::policy::MAX_MACS;
use crate::vfconfig::{REQUEST_BURST, VfConfig};

/// Most control chains of one VF served before the next VF's.
pub const PER_ROUND: usize = 8;

/// How long the thread sleeps after a round with no request.
pub const IDLE_SLEEP: Duration = Duration::from_millis(1);

/// A VF's request budget: a token bucket of [`REQUEST_BURST`] requests.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(now: Instant) -> Bucket {
        Bucket {
            tokens: REQUEST_BURST,
            last: now,
        }
    }

    /// Takes one request's token at `rate` per second; false when there is none.
    pub fn take(&mut self, rate: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(REQUEST_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The policy a request asks for, from the VF's current one; an error says why it cannot be
/// granted (the VEB's limits, or a request the policy cannot express).
pub fn requested(cfg: &VfConfig, req: &CtrlRequest) -> Result<VfConfig, String> {
    let mut c = cfg.clone();
    match req {
        CtrlRequest::MacAddrSet(m) => {
            check_unicast(m)?;
            c.macs.retain(|x| x != m);
            if c.macs.is_empty() {
                c.macs.push(*m);
            } else {
                c.macs[0] = *m;
            }
        }
        CtrlRequest::MacTableSet { unicast, multicast } => {
            let primary = cfg.macs.first().copied();
            let mut macs: Vec<MacAddr> = primary.into_iter().collect();
            for m in unicast {
                check_unicast(m)?;
                if !macs.contains(m) {
                    macs.push(*m);
                }
            }
            if macs.len() > MAX_MACS {
                return Err(format!(
                    "{} unicast addresses: the VF's filter holds at most {MAX_MACS}",
                    macs.len()
                ));
            }
            if primary.is_none() && !unicast.is_empty() {
                return Err(
                    "the VF has no MAC of its own yet; set it first (MAC_ADDR_SET)".to_string(),
                );
            }
            if let Some(m) = multicast.iter().find(|m| m.0[0] & 1 == 0) {
                return Err(format!("{m} in the multicast table is not multicast"));
            }
            c.macs = macs;
            // The VEB has no per-group filter: a multicast table lets all multicast in.
            if !multicast.is_empty() {
                c.allow_mcast = true;
            }
        }
        CtrlRequest::VlanAdd(v) | CtrlRequest::VlanDel(v) if !(1..=4094).contains(v) => {
            return Err(format!("VLAN {v} is outside 1..4094"));
        }
        CtrlRequest::VlanAdd(v) => {
            // A VF that had no VLAN keeps its untagged traffic when it adds one to its filter.
            if c.vlans.is_empty() {
                c.allow_untagged = true;
            }
            if !c.vlans.contains(v) {
                c.vlans.push(*v);
                c.vlans.sort_unstable();
            }
            if c.vlans.len() > 1 && c.strip_stag {
                return Err(format!(
                    "VLAN {v}: the VF's port VLAN {} is stripped (strip_stag), so it cannot filter more VLANs",
                    cfg.vlans.first().copied().unwrap_or(0)
                ));
            }
        }
        CtrlRequest::VlanDel(v) => {
            c.vlans.retain(|x| x != v);
            if c.strip_stag && c.vlans.is_empty() {
                return Err(format!(
                    "VLAN {v} is the VF's port VLAN (strip_stag); only the PF removes it"
                ));
            }
        }
        CtrlRequest::Rx { mode, on } => match mode {
            RxMode::Promisc | RxMode::AllUni => c.allow_un_ucast = *on,
            RxMode::AllMulti => c.allow_mcast = *on,
            RxMode::NoMulti => c.allow_mcast = !*on,
            RxMode::NoBcast => c.allow_bcast = !*on,
            RxMode::NoUni => {
                if *on {
                    return Err("NOUNI on: the VEB always delivers the VF's own unicast".into());
                }
            }
        },
        CtrlRequest::MqPairs(n) => {
            if *n == 0 {
                return Err("0 queue pairs".into());
            }
        }
    }
    Ok(c)
}

fn check_unicast(m: &MacAddr) -> Result<(), String> {
    if m.is_zero() || m.0[0] & 1 != 0 {
        return Err(format!("{m} is not a unicast address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfconfig::{Limits, RequestPolicy};

    fn cfg(json: &str) -> VfConfig {
        VfConfig::parse(
            json,
            "t.json",
            &Limits {
                max_vfs: 4,
                line_rate_mbps: 10_000.0,
            },
        )
        .unwrap()
    }

    #[test]
    fn maps_requests_to_policy() {
        let c = cfg(r#"{"name":"a","vfid":1,"macs":["02:00:00:00:01:01"]}"#);
        assert_eq!(c.vf_requests, RequestPolicy::Deny);
        let m = MacAddr([2, 0, 0, 0, 1, 9]);
        let n = requested(&c, &CtrlRequest::MacAddrSet(m)).unwrap();
        assert_eq!(n.macs, vec![m]);
        assert!(requested(&c, &CtrlRequest::MacAddrSet(MacAddr([1, 0, 0, 0, 0, 1]))).is_err());
        let n = requested(&c, &CtrlRequest::VlanAdd(10)).unwrap();
        assert_eq!(n.vlans, vec![10]);
        assert!(requested(&c, &CtrlRequest::VlanAdd(4095)).is_err());
        let n = requested(
            &c,
            &CtrlRequest::Rx {
                mode: RxMode::Promisc,
                on: true,
            },
        )
        .unwrap();
        assert!(n.allow_un_ucast);
        let n = requested(
            &c,
            &CtrlRequest::Rx {
                mode: RxMode::NoBcast,
                on: false,
            },
        )
        .unwrap();
        assert!(n.allow_bcast);
        let t = CtrlRequest::MacTableSet {
            unicast: (0..MAX_MACS as u8)
                .map(|i| MacAddr([2, 0, 0, 0, 2, i]))
                .collect(),
            multicast: vec![],
        };
        assert!(requested(&c, &t).is_err(), "primary + 16 > 16");
        let s = cfg(r#"{"name":"a","vfid":1,"vlans":[10],"strip_stag":true}"#);
        assert!(requested(&s, &CtrlRequest::VlanAdd(20)).is_err());
        assert!(requested(&s, &CtrlRequest::VlanDel(10)).is_err());
    }

    #[test]
    fn bucket_paces() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        let n = (0..1000).filter(|_| b.take(100.0, t0)).count();
        assert_eq!(n, REQUEST_BURST as usize);
        assert!(b.take(100.0, t0 + Duration::from_millis(20)));
    }
}

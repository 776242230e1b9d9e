//! The capture wrapper every registry-opened port wears: it forwards each call to the driver
//! and gives each queue handle its [`QueueTap`].

use std::sync::Arc;

use ferrovia_memory::LcoreCaches;

use crate::burst::Burst;
use crate::error::Result;
use crate::port::{Link, LinkAdmin, Port, PortInfo, RxQueue, TxQueue};
use crate::stats::PortStats;
use crate::tap::{PortTap, QueueTap};

/// Wraps a driver's port so that its queues can be captured at run time
/// ([`Port::capture_point`] then returns its [`PortTap`]). A port that is already wrapped
/// is returned as it is.
pub fn wrap(port: Box<dyn Port>, port_id: u16) -> Box<dyn Port> {
    if port.capture_point().is_some() {
        return port;
    }
    let i = port.info();
    let tap = Arc::new(PortTap::new(
        port_id,
        &i.name,
        i.max_frame_size,
        i.nb_rx_queues,
        i.nb_tx_queues,
    ));
    Box::new(CapturePort { inner: port, tap })
}

struct CapturePort {
    inner: Box<dyn Port>,
    tap: Arc<PortTap>,
}

impl Port for CapturePort {
    fn info(&self) -> PortInfo {
        self.inner.info()
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
    fn link_admin(&self) -> Option<Arc<dyn LinkAdmin>> {
        self.inner.link_admin()
    }
    fn set_link_up(&mut self) -> Result<()> {
        self.inner.set_link_up()
    }
    fn set_link_down(&mut self) -> Result<()> {
        self.inner.set_link_down()
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
        let inner = self.inner.rx_queue(q)?;
        Ok(match self.tap.rx(q) {
            Some(t) => Box::new(TapRx {
                tap: t.clone(),
                inner,
            }),
            None => inner,
        })
    }
    fn tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>> {
        let inner = self.inner.tx_queue(q)?;
        Ok(match self.tap.tx(q) {
            Some(t) => Box::new(TapTx {
                tap: t.clone(),
                inner,
            }),
            None => inner,
        })
    }
    fn set_promisc(&mut self, on: bool) -> Result<()> {
        self.inner.set_promisc(on)
    }
    fn set_allmulti(&mut self, on: bool) -> Result<()> {
        self.inner.set_allmulti(on)
    }
    fn set_mac(&mut self, mac: crate::MacAddr) -> Result<()> {
        self.inner.set_mac(mac)
    }
    fn vlan_filter(&mut self, vlan: u16, on: bool) -> Result<()> {
        self.inner.vlan_filter(vlan, on)
    }
    fn ctrl_queue(&mut self) -> Option<Box<dyn crate::ctrl::CtrlQueue>> {
        self.inner.ctrl_queue()
    }
    fn capture_point(&self) -> Option<Arc<PortTap>> {
        Some(self.tap.clone())
    }
    fn vf_control(&self) -> Option<Arc<dyn crate::VfControl>> {
        self.inner.vf_control()
    }
}

/// A receive queue with its capture point.
struct TapRx {
    tap: Arc<QueueTap>,
    inner: Box<dyn RxQueue>,
}

impl RxQueue for TapRx {
    #[inline]
    fn rx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst, max: usize) -> usize {
        let n = self.inner.rx_burst(caches, pkts, max);
        // THE HOOK (receive): one relaxed load per burst while no capture is armed.
        if self.tap.armed() && n > 0 {
            self.tap.capture_rx(&pkts[pkts.len() - n..]);
        }
        n
    }
}

/// A transmit queue with its capture point.
struct TapTx {
    tap: Arc<QueueTap>,
    inner: Box<dyn TxQueue>,
}

impl TxQueue for TapTx {
    #[inline]
    fn tx_burst(&mut self, caches: &mut LcoreCaches, pkts: &mut Burst) -> usize {
        // THE HOOK (transmit): one relaxed load per burst while no capture is armed.
        if !self.tap.armed() {
            return self.inner.tx_burst(caches, pkts);
        }
        let inner = &mut self.inner;
        self.tap.capture_tx(pkts, |p| inner.tx_burst(caches, p))
    }
}

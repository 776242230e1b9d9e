//! Port events delivered to the application: link up/down and queue state changes.
//!
//! DPDK applications register a callback per event type (`rte_eth_dev_callback_register`);
//! here a [`PortConf`](crate::PortConf) carries an [`EventSink`], either a callback or the
//! sending end of a channel made by [`channel`]. Events are produced on the process's control
//! thread when a peer connects, disconnects, or enables or disables a vring, so the data path
//! never has to poll for them. A callback must return quickly (it runs on the control thread
//! that serves every port).

use std::sync::Arc;
use std::sync::mpsc;

/// What happened to a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortEventKind {
    /// The link came up: the peer is attached and queue pair 0 can move packets.
    LinkUp,
    /// The link went down: the peer left, or disabled queue pair 0.
    LinkDown,
    /// The peer made one queue usable (`enabled`) or unusable.
    QueueState {
        /// Queue index.
        queue: u16,
        /// True for the Rx queue of that index, false for the Tx queue.
        rx: bool,
        /// Usable now.
        enabled: bool,
    },
}

/// An event of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortEvent {
    /// The port's id (`PortConf::port_id`).
    pub port_id: u16,
    /// What happened.
    pub kind: PortEventKind,
}

impl std::fmt::Display for PortEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            PortEventKind::LinkUp => write!(f, "port {}: link up", self.port_id),
            PortEventKind::LinkDown => write!(f, "port {}: link down", self.port_id),
            PortEventKind::QueueState { queue, rx, enabled } => write!(
                f,
                "port {}: {} queue {queue} {}",
                self.port_id,
                if rx { "rx" } else { "tx" },
                if enabled { "enabled" } else { "disabled" }
            ),
        }
    }
}

/// Where a port's events go. Cheap to clone; shared by every port that is given it.
#[derive(Clone)]
pub struct EventSink(Arc<dyn Fn(PortEvent) + Send + Sync>);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl EventSink {
    /// Events go to `f` (called on the control thread; keep it short).
    pub fn callback(f: impl Fn(PortEvent) + Send + Sync + 'static) -> EventSink {
        EventSink(Arc::new(f))
    }

    /// Delivers one event.
    pub fn emit(&self, port_id: u16, kind: PortEventKind) {
        (self.0)(PortEvent { port_id, kind })
    }
}

/// A sink that queues events for a receiver (dropped silently once the receiver is gone).
pub fn channel() -> (EventSink, mpsc::Receiver<PortEvent>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let sink = EventSink::callback(move |e| {
        let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(e);
    });
    (sink, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_delivers_in_order_and_displays() {
        let (sink, rx) = channel();
        sink.emit(3, PortEventKind::LinkUp);
        sink.emit(
            3,
            PortEventKind::QueueState {
                queue: 1,
                rx: true,
                enabled: false,
            },
        );
        let a = rx.try_recv().unwrap();
        assert_eq!(a.to_string(), "port 3: link up");
        assert_eq!(
            rx.try_recv().unwrap().to_string(),
            "port 3: rx queue 1 disabled"
        );
        assert!(rx.try_recv().is_err());
    }
}

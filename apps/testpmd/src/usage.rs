//! `testpmd -h`/`--help` and `--vdev help`: what a newcomer reads first.

use crate::eal;
use crate::opts;

/// The usage text: EAL options, application options, and the registered drivers with their
/// devargs keys (from the driver registry, so it lists exactly what this build can open).
pub fn usage(prog: &str) -> String {
    let mut s = format!(
        "\
Usage: {prog} [EAL options] -- [testpmd options]

EAL options:
  -l, --lcores LIST         lcores to use: 0-3, 0,2,3, 1@0 (lcore 1 on CPU 0), (2,3)@1;
                            the first is the main (control) lcore, the others forward
  -c MASK                   lcores as a hex mask (0x3)
  --main-lcore N            the main lcore (default: the first one)
  --vdev DEVARGS            add a port: NAME[,key=value...], e.g. net_vhost0,iface=/tmp/sock0
                            (repeatable; port ids follow the order); --vdev help lists the
                            drivers and their keys
  --file-prefix NAME        telemetry socket directory: <runtime dir>/dpdk/NAME (default rte;
                            runtime dir /var/run for root, else $XDG_RUNTIME_DIR or /tmp)
  --no-telemetry            no DPDK telemetry socket (dpdk-telemetry.py -f NAME queries it)
  -a, -w, --allow PCI[,...]  add a port on a virtio-net PCI device (net_virtio_pci: bound to
                            uio_pci_generic, root, hugepages; see docs/user-guide.md);
                            PCI ports come first, then --vdev ones
  -b PCI                    accepted, ignored (only -a devices are used)
  -h, --help                this text
  accepted with no effect (with a value):
{}
  accepted with no effect:
{}

testpmd options (after --):
  -i, --interactive         interactive prompt (type help there)
  -a, --auto-start          start forwarding at once in interactive mode
  --forward-mode=MODE       {}
  --nb-cores=N              forwarding cores to use
  --portmask=MASK           ports to forward on (hex)
  --port-topology=T         paired, chained or loop
  --rxq=N, --txq=N          queues per port (1..128)
  --rxd=N, --txd=N          descriptors per queue (1..32768)
  --burst=N                 packets per burst (1..512)
  --txpkts=LEN[,LEN...]     segment lengths of generated frames
  --tx-first                send one txonly burst per stream before forwarding
  --stats-period=N          print port statistics every N seconds
  --total-num-mbufs=N       mbufs in the pool
  --eth-peer=PORT,MAC       destination MAC for frames sent on PORT
  --max-pkt-len=N           largest frame to receive (64..65535)
  --mbuf-size=N             mbuf size including 128 bytes of headroom
  --record-burst-stats      show burst-size spreads at stop
  --record-core-cycles      show CPU cycles per packet at stop
  --metrics=ADDR:PORT       serve Prometheus metrics at http://ADDR:PORT/metrics (off by default)
  --rx-offloads=0xN         Rx offloads of every port (RTE_ETH_RX_OFFLOAD_* bits)
  --tx-offloads=0xN         Tx offloads of every port (RTE_ETH_TX_OFFLOAD_* bits, e.g. 0x2c)
  --enable-rx-cksum         Rx checksum offload (IPv4, UDP, TCP)
  --enable-lro              large receive offload (virtio ports: GUEST_TSO / HOST_TSO)
  -h, --help                this text
  accepted with no effect:
{}
  accepted with no effect (with a value):
{}

",
        wrap(eal::IGNORED_WITH_VALUE),
        wrap(eal::IGNORED_FLAGS),
        ferrovia_fwd::MODES.join(", "),
        wrap(opts::IGNORED_FLAGS),
        wrap(opts::IGNORED_WITH_VALUE),
    );
    s.push_str(&drivers());
    s
}

/// `words` separated by spaces, in lines of at most 100 columns indented by 28.
fn wrap(words: &[&str]) -> String {
    const INDENT: usize = 28;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for w in words {
        if !line.is_empty() && INDENT + line.len() + 1 + w.len() > 100 {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    lines.push(line);
    lines
        .iter()
        .map(|l| format!("{:INDENT$}{l}", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The registered drivers and their devargs keys (`--vdev help`).
pub fn drivers() -> String {
    let mut s = String::from(
        "Virtual devices (--vdev NAME<instance>[,key=value...], e.g. --vdev net_vhost0,iface=/tmp/sock0):\n",
    );
    for d in ferrovia_pmd::registry::drivers() {
        for line in d.usage().lines() {
            s.push_str("  ");
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_names_every_option_the_parsers_take() {
        let u = usage("testpmd");
        for o in [
            "--lcores",
            "--vdev",
            "--main-lcore",
            "--forward-mode",
            "--nb-cores",
            "--portmask",
            "--port-topology",
            "--rxq",
            "--txd",
            "--burst",
            "--txpkts",
            "--tx-first",
            "--stats-period",
            "--total-num-mbufs",
            "--eth-peer",
            "--max-pkt-len",
            "--mbuf-size",
            "--record-burst-stats",
            "--record-core-cycles",
            "--metrics",
            "--file-prefix",
            "--no-telemetry",
            "--socket-mem",
            "--no-pci",
            "--disable-rss",
            "--tx-offloads",
            "--rx-offloads",
            "--enable-rx-cksum",
            "--enable-lro",
        ] {
            assert!(u.contains(o), "{o} missing from the usage");
        }
        assert!(u.contains("net_vhost | eth_vhost:"), "{u}");
        assert!(u.contains("iface=<path>"), "{u}");
        assert!(u.contains("net_tap | eth_tap:"), "{u}");
        assert!(u.contains("net_af_packet | eth_af_packet:"), "{u}");
        assert!(!u.contains("net_pcap"), "{u}");
    }
}

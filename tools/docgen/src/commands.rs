//! The command-line definitions of every Ferrovia binary, as clap commands: the one place
//! man pages and shell completions come from. The binaries parse their own arguments (testpmd
//! takes DPDK's EAL form, which clap cannot express); `ferrovia-docgen check` compares each
//! definition with the options the binary's `--help` names, so the two cannot drift apart.

use clap::{Arg, ArgAction, Command, ValueHint};

fn flag(long: &'static str, help: &'static str) -> Arg {
    Arg::new(long)
        .long(long)
        .action(ArgAction::SetTrue)
        .help(help)
}

fn opt(long: &'static str, value: &'static str, help: &'static str) -> Arg {
    Arg::new(long).long(long).value_name(value).help(help)
}

/// The EAL options testpmd accepts and ignores, with a value.
pub const TESTPMD_EAL_IGNORED_WITH_VALUE: &[&str] = &[
    "socket-mem",
    "socket-limit",
    "proc-type",
    "log-level",
    "iova-mode",
    "base-virtaddr",
    "huge-dir",
    "mbuf-pool-ops-name",
    "vfio-intr",
    "syslog",
    "trace",
    "huge-worker-stack",
];
/// The EAL flags testpmd accepts and ignores.
pub const TESTPMD_EAL_IGNORED_FLAGS: &[&str] = &[
    "no-pci",
    "in-memory",
    "single-file-segments",
    "no-huge",
    "huge-unlink",
    "no-shconf",
    "legacy-mem",
    "no-hpet",
    "match-allocations",
    "create-uio-dev",
];
/// The application flags testpmd accepts and ignores.
pub const TESTPMD_APP_IGNORED_FLAGS: &[&str] = &[
    "disable-rss",
    "enable-lro",
    "enable-rx-cksum",
    "enable-scatter",
    "no-flush-rx",
    "no-lsc-interrupt",
    "no-rmv-interrupt",
    "rss-ip",
    "rss-udp",
    "disable-crc-strip",
    "enable-drop-en",
    "no-numa",
    "numa",
];
/// The application options testpmd accepts and ignores, with a value.
pub const TESTPMD_APP_IGNORED_WITH_VALUE: &[&str] = &[
    "tx-offloads",
    "rx-offloads",
    "mp-alloc",
    "rxfreet",
    "txfreet",
    "rxpt",
    "rxht",
    "rxwt",
    "txpt",
    "txht",
    "txwt",
    "txrst",
    "coremask",
    "nb-ports",
    "rss-queues",
    "port-numa-config",
    "ring-numa-config",
    "socket-num",
    "flow-isolate-all",
];

/// `testpmd`.
pub fn testpmd() -> Command {
    let mut c = Command::new("testpmd")
        .about("packet forwarder with DPDK testpmd's command line, on Ferrovia's ports")
        .long_about(
            "testpmd forwards packets between ports (vhost-user, virtio-user, tap, af_packet, \
             ring, null) in io, mac, macswap, rxonly, txonly, flowgen or csum mode. It takes DPDK \
             testpmd's command line: EAL options, then --, then testpmd options, so published \
             how-to command lines run unchanged. It needs no root and no hugepages, except for \
             PCI devices given with -a (net_virtio_pci, inside a VM). \
             --vdev help lists the drivers and their keys.",
        )
        .override_usage("testpmd [EAL options] -- [testpmd options]")
        .disable_help_flag(true)
        .next_help_heading("EAL options")
        .arg(
            Arg::new("lcores")
                .short('l')
                .long("lcores")
                .value_name("LIST")
                .help("lcores to use: 0-3, 0,2,3, 1@0, (2,3)@1; the first is the main lcore"),
        )
        .arg(
            Arg::new("coremask-eal")
                .short('c')
                .value_name("MASK")
                .help("lcores as a hex mask"),
        )
        .arg(opt(
            "main-lcore",
            "N",
            "the main lcore (default: the first one)",
        ))
        .arg(
            opt(
                "vdev",
                "DEVARGS",
                "add a port: NAME[,key=value...] (repeatable)",
            )
            .action(ArgAction::Append),
        )
        .arg(
            Arg::new("allow")
                .short('a')
                .long("allow")
                .value_name("PCI")
                .action(ArgAction::Append)
                .help(
                    "add a port on a virtio-net PCI device (net_virtio_pci; root, hugepages, uio_pci_generic): ADDR[,key=value...]",
                ),
        )
        .arg(opt(
            "file-prefix",
            "NAME",
            "telemetry socket directory <runtime dir>/dpdk/NAME (default rte)",
        ))
        .arg(flag("no-telemetry", "no DPDK telemetry socket"))
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("print the usage and the drivers' keys"),
        );
    for o in TESTPMD_EAL_IGNORED_WITH_VALUE {
        c = c.arg(opt(o, "VALUE", "accepted with no effect"));
    }
    for o in TESTPMD_EAL_IGNORED_FLAGS {
        c = c.arg(flag(o, "accepted with no effect"));
    }
    c = c
        .next_help_heading("testpmd options (after --)")
        .arg(
            Arg::new("interactive")
                .short('i')
                .long("interactive")
                .action(ArgAction::SetTrue)
                .help("interactive prompt (type help there)"),
        )
        .arg(
            Arg::new("auto-start")
                .long("auto-start")
                .action(ArgAction::SetTrue)
                .help("start forwarding at once in interactive mode"),
        )
        .arg(
            opt("forward-mode", "MODE", "forwarding mode").value_parser([
                "io", "mac", "macswap", "rxonly", "txonly", "flowgen", "csum",
            ]),
        )
        .arg(opt("nb-cores", "N", "forwarding cores to use"))
        .arg(opt("portmask", "MASK", "ports to forward on (hex)"))
        .arg(
            opt("port-topology", "T", "how ports pair up")
                .value_parser(["paired", "chained", "loop"]),
        )
        .arg(opt("rxq", "N", "Rx queues per port (1..128)"))
        .arg(opt("txq", "N", "Tx queues per port (1..128)"))
        .arg(opt("rxd", "N", "descriptors per Rx queue (1..32768)"))
        .arg(opt("txd", "N", "descriptors per Tx queue (1..32768)"))
        .arg(opt("burst", "N", "packets per burst (1..512)"))
        .arg(opt(
            "txpkts",
            "LEN[,LEN...]",
            "segment lengths of generated frames",
        ))
        .arg(flag(
            "tx-first",
            "send one txonly burst per stream before forwarding",
        ))
        .arg(opt(
            "stats-period",
            "N",
            "print port statistics every N seconds",
        ))
        .arg(opt("total-num-mbufs", "N", "mbufs in the pool"))
        .arg(
            opt(
                "eth-peer",
                "PORT,MAC",
                "destination MAC for frames sent on PORT",
            )
            .action(ArgAction::Append),
        )
        .arg(opt(
            "max-pkt-len",
            "N",
            "largest frame to receive (64..65535)",
        ))
        .arg(opt(
            "mbuf-size",
            "N",
            "mbuf size including 128 bytes of headroom",
        ))
        .arg(flag(
            "record-burst-stats",
            "show burst-size spreads at stop",
        ))
        .arg(flag(
            "record-core-cycles",
            "show CPU cycles per packet at stop",
        ))
        .arg(opt(
            "metrics",
            "ADDR:PORT",
            "serve Prometheus metrics at http://ADDR:PORT/metrics (off by default)",
        ));
    for o in TESTPMD_APP_IGNORED_FLAGS {
        c = c.arg(flag(o, "accepted with no effect"));
    }
    for o in TESTPMD_APP_IGNORED_WITH_VALUE {
        c = c.arg(opt(o, "VALUE", "accepted with no effect"));
    }
    c.after_help(
        "EXAMPLES\n\
         testpmd -l 0-1 --vdev 'net_vhost0,iface=/tmp/sock0' -- -i\n\
         testpmd -l 0-1 --vdev=virtio_user0,path=/tmp/sock0 -- --forward-mode=macswap\n\
         testpmd --vdev help",
    )
}

/// `ferrovia-switch`.
pub fn switch() -> Command {
    Command::new("ferrovia-switch")
        .about("vSwitch/vRouter daemon for containers and VMs")
        .long_about(
            "ferrovia-switch switches and routes frames between vhost-user, virtio-user, tap, \
             af_packet, ring and null ports: bridges with MAC learning and aging, VLAN access \
             and trunk ports, router interfaces with ARP and static routes, on PMD threads. \
             Without --config it runs a built-in default: bridge br0 with vhost-user server \
             ports vhu0 and vhu1 in the run directory ($FERROVIA_RUN_DIR, else \
             $XDG_RUNTIME_DIR/ferrovia, else /tmp/ferrovia-$UID). It runs in the foreground and \
             stops on SIGTERM or SIGINT. RUST_LOG sets the log level.",
        )
        .arg(
            Arg::new("config")
                .short('c')
                .long("config")
                .value_name("FILE")
                .value_hint(ValueHint::FilePath)
                .help("the TOML configuration"),
        )
        .arg(
            Arg::new("socket")
                .short('s')
                .long("socket")
                .value_name("PATH")
                .value_hint(ValueHint::FilePath)
                .help("the JSON-RPC control socket (overrides [switch] control_socket)"),
        )
        .arg(flag(
            "print-config",
            "print the configuration that would run, as TOML, and exit",
        ))
        .after_help("SEE ALSO\nferrovia-ctl(1), /usr/share/doc/ferrovia/vswitch.md")
}

/// `ferrovia-ctl`.
pub fn ctl() -> Command {
    let name = |n: &'static str| Arg::new(n).required(true).value_name(n);
    let kv = |help: &'static str| {
        Arg::new("options")
            .num_args(0..)
            .value_name("KEY=VALUE")
            .help(help)
    };
    Command::new("ferrovia-ctl")
        .about("control client of ferrovia-switch")
        .long_about(
            "ferrovia-ctl sends one JSON-RPC call to ferrovia-switch's control socket per \
             command and prints the answer. The socket defaults to \
             $FERROVIA_RUN_DIR/switch.sock, else $XDG_RUNTIME_DIR/ferrovia/switch.sock, else \
             /tmp/ferrovia-$UID/switch.sock.",
        )
        .arg(
            Arg::new("socket")
                .long("socket")
                .value_name("PATH")
                .value_hint(ValueHint::FilePath)
                .global(true)
                .help("the switch's control socket"),
        )
        .arg(flag("json", "print the raw JSON result").global(true))
        .subcommand(
            Command::new("add-br")
                .about("add a bridge")
                .arg(name("NAME"))
                .arg(kv("fdb_limit=N aging=SECS")),
        )
        .subcommand(
            Command::new("del-br")
                .about("delete a bridge")
                .arg(name("NAME")),
        )
        .subcommand(
            Command::new("add-port")
                .about("add a port to a bridge")
                .arg(name("BRIDGE"))
                .arg(name("NAME"))
                .arg(name("DEVARGS"))
                .arg(kv("tag=N trunks=A,B,.. native=N max_frame=N")),
        )
        .subcommand(
            Command::new("del-port")
                .about("delete a port")
                .arg(name("NAME")),
        )
        .subcommand(
            Command::new("set-port")
                .about("set a port's VLANs (no option: a trunk of all VLANs)")
                .arg(name("NAME"))
                .arg(kv("tag=N trunks=A,B,.. native=N")),
        )
        .subcommand(
            Command::new("add-ri")
                .about("add a router interface")
                .arg(name("NAME"))
                .arg(name("BRIDGE"))
                .arg(name("ADDRESS/LEN"))
                .arg(kv("vlan=N mac=MAC")),
        )
        .subcommand(
            Command::new("del-ri")
                .about("delete a router interface")
                .arg(name("NAME")),
        )
        .subcommand(
            Command::new("add-route")
                .about("add a static route")
                .arg(name("PREFIX/LEN"))
                .arg(name("VIA")),
        )
        .subcommand(
            Command::new("del-route")
                .about("delete a static route")
                .arg(name("PREFIX/LEN")),
        )
        .subcommand(
            Command::new("show")
                .about("show bridges and ports, or one table")
                .arg(Arg::new("WHAT").value_parser([
                    "ports",
                    "bridges",
                    "stats",
                    "fdb",
                    "routes",
                    "pmd-stats",
                ]))
                .arg(Arg::new("BRIDGE").help("the bridge, for fdb")),
        )
        .subcommand(Command::new("dump-flows").about("the PMD threads' flow caches"))
        .subcommand(
            Command::new("fdb-flush")
                .about("flush a bridge's MAC table")
                .arg(name("BRIDGE")),
        )
        .subcommand(
            Command::new("pmd-rxq-rebalance")
                .about("spread Rx queues over PMD threads by measured cycles"),
        )
        .subcommand(
            Command::new("set-rxq-assign")
                .about("how Rx queues are assigned to PMD threads")
                .arg(
                    Arg::new("MODE")
                        .required(true)
                        .value_parser(["roundrobin", "cycles"]),
                ),
        )
        .subcommand(Command::new("reset-stats").about("zero the counters"))
        .subcommand(
            Command::new("call")
                .about("any JSON-RPC method with raw params")
                .arg(name("METHOD"))
                .arg(Arg::new("JSON")),
        )
        .subcommand(
            Command::new("capture")
                .about("packet capture on a port, to pcapng")
                .subcommand(
                    Command::new("start")
                        .about("start capturing a port")
                        .arg(name("PORT"))
                        .arg(opt("queue", "Q", "one queue (default: all)"))
                        .arg(opt("dir", "rx|tx|both", "direction (both)"))
                        .arg(opt("snaplen", "N", "bytes kept per packet (1..262144)"))
                        .arg(opt("ring-size", "N", "capture ring slots per queue"))
                        .arg(name("FILE")),
                )
                .subcommand(
                    Command::new("stop")
                        .about("stop a capture (all without ID)")
                        .arg(Arg::new("ID")),
                )
                .subcommand(Command::new("list").about("captures and their counters")),
        )
        .subcommand(Command::new("help").about("the switch's method list"))
        .disable_help_subcommand(true)
}

/// `ferrovia-cni`.
pub fn cni() -> Command {
    Command::new("ferrovia-cni")
        .about("Kubernetes CNI plugin attaching pods to ferrovia-switch over vhost-user")
        .long_about(
            "ferrovia-cni is run by a container runtime, not by hand. It follows the CNI \
             specification 1.0 and 1.1: the runtime sets CNI_COMMAND (ADD, DEL, CHECK, VERSION, \
             GC, STATUS), CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH, writes \
             the network configuration to stdin and reads the result or an error object on \
             stdout. ADD creates a vhost-user port on the switch with its socket at \
             <sharedDir>/<containerID[:12]>-<ifname>, writes a device-info file (Network \
             Plumbing WG spec 1.1) and returns the addresses of the delegated IPAM plugin. \
             Configuration keys: bridge, controlSocket, sharedDir, vhostMode (server|client), \
             queues, vlan, deviceInfoDir, stateDir, ipam. See /usr/share/doc/ferrovia/cni.md.",
        )
        .after_help(
            "EXAMPLE\n\
             CNI_COMMAND=VERSION ferrovia-cni < /dev/null\n\
             CNI_COMMAND=ADD CNI_CONTAINERID=abc CNI_NETNS=/var/run/netns/pod1 CNI_IFNAME=net1 \
             CNI_PATH=/usr/lib/cni ferrovia-cni < /etc/cni/net.d/ferrovia.conf",
        )
}

/// `ferrovia-pktgen`.
pub fn pktgen() -> Command {
    Command::new("ferrovia-pktgen")
        .about("software traffic generator on Ferrovia's ports")
        .long_about(
            "ferrovia-pktgen sends paced UDP/IPv4 streams on one or two ports (any devargs: \
             virtio-user, vhost-user, tap, af_packet, ring) and receives them back. Every frame \
             carries a stream number, a sequence number and a send timestamp, so loss, \
             reordering and duplicates are counted exactly and latency goes into an HDR \
             histogram. With one port a reflector (testpmd macswap) returns the frames; with \
             two, port 0 sends to port 1 (and back with --bidir). Frame sizes exclude the FCS.",
        )
        .arg(opt("port", "DEVARGS", "a port (repeat for a second)").action(ArgAction::Append))
        .arg(flag("bidir", "with two ports, port 1 sends to port 0 as well"))
        .arg(opt("dst-mac", "MAC", "destination MAC of every stream"))
        .arg(opt("link-timeout", "SECS", "wait this long for links to come up (30)"))
        .arg(opt("rate", "RATE", "per stream: 2Mpps, 500kpps, 10Gbps, 40%, or max (max)"))
        .arg(opt("line-rate", "RATE", "the line rate percentages refer to (10Gbps)"))
        .arg(opt("size", "N", "frame size without FCS (60..9728; 60)"))
        .arg(opt("sizes", "N,N,..", "a sweep: one trial per size"))
        .arg(flag("imix", "simple IMIX 7:4:1 of 60, 590 and 1514 bytes"))
        .arg(opt("flows", "N", "UDP flows per stream (1..1000000; 1)"))
        .arg(opt("burst", "N", "frames per burst (1..32; 32)"))
        .arg(opt("duration", "SECS", "measured seconds per trial (10)"))
        .arg(opt("count", "N", "exactly N measured frames per stream"))
        .arg(opt("warmup", "SECS", "sent before measuring, not counted (1)"))
        .arg(opt("drain", "SECS", "keep receiving after the last frame (0.2)"))
        .arg(opt(
            "when-full",
            "retry|drop",
            "frames a port refuses: send them again (retry) or count them lost (drop)",
        ))
        .arg(opt("json", "FILE", "write the results as JSON (- for stdout)"))
        .arg(flag("quiet", "no live progress"))
        .arg(flag(
            "verify",
            "fill payloads with a pattern and check every received byte",
        ))
        .arg(flag(
            "interactive",
            "a prompt instead of one run: set options, start/stop continuous traffic, run trials, show results (type help there)",
        ).short('i'))
        .arg(opt(
            "script",
            "FILE",
            "run the prompt's commands from FILE (pktgen-dpdk's -f), then exit, or go on at the prompt with -i",
        ))
        .after_help(
            "EXAMPLES\n\
             ferrovia-pktgen --port net_virtio_user0,path=/tmp/sock0 --rate 1Mpps --sizes 60,1514 --json r.json\n\
             \n\
             ferrovia-pktgen --port net_virtio_user0,path=/tmp/sock0 -i\n\
             pktgen> set rate 2Mpps\n\
             pktgen> start\n\
             pktgen> stop\n\
             \n\
             PROMPT AND SCRIPT COMMANDS\n\
             show; set KEY VALUE (rate, size, sizes, flows, burst, duration, count N|off, warmup, drain, \
             line-rate, dst-mac, imix on, verify on|off, bidir on|off, quiet on|off); run; start; stop; \
             results; clear; save FILE; sleep S; help; quit. A script runs in step with the traffic: \
             start, sleep 5, stop sends for five seconds.",
        )
}

/// `ferrovia-pvp`.
pub fn pvp() -> Command {
    Command::new("ferrovia-pvp")
        .about("the PVP benchmark in one command, with a container VNF")
        .long_about(
            "ferrovia-pvp starts a host forwarder (our testpmd or DPDK's in io mode, or our \
             vSwitch with two MAC-learning bridges) on four \
             vhost-user ports, connects ferrovia-pktgen's two virtio-user ports and a macswap \
             VNF, and for each frame size searches NDR and PDR (MLRsearch-style), then measures \
             latency at 10, 50 and 90 % of NDR. It prints the how-to's results template.",
        )
        .arg(opt(
            "host",
            "ours|dpdk|switch[,..]",
            "host forwarder(s): our testpmd io, DPDK's dpdk-testpmd io, or ferrovia-switch (ours)",
        ))
        .arg(opt(
            "switch",
            "PATH",
            "ferrovia-switch, for --host switch (default: next to this binary)",
        ))
        .arg(opt(
            "vnf",
            "inproc|ours|dpdk|vm",
            "the VNF (inproc: on the generator's thread; vm: a QEMU guest under TCG)",
        ))
        .arg(opt(
            "vm-script",
            "PATH",
            "the guest's runner for --vnf vm (tests/qemu/pvp-vm.sh)",
        ))
        .arg(opt("sizes", "N,N,..", "frame sizes without FCS (60,1514)"))
        .arg(opt(
            "line-rate",
            "RATE",
            "per generator port, the search's ceiling (10Gbps)",
        ))
        .arg(opt(
            "min-load",
            "RATE",
            "both directions, the search's floor (10kpps; vm: 1kpps)",
        ))
        .arg(opt(
            "max-load",
            "RATE",
            "both directions, the search's ceiling (2 x line rate; vm: 40kpps)",
        ))
        .arg(opt(
            "initial-duration",
            "S",
            "first phase's trial seconds (1)",
        ))
        .arg(opt(
            "final-duration",
            "S",
            "last phase's trial seconds (2)",
        ))
        .arg(opt("phases", "N", "search phases (3)"))
        .arg(opt(
            "width",
            "W",
            "relative width of the final bounds (0.005)",
        ))
        .arg(opt(
            "exceed-ratio",
            "R",
            "share of a load's trial time that may exceed the goal's loss with the load still meeting it (RFC 9971's goal exceed ratio; 0.5: two passing trials of three; 0: every trial must pass)",
        ))
        .arg(opt(
            "duration-sum",
            "S",
            "trial seconds a load is judged on in the last phase (3 x --final-duration)",
        ))
        .arg(opt(
            "rounds",
            "N",
            "measure every host N times per frame size, alternating their order (ABBA), and report the medians and, with both hosts, their ratio (1)",
        ))
        .arg(opt(
            "latency-duration",
            "S",
            "seconds of each latency run (5)",
        ))
        .arg(opt("host-cpu", "N", "CPU of the host forwarder (0)"))
        .arg(opt("gen-cpu", "N", "CPU of the generator (1)"))
        .arg(opt("vnf-cpu", "N", "CPU of a testpmd VNF or of QEMU (2)"))
        .arg(opt(
            "testpmd",
            "PATH",
            "our testpmd (default: next to this binary)",
        ))
        .arg(opt(
            "queue-size",
            "N",
            "ring size of the generator's and the container VNF's virtio-user ports (1024)",
        ))
        .arg(opt("json", "FILE", "results as JSON"))
        .arg(opt("report", "FILE", "an HTML report with SVG charts"))
}

/// `ferrovia-pdump`.
pub fn pdump() -> Command {
    Command::new("ferrovia-pdump")
        .about("capture packets of a running testpmd or ferrovia-switch into pcapng")
        .long_about(
            "ferrovia-pdump takes dpdk-pdump's argument form and asks a running testpmd or \
             ferrovia-switch, over its telemetry socket (<runtime dir>/dpdk/PREFIX/\
             dpdk_telemetry.v2), to capture ports and queues into pcapng files or FIFOs \
             (tshark -i FIFO reads live). PARAMS: port=N or device_id=NAME; queue=N or *; \
             rx-dev=FILE, tx-dev=FILE (the same file: both directions) or dev=FILE with \
             dir=rx|tx|both; snaplen=N (1..262144); ring-size=N. It stops on Ctrl-C.",
        )
        .override_usage("ferrovia-pdump [--file-prefix=PREFIX] -- --pdump '<params>' [...]")
        .arg(opt("file-prefix", "PREFIX", "the target's telemetry directory (rte)"))
        .arg(opt("pdump", "PARAMS", "what to capture, where (repeatable)").action(ArgAction::Append))
        .arg(opt("duration", "SECS", "stop after SECS seconds"))
        .arg(opt("count", "N", "stop once N packets are written"))
        .arg(opt("interval", "SECS", "print counters every SECS (1; 0: only at the end)"))
        .after_help(
            "EXAMPLE\n\
             ferrovia-pdump --file-prefix=host -- --pdump 'port=0,queue=*,rx-dev=/tmp/rx.pcapng,tx-dev=/tmp/tx.pcapng'",
        )
}

/// `-V`/`--version`, which `ferrovia-vfd` and `iplex` take (clap's own version flag: `man`
/// turns the automatic one off, so it is declared here to be documented and checked).
fn version_flag() -> Arg {
    Arg::new("version")
        .short('V')
        .long("version")
        .action(ArgAction::Version)
        .help("Print version")
}

/// `ferrovia-vfd`.
pub fn vfd() -> Command {
    Command::new("ferrovia-vfd")
        .about("The VF daemon of Ferrovia's software SR-IOV NIC: per-VF policies in AT&T VFd's JSON, iplex on a control socket")
        .long_about(
            "ferrovia-vfd is the VF daemon of Ferrovia's software SR-IOV NIC (AT&T VFd's role). \
             It runs an embedded switch (VEB) between one uplink port and N VFs; VF N is the \
             vhost-user server socket <sock dir>/vfN.sock, which a container drives with \
             net_virtio_user0,path=<sock dir>/vfN.sock. At start every VF is disabled with the \
             default policy (MAC 02:fe:00:00:00:N, anti-spoofing on); then every *.json file of \
             the configuration directory (one per VF, in VFd's keys: name, vfid, macs, vlans, \
             strip_stag, strip_ctag, allow_untagged, allow_bcast, allow_mcast, allow_un_ucast, \
             mac_anti_spoof, vlan_anti_spoof, rate, mirror, ...) is added in name order, as \
             iplex add would add it; a bad file is logged and skipped. It answers iplex on the \
             control socket (JSON-RPC). It runs in the foreground, logs to stderr (RUST_LOG, \
             default info; iplex verbose changes the level at run time), re-reads the \
             configuration directory on SIGHUP (as iplex reload does: new files added, changed \
             ones applied, removed ones deleted) and stops on SIGTERM or SIGINT, removing its \
             sockets. The run \
             directory is $XDG_RUNTIME_DIR/ferrovia-vfd, else /tmp/ferrovia-vfd-$UID; the \
             systemd unit ferrovia-vfd.service uses /run/ferrovia-vfd and /etc/vfd/vf.d. With no \
             options it needs no root: the default uplink is a null sink.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .arg(
            opt(
                "uplink",
                "DEVARGS",
                "the uplink port (any driver: net_af_packet0,iface=eth0, net_vhost0,iface=..., net_null0)",
            )
            .default_value("net_null0,no-rx=1"),
        )
        .arg(opt("num-vfs", "N", "VFs on the PF (1 to 64)").default_value("4"))
        .arg(
            opt(
                "sock-dir",
                "DIR",
                "directory of the VF sockets DIR/vf<N>.sock [default: $XDG_RUNTIME_DIR/ferrovia-vfd, else /tmp/ferrovia-vfd-$UID]",
            )
            .value_hint(ValueHint::DirPath),
        )
        .arg(
            opt(
                "config-dir",
                "DIR",
                "VFd's directory of per-VF JSON files (<name>.json); absent: none",
            )
            .default_value("/etc/vfd/vf.d")
            .value_hint(ValueHint::DirPath),
        )
        .arg(
            opt(
                "ctl",
                "PATH",
                "the control socket iplex talks to [default: $FERROVIA_VFD_CTL, else <run dir>/vfd.ctl]",
            )
            .value_hint(ValueHint::FilePath),
        )
        .arg(flag(
            "telemetry",
            "serve DPDK telemetry v2 on <runtime dir>/dpdk/<file-prefix>/dpdk_telemetry.v2",
        ))
        .arg(
            opt(
                "file-prefix",
                "PREFIX",
                "the telemetry file prefix (dpdk-telemetry.py -f PREFIX)",
            )
            .default_value("ferrovia-vfd"),
        )
        .arg(version_flag())
        .after_help(
            "EXAMPLE\n\
             \n\
             ferrovia-vfd --uplink net_af_packet0,iface=eth0 --num-vfs 8 --sock-dir /run/vfd \
             --config-dir /etc/vfd/vf.d --ctl /run/vfd/vfd.ctl --telemetry --file-prefix vfd\n\
             \n\
             SEE ALSO\n\
             iplex(1), /usr/share/doc/ferrovia/eswitch.md",
        )
}

/// `iplex`.
pub fn iplex() -> Command {
    let name = || {
        Arg::new("name")
            .required(true)
            .value_name("NAME")
            .help("the file <config dir>/NAME.json")
    };
    Command::new("iplex")
        .about("Configures the VFs of ferrovia-vfd (AT&T VFd's iplex commands)")
        .long_about(
            "iplex configures the VFs of a running ferrovia-vfd with AT&T VFd's command set; \
             each command is one JSON-RPC call on the daemon's control socket. A configuration \
             is the file <config dir>/<name>.json of the daemon, named by <name>. Every refusal \
             exits non-zero with the reason, and a refused request changes no VF. The control \
             socket defaults to $FERROVIA_VFD_CTL, else $XDG_RUNTIME_DIR/ferrovia-vfd/vfd.ctl, \
             else /tmp/ferrovia-vfd-$UID/vfd.ctl; the daemon of ferrovia-vfd.service listens on \
             /run/ferrovia-vfd/vfd.ctl.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .subcommand_required(true)
        .arg(
            opt(
                "ctl",
                "PATH",
                "the daemon's control socket [default: $FERROVIA_VFD_CTL, else <run dir>/vfd.ctl]",
            )
            .global(true)
            .value_hint(ValueHint::FilePath),
        )
        .arg(flag("json", "print the daemon's JSON answer").global(true))
        .arg(version_flag())
        .subcommand(
            Command::new("add")
                .about("read <config dir>/NAME.json, apply it to its VF, enable the VF")
                .arg(name()),
        )
        .subcommand(
            Command::new("update")
                .about("re-read the file of an added VF and apply it")
                .arg(name()),
        )
        .subcommand(
            Command::new("delete")
                .about("disable the VF and reset its policy")
                .arg(name()),
        )
        .subcommand(
            Command::new("show")
                .about("policy and counters (drops by cause) of every VF, or of one; or the PF")
                .arg(
                    Arg::new("what")
                        .required(true)
                        .value_name("all|VFID|pfs")
                        .help("all, a VF number, or pfs (the PF: uplink, link, speed, VFs)"),
                ),
        )
        .subcommand(Command::new("status").about("the daemon, its uplink and its configured VFs"))
        .subcommand(
            Command::new("reload")
                .about("bring the VFs in line with the configuration directory (what SIGHUP does)"),
        )
        .subcommand(
            Command::new("verbose")
                .about("set the daemon's log level: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace; without a level, print it")
                .arg(
                    Arg::new("level")
                        .value_name("LEVEL")
                        .value_parser(clap::value_parser!(u64))
                        .help("0 to 5"),
                ),
        )
        .subcommand(Command::new("dump").about("write the daemon's whole state to its log (and print it)"))
        .subcommand(Command::new("ping").about("check that the daemon answers"))
        .after_help(
            "EXAMPLES\n\
             \n\
             iplex --ctl /run/ferrovia-vfd/vfd.ctl add web\n\
             \n\
             FERROVIA_VFD_CTL=/run/ferrovia-vfd/vfd.ctl iplex show all\n\
             \n\
             SEE ALSO\n\
             ferrovia-vfd(1), /usr/share/doc/ferrovia/eswitch.md",
        )
}

/// Every command, with the binary that implements it.
pub fn all() -> Vec<Command> {
    vec![
        testpmd(),
        switch(),
        ctl(),
        cni(),
        pktgen(),
        pvp(),
        pdump(),
        vfd(),
        iplex(),
    ]
}

//! `ferrovia-pvp`: the PVP benchmark in one command, with a container VNF.
//!
//! ```text
//!   ferrovia-pktgen port A ─┐                          ┌─ VNF port 0 ─┐
//!                           ├─ host testpmd io ────────┤              macswap
//!   ferrovia-pktgen port B ─┘  (4 vhost-user ports)    └─ VNF port 1 ─┘
//! ```
//!
//! The host side is our testpmd or DPDK's dpdk-testpmd, in io mode, with four vhost-user
//! ports paired generator A ↔ VNF 0 and generator B ↔ VNF 1 (the how-to's `set portlist
//! 0,2,1,3`). The generator's two "NIC" ports are virtio-user ports on the first pair of
//! sockets. The VNF is a macswap forwarder on two virtio-user ports: by default it runs on
//! the generator's own thread (`--vnf inproc`), so that host and generator+VNF each get one
//! of two cores; `--vnf ours|dpdk` runs a testpmd in macswap mode instead, which needs a third
//! core; `--vnf vm` boots the QEMU guest of `tests/qemu/pvp-vm.sh` (two virtio-net-pci devices
//! on the VNF sockets, our testpmd macswap inside on them through the userspace
//! `net_virtio_pci` driver, or with `PV_GUEST_PMD=af_packet` in the environment on AF_PACKET
//! over the guest kernel's virtio_net). For each frame size, an NDR/PDR search (see
//! `ferrovia_pktgen::search`), then latency
//! runs at 10, 50 and 90 % of NDR. Output: the how-to's results template, a table, JSON, and
//! an HTML report with SVG charts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ferrovia_ethdev::{Burst, PortConf};
use ferrovia_memory::{LcoreCaches, Mempool, MempoolConfig};
use ferrovia_pktgen::clock::Clock;
use ferrovia_pktgen::frame::{MIN_FRAME, SizePattern};
use ferrovia_pktgen::rate::WIRE_OVERHEAD;
use ferrovia_pktgen::search::{
    GoalResult, SearchConfig, TrialOutcome, TrialRunner, ndr_pdr, search,
};
use ferrovia_pktgen::track::LatencySummary;
use ferrovia_pktgen::trial::{GenPort, StreamSpec, TrialSpec, WhenFull, run_trial};
use serde::Serialize;

const USAGE: &str = "\
usage: ferrovia-pvp [options]

  --host ours|dpdk|switch[,..]
                           host forwarder(s), each measured in turn per frame size: our
                           testpmd io, DPDK's dpdk-testpmd io, or our vSwitch (ferrovia-switch,
                           two MAC-learning bridges) (ours)
  --vnf inproc|ours|dpdk|vm
                           the VNF: macswap on the generator's thread (inproc, default), a
                           testpmd in macswap mode (needs a third core), or a QEMU guest
                           (TCG) running our testpmd macswap (vm: slow, for function)
  --vm-script PATH         the guest's runner for --vnf vm (tests/qemu/pvp-vm.sh of the
                           source tree this binary was built in, or of the working directory)
  --sizes N,N,..           frame sizes without FCS (60,1514)
  --line-rate RATE         per generator port, the search's ceiling (10Gbps)
  --min-load RATE          both directions together, the search's floor (10kpps; vm: 1kpps)
  --max-load RATE          both directions together, the search's ceiling (2 x --line-rate;
                           vm: 40kpps)
  --initial-duration S     first phase's trial seconds (1)
  --final-duration S       last phase's trial seconds (2)
  --phases N               search phases (3)
  --width W                relative width of the final bounds (0.005)
  --exceed-ratio R         share of a load's trial time that may exceed the goal's loss with
                           the load still meeting it (RFC 9971's goal exceed ratio; 0.5: two
                           passing trials of three; 0: every trial must pass)
  --duration-sum S         trial seconds a load is judged on in the last phase (3 x
                           --final-duration)
  --rounds N               measure every host N times per frame size, alternating their order
                           (ABBA), and report the medians and, with both hosts, their ratio (1)
  --latency-duration S     seconds of each latency run at 10/50/90 % of NDR (5)
  --host-cpu N             CPU of the host forwarder (0)
  --gen-cpu N              CPU of the generator (1)
  --vnf-cpu N              CPU of a testpmd VNF or of QEMU (2; vm on fewer CPUs: the
                           generator's)
  --testpmd PATH           our testpmd (default: next to this binary)
  --switch PATH            ferrovia-switch, for --host switch (default: next to this binary)
  --queue-size N           ring size of every virtio-user port: the generator's and the
                           container VNF's (1024, as in the how-to; a power of two)
  --json FILE              results as JSON
  --report FILE            an HTML report with SVG charts
  -h, --help               this text";

#[derive(Clone, Debug)]
struct Args {
    hosts: Vec<String>,
    vnf: String,
    sizes: Vec<usize>,
    line_rate: f64,
    initial: f64,
    fin: f64,
    phases: u32,
    exceed_ratio: f64,
    duration_sum: Option<f64>,
    rounds: u32,
    width: f64,
    lat_dur: f64,
    host_cpu: usize,
    gen_cpu: usize,
    vnf_cpu: usize,
    testpmd: PathBuf,
    switch: PathBuf,
    vm_script: PathBuf,
    min_load: Option<f64>,
    max_load: Option<f64>,
    queue_size: u32,
    json: Option<PathBuf>,
    report: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut a = Args {
        hosts: vec!["ours".into()],
        vnf: "inproc".into(),
        sizes: vec![60, 1514],
        line_rate: 10e9,
        initial: 1.0,
        fin: 2.0,
        phases: 3,
        exceed_ratio: 0.5,
        duration_sum: None,
        rounds: 1,
        width: 0.005,
        lat_dur: 5.0,
        host_cpu: 0,
        gen_cpu: 1,
        vnf_cpu: 2,
        // A build tree has testpmd beside us; the Debian package installs ferrovia-testpmd.
        testpmd: if exe_dir.join("testpmd").exists() {
            exe_dir.join("testpmd")
        } else {
            exe_dir.join("ferrovia-testpmd")
        },
        switch: exe_dir.join("ferrovia-switch"),
        vm_script: default_vm_script(&exe_dir),
        min_load: None,
        max_load: None,
        queue_size: 1024,
        json: None,
        report: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (k, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut v = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{k} needs a value (see --help)"))
        };
        let f = |k: &str, s: String| -> Result<f64, String> {
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| format!("{k} {s:?} is not a positive number"))
        };
        match k {
            "--host" => a.hosts = v()?.split(',').map(str::to_string).collect(),
            "--vnf" => a.vnf = v()?,
            "--sizes" => {
                a.sizes = v()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|_| format!("frame size {s:?} is not a number"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--line-rate" => match ferrovia_pktgen::rate::Rate::parse(&v()?)? {
                ferrovia_pktgen::rate::Rate::Bps(b) => a.line_rate = b,
                _ => return Err("--line-rate takes a bit rate such as 10Gbps".into()),
            },
            "--initial-duration" => a.initial = f(k, v()?)?,
            "--final-duration" => a.fin = f(k, v()?)?,
            "--phases" => a.phases = f(k, v()?)? as u32,
            "--exceed-ratio" => {
                let s = v()?;
                a.exceed_ratio = s
                    .parse::<f64>()
                    .ok()
                    .filter(|x| (0.0..1.0).contains(x))
                    .ok_or_else(|| {
                        format!("--exceed-ratio {s:?} must be a number in [0, 1) (0.5: two passing trials of three)")
                    })?;
            }
            "--duration-sum" => a.duration_sum = Some(f(k, v()?)?),
            "--rounds" => {
                let s = v()?;
                a.rounds = s
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        format!("--rounds {s:?} must be a whole number from 1 to 100")
                    })?;
            }
            "--width" => a.width = f(k, v()?)?,
            "--latency-duration" => a.lat_dur = f(k, v()?)?,
            "--host-cpu" => {
                a.host_cpu = v()?.parse().map_err(|_| "--host-cpu takes a CPU number")?
            }
            "--gen-cpu" => a.gen_cpu = v()?.parse().map_err(|_| "--gen-cpu takes a CPU number")?,
            "--vnf-cpu" => a.vnf_cpu = v()?.parse().map_err(|_| "--vnf-cpu takes a CPU number")?,
            "--testpmd" => a.testpmd = v()?.into(),
            "--switch" => a.switch = v()?.into(),
            "--vm-script" => a.vm_script = v()?.into(),
            "--min-load" | "--max-load" => {
                let pps = match ferrovia_pktgen::rate::Rate::parse(&v()?)? {
                    ferrovia_pktgen::rate::Rate::Pps(p) if p > 0.0 => p,
                    _ => return Err(format!("{k} takes a frame rate such as 20kpps")),
                };
                if k == "--min-load" {
                    a.min_load = Some(pps);
                } else {
                    a.max_load = Some(pps);
                }
            }
            "--queue-size" => {
                let s = v()?;
                a.queue_size = s
                    .parse::<u32>()
                    .ok()
                    .filter(|n| n.is_power_of_two() && (64..=32768).contains(n))
                    .ok_or_else(|| {
                        format!("--queue-size {s:?} must be a power of two from 64 to 32768 (the how-to uses 1024)")
                    })?;
            }
            "--json" => a.json = Some(v()?.into()),
            "--report" => a.report = Some(v()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    for h in &a.hosts {
        if !["ours", "dpdk", "switch"].contains(&h.as_str()) {
            return Err(format!("--host {h:?}: use ours, dpdk or switch"));
        }
    }
    if !["inproc", "ours", "dpdk", "vm"].contains(&a.vnf.as_str()) {
        return Err(format!("--vnf {:?}: use inproc, ours, dpdk or vm", a.vnf));
    }
    if a.vnf == "vm" && !a.vm_script.exists() {
        return Err(format!(
            "--vnf vm: the guest's runner is not at {} (pass --vm-script PATH to tests/qemu/pvp-vm.sh)",
            a.vm_script.display()
        ));
    }
    if let Some(sum) = a.duration_sum
        && sum < a.fin
    {
        return Err(format!(
            "--duration-sum {sum} s is below --final-duration {} s (it is the trial time each load is judged on)",
            a.fin
        ));
    }
    if let (Some(lo), Some(hi)) = (a.min_load, a.max_load)
        && lo >= hi
    {
        return Err(format!(
            "--min-load {lo} pps is not below --max-load {hi} pps"
        ));
    }
    for &s in &a.sizes {
        if !(MIN_FRAME..=9728).contains(&s) {
            return Err(format!(
                "frame size {s} is outside {MIN_FRAME}..9728 (sizes exclude the FCS: 60 is 64 on the wire)"
            ));
        }
    }
    if a.hosts.contains(&"switch".to_string()) && !a.switch.exists() {
        return Err(format!(
            "ferrovia-switch is not at {} (build it: cargo build --release -p ferrovia-switch, or pass --switch)",
            a.switch.display()
        ));
    }
    if (a.hosts.contains(&"ours".to_string()) || a.vnf == "ours" || a.vnf == "vm")
        && !a.testpmd.exists()
    {
        return Err(format!(
            "our testpmd is not at {} (build it: cargo build --release -p ferrovia-testpmd, or pass --testpmd)",
            a.testpmd.display()
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let needed = if a.vnf == "inproc" { 2 } else { 3 };
    if cpus < needed {
        eprintln!(
            "ferrovia-pvp: note: {cpus} CPU(s) for {needed} busy components; they will share CPUs and the figures will mean less"
        );
    }
    if a.vnf == "vm" {
        eprintln!(
            "ferrovia-pvp: note: --vnf vm runs the guest under TCG (software emulation): expect thousands of frames/s, not millions"
        );
    } else if a.vnf != "inproc" && cpus < 3 {
        eprintln!(
            "ferrovia-pvp: note: --vnf {} needs a third CPU for the VNF; with {cpus}, use --vnf inproc (the VNF on the generator's thread)",
            a.vnf
        );
    }
    Ok(a)
}

/// `tests/qemu/pvp-vm.sh` of the source tree this binary was built in (target/<profile>/ is two
/// levels below it), else of the working directory.
fn default_vm_script(exe_dir: &Path) -> PathBuf {
    let rel = Path::new("tests/qemu/pvp-vm.sh");
    exe_dir
        .ancestors()
        .nth(2)
        .map(|root| root.join(rel))
        .filter(|p| p.exists())
        .unwrap_or_else(|| rel.to_path_buf())
}

/// Boots the guest VNF (`pvp-vm.sh --vnf-only`) on the two VNF sockets and waits until its
/// testpmd forwards. Its output goes to `log`.
fn start_vm(a: &Args, socks: [&Path; 2], log: &Path) -> Result<Proc, String> {
    use std::io::{BufRead, Write};
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = if a.vnf_cpu < cpus {
        a.vnf_cpu
    } else {
        a.gen_cpu
    };
    let mut c = Command::new(&a.vm_script);
    c.arg("--vnf-only")
        .args(socks)
        .env("PV_TESTPMD", &a.testpmd)
        .env("PV_VM_CPU", cpu.to_string())
        .env("PV_TIMEOUT", "86400")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| {
        format!(
            "cannot start the guest's runner {}: {e}",
            a.vm_script.display()
        )
    })?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let mut errfile = file.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = writeln!(errfile, "{line}");
        }
    });
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            let _ = tx.send(line);
        }
    });
    let proc_ = Proc(child);
    let t0 = Instant::now();
    let mut last = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.starts_with("PV-READY") => break,
            Ok(l) => {
                last.push(l);
                if last.len() > 8 {
                    last.remove(0);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!(
                    "the guest VNF ended before it forwarded: {}",
                    last.join(" | ")
                ));
            }
        }
        if t0.elapsed() > Duration::from_secs(180) {
            return Err("the guest VNF did not forward within 180 s".into());
        }
    }
    eprintln!(
        "ferrovia-pvp: guest VNF forwarding after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(proc_)
}

/// A child process killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn testpmd_cmd(
    which: &str,
    a: &Args,
    cpu: usize,
    vdevs: &[String],
    mode: &str,
    prefix: &str,
) -> Command {
    let mut c = if which == "dpdk" {
        let mut c = Command::new("dpdk-testpmd");
        c.args(["--no-pci", "--in-memory", "--single-file-segments"])
            .arg(format!("--file-prefix={prefix}"));
        c
    } else {
        let mut c = Command::new(&a.testpmd);
        c.arg("--no-telemetry");
        c
    };
    c.arg("--lcores").arg(format!("0@{cpu},1@{cpu}"));
    for v in vdevs {
        c.arg(format!("--vdev={v}"));
    }
    c.args([
        "--",
        &format!("--forward-mode={mode}"),
        "--stats-period",
        "3600",
        "--rxd=1024",
        "--txd=1024",
    ]);
    if which == "dpdk" {
        c.arg("--total-num-mbufs=32768");
    }
    c.stdin(Stdio::null());
    c
}

/// `ferrovia-switch` as the host: bridge `pvpa` joins the generator's port A and VNF port 0,
/// bridge `pvpb` port B and VNF port 1 (MAC learning: the first frames flood to the one other
/// port, then the learned MACs forward), one PMD thread on the host's CPU.
fn switch_cmd(a: &Args, vdevs: &[String], work: &Path, n: usize) -> Result<Command, String> {
    let names = ["genA", "vnf0", "genB", "vnf1"];
    let mut toml = format!(
        "[switch]\ncontrol_socket = \"{}\"\npmd_threads = 1\npmd_cpus = [{}]\nmbufs = 32768\n\n\
         [[bridge]]\nname = \"pvpa\"\n\n[[bridge]]\nname = \"pvpb\"\n",
        work.join(format!("switch-{n}.ctl")).display(),
        a.host_cpu
    );
    for (i, (name, dev)) in names.iter().zip(vdevs).enumerate() {
        toml += &format!(
            "\n[[port]]\nname = \"{name}\"\nbridge = \"{}\"\ndevargs = \"{dev}\"\n",
            if i < 2 { "pvpa" } else { "pvpb" }
        );
    }
    let cfg = work.join(format!("switch-{n}.toml"));
    std::fs::write(&cfg, toml).map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    let mut c = Command::new(&a.switch);
    c.arg("--config").arg(&cfg).stdin(Stdio::null());
    Ok(c)
}

fn wait_sockets(paths: &[PathBuf], secs: u64) -> Result<(), String> {
    let t0 = Instant::now();
    for p in paths {
        while !p.exists() {
            if t0.elapsed() > Duration::from_secs(secs) {
                return Err(format!(
                    "{} did not appear within {secs} s (did the host testpmd start? see its log)",
                    p.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

fn open_port(devargs: &str, id: u16, pool: &Mempool) -> Result<GenPort, String> {
    let mut port = ferrovia_pmd::open(devargs, &PortConf::new(id, pool.clone()))
        .map_err(|e| format!("{devargs}: {e}"))?;
    port.start().map_err(|e| format!("{devargs}: {e}"))?;
    let t0 = Instant::now();
    while !port.link().up {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(format!("{devargs}: the link did not come up within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let rx = port.rx_queue(0).map_err(|e| e.to_string())?;
    let tx = port.tx_queue(0).map_err(|e| e.to_string())?;
    Ok(GenPort {
        port,
        rx,
        tx,
        name: devargs.to_string(),
    })
}

/// The VNF's macswap on the generator's thread: port 0 → port 1 and back.
struct InprocVnf {
    ports: [GenPort; 2],
    burst: Burst,
    dropped: u64,
}

impl InprocVnf {
    fn poll(&mut self, caches: &mut LcoreCaches) {
        for i in 0..2 {
            if self.ports[i].rx.rx_burst(caches, &mut self.burst, 32) == 0 {
                continue;
            }
            for m in self.burst.iter_mut() {
                if let Some(d) = m.data_mut().get_mut(..12) {
                    let (a, b) = d.split_at_mut(6);
                    a.swap_with_slice(b);
                }
            }
            self.ports[1 - i].tx.tx_burst(caches, &mut self.burst);
            for m in self.burst.drain(..) {
                self.dropped += 1;
                caches.free(m);
            }
        }
    }
}

struct Pvp {
    generator: Vec<GenPort>,
    vnf: Option<InprocVnf>,
    pool: Mempool,
    caches: LcoreCaches,
    clock: Clock,
    size: usize,
}

/// How much longer than its duration a paced trial may run to send its count: a share of
/// the duration plus a fixed allowance, enough for the few-millisecond stalls of a shared
/// CPU and far below what a generator slower than the load would need.
const STRETCH: f64 = 0.01;
/// The fixed part of the stretch, in seconds.
const STRETCH_S: f64 = 0.01;

/// Frames one stream sends in a paced trial.
fn trial_count(per_stream_pps: f64, duration: f64) -> u64 {
    (per_stream_pps * duration).round().max(1.0) as u64
}

impl Pvp {
    fn run(
        &mut self,
        per_stream_pps: Option<f64>,
        duration: f64,
    ) -> ferrovia_pktgen::trial::TrialReport {
        let macs: Vec<[u8; 6]> = self.generator.iter().map(|p| p.port.info().mac.0).collect();
        // A paced trial sends its whole count (RFC 9971's trial duration stretching): a
        // stall of the generator's thread delays frames rather than dropping them, and the
        // trial may run a little over its duration to finish. Frames the device refuses are
        // lost at its door (WhenFull::Drop), so the device cannot slow the generator down,
        // and the stretch is the generator's alone.
        let count = per_stream_pps.map(|p| trial_count(p, duration));
        let spec = TrialSpec {
            streams: vec![
                StreamSpec {
                    port: 0,
                    src: macs[0],
                    dst: [2, 0, 0, 0, 0, 0xb0],
                },
                StreamSpec {
                    port: 1,
                    src: macs[1],
                    dst: [2, 0, 0, 0, 0, 0xb1],
                },
            ],
            sizes: SizePattern::fixed(self.size as u16),
            pps: per_stream_pps,
            flows: 256,
            warmup: 0.5,
            duration: if count.is_some() {
                duration * (1.0 + STRETCH) + STRETCH_S
            } else {
                duration
            },
            count,
            drain: 0.2,
            burst: 32,
            verify: false,
            when_full: WhenFull::Drop,
            stop: None,
        };
        let vnf = &mut self.vnf;
        let mut side = |c: &mut LcoreCaches| {
            if let Some(v) = vnf.as_mut() {
                v.poll(c);
            }
        };
        run_trial(
            &mut self.generator,
            &self.pool,
            &mut self.caches,
            &self.clock,
            &spec,
            |_| {},
            &mut side,
        )
    }
}

impl TrialRunner for Pvp {
    fn trial(&mut self, load: f64, duration: f64) -> Result<TrialOutcome, String> {
        let r = self.run(Some(load / 2.0), duration);
        // Frames the generator could not send within the stretched duration (its core is
        // slower than the load) count as lost: the trial did not carry its load.
        let intended = 2 * trial_count(load / 2.0, duration);
        let sent = r.sent.max(intended);
        eprintln!(
            "  trial {:>7.3} Mpps x {:>4.1} s: sent {} of {} in {:.3} s, {} refused by the host, received {}, loss {:.4} %",
            load / 1e6,
            duration,
            r.sent,
            intended,
            r.seconds,
            r.tx_full_dropped,
            r.received,
            (sent - r.received.min(sent)) as f64 / sent.max(1) as f64 * 100.0
        );
        Ok(TrialOutcome {
            load,
            duration: r.seconds.max(1e-9),
            sent,
            received: r.received,
        })
    }
}

#[derive(Serialize, Clone)]
struct LatencyRun {
    percent_of_ndr: u32,
    load_pps: f64,
    loss_ratio: f64,
    latency: LatencySummary,
}

#[derive(Serialize, Clone)]
struct SizeResult {
    host: String,
    size: usize,
    round: u32,
    max_load_pps: f64,
    goals: Vec<GoalResult>,
    trials: Vec<TrialOutcome>,
    latency: Vec<LatencyRun>,
    vnf_dropped: u64,
}

fn run_host(
    a: &Args,
    host: &str,
    size: usize,
    work: &Path,
    n: usize,
) -> Result<SizeResult, String> {
    unpin();
    let socks: Vec<PathBuf> = ["genA", "vnf0", "genB", "vnf1"]
        .iter()
        .map(|s| work.join(format!("{s}-{n}.sock")))
        .collect();
    let vdevs: Vec<String> = socks
        .iter()
        .enumerate()
        .map(|(i, s)| format!("net_vhost{i},iface={}", s.display()))
        .collect();
    let log =
        std::fs::File::create(work.join(format!("host-{n}.log"))).map_err(|e| e.to_string())?;
    let mut hc = if host == "switch" {
        switch_cmd(a, &vdevs, work, n)?
    } else {
        testpmd_cmd(
            host,
            a,
            a.host_cpu,
            &vdevs,
            "io",
            &format!("pvp{}-{n}", std::process::id()),
        )
    };
    hc.stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let _host = Proc(
        hc.spawn().map_err(|e| format!("cannot start the {host} host testpmd: {e} (is it installed? DPDK's comes from apt-get install dpdk)"))?);
    wait_sockets(&socks, 30)?;
    let pool = Mempool::new(MempoolConfig {
        name: "pvp".into(),
        // Four virtio-user ports: each keeps its receive ring full of buffers and may have
        // its transmit ring full of frames the host has not taken yet (a transmit ring gives
        // its buffers back only when it sends again), plus the bursts in hand.
        count: 8 * a.queue_size as usize + 8192,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let mut _vnf_proc = None;
    let vnf = match a.vnf.as_str() {
        "vm" => {
            _vnf_proc = Some(start_vm(
                a,
                [&socks[1], &socks[3]],
                &work.join(format!("vnf-{n}.log")),
            )?);
            None
        }
        "inproc" => {
            let p0 = open_port(
                &format!(
                    "net_virtio_user20,path={},queue_size={}",
                    socks[1].display(),
                    a.queue_size
                ),
                20,
                &pool,
            )?;
            let p1 = open_port(
                &format!(
                    "net_virtio_user21,path={},queue_size={}",
                    socks[3].display(),
                    a.queue_size
                ),
                21,
                &pool,
            )?;
            // The ports stay open for the run and close with the VNF, at the end of this host's
            // run: a port left open would keep its ring memory registered, and the next
            // host's virtio-user ports would offer the backend one more region each time.
            Some(InprocVnf {
                ports: [p0, p1],
                burst: Burst::new(),
                dropped: 0,
            })
        }
        which => {
            let vd = [
                format!(
                    "net_virtio_user0,path={},queue_size={}",
                    socks[1].display(),
                    a.queue_size
                ),
                format!(
                    "net_virtio_user1,path={},queue_size={}",
                    socks[3].display(),
                    a.queue_size
                ),
            ];
            let log = std::fs::File::create(work.join(format!("vnf-{n}.log")))
                .map_err(|e| e.to_string())?;
            let mut vc = testpmd_cmd(
                which,
                a,
                a.vnf_cpu,
                &vd,
                "macswap",
                &format!("pvpvnf{}-{n}", std::process::id()),
            );
            vc.stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log);
            _vnf_proc = Some(Proc(
                vc.spawn()
                    .map_err(|e| format!("cannot start the VNF testpmd: {e}"))?,
            ));
            None
        }
    };
    pin(a.gen_cpu);
    let generator = vec![
        open_port(
            &format!(
                "net_virtio_user10,path={},queue_size={}",
                socks[0].display(),
                a.queue_size
            ),
            10,
            &pool,
        )?,
        open_port(
            &format!(
                "net_virtio_user11,path={},queue_size={}",
                socks[2].display(),
                a.queue_size
            ),
            11,
            &pool,
        )?,
    ];
    let mut pvp = Pvp {
        generator,
        vnf,
        pool,
        caches: LcoreCaches::new(),
        clock: Clock::calibrate(Duration::from_millis(50)),
        size,
    };
    let line_load = 2.0 * a.line_rate / ((size as u64 + WIRE_OVERHEAD) * 8) as f64;
    let vm = a.vnf == "vm";
    let max_load = a
        .max_load
        .unwrap_or(if vm { 40_000.0 } else { line_load })
        .min(line_load);
    let min_load = a
        .min_load
        .unwrap_or(if vm { 1_000.0 } else { 10_000.0 })
        .min(max_load / 2.0);
    if vm {
        // In the first seconds after the guest comes up, frames do not all go round (seen: a
        // few 1-s trials with nothing sent); the search must not start before the loop carries
        // its floor without loss.
        let t0 = Instant::now();
        loop {
            let r = pvp.run(Some(min_load / 2.0), 1.0);
            if r.sent > 0 && r.lost == 0 {
                break;
            }
            eprintln!(
                "ferrovia-pvp: settling: {} of {:.0} frames sent, {} received",
                r.sent,
                min_load * r.seconds,
                r.received
            );
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "the loop through the guest did not carry {min_load:.0} frames/s without loss within 30 s"
                ));
            }
        }
    }
    let cfg = SearchConfig {
        min_load,
        max_load,
        initial_duration: a.initial,
        final_duration: a.fin,
        width: a.width,
        phases: a.phases,
        max_trials: 400,
        exceed_ratio: a.exceed_ratio,
        duration_sum: a.duration_sum.unwrap_or(3.0 * a.fin),
    };
    eprintln!(
        "ferrovia-pvp: host {host}, {size} B: searching NDR and PDR up to {:.3} Mpps",
        max_load / 1e6
    );
    let res = search(&cfg, &ndr_pdr(), &mut pvp)?;
    let ndr = res.goals[0].lower_bound;
    let mut latency = Vec::new();
    for pct in [10u32, 50, 90] {
        let load = ndr * f64::from(pct) / 100.0;
        let r = pvp.run(Some(load / 2.0), a.lat_dur);
        latency.push(LatencyRun {
            percent_of_ndr: pct,
            load_pps: load,
            loss_ratio: r.loss_ratio,
            latency: r.latency.clone(),
        });
    }
    let vnf_dropped = pvp.vnf.as_ref().map_or(0, |v| v.dropped);
    Ok(SizeResult {
        host: host.into(),
        size,
        round: 0,
        max_load_pps: max_load,
        goals: res.goals,
        trials: res.trials,
        latency,
        vnf_dropped,
    })
}

/// The CPU mask this process started with, read once before any pinning.
fn startup_mask() -> &'static libc::cpu_set_t {
    static MASK: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();
    MASK.get_or_init(|| {
        // SAFETY: a zeroed cpu_set_t is a valid empty set, and sched_getaffinity writes at
        // most its size into it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
                for c in 0..std::thread::available_parallelism().map_or(1, |n| n.get()) {
                    libc::CPU_SET(c, &mut set);
                }
            }
            set
        }
    })
}

/// Gives this thread back the CPUs the process started with. Children inherit the mask of the
/// thread that spawns them: a host forwarder started after the previous run pinned the
/// generator would otherwise be confined to the generator's CPU (our testpmd then runs its
/// lcore unpinned there, and the two share one CPU).
fn unpin() {
    let set = startup_mask();
    // SAFETY: `set` is a valid cpu_set_t that lives for the program; the call only reads it.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) } != 0 {
        eprintln!("ferrovia-pvp: note: cannot restore the CPU mask before starting the next run");
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity take
    // pointers to it, which live across the calls.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            eprintln!("ferrovia-pvp: note: cannot pin the generator to CPU {cpu}");
        }
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// NDR and PDR of one host at one frame size over every round.
#[derive(Serialize, Clone)]
struct Summary {
    host: String,
    size: usize,
    /// Each round's NDR and PDR, frames per second, in round order.
    ndr: Vec<f64>,
    pdr: Vec<f64>,
    ndr_median: f64,
    pdr_median: f64,
}

/// One of our hosts' figures over DPDK's at one frame size.
#[derive(Serialize, Clone)]
struct Ratio {
    /// Our host (`ours` or `switch`).
    host: String,
    size: usize,
    /// Median NDR (ours) / median NDR (DPDK's).
    ndr: f64,
    /// Median PDR (ours) / median PDR (DPDK's).
    pdr: f64,
    /// Each round's NDR ratio (the two hosts measured back to back).
    ndr_per_round: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summarize_rounds(a: &Args, results: &[SizeResult]) -> (Vec<Summary>, Vec<Ratio>) {
    let mut sums = Vec::new();
    let mut ratios = Vec::new();
    for &size in &a.sizes {
        for host in &a.hosts {
            let rs: Vec<&SizeResult> = results
                .iter()
                .filter(|r| &r.host == host && r.size == size)
                .collect();
            if rs.is_empty() {
                continue;
            }
            let ndr: Vec<f64> = rs.iter().map(|r| r.goals[0].lower_bound).collect();
            let pdr: Vec<f64> = rs.iter().map(|r| r.goals[1].lower_bound).collect();
            sums.push(Summary {
                host: host.clone(),
                size,
                ndr_median: median(&ndr),
                pdr_median: median(&pdr),
                ndr,
                pdr,
            });
        }
        let of = |h: &str| {
            sums.iter()
                .find(|x: &&Summary| x.host == h && x.size == size)
        };
        for ours in ["ours", "switch"] {
            let (Some(o), Some(d)) = (of(ours), of("dpdk")) else {
                continue;
            };
            ratios.push(Ratio {
                host: ours.into(),
                size,
                ndr: o.ndr_median / d.ndr_median,
                pdr: o.pdr_median / d.pdr_median,
                ndr_per_round: o.ndr.iter().zip(&d.ndr).map(|(x, y)| x / y).collect(),
            });
        }
    }
    (sums, ratios)
}

fn template(a: &Args, r: &Summary) -> String {
    let host = if r.host == "dpdk" {
        "DPDK 22.11 dpdk-testpmd (Debian)".to_string()
    } else if r.host == "switch" {
        format!(
            "Ferrovia vSwitch ferrovia-switch {} (two MAC-learning bridges, one PMD thread)",
            env!("CARGO_PKG_VERSION")
        )
    } else {
        format!("Ferrovia testpmd {}", env!("CARGO_PKG_VERSION"))
    };
    let guest = match a.vnf.as_str() {
        "inproc" => {
            "Ferrovia in-process macswap on 2 virtio-user ports (container VNF, generator's thread)"
                .to_string()
        }
        "ours" => format!(
            "Ferrovia testpmd {} macswap (container VNF)",
            env!("CARGO_PKG_VERSION")
        ),
        "vm" if std::env::var("PV_GUEST_PMD").as_deref() == Ok("af_packet") => format!(
            "Ferrovia testpmd {} macswap on net_af_packet (the guest kernel's virtio_net) in a QEMU guest",
            env!("CARGO_PKG_VERSION")
        ),
        "vm" => format!(
            "Ferrovia testpmd {} macswap on net_virtio_pci (userspace virtio-pci, uio_pci_generic, polling) in a QEMU guest",
            env!("CARGO_PKG_VERSION")
        ),
        _ => "DPDK 22.11 dpdk-testpmd macswap (container VNF)".into(),
    };
    let qemu = if a.vnf == "vm" {
        "QEMU 7.2 under TCG, 1 vCPU, 2 virtio-net-pci (vhost-user, vectors=0, 1024-entry rings)"
    } else {
        "none (container VNF on virtio-user)"
    };
    let rounds = if r.ndr.len() > 1 {
        let each: Vec<String> = r.ndr.iter().map(|x| format!("{:.3}", x / 1e6)).collect();
        format!(
            " (medians of {} rounds; NDR per round: {})",
            r.ndr.len(),
            each.join(", ")
        )
    } else {
        String::new()
    };
    format!(
        "Traffic Generator: ferrovia-pktgen {}\n\
         Acceptable Loss: 0% (NDR), 0.5% (PDR); MLRsearch goal exceed ratio {} over {} s of trials per load\n\
         Validation run time: {} s per final trial\n\
         Host DPDK version/commit: {host}\n\
         Guest DPDK version/commit: {guest}\n\
         Patches applied: none\n\
         QEMU version/commit: {qemu}\n\
         Virtio features: split ring, mrg_rxbuf on, queue_size {}\n\
         CPU: {}\n\
         NIC: none (the generator's ports are virtio-user on the host's vhost-user ports)\n\
         Frame size: {} B ({} B with FCS)\n\
         Result: {:.3} Mpps NDR, {:.3} Mpps PDR{rounds}\n",
        env!("CARGO_PKG_VERSION"),
        a.exceed_ratio,
        a.duration_sum.unwrap_or(3.0 * a.fin),
        a.fin,
        a.queue_size,
        cpu_model(),
        r.size,
        r.size + 4,
        r.ndr_median / 1e6,
        r.pdr_median / 1e6,
    )
}

fn svg_bars(title: &str, labels: &[String], series: &[(&str, Vec<f64>)], unit: &str) -> String {
    let w = 640.0;
    let h = 300.0;
    let (l, b) = (60.0, 40.0);
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let groups = labels.len().max(1) as f64;
    let gw = (w - l - 10.0) / groups;
    let bw = gw / (series.len() as f64 + 1.0);
    let colors = ["#3b6fb6", "#d9822b", "#5a9e4b", "#9b59b6"];
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<text x='{}' y='16' text-anchor='middle' font-size='14'>{title}</text>\n",
        w / 2.0
    );
    s += &format!(
        "<line x1='{l}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n<line x1='{l}' y1='24' x2='{l}' y2='{}' stroke='black'/>\n",
        h - b,
        w - 10.0,
        h - b,
        h - b
    );
    for t in 0..=4 {
        let v = max * f64::from(t) / 4.0;
        let y = h - b - (h - b - 24.0) * f64::from(t) / 4.0;
        s += &format!(
            "<text x='{}' y='{}' text-anchor='end'>{:.2}</text>\n",
            l - 4.0,
            y + 4.0,
            v
        );
    }
    s += &format!(
        "<text x='14' y='{}' transform='rotate(-90 14 {})' text-anchor='middle'>{unit}</text>\n",
        h / 2.0,
        h / 2.0
    );
    for (gi, lab) in labels.iter().enumerate() {
        let gx = l + gw * gi as f64;
        s += &format!(
            "<text x='{}' y='{}' text-anchor='middle'>{lab}</text>\n",
            gx + gw / 2.0,
            h - b + 16.0
        );
        for (si, (_, vals)) in series.iter().enumerate() {
            let v = vals.get(gi).copied().unwrap_or(0.0);
            let bh = (h - b - 24.0) * v / max;
            s += &format!(
                "<rect x='{:.1}' y='{:.1}' width='{:.1}' height='{:.1}' fill='{}'/><text x='{:.1}' y='{:.1}' text-anchor='middle' font-size='10'>{:.2}</text>\n",
                gx + bw * (si as f64 + 0.5),
                h - b - bh,
                bw * 0.9,
                bh,
                colors[si % 4],
                gx + bw * (si as f64 + 0.95),
                h - b - bh - 3.0,
                v
            );
        }
    }
    for (si, (name, _)) in series.iter().enumerate() {
        s += &format!(
            "<rect x='{}' y='{}' width='10' height='10' fill='{}'/><text x='{}' y='{}'>{name}</text>\n",
            l + 10.0 + 130.0 * si as f64,
            h - 14.0,
            colors[si % 4],
            l + 24.0 + 130.0 * si as f64,
            h - 5.0
        );
    }
    s + "</svg>\n"
}

fn html_report(a: &Args, results: &[SizeResult]) -> String {
    let (sums, ratios) = summarize_rounds(a, results);
    let labels: Vec<String> = a.sizes.iter().map(|s| format!("{s} B")).collect();
    let mut series = Vec::new();
    for h in &a.hosts {
        for (gi, g) in ["NDR", "PDR"].iter().enumerate() {
            let vals: Vec<f64> = a
                .sizes
                .iter()
                .map(|s| {
                    sums.iter()
                        .find(|r| &r.host == h && r.size == *s)
                        .map_or(0.0, |r| {
                            (if gi == 0 { r.ndr_median } else { r.pdr_median }) / 1e6
                        })
                })
                .collect();
            series.push((format!("{h} {g}"), vals));
        }
    }
    let series_ref: Vec<(&str, Vec<f64>)> = series
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    let mut body = format!(
        "<h1>PVP: ferrovia-pvp</h1>\n<p>Host forwarders: {}; VNF: {}; trials {}–{} s in {} phases, width {}; goal exceed ratio {} over {} s of trials per load; {} round(s), hosts alternating (medians shown).</p>\n",
        a.hosts.join(", "),
        a.vnf,
        a.initial,
        a.fin,
        a.phases,
        a.width,
        a.exceed_ratio,
        a.duration_sum.unwrap_or(3.0 * a.fin),
        a.rounds
    );
    if !ratios.is_empty() {
        body += "<h2>Our hosts over DPDK's</h2>\n<table border='1' cellpadding='4'><tr><th>host / dpdk</th><th>size</th><th>NDR ratio (medians)</th><th>PDR ratio (medians)</th><th>NDR ratio per round</th></tr>\n";
        for r in &ratios {
            let each: Vec<String> = r.ndr_per_round.iter().map(|x| format!("{x:.2}")).collect();
            body += &format!(
                "<tr><td>{}</td><td>{} B</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>\n",
                r.host,
                r.size,
                r.ndr,
                r.pdr,
                each.join(", ")
            );
        }
        body += "</table>\n";
    }
    body += &svg_bars(
        "Throughput (frames/s, both directions)",
        &labels,
        &series_ref,
        "Mpps",
    );
    let mut lat_series = Vec::new();
    for r in results {
        for l in &r.latency {
            if r.round != 0 {
                continue;
            }
            lat_series.push((
                format!("{} {} B {}%", r.host, r.size, l.percent_of_ndr),
                l.latency.p99_ns as f64 / 1e3,
            ));
        }
    }
    let lat_labels: Vec<String> = lat_series.iter().map(|x| x.0.clone()).collect();
    let lat_vals = vec![(
        "p99 latency",
        lat_series.iter().map(|x| x.1).collect::<Vec<_>>(),
    )];
    body += &svg_bars(
        "p99 latency at 10/50/90 % of NDR (first round)",
        &lat_labels,
        &lat_vals,
        "us",
    );
    body += "<h2>Results</h2>\n<table border='1' cellpadding='4'><tr><th>round</th><th>host</th><th>size</th><th>NDR Mpps</th><th>PDR Mpps</th><th>latency p50/p99/max us at 10/50/90 %</th></tr>\n";
    for r in results {
        let lat: Vec<String> = r
            .latency
            .iter()
            .map(|l| {
                format!(
                    "{:.1}/{:.1}/{:.1}",
                    l.latency.p50_ns as f64 / 1e3,
                    l.latency.p99_ns as f64 / 1e3,
                    l.latency.max_ns as f64 / 1e3
                )
            })
            .collect();
        body += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>\n",
            r.round + 1,
            r.host,
            r.size,
            r.goals[0].lower_bound / 1e6,
            r.goals[1].lower_bound / 1e6,
            lat.join(" · ")
        );
    }
    body += "</table>\n<h2>Results template</h2>\n";
    for r in &sums {
        body += &format!("<pre>{}</pre>\n", template(a, r));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>ferrovia-pvp</title></head><body>\n{body}</body></html>\n"
    )
}

fn main() -> ExitCode {
    startup_mask();
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ferrovia-pvp: {e}");
            return ExitCode::from(2);
        }
    };
    let work = std::env::temp_dir().join(format!("ferrovia-pvp-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("ferrovia-pvp: cannot create {}: {e}", work.display());
        return ExitCode::FAILURE;
    }
    let mut results = Vec::new();
    let mut regions_after_first = None;
    let mut n = 0;
    for &size in &a.sizes {
        for round in 0..a.rounds {
            // ABBA: the hosts' order alternates from round to round, so neither always runs
            // first on a machine whose speed drifts.
            let order: Vec<&String> = if round % 2 == 0 {
                a.hosts.iter().collect()
            } else {
                a.hosts.iter().rev().collect()
            };
            for host in order {
                n += 1;
                if a.rounds > 1 {
                    eprintln!("ferrovia-pvp: round {} of {}", round + 1, a.rounds);
                }
                let result = run_host(&a, host, size, &work, n).and_then(|r| {
                    // Every port and pool of the run is closed now; only the process's ring
                    // arena stays registered, as after the first run. A region more would be
                    // offered to every later run's backend, until one refuses the table
                    // (DPDK's vhost takes 8 regions).
                    let left = ferrovia_memory::registry::snapshot().len();
                    let first = *regions_after_first.get_or_insert(left);
                    if left <= first {
                        Ok(r)
                    } else {
                        Err(format!("{} memory regions more are registered than after the first run (a port or pool was not closed)", left - first))
                    }
                });
                match result {
                    Ok(mut r) => {
                        r.round = round;
                        results.push(r);
                    }
                    Err(e) => {
                        eprintln!(
                            "ferrovia-pvp: host {host}, {size} B: {e} (logs in {})",
                            work.display()
                        );
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    let (sums, ratios) = summarize_rounds(&a, &results);
    println!(
        "{:>5} {:>6} {:>6} {:>10} {:>10}   latency p50/p99/max us at 10 / 50 / 90 % of NDR",
        "round", "host", "size", "NDR Mpps", "PDR Mpps"
    );
    for r in &results {
        let lat: Vec<String> = r
            .latency
            .iter()
            .map(|l| {
                format!(
                    "{:.1}/{:.1}/{:.1}",
                    l.latency.p50_ns as f64 / 1e3,
                    l.latency.p99_ns as f64 / 1e3,
                    l.latency.max_ns as f64 / 1e3
                )
            })
            .collect();
        println!(
            "{:>5} {:>6} {:>6} {:>10.3} {:>10.3}   {}",
            r.round + 1,
            r.host,
            r.size,
            r.goals[0].lower_bound / 1e6,
            r.goals[1].lower_bound / 1e6,
            lat.join("   ")
        );
    }
    if a.rounds > 1 {
        println!("\nmedians over {} rounds:", a.rounds);
        for s in &sums {
            println!(
                "{:>6} {:>6}   NDR {:.3} Mpps   PDR {:.3} Mpps",
                s.host,
                s.size,
                s.ndr_median / 1e6,
                s.pdr_median / 1e6
            );
        }
    }
    for r in &ratios {
        let each: Vec<String> = r.ndr_per_round.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "{} / dpdk at {} B: NDR {:.2}x, PDR {:.2}x (NDR ratio per round: {})",
            r.host,
            r.size,
            r.ndr,
            r.pdr,
            each.join(", ")
        );
    }
    println!();
    for r in &sums {
        println!("{}", template(&a, r));
    }
    if let Some(p) = &a.json {
        let v = serde_json::json!({ "results": results, "summary": sums, "ratios": ratios });
        if let Err(e) = std::fs::write(p, serde_json::to_string_pretty(&v).expect("serialises")) {
            eprintln!("ferrovia-pvp: cannot write {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(p) = &a.report
        && let Err(e) = std::fs::write(p, html_report(&a, &results))
    {
        eprintln!("ferrovia-pvp: cannot write {}: {e}", p.display());
        return ExitCode::FAILURE;
    }
    let _ = std::fs::remove_dir_all(&work);
    ExitCode::SUCCESS
}

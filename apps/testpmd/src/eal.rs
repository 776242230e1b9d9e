//! EAL (environment) options: the part of a DPDK command line before `--`.

use crate::lcore::{Lcore, parse_coremask, parse_lcores};

/// What the EAL options asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EalOpts {
    /// Lcores in order; the first is the main (control) lcore unless `--main-lcore` says
    /// otherwise.
    pub lcores: Vec<Lcore>,
    /// Main lcore id.
    pub main_lcore: Option<u32>,
    /// Virtual devices in order (ports after the PCI devices).
    pub vdevs: Vec<String>,
    /// PCI devices given with `-a`/`-w` (`ADDR[,devargs]`), in order: ports 0, 1, ...
    /// driven by `net_virtio_pci`, as DPDK probes PCI devices before virtual ones.
    pub pci: Vec<String>,
    /// Options accepted but without meaning here, named once at start-up.
    pub ignored: Vec<String>,
    /// `--file-prefix`: the directory of the telemetry socket (DPDK's default: `rte`).
    pub file_prefix: Option<String>,
    /// `--no-telemetry`: no telemetry socket.
    pub no_telemetry: bool,
    /// Help was asked for (`-h`/`--help`, or `--vdev help`): print it and exit.
    pub help: Option<Help>,
}

/// Which help was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Help {
    /// `-h`/`--help`: the whole usage text.
    Usage,
    /// `--vdev help`: the drivers and their devargs keys.
    Drivers,
}

/// EAL options that take a value and have no meaning here (accepted, named once).
pub const IGNORED_WITH_VALUE: &[&str] = &[
    "-n",
    "-r",
    "--socket-mem",
    "--socket-limit",
    "-m",
    "--proc-type",
    "--log-level",
    "--iova-mode",
    "--base-virtaddr",
    "--huge-dir",
    "--mbuf-pool-ops-name",
    "--vfio-intr",
    "--syslog",
    "--trace",
    "-d",
    "--huge-worker-stack",
];

/// EAL flags that have no meaning here (accepted, named once).
pub const IGNORED_FLAGS: &[&str] = &[
    "--no-pci",
    "--in-memory",
    "--single-file-segments",
    "--no-huge",
    "--huge-unlink",
    "--no-shconf",
    "--legacy-mem",
    "--no-hpet",
    "--match-allocations",
    "--create-uio-dev",
    "-v",
];

/// PCI devices to drive (`net_virtio_pci`).
const PCI_ALLOW: &[&str] = &["-a", "--allow", "-w", "--pci-whitelist"];
/// PCI devices to leave alone: accepted and ignored (only allowed devices are probed).
const PCI_BLOCK: &[&str] = &["-b", "--block", "--pci-blacklist"];

/// Splits `--opt=value` into (`--opt`, Some(value)).
pub fn split_eq(arg: &str) -> (&str, Option<&str>) {
    if arg.starts_with("--")
        && let Some((k, v)) = arg.split_once('=')
    {
        return (k, Some(v));
    }
    (arg, None)
}

/// Parses EAL arguments (without the program name, up to but not including `--`).
pub fn parse(args: &[String]) -> Result<EalOpts, String> {
    let mut o = EalOpts::default();
    let mut i = 0;
    let mut lcores_given = false;
    while i < args.len() {
        let raw = args[i].as_str();
        let (key, inline) = split_eq(raw);
        // Short options may carry their value glued on: -l0-1, -n4.
        let (key, inline) = if inline.is_none()
            && key.len() > 2
            && key.starts_with('-')
            && !key.starts_with("--")
        {
            (&key[..2], Some(&raw[2..]))
        } else {
            (key, inline)
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline {
                return Ok(v.to_string());
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("EAL option {name} needs a value"))
        };
        match key {
            "-l" | "--lcores" => {
                let v = value(key)?;
                o.lcores = parse_lcores(&v).map_err(|e| format!("invalid {key} '{v}': {e}"))?;
                lcores_given = true;
            }
            "-c" | "--coremask" => {
                let v = value(key)?;
                o.lcores = parse_coremask(&v).map_err(|e| format!("invalid -c '{v}': {e}"))?;
                lcores_given = true;
            }
            "--main-lcore" | "--master-lcore" => {
                let v = value(key)?;
                o.main_lcore = Some(v.parse().map_err(|_| format!("invalid {key} '{v}'"))?);
            }
            "-h" | "--help" if inline.is_none() => {
                o.help = Some(Help::Usage);
                return Ok(o);
            }
            "--vdev" => {
                let v = value(key)?;
                if v == "help" {
                    o.help = Some(Help::Drivers);
                    return Ok(o);
                }
                o.vdevs
                    .push(v.trim_matches('\'').trim_matches('"').to_string());
            }
            "--file-prefix" => {
                let v = value(key)?;
                if v.is_empty() || v.contains('/') {
                    return Err(format!(
                        "invalid --file-prefix '{v}': it must be non-empty and have no '/'"
                    ));
                }
                o.file_prefix = Some(v);
            }
            "--no-telemetry" if inline.is_none() => o.no_telemetry = true,
            k if PCI_ALLOW.contains(&k) => {
                let v = value(k)?;
                o.pci
                    .push(v.trim_matches('\'').trim_matches('"').to_string());
            }
            k if PCI_BLOCK.contains(&k) => {
                let v = value(k)?;
                o.ignored
                    .push(format!("{k} {v} (only -a devices are probed)"));
            }
            k if IGNORED_WITH_VALUE.contains(&k) => {
                let v = value(k)?;
                o.ignored.push(format!("{k} {v}"));
            }
            k if IGNORED_FLAGS.contains(&k) && inline.is_none() => {
                o.ignored.push(k.to_string());
            }
            other => {
                return Err(format!(
                    "unknown EAL option '{other}' (app options go after '--'; supported EAL options: -l/--lcores, -c, --main-lcore, --vdev, --file-prefix, --no-telemetry, -a/-b, -h/--help, and the ignored {} {}; see --help)",
                    IGNORED_WITH_VALUE.join(" "),
                    IGNORED_FLAGS.join(" ")
                ));
            }
        }
        i += 1;
    }
    if !lcores_given {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as u32;
        o.lcores = (0..n)
            .map(|c| Lcore {
                id: c,
                cpu: Some(c),
            })
            .collect();
    }
    if let Some(m) = o.main_lcore
        && !o.lcores.iter().any(|l| l.id == m)
    {
        return Err(format!("--main-lcore {m} is not in the lcore list"));
    }
    Ok(o)
}

impl EalOpts {
    /// Every port's devargs in port order: the PCI devices (`-a ADDR[,k=v...]` becomes
    /// `net_virtio_pciN,addr=ADDR[,k=v...]`), then the virtual devices.
    pub fn devices(&self) -> Vec<String> {
        self.pci
            .iter()
            .enumerate()
            .map(|(i, a)| match a.split_once(',') {
                Some((addr, rest)) => format!("net_virtio_pci{i},addr={addr},{rest}"),
                None => format!("net_virtio_pci{i},addr={a}"),
            })
            .chain(self.vdevs.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn pci_devices_become_virtio_pci_ports_first() {
        let o = parse(&v(
            "-l 0 -a 0000:00:04.0 -w 0000:00:05.0,queue_size=256 --vdev net_null0 -b 0000:00:06.0",
        ))
        .unwrap();
        assert_eq!(
            o.devices(),
            vec![
                "net_virtio_pci0,addr=0000:00:04.0",
                "net_virtio_pci1,addr=0000:00:05.0,queue_size=256",
                "net_null0"
            ]
        );
        assert_eq!(o.ignored.len(), 1);
        let o = parse(&v("--allow=0000:00:04.0")).unwrap();
        assert_eq!(o.pci, vec!["0000:00:04.0"]);
    }

    #[test]
    fn how_to_eal_lines() {
        let o = parse(&v("-l 0-1 -n 4 --socket-mem 1024,1024 --vdev eth_vhost0,iface=/tmp/sock0 --file-prefix=host --no-pci")).unwrap();
        assert_eq!(o.lcores.len(), 2);
        assert_eq!(o.vdevs, vec!["eth_vhost0,iface=/tmp/sock0"]);
        assert_eq!(o.ignored.len(), 3);
        assert_eq!(o.file_prefix.as_deref(), Some("host"));
        assert!(!o.no_telemetry);
        assert!(parse(&v("--no-telemetry")).unwrap().no_telemetry);
        assert!(parse(&v("--file-prefix a/b")).is_err());
        let o = parse(&v("-l 6-7 -n 4 -m 1024 --no-pci --vdev=virtio_user0,path=/var/run/usvhost --file-prefix=container")).unwrap();
        assert_eq!(
            o.lcores.iter().map(|l| l.id).collect::<Vec<_>>(),
            vec![6, 7]
        );
        let o = parse(&v("-l 0,2,3,4,5 --socket-mem=1024 -n 4 --vdev net_vhost0,iface=/tmp/vhost-user1 --vdev net_vhost1,iface=/tmp/vhost-user2")).unwrap();
        assert_eq!(o.lcores.len(), 5);
        assert_eq!(o.vdevs.len(), 2);
        let o = parse(&v(
            "-l 0,1,2 --socket-mem 1024 -n 4 --proc-type auto --file-prefix pg",
        ))
        .unwrap();
        assert_eq!(o.lcores.len(), 3);
        let o = parse(&v("--vdev=net_af_packet0,iface=tap0 --in-memory --no-pci")).unwrap();
        assert_eq!(o.vdevs.len(), 1);
        let o = parse(&v("--lcores 0@0,1@0")).unwrap();
        assert_eq!(
            o.lcores,
            vec![
                Lcore {
                    id: 0,
                    cpu: Some(0)
                },
                Lcore {
                    id: 1,
                    cpu: Some(0)
                }
            ]
        );
    }

    #[test]
    fn help_is_asked_for() {
        assert_eq!(parse(&v("--help")).unwrap().help, Some(Help::Usage));
        assert_eq!(parse(&v("-l 0-1 -h")).unwrap().help, Some(Help::Usage));
        assert_eq!(parse(&v("--vdev help")).unwrap().help, Some(Help::Drivers));
        assert_eq!(parse(&v("--vdev=help")).unwrap().help, Some(Help::Drivers));
        assert_eq!(parse(&v("-l 0-1")).unwrap().help, None);
    }

    #[test]
    fn bad_options_are_named() {
        let e = parse(&v("--bogus")).unwrap_err();
        assert!(e.contains("'--bogus'"), "{e}");
        let e = parse(&v("-l")).unwrap_err();
        assert!(e.contains("-l needs a value"), "{e}");
        let e = parse(&v("-l x-y")).unwrap_err();
        assert!(e.contains("invalid -l"), "{e}");
    }
}

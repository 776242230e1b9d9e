//! Parsing of DPDK-style virtual device arguments, e.g.
//! `net_vhost0,iface=/tmp/sock0,queues=2,client=1` or `virtio_user0,path=/tmp/sock0`.
//!
//! The driver is chosen by the name's prefix (as DPDK matches it); the rest is `key=value` pairs.
//! Unknown keys, bad values and missing required keys are errors that name the key and list the
//! valid ones.

use crate::error::{Error, Result};

/// The drivers a devargs name can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    /// vhost-user backend port (`net_vhost`, `eth_vhost`).
    Vhost,
    /// virtio-user driver port (`net_virtio_user`, `virtio_user`).
    VirtioUser,
    /// In-memory ring pair port (`net_ring`).
    Ring,
    /// Sink/source port (`net_null`).
    Null,
    /// Kernel tap device (`net_tap`).
    Tap,
    /// AF_PACKET socket on a kernel interface (`net_af_packet`).
    AfPacket,
}

impl DriverKind {
    /// DPDK's driver name.
    pub fn driver_name(self) -> &'static str {
        match self {
            DriverKind::Vhost => "net_vhost",
            DriverKind::VirtioUser => "net_virtio_user",
            DriverKind::Ring => "net_ring",
            DriverKind::Null => "net_null",
            DriverKind::Tap => "net_tap",
            DriverKind::AfPacket => "net_af_packet",
        }
    }
}

const PREFIXES: &[(&str, DriverKind)] = &[
    ("net_virtio_user", DriverKind::VirtioUser),
    ("virtio_user", DriverKind::VirtioUser),
    ("net_vhost", DriverKind::Vhost),
    ("eth_vhost", DriverKind::Vhost),
    ("net_ring", DriverKind::Ring),
    ("eth_ring", DriverKind::Ring),
    ("net_null", DriverKind::Null),
    ("eth_null", DriverKind::Null),
    ("net_tap", DriverKind::Tap),
    ("net_af_packet", DriverKind::AfPacket),
    ("eth_af_packet", DriverKind::AfPacket),
];

/// A parsed devargs string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Devargs {
    /// Full device name (`net_vhost0`).
    pub name: String,
    /// Driver selected by the name's prefix.
    pub kind: DriverKind,
    /// `key=value` pairs in order.
    pub args: Vec<(String, String)>,
}

impl Devargs {
    /// Parses `name[,key=value]*`.
    pub fn parse(s: &str) -> Result<Devargs> {
        let s = s.trim();
        let mut parts = s.split(',');
        let name = parts.next().unwrap_or("").trim().to_string();
        let kind = PREFIXES
            .iter()
            .find(|(p, _)| {
                name.starts_with(p) && name[p.len()..].chars().all(|c| c.is_ascii_digit())
            })
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let known: Vec<&str> = PREFIXES.iter().map(|(p, _)| *p).collect();
                Error::Devargs(format!(
                    "unknown virtual device '{name}': the name must be a driver prefix followed by an instance number, one of: {}",
                    known.join(", ")
                ))
            })?;
        let mut args = Vec::new();
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (k, v) = p.split_once('=').ok_or_else(|| {
                Error::Devargs(format!("{name}: argument '{p}' must be key=value"))
            })?;
            let k = k.trim();
            if args.iter().any(|(ek, _): &(String, String)| ek == k) {
                return Err(Error::Devargs(format!(
                    "{name}: argument '{k}' given twice"
                )));
            }
            args.push((k.to_string(), v.trim().to_string()));
        }
        Ok(Devargs { name, kind, args })
    }

    /// Fails naming the first key not in `valid`, listing the valid keys.
    pub fn check_keys(&self, valid: &[&str]) -> Result<()> {
        for (k, _) in &self.args {
            if !valid.contains(&k.as_str()) {
                return Err(Error::Devargs(format!(
                    "{}: unknown argument '{k}'; valid arguments for {} are: {}",
                    self.name,
                    self.kind.driver_name(),
                    valid.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A required string value.
    pub fn required(&self, key: &str, what: &str) -> Result<String> {
        self.get(key).map(str::to_string).ok_or_else(|| {
            Error::Devargs(format!(
                "{}: missing required argument '{key}' ({what}), e.g. {},{key}=/tmp/sock0",
                self.name, self.name
            ))
        })
    }

    /// An unsigned number (decimal or 0x hex) within `[min, max]`, or `default` when absent.
    pub fn number(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        let parsed = if let Some(h) = v.strip_prefix("0x") {
            u64::from_str_radix(h, 16)
        } else {
            v.parse::<u64>()
        };
        match parsed {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(Error::Devargs(format!(
                "{}: bad value '{v}' for '{key}': expected a number from {min} to {max}",
                self.name
            ))),
        }
    }

    /// A 0/1 flag, or `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.number(key, default as u64, 0, 1)? == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn how_to_forms_parse() {
        let d = Devargs::parse("eth_vhost0,iface=/tmp/sock0").unwrap();
        assert_eq!(d.kind, DriverKind::Vhost);
        assert_eq!(d.get("iface"), Some("/tmp/sock0"));
        let d = Devargs::parse("virtio_user0,path=/var/run/usvhost").unwrap();
        assert_eq!(d.kind, DriverKind::VirtioUser);
        let d = Devargs::parse("net_virtio_user1,path=/tmp/s,queue_size=1024,packed_vq=1,server=1")
            .unwrap();
        assert_eq!(d.number("queue_size", 256, 1, 32768).unwrap(), 1024);
        assert!(d.flag("server", false).unwrap());
        assert!(!d.flag("mrg_rxbuf", false).unwrap());
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let e = Devargs::parse("net_foo0").unwrap_err().to_string();
        assert!(e.contains("net_vhost"), "{e}");
        let d = Devargs::parse("net_vhost0,iface=/x,queus=2").unwrap();
        let e = d.check_keys(&["iface", "queues"]).unwrap_err().to_string();
        assert!(e.contains("'queus'") && e.contains("queues"), "{e}");
        let d = Devargs::parse("net_vhost0,queues=abc").unwrap();
        let e = d.number("queues", 1, 1, 128).unwrap_err().to_string();
        assert!(e.contains("'abc'") && e.contains("1 to 128"), "{e}");
        let e = d.required("iface", "socket path").unwrap_err().to_string();
        assert!(e.contains("missing required argument 'iface'"), "{e}");
        assert!(Devargs::parse("net_vhost0,iface").is_err());
        assert!(Devargs::parse("net_vhost0,iface=a,iface=b").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = Devargs::parse(&s);
        }
    }
}

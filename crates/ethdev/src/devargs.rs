//! Parsing of DPDK-style virtual device arguments, e.g.
//! `net_vhost0,iface=/tmp/sock0,queues=2,client=1` or `virtio_user0,path=/tmp/sock0`.
//!
//! [`Devargs::parse`] knows no driver: it splits the device name into a driver name (the name
//! without its trailing instance number) and the instance number, and keeps the `key=value`
//! pairs in order. The driver registry (`ferrovia_pmd::registry`) looks the driver name up, and
//! [`Devargs::check_keys`] checks the pairs against the keys the driver declares
//! ([`KeySpec`]): unknown keys, values of the wrong type and missing required keys are errors
//! that name the key and list the valid ones.

use crate::error::{Error, Result};
use crate::port::MacAddr;

/// The type of a devargs value, which [`Devargs::check_keys`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `0` or `1`.
    Flag,
    /// An unsigned number, decimal or `0x` hex, within `min..=max`.
    Number {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Any non-empty text.
    Text,
    /// A filesystem path (non-empty).
    Path,
    /// A unicast, non-zero MAC address such as `02:00:00:00:00:01`.
    Mac,
}

impl KeyKind {
    /// How the value is written, for usage lines: `<0|1>`, `<1..128>`, `<path>`, ...
    pub fn placeholder(self) -> String {
        match self {
            KeyKind::Flag => "<0|1>".into(),
            KeyKind::Number { min, max } => format!("<{min}..{max}>"),
            KeyKind::Text => "<text>".into(),
            KeyKind::Path => "<path>".into(),
            KeyKind::Mac => "<mac>".into(),
        }
    }

    /// An example value, for error messages that show the fix.
    fn example(self) -> String {
        match self {
            KeyKind::Flag => "1".into(),
            KeyKind::Number { min, .. } => min.to_string(),
            KeyKind::Text => "value".into(),
            KeyKind::Path => "/tmp/sock0".into(),
            KeyKind::Mac => "02:00:00:00:00:01".into(),
        }
    }
}

/// One devargs key a driver declares: its name, type, default and a one-line description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// The key (`iface`).
    pub name: &'static str,
    /// The value's type.
    pub kind: KeyKind,
    /// Whether the key must be given.
    pub required: bool,
    /// The value used when the key is absent, as written in devargs (`"1"`), or a short
    /// description of the behaviour (`"derived from the port id"`); `None` when there is none.
    pub default: Option<&'static str>,
    /// One line saying what the key does.
    pub doc: &'static str,
}

impl KeySpec {
    /// A key of type `kind`, optional and without a default.
    pub const fn new(name: &'static str, kind: KeyKind, doc: &'static str) -> KeySpec {
        KeySpec {
            name,
            kind,
            required: false,
            default: None,
            doc,
        }
    }

    /// A 0/1 flag.
    pub const fn flag(name: &'static str, doc: &'static str) -> KeySpec {
        KeySpec::new(name, KeyKind::Flag, doc)
    }

    /// A number within `min..=max`.
    pub const fn number(name: &'static str, min: u64, max: u64, doc: &'static str) -> KeySpec {
        KeySpec::new(name, KeyKind::Number { min, max }, doc)
    }

    /// A filesystem path.
    pub const fn path(name: &'static str, doc: &'static str) -> KeySpec {
        KeySpec::new(name, KeyKind::Path, doc)
    }

    /// Free text.
    pub const fn text(name: &'static str, doc: &'static str) -> KeySpec {
        KeySpec::new(name, KeyKind::Text, doc)
    }

    /// The `mac` key every driver accepts: the port's MAC address (default: derived from the
    /// port id, see [`MacAddr::for_port`]).
    pub const MAC: KeySpec = KeySpec::new(
        "mac",
        KeyKind::Mac,
        "the port's MAC address (unicast, not all zeros)",
    )
    .default_value("derived from the port id");

    /// The same key, required.
    pub const fn required(mut self) -> KeySpec {
        self.required = true;
        self
    }

    /// The same key with a default.
    pub const fn default_value(mut self, default: &'static str) -> KeySpec {
        self.default = Some(default);
        self
    }

    /// One usage line: `queues=<1..128>  queue pairs (default 1)`.
    pub fn usage(&self) -> String {
        let mut s = format!("{}={} {}", self.name, self.kind.placeholder(), self.doc);
        if self.required {
            s.push_str(" (required)");
        } else if let Some(d) = self.default {
            s.push_str(&format!(" (default {d})"));
        }
        s
    }

    /// Checks one value against the key's type; the error names the device, key and value.
    pub fn check(&self, device: &str, value: &str) -> Result<()> {
        let bad = |expected: String| Error::BadValue {
            device: device.to_string(),
            key: self.name.to_string(),
            value: value.to_string(),
            expected,
        };
        match self.kind {
            KeyKind::Flag => match value {
                "0" | "1" => Ok(()),
                _ => Err(bad("0 or 1".into())),
            },
            KeyKind::Number { min, max } => match parse_number(value) {
                Some(n) if (min..=max).contains(&n) => Ok(()),
                _ => Err(bad(format!("a number from {min} to {max}"))),
            },
            KeyKind::Text | KeyKind::Path if value.is_empty() => Err(bad(format!(
                "a non-empty {}",
                if self.kind == KeyKind::Path {
                    "path"
                } else {
                    "value"
                }
            ))),
            KeyKind::Text | KeyKind::Path => Ok(()),
            KeyKind::Mac => parse_port_mac(value).map(|_| ()).map_err(bad),
        }
    }
}

/// Parses a MAC address that a port may use: unicast and not all zeros. The error says what
/// is wrong, for "expected ..." messages.
fn parse_port_mac(value: &str) -> std::result::Result<MacAddr, String> {
    let m = value
        .parse::<MacAddr>()
        .map_err(|e| format!("a MAC address of six hex bytes such as 02:00:00:00:00:01 ({e})"))?;
    if m.is_zero() {
        return Err("a MAC address other than 00:00:00:00:00:00".into());
    }
    if !m.is_unicast() {
        return Err(format!(
            "a unicast MAC address: {m} is multicast (the first byte is odd); use e.g. 02:00:00:00:00:01"
        ));
    }
    Ok(m)
}

fn parse_number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse::<u64>().ok(),
    }
}

/// Formats `keys` as one line each, for error messages and usage text.
pub fn keys_usage(keys: &[KeySpec]) -> Vec<String> {
    keys.iter().map(KeySpec::usage).collect()
}

/// A parsed devargs string: `driver[instance][,key=value]*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Devargs {
    /// Full device name (`net_vhost0`).
    pub name: String,
    /// The driver name: the device name without its instance number (`net_vhost`).
    pub driver: String,
    /// The instance number (`0` in `net_vhost0`), `None` when the name has none.
    pub index: Option<u32>,
    /// `key=value` pairs in order.
    pub args: Vec<(String, String)>,
}

impl Devargs {
    /// Parses `name[,key=value]*`. The name is a driver name followed by an optional instance
    /// number; which drivers exist is the registry's business, not this function's.
    pub fn parse(s: &str) -> Result<Devargs> {
        let s = s.trim();
        let mut parts = s.split(',');
        let name = parts.next().unwrap_or("").trim().to_string();
        let driver = name.trim_end_matches(|c: char| c.is_ascii_digit());
        let digits = &name[driver.len()..];
        if driver.is_empty()
            || !driver
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::Devargs(format!(
                "bad virtual device name '{name}': expected a driver name followed by an instance number, such as net_vhost0"
            )));
        }
        let index = if digits.is_empty() {
            None
        } else {
            Some(digits.parse::<u32>().map_err(|_| {
                Error::Devargs(format!(
                    "bad virtual device name '{name}': instance number {digits} is too large"
                ))
            })?)
        };
        let driver = driver.to_string();
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
        Ok(Devargs {
            name,
            driver,
            index,
            args,
        })
    }

    /// Checks every argument against the keys a driver declares: a key not in `keys` fails
    /// naming it and listing the valid keys with their docs, a value of the wrong type fails
    /// naming the key and what is expected, and a missing required key fails showing an
    /// example.
    pub fn check_keys(&self, keys: &[KeySpec]) -> Result<()> {
        for (k, v) in &self.args {
            match keys.iter().find(|s| s.name == k) {
                Some(spec) => spec.check(&self.name, v)?,
                None => {
                    return Err(Error::UnknownKey {
                        device: self.name.clone(),
                        key: k.clone(),
                        valid: keys_usage(keys).join("; "),
                    });
                }
            }
        }
        if let Some(spec) = keys
            .iter()
            .find(|s| s.required && self.get(s.name).is_none())
        {
            return Err(self.missing(spec.name, spec.doc, &spec.kind.example()));
        }
        Ok(())
    }

    fn missing(&self, key: &str, what: &str, example: &str) -> Error {
        Error::Devargs(format!(
            "{}: missing required argument '{key}' ({what}), e.g. {},{key}={example}",
            self.name, self.name
        ))
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
        self.get(key)
            .map(str::to_string)
            .ok_or_else(|| self.missing(key, what, "/tmp/sock0"))
    }

    /// An unsigned number (decimal or 0x hex) within `[min, max]`, or `default` when absent.
    pub fn number(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                KeySpec::number("", min, max, "")
                    .check(&self.name, v)
                    .map_err(|e| match e {
                        Error::BadValue {
                            device,
                            value,
                            expected,
                            ..
                        } => Error::BadValue {
                            device,
                            key: key.to_string(),
                            value,
                            expected,
                        },
                        e => e,
                    })?;
                Ok(parse_number(v).expect("checked"))
            }
        }
    }

    /// A 0/1 flag, or `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.number(key, default as u64, 0, 1)? == 1)
    }

    /// The port's MAC address: the `mac` argument if given (unicast, not all zeros), or the
    /// address derived from `port_id` ([`MacAddr::for_port`]).
    pub fn mac_or_derived(&self, port_id: u16) -> Result<MacAddr> {
        match self.get(KeySpec::MAC.name) {
            None => Ok(MacAddr::for_port(port_id)),
            Some(v) => parse_port_mac(v).map_err(|expected| Error::BadValue {
                device: self.name.clone(),
                key: KeySpec::MAC.name.to_string(),
                value: v.to_string(),
                expected,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: &[KeySpec] = &[
        KeySpec::path("iface", "the vhost-user socket").required(),
        KeySpec::number("queues", 1, 128, "queue pairs").default_value("1"),
        KeySpec::flag("client", "connect instead of listening").default_value("0"),
        KeySpec::MAC,
    ];

    #[test]
    fn how_to_forms_parse() {
        let d = Devargs::parse("eth_vhost0,iface=/tmp/sock0").unwrap();
        assert_eq!((d.driver.as_str(), d.index), ("eth_vhost", Some(0)));
        assert_eq!(d.get("iface"), Some("/tmp/sock0"));
        let d = Devargs::parse("virtio_user0,path=/var/run/usvhost").unwrap();
        assert_eq!(d.driver, "virtio_user");
        let d =
            Devargs::parse("net_virtio_user12,path=/tmp/s,queue_size=1024,packed_vq=1,server=1")
                .unwrap();
        assert_eq!((d.driver.as_str(), d.index), ("net_virtio_user", Some(12)));
        assert_eq!(d.number("queue_size", 256, 1, 32768).unwrap(), 1024);
        assert!(d.flag("server", false).unwrap());
        assert!(!d.flag("mrg_rxbuf", false).unwrap());
        let d = Devargs::parse("net_null").unwrap();
        assert_eq!((d.driver.as_str(), d.index), ("net_null", None));
        // Parsing knows no driver: any well-formed name parses.
        assert_eq!(Devargs::parse("net_foo3").unwrap().driver, "net_foo");
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let e = Devargs::parse(",iface=x").unwrap_err().to_string();
        assert!(e.contains("net_vhost0"), "{e}");
        let e = Devargs::parse("net vhost0").unwrap_err().to_string();
        assert!(e.contains("'net vhost0'"), "{e}");
        let d = Devargs::parse("net_vhost0,iface=/x,ifase=2").unwrap();
        let e = d.check_keys(KEYS).unwrap_err().to_string();
        assert!(
            e.starts_with("net_vhost0: unknown devargs key 'ifase' (valid keys: iface=<path> the vhost-user socket (required); queues=<1..128> queue pairs (default 1)"),
            "{e}"
        );
        let d = Devargs::parse("net_vhost0,iface=/x,queues=abc").unwrap();
        let e = d.check_keys(KEYS).unwrap_err().to_string();
        assert!(e.contains("'abc'") && e.contains("1 to 128"), "{e}");
        let e = d.number("queues", 1, 1, 128).unwrap_err().to_string();
        assert!(e.contains("'abc'") && e.contains("'queues'"), "{e}");
        let d = Devargs::parse("net_vhost0,iface=/x,client=2").unwrap();
        let e = d.check_keys(KEYS).unwrap_err().to_string();
        assert!(e.contains("'client'") && e.contains("0 or 1"), "{e}");
        let d = Devargs::parse("net_vhost0,iface=").unwrap();
        let e = d.check_keys(KEYS).unwrap_err().to_string();
        assert!(e.contains("non-empty path"), "{e}");
        let d = Devargs::parse("net_vhost0,queues=2").unwrap();
        let e = d.check_keys(KEYS).unwrap_err().to_string();
        assert!(
            e.contains("missing required argument 'iface'") && e.contains("net_vhost0,iface="),
            "{e}"
        );
        let e = d.required("iface", "socket path").unwrap_err().to_string();
        assert!(e.contains("missing required argument 'iface'"), "{e}");
        assert!(Devargs::parse("net_vhost0,iface").is_err());
        assert!(Devargs::parse("net_vhost0,iface=a,iface=b").is_err());
        assert!(Devargs::parse("net_vhost99999999999").is_err());
    }

    #[test]
    fn mac_argument_must_be_unicast_and_not_zero() {
        let d = Devargs::parse("net_ring0,mac=02:11:22:33:44:55").unwrap();
        d.check_keys(KEYS[3..].as_ref()).unwrap();
        assert_eq!(
            d.mac_or_derived(7).unwrap(),
            MacAddr([2, 0x11, 0x22, 0x33, 0x44, 0x55])
        );
        for (bad, why) in [
            ("01:00:5e:00:00:01", "multicast"),
            ("ff:ff:ff:ff:ff:ff", "multicast"),
            ("00:00:00:00:00:00", "other than 00:00:00:00:00:00"),
            ("02:00:00:00:00", "six hex bytes"),
            ("02:00:00:00:00:zz", "six hex bytes"),
        ] {
            let d = Devargs::parse(&format!("net_ring0,mac={bad}")).unwrap();
            let e = d.check_keys(&[KeySpec::MAC]).unwrap_err().to_string();
            assert!(e.contains("'mac'") && e.contains(why), "{bad}: {e}");
            let e = d.mac_or_derived(0).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let d = Devargs::parse("net_ring0").unwrap();
        assert_eq!(d.mac_or_derived(9).unwrap(), MacAddr::for_port(9));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            if let Ok(d) = Devargs::parse(&s) {
                let _ = d.check_keys(KEYS);
            }
        }
    }
}

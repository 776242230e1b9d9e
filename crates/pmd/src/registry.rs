//! The driver registry: which drivers a devargs name can select, with their keys.
//!
//! The drivers built into this crate ([`virtio_user`](crate::virtio_user),
//! [`vhost`](crate::vhost), [`ring`](crate::ring), [`null`](crate::null),
//! [`af_packet`](crate::af_packet), [`tap`](crate::tap), [`virtio_pci`](crate::virtio_pci)) each declare a
//! [`DriverSpec`] in their own module; [`drivers`] lists them, followed by the drivers an
//! application added with [`register`]. [`open`] splits the devargs name into driver name and
//! instance number, finds the driver, checks every argument against its declared keys and
//! calls its open function.

use std::sync::RwLock;

use ferrovia_ethdev::{Devargs, DriverSpec, Error, Port, PortConf, Result};

/// The drivers of this crate, in the order they are listed.
static BUILTIN: [&DriverSpec; 7] = [
    &crate::virtio_user::DRIVER,
    &crate::vhost::DRIVER,
    &crate::ring::DRIVER,
    &crate::null::DRIVER,
    &crate::af_packet::DRIVER,
    &crate::tap::DRIVER,
    &crate::virtio_pci::DRIVER,
];

/// Drivers registered at run time, in registration order.
static EXTRA: RwLock<Vec<&'static DriverSpec>> = RwLock::new(Vec::new());

/// Every registered driver: the built-in ones, then those added with [`register`].
pub fn drivers() -> Vec<&'static DriverSpec> {
    let extra = EXTRA.read().unwrap_or_else(|p| p.into_inner());
    BUILTIN
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

/// The driver that `driver` (a name or alias, without instance number) selects.
pub fn find(driver: &str) -> Option<&'static DriverSpec> {
    drivers().into_iter().find(|d| d.matches(driver))
}

/// Adds a driver (an application's own, out of this crate) to the registry, for the life of
/// the process. Fails if a name is malformed (empty, ending with a digit, or with characters
/// other than letters, digits, `_` and `-`), is already taken by a registered driver, or if
/// a key is declared twice.
pub fn register(spec: DriverSpec) -> Result<&'static DriverSpec> {
    for n in spec.names() {
        let ok = !n.is_empty()
            && !n.ends_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(Error::Config(format!(
                "cannot register driver '{}': name '{n}' must be non-empty, made of letters, digits, '_' and '-', and not end with a digit (the instance number follows it)",
                spec.name
            )));
        }
    }
    for (i, k) in spec.keys.iter().enumerate() {
        if spec.keys[..i].iter().any(|o| o.name == k.name) {
            return Err(Error::Config(format!(
                "cannot register driver '{}': key '{}' is declared twice",
                spec.name, k.name
            )));
        }
    }
    let mut extra = EXTRA.write().unwrap_or_else(|p| p.into_inner());
    for n in spec.names() {
        if let Some(other) = BUILTIN.iter().chain(extra.iter()).find(|d| d.matches(n)) {
            return Err(Error::Config(format!(
                "cannot register driver '{}': the name '{n}' is already taken by driver {}",
                spec.name, other.name
            )));
        }
    }
    let spec: &'static DriverSpec = Box::leak(Box::new(spec));
    extra.push(spec);
    Ok(spec)
}

/// The registered drivers' names, for error messages: `net_virtio_user (virtio_user), ...`.
pub fn driver_names() -> String {
    drivers()
        .iter()
        .map(|d| {
            if d.aliases.is_empty() {
                d.name.to_string()
            } else {
                format!("{} ({})", d.name, d.aliases.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Usage text for every registered driver: names, summary, and each devargs key with its
/// type, default and description.
pub fn usage() -> String {
    drivers()
        .iter()
        .map(|d| d.usage())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Opens a port from a devargs string such as `net_vhost0,iface=/tmp/sock0`, wearing the
/// capture wrapper ([`ferrovia_ethdev::capture::wrap`]).
pub fn open(devargs: &str, conf: &PortConf) -> Result<Box<dyn Port>> {
    let d = Devargs::parse(devargs)?;
    let spec = find(&d.driver).ok_or_else(|| Error::UnknownDriver {
        name: d.name.clone(),
        driver: d.driver.clone(),
        registered: driver_names(),
    })?;
    d.check_keys(spec.keys)?;
    // Every port gets its capture points here, whichever driver opened it.
    Ok(ferrovia_ethdev::capture::wrap(
        (spec.open)(&d, conf)?,
        conf.port_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovia_ethdev::{KeyKind, KeySpec, MacAddr};
    use ferrovia_memory::{Mempool, MempoolConfig};

    fn conf(port_id: u16) -> PortConf {
        let pool = Mempool::new(MempoolConfig {
            name: format!("reg{port_id}"),
            count: 64,
            ..Default::default()
        })
        .unwrap();
        PortConf::new(port_id, pool)
    }

    #[test]
    fn builtin_drivers_and_only_those_are_listed() {
        let names = driver_names();
        for n in [
            "net_virtio_user",
            "virtio_user",
            "net_vhost",
            "eth_vhost",
            "net_ring",
            "net_null",
            "net_af_packet",
            "eth_af_packet",
            "net_tap",
            "eth_tap",
            "net_virtio_pci",
            "virtio_pci",
        ] {
            assert!(names.contains(n), "{names}");
            assert!(find(n).is_some(), "{n}");
        }
        for n in ["net_pcap", "net_memif", "net_bonding"] {
            assert!(!names.contains(n), "{names}");
            assert!(find(n).is_none(), "{n}");
        }
        // Every built-in driver takes `mac`, declares each key once with a doc, and declares
        // defaults that its own type accepts.
        for d in BUILTIN {
            for k in d.keys {
                if let (Some(def), KeyKind::Flag | KeyKind::Number { .. }) = (k.default, k.kind) {
                    k.check(d.name, def).unwrap();
                }
            }
            assert!(d.keys.iter().any(|k| k.name == "mac"), "{}", d.name);
            for (i, k) in d.keys.iter().enumerate() {
                assert!(!k.doc.is_empty(), "{}: {}", d.name, k.name);
                assert!(
                    !d.keys[..i].iter().any(|o| o.name == k.name),
                    "{}: {}",
                    d.name,
                    k.name
                );
            }
        }
    }

    #[test]
    fn unknown_driver_lists_the_registered_ones() {
        let e = open("net_pcap0,iface=tap0", &conf(0)).err().unwrap();
        let s = e.to_string();
        assert!(matches!(e, Error::UnknownDriver { .. }), "{s}");
        assert!(
            s.contains("'net_pcap0'")
                && s.contains("net_vhost (eth_vhost)")
                && s.contains("net_null"),
            "{s}"
        );
    }

    #[test]
    fn unknown_key_names_it_and_lists_the_valid_keys_with_docs() {
        let e = open("net_vhost0,ifase=/tmp/x", &conf(0))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("net_vhost0: unknown devargs key 'ifase' (valid keys: iface=<path> the vhost-user socket"),
            "{e}"
        );
        assert!(e.contains("queues=<1..128>"), "{e}");
        let e = open("net_ring0,size=1", &conf(0))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("'size'") && e.contains("from 2 to 1048576"),
            "{e}"
        );
        let e = open("net_null0,no-rx=yes", &conf(0))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("'no-rx'") && e.contains("0 or 1"), "{e}");
        let e = open("net_ring0,mac=01:02:03:04:05:06", &conf(0))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("'mac'") && e.contains("unicast"), "{e}");
    }

    #[test]
    fn mac_is_derived_or_taken_from_devargs() {
        let p = open("net_ring0", &conf(300)).unwrap();
        assert_eq!(p.info().mac, MacAddr::for_port(300));
        let p = open("net_null1,mac=02:aa:bb:cc:dd:ee", &conf(1)).unwrap();
        assert_eq!(p.info().mac, MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));
        let (a, b) = (
            open("net_null0", &conf(1)).unwrap(),
            open("net_ring0", &conf(257)).unwrap(),
        );
        assert_ne!(a.info().mac, b.info().mac);
    }

    static ECHO_KEYS: &[KeySpec] = &[KeySpec::number("depth", 1, 8, "how deep").default_value("1")];

    #[test]
    fn applications_can_register_their_own_driver() {
        let spec = DriverSpec {
            name: "net_echo_test",
            aliases: &["echo_test"],
            summary: "a test driver",
            keys: ECHO_KEYS,
            open: |d, c| {
                d.number("depth", 1, 1, 8)?;
                // A null port under this driver's name (its own keys are not null's).
                Ok(Box::new(crate::null::NullPort::open(
                    &Devargs::parse(&d.name)?,
                    c,
                )?))
            },
        };
        register(spec).unwrap();
        assert!(usage().contains("net_echo_test | echo_test: a test driver"));
        let p = open("echo_test3,depth=2", &conf(3)).unwrap();
        assert_eq!(p.info().name, "echo_test3");
        let e = open("net_echo_test0,depth=9", &conf(0))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("from 1 to 8"), "{e}");
        // Names are checked.
        let e = register(spec).unwrap_err().to_string();
        assert!(e.contains("already taken by driver net_echo_test"), "{e}");
        let e = register(DriverSpec {
            name: "net_vhost",
            ..spec
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("already taken by driver net_vhost"), "{e}");
        let e = register(DriverSpec {
            name: "net_foo2",
            aliases: &[],
            ..spec
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("not end with a digit"), "{e}");
    }
}

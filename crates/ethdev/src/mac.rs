//! MAC addresses, and the addresses ports get when their devargs give none.
//!
//! # The derived address
//!
//! [`MacAddr::for_port`] gives every port id of a process its own locally administered unicast
//! address, and makes two processes unlikely to hand out the same one:
//!
//! ```text
//!   byte 0            bytes 1..=3       bytes 4..=5
//!   ssssss10          salt (24 bits)    port id (u16, big-endian)
//!   |     |`- unicast (I/G bit clear)
//!   |     `-- locally administered (U/L bit set)
//!   `-------- salt (6 bits)
//! ```
//!
//! The 30-bit salt is drawn once per process from the standard library's per-process random
//! hash keys mixed with the process id and the start time ([`MacAddr::process_salt`]). Within a
//! process the 65536 port ids map to 65536 distinct addresses; two processes collide only if
//! they draw the same salt (one chance in 2^30 for a pair), whatever their port ids and even
//! when both are pid 1 in different containers. A port whose address must be stable across
//! runs takes it from its `mac=` devargs key.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The address of port `port_id` in this process (see the [module docs](self)).
    pub fn for_port(port_id: u16) -> MacAddr {
        MacAddr::for_port_salted(port_id, MacAddr::process_salt())
    }

    /// The address of port `port_id` for a given salt (only its low 30 bits are used): the
    /// scheme of [`MacAddr::for_port`] with the salt chosen by the caller, for reproducible
    /// addresses and tests.
    pub fn for_port_salted(port_id: u16, salt: u32) -> MacAddr {
        let s = salt & 0x3fff_ffff;
        let [p0, p1] = port_id.to_be_bytes();
        MacAddr([
            (((s >> 24) as u8) << 2) | 0x02,
            (s >> 16) as u8,
            (s >> 8) as u8,
            s as u8,
            p0,
            p1,
        ])
    }

    /// This process's salt for [`MacAddr::for_port`]: 30 random bits, drawn on first use and
    /// the same for the life of the process.
    pub fn process_salt() -> u32 {
        static SALT: OnceLock<u32> = OnceLock::new();
        *SALT.get_or_init(|| {
            // RandomState's keys come from the OS's random source once per process.
            let mut h = std::hash::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            h.write_u128(now);
            let x = h.finish();
            ((x ^ (x >> 32)) as u32) & 0x3fff_ffff
        })
    }

    /// True for an individual (unicast) address: the I/G bit of the first byte is clear.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }

    /// True for a locally administered address: the U/L bit of the first byte is set.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// True for 00:00:00:00:00:00.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Why a string is not a MAC address (`xx:xx:xx:xx:xx:xx`, six hex bytes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacParseError {
    /// The string does not have six `:`-separated parts.
    #[error("bad MAC address '{input}': expected six hex bytes like 02:00:00:00:00:01")]
    PartCount {
        /// The string given.
        input: String,
        /// How many `:`-separated parts it has.
        parts: usize,
    },
    /// One part is empty, longer than two digits or not hexadecimal.
    #[error("bad MAC address '{input}': '{part}' is not a hex byte")]
    NotHexByte {
        /// The string given.
        input: String,
        /// The offending part.
        part: String,
    },
}

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> std::result::Result<Self, MacParseError> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(MacParseError::PartCount {
                input: s.to_string(),
                parts: parts.len(),
            });
        }
        let not_hex = |p: &str| MacParseError::NotHexByte {
            input: s.to_string(),
            part: p.to_string(),
        };
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || p.len() > 2 {
                return Err(not_hex(p));
            }
            m[i] = u8::from_str_radix(p, 16).map_err(|_| not_hex(p))?;
        }
        Ok(MacAddr(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn parse_errors_name_the_input_and_the_part() {
        let e = "02:00:00:00:01".parse::<MacAddr>().unwrap_err();
        assert_eq!(
            e,
            MacParseError::PartCount {
                input: "02:00:00:00:01".into(),
                parts: 5
            }
        );
        assert_eq!(
            e.to_string(),
            "bad MAC address '02:00:00:00:01': expected six hex bytes like 02:00:00:00:00:01"
        );
        for (input, part) in [
            ("02:00:00:00:00:xy", "xy"),
            ("02::00:00:00:01", ""),
            ("02:000:00:00:00:01", "000"),
        ] {
            let e = input.parse::<MacAddr>().unwrap_err();
            assert_eq!(
                e,
                MacParseError::NotHexByte {
                    input: input.into(),
                    part: part.into()
                }
            );
            assert_eq!(
                e.to_string(),
                format!("bad MAC address '{input}': '{part}' is not a hex byte")
            );
        }
    }

    fn all_ports_distinct_and_local_unicast(salt: u32) {
        let macs: HashSet<MacAddr> = (0..=u16::MAX)
            .map(|p| MacAddr::for_port_salted(p, salt))
            .inspect(|m| {
                assert!(
                    m.is_unicast() && m.is_locally_administered() && !m.is_zero(),
                    "{m}"
                );
            })
            .collect();
        assert_eq!(macs.len(), 65536);
    }

    #[test]
    fn every_port_id_of_this_process_gets_its_own_address() {
        all_ports_distinct_and_local_unicast(MacAddr::process_salt());
        assert_eq!(
            MacAddr::for_port(300),
            MacAddr::for_port_salted(300, MacAddr::process_salt())
        );
        // Port 1 and port 257 no longer share an address (they did with `port_id as u8`).
        assert_ne!(MacAddr::for_port(1), MacAddr::for_port(257));
    }

    #[test]
    fn the_salt_fills_the_other_thirty_bits() {
        assert_eq!(
            MacAddr::for_port_salted(0x0102, 0).0,
            [0x02, 0, 0, 0, 0x01, 0x02]
        );
        assert_eq!(
            MacAddr::for_port_salted(0xffff, u32::MAX).0,
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert!(MacAddr::process_salt() <= 0x3fff_ffff);
    }

    proptest! {
        #[test]
        fn distinct_salts_never_collide(a in 0u32..(1 << 30), b in 0u32..(1 << 30), p in any::<u16>(), q in any::<u16>()) {
            let (x, y) = (MacAddr::for_port_salted(p, a), MacAddr::for_port_salted(q, b));
            prop_assert_eq!(x == y, a == b && p == q);
            prop_assert!(x.is_unicast() && x.is_locally_administered());
        }

        #[test]
        fn display_parses_back(b in any::<[u8; 6]>()) {
            let m = MacAddr(b);
            prop_assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
        }
    }

    #[test]
    fn any_salt_gives_65536_distinct_addresses() {
        all_ports_distinct_and_local_unicast(0x2bad_cafe);
    }
}

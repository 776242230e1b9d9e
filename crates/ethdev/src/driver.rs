//! What a port driver declares about itself, so that a registry can open it by name and
//! describe it: [`DriverSpec`].
//!
//! The ethdev layer knows no driver. Each driver crate or module defines one `DriverSpec`
//! (names, devargs keys with types and docs, and its open function); the registry in
//! `ferrovia_pmd::registry` collects them, and applications may register their own.

use crate::devargs::{Devargs, KeySpec};
use crate::error::Result;
use crate::port::{Port, PortConf};

/// Opens a port from already checked devargs.
pub type OpenFn = fn(&Devargs, &PortConf) -> Result<Box<dyn Port>>;

/// A driver's self-description.
#[derive(Clone, Copy, Debug)]
pub struct DriverSpec {
    /// DPDK's driver name (`net_vhost`): a devargs name is this (or an alias) followed by an
    /// instance number. Must not end with a digit.
    pub name: &'static str,
    /// Other names that select the driver (`eth_vhost`).
    pub aliases: &'static [&'static str],
    /// One line saying what the driver is.
    pub summary: &'static str,
    /// The devargs keys the driver accepts. The registry checks every argument against them
    /// (unknown key, type, range, required) before calling [`DriverSpec::open`].
    pub keys: &'static [KeySpec],
    /// Opens a port.
    pub open: OpenFn,
}

impl DriverSpec {
    /// The name and the aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// Whether `driver` (a devargs name without its instance number) selects this driver.
    pub fn matches(&self, driver: &str) -> bool {
        self.names().any(|n| n == driver)
    }

    /// Usage text: a header line with the names and summary, then one indented line per key.
    pub fn usage(&self) -> String {
        let mut s = self.name.to_string();
        for a in self.aliases {
            s.push_str(" | ");
            s.push_str(a);
        }
        s.push_str(": ");
        s.push_str(self.summary);
        s.push('\n');
        for k in self.keys {
            s.push_str("    ");
            s.push_str(&k.usage());
            s.push('\n');
        }
        s
    }

    /// The devargs keys as a Markdown table (`| key | value | default | meaning |`), as the
    /// user guide shows them (`|` inside a cell is escaped).
    pub fn markdown_keys(&self) -> String {
        let mut s = String::from("| key | value | default | meaning |\n|---|---|---|---|\n");
        for k in self.keys {
            let default = if k.required {
                "required"
            } else {
                k.default.unwrap_or("—")
            };
            s.push_str(&format!(
                "| `{}` | `{}` | {} | {} |\n",
                k.name,
                k.kind.placeholder().replace('|', "\\|"),
                default,
                k.doc.replace('|', "\\|")
            ));
        }
        s
    }
}

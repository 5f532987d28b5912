//! What the audit reads from the host: read only, whole host, gathered once.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::host::Host;
use crate::state::sysctl::normalize;
use crate::state::Document;

/// The sysctl keys the checks look at, as paths below /proc/sys.
pub const SYSCTL_KEYS: &[&str] = &[
    "vm/swappiness",
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Current values of `SYSCTL_KEYS` that exist on the host, by path below /proc/sys.
    pub sysctl: BTreeMap<String, String>,
    /// Linux bridges (`/sys/class/net/NAME/bridge` exists).
    pub bridges: Vec<String>,
    /// Where containers live, and their names.
    pub lxcpath: String,
    pub containers: Vec<String>,
}

impl Facts {
    pub fn read(host: &Host, lxcpath: Option<&str>) -> Result<Facts> {
        let mut sysctl = BTreeMap::new();
        for key in SYSCTL_KEYS {
            if let Some(v) = host.read_optional(format!("/proc/sys/{key}"))? {
                sysctl.insert(key.to_string(), normalize(&v));
            }
        }
        let bridges = host
            .list_dir("/sys/class/net")?
            .into_iter()
            .filter(|n| host.is_dir(format!("/sys/class/net/{n}/bridge")))
            .collect();
        let lxcpath = lxcpath.unwrap_or("/var/lib/lxc").to_string();
        let containers = host
            .list_dir(&lxcpath)?
            .into_iter()
            .filter(|n| host.exists(format!("{lxcpath}/{n}/config")))
            .collect();
        Ok(Facts {
            sysctl,
            bridges,
            lxcpath,
            containers,
        })
    }

    /// Whether this host runs containers: it has container configs or a bridge for them.
    pub fn hosts_containers(&self) -> bool {
        !self.containers.is_empty() || !self.bridges.is_empty()
    }

    pub fn sysctl_i64(&self, key: &str) -> Option<i64> {
        self.sysctl.get(key).and_then(|v| v.parse().ok())
    }

    /// The facts as they would be after applying `doc`.
    pub fn overlay(&self, doc: &Document) -> Facts {
        let mut f = self.clone();
        if let Some(s) = &doc.sysctl {
            for (k, v) in &s.values {
                if f.sysctl.contains_key(k.rel_path()) || SYSCTL_KEYS.contains(&k.rel_path()) {
                    f.sysctl.insert(k.rel_path().to_string(), v.normalized());
                }
            }
        }
        f
    }
}

//! What the audit reads from the host: read only, whole host, gathered once. `overlay` gives the
//! facts as they would be after applying a document, through the same code `apply` uses (the lxc
//! renderer and converge, the sysctl values), so "does this document close the finding" cannot
//! drift from what apply really writes.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::error::HostError;
use crate::host::{limits, Host};
use crate::cgroup::Version;
use crate::lxc::{Config, Entry};
use crate::lxc::{self, Dialect, Env, Renderer};
use crate::state::lxc::DEFAULT_LXCPATH;
use crate::state::sysctl::normalize;
use crate::state::Document;

use super::firewall::{self, Filter, Firewall};
use super::forward::Hook;

/// The sysctl keys the checks look at, as paths below /proc/sys.
pub const SYSCTL_KEYS: &[&str] = &[
    "vm/swappiness",
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

/// How deep `lxc.include` may nest before the audit stops following it (LXC itself has no limit,
/// but a loop must not hang the audit).
const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    /// The container's own config file, as `apply` would edit it.
    pub config: Config,
    /// Every key line LXC reads for it, in order: the config with `lxc.include` files expanded
    /// where they are included.
    pub effective: Vec<Entry>,
    /// Includes that could not be read (LXC would refuse to start the container).
    pub missing_includes: Vec<String>,
}

impl Container {
    /// Every value of `key`, in the order LXC reads them.
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.effective.iter().filter(move |e| e.key == key).map(|e| e.value.as_str())
    }

    /// The value LXC uses for a single-valued key: its last line, includes expanded.
    pub fn last<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.values(key).last()
    }

    /// The first key of `keys` with a line, and its last value.
    pub fn last_of(&self, keys: &[&str]) -> Option<(&str, &str)> {
        self.effective.iter().rev().find(|e| keys.contains(&e.key.as_str())).map(|e| (e.key.as_str(), e.value.as_str()))
    }
}

/// One `key = value` line of a boot-time sysctl file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootLine {
    pub file: String,
    pub line: usize,
    /// Below /proc/sys, `/`-separated.
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    /// A bridge with a physical port (a NIC with a `device` link) is the LAN, not a container
    /// network: dropping same-bridge traffic there would cut containers off from the LAN.
    pub physical_ports: Vec<String>,
    pub ipv6: BridgeIpv6,
}

/// IPv6 on a bridge, judged per interface (Docker 26 turns IPv6 off on a container's `eth0` only
/// and leaves `all` at 0; 20.10 turns off `all` inside the container, which turns off its `eth0`).
#[derive(Debug, Clone, Default)]
pub struct BridgeIpv6 {
    /// `net.ipv6.conf.BR.disable_ipv6` is 1: the host neither routes nor answers IPv6 on it.
    pub disabled: bool,
    /// An IPv6 address on the bridge that is not link-local (a gateway containers route through).
    pub routable_address: bool,
    /// Per port, whether the interface at its other end (a container's `eth0`, in the
    /// container's namespace) has IPv6 on; `None` when that end is not known (not a veth, its
    /// namespace not readable, or under `--root`).
    pub ports: Vec<(String, Option<bool>)>,
}

impl BridgeIpv6 {
    /// Whether any interface behind the bridge may send or receive IPv6. A port whose other end is
    /// not known may. A bridge without ports yet may when it has a routable IPv6 address (a
    /// network made for IPv6: its containers will have it).
    pub fn ports_may(&self) -> bool {
        if self.ports.is_empty() {
            return self.routable_address;
        }
        self.ports.iter().any(|(_, v6)| *v6 != Some(false))
    }

    /// What was seen, for a finding's evidence.
    pub fn evidence(&self, bridge: &str) -> String {
        let off: Vec<&str> = self.ports.iter().filter(|(_, v)| *v == Some(false)).map(|(p, _)| p.as_str()).collect();
        let mut parts = Vec::new();
        if self.disabled {
            parts.push(format!("net.ipv6.conf.{bridge}.disable_ipv6 = 1"));
        }
        if !self.routable_address {
            parts.push(format!("no IPv6 address on {bridge} but link-local"));
        }
        if !off.is_empty() {
            parts.push(format!("IPv6 is off on the interface at the other end of {}", off.join(", ")));
        }
        parts.join("; ")
    }
}

#[derive(Debug, Clone)]
pub struct Facts {
    /// Current values of `SYSCTL_KEYS` that exist on the host, by path below /proc/sys.
    pub sysctl: BTreeMap<String, String>,
    /// Every sysctl line read at boot, in the order systemd-sysctl reads them.
    pub boot_sysctl: Vec<BootLine>,
    /// Linux bridges (`/sys/class/net/NAME/bridge` exists).
    pub bridges: Vec<Bridge>,
    /// Where containers live (a host path), and their configs, sorted by name.
    pub lxcpath: String,
    pub containers: Vec<Container>,
    pub cgroup: Version,
    /// cgroup v1 without swap accounting has no memory+swap limit at all.
    pub swap_accounting: bool,
    /// `lxc-info --version`; `None` when LXC is not installed.
    pub lxc_version: Option<(u32, u32)>,
    /// MemTotal from /proc/meminfo, in bytes.
    pub mem_total: Option<u64>,
    /// LXC's stock seccomp policy is installed (a fix may point a container at it).
    pub seccomp_profile_exists: bool,
    /// Host id ranges (start, end) delegated to root in /etc/subuid and /etc/subgid.
    pub root_subuid: Vec<(u64, u64)>,
    pub root_subgid: Vec<(u64, u64)>,
    /// `newuidmap` is installed: LXC then maps ids through it, even as root, and it refuses
    /// ranges /etc/subuid does not delegate.
    pub newuidmap: bool,
    pub firewalls: Vec<Firewall>,
    /// The native nftables tables (iptables-nft's own left out), for the base chains they hold
    /// at the forward hook; empty when nft could not read them (then `skipped` says why).
    pub nftables: Vec<crate::nftables::listing::Table>,
    /// Docker's daemon settings when Docker is installed (`/etc/docker/daemon.json`, `{}` when
    /// the file does not exist: every setting at its default).
    pub docker: Option<serde_json::Value>,
    /// What the audit could not look at, and why: shown so a clean audit is not mistaken for a
    /// complete one.
    pub skipped: Vec<String>,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            sysctl: BTreeMap::new(),
            boot_sysctl: Vec::new(),
            bridges: Vec::new(),
            lxcpath: DEFAULT_LXCPATH.into(),
            containers: Vec::new(),
            cgroup: Version::V1,
            swap_accounting: true,
            lxc_version: None,
            mem_total: None,
            seccomp_profile_exists: false,
            root_subuid: Vec::new(),
            root_subgid: Vec::new(),
            newuidmap: false,
            firewalls: Vec::new(),
            nftables: Vec::new(),
            docker: None,
            skipped: Vec::new(),
        }
    }
}

/// The config's lines with includes expanded in place. An include names a file or a directory
/// (whose `*.conf` files are read in name order), as lxc.container.conf(5) says.
fn expand(host: &Host, cfg: &Config, depth: usize, out: &mut Vec<Entry>, missing: &mut Vec<String>) -> Result<()> {
    for (_, e) in cfg.entries() {
        if e.key != "lxc.include" {
            out.push(e.clone());
            continue;
        }
        if depth >= MAX_INCLUDE_DEPTH {
            missing.push(format!("{} (includes nested deeper than {MAX_INCLUDE_DEPTH})", e.value));
            continue;
        }
        let files: Vec<String> = if host.is_dir(&e.value) {
            let dir = e.value.trim_end_matches('/');
            host.list_dir(dir)?.into_iter().filter(|n| n.ends_with(".conf")).map(|n| format!("{dir}/{n}")).collect()
        } else {
            vec![e.value.clone()]
        };
        for f in files {
            match host.read_optional_bounded(&f, limits::LXC_INCLUDE) {
                Ok(Some(text)) => expand(host, &Config::parse(&text), depth + 1, out, missing)?,
                Ok(None) => missing.push(f),
                Err(e) if e.is_unreadable_kind() => missing.push(format!("{f} ({})", reason(&e))),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Why a file is not read, without its path: "is a FIFO (named pipe)".
fn reason(e: &HostError) -> String {
    match e {
        HostError::NotRegular { what, .. } => (*what).to_string(),
        HostError::TooLarge { what, limit, .. } => format!("over the {} limit for {what}", crate::host::human_bytes(*limit)),
        other => other.to_string(),
    }
}

/// A file of `limit`'s kind; `None` when it does not exist or is not a file hostguard reads, in
/// which case `skipped` says which checks did not see it.
fn read_or_skip(host: &Host, file: &str, limit: crate::host::Limit, checks: &str, skipped: &mut Vec<String>) -> Result<Option<String>> {
    match host.read_optional_bounded(file, limit) {
        Ok(t) => Ok(t),
        Err(e) if e.is_unreadable_kind() => {
            skipped.push(format!("{checks}: not checked, {file} {}", reason(&e)));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn container(host: &Host, name: &str, config: Config) -> Result<Container> {
    let mut effective = Vec::new();
    let mut missing_includes = Vec::new();
    expand(host, &config, 0, &mut effective, &mut missing_includes)?;
    Ok(Container { name: name.to_string(), config, effective, missing_includes })
}

fn mem_total(host: &Host) -> Result<Option<u64>> {
    let Some(text) = host.read_optional("/proc/meminfo")? else { return Ok(None) };
    Ok(text.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    }))
}

fn bridges(host: &Host) -> Result<Vec<Bridge>> {
    let addresses = host.read_optional("/proc/net/if_inet6")?.unwrap_or_default();
    let mut peers: Option<Option<std::collections::HashMap<u32, Vec<bool>>>> = None;
    let mut out = Vec::new();
    for n in host.list_dir("/sys/class/net")? {
        if !host.is_dir(format!("/sys/class/net/{n}/bridge")) {
            continue;
        }
        let ports = host.list_dir(format!("/sys/class/net/{n}/brif"))?;
        let physical_ports = ports.iter().filter(|p| host.exists(format!("/sys/class/net/{p}/device"))).cloned().collect();
        let mut v6_ports = Vec::new();
        for p in &ports {
            let index = |f: &str| -> Result<Option<u32>> {
                Ok(host.read_optional(format!("/sys/class/net/{p}/{f}"))?.and_then(|v| v.trim().parse().ok()))
            };
            // A veth's iflink is its peer's ifindex; any other port's is its own.
            let other_end = match (index("ifindex")?, index("iflink")?) {
                (Some(own), Some(link)) if own != link => Some(link),
                _ => None,
            };
            let v6 = other_end.and_then(|link| {
                let table = peers.get_or_insert_with(|| (host.root() == std::path::Path::new("/")).then(crate::host::netns::ipv6_by_ifindex).flatten());
                // Several namespaces may use that ifindex: IPv6 is off only when it is off in all.
                table.as_ref().and_then(|t| t.get(&link)).map(|seen| seen.iter().any(|v| *v))
            });
            v6_ports.push((p.clone(), v6));
        }
        let ipv6 = BridgeIpv6 {
            disabled: host.read_optional(format!("/proc/sys/net/ipv6/conf/{n}/disable_ipv6"))?.is_some_and(|v| v.trim() == "1"),
            // /proc/net/if_inet6: "ADDRESS IFINDEX PREFIXLEN SCOPE FLAGS NAME"; scope 20 is link, 10 host.
            routable_address: addresses.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 6 && f[5] == n && f[3] != "20" && f[3] != "10"
            }),
            ports: v6_ports,
        };
        out.push(Bridge { name: n, physical_ports, ipv6 });
    }
    Ok(out)
}

/// The ranges subuid(5)/subgid(5) delegate to root (`root:START:COUNT` or `0:START:COUNT`).
fn delegated(host: &Host, file: &str, skipped: &mut Vec<String>) -> Result<Vec<(u64, u64)>> {
    let Some(text) = read_or_skip(host, file, limits::ID_MAP, "lxc.idmap_not_delegated", skipped)? else { return Ok(Vec::new()) };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut p = l.trim().split(':');
            let (who, start, count) = (p.next()?, p.next()?.parse::<u64>().ok()?, p.next()?.parse::<u64>().ok()?);
            (who == "root" || who == "0").then_some((start, start + count))
        })
        .collect())
}

/// Docker is installed when its daemon binary or its config exists.
fn docker(host: &Host, skipped: &mut Vec<String>) -> Result<Option<serde_json::Value>> {
    const CONFIG: &str = "/etc/docker/daemon.json";
    let unreadable = skipped.len();
    let text = read_or_skip(host, CONFIG, limits::DAEMON_JSON, "docker checks", skipped)?;
    if skipped.len() > unreadable {
        return Ok(None);
    }
    let installed = text.is_some() || ["/usr/bin/dockerd", "/usr/sbin/dockerd", "/usr/local/bin/dockerd"].iter().any(|p| host.exists(p));
    if !installed {
        return Ok(None);
    }
    match text.as_deref().map(serde_json::from_str::<serde_json::Value>) {
        None => Ok(Some(serde_json::json!({}))),
        Some(Ok(v)) if v.is_object() => Ok(Some(v)),
        Some(Ok(_)) | Some(Err(_)) => {
            skipped.push(format!("docker checks: {CONFIG} is not a JSON object (dockerd would refuse to start)"));
            Ok(None)
        }
    }
}

fn boot_sysctl(host: &Host, skipped: &mut Vec<String>) -> Result<Vec<BootLine>> {
    let mut out = Vec::new();
    for file in crate::sysctl::boot_files(host)? {
        let Some(text) = read_or_skip(host, &file, limits::SYSCTL_FILE, "sysctl boot checks", skipped)? else { continue };
        for (n, line) in text.lines().enumerate() {
            if let Some((key, value)) = crate::sysctl::parse_line(line) {
                out.push(BootLine { file: file.clone(), line: n + 1, key, value });
            }
        }
    }
    Ok(out)
}

impl Facts {
    pub fn read(host: &Host, lxcpath: Option<&str>) -> Result<Facts> {
        let mut sysctl = BTreeMap::new();
        for key in SYSCTL_KEYS {
            if let Some(v) = host.read_optional(format!("/proc/sys/{key}"))? {
                sysctl.insert(key.to_string(), normalize(&v));
            }
        }
        let lxcpath = lxcpath.unwrap_or(DEFAULT_LXCPATH).trim_end_matches('/').to_string();
        let mut containers = Vec::new();
        let mut early_skipped = Vec::new();
        for name in host.list_dir(&lxcpath)? {
            if crate::state::lxc::ContainerName::parse(&name).is_err() {
                continue;
            }
            let file = format!("{lxcpath}/{name}/config");
            if let Some(text) = read_or_skip(host, &file, limits::CONTAINER_CONFIG, &format!("lxc/{name}"), &mut early_skipped)? {
                containers.push(container(host, &name, Config::parse(&text))?);
            }
        }
        let cgroup = crate::cgroup::host_version(host);
        let mut skipped = early_skipped;
        let lxc_version = match lxc::version(host) {
            Ok(v) => Some(v),
            Err(e) => {
                if !containers.is_empty() {
                    skipped.push(format!("lxc.legacy_keys: the LXC version could not be read ({e})"));
                }
                None
            }
        };
        for c in &containers {
            for inc in &c.missing_includes {
                skipped.push(format!("lxc/{}: lxc.include {inc} could not be read; its checks saw the config without it", c.name));
            }
        }
        let firewalls = firewall::read(host);
        for fw in &firewalls {
            if let Err(e) = &fw.filter {
                skipped.push(format!("{} firewall checks: {e}", fw.family));
            }
        }
        let nftables = super::forward::read_nft(host).unwrap_or_else(|e| {
            skipped.push(format!("nftables tables at the forward hook: {e}; the forwarding checks saw iptables only"));
            Vec::new()
        });
        let docker = docker(host, &mut skipped)?;
        let boot_sysctl = boot_sysctl(host, &mut skipped)?;
        let root_subuid = delegated(host, "/etc/subuid", &mut skipped)?;
        let root_subgid = delegated(host, "/etc/subgid", &mut skipped)?;
        Ok(Facts {
            docker,
            sysctl,
            boot_sysctl,
            bridges: bridges(host)?,
            lxcpath,
            containers,
            cgroup,
            swap_accounting: lxc::swap_accounting(host, cgroup),
            lxc_version,
            mem_total: mem_total(host)?,
            seccomp_profile_exists: host.exists("/usr/share/lxc/config/common.seccomp"),
            root_subuid,
            root_subgid,
            newuidmap: ["/usr/bin/newuidmap", "/bin/newuidmap", "/usr/local/bin/newuidmap"].iter().any(|p| host.exists(p)),
            firewalls,
            nftables,
            skipped,
        })
    }

    /// Whether this host runs containers: it has container configs, Docker, or a bridge for them.
    pub fn hosts_containers(&self) -> bool {
        !self.containers.is_empty() || self.docker.is_some() || self.bridges.iter().any(|b| b.physical_ports.is_empty())
    }

    pub fn sysctl_i64(&self, key: &str) -> Option<i64> {
        self.sysctl.get(key).and_then(|v| v.parse().ok())
    }

    /// The dialect `apply` would write configs in, as `lxc.dialect: auto` resolves it.
    pub fn dialect(&self) -> Dialect {
        match self.lxc_version {
            Some(v) if v < (2, 1) => Dialect::Legacy,
            _ => Dialect::Modern,
        }
    }

    pub fn firewall(&self, family: &str) -> Option<&Filter> {
        self.firewalls.iter().find(|f| f.family == family).and_then(|f| f.filter.as_ref().ok())
    }

    /// Every base chain at the forward hook of `family`, both layers; `None` when iptables could
    /// not be read.
    pub fn forward(&self, family: &'static str) -> Option<Hook<'_>> {
        Some(Hook::new(family, self.firewall(family)?, &self.nftables))
    }

    /// The facts as they would be after applying `doc`.
    pub fn overlay(&self, host: &Host, doc: &Document) -> Facts {
        let mut f = self.clone();
        if let Some(s) = &doc.sysctl {
            for (k, v) in &s.values {
                // A key the host does not have stays absent: apply would fail on it.
                if f.sysctl.contains_key(k.rel_path()) {
                    f.sysctl.insert(k.rel_path().to_string(), v.normalized());
                }
            }
            if let Some(path) = &s.persist {
                f.boot_sysctl = overlay_persist(&f.boot_sysctl, path, s);
            }
        }
        if let Some(l) = &doc.lxc {
            if l.lxcpath.trim_end_matches('/') == f.lxcpath {
                let env = Env {
                    dialect: match l.dialect {
                        crate::state::lxc::Dialect::Modern => Dialect::Modern,
                        crate::state::lxc::Dialect::Legacy => Dialect::Legacy,
                        crate::state::lxc::Dialect::Auto => self.dialect(),
                    },
                    cgroup: self.cgroup,
                };
                let renderer = Renderer::new(env);
                for c in &l.containers {
                    let Some(slot) = f.containers.iter_mut().find(|have| have.name == c.name.as_str()) else { continue };
                    let Ok(rendered) = lxc::rendered(c, env, self.swap_accounting, &renderer) else { continue };
                    let after = lxc::predict(&slot.config, c, rendered, env).outcome.config;
                    if let Ok(c) = container(host, &slot.name, after) {
                        *slot = c;
                    }
                }
            }
        }
        // Owned tables are replaced whole, as `apply` replaces them.
        if let Some(n) = &doc.nftables {
            for spec in &n.tables {
                let t = crate::nftables::render::as_listed(spec);
                f.nftables.retain(|have| (have.family.as_str(), have.name.as_str()) != (t.family.as_str(), t.name.as_str()));
                f.nftables.push(t);
            }
        }
        if let Some(i) = &doc.iptables {
            for fw in &mut f.firewalls {
                if let Ok(filter) = &mut fw.filter {
                    firewall::overlay(filter, fw.family, i);
                }
            }
        }
        f
    }
}

/// The boot lines with the persisted file as `apply` would write it.
fn overlay_persist(lines: &[BootLine], path: &str, s: &crate::state::sysctl::SysctlState) -> Vec<BootLine> {
    let text = crate::sysctl::render(s);
    let ours: Vec<BootLine> = text
        .lines()
        .enumerate()
        .filter_map(|(n, l)| crate::sysctl::parse_line(l).map(|(key, value)| BootLine { file: path.to_string(), line: n + 1, key, value }))
        .collect();
    // Where the file sits in boot order: by file name among the sysctl.d files, before sysctl.conf.
    let name = path.rsplit('/').next().unwrap_or(path).to_string();
    let mut out: Vec<BootLine> = lines.iter().filter(|l| l.file != path).cloned().collect();
    let at = out
        .iter()
        .position(|l| l.file == "/etc/sysctl.conf" || l.file.rsplit('/').next().unwrap_or("") > name.as_str())
        .unwrap_or(out.len());
    out.splice(at..at, ours);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audit judges a document by the host `apply` would leave, so it predicts with lxc's own
    /// rules (`lxc::predict`): here, no `lxc.cap.drop` is written beside an operator's
    /// `lxc.cap.keep`, which LXC refuses (the rule the audit's own copy of the pipeline had lost).
    #[test]
    fn the_facts_after_a_document_keep_lxcs_cap_keep_rule() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        host.write_file("/var/lib/lxc/c1/config", b"lxc.uts.name = c1\nlxc.cap.keep = chown setuid\n").unwrap();
        let doc = br#"{"version": 1, "lxc": {"dialect": "modern", "containers": {"c1": {"cap_drop": ["sys_module"], "config": {"lxc.start.auto": "1"}}}}}"#;
        let doc = crate::state::load(doc, "test").unwrap();
        let facts = Facts::read(&host, None).unwrap();
        let after = facts.overlay(&host, &doc);
        let c1 = after.containers.iter().find(|c| c.name == "c1").unwrap();
        assert_eq!(c1.config.last("lxc.start.auto"), Some("1"), "the rest of the document is applied: {:?}", c1.config.text());
        assert_eq!(c1.config.last("lxc.cap.drop"), None, "cap.drop written beside cap.keep: {:?}", c1.config.text());
        assert!(c1.config.last("lxc.cap.keep").is_some());
    }
}

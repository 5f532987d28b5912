//! The `lxc` section: managed keys of named containers' configs, validated into values that can
//! go into a config line as they are (no newline can reach a file, no name can leave lxcpath).

use std::fmt;

use super::types::{control_char_problem, plain_name_problem};
use super::cgroup::{limits_from_raw, Limits, RawLimits};
use super::{key_path, UniqueMap, ValidationErrors};

pub const DEFAULT_LXCPATH: &str = "/var/lib/lxc";

/// Configs of named LXC containers (`LXCPATH/NAME/config`), and the live limits of running ones.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Lxc")]
pub struct RawLxc {
    /// Where containers live (absolute); /var/lib/lxc by default.
    #[serde(default)]
    pub lxcpath: Option<String>,
    /// Config key names: `modern` (LXC 2.1+: lxc.net.0.type, lxc.idmap), `legacy` (LXC 1.x/2.0:
    /// lxc.network.type, lxc.id_map), or `auto` from the installed LXC and the cgroup version.
    #[serde(default)]
    #[schemars(schema_with = "lxc_dialect")]
    pub dialect: Option<String>,
    /// Containers by name; keys of their configs the document does not name are kept as they are.
    #[serde(default)]
    pub containers: UniqueMap<RawContainer>,
}

/// What hostguard manages in one container's config; absent fields are not managed.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Container")]
pub struct RawContainer {
    /// Memory limit: bytes, K/M/G/T, or "max" (written for the host's cgroup version).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::size")]
    pub memory_limit: Option<serde_json::Value>,
    /// Memory plus swap (needs memory_limit, and at least it).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::size")]
    pub memory_swap_limit: Option<serde_json::Value>,
    /// The v1 cpu.shares value, 2..262144 (cpu.weight on cgroup v2).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::cpu_shares")]
    pub cpu_shares: Option<serde_json::Value>,
    /// One object per interface: `{"type": "veth", "link": "lxcbr0", "ipv4.address": [..]}`.
    #[serde(default)]
    #[schemars(schema_with = "lxc_network")]
    pub network: Option<Vec<UniqueMap<serde_json::Value>>>,
    /// Capabilities to drop (`sys_module`, with or without `cap_`).
    #[serde(default)]
    pub cap_drop: Option<Vec<String>>,
    /// User and group id mappings of an unprivileged container.
    #[serde(default)]
    pub idmap: Option<Vec<RawIdmap>>,
    /// Other single-valued LXC keys, set as given (`"lxc.start.auto": "1"`).
    #[serde(default)]
    #[schemars(schema_with = "lxc_config")]
    pub config: UniqueMap<String>,
    /// When the container runs, also write its limits to its live cgroup (no restart needed);
    /// what cannot change live is reported as restart_required.
    #[serde(default)]
    pub live: bool,
}

/// One id range: `type` `u` (user ids) or `g` (group ids), container id, host id, count.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Idmap")]
pub struct RawIdmap {
    #[serde(rename = "type")]
    #[schemars(schema_with = "idmap_type")]
    pub kind: String,
    pub container: u64,
    pub host: u64,
    pub count: u64,
}

/// Which key names the configs are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// From the installed LXC version.
    Auto,
    /// LXC 2.1 and later: `lxc.net.0.type`, `lxc.idmap`.
    Modern,
    /// LXC 1.x and 2.0: `lxc.network.type`, `lxc.id_map`.
    Legacy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LxcState {
    /// Absolute host path; `/var/lib/lxc` unless the document says otherwise.
    pub lxcpath: String,
    pub dialect: Dialect,
    /// Sorted by name, so reports come in a stable order.
    pub containers: Vec<Container>,
}

/// A container name that is one plain path component: it cannot walk out of lxcpath.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerName(String);

impl ContainerName {
    pub fn parse(s: &str) -> Result<ContainerName, String> {
        match plain_name_problem(s) {
            Some(p) => Err(format!("the container name {p}")),
            None => Ok(ContainerName(s.to_string())),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A config key in LXC's grammar: `lxc.` then `.`-separated components of letters, digits,
/// `_` and `-` (`lxc.hook.pre-start`, `lxc.sysctl.net.ipv4.ip_forward`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LxcKey(String);

impl LxcKey {
    pub fn parse(s: &str) -> Result<LxcKey, String> {
        let Some(rest) = s.strip_prefix("lxc.") else {
            return Err(format!("{s:?} is not an LXC key: keys start with \"lxc.\""));
        };
        for part in rest.split('.') {
            if part.is_empty() {
                return Err(format!("{s:?} has an empty component (a trailing or doubled '.')"));
            }
            if let Some(c) = part.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))) {
                return Err(format!("{s:?} contains {c:?}; an LXC key holds letters, digits, '_' and '-' between dots"));
            }
        }
        Ok(LxcKey(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LxcKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One network interface: its keys below `lxc.net.N.`, `type` first, then sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub entries: Vec<(String, String)>,
}

impl Network {
    pub fn kind(&self) -> &str {
        self.entries.iter().find(|(k, _)| k == "type").map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idmap {
    /// `u` or `g`.
    pub kind: char,
    pub container: u32,
    pub host: u32,
    pub count: u32,
}

impl fmt::Display for Idmap {
    /// As LXC writes it: `u 0 100000 65536`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.kind, self.container, self.host, self.count)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: ContainerName,
    /// Memory, memory plus swap and cpu shares, validated as a `cgroups` group's (`pids_max`
    /// is never set: LXC's own `lxc.cgroup*.pids.max` key is written through `config`).
    pub limits: Limits,
    pub network: Option<Vec<Network>>,
    /// Lower-case capability names without `cap_`, sorted and unique.
    pub cap_drop: Option<Vec<String>>,
    pub idmap: Option<Vec<Idmap>>,
    /// Single-valued keys set as they are, sorted by key.
    pub config: Vec<(LxcKey, String)>,
    pub live: bool,
}

/// Network keys that LXC lets an interface carry more than once.
pub const REPEATABLE_NET_KEYS: [&str; 5] =
    ["ipv4.address", "ipv6.address", "veth.ipv4.route", "veth.ipv6.route", "veth.vlan.tagged.id"];

const NET_TYPES: [&str; 7] = ["empty", "none", "veth", "vlan", "macvlan", "ipvlan", "phys"];

/// The config keys a container field manages, with the field (a trailing `*` is a prefix). The
/// `lxc.cgroup*` ones are the files of the cgroup kind's table (`Version::target`) for the limits a
/// container carries; state/ cannot name that table (cgroup/ uses state's `Limits`, so it would be
/// an import circle), and the lxc unit test `managed_cgroup_keys_are_the_cgroup_tables` holds this
/// list to it.
pub const MANAGED_KEYS: [(&str, &str); 13] = [
    ("lxc.cgroup.memory.limit_in_bytes", "memory_limit"),
    ("lxc.cgroup2.memory.max", "memory_limit"),
    ("lxc.cgroup.memory.memsw.limit_in_bytes", "memory_swap_limit"),
    ("lxc.cgroup2.memory.swap.max", "memory_swap_limit"),
    ("lxc.cgroup.cpu.shares", "cpu_shares"),
    ("lxc.cgroup2.cpu.weight", "cpu_shares"),
    ("lxc.cap.drop", "cap_drop"),
    ("lxc.idmap", "idmap"),
    ("lxc.id_map", "idmap"),
    ("lxc.net", "network"),
    ("lxc.network", "network"),
    ("lxc.net.*", "network"),
    ("lxc.network.*", "network"),
];

/// Why a key may not appear in the `config` map, if it may not: keys that have their own field,
/// and keys LXC reads as a list (a map value could only say one of their lines).
pub fn config_key_problem(key: &str) -> Option<String> {
    for (k, field) in MANAGED_KEYS {
        let hit = match k.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == k,
        };
        if hit {
            return Some(format!("{key} is managed by the container's `{field}` field; set it there"));
        }
    }
    let lists = [
        "lxc.include", "lxc.mount.entry", "lxc.environment", "lxc.cap.keep", "lxc.apparmor.raw", "lxc.group",
        "lxc.cgroup.devices.allow", "lxc.cgroup.devices.deny", "lxc.cgroup2.devices.allow",
        "lxc.cgroup2.devices.deny", "lxc.hook",
    ];
    for k in lists {
        if key == k || (k == "lxc.hook" && key.starts_with("lxc.hook.")) {
            return Some(format!(
                "{key} is a key LXC reads as a list (one line per item); the config map sets single-valued \
                 keys only, and hostguard keeps the lines you wrote for it"
            ));
        }
    }
    None
}

/// A value for a config line: no control character (a newline would inject a line), and no
/// leading or trailing blank, which LXC strips and which could then never read back equal.
fn value_problem(v: &str) -> Option<String> {
    if let Some(p) = control_char_problem(v) {
        return Some(p);
    }
    if v != v.trim() {
        return Some(format!("{v:?} has leading or trailing blanks, which LXC strips; remove them"));
    }
    None
}

fn net_key_problem(k: &str) -> Option<String> {
    if k.is_empty() || k.split('.').any(|p| p.is_empty()) {
        return Some(format!("{k:?} is not a network key such as \"link\" or \"ipv4.address\""));
    }
    if k.split('.').next().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return Some(format!("{k:?}: write keys without the interface index; the list position is the index"));
    }
    if let Some(c) = k.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'))) {
        return Some(format!("{k:?} contains {c:?}; network keys hold lower-case letters, digits, '_' and '.'"));
    }
    None
}

fn validate_network(i: usize, raw: &UniqueMap<serde_json::Value>, path: &str, errs: &mut ValidationErrors) -> Network {
    let path = format!("{path}[{i}]");
    let mut entries = Vec::new();
    for (k, v) in raw.iter() {
        let kp = key_path(&path, k);
        if let Some(p) = net_key_problem(k) {
            errs.push(&kp, p);
            continue;
        }
        let values: Vec<String> = match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Number(n) if n.is_u64() => vec![n.to_string()],
            serde_json::Value::Array(items) if REPEATABLE_NET_KEYS.contains(&k.as_str()) => {
                let mut out = Vec::new();
                for (j, item) in items.iter().enumerate() {
                    match item {
                        serde_json::Value::String(s) => out.push(s.clone()),
                        other => errs.push(format!("{kp}[{j}]"), format!("{other} is not a string")),
                    }
                }
                out
            }
            serde_json::Value::Array(_) => {
                errs.push(&kp, format!("{k} takes one value; only {} may be lists", REPEATABLE_NET_KEYS.join(", ")));
                continue;
            }
            other => {
                errs.push(&kp, format!("{other} is not a string or a whole number"));
                continue;
            }
        };
        for v in values {
            if let Some(p) = value_problem(&v) {
                errs.push(&kp, p);
                continue;
            }
            if k == "type" && !NET_TYPES.contains(&v.as_str()) {
                errs.push(&kp, format!("{v:?} is not a network type; use one of {}", NET_TYPES.join(", ")));
            }
            entries.push((k.clone(), v));
        }
    }
    if !raw.0.contains_key("type") {
        errs.push(&path, format!("an interface needs a \"type\" (one of {})", NET_TYPES.join(", ")));
    }
    entries.sort_by(|a, b| (a.0 != "type", &a.0).cmp(&(b.0 != "type", &b.0)));
    Network { entries }
}

fn validate_container(name: &str, raw: &RawContainer, errs: &mut ValidationErrors) -> Option<Container> {
    let path = key_path("lxc.containers", name);
    let before = errs.0.len();
    let cname = ContainerName::parse(name).map_err(|e| errs.push(&path, e)).ok();

    // The same fields, spellings and rules as a `cgroups` group (pids_max aside).
    let raw_limits = RawLimits {
        memory_limit: raw.memory_limit.as_ref(),
        memory_swap_limit: raw.memory_swap_limit.as_ref(),
        cpu_shares: raw.cpu_shares.as_ref(),
        pids_max: None,
    };
    let limits = limits_from_raw(&raw_limits, &path, errs);

    let network = raw.network.as_ref().map(|nets| {
        nets.iter().enumerate().map(|(i, n)| validate_network(i, n, &format!("{path}.network"), errs)).collect()
    });

    let cap_drop = raw.cap_drop.as_ref().map(|caps| {
        let mut out: Vec<String> = Vec::new();
        for (i, c) in caps.iter().enumerate() {
            let lower = c.to_ascii_lowercase();
            let bare = lower.strip_prefix("cap_").unwrap_or(&lower).to_string();
            if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                errs.push(format!("{path}.cap_drop[{i}]"), format!("{c:?} is not a capability name such as \"sys_module\""));
                continue;
            }
            out.push(bare);
        }
        out.sort();
        out.dedup();
        out
    });

    let idmap = raw.idmap.as_ref().map(|maps| {
        let mut out = Vec::new();
        for (i, m) in maps.iter().enumerate() {
            let p = format!("{path}.idmap[{i}]");
            let kind = match m.kind.as_str() {
                "u" => 'u',
                "g" => 'g',
                other => {
                    errs.push(format!("{p}.type"), format!("{other:?} is not an idmap type: use \"u\" (user ids) or \"g\" (group ids)"));
                    continue;
                }
            };
            let fits = |start: u64, what: &str, errs: &mut ValidationErrors| {
                if m.count == 0 || start.checked_add(m.count).is_none_or(|end| end > 1 << 32) {
                    errs.push(format!("{p}.{what}"), format!("{start} + count {} leaves the 32-bit id range (or count is 0)", m.count));
                    false
                } else {
                    true
                }
            };
            if fits(m.container, "container", errs) & fits(m.host, "host", errs) {
                out.push(Idmap { kind, container: m.container as u32, host: m.host as u32, count: m.count as u32 });
            }
        }
        out
    });

    let mut config = Vec::new();
    for (k, v) in raw.config.iter() {
        let kp = key_path(&format!("{path}.config"), k);
        match LxcKey::parse(k) {
            Ok(key) => {
                if let Some(p) = config_key_problem(k) {
                    errs.push(&kp, p);
                } else if let Some(p) = value_problem(v) {
                    errs.push(&kp, p);
                } else {
                    config.push((key, v.clone()));
                }
            }
            Err(e) => errs.push(&kp, e),
        }
    }

    if errs.0.len() != before {
        return None;
    }
    Some(Container {
        name: cname?,
        limits,
        network,
        cap_drop,
        idmap,
        config,
        live: raw.live,
    })
}

pub fn validate(raw: RawLxc, errs: &mut ValidationErrors) -> LxcState {
    let lxcpath = raw.lxcpath.clone().unwrap_or_else(|| DEFAULT_LXCPATH.to_string());
    if let Some(p) = control_char_problem(&lxcpath) {
        errs.push("lxc.lxcpath", format!("the path {p}"));
    } else if !lxcpath.starts_with('/') {
        errs.push("lxc.lxcpath", format!("{lxcpath:?} is not an absolute path (such as /var/lib/lxc)"));
    } else if lxcpath.split('/').any(|c| c == "..") {
        errs.push("lxc.lxcpath", format!("{lxcpath:?} contains \"..\"; write the path without it"));
    }
    let dialect = match raw.dialect.as_deref() {
        None | Some("auto") => Dialect::Auto,
        Some("modern") => Dialect::Modern,
        Some("legacy") => Dialect::Legacy,
        Some(other) => {
            errs.push("lxc.dialect", format!("{other:?} is not a dialect: use \"auto\", \"modern\" (LXC 2.1 and later) or \"legacy\" (LXC 1.x/2.0)"));
            Dialect::Auto
        }
    };
    let containers = raw
        .containers
        .iter()
        .filter_map(|(name, c)| validate_container(name, c, errs))
        .collect();
    LxcState {
        lxcpath: match lxcpath.trim_end_matches('/') {
            "" => "/".to_string(),
            p => p.to_string(),
        },
        dialect,
        containers,
    }
}

// Field schemas for values the serde layer keeps as `serde_json::Value` or `String`, beside
// their fields; each says what `validate` accepts.

fn lxc_dialect(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::schema::one_of(&["auto", "modern", "legacy"])
}

fn idmap_type(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::schema::one_of(&["u", "g"])
}

/// `lxc.containers.*.network` (`validate_network`): one object per interface.
fn lxc_network(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "description": "One interface: its keys below lxc.net.N. (the list position is N).",
            "required": ["type"],
            "properties": {
                "type": { "enum": NET_TYPES }
            },
            "propertyNames": { "pattern": "^[a-z0-9_]*[a-z_][a-z0-9_]*(\\.[a-z0-9_]+)*$" },
            "additionalProperties": {
                "oneOf": [
                    { "type": "string" },
                    { "type": "integer", "minimum": 0 },
                    { "type": "array", "items": { "type": "string" } }
                ]
            }
        },
        "examples": [[{ "type": "veth", "link": "lxcbr0", "flags": "up" }]]
    })
}

/// `lxc.containers.*.config`: LXC keys to single values.
fn lxc_config(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "propertyNames": { "pattern": "^lxc(\\.[A-Za-z0-9_-]+)+$" },
        "additionalProperties": { "type": "string" },
        "examples": [{ "lxc.start.auto": "1" }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: serde_json::Value) -> Result<LxcState, ValidationErrors> {
        let raw: RawLxc = serde_json::from_value(v).unwrap();
        let mut errs = ValidationErrors::default();
        let s = validate(raw, &mut errs);
        errs.into_result(s)
    }

    fn errors(v: serde_json::Value) -> String {
        check(v).unwrap_err().to_string()
    }

    #[test]
    fn the_spec_example_is_valid() {
        let s = check(json!({
            "lxcpath": "/var/lib/lxc", "dialect": "auto",
            "containers": { "web1": {
                "memory_limit": "512M", "memory_swap_limit": "1G", "cpu_shares": 512,
                "network": [{ "type": "veth", "link": "lxcbr0", "flags": "up" }],
                "cap_drop": ["sys_module", "sys_time", "sys_rawio", "mac_admin", "mac_override"],
                "idmap": [{ "type": "u", "container": 0, "host": 100000, "count": 65536 },
                          { "type": "g", "container": 0, "host": 100000, "count": 65536 }],
                "config": { "lxc.start.auto": "1" }, "live": true }}
        }))
        .unwrap();
        let c = &s.containers[0];
        assert_eq!(c.name.as_str(), "web1");
        assert_eq!(c.limits.memory_swap, Some(crate::state::types::Limit::Bytes(1 << 30)));
        assert_eq!(c.network.as_ref().unwrap()[0].entries[0], ("type".to_string(), "veth".to_string()));
        assert_eq!(c.idmap.as_ref().unwrap()[1].to_string(), "g 0 100000 65536");
        assert!(c.live);
    }

    #[test]
    fn names_that_leave_lxcpath_are_refused() {
        for bad in ["../etc", "a/b", "..", ".", "-n"] {
            let e = errors(json!({ "containers": { bad: {} } }));
            assert!(e.contains("the container name"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_newline_in_any_value_is_refused_with_its_path() {
        let e = errors(json!({ "containers": { "c": { "config": { "lxc.start.auto": "1\nlxc.cap.drop =" } } } }));
        assert!(e.contains(r#"lxc.containers["c"].config["lxc.start.auto"]"#) && e.contains("control character"), "{e}");
        let e = errors(json!({ "containers": { "c": { "network": [{ "type": "veth", "link": "br0\nlxc.x = y" }] } } }));
        assert!(e.contains(r#"network[0]["link"]"#), "{e}");
        let e = errors(json!({ "lxcpath": "/var/lib/lxc\n", "containers": {} }));
        assert!(e.contains("lxc.lxcpath"), "{e}");
    }

    #[test]
    fn keys_follow_lxc_grammar() {
        for good in ["lxc.start.auto", "lxc.hook.pre-start.x", "lxc.sysctl.net.ipv4.ip_forward"] {
            assert!(LxcKey::parse(good).is_ok(), "{good}");
        }
        for bad in ["start.auto", "lxc.", "lxc..a", "lxc.a b", "lxc.a=b", "lxc.a/b"] {
            assert!(LxcKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_with_their_own_field_or_list_keys_are_refused_in_config() {
        let e = errors(json!({ "containers": { "c": { "config": {
            "lxc.cgroup.memory.limit_in_bytes": "1G", "lxc.net.0.type": "veth", "lxc.mount.entry": "a b" } } } }));
        assert!(e.contains("memory_limit") && e.contains("network") && e.contains("list"), "{e}");
    }

    #[test]
    fn bad_dialect_idmap_lxcpath_and_limits_are_refused() {
        let e = errors(json!({ "dialect": "new", "lxcpath": "var/lib/lxc", "containers": { "c": {
            "idmap": [{ "type": "x", "container": 0, "host": 0, "count": 1 },
                      { "type": "u", "container": 0, "host": 4294967295u64, "count": 2 }],
            "memory_limit": "1G", "memory_swap_limit": "512M", "cpu_shares": 1,
            "network": [{ "link": "br0" }], "cap_drop": ["sys module"] } } }));
        for want in ["lxc.dialect", "lxc.lxcpath", "idmap[0].type", "idmap[1].host", "memory_swap_limit", "cpu_shares",
                     "network[0]", "cap_drop[0]"] {
            assert!(e.contains(want), "missing {want}: {e}");
        }
    }

    #[test]
    fn cap_names_are_normalised() {
        let s = check(json!({ "containers": { "c": { "cap_drop": ["SYS_TIME", "cap_sys_module", "sys_time"] } } })).unwrap();
        assert_eq!(s.containers[0].cap_drop.as_deref().unwrap(), ["sys_module", "sys_time"]);
    }
}

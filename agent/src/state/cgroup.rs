//! The `cgroups` section: limits of named cgroups, validated into `CgroupPath` and `Limits`.
//!
//! `Limits` and `limits_from_raw` are shared with the `lxc` section, whose containers carry the
//! same memory, memory+swap and cpu limits.

use std::fmt;

use super::types::{control_char_problem, plain_name_problem, Limit};
use super::{key_path, UniqueMap, ValidationErrors};

/// Limits of named cgroups, on cgroup v1 or v2.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cgroups")]
pub struct RawCgroups {
    /// Which cgroup version to manage: `auto` (default) reads /sys/fs/cgroup; a forced version
    /// the host does not have exits 1.
    #[serde(default)]
    #[schemars(schema_with = "cgroup_version")]
    pub version: Option<String>,
    /// Groups by path below the cgroup root (`hostguard/web1`); a missing group is created.
    #[serde(default)]
    pub groups: UniqueMap<RawGroup>,
}

/// The limits of one group; absent ones are not managed. At least one is required.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Group")]
pub struct RawGroup {
    /// Memory limit (v1 memory.limit_in_bytes, v2 memory.max): bytes, K/M/G/T, or "max".
    #[serde(default)]
    #[schemars(schema_with = "super::schema::size")]
    pub memory_limit: Option<serde_json::Value>,
    /// Memory plus swap, as Docker's --memory-swap (v1 memsw; v2 memory.swap.max is this minus
    /// memory_limit). Needs memory_limit beside it, and may not be below it.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::size")]
    pub memory_swap_limit: Option<serde_json::Value>,
    /// The v1 cpu.shares value, 2..262144 (1024 is the kernel's default); on v2 it becomes
    /// cpu.weight by the runc/crun formula (1024 -> 100).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::cpu_shares")]
    pub cpu_shares: Option<serde_json::Value>,
    /// pids.max: 1..4194304 tasks, or "max".
    #[serde(default)]
    #[schemars(schema_with = "super::schema::pids_max")]
    pub pids_max: Option<serde_json::Value>,
}

/// `cgroups.version`: which cgroup version to manage. `Auto` reads the host's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionChoice {
    #[default]
    Auto,
    V1,
    V2,
}

/// cgroup v1 `cpu.shares` bounds (kernel `MIN_SHARES`/`MAX_SHARES` as the OCI spec states them).
pub const CPU_SHARES_MIN: u64 = 2;
pub const CPU_SHARES_MAX: u64 = 262_144;

/// `pids.max`: a number of tasks, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidsMax {
    Count(u64),
    Max,
}

impl fmt::Display for PidsMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidsMax::Count(n) => write!(f, "{n}"),
            PidsMax::Max => f.write_str("max"),
        }
    }
}

/// The limits a document asks of one group (or one container); absent ones are not managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub memory: Option<Limit>,
    /// Memory plus swap, as cgroup v1 `memsw` and Docker's `--memory-swap`.
    pub memory_swap: Option<Limit>,
    pub cpu_shares: Option<u64>,
    pub pids_max: Option<PidsMax>,
}

/// A cgroup below the hierarchy root, such as `hostguard/web1`: plain-name components only, so
/// it can never be `..`, absolute, or otherwise leave the cgroup root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CgroupPath(String);

impl CgroupPath {
    /// A leading `/` is accepted (`/lxc/web1` as `/proc/PID/cgroup` prints it) and dropped.
    pub fn parse(s: &str) -> Result<CgroupPath, String> {
        if let Some(p) = control_char_problem(s) {
            return Err(format!("the group path {p}"));
        }
        let rel = s.strip_prefix('/').unwrap_or(s);
        if rel.is_empty() {
            return Err("the root cgroup cannot be managed: name a group below it, such as \"hostguard/web1\"".into());
        }
        for part in rel.split('/') {
            if part.is_empty() {
                return Err(format!("{s:?} has an empty component (a trailing or doubled '/')"));
            }
            if part == ".." || part == "." {
                return Err(format!("{s:?} contains {part:?}; a group path may not leave the cgroup root"));
            }
            if let Some(p) = plain_name_problem(part) {
                return Err(format!("{s:?}: component {p}"));
            }
            if part.starts_with("cgroup.") || ["memory.", "cpu.", "pids.", "cpuacct.", "cpuset."].iter().any(|c| part.starts_with(c)) {
                return Err(format!("{s:?}: component {part:?} looks like a cgroup control file; choose another name"));
            }
        }
        Ok(CgroupPath(rel.to_string()))
    }

    /// Relative to the hierarchy root, no leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `a`, `a/b`, `a/b/c` for `a/b/c`: the groups to create, outermost first.
    pub fn ancestors_and_self(&self) -> Vec<String> {
        let parts: Vec<&str> = self.0.split('/').collect();
        (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn is_under(&self, prefix: &CgroupPath) -> bool {
        self.0 == prefix.0 || self.0.starts_with(&format!("{}/", prefix.0))
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupsState {
    pub version: VersionChoice,
    /// Sorted by path, so reports come in a stable order.
    pub groups: Vec<(CgroupPath, Limits)>,
}

pub fn validate(raw: RawCgroups, errs: &mut ValidationErrors) -> CgroupsState {
    let version = match raw.version.as_deref() {
        None | Some("auto") => VersionChoice::Auto,
        Some("v1") => VersionChoice::V1,
        Some("v2") => VersionChoice::V2,
        Some(other) => {
            errs.push("cgroups.version", format!("{other:?} is not a cgroup version: use \"auto\", \"v1\" or \"v2\""));
            VersionChoice::Auto
        }
    };
    let mut groups = Vec::new();
    for (name, g) in raw.groups.iter() {
        let path = key_path("cgroups.groups", name);
        let group = CgroupPath::parse(name).map_err(|m| errs.push(&path, m));
        let fields = RawLimits {
            memory_limit: g.memory_limit.as_ref(),
            memory_swap_limit: g.memory_swap_limit.as_ref(),
            cpu_shares: g.cpu_shares.as_ref(),
            pids_max: g.pids_max.as_ref(),
        };
        let limits = limits_from_raw(&fields, &path, errs);
        let named_none = fields.memory_limit.is_none()
            && fields.memory_swap_limit.is_none()
            && fields.cpu_shares.is_none()
            && fields.pids_max.is_none();
        if named_none {
            errs.push(&path, "names no limit: give memory_limit, memory_swap_limit, cpu_shares or pids_max");
        }
        if let Ok(group) = group {
            groups.push((group, limits));
        }
    }
    CgroupsState { version, groups }
}

/// The limit fields of a group or container, as the document wrote them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawLimits<'a> {
    pub memory_limit: Option<&'a serde_json::Value>,
    pub memory_swap_limit: Option<&'a serde_json::Value>,
    pub cpu_shares: Option<&'a serde_json::Value>,
    pub pids_max: Option<&'a serde_json::Value>,
}

/// Validate limit fields found at `parent` (a JSON path), pushing every error with its path.
pub fn limits_from_raw(raw: &RawLimits, parent: &str, errs: &mut ValidationErrors) -> Limits {
    let mut field = |name: &str, v: Option<&serde_json::Value>, parse: &dyn Fn(&serde_json::Value) -> Result<(), String>| {
        if let Some(v) = v {
            if let Err(m) = parse(v) {
                errs.push(format!("{parent}.{name}"), m);
            }
        }
    };
    field("memory_limit", raw.memory_limit, &|v| Limit::from_json(v).map(drop));
    field("memory_swap_limit", raw.memory_swap_limit, &|v| Limit::from_json(v).map(drop));
    field("cpu_shares", raw.cpu_shares, &|v| parse_cpu_shares(v).map(drop));
    field("pids_max", raw.pids_max, &|v| parse_pids_max(v).map(drop));
    let limits = Limits {
        memory: raw.memory_limit.and_then(|v| Limit::from_json(v).ok()),
        memory_swap: raw.memory_swap_limit.and_then(|v| Limit::from_json(v).ok()),
        cpu_shares: raw.cpu_shares.and_then(|v| parse_cpu_shares(v).ok()),
        pids_max: raw.pids_max.and_then(|v| parse_pids_max(v).ok()),
    };
    if let Some(m) = swap_problem(limits.memory, limits.memory_swap) {
        errs.push(format!("{parent}.memory_swap_limit"), m);
    }
    limits
}

/// The kernel's rule (v1 `memsw` may never be below `memory`) checked up front, so no apply
/// half-succeeds on a document that cannot be satisfied.
fn swap_problem(memory: Option<Limit>, swap: Option<Limit>) -> Option<String> {
    match (memory, swap) {
        (_, None) | (_, Some(Limit::Max)) => None,
        (None, Some(_)) => Some(
            "memory_swap_limit is memory plus swap and needs memory_limit beside it (as Docker's --memory-swap needs --memory)".into(),
        ),
        (Some(Limit::Max), Some(s)) => Some(format!("{s} is below memory_limit \"max\"; memory_swap_limit (memory plus swap) must be at least memory_limit")),
        (Some(Limit::Bytes(m)), Some(Limit::Bytes(s))) if s < m => Some(format!(
            "{} is below memory_limit {}; memory_swap_limit is memory plus swap and must be at least memory_limit",
            Limit::Bytes(s),
            Limit::Bytes(m)
        )),
        _ => None,
    }
}

/// `cpu_shares`: a whole number in 2..=262144 (cgroup v1's range).
pub fn parse_cpu_shares(v: &serde_json::Value) -> Result<u64, String> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (CPU_SHARES_MIN..=CPU_SHARES_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "{v} is not valid cpu shares: use a whole number from {CPU_SHARES_MIN} to {CPU_SHARES_MAX} (1024 is the kernel's default)"
        )),
    }
}

/// `pids_max`: a positive whole number of tasks, or `"max"`.
pub fn parse_pids_max(v: &serde_json::Value) -> Result<PidsMax, String> {
    let n = match v {
        serde_json::Value::String(s) if s.trim() == "max" => return Ok(PidsMax::Max),
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    // The kernel's PIDS_MAX is PID_MAX_LIMIT (4194304); a larger count is refused by the kernel.
    match n {
        Some(n) if (1..=4_194_304).contains(&n) => Ok(PidsMax::Count(n)),
        _ => Err(format!("{v} is not a pids limit: use a whole number from 1 to 4194304, or \"max\"")),
    }
}

// Field schemas for values the serde layer keeps as `serde_json::Value` or `String`, beside
// their fields; each says what `validate` accepts.

fn cgroup_version(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::schema::one_of(&["auto", "v1", "v2"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(doc: serde_json::Value) -> Result<CgroupsState, ValidationErrors> {
        let raw: RawCgroups = serde_json::from_value(doc).unwrap();
        let mut errs = ValidationErrors::default();
        let s = validate(raw, &mut errs);
        errs.into_result(s)
    }

    #[test]
    fn a_full_group_validates() {
        let s = check(json!({"version": "v2", "groups": {"hostguard/web1": {
            "memory_limit": "512M", "memory_swap_limit": "1G", "cpu_shares": 512, "pids_max": "max"}}}))
        .unwrap();
        assert_eq!(s.version, VersionChoice::V2);
        let (p, l) = &s.groups[0];
        assert_eq!(p.as_str(), "hostguard/web1");
        assert_eq!(l.memory, Some(Limit::Bytes(512 << 20)));
        assert_eq!(l.memory_swap, Some(Limit::Bytes(1 << 30)));
        assert_eq!(l.cpu_shares, Some(512));
        assert_eq!(l.pids_max, Some(PidsMax::Max));
    }

    #[test]
    fn bad_values_name_their_path() {
        let e = check(json!({"version": "v3", "groups": {"g": {
            "memory_limit": "12Q", "cpu_shares": 1, "pids_max": -3}}}))
        .unwrap_err();
        let paths: Vec<_> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"cgroups.version"), "{e}");
        assert!(paths.contains(&"cgroups.groups[\"g\"].memory_limit"), "{e}");
        assert!(paths.contains(&"cgroups.groups[\"g\"].cpu_shares"), "{e}");
        assert!(paths.contains(&"cgroups.groups[\"g\"].pids_max"), "{e}");
    }

    #[test]
    fn cpu_shares_range_is_2_to_262144() {
        for ok in [2, 1024, 262144] {
            assert_eq!(parse_cpu_shares(&json!(ok)), Ok(ok));
        }
        for bad in [json!(0), json!(1), json!(262145), json!(-5), json!(1.5), json!("x")] {
            assert!(parse_cpu_shares(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn swap_must_not_be_below_memory() {
        let e = check(json!({"groups": {"g": {"memory_limit": "1G", "memory_swap_limit": "512M"}}})).unwrap_err();
        assert!(e.to_string().contains("must be at least memory_limit"), "{e}");
        assert!(check(json!({"groups": {"g": {"memory_swap_limit": "1G"}}})).is_err());
        assert!(check(json!({"groups": {"g": {"memory_limit": "max", "memory_swap_limit": "1G"}}})).is_err());
        assert!(check(json!({"groups": {"g": {"memory_limit": "1G", "memory_swap_limit": "1G"}}})).is_ok());
        assert!(check(json!({"groups": {"g": {"memory_limit": "1G", "memory_swap_limit": "max"}}})).is_ok());
    }

    #[test]
    fn group_paths_cannot_leave_the_root() {
        for bad in ["..", "a/../b", "../etc", "a//b", "a/", "", "/", "a/./b", "a\nb", "a/cgroup.procs", "a/memory.max", "-x"] {
            assert!(CgroupPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(CgroupPath::parse("/lxc/web1").unwrap().as_str(), "lxc/web1");
        assert_eq!(
            CgroupPath::parse("a/b/c").unwrap().ancestors_and_self(),
            vec!["a".to_string(), "a/b".into(), "a/b/c".into()]
        );
    }

    #[test]
    fn a_group_without_limits_is_refused() {
        let e = check(json!({"groups": {"g": {}}})).unwrap_err();
        assert!(e.to_string().contains("names no limit"), "{e}");
        // A group whose only limit is invalid gets that error alone.
        let e = check(json!({"groups": {"g": {"cpu_shares": 0}}})).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
    }
}

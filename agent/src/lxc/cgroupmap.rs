//! The `lxc.cgroup.*` / `lxc.cgroup2.*` keys and values of the limits an LXC config carries, as
//! the cgroup kind's table (`Version::target`, read back by `Version::limits_from`) gives them,
//! and the translation of a line written for the wrong cgroup version of the host (LXC ignores
//! such lines silently). Only the lines of controllers hostguard does not limit (cpuset,
//! devices, cpu.max) are mapped here, by hand.

use crate::cgroup::{Native, Setting};
use crate::state::cgroup::Limits;
use crate::state::types::Limit;

pub use crate::cgroup::Version;

/// A size as an LXC config or a cgroup file spells it: bytes with an optional suffix, `max`, or
/// v1's `-1`; v1 reads back "no limit" as the page-rounded maximum (9223372036854771712).
pub fn parse_size(s: &str) -> Option<Limit> {
    let s = s.trim();
    if s == "-1" || s == "max" {
        return Some(Limit::Max);
    }
    match Limit::parse(s) {
        Ok(Limit::Bytes(b)) if b >= 1 << 62 => Some(Limit::Max),
        Ok(l) => Some(l),
        Err(_) => None,
    }
}

/// A size as a v1 (`-1`) or v2 (`max`) config value.
pub fn size_value(l: Limit, v: Version) -> String {
    match (l, v) {
        (Limit::Max, Version::V1) => "-1".into(),
        (Limit::Max, Version::V2) => "max".into(),
        (b, _) => b.to_string(),
    }
}

/// The config key of a cgroup `v` control file: `lxc.cgroup.` or `lxc.cgroup2.` and the file.
pub fn file_key(file: &str, v: Version) -> String {
    match v {
        Version::V1 => format!("lxc.cgroup.{file}"),
        Version::V2 => format!("lxc.cgroup2.{file}"),
    }
}

/// The config key that sets `setting` on a cgroup `v` host: the file the cgroup kind writes for
/// it (`Version::target`).
pub fn key(setting: Setting, v: Version) -> String {
    file_key(v.target(setting, &Limits::default()).file, v)
}

/// The keys of `setting` on both versions: a config may hold either.
pub fn keys(setting: Setting) -> [String; 2] {
    [key(setting, Version::V1), key(setting, Version::V2)]
}

/// The config line that sets `setting` of `limits` on a cgroup `v` host: the cgroup kind's file
/// and value (so v2's swap alone and weight are converted there, once), spelled as a config
/// takes it (`512M`; "no limit" as `-1` or `max`).
pub fn line(setting: Setting, limits: &Limits, v: Version) -> (String, String) {
    let t = v.target(setting, limits);
    let value = match t.value {
        Native::Bytes(l) => size_value(l, v),
        other => other.to_string(),
    };
    (key(setting, v), value)
}

/// The limits a container carries (a `pids.max` line passes through as written).
const CARRIED: [Setting; 3] = [Setting::Memory, Setting::MemorySwap, Setting::CpuShares];

/// A config value of `setting` as its cgroup file's native value: a size in either spelling
/// (`256M`, `-1`, `max`) or a number.
fn native(setting: Setting, value: &str) -> Option<Native> {
    match setting {
        Setting::Memory | Setting::MemorySwap => parse_size(value).map(Native::Bytes),
        Setting::CpuShares => value.trim().parse().ok().map(Native::Number),
        Setting::PidsMax => None,
    }
}

/// The document's limits that the config line `key = value` (`setting`'s key on either cgroup
/// version) sets, with `memory` as the container's memory limit: the cgroup kind's table read
/// backwards (`Version::limits_from`), so v2's swap and weight convert back in one place.
/// `None` for another key, or a value no document value gives.
pub fn limits_of(setting: Setting, key: &str, value: &str, memory: Option<Limit>) -> Option<Limits> {
    let v = [Version::V1, Version::V2].into_iter().find(|v| self::key(setting, *v) == key)?;
    v.limits_from(setting, native(setting, value)?, memory)
}

/// The lines for `key = value` (a key below `lxc.cgroup.` or `lxc.cgroup2.`, of the version that
/// is not `host`) on a `host` cgroup version, or `None` when there is no faithful equivalent.
/// `memory` is the container's memory limit, which swap needs.
pub fn translate(controller_key: &str, value: &str, host: Version, memory: Option<Limit>) -> Option<Vec<(String, String)>> {
    let wrong = match host {
        Version::V1 => Version::V2,
        Version::V2 => Version::V1,
    };
    // A limit a container carries: read back through the cgroup kind's table and written as the
    // host's version writes it (`line`); swap is converted against the memory limit, so needs it.
    if let Some(setting) = wrong.setting_of(controller_key).filter(|s| CARRIED.contains(s)) {
        if setting == Setting::MemorySwap {
            memory?;
        }
        let limits = wrong.limits_from(setting, native(setting, value)?, memory)?;
        return Some(vec![line(setting, &limits, host)]);
    }
    let same = ["pids.max", "cpuset.cpus", "cpuset.mems", "devices.allow", "devices.deny"];
    let one = |k: &str, v: String| Some(vec![(k.to_string(), v)]);
    match host {
        Version::V1 => {
            let prefix = "lxc.cgroup.";
            match controller_key {
                "cpu.max" => {
                    let mut parts = value.split_whitespace();
                    let quota = parts.next()?;
                    let period = parts.next().unwrap_or("100000");
                    let quota = if quota == "max" { "-1".to_string() } else { quota.parse::<u64>().ok()?.to_string() };
                    let period = period.parse::<u64>().ok()?.to_string();
                    Some(vec![
                        (format!("{prefix}cpu.cfs_quota_us"), quota),
                        (format!("{prefix}cpu.cfs_period_us"), period),
                    ])
                }
                k if same.contains(&k) => one(&format!("{prefix}{k}"), value.to_string()),
                _ => None,
            }
        }
        Version::V2 => {
            let prefix = "lxc.cgroup2.";
            match controller_key {
                k if same.contains(&k) => one(&format!("{prefix}{k}"), value.to_string()),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{shares_to_weight, weight_to_shares};

    #[test]
    fn shares_convert_to_weights_as_oci_runtimes_do() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(512), 59);
        assert!(shares_to_weight(2048) > 100);
    }

    #[test]
    fn weights_convert_back_to_shares_that_round_trip() {
        for w in [1, 59, 100, 250, 9999, 10_000] {
            assert_eq!(shares_to_weight(weight_to_shares(w)), w, "weight {w}");
        }
    }

    #[test]
    fn wrong_version_lines_translate() {
        let m = Some(Limit::Bytes(256 << 20));
        assert_eq!(
            translate("memory.swap.max", "256M", Version::V1, m),
            Some(vec![("lxc.cgroup.memory.memsw.limit_in_bytes".into(), "512M".into())])
        );
        assert_eq!(
            translate("memory.limit_in_bytes", "-1", Version::V2, None),
            Some(vec![("lxc.cgroup2.memory.max".into(), "max".into())])
        );
        assert_eq!(translate("memory.swap.max", "1G", Version::V1, None), None);
        assert_eq!(translate("io.weight", "10", Version::V1, None), None);
    }

    /// The three limits go through the cgroup kind's table both ways: v2's weight to the roundest
    /// shares and back, and the container's memory beside memory+swap.
    #[test]
    fn wrong_version_limits_translate_through_the_cgroup_table() {
        assert_eq!(translate("cpu.weight", "59", Version::V1, None), Some(vec![("lxc.cgroup.cpu.shares".into(), "512".into())]));
        assert_eq!(translate("cpu.shares", "512", Version::V2, None), Some(vec![("lxc.cgroup2.cpu.weight".into(), "59".into())]));
        assert_eq!(translate("memory.max", "max", Version::V1, None), Some(vec![("lxc.cgroup.memory.limit_in_bytes".into(), "-1".into())]));
        let m = Some(Limit::Bytes(256 << 20));
        assert_eq!(
            translate("memory.memsw.limit_in_bytes", "1G", Version::V2, m),
            Some(vec![("lxc.cgroup2.memory.swap.max".into(), "768M".into())])
        );
        assert_eq!(translate("memory.memsw.limit_in_bytes", "1G", Version::V2, None), None, "swap needs the memory limit");
        assert_eq!(translate("memory.swap.max", "max", Version::V1, None), None, "swap needs the memory limit");
        assert_eq!(translate("pids.max", " 50", Version::V1, None), Some(vec![("lxc.cgroup.pids.max".into(), " 50".into())]));
        assert_eq!(translate("memory.limit_in_bytes", "1G", Version::V1, None), None, "a v1 file under lxc.cgroup2 is no limit");
    }

    /// state/lxc.rs lists the `lxc.cgroup*` keys a container field manages by hand (it cannot
    /// name the cgroup table without an import circle); they must be the table's files for every
    /// limit a container carries, on both versions, so a key the render writes is never also
    /// settable through the `config` map (two lines for one file, the last one winning).
    #[test]
    fn managed_cgroup_keys_are_the_cgroup_tables() {
        use crate::cgroup::Setting;
        use crate::state::lxc::{config_key_problem, RawContainer, MANAGED_KEYS};
        use std::collections::BTreeSet;

        // The limits a container carries: the settings whose field a container accepts.
        let carried: Vec<Setting> = Setting::ALL
            .into_iter()
            .filter(|s| serde_json::from_value::<RawContainer>(serde_json::json!({ s.name(): "1" })).is_ok())
            .collect();
        assert_eq!(carried, [Setting::Memory, Setting::MemorySwap, Setting::CpuShares]);

        let table: BTreeSet<(String, &str)> = carried.iter().flat_map(|s| keys(*s).map(|k| (k, s.name()))).collect();
        let listed: BTreeSet<(String, &str)> =
            MANAGED_KEYS.iter().filter(|(k, _)| k.starts_with("lxc.cgroup")).map(|(k, f)| (k.to_string(), *f)).collect();
        assert_eq!(listed, table);
        for (k, field) in &table {
            let why = config_key_problem(k).unwrap_or_default();
            assert!(why.contains(&format!("`{field}`")), "{k}: {why:?}");
        }
    }

    #[test]
    fn sizes_parse_in_both_spellings() {
        assert_eq!(parse_size("-1"), Some(Limit::Max));
        assert_eq!(parse_size("9223372036854771712"), Some(Limit::Max));
        assert_eq!(parse_size("268435456"), Some(Limit::Bytes(256 << 20)));
        assert_eq!(parse_size("256M"), Some(Limit::Bytes(256 << 20)));
    }
}

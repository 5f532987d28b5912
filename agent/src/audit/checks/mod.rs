//! The checks: each a function from facts to findings, with the fix and a source. A check never
//! reads the host; everything it needs is in `Facts`, so the same check run on overlaid facts
//! says whether a document closes its finding.

mod docker;
mod lxc;
mod net;
mod sysctl;

use super::{Facts, Finding, Severity};

/// Every check, in a fixed order.
pub fn run(facts: &Facts) -> Vec<Finding> {
    let checks: &[fn(&Facts) -> Vec<Finding>] = &[
        sysctl::swappiness,
        sysctl::boot_override,
        net::forward_accept,
        net::ip_forward_accept,
        net::inter_container,
        net::bridge_netfilter,
        lxc::privileged,
        lxc::idmap_shared,
        lxc::idmap_not_delegated,
        lxc::cap_drop,
        lxc::memory_limit,
        lxc::memory_swap_limit,
        lxc::cpu_shares,
        lxc::pids_limit,
        lxc::cgroup_version_keys,
        lxc::legacy_keys,
        lxc::apparmor_unconfined,
        lxc::mount_auto_rw,
        lxc::devices_allow_all,
        lxc::seccomp,
        docker::tcp_without_tls,
        docker::userns_remap,
    ];
    checks.iter().flat_map(|c| c(facts)).collect()
}

/// Where sysctl fixes persist their values: a runtime-only fix would revert at the next boot.
/// (`emit_state` keeps the persisted file of a document given with `STATE`, if it names one.)
pub const PERSIST: &str = "/etc/sysctl.d/60-hostguard.conf";

/// The fragment that sets `key` (dotted) at runtime and persists it.
fn sysctl_fix(key: &str, value: i64) -> serde_json::Value {
    serde_json::json!({"sysctl": {"persist": PERSIST, "values": { key: value }}})
}

/// A finding without `closed_by_state`, which `audit` fills in.
#[allow(clippy::too_many_arguments)]
fn finding(
    id: &'static str,
    severity: Severity,
    subject: String,
    title: impl Into<String>,
    evidence: impl Into<String>,
    fix: Option<serde_json::Value>,
    remedy: Option<String>,
    reference: &'static str,
) -> Finding {
    Finding {
        id,
        severity,
        subject,
        title: title.into(),
        evidence: evidence.into(),
        fix: fix.unwrap_or(serde_json::Value::Null),
        remedy,
        reference,
        closed_by_state: None,
    }
}

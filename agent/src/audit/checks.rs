//! The checks: each a function from facts to findings, with the fix and a source.

use serde_json::json;

use super::{Facts, Finding, Severity};

/// Every check, in a fixed order.
pub fn run(facts: &Facts) -> Vec<Finding> {
    let checks: &[fn(&Facts) -> Vec<Finding>] = &[swappiness];
    checks.iter().flat_map(|c| c(facts)).collect()
}

/// A host that swaps container memory eagerly makes every container slow when one leaks; keep
/// memory in RAM and let the leaking container hit its own limit.
fn swappiness(f: &Facts) -> Vec<Finding> {
    match f.sysctl_i64("vm/swappiness") {
        Some(v) if v > 10 && f.hosts_containers() => vec![Finding {
            id: "sysctl.swappiness",
            severity: Severity::Low,
            subject: "sysctl/vm.swappiness".into(),
            title: "vm.swappiness is above 10 on a host running containers".into(),
            evidence: format!("vm.swappiness = {v}"),
            fix: json!({"sysctl": {"values": {"vm.swappiness": 10}}}),
            reference: "Linux Documentation/admin-guide/sysctl/vm.rst (swappiness); Red Hat and Docker host tuning guides recommend 1-10 for container and database hosts",
            closed_by_state: None,
        }],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(swappiness: &str, containers: &[&str]) -> Facts {
        let mut f = Facts::default();
        f.sysctl.insert("vm/swappiness".into(), swappiness.into());
        f.containers = containers.iter().map(|s| s.to_string()).collect();
        f
    }

    #[test]
    fn swappiness_is_a_finding_only_on_container_hosts() {
        assert_eq!(run(&facts("60", &["web1"])).len(), 1);
        assert!(run(&facts("60", &[])).is_empty());
        assert!(run(&facts("10", &["web1"])).is_empty());
    }
}

//! Kernel parameters of a container host, at runtime and as boot will set them.

use std::collections::BTreeMap;

use super::{finding, sysctl_fix, Facts, Finding, Severity};
use crate::state::sysctl::values_equal;

/// A host that swaps container memory eagerly makes every container slow when one leaks; keep
/// memory in RAM and let the leaking container hit its own limit.
pub fn swappiness(f: &Facts) -> Vec<Finding> {
    match f.sysctl_i64("vm/swappiness") {
        Some(v) if v > 10 && f.hosts_containers() => vec![finding(
            "sysctl.swappiness",
            Severity::Low,
            "sysctl/vm.swappiness".into(),
            "vm.swappiness is above 10 on a host running containers",
            format!("vm.swappiness = {v}"),
            Some(sysctl_fix("vm.swappiness", 10)),
            None,
            "Linux Documentation/admin-guide/sysctl/vm.rst (swappiness); Red Hat and Docker host tuning guides recommend 1-10 for container and database hosts",
        )],
        _ => vec![],
    }
}

/// A setting an administrator wrote under /etc that a file read later at boot sets otherwise:
/// the runtime value may be right today and revert at the next reboot. Vendor files (/usr/lib,
/// /lib) being overridden by /etc is the intended mechanism, so only /etc lines are findings.
/// No state document can fix this: hostguard does not edit files it does not own.
pub fn boot_override(f: &Facts) -> Vec<Finding> {
    let mut by_key: BTreeMap<&str, Vec<&crate::audit::facts::BootLine>> = BTreeMap::new();
    for l in &f.boot_sysctl {
        if !l.key.contains('*') {
            by_key.entry(l.key.as_str()).or_default().push(l);
        }
    }
    let mut out = Vec::new();
    for (key, lines) in by_key {
        let winner = lines.last().expect("at least one line");
        let lost: Vec<_> = lines
            .iter()
            .filter(|l| l.file.starts_with("/etc/") && l.file != winner.file && !values_equal(&l.value, &winner.value))
            .collect();
        if lost.is_empty() {
            continue;
        }
        let name = key.replace('/', ".");
        let seen: Vec<String> = lost.iter().map(|l| format!("{}:{} sets {}", l.file, l.line, l.value)).collect();
        out.push(finding(
            "sysctl.boot_override",
            Severity::Medium,
            format!("sysctl/{name}"),
            format!("{name} is set in /etc but a file read later at boot sets it otherwise"),
            format!("{}; but {}:{} sets {} and is read later, so {} is what boot leaves", seen.join("; "), winner.file, winner.line, winner.value, winner.value),
            None,
            Some(format!(
                "decide which value is meant and remove the other line ({}:{} or the lines above); hostguard does not edit \
                 files it does not own, so no state document can fix this",
                winner.file, winner.line
            )),
            "sysctl.d(5) (files are read in lexicographic order, the last setting wins; /etc/sysctl.conf last); systemd-sysctl.service(8)",
        ));
    }
    out
}

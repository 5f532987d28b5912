//! Forwarding between containers and the world: the FORWARD chain of each family, the forwarding
//! sysctls, and bridge netfilter (without it, traffic between two containers on one bridge never
//! reaches iptables at all).

use serde_json::{json, Value};

use super::{finding, sysctl_fix, Facts, Finding, Severity};
use crate::audit::merge;
use crate::audit::firewall::{forward_verdict, same_bridge_rules, Filter, Verdict};

const FAMILIES: [(&str, &str, &str); 2] = [
    ("ipv4", "net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"),
    ("ipv6", "net/ipv6/conf/all/forwarding", "net/bridge/bridge-nf-call-ip6tables"),
];

const FORWARD_REFERENCE: &str = "CIS Distribution Independent Linux Benchmark 3.5 (default deny firewall policy); \
    Docker docs \"Packet filtering and firewalls\" (Docker sets FORWARD to DROP when it enables forwarding); \
    LXC lxc-net (lxcbr0 is NATed, its containers need only outbound and reply traffic)";

/// Bridge netfilter for `family`: `Some(true)` on, `Some(false)` loaded and off, `None` when
/// `br_netfilter` is not loaded (the sysctl does not exist).
fn bridge_nf(f: &Facts, key: &str) -> Option<bool> {
    f.sysctl.get(key).map(|v| v.trim() != "0")
}

fn dotted(key: &str) -> String {
    key.replace('/', ".")
}

/// Bridges with containers on them (no physical port), and LAN bridges (a NIC enslaved).
fn bridges(f: &Facts) -> (Vec<&str>, Vec<&str>) {
    let containers = f.bridges.iter().filter(|b| b.physical_ports.is_empty()).map(|b| b.name.as_str()).collect();
    let lan = f.bridges.iter().filter(|b| !b.physical_ports.is_empty()).map(|b| b.name.as_str()).collect();
    (containers, lan)
}

/// The FORWARD chain a container host wants: policy DROP; per container bridge, same-bridge
/// traffic dropped (first, so it wins), traffic out of it accepted, replies back in accepted;
/// per LAN bridge, bridged traffic accepted (else DROP would cut containers off the LAN once
/// bridge netfilter is on). Rules are ensured (`purge` is left out, so false): Docker's and
/// others stay, and a document that purges the chain keeps purging it when the fix is merged in.
/// When bridge netfilter is loaded but off, it is turned on too, so the same-bridge rule works.
fn forward_fix(f: &Facts, family: &str, nf_key: &str) -> Value {
    let (containers, lan) = bridges(f);
    let nf = bridge_nf(f, nf_key);
    let mut rules = Vec::new();
    for b in &containers {
        if nf.is_some() {
            rules.push(format!("-i {b} -o {b} -j DROP"));
        }
        rules.push(format!("-i {b} ! -o {b} -j ACCEPT"));
        rules.push(format!("-o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"));
    }
    // Without br_netfilter bridged traffic never reaches FORWARD, so it needs no rule.
    for b in lan.iter().filter(|_| nf.is_some()) {
        rules.push(format!("-i {b} -o {b} -j ACCEPT"));
    }
    let mut fix = json!({"iptables": {family: {"filter": {"FORWARD": {"policy": "DROP", "rules": rules}}}}});
    if nf == Some(false) && !containers.is_empty() {
        merge(&mut fix, &sysctl_fix(&dotted(nf_key), 1));
    }
    fix
}

fn forward_subject(family: &str) -> String {
    format!("iptables/{family}/filter/FORWARD")
}

fn accepting(filter: &Filter) -> bool {
    crate::audit::firewall::forward_accepts(filter)
}

/// FORWARD policy ACCEPT on a host with a container bridge: anything that reaches the host can
/// be routed into the containers' network, and they can reach anything.
pub fn forward_accept(f: &Facts) -> Vec<Finding> {
    let (containers, _) = bridges(f);
    if containers.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    for (family, _, nf_key) in FAMILIES {
        let Some(filter) = f.firewall(family) else { continue };
        if !accepting(filter) {
            continue;
        }
        out.push(finding(
            "iptables.forward_accept",
            Severity::High,
            forward_subject(family),
            format!("the {family} FORWARD policy is ACCEPT on a host with a container bridge"),
            format!("FORWARD policy ACCEPT; container bridges: {}", containers.join(", ")),
            Some(forward_fix(f, family, nf_key)),
            Some("the fix allows containers out and replies back in; port forwards (DNAT) to containers need their own ACCEPT rules before you apply it".into()),
            FORWARD_REFERENCE,
        ));
    }
    out
}

/// Forwarding on and FORWARD accepting everything: the host routes for anyone who sends it a
/// packet, between any two of its networks.
pub fn ip_forward_accept(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (family, fwd_key, nf_key) in FAMILIES {
        if f.sysctl_i64(fwd_key) != Some(1) {
            continue;
        }
        let Some(filter) = f.firewall(family) else { continue };
        if !accepting(filter) {
            continue;
        }
        out.push(finding(
            "sysctl.ip_forward_accept",
            Severity::High,
            format!("sysctl/{}", dotted(fwd_key)),
            format!("{} is on and the {family} FORWARD policy is ACCEPT", dotted(fwd_key)),
            format!("{} = 1; FORWARD policy ACCEPT", dotted(fwd_key)),
            Some(forward_fix(f, family, nf_key)),
            Some("the fix sets FORWARD to DROP and accepts container bridge traffic; any other forwarding this host does (VPN, routed networks) needs its own ACCEPT rules before you apply it".into()),
            FORWARD_REFERENCE,
        ));
    }
    out
}

/// Containers on one bridge can reach each other's every port unless FORWARD drops same-bridge
/// traffic, and that only works with bridge netfilter on.
pub fn inter_container(f: &Facts) -> Vec<Finding> {
    let (containers, _) = bridges(f);
    let mut out = Vec::new();
    for (family, _, nf_key) in FAMILIES {
        let Some(filter) = f.firewall(family) else { continue };
        for b in &containers {
            let subject = format!("iptables/{family}/bridge/{b}");
            let reference = "Docker docs (\"icc\": false, Docker's inter-container communication setting); CIS Docker Benchmark 2.1 (restrict network traffic between containers); LXC/Incus security guidance (isolate containers on a shared bridge)";
            let drop_rule = json!({"iptables": {family: {"filter": {"FORWARD": {"rules": [format!("-i {b} -o {b} -j DROP")]}}}}});
            match bridge_nf(f, nf_key) {
                None => out.push(finding(
                    "iptables.inter_container",
                    Severity::Medium,
                    subject,
                    format!("containers on {b} can reach each other ({family}): bridge netfilter is not loaded"),
                    format!("{} does not exist (br_netfilter not loaded), so iptables never sees traffic between two ports of {b}", dotted(nf_key)),
                    None,
                    Some(format!(
                        "load br_netfilter (modprobe br_netfilter; add it to /etc/modules-load.d/), then run the audit again for the \
                         rules and the {} setting it asks for; hostguard does not load kernel modules",
                        dotted(nf_key)
                    )),
                    reference,
                )),
                Some(false) => {
                    let mut fix = drop_rule;
                    merge(&mut fix, &sysctl_fix(&dotted(nf_key), 1));
                    out.push(finding(
                        "iptables.inter_container",
                        Severity::Medium,
                        subject,
                        format!("containers on {b} can reach each other ({family}): bridge netfilter is off"),
                        format!("{} = 0, so iptables never sees traffic between two ports of {b}", dotted(nf_key)),
                        Some(fix),
                        None,
                        reference,
                    ));
                }
                Some(true) => {
                    let Verdict::Accept(by) = forward_verdict(filter, b, b) else { continue };
                    let explicit = !by.starts_with("the FORWARD policy");
                    out.push(finding(
                        "iptables.inter_container",
                        Severity::Medium,
                        subject,
                        format!("containers on {b} can reach each other ({family})"),
                        format!("a new connection from {b} to {b} is accepted by {by}"),
                        Some(drop_rule),
                        explicit.then(|| format!(
                            "remove or narrow `{by}` (on Docker: \"icc\": false in daemon.json); a rule added after it would never be reached"
                        )),
                        reference,
                    ));
                }
            }
        }
    }
    out
}

/// Rules about same-bridge traffic exist, but bridge netfilter is off or not loaded, so they
/// never see a packet: a firewall that looks right and does nothing.
pub fn bridge_netfilter(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (family, _, nf_key) in FAMILIES {
        let Some(filter) = f.firewall(family) else { continue };
        let rules: Vec<String> = f.bridges.iter().flat_map(|b| same_bridge_rules(filter, &b.name)).collect();
        if rules.is_empty() {
            continue;
        }
        let nf = bridge_nf(f, nf_key);
        if nf == Some(true) {
            continue;
        }
        let (seen, fix, remedy) = match nf {
            None => (
                format!("{} does not exist: br_netfilter is not loaded", dotted(nf_key)),
                None,
                Some(format!(
                    "modprobe br_netfilter and list it in /etc/modules-load.d/ so it loads at boot (then {} = 1); hostguard does not load kernel modules",
                    dotted(nf_key)
                )),
            ),
            _ => (format!("{} = 0", dotted(nf_key)), Some(sysctl_fix(&dotted(nf_key), 1)), None),
        };
        out.push(finding(
            "bridge.netfilter_off",
            Severity::High,
            format!("sysctl/{}", dotted(nf_key)),
            format!("{family} rules about same-bridge traffic never see a packet"),
            format!("{seen}; rules that cannot match: {}", rules.join("; ")),
            fix,
            remedy,
            "Linux Documentation/networking/bridge (br_netfilter, bridge-nf-call-iptables); Kubernetes network plugin requirements (net.bridge.bridge-nf-call-iptables = 1)",
        ));
    }
    out
}

//! Forwarding between containers and the world: the FORWARD chain of each family, the forwarding
//! sysctls, and bridge netfilter (without it, traffic between two containers on one bridge never
//! reaches iptables at all).

use serde_json::{json, Value};

use super::{finding, sysctl_fix, Facts, Finding, Severity};
use std::collections::HashSet;

use crate::audit::forward::{Decision, Hook, ANY};
use crate::audit::merge;
use crate::audit::firewall::same_bridge_rules;

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

/// The container bridges IPv6 can cross FORWARD on: routed (IPv6 forwarding on, IPv6 on the
/// bridge) or bridged (bridge netfilter hands ip6tables the frames), and in both cases only when
/// an interface behind the bridge has IPv6 on. For IPv4, every container bridge.
fn family_bridges<'a>(f: &'a Facts, family: &str, nf_key: &str) -> Vec<&'a str> {
    let (containers, _) = bridges(f);
    if family == "ipv4" {
        return containers;
    }
    let routed = f.sysctl_i64("net/ipv6/conf/all/forwarding") == Some(1);
    let bridged = bridge_nf(f, nf_key) == Some(true);
    f.bridges
        .iter()
        .filter(|b| containers.contains(&b.name.as_str()))
        .filter(|b| b.ipv6.ports_may() && ((routed && !b.ipv6.disabled) || bridged))
        .map(|b| b.name.as_str())
        .collect()
}

/// Which of its firewall backends Docker runs in this family, and the bridges it manages there.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Docker {
    /// Its chains are in iptables' filter table (`DOCKER-USER` exists): moby's default bridge
    /// names and those its rules name, as `foreign: ["docker"]` knows them.
    Iptables(HashSet<String>),
    /// `"firewall-backend": "nftables"` in daemon.json, or its `docker-bridges` table exists
    /// (Docker 29): the bridges its tables name. There is no `DOCKER-USER`: Docker's docs send
    /// the operator's rules to a table of their own.
    Nftables(HashSet<String>),
}

impl Docker {
    fn bridges(&self) -> &HashSet<String> {
        match self {
            Docker::Iptables(b) | Docker::Nftables(b) => b,
        }
    }
}

/// The table of hostguard's own that nftables fixes go into, per family.
const NFT_TABLE: &str = "hostguard";
const NFT_CHAIN: &str = "forward";

fn docker(f: &Facts, hook: &Hook) -> Option<Docker> {
    let d = f.docker.as_ref()?;
    let table = f.nftables.iter().any(|t| t.family == nft_family(hook.family) && t.name == "docker-bridges");
    if d["firewall-backend"] == "nftables" || table {
        let mut names: HashSet<String> = ["docker0", "docker_gwbridge"].iter().map(|s| s.to_string()).collect();
        names.extend(hook.nft_names_in(&f.nftables, "docker-bridges"));
        return Some(Docker::Nftables(names));
    }
    let filter = hook.iptables();
    filter.chain("DOCKER-USER")?;
    Some(Docker::Iptables(crate::iptables::neighbours::docker_bridges(filter.chains.iter().map(|c| (c.name.as_str(), c.rules.as_slice())))))
}

/// The host's forwarding firewall is nftables: native base chains at the forward hook, or Docker
/// in its nftables mode. Its fixes are then a table of hostguard's own; otherwise FORWARD.
fn nft_host(hook: &Hook, docker: &Option<Docker>) -> bool {
    hook.has_nft() || matches!(docker, Some(Docker::Nftables(_)))
}

/// The nftables family of the audit's `ipv4`/`ipv6`.
fn nft_family(family: &str) -> &'static str {
    if family == "ipv4" { "ip" } else { "ip6" }
}

/// `ip hostguard` / `ip6 hostguard`: the table key of the nftables fix for `family`.
fn nft_table_key(family: &str) -> String {
    format!("{} {NFT_TABLE}", nft_family(family))
}

/// An nftables fragment: the forward chain of hostguard's own table, with `policy` when given.
/// When the host already holds that table (not from this document), the fragment carries it as
/// it stands, so applying the fix (which owns the table whole) keeps what it had; a table the
/// document cannot hold gives no fragment.
fn nft_fix(f: &Facts, family: &str, policy: Option<&str>, rules: Vec<String>) -> Option<Value> {
    let key = nft_table_key(family);
    let mut chain = json!({"type": "filter", "hook": "forward", "priority": 0, "rules": rules});
    if let Some(p) = policy {
        chain["policy"] = p.into();
    }
    let mut table = match f.nftables.iter().find(|t| format!("{} {}", t.family, t.name) == key) {
        Some(t) => crate::nftables::show::as_document(t).ok()?,
        None => json!({}),
    };
    merge(&mut table, &json!({"chains": {NFT_CHAIN: chain}}));
    Some(json!({"nftables": {"tables": {key: table}}}))
}

/// The forward hook a container host wants: drop what no rule accepts; per container bridge,
/// same-bridge traffic dropped (first, so it wins), traffic out of it accepted, replies back in
/// accepted; per LAN bridge, bridged traffic accepted (else the drop would cut containers off the
/// LAN once bridge netfilter is on). When bridge netfilter is loaded but off, it is turned on
/// too, so the same-bridge rule works.
///
/// With iptables: FORWARD's policy DROP and those rules, ensured (`purge` is left out, so false):
/// Docker's and others stay, and a document that purges the chain keeps purging it when the fix
/// is merged in. On a Docker host (its `DOCKER-USER` exists) the fix respects Docker's order:
/// FORWARD gets only the policy (Docker's own rules already let its containers out, replies and
/// published ports in, and keep its networks apart), Docker's bridges get no rule (a same-bridge
/// DROP would fight Docker's `icc` ACCEPT), and the rules for other bridges go into
/// `DOCKER-USER`, before Docker's final RETURN, where Docker evaluates the operator's rules
/// (Docker docs, "Packet filtering and firewalls": "add rules to DOCKER-USER").
///
/// With nftables (see `nft_host`): the same rules in the forward chain of hostguard's own table
/// (`ip hostguard`, `ip6 hostguard`), policy drop. Every base chain at the hook must accept a
/// packet, so this chain works beside the others whatever they accept, and does not touch them.
/// Docker's bridges in its nftables mode get `iifname BR accept` and `oifname BR accept`: this
/// chain lets their traffic on to Docker's own table, which keeps deciding it (its published
/// ports, its ICC setting, its drops); Docker's docs send the operator's rules to a table of
/// their own, since Docker's tables are rewritten by Docker.
fn forward_fix(f: &Facts, hook: &Hook, family: &str, nf_key: &str) -> Option<Value> {
    let (_, lan) = bridges(f);
    let docker = docker(f, hook);
    let theirs = |b: &str| docker.as_ref().is_some_and(|d| d.bridges().contains(b));
    let containers: Vec<&str> = family_bridges(f, family, nf_key).into_iter().filter(|b| !theirs(b)).collect();
    let nf = bridge_nf(f, nf_key);
    let nft = nft_host(hook, &docker);
    let mut rules = Vec::new();
    if let Some(Docker::Nftables(_)) = &docker {
        for b in family_bridges(f, family, nf_key).into_iter().filter(|b| theirs(b)) {
            rules.push(format!("iifname \"{b}\" accept"));
            rules.push(format!("oifname \"{b}\" accept"));
        }
    }
    for b in &containers {
        if nf.is_some() {
            rules.push(if nft { format!("iifname \"{b}\" oifname \"{b}\" drop") } else { format!("-i {b} -o {b} -j DROP") });
        }
        rules.push(if nft { format!("iifname \"{b}\" oifname != \"{b}\" accept") } else { format!("-i {b} ! -o {b} -j ACCEPT") });
        rules.push(if nft {
            format!("oifname \"{b}\" ct state established,related accept")
        } else {
            format!("-o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        });
    }
    // Without br_netfilter bridged traffic never reaches the forward hook, so it needs no rule.
    for b in lan.iter().filter(|_| nf.is_some()) {
        rules.push(if nft { format!("iifname \"{b}\" oifname \"{b}\" accept") } else { format!("-i {b} -o {b} -j ACCEPT") });
    }
    let mut fix = match (&docker, nft, rules.is_empty()) {
        (_, true, _) => nft_fix(f, family, Some("drop"), rules)?,
        (None, false, _) => json!({"iptables": {family: {"filter": {"FORWARD": {"policy": "DROP", "rules": rules}}}}}),
        (Some(_), false, true) => json!({"iptables": {family: {"filter": {"FORWARD": {"policy": "DROP"}}}}}),
        (Some(_), false, false) => json!({"iptables": {family: {"filter": {
            "FORWARD": {"policy": "DROP"},
            "DOCKER-USER": {"foreign": ["docker"], "rules": rules}}}}}),
    };
    if nf == Some(false) && !containers.is_empty() {
        merge(&mut fix, &sysctl_fix(&dotted(nf_key), 1));
    }
    Some(fix)
}

/// How to stop containers on a Docker bridge reaching each other: Docker's own setting, since a
/// rule of ours would fight Docker's ACCEPT (moby libnetwork/drivers/bridge: `icc` for the
/// default bridge, the `com.docker.network.bridge.enable_icc` option per user-defined network;
/// both firewall backends honour them).
fn docker_icc_remedy(bridge: &str) -> String {
    if bridge == "docker0" {
        "Docker decides this: set \"icc\": false in /etc/docker/daemon.json and restart dockerd (Docker then drops \
         same-bridge traffic on docker0 itself; linked or published ports still work); hostguard does not manage Docker's config"
            .to_string()
    } else {
        format!(
            "Docker decides this: {bridge} is a user-defined Docker network, whose setting is the network option \
             com.docker.network.bridge.enable_icc (\"icc\" in daemon.json covers docker0 only); it is fixed when the network \
             is created, so create it again with `docker network create -o com.docker.network.bridge.enable_icc=false ...` \
             and reconnect its containers; hostguard does not manage Docker's networks"
        )
    }
}

fn forward_subject(family: &str) -> String {
    format!("iptables/{family}/filter/FORWARD")
}

/// What the forward hook does with a new connection between two interfaces no rule names, when
/// that is not a certain drop: `(what accepts it, or what the model cannot read)`.
fn accepts_by_default(hook: &Hook) -> Option<String> {
    match hook.verdict(ANY, ANY) {
        Decision::Drop(_) => None,
        Decision::Accept { by, .. } => Some(format!("accepted by {by}")),
        Decision::Unknown(by) => Some(format!("not shown dropped: hostguard's model cannot read {by}, and counts it as not dropping")),
    }
}

/// The remedy beside the forward fix: what the fix keeps working, and what it does not.
fn forward_remedy(f: &Facts, hook: &Hook) -> String {
    let docker = docker(f, hook);
    match (&docker, nft_host(hook, &docker)) {
        (Some(Docker::Nftables(_)), _) => format!(
            "on this Docker host (nftables firewall backend) the fix is a table of hostguard's own, {}, whose forward chain drops \
             what it does not accept and passes Docker's bridges on to Docker's own table (docker-bridges), which keeps deciding \
             their traffic (outbound, published ports, same-network traffic where Docker allows it)",
            nft_table_key(hook.family)
        ),
        (_, true) => format!(
            "the fix is a table of hostguard's own, {}, whose forward chain drops what it does not accept (every other base chain \
             at the hook keeps its say); it allows containers out and replies back in; port forwards (DNAT) to containers need \
             their own accept rules there before you apply it",
            nft_table_key(hook.family)
        ),
        (Some(Docker::Iptables(_)), false) => "on this Docker host the fix sets the policy only and puts any rule it needs into DOCKER-USER, so Docker's own rules keep \
             its networking (outbound, published ports, same-network traffic where Docker allows it) working".into(),
        (None, false) => "the fix allows containers out and replies back in; port forwards (DNAT) to containers need their own ACCEPT rules before you apply it".into(),
    }
}

/// The forward hook accepts by default on a host with a container bridge: anything that reaches
/// the host can be routed into the containers' network, and they can reach anything.
pub fn forward_accept(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (family, _, nf_key) in FAMILIES {
        let Some(hook) = f.forward(family) else { continue };
        let Some(seen) = accepts_by_default(&hook) else { continue };
        // IPv6 only where it can flow: judged per bridge and per container interface.
        let containers = family_bridges(f, family, nf_key);
        if containers.is_empty() {
            continue;
        }
        out.push(finding(
            "iptables.forward_accept",
            Severity::High,
            forward_subject(family),
            format!("{family} forwarding accepts by default on a host with a container bridge"),
            format!("a new connection between two interfaces no rule names is {seen}; container bridges: {}", containers.join(", ")),
            forward_fix(f, &hook, family, nf_key),
            Some(forward_remedy(f, &hook)),
            FORWARD_REFERENCE,
        ));
    }
    out
}

/// Forwarding on and the forward hook accepting everything: the host routes for anyone who sends
/// it a packet, between any two of its networks.
pub fn ip_forward_accept(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (family, fwd_key, nf_key) in FAMILIES {
        if f.sysctl_i64(fwd_key) != Some(1) {
            continue;
        }
        let Some(hook) = f.forward(family) else { continue };
        let Some(seen) = accepts_by_default(&hook) else { continue };
        out.push(finding(
            "sysctl.ip_forward_accept",
            Severity::High,
            format!("sysctl/{}", dotted(fwd_key)),
            format!("{} is on and {family} forwarding accepts by default", dotted(fwd_key)),
            format!("{} = 1; a new connection between two interfaces no rule names is {seen}", dotted(fwd_key)),
            forward_fix(f, &hook, family, nf_key),
            Some(format!(
                "{}; any other forwarding this host does (VPN, routed networks) needs its own accept rules before you apply it",
                if nft_host(&hook, &docker(f, &hook)) {
                    format!("the fix drops what the forward chain of {} does not accept, and accepts container bridge traffic", nft_table_key(family))
                } else {
                    "the fix sets FORWARD to DROP and accepts container bridge traffic".to_string()
                }
            )),
            FORWARD_REFERENCE,
        ));
    }
    out
}

/// Containers on one bridge can reach each other's every port unless some base chain at the
/// forward hook drops same-bridge traffic, and that only works with bridge netfilter on.
pub fn inter_container(f: &Facts) -> Vec<Finding> {
    let (containers, _) = bridges(f);
    let mut out = Vec::new();
    for (family, _, nf_key) in FAMILIES {
        let Some(hook) = f.forward(family) else { continue };
        let docker = docker(f, &hook);
        let nft = nft_host(&hook, &docker);
        for b in &containers {
            // Same-bridge IPv6 needs IPv6 on the containers' interfaces, whatever the host routes.
            if family == "ipv6" && f.bridges.iter().any(|x| x.name == *b && !x.ipv6.ports_may()) {
                continue;
            }
            if docker.as_ref().is_some_and(|d| d.bridges().contains(*b)) {
                if let Some(found) = docker_inter_container(f, &hook, family, nf_key, b) {
                    out.push(found);
                }
                continue;
            }
            let subject = format!("iptables/{family}/bridge/{b}");
            let reference = "Docker docs (\"icc\": false, Docker's inter-container communication setting); CIS Docker Benchmark 2.1 (restrict network traffic between containers); LXC/Incus security guidance (isolate containers on a shared bridge)";
            // On a Docker host the operator's rules go where Docker evaluates them: DOCKER-USER
            // with iptables, a table of the operator's own with nftables.
            let drop_rule = match (&docker, nft) {
                (_, true) => nft_fix(f, family, None, vec![format!("iifname \"{b}\" oifname \"{b}\" drop")]),
                (None, false) => Some(json!({"iptables": {family: {"filter": {"FORWARD": {"rules": [format!("-i {b} -o {b} -j DROP")]}}}}})),
                (Some(_), false) => Some(json!({"iptables": {family: {"filter": {"DOCKER-USER": {"foreign": ["docker"], "rules": [format!("-i {b} -o {b} -j DROP")]}}}}})),
            };
            let layer = if nft { "the forward hook" } else { "iptables" };
            match bridge_nf(f, nf_key) {
                None => out.push(finding(
                    "iptables.inter_container",
                    Severity::Medium,
                    subject,
                    format!("containers on {b} can reach each other ({family}): bridge netfilter is not loaded"),
                    format!("{} does not exist (br_netfilter not loaded), so {layer} never sees traffic between two ports of {b}", dotted(nf_key)),
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
                    if let Some(fix) = &mut fix {
                        merge(fix, &sysctl_fix(&dotted(nf_key), 1));
                    }
                    out.push(finding(
                        "iptables.inter_container",
                        Severity::Medium,
                        subject,
                        format!("containers on {b} can reach each other ({family}): bridge netfilter is off"),
                        format!("{} = 0, so {layer} never sees traffic between two ports of {b}", dotted(nf_key)),
                        fix,
                        None,
                        reference,
                    ));
                }
                Some(true) => {
                    let (seen, remedy) = match hook.verdict(b, b) {
                        Decision::Drop(_) => continue,
                        Decision::Accept { by, rule } => {
                            let remedy = rule.map(|r| if nft {
                                format!("{r} accepts it; the fix's drop, in a base chain of its own, drops it whatever that rule says (a drop in any base chain at the hook wins)")
                            } else {
                                format!("remove or narrow `{r}` (on Docker: \"icc\": false in daemon.json); a rule added after it would never be reached")
                            });
                            (format!("a new connection from {b} to {b} is accepted by {by}"), remedy)
                        }
                        Decision::Unknown(by) => (
                            format!("no base chain at the forward hook certainly drops a new connection from {b} to {b}: hostguard's model cannot read {by}, and counts it as not dropping"),
                            Some(format!("judge {by} by hand; the fix's drop, in a base chain of its own, drops the traffic whatever that rule does")),
                        ),
                    };
                    out.push(finding(
                        "iptables.inter_container",
                        Severity::Medium,
                        subject,
                        format!("containers on {b} can reach each other ({family})"),
                        seen,
                        drop_rule,
                        remedy,
                        reference,
                    ));
                }
            }
        }
    }
    out
}

/// Containers on one of Docker's bridges reach each other: what Docker's `icc` allows. Reported
/// with Docker's setting as the remedy and no fix (a DROP of ours would fight Docker's ACCEPT).
fn docker_inter_container(f: &Facts, hook: &Hook, family: &str, nf_key: &str, b: &str) -> Option<Finding> {
    let seen = match bridge_nf(f, nf_key) {
        None => format!("{} does not exist (br_netfilter not loaded): the forward hook never sees traffic between two ports of {b}", dotted(nf_key)),
        Some(false) => format!("{} = 0: the forward hook never sees traffic between two ports of {b}", dotted(nf_key)),
        Some(true) => match hook.verdict(b, b) {
            Decision::Accept { by, .. } => format!("a new connection from {b} to {b} is accepted by {by}"),
            Decision::Unknown(by) => format!("a new connection from {b} to {b} is not shown dropped: hostguard's model cannot read {by}"),
            Decision::Drop(_) => return None,
        },
    };
    Some(finding(
        "iptables.inter_container",
        Severity::Medium,
        format!("iptables/{family}/bridge/{b}"),
        format!("containers on Docker's {b} can reach each other ({family})"),
        seen,
        None,
        Some(docker_icc_remedy(b)),
        "Docker docs (\"icc\" for the default bridge; the com.docker.network.bridge.enable_icc network option); CIS Docker Benchmark 2.1 (restrict network traffic between containers)",
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::facts::{Bridge, BridgeIpv6};
    use crate::audit::firewall::{Filter, Firewall};

    /// Docker 20.10's filter table with docker0 and one user network, as `iptables-save` printed
    /// it in tests/system/docker-neighbour (FORWARD ACCEPT: forwarding was on before dockerd).
    const DOCKER_2010: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        :DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n:DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n\
        -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
        -A FORWARD -o br-a596dd4556e1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -o br-a596dd4556e1 -j DOCKER\n\
        -A FORWARD -i br-a596dd4556e1 ! -o br-a596dd4556e1 -j ACCEPT\n-A FORWARD -i br-a596dd4556e1 -o br-a596dd4556e1 -j ACCEPT\n\
        -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -o docker0 -j DOCKER\n\
        -A FORWARD -i docker0 ! -o docker0 -j ACCEPT\n-A FORWARD -i docker0 -o docker0 -j ACCEPT\n\
        -A DOCKER-ISOLATION-STAGE-1 -i br-a596dd4556e1 ! -o br-a596dd4556e1 -j DOCKER-ISOLATION-STAGE-2\n\
        -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n\
        -A DOCKER-ISOLATION-STAGE-2 -o br-a596dd4556e1 -j DROP\n-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\n\
        -A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
    const EMPTY: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    fn filter(text: &str) -> Filter {
        crate::iptables::save::parse(text).unwrap().remove(0)
    }

    fn bridge(name: &str, v6_ports: &[Option<bool>]) -> Bridge {
        let ports = v6_ports.iter().enumerate().map(|(i, v)| (format!("veth{name}{i}"), *v)).collect();
        Bridge { name: name.into(), physical_ports: vec![], ipv6: BridgeIpv6 { disabled: false, routable_address: false, ports } }
    }

    fn docker_host(v6_ports: Option<bool>, v6_forwarding: bool) -> Facts {
        let mut f = Facts { docker: Some(json!({})), ..Facts::default() };
        f.sysctl.insert("net/ipv4/ip_forward".into(), "1".into());
        f.sysctl.insert("net/ipv6/conf/all/forwarding".into(), if v6_forwarding { "1" } else { "0" }.into());
        f.sysctl.insert("net/bridge/bridge-nf-call-iptables".into(), "1".into());
        f.sysctl.insert("net/bridge/bridge-nf-call-ip6tables".into(), "1".into());
        f.bridges = vec![bridge("docker0", &[v6_ports]), bridge("br-a596dd4556e1", &[v6_ports, v6_ports])];
        f.firewalls = vec![
            Firewall { family: "ipv4", filter: Ok(filter(DOCKER_2010)) },
            Firewall { family: "ipv6", filter: Ok(filter(EMPTY)) },
        ];
        f
    }

    fn fix_of(f: &Facts, family: &'static str) -> Value {
        forward_fix(f, &f.forward(family).unwrap(), family, "net/bridge/bridge-nf-call-iptables").unwrap()
    }

    fn ids(found: &[Finding]) -> Vec<String> {
        found.iter().map(|f| format!("{} {}", f.id, f.subject)).collect()
    }

    /// Regression (issue 13): containers with IPv6 off, no IPv6 forwarding, an empty ip6tables:
    /// the audit reported HIGH forward_accept and inter_container for IPv6 on every bridge.
    #[test]
    fn no_ipv6_finding_where_the_containers_have_ipv6_off() {
        let f = docker_host(Some(false), false);
        let all = ids(&crate::audit::checks::run(&f));
        assert!(!all.iter().any(|i| i.contains("ipv6")), "{all:?}");
        assert!(all.contains(&"iptables.forward_accept iptables/ipv4/filter/FORWARD".to_string()), "{all:?}");
        // IPv6 on behind the bridge (or not known): IPv6 can cross FORWARD, the findings stay.
        for v6 in [Some(true), None] {
            let all = ids(&crate::audit::checks::run(&docker_host(v6, false)));
            assert!(all.contains(&"iptables.forward_accept iptables/ipv6/filter/FORWARD".to_string()), "{v6:?}: {all:?}");
            assert!(all.contains(&"iptables.inter_container iptables/ipv6/bridge/docker0".to_string()), "{v6:?}: {all:?}");
        }
    }

    /// A bridge whose own IPv6 is off and no bridge netfilter: routed IPv6 cannot reach it even
    /// with forwarding on.
    #[test]
    fn routed_ipv6_needs_ipv6_on_the_bridge() {
        let mut f = docker_host(Some(true), true);
        f.sysctl.insert("net/bridge/bridge-nf-call-ip6tables".into(), "0".into());
        for b in &mut f.bridges {
            b.ipv6.disabled = true;
        }
        assert!(family_bridges(&f, "ipv6", "net/bridge/bridge-nf-call-ip6tables").is_empty());
        for b in &mut f.bridges {
            b.ipv6.disabled = false;
        }
        assert_eq!(family_bridges(&f, "ipv6", "net/bridge/bridge-nf-call-ip6tables").len(), 2);
    }

    /// Regression (issue 13): on a Docker host the emitted FORWARD fix moved Docker's rules and put
    /// a same-bridge DROP before Docker's ICC ACCEPT. Now: the policy only, and other bridges'
    /// rules in DOCKER-USER.
    #[test]
    fn on_a_docker_host_the_forward_fix_is_the_policy_and_docker_user() {
        let mut f = docker_host(Some(false), false);
        assert_eq!(fix_of(&f, "ipv4"), json!({"iptables": {"ipv4": {"filter": {"FORWARD": {"policy": "DROP"}}}}}));
        f.bridges.push(bridge("lxcbr0", &[Some(false)]));
        let fix = fix_of(&f, "ipv4");
        let chains = &fix["iptables"]["ipv4"]["filter"];
        assert_eq!(chains["FORWARD"], json!({"policy": "DROP"}));
        assert_eq!(chains["DOCKER-USER"]["foreign"], json!(["docker"]));
        let rules: Vec<&str> = chains["DOCKER-USER"]["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert!(rules.iter().all(|r| r.contains("lxcbr0")), "{rules:?}");
        // Without Docker's chains (Docker installed, not running), the usual FORWARD fix.
        f.firewalls[0] = Firewall { family: "ipv4", filter: Ok(filter(EMPTY)) };
        let fix = fix_of(&f, "ipv4");
        assert!(fix["iptables"]["ipv4"]["filter"]["FORWARD"]["rules"].as_array().unwrap().iter().any(|r| r == "-i docker0 -o docker0 -j DROP"));
    }

    /// Regression (issue 13): the remedy for a user-defined Docker network said `"icc": false`,
    /// which covers docker0 only.
    #[test]
    fn icc_on_a_user_defined_network_names_enable_icc() {
        let f = docker_host(Some(false), false);
        let found = inter_container(&f);
        let user = found.iter().find(|x| x.subject == "iptables/ipv4/bridge/br-a596dd4556e1").expect("a finding for the user network");
        assert!(user.fix.is_null());
        assert!(user.remedy.as_deref().unwrap().contains("com.docker.network.bridge.enable_icc"), "{:?}", user.remedy);
        let default = found.iter().find(|x| x.subject == "iptables/ipv4/bridge/docker0").unwrap();
        assert!(default.remedy.as_deref().unwrap().contains("\"icc\": false"), "{:?}", default.remedy);
    }

    /// Docker 29's filter table (moby's iptablesdoc, docker-v29.1.3 usernet-portmap.md; no
    /// RETURN in DOCKER-USER, no ISOLATION chains): the same verdicts.
    #[test]
    fn docker_29s_layout_is_judged_the_same() {
        let docker29 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n\
            :DOCKER-BRIDGE - [0:0]\n:DOCKER-CT - [0:0]\n:DOCKER-FORWARD - [0:0]\n:DOCKER-INTERNAL - [0:0]\n:DOCKER-USER - [0:0]\n\
            -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n\
            -A DOCKER -d 192.0.2.2/32 ! -i bridge1 -o bridge1 -p tcp -m tcp --dport 80 -j ACCEPT\n\
            -A DOCKER ! -i docker0 -o docker0 -j DROP\n-A DOCKER ! -i bridge1 -o bridge1 -j DROP\n\
            -A DOCKER-BRIDGE -o docker0 -j DOCKER\n-A DOCKER-BRIDGE -o bridge1 -j DOCKER\n\
            -A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
            -A DOCKER-CT -o bridge1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
            -A DOCKER-FORWARD -j DOCKER-CT\n-A DOCKER-FORWARD -j DOCKER-INTERNAL\n-A DOCKER-FORWARD -j DOCKER-BRIDGE\n\
            -A DOCKER-FORWARD -i docker0 -j ACCEPT\n-A DOCKER-FORWARD -i bridge1 -j ACCEPT\nCOMMIT\n";
        let mut f = docker_host(Some(false), false);
        f.bridges = vec![bridge("docker0", &[Some(false)]), bridge("bridge1", &[Some(false)])];
        f.firewalls[0] = Firewall { family: "ipv4", filter: Ok(filter(docker29)) };
        assert_eq!(fix_of(&f, "ipv4"), json!({"iptables": {"ipv4": {"filter": {"FORWARD": {"policy": "DROP"}}}}}));
        let found = inter_container(&f);
        let user = found.iter().find(|x| x.subject == "iptables/ipv4/bridge/bridge1").expect("bridge1 (named by Docker's rules) is Docker's");
        assert!(user.fix.is_null() && user.remedy.as_deref().unwrap().contains("enable_icc"), "{user:?}");
        assert!(!ids(&crate::audit::checks::run(&f)).iter().any(|i| i.contains("ipv6")));
    }

    /// On an nftables host the fix is hostguard's own table; one the host already holds is carried
    /// whole (the document owns the table, so anything left out would be deleted), and a rule the
    /// model cannot read is a finding that names it, closed by the fix's own drop.
    #[test]
    fn on_an_nft_host_the_fix_keeps_an_existing_owned_table_and_unknown_rules_are_named() {
        let mut f = docker_host(Some(false), false);
        f.docker = None;
        f.bridges = vec![bridge("lxcbr0", &[Some(false)])];
        f.firewalls[0] = Firewall { family: "ipv4", filter: Ok(filter(EMPTY)) };
        f.nftables = crate::nftables::listing::parse(
            "table ip hostguard {\nchain keep {\ntcp dport 22 accept\n}\n}\n\
             table inet n {\nchain fw {\ntype filter hook forward priority 10; policy accept;\nmeta foo bar\nfrobnicate accept\n}\n}\n",
        )
        .unwrap()
        .tables;
        let fix = fix_of(&f, "ipv4");
        let t = &fix["nftables"]["tables"]["ip hostguard"]["chains"];
        assert_eq!(t["keep"]["rules"], json!(["tcp dport 22 accept"]), "{fix}");
        assert_eq!(t["forward"]["policy"], "drop", "{fix}");
        let found = inter_container(&f);
        let icc = found.iter().find(|x| x.subject == "iptables/ipv4/bridge/lxcbr0").expect("not shown dropped is a finding");
        assert!(icc.evidence.contains("`frobnicate accept`"), "{}", icc.evidence);
        let after = f.overlay(&crate::host::Host::new(std::path::Path::new("/nonexistent")), &crate::state::load(
            serde_json::json!({"version": 1, "nftables": icc.fix["nftables"]}).to_string().as_bytes(), "t").unwrap());
        assert!(!inter_container(&after).iter().any(|x| x.subject == icc.subject), "the fix's drop closes it");
    }
}

//! Named neighbours (`"foreign": ["docker", ...]`, SPEC section 3): programs that write their
//! own rules into netfilter beside hostguard. hostguard knows the chains and rules each writes
//! and never removes, moves or reports them as drift.
//!
//! The layouts come from each program's source; the places are named per neighbour below. What
//! decides is the rule as `iptables-save` prints it (`Rule::args`), with the chain and table it
//! is in; a rule the document lists is always the document's, whatever a neighbour writes.

use std::collections::HashSet;

use super::save::Rule;

pub use crate::state::iptables::Neighbour;

/// What each neighbour writes (the document side, its names, is in `state::iptables`).
impl Neighbour {
    /// Chains the neighbour creates and fills itself: every rule in them is its own, and a rule
    /// elsewhere that jumps to one of them is its own too.
    pub fn owns_chain(self, chain: &str) -> bool {
        match self {
            // moby: libnetwork/drivers/bridge/setup_ip_tables_linux.go and
            // libnetwork/iptables/iptables.go (DOCKER, DOCKER-ISOLATION-STAGE-1/2, 17.06–28),
            // integration/network/bridge/iptablesdoc/generated/new-daemon.md (28 and later:
            // DOCKER-FORWARD, DOCKER-CT, DOCKER-BRIDGE, DOCKER-INTERNAL), swarm's
            // DOCKER-INGRESS. DOCKER-USER is created by Docker but filled by the operator
            // (libnetwork/firewall_linux.go): it is not Docker's, except its RETURN rule.
            Neighbour::Docker => chain.starts_with("DOCKER") && chain != "DOCKER-USER",
            // libvirt: src/network/network_iptables.c, iptablesPrivateChainCreate (5.1 and
            // later): LIBVIRT_INP, LIBVIRT_OUT, LIBVIRT_FWI, LIBVIRT_FWO, LIBVIRT_FWX (filter),
            // LIBVIRT_PRT (nat, mangle).
            Neighbour::Libvirt => chain.starts_with("LIBVIRT_"),
            // fail2ban: config/action.d/iptables.conf (0.10 and later) `-N f2b-<name>`;
            // 0.9's iptables-common.conf used `fail2ban-<name>`.
            Neighbour::Fail2ban => chain.starts_with("f2b-") || chain.starts_with("fail2ban-"),
            // ufw: src/backend_iptables.py and conf/before.rules: ufw-* (IPv4), ufw6-* (IPv6).
            Neighbour::Ufw => chain.starts_with("ufw-") || chain.starts_with("ufw6-"),
            // kubernetes: pkg/proxy/iptables/proxier.go (KUBE-SERVICES, KUBE-NODEPORTS,
            // KUBE-POSTROUTING, KUBE-FORWARD, KUBE-SVC-*, KUBE-SEP-*, ...) and the kubelet's
            // KUBE-FIREWALL, KUBE-KUBELET-CANARY.
            Neighbour::KubeProxy => chain.starts_with("KUBE-"),
            // firewalld: src/firewall/core/ipXtables.py (the iptables backend): INPUT_direct,
            // INPUT_ZONES, FORWARD_IN_ZONES, FORWARD_OUT_ZONES, POSTROUTING_ZONES, zone chains
            // IN_<zone>, FWDI_<zone>, FWDO_<zone>, PRE_<zone>, POST_<zone> and their _allow,
            // _deny, _log, _pre, _post parts.
            Neighbour::Firewalld => {
                chain.ends_with("_direct")
                    || chain.contains("_ZONES")
                    || ["IN_", "FWDI_", "FWDO_", "FWD_", "PRE_", "POST_"].iter().any(|p| chain.starts_with(p))
            }
        }
    }

    /// Whether `rule`, in `chain`, is this neighbour's. `bridges` are the interfaces Docker
    /// manages in this table (see `docker_bridges`).
    pub fn owns_rule(self, chain: &str, rule: &Rule, bridges: &HashSet<String>) -> bool {
        // Docker's jump to DOCKER-USER is Docker's (firewall_linux.go, EnsureJumpRule), though
        // the chain's content is the operator's.
        let docker_user = self == Neighbour::Docker && jump(rule) == Some("DOCKER-USER") && chain != "DOCKER-USER";
        if docker_user || self.owns_chain(chain) || jump(rule).is_some_and(|t| self.owns_chain(t)) {
            return true;
        }
        let a = &rule.args;
        match self {
            Neighbour::Docker => {
                // DOCKER-USER's own rule (17.06 to 27): `-A DOCKER-USER -j RETURN`.
                (chain == "DOCKER-USER" && a.as_slice() == ["-j", "RETURN"])
                    // 20.10–27 write four rules per bridge directly in FORWARD
                    // (setup_ip_tables_linux.go, setupIPTablesInternal and setIcc); raw and nat
                    // rules name the bridge too (28's direct-routing DROP in raw PREROUTING,
                    // `-s SUBNET ! -o BRIDGE -j MASQUERADE`).
                    // Only there: an operator's DOCKER-USER rule naming docker0 stays the operator's.
                    || (matches!(chain, "FORWARD" | "POSTROUTING" | "PREROUTING")
                        && [opt(a, "-i"), opt(a, "-o")].into_iter().flatten().any(|(_, i)| bridges.contains(i)))
                    // 27's ipset form: `-m set --match-set docker-ext-bridges-v4 dst ...`.
                    || opt(a, "--match-set").is_some_and(|(_, s)| s.starts_with("docker-"))
                    // Hairpin NAT of a published port: `-s C/32 -d C/32 -p tcp -m tcp --dport P
                    // -j MASQUERADE` (nat POSTROUTING, one per port).
                    || (target(a) == Some("MASQUERADE") && opt(a, "-s").is_some() && opt(a, "-s") == opt(a, "-d"))
            }
            Neighbour::Libvirt => {
                // Before 5.1 libvirt wrote into the built-in chains: rules naming its bridges
                // (virbrN) and, in nat POSTROUTING, `-s NET -d 224.0.0.0/24 -j RETURN`,
                // `-s NET -d 255.255.255.255/32 -j RETURN`, `-s NET ! -d NET ... -j MASQUERADE`.
                [opt(a, "-i"), opt(a, "-o")].into_iter().flatten().any(|(_, i)| is_virbr(i))
                    || (target(a) == Some("RETURN")
                        && opt(a, "-s").is_some()
                        && matches!(opt(a, "-d"), Some((false, "224.0.0.0/24" | "255.255.255.255/32"))))
                    || (target(a) == Some("MASQUERADE")
                        && matches!((opt(a, "-s"), opt(a, "-d")), (Some((false, s)), Some((true, d))) if s == d))
            }
            // fail2ban's own rules are its jumps (`-p tcp -m multiport --dports 22 -j f2b-sshd`)
            // and the rules in its chains: both covered above.
            Neighbour::Fail2ban | Neighbour::Ufw | Neighbour::KubeProxy => false,
            Neighbour::Firewalld => {
                // ipXtables.py's built-in chain rules: `-m conntrack --ctstate
                // RELATED,ESTABLISHED,DNAT -j ACCEPT` and the final reject.
                opt(a, "--ctstate").is_some_and(|(_, s)| s.split(',').any(|x| x == "DNAT"))
                    || (target(a) == Some("REJECT")
                        && opt(a, "--reject-with").is_some_and(|(_, w)| matches!(w, "icmp-host-prohibited" | "icmp6-adm-prohibited")))
            }
        }
    }

    /// Rules the neighbour keeps last in a chain: hostguard puts its own before them, or they
    /// would never be evaluated. Docker appends `-j RETURN` to DOCKER-USER when it is missing.
    pub fn keeps_last(self, chain: &str, rule: &Rule) -> bool {
        self == Neighbour::Docker && chain == "DOCKER-USER" && rule.args.as_slice() == ["-j", "RETURN"]
    }
}

/// The bridges Docker manages, as a table shows them: its default names (`docker0`,
/// `docker_gwbridge`, `br-` and 12 hex digits) and every interface a `-o IF -j DOCKER` rule or a
/// rule in one of Docker's chains names (networks created with `com.docker.network.bridge.name`).
pub fn docker_bridges<'a>(chains: impl Iterator<Item = (&'a str, &'a [Rule])>) -> HashSet<String> {
    let mut out: HashSet<String> = ["docker0", "docker_gwbridge"].iter().map(|s| s.to_string()).collect();
    for (name, rules) in chains {
        let docker_chain = Neighbour::Docker.owns_chain(name);
        for r in rules {
            let a = &r.args;
            for flag in ["-i", "-o"] {
                if let Some((_, i)) = opt(a, flag) {
                    let jumps_docker = jump(r).is_some_and(|t| Neighbour::Docker.owns_chain(t));
                    if is_docker_default(i) || docker_chain || jumps_docker {
                        out.insert(i.to_string());
                    }
                }
            }
        }
    }
    out
}

fn is_docker_default(i: &str) -> bool {
    i.strip_prefix("br-").is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_virbr(i: &str) -> bool {
    i.strip_prefix("virbr").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The value of `flag` and whether it is negated (`! -o docker0`).
fn opt<'a>(a: &'a [String], flag: &str) -> Option<(bool, &'a str)> {
    let i = a.iter().position(|x| x == flag)?;
    let v = a.get(i + 1)?;
    Some((i > 0 && a[i - 1] == "!", v.as_str()))
}

fn target(a: &[String]) -> Option<&str> {
    opt(a, "-j").map(|(_, t)| t)
}

/// The chain a rule jumps or goes to.
fn jump(r: &Rule) -> Option<&str> {
    opt(&r.args, "-j").or(opt(&r.args, "-g")).map(|(_, t)| t)
}

/// The neighbours of one chain, with what they need from the table around it.
#[derive(Debug, Clone, Default)]
pub struct Foreign {
    pub names: Vec<Neighbour>,
    pub bridges: HashSet<String>,
}

impl Foreign {
    pub fn owns(&self, chain: &str, rule: &Rule) -> bool {
        self.names.iter().any(|n| n.owns_rule(chain, rule, &self.bridges))
    }

    pub fn keeps_last(&self, chain: &str, rule: &Rule) -> bool {
        self.names.iter().any(|n| n.keeps_last(chain, rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        Rule::new(shlex::split(s).unwrap())
    }

    fn docker(chain: &str, r: &str, bridges: &[&str]) -> bool {
        let b: HashSet<String> = bridges.iter().map(|s| s.to_string()).collect();
        Neighbour::Docker.owns_rule(chain, &rule(r), &b)
    }

    #[test]
    fn docker_20_10_forward_rules_of_a_user_network_are_dockers() {
        let fwd = [
            "-o br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-o br-0123456789ab -j DOCKER",
            "-i br-0123456789ab ! -o br-0123456789ab -j ACCEPT",
            "-i br-0123456789ab -o br-0123456789ab -j ACCEPT",
            "-j DOCKER-USER",
            "-j DOCKER-ISOLATION-STAGE-1",
            "-j DOCKER-FORWARD",
        ];
        let rules: Vec<Rule> = fwd.iter().map(|s| rule(s)).collect();
        let bridges = docker_bridges([("FORWARD", rules.as_slice())].into_iter());
        assert!(bridges.contains("br-0123456789ab"));
        for r in &rules {
            assert!(Neighbour::Docker.owns_rule("FORWARD", r, &bridges), "{r:?}");
        }
        assert!(!docker("FORWARD", "-i lxcbr0 -o eth0 -j ACCEPT", &["docker0"]));
        assert!(!docker("DOCKER-USER", "-i eth0 -j DROP", &["docker0"]));
        assert!(docker("DOCKER-USER", "-j RETURN", &["docker0"]));
        assert!(docker("POSTROUTING", "-s 172.18.0.2/32 -d 172.18.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE", &[]));
        assert!(docker("POSTROUTING", "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE", &["docker0"]));
    }

    #[test]
    fn a_custom_bridge_name_is_learned_from_its_jump_to_docker() {
        let rules = vec![rule("-o bridge1 -j DOCKER"), rule("-i bridge1 ! -o bridge1 -j ACCEPT")];
        let bridges = docker_bridges([("FORWARD", rules.as_slice())].into_iter());
        assert!(Neighbour::Docker.owns_rule("FORWARD", &rules[1], &bridges));
    }

    #[test]
    fn other_neighbours_are_known_by_their_chains_and_jumps() {
        let none = HashSet::new();
        let own = |n: Neighbour, c: &str, r: &str| n.owns_rule(c, &rule(r), &none);
        assert!(own(Neighbour::Fail2ban, "INPUT", "-p tcp -m multiport --dports 22 -j f2b-sshd"));
        assert!(own(Neighbour::Fail2ban, "f2b-sshd", "-s 192.0.2.1/32 -j REJECT --reject-with icmp-port-unreachable"));
        assert!(!own(Neighbour::Fail2ban, "INPUT", "-p tcp --dport 22 -j ACCEPT"));
        assert!(own(Neighbour::Ufw, "INPUT", "-j ufw-before-logging-input"));
        assert!(own(Neighbour::KubeProxy, "FORWARD", "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"));
        assert!(own(Neighbour::Libvirt, "FORWARD", "-j LIBVIRT_FWX"));
        assert!(own(Neighbour::Libvirt, "FORWARD", "-i virbr0 -o virbr0 -j ACCEPT"));
        assert!(own(Neighbour::Libvirt, "POSTROUTING", "-s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE"));
        assert!(own(Neighbour::Libvirt, "POSTROUTING", "-s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN"));
        assert!(own(Neighbour::Firewalld, "INPUT", "-j INPUT_ZONES"));
        assert!(own(Neighbour::Firewalld, "INPUT", "-m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT"));
        assert!(!own(Neighbour::Firewalld, "INPUT", "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"));
    }

    #[test]
    fn names_parse_and_unknown_ones_do_not() {
        for n in Neighbour::ALL {
            assert_eq!(Neighbour::parse(n.name()), Some(n));
        }
        assert_eq!(Neighbour::parse("podman"), None);
        assert!(Neighbour::known().contains("\"kube-proxy\""));
    }
}

//! The firewall checks of `hostguard audit` against real iptables and ip6tables in a private
//! network namespace (never the machine's own firewall). Bridges and the bridge netfilter
//! sysctls are planted in a temp `--root`: the test never loads br_netfilter or changes a global
//! sysctl.

use crate::util;

use std::process::Command;

use util::{FakeRoot, Netns, Run};

struct Host {
    root: FakeRoot,
    ns: Netns,
}

impl Host {
    /// Forwarding on, bridge netfilter loaded and on, one container bridge `lxcbr0` with two
    /// veth ports, no container config (so only network checks speak), the kernel's default
    /// firewall (FORWARD ACCEPT in both families).
    fn new(tag: &str) -> Host {
        let root = FakeRoot::new();
        root.sysctls(&[
            ("vm.swappiness", "10"),
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "0"),
            ("net.bridge.bridge-nf-call-iptables", "1"),
            ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ]);
        let h = Host { root, ns: Netns::new(tag) };
        h.bridge("lxcbr0", &["vethA", "vethB"], false);
        h
    }

    /// A bridge in sysfs; with `nic`, its first port is a physical NIC (it has a `device`).
    fn bridge(&self, name: &str, ports: &[&str], nic: bool) {
        self.root.write(&format!("/sys/class/net/{name}/bridge/forward_delay"), "1500\n");
        for (i, p) in ports.iter().enumerate() {
            self.root.write(&format!("/sys/class/net/{name}/brif/{p}/port_no"), "0x1\n");
            self.root.write(&format!("/sys/class/net/{p}/mtu"), "1500\n");
            if nic && i == 0 {
                self.root.write(&format!("/sys/class/net/{p}/device/vendor"), "0x8086\n");
            }
        }
    }

    fn ipt(&self, cmd: &str, args: &[&str]) {
        let out = Command::new("ip").args(["netns", "exec", &self.ns.name, cmd]).args(args).output().unwrap();
        assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn rules(&self, cmd: &str) -> String {
        let out = Command::new("ip").args(["netns", "exec", &self.ns.name, cmd, "-S", "FORWARD"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut a: Vec<&str> = args.to_vec();
        let root = self.root.arg();
        a.extend(["--root", &root]);
        self.ns.hostguard(&a)
    }

    fn findings(&self) -> Vec<serde_json::Value> {
        let a = self.run(&["audit", "--format", "json"]);
        assert!(a.json()["skipped"].as_array().unwrap().is_empty(), "checks were skipped: {}", a.stdout);
        a.json()["findings"].as_array().unwrap().clone()
    }

    fn find(&self, id: &str, subject: &str) -> serde_json::Value {
        let all = self.findings();
        all.iter().find(|f| f["id"] == id && f["subject"] == subject).cloned().unwrap_or_else(|| {
            panic!("no {id} on {subject} in {}", serde_json::to_string_pretty(&all).unwrap())
        })
    }

    #[track_caller]
    fn fix_and_expect_clean(&self) {
        // Exit 0: the document was printed, so `&& hostguard apply fix.json` runs (SPEC section 8).
        let emitted = self.run(&["audit", "--emit-state"]);
        assert_eq!(emitted.code, 0, "{}\n{}", emitted.stdout, emitted.stderr);
        let fix = self.root.doc("fix", &emitted.stdout);
        self.run(&["apply", "--format", "json", &fix]).expect(2);
        self.expect_clean();
    }

    #[track_caller]
    fn expect_clean(&self) {
        let again = self.run(&["audit", "--format", "json", "--fail-on", "low"]);
        assert_eq!(again.code, 0, "second audit is not clean:\n{}\n{}", again.stdout, again.stderr);
        assert!(again.json()["skipped"].as_array().unwrap().is_empty(), "{}", again.stdout);
    }
}

#[test]
fn forward_accept_with_a_bridge_and_forwarding_is_closed_by_the_emitted_state() {
    let h = Host::new("audfw-acc");
    // A LAN bridge (a NIC enslaved): its bridged traffic must keep flowing after the fix.
    h.bridge("br0", &["eth0", "vethC"], true);
    let f = h.find("iptables.forward_accept", "iptables/ipv4/filter/FORWARD");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["fix"]["iptables"]["ipv4"]["filter"]["FORWARD"]["policy"], "DROP");
    h.find("iptables.forward_accept", "iptables/ipv6/filter/FORWARD");
    h.find("sysctl.ip_forward_accept", "sysctl/net.ipv4.ip_forward");
    let icc = h.find("iptables.inter_container", "iptables/ipv4/bridge/lxcbr0");
    assert!(icc["evidence"].as_str().unwrap().contains("the FORWARD policy ACCEPT"), "{icc}");
    // The LAN bridge is not a container network: no inter-container finding for it.
    assert!(!h.findings().iter().any(|f| f["subject"] == "iptables/ipv4/bridge/br0"));

    h.fix_and_expect_clean();
    let v4 = h.rules("iptables");
    assert!(v4.contains("-P FORWARD DROP"), "{v4}");
    let first = v4.lines().find(|l| l.starts_with("-A FORWARD")).unwrap();
    assert_eq!(first, "-A FORWARD -i lxcbr0 -o lxcbr0 -j DROP", "{v4}");
    assert!(v4.contains("-A FORWARD -i br0 -o br0 -j ACCEPT"), "{v4}");
    assert!(h.rules("ip6tables").contains("-P FORWARD DROP"));
}

#[test]
fn a_well_set_firewall_has_no_finding() {
    let h = Host::new("audfw-clean");
    for cmd in ["iptables", "ip6tables"] {
        h.ipt(cmd, &["-P", "FORWARD", "DROP"]);
        h.ipt(cmd, &["-A", "FORWARD", "-i", "lxcbr0", "-o", "lxcbr0", "-j", "DROP"]);
        h.ipt(cmd, &["-A", "FORWARD", "-i", "lxcbr0", "!", "-o", "lxcbr0", "-j", "ACCEPT"]);
        h.ipt(cmd, &["-A", "FORWARD", "-o", "lxcbr0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]);
    }
    let all = h.findings();
    assert!(all.is_empty(), "{}", serde_json::to_string_pretty(&all).unwrap());
    h.run(&["audit", "--format", "json", "--fail-on", "low"]).expect(0);
}

#[test]
fn an_explicit_same_bridge_accept_is_found_and_has_no_fake_fix() {
    // Docker with "icc": true: FORWARD DROP, but docker0 -> docker0 accepted by a rule.
    let h = Host::new("audfw-icc");
    h.bridge("docker0", &["vethD"], false);
    for cmd in ["iptables", "ip6tables"] {
        h.ipt(cmd, &["-P", "FORWARD", "DROP"]);
        h.ipt(cmd, &["-N", "DOCKER-USER"]);
        h.ipt(cmd, &["-A", "DOCKER-USER", "-j", "RETURN"]);
        h.ipt(cmd, &["-A", "FORWARD", "-j", "DOCKER-USER"]);
        h.ipt(cmd, &["-A", "FORWARD", "-i", "docker0", "-o", "docker0", "-j", "ACCEPT"]);
        h.ipt(cmd, &["-A", "FORWARD", "-i", "lxcbr0", "-o", "lxcbr0", "-j", "DROP"]);
    }
    let f = h.find("iptables.inter_container", "iptables/ipv4/bridge/docker0");
    assert!(f["evidence"].as_str().unwrap().contains("-A FORWARD -i docker0 -o docker0 -j ACCEPT"), "{f}");
    // A DROP appended after the ACCEPT would never be reached: no fix is offered.
    assert!(f["fix"].is_null(), "{f}");
    assert!(f["remedy"].as_str().unwrap().contains("icc"), "{f}");
    // The operator's remedy: remove the rule.
    for cmd in ["iptables", "ip6tables"] {
        h.ipt(cmd, &["-D", "FORWARD", "-i", "docker0", "-o", "docker0", "-j", "ACCEPT"]);
    }
    h.expect_clean();
}

#[test]
fn bridge_rules_with_bridge_netfilter_off_are_found_and_turned_on() {
    let h = Host::new("audfw-nf0");
    h.root.sysctl("net.bridge.bridge-nf-call-iptables", "0");
    h.ipt("iptables", &["-P", "FORWARD", "DROP"]);
    h.ipt("iptables", &["-A", "FORWARD", "-i", "lxcbr0", "-o", "lxcbr0", "-j", "DROP"]);
    h.ipt("ip6tables", &["-P", "FORWARD", "DROP"]);
    let f = h.find("bridge.netfilter_off", "sysctl/net.bridge.bridge-nf-call-iptables");
    assert_eq!(f["severity"], "high");
    assert!(f["evidence"].as_str().unwrap().contains("-A FORWARD -i lxcbr0 -o lxcbr0 -j DROP"), "{f}");
    assert_eq!(f["fix"]["sysctl"]["values"]["net.bridge.bridge-nf-call-iptables"], 1);
    h.find("iptables.inter_container", "iptables/ipv4/bridge/lxcbr0");
    h.fix_and_expect_clean();
    assert_eq!(h.root.sysctl_value("net.bridge.bridge-nf-call-iptables"), "1");
    // Persisted: systemd-sysctl applies net.bridge keys again when br_netfilter loads at boot.
    assert!(h.root.read("/etc/sysctl.d/60-hostguard.conf").contains("net.bridge.bridge-nf-call-iptables = 1\n"));
}

#[test]
fn bridge_rules_without_br_netfilter_say_to_load_it() {
    let h = Host::new("audfw-nomod");
    std::fs::remove_dir_all(h.root.host_path("/proc/sys/net/bridge")).unwrap();
    h.ipt("iptables", &["-P", "FORWARD", "DROP"]);
    h.ipt("iptables", &["-A", "FORWARD", "-i", "lxcbr0", "-o", "lxcbr0", "-j", "DROP"]);
    h.ipt("ip6tables", &["-P", "FORWARD", "DROP"]);
    let f = h.find("bridge.netfilter_off", "sysctl/net.bridge.bridge-nf-call-iptables");
    assert!(f["fix"].is_null(), "{f}");
    assert!(f["remedy"].as_str().unwrap().contains("modprobe br_netfilter"), "{f}");
    let icc = h.find("iptables.inter_container", "iptables/ipv4/bridge/lxcbr0");
    assert!(icc["fix"].is_null(), "{icc}");
    // The remedy, as loading the module would leave it (planted in the fake root: this test
    // never loads a module).
    h.root.sysctl("net.bridge.bridge-nf-call-iptables", "1");
    h.root.sysctl("net.bridge.bridge-nf-call-ip6tables", "1");
    h.expect_clean();
}

#[test]
fn without_br_netfilter_the_fixes_leave_only_what_no_document_can_fix() {
    // Regression: the fix used to add a LAN-bridge ACCEPT that bridge.netfilter_off then
    // reported as a rule that never sees a packet.
    let h = Host::new("audfw-nomodlan");
    std::fs::remove_dir_all(h.root.host_path("/proc/sys/net/bridge")).unwrap();
    h.bridge("br0", &["eth0", "vethC"], true);
    let before = h.findings();
    let manual: Vec<(String, String)> = before
        .iter()
        .filter(|f| f["fix"].is_null())
        .map(|f| (f["id"].as_str().unwrap().to_string(), f["subject"].as_str().unwrap().to_string()))
        .collect();
    assert!(manual.contains(&("iptables.inter_container".into(), "iptables/ipv4/bridge/lxcbr0".into())), "{manual:?}");
    let emitted = h.run(&["audit", "--emit-state"]);
    let fix = h.root.doc("fix", &emitted.stdout);
    h.run(&["apply", "--format", "json", &fix]).expect(2);
    let after: Vec<(String, String)> = h
        .findings()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f["subject"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(after, manual, "after the fixes only the findings without a fix may remain");
    assert!(!h.rules("iptables").contains("-i br0"), "{}", h.rules("iptables"));
}

impl Host {
    /// Load an nft ruleset into the test's namespace.
    fn nft(&self, ruleset: &str) {
        self.root.write("/ruleset.nft", ruleset);
        let path = self.root.host_path("/ruleset.nft");
        self.ipt("nft", &["-f", path.to_str().unwrap()]);
    }

    fn nft_list(&self, family: &str, table: &str) -> String {
        let out = Command::new("ip").args(["netns", "exec", &self.ns.name, "nft", "-s", "list", "table", family, table]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ids(&self) -> Vec<String> {
        self.findings().iter().map(|f| format!("{} {}", f["id"].as_str().unwrap(), f["subject"].as_str().unwrap())).collect()
    }
}

/// A neighbour's table with a forward base chain that drops by default and drops same-bridge
/// traffic, beside iptables-nft's FORWARD left at ACCEPT: the packet is dropped by the
/// neighbour's chain, so no forwarding finding (iptables alone would have given three).
#[test]
fn a_drop_in_a_neighbours_nft_base_chain_is_a_drop() {
    let h = Host::new("audnf-neigh");
    h.nft("table inet neighbour {\nchain fw {\ntype filter hook forward priority filter + 10; policy drop;\n\
           iifname \"lxcbr0\" oifname \"lxcbr0\" drop\niifname \"lxcbr0\" oifname != \"lxcbr0\" accept\n\
           oifname \"lxcbr0\" ct state established,related accept\n}\n}\n");
    let all = h.ids();
    assert!(all.is_empty(), "{all:?}");
    // The same neighbour accepting same-bridge traffic: iptables' FORWARD (policy ACCEPT) lets it
    // through too, so it is found, with the neighbour's rule named.
    h.ipt("nft", &["insert", "rule", "inet", "neighbour", "fw", "iifname", "lxcbr0", "oifname", "lxcbr0", "accept"]);
    let icc = h.find("iptables.inter_container", "iptables/ipv4/bridge/lxcbr0");
    assert!(icc["evidence"].as_str().unwrap().contains("in chain fw of table inet neighbour"), "{icc}");
}

/// iptables-nft's FORWARD drops what a native table accepts: an accept in one base chain does
/// not accept in the next, so the host is clean.
#[test]
fn an_accept_in_an_nft_table_does_not_undo_a_drop_in_iptables_nft_forward() {
    let h = Host::new("audnf-ipt");
    for cmd in ["iptables", "ip6tables"] {
        h.ipt(cmd, &["-P", "FORWARD", "DROP"]);
        h.ipt(cmd, &["-A", "FORWARD", "-i", "lxcbr0", "-o", "lxcbr0", "-j", "DROP"]);
    }
    h.nft("table inet open {\nchain fw {\ntype filter hook forward priority -10; policy accept;\niifname \"lxcbr0\" accept\n}\n}\n");
    let all = h.ids();
    assert!(all.is_empty(), "{all:?}");
}

/// A host whose forwarding firewall is nftables (a neighbour's forward chain that accepts) gets
/// its fix as an owned table, `ip hostguard`: the emitted document is valid, applying it
/// closes the findings, and the neighbour's table is byte for byte as it was.
#[test]
fn on_an_nft_host_the_fix_is_an_owned_table_that_closes_the_findings() {
    let h = Host::new("audnf-owned");
    h.nft("table inet neighbour {\nchain fw {\ntype filter hook forward priority filter; policy accept;\niifname \"lxcbr0\" oifname \"lxcbr0\" accept\n}\n}\n");
    let before = h.nft_list("inet", "neighbour");
    let f = h.find("iptables.forward_accept", "iptables/ipv4/filter/FORWARD");
    let chain = &f["fix"]["nftables"]["tables"]["ip hostguard"]["chains"]["forward"];
    assert_eq!(chain["policy"], "drop", "{f}");
    assert!(f["fix"]["iptables"].is_null(), "no iptables advice on an nft host: {f}");
    let icc = h.find("iptables.inter_container", "iptables/ipv4/bridge/lxcbr0");
    assert!(icc["fix"]["nftables"]["tables"]["ip hostguard"]["chains"]["forward"]["rules"][0] == "iifname \"lxcbr0\" oifname \"lxcbr0\" drop", "{icc}");
    let emitted = h.run(&["audit", "--emit-state"]);
    assert_eq!(emitted.code, 0, "{}\n{}", emitted.stdout, emitted.stderr);
    let fix = h.root.doc("fix", &emitted.stdout);
    h.run(&["validate", &fix]).expect(0);
    h.run(&["apply", "--format", "json", &fix]).expect(2);
    h.expect_clean();
    assert!(h.nft_list("ip", "hostguard").contains("iifname \"lxcbr0\" oifname \"lxcbr0\" drop"));
    assert_eq!(h.nft_list("inet", "neighbour"), before, "the neighbour's table was touched");
    h.run(&["plan", "--format", "json", &fix]).expect(0);
}

/// The `ip docker-bridges` table of a moby nftablesdoc page (tests/data/docker-nftables), as
/// loadable here (MANIFEST.md says what is changed).
fn docker_nft_table(page: &str) -> String {
    let text = std::fs::read_to_string(util::data_dir().join("docker-nftables").join(page)).unwrap();
    let mut out = Vec::new();
    for l in text.lines().skip_while(|l| l.trim() != "table ip docker-bridges {") {
        let l = l.strip_prefix("    ").unwrap_or(l);
        out.push(l.replace("type nat hook output priority dstnat;", "type nat hook output priority -100;"));
        if l == "}" {
            break;
        }
    }
    out.join("\n") + "\n"
}

/// Docker 29 in its nftables mode (moby's own listings loaded into the namespace, daemon.json
/// saying `"firewall-backend": "nftables"`): Docker's bridges get Docker's remedies and no fix,
/// the forward fix is hostguard's own table passing Docker's bridges on (no DOCKER-USER, no
/// iptables), applying it closes what it fixes and leaves Docker's table byte for byte, and with
/// ICC off on bridge1 Docker's own drop is seen.
#[test]
fn docker_29s_nftables_mode_gets_docker_remedies_and_an_owned_table_fix() {
    let h = Host::new("audnf-docker");
    h.bridge("docker0", &["vethD"], false);
    h.bridge("bridge1", &["vethE"], false);
    h.root.write("/etc/docker/daemon.json", "{\"firewall-backend\": \"nftables\"}\n");
    h.nft(&docker_nft_table("usernet-portmap.md"));
    let before = h.nft_list("ip", "docker-bridges");
    let user = h.find("iptables.inter_container", "iptables/ipv4/bridge/bridge1");
    assert!(user["fix"].is_null() && user["remedy"].as_str().unwrap().contains("enable_icc"), "{user}");
    assert!(user["evidence"].as_str().unwrap().contains("comment \"ICC\""), "{user}");
    let fa = h.find("iptables.forward_accept", "iptables/ipv4/filter/FORWARD");
    let text = fa.to_string();
    assert!(!text.contains("DOCKER-USER") && fa["fix"]["iptables"].is_null(), "{fa}");
    let rules = &fa["fix"]["nftables"]["tables"]["ip hostguard"]["chains"]["forward"]["rules"];
    for r in ["iifname \"bridge1\" accept", "oifname \"docker0\" accept", "iifname \"lxcbr0\" oifname \"lxcbr0\" drop"] {
        assert!(rules.as_array().unwrap().iter().any(|x| x == r), "{r} not in {rules}");
    }
    let emitted = h.run(&["audit", "--emit-state"]);
    let fix = h.root.doc("fix", &emitted.stdout);
    h.run(&["validate", &fix]).expect(0);
    h.run(&["apply", "--format", "json", &fix]).expect(2);
    let after = h.ids();
    assert!(!after.iter().any(|i| i.contains("forward_accept") || i.contains("bridge/lxcbr0")), "{after:?}");
    assert!(after.contains(&"iptables.inter_container iptables/ipv4/bridge/bridge1".to_string()), "Docker's ICC is Docker's: {after:?}");
    assert_eq!(h.nft_list("ip", "docker-bridges"), before, "Docker's table was touched");

    let h = Host::new("audnf-dockernoicc");
    h.bridge("bridge1", &["vethE"], false);
    h.root.write("/etc/docker/daemon.json", "{\"firewall-backend\": \"nftables\"}\n");
    h.nft(&docker_nft_table("usernet-portmap-noicc.md"));
    let all = h.ids();
    assert!(!all.contains(&"iptables.inter_container iptables/ipv4/bridge/bridge1".to_string()), "Docker drops ICC on bridge1: {all:?}");
}

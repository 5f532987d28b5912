"""The rulesets and container configs issue 20 measures, shared by bench/iptables, bench/lxc and
bench/callgrind so that the timed and the counted runs see the same input.

    owned(n)             n plain rules in one user chain BENCH of filter (the document's and the
                         iptables-save spelling)
    kube(n)              about n rules hostguard does not own, as kube-proxy writes them into the
                         nat table: KUBE-SERVICES -> KUBE-SVC-* (statistic) -> KUBE-SEP-* (DNAT)
    kube_owned(n)        n owned DNAT rules in the user chain HG-DNAT of the same nat table
    lxc_root(root, n)    n stopped busybox containers' configs under root/var/lib/lxc, and the
                         document that makes every one drift
"""
import hashlib
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMPTY = {
    "filter": "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    "nat": "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
}


def ip(i, first=10):
    return f"{first}.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"


def _chain(table, chain, rules):
    """(document rules, restore input of the same rules as iptables-save prints them): `rules`
    gives both spellings of each rule."""
    doc = [d for d, _ in rules]
    floor = f"*{table}\n:{chain} - [0:0]\n" + "".join(f"-A {chain} {s}\n" for _, s in rules) + "COMMIT\n"
    return doc, floor


def owned(n):
    """n rules in BENCH of filter."""
    return _chain("filter", "BENCH", [(f"-s {ip(i)} -p tcp --dport {1000 + i % 50000} -j ACCEPT",
                                       f"-s {ip(i)}/32 -p tcp -m tcp --dport {1000 + i % 50000} -j ACCEPT") for i in range(n)])


def owned_doc(backend, rules):
    return {"version": 1, "iptables": {"backend": backend, "ipv4": {"filter": {"BENCH": {"purge": True, "rules": rules}}}}}


def _h(s):
    return hashlib.sha256(s.encode()).hexdigest()[:16].upper()


def kube(n):
    """Restore input (for --noflush) of about n kube-proxy rules in nat: per service one
    KUBE-SERVICES rule, a KUBE-SVC chain of two statistic jumps, two KUBE-SEP chains of two
    rules each (7 rules, 3 chains a service). Returns (text, rule count, chain count)."""
    services = max(1, n // 7)
    decl = [":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    rules = ["-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
             "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"]
    for s in range(services):
        name = f"ns{s % 50}/svc{s}:http"
        svc = "KUBE-SVC-" + _h(name)
        decl.append(f":{svc} - [0:0]")
        rules.append(f"-A KUBE-SERVICES -d {ip(s, 172)}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport 80 -j {svc}")
        for e in range(2):
            sep = "KUBE-SEP-" + _h(f"{name}/{e}")
            pod = ip(s * 2 + e, 11)
            decl.append(f":{sep} - [0:0]")
            if e == 0:
                rules.append(f"-A {svc} -m comment --comment \"{name} -> {pod}:8080\" -m statistic --mode random --probability 0.50000000000 -j {sep}")
            else:
                rules.append(f"-A {svc} -m comment --comment \"{name} -> {pod}:8080\" -j {sep}")
            rules.append(f"-A {sep} -s {pod}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ")
            rules.append(f"-A {sep} -p tcp -m comment --comment \"{name}\" -m tcp -j DNAT --to-destination {pod}:8080")
    text = "*nat\n" + "\n".join(decl) + "\n" + "\n".join(rules) + "\nCOMMIT\n"
    return text, len(rules), len(decl)


def kube_owned(n):
    """n DNAT rules in HG-DNAT of nat."""
    return _chain("nat", "HG-DNAT", [(f"-d {ip(i, 192)} -p tcp --dport 80 -j DNAT --to-destination {ip(i)}:8080",
                                      f"-d {ip(i, 192)}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination {ip(i)}:8080") for i in range(n)])


def kube_doc(backend, rules):
    return {"version": 1, "iptables": {"backend": backend, "ipv4": {"nat": {"HG-DNAT": {"purge": True, "rules": rules}}}}}


LXC_SPEC = {"memory_limit": "256M", "memory_swap_limit": "512M", "cpu_shares": 512,
            "network": [{"type": "veth", "link": "lxcbr0", "flags": "up", "ipv4.address": "10.0.3.10/24"}],
            "cap_drop": ["sys_module", "sys_time", "sys_rawio", "mac_admin", "mac_override"],
            "config": {"lxc.start.auto": "1"}}


def lxc_root(root, n):
    """Writes n busybox configs (`lxc-create -t busybox` output) under root; returns the
    document that changes every one of them."""
    config = open(os.path.join(REPO, "agent/tests/golden/lxc/roundtrip/busybox.conf")).read()
    for i in range(n):
        d = os.path.join(root, "var/lib/lxc", f"c{i}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config"), "w") as f:
            f.write(config.replace("web1", f"c{i}"))
    return {"version": 1, "lxc": {"dialect": "auto", "containers": {f"c{i}": LXC_SPEC for i in range(n)}}}


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f)
    return path

#!/usr/bin/env python3
"""Side-by-side benchmarks of hostguard's Salt and Puppet wrappers against the tools' own resources.

    peers.py sysctl [--keys 100] [--limit SECONDS]
    peers.py iptables [--sizes 50,200,1000] [--limit SECONDS]

Run by bench/peers-sysctl and bench/peers-iptables, which put it in a private mount namespace
(each contender's --root has /proc bound into it) as root. Every contender converges its own fresh
network namespace, so net.* sysctls and iptables are private to it and start from the kernel's
defaults; files go under a temp directory. Per tool (Salt, Puppet) and size, each contender runs
twice: the first converge, and the no-op second run; the tool's empty run (a state/manifest with one
no-op resource) is measured the same way, and marginal cost = run - empty run. A run still going
at --limit is stopped and reported with how far it got. Prints one table per kind to stdout.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTGUARD = os.environ.get("HOSTGUARD", os.path.join(REPO, "target/release/hostguard"))
SALT_VENV = os.environ.get("SALT_VENV", "/opt/hostguard-tests/salt-venv")
PUPPET_MODULES = "/usr/share/puppet/modules"
TMP = None
NS_COUNT = [0]


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


class Sandbox:
    """A fresh network namespace and a --root with /proc bound in, under TMP/NAME."""

    def __init__(self, name):
        NS_COUNT[0] += 1
        self.name = name
        self.ns = "hg-bench-%d-%d" % (os.getpid(), NS_COUNT[0])
        self.dir = os.path.join(TMP, name)
        self.root = os.path.join(self.dir, "root")
        os.makedirs(os.path.join(self.root, "proc"))
        os.makedirs(os.path.join(self.root, "etc/sysctl.d"))
        os.makedirs(os.path.join(self.dir, "state"))
        sh(["mount", "--bind", "/proc", os.path.join(self.root, "proc")])
        sh(["ip", "netns", "add", self.ns])
        sh(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"])
        # The wrappers take `binary`: hostguard already runs in the namespace (the tool does), so
        # the real binary is given.

    def argv(self, argv):
        return ["ip", "netns", "exec", self.ns] + argv

    def close(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["umount", "-l", os.path.join(self.root, "proc")], capture_output=True)


def timed(argv, limit, cwd=None):
    """Runs argv in its own session; returns (seconds, returncode or None when stopped, stdout, stderr)."""
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, cwd=cwd)
    try:
        out, err = p.communicate(timeout=limit)
        return time.monotonic() - start, p.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return time.monotonic() - start, None, out, err


# ---------------------------------------------------------------- Salt

def salt_dir(box, sls):
    d = os.path.join(box.dir, "salt")
    os.makedirs(os.path.join(d, "states"))
    with open(os.path.join(d, "minion"), "w") as f:
        f.write("id: bench\nfile_client: local\nroot_dir: %s/root\nfile_roots:\n  base: [%s/states, %s/salt-states]\n"
                "log_file: %s/minion.log\nlog_level_logfile: warning\n" % (d, d, REPO, d))
    with open(os.path.join(d, "states", "bench.sls"), "w") as f:
        f.write(sls)
    return d


def salt_run(box, d, limit):
    t, rc, out, err = timed(box.argv([os.path.join(SALT_VENV, "bin/salt-call"), "--local", "-c", d,
                                      "--out=json", "state.apply", "bench"]), limit)
    changed = None
    if rc is not None:
        try:
            ret = json.loads(out)["local"]
            # A hostguard.converged state counts each changed hostguard resource.
            changed = sum(len(r["changes"]) if r["__id__"] == "hostguard" else (1 if r["changes"] else 0)
                          for r in ret.values())
            if not all(r["result"] for r in ret.values()):
                changed = "FAILED: " + "; ".join(r["comment"][:200] for r in ret.values() if not r["result"])[:300]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            changed = "FAILED: %s %s" % (e, (out + err)[-300:])
    return t, rc, changed


def salt_sync(box, d):
    sh(box.argv([os.path.join(SALT_VENV, "bin/salt-call"), "--local", "-c", d, "saltutil.sync_all"]))


def salt_hostguard_sls(box, document):
    return ("hostguard:\n  hostguard.converged:\n    - binary: %s\n    - root: %s\n    - state_file: %s\n"
            "    - document: %s\n" % (HOSTGUARD, box.root, os.path.join(box.dir, "state/state.json"),
                                      json.dumps(document)))


SALT_EMPTY = "nothing:\n  test.nop: []\n"

# ---------------------------------------------------------------- Puppet


def puppet_run(box, manifest, limit):
    d = os.path.join(box.dir, "puppet")
    mods = os.path.join(box.dir, "modules")
    if not os.path.isdir(d):
        for sub in ("conf", "var", "code", "log", "run", "public"):
            os.makedirs(os.path.join(d, sub))
        os.makedirs(mods)
        os.symlink(os.path.join(REPO, "puppet-module"), os.path.join(mods, "hostguard"))
        for m in os.listdir(PUPPET_MODULES):
            os.symlink(os.path.realpath(os.path.join(PUPPET_MODULES, m)), os.path.join(mods, m))
    path = os.path.join(box.dir, "site.pp")
    with open(path, "w") as f:
        f.write(manifest)
    t, rc, out, err = timed(box.argv(["puppet", "apply", "--detailed-exitcodes", "--color=false",
                                      "--confdir", d + "/conf", "--vardir", d + "/var", "--codedir", d + "/code",
                                      "--logdir", d + "/log", "--rundir", d + "/run", "--publicdir", d + "/public",
                                      "--modulepath", mods, path]), limit)
    changed = None
    if rc is not None:
        if rc in (0, 2):
            changed = 0
            summary = os.path.join(d, "public/last_run_summary.yaml")
            try:
                # The events counter: a hostguard_state run shows one event per hostguard resource.
                y = sh(["ruby", "-ryaml", "-e", "y = YAML.load_file(ARGV[0]); puts((y['events'] || {})['total'] || 0)", summary])
                changed = int(y.strip())
            except (subprocess.CalledProcessError, ValueError):
                changed = "FAILED: no summary"
        else:
            changed = "FAILED (exit %d): %s" % (rc, " ".join(l for l in (out + err).splitlines() if l.startswith("Error"))[:300])
    return t, rc, changed


def puppet_hostguard(box, section, value):
    return ("class { 'hostguard':\n  binary => '%s',\n  root => '%s',\n  state_file => '%s',\n  %s => %s,\n}\n"
            % (HOSTGUARD, box.root, os.path.join(box.dir, "state/state.json"), section, puppet_value(value)))


def puppet_value(v):
    if isinstance(v, dict):
        return "{ " + ", ".join("%s => %s" % (puppet_value(k), puppet_value(x)) for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[ " + ", ".join(puppet_value(x) for x in v) + " ]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


PUPPET_EMPTY = "# nothing\n"

# ---------------------------------------------------------------- sysctl


def choose_keys(n):
    """N net.* keys that take a new single integer value in a fresh namespace and keep it: each
    key's desired value is its default + 1 (or the other of 0/1). Keys that other keys change
    (forwarding, disable_ipv6), milliseconds twins and `all` are left out."""
    box = Sandbox("probe")
    try:
        probe = r'''
import json, os
cands = []
for base in ("/proc/sys/net/ipv4/conf/default", "/proc/sys/net/ipv4/conf/lo", "/proc/sys/net/ipv6/conf/default",
             "/proc/sys/net/ipv6/conf/lo", "/proc/sys/net/ipv4", "/proc/sys/net/ipv6", "/proc/sys/net/core",
             "/proc/sys/net/ipv4/neigh/default", "/proc/sys/net/ipv6/neigh/default", "/proc/sys/net/unix"):
    if not os.path.isdir(base):
        continue
    for name in sorted(os.listdir(base)):
        p = os.path.join(base, name)
        if not os.path.isfile(p) or name.endswith("_ms") or name in ("forwarding", "disable_ipv6", "ip_forward", "mtu", "stable_secret", "hop_limit"):
            continue
        try:
            v = open(p).read().strip()
        except OSError:
            continue
        if not v.isdigit():
            continue
        want = str(1 - int(v)) if v in ("0", "1") else str(int(v) + 1)
        try:
            with open(p, "w") as f:
                f.write(want)
        except OSError:
            continue
        cands.append((p, want))
ok = {}
for p, want in cands:
    try:
        if open(p).read().strip() == want:
            ok[p[len("/proc/sys/"):].replace("/", ".")] = int(want)
    except OSError:
        pass
print(json.dumps(ok))
'''
        found = json.loads(sh(box.argv([sys.executable, "-c", probe])))
    finally:
        box.close()
    keys = sorted(found)
    if len(keys) < n:
        sys.exit("only %d usable net.* keys here, %d wanted" % (len(keys), n))
    # Spread the choice over the families rather than taking the first N alphabetically.
    step = len(keys) / n
    return {keys[int(i * step)]: found[keys[int(i * step)]] for i in range(n)}


def sysctl_converged(box, values):
    got = sh(box.argv(["sysctl", "-n"] + list(values))).split("\n")
    return sum(1 for k, g in zip(values, got) if g.strip() == str(values[k]))


def run_pair(args, rows, tool, contender, size, setup, run, converged):
    """Runs a contender `args.repeat` times, each in a fresh sandbox: setup, first run, `converged`
    (how many of `size` things are as wanted; None for an empty run), second run."""
    firsts, seconds, conv = [], [], None
    for rep in range(args.repeat):
        box = Sandbox("%s-%s-%s-%d" % (tool, contender.split()[0], size, rep))
        try:
            ctx = setup(box)
            firsts.append(run(box, ctx))
            conv = converged(box) if converged else None
            # After a stopped first run a second run would go on converging, not be a no-op.
            seconds.append(run(box, ctx) if firsts[-1][1] is not None else (0.0, None, "not run: 1st run stopped"))
        finally:
            box.close()
    rows.append(dict(tool=tool, contender=contender, size=size, first=fastest(firsts), second=fastest(seconds), converged=conv))
    r = rows[-1]
    print("  %s %s %s: %.2f s, %.2f s" % (tool, contender, size, r["first"][0], r["second"][0]), file=sys.stderr, flush=True)


def salt_setup(sls_of):
    def setup(box):
        d = salt_dir(box, sls_of(box))
        salt_sync(box, d)
        return d
    return setup


def salt_runner(args):
    return lambda box, d: salt_run(box, d, args.limit)


def puppet_runner(args, manifest_of):
    return lambda box, ctx: puppet_run(box, manifest_of(box), args.limit)


def bare_setup(doc):
    def setup(box):
        path = os.path.join(box.dir, "state.json")
        json.dump(doc, open(path, "w"))
        return path
    return setup


def bare_runner(args):
    def run(box, path):
        t, rc, out, err = timed(box.argv([HOSTGUARD, "apply", "--format", "json", "--root", box.root, path]), args.limit)
        changed = sum(1 for r in json.loads(out)["resources"] if r["status"] == "changed") if rc in (0, 2) else "FAILED: " + err[-200:]
        return t, rc, changed
    return run


def bench_sysctl(args):
    values = choose_keys(args.keys)
    rows = []
    n = len(values)

    def converged(box):
        return sysctl_converged(box, values)

    salt = salt_runner(args)
    peer_sls = "".join("%s:\n  sysctl.present:\n    - value: %s\n    - config: {cfg}\n" % (k, v) for k, v in values.items())
    doc = {"version": 1, "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "values": values}}
    run_pair(args, rows, "salt", "empty run", n, salt_setup(lambda b: SALT_EMPTY), salt, None)
    run_pair(args, rows, "salt", "sysctl.present", n,
             salt_setup(lambda b: peer_sls.replace("{cfg}", os.path.join(b.dir, "sysctl.conf"))), salt, converged)
    run_pair(args, rows, "salt", "hostguard.converged", n, salt_setup(lambda b: salt_hostguard_sls(b, doc)), salt, converged)

    def peer_pp(box):
        cfg = os.path.join(box.dir, "sysctl.conf")
        if not os.path.exists(cfg):
            open(cfg, "w").close()
        return "".join("sysctl { '%s': val => '%s', target => '%s' }\nsysctl_runtime { '%s': val => '%s', require => Sysctl['%s'] }\n"
                       % (k, v, cfg, k, v, k) for k, v in values.items())

    none = lambda b: None
    run_pair(args, rows, "puppet", "empty run", n, none, puppet_runner(args, lambda b: PUPPET_EMPTY), None)
    run_pair(args, rows, "puppet", "duritong sysctl", n, none, puppet_runner(args, peer_pp), converged)
    run_pair(args, rows, "puppet", "hostguard class", n, none,
             puppet_runner(args, lambda b: puppet_hostguard(b, "sysctl", doc["sysctl"])), converged)
    run_pair(args, rows, "-", "hostguard apply (bare)", n, bare_setup(doc), bare_runner(args), converged)
    print_table("sysctl, %d net.* keys" % n, rows, args.limit)


# ---------------------------------------------------------------- iptables

def ports(n):
    return [10000 + i for i in range(n)]


def iptables_rules(box):
    """The rules of INPUT in the sandbox's filter table as iptables-save prints them."""
    out = sh(box.argv(["iptables-save", "-t", "filter"]))
    return [l for l in out.splitlines() if l.startswith("-A INPUT ")]


def bench_iptables(args):
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    salt = salt_runner(args)
    none = lambda b: None
    for n in sizes:
        want = ["-A INPUT -p tcp -m tcp --dport %d -j ACCEPT" % p for p in ports(n)]

        def converged(box, n=n):
            # Each tool writes the rule its own way (puppetlabs-firewall: multiport and a comment),
            # so a rule counts when it accepts the right port at the right place.
            have = [re.search(r"--dports? (\d+) .*-j ACCEPT", r) for r in iptables_rules(box)]
            in_order = sum(1 for h, p in zip(have, ports(n)) if h and int(h.group(1)) == p)
            policy = "DROP" if ":INPUT DROP" in sh(box.argv(["iptables-save", "-t", "filter"])) else "ACCEPT"
            return "%d/%d rules, policy %s" % (in_order, n, policy)

        # Each size has its own empty runs, measured next to it: the machine's load drifts.
        run_pair(args, rows, "salt", "empty run", n, salt_setup(lambda b: SALT_EMPTY), salt, None)
        peer_sls = "INPUT-policy:\n  iptables.set_policy:\n    - table: filter\n    - chain: INPUT\n    - policy: DROP\n"
        peer_sls += "".join("accept-%d:\n  iptables.append:\n    - table: filter\n    - chain: INPUT\n    - proto: tcp\n"
                            "    - match: tcp\n    - dport: %d\n    - jump: ACCEPT\n    - save: False\n" % (p, p) for p in ports(n))
        doc = {"version": 1, "iptables": {"ipv4": {"filter": {"INPUT": {
            "policy": "DROP", "purge": True, "rules": [r[len("-A INPUT "):] for r in want]}}}}}
        run_pair(args, rows, "salt", "iptables.append", n, salt_setup(lambda b, s=peer_sls: s), salt, converged)
        run_pair(args, rows, "salt", "hostguard.converged", n, salt_setup(lambda b, d=doc: salt_hostguard_sls(b, d)), salt, converged)
        peer_pp = "firewallchain { 'INPUT:filter:IPv4': policy => drop }\n"
        peer_pp += "".join("firewall { '%05d accept %d': chain => 'INPUT', proto => 'tcp', dport => %d, action => 'accept' }\n"
                           % (i + 100, p, p) for i, p in enumerate(ports(n)))
        run_pair(args, rows, "puppet", "empty run", n, none, puppet_runner(args, lambda b: PUPPET_EMPTY), None)
        run_pair(args, rows, "puppet", "puppetlabs-firewall", n, none, puppet_runner(args, lambda b, m=peer_pp: m), converged)
        run_pair(args, rows, "puppet", "hostguard class", n, none,
                 puppet_runner(args, lambda b, d=doc: puppet_hostguard(b, "iptables", d["iptables"])), converged)
        run_pair(args, rows, "-", "hostguard apply (bare)", n, bare_setup(doc), bare_runner(args), converged)
    print_table("iptables, INPUT rules (nft backend, IPv4)", rows, args.limit)


# ---------------------------------------------------------------- table

def fastest(runs):
    """The fastest of repeated runs (the least disturbed by other load), keeping the last run's
    counts; a stopped run wins over none."""
    best = min(runs, key=lambda r: r[0])
    return (best[0], best[1], runs[-1][2])


def fmt_run(r, limit):
    t, rc, changed = r
    if rc is None:
        return "stopped at %.0f s" % t if t else "not run"
    return "%.2f" % t


def print_table(title, rows, limit):
    print("## %s" % title)
    print()
    print("| tool | contender | size | 1st run s | 2nd run s | marginal 1st s | marginal 2nd s | converged after 1st | changes reported on 2nd (false drift) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    empty = {(r["tool"], r["size"]): r for r in rows if r["contender"] == "empty run"}
    for r in rows:
        e = empty.get((r["tool"], r["size"]))
        m1 = m2 = "-"
        if e and r is not e:
            m1 = "%.2f" % (r["first"][0] - e["first"][0]) if r["first"][1] is not None else "-"
            m2 = "%.2f" % (r["second"][0] - e["second"][0]) if r["second"][1] is not None else "-"
        conv = "-" if r["converged"] is None else r["converged"] if isinstance(r["converged"], str) else "%s/%s" % (r["converged"], r["size"])
        ch2 = r["second"][2]
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["tool"], r["contender"], r["size"], fmt_run(r["first"], limit), fmt_run(r["second"], limit),
            m1, m2, conv, "-" if ch2 is None else ch2))
    print()
    # Ratios peer / hostguard per tool and size.
    print("| tool | size | peer | whole 1st | whole 2nd | marginal 1st | marginal 2nd |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for tool in ("salt", "puppet"):
        for size in sorted({r["size"] for r in rows if r["tool"] == tool}):
            e = empty.get((tool, size))
            mine = [r for r in rows if r["tool"] == tool and r["size"] == size and "hostguard" in r["contender"]]
            peers = [r for r in rows if r["tool"] == tool and r["size"] == size and "hostguard" not in r["contender"] and r["contender"] != "empty run"]
            for hg in mine:
                for p in peers:
                    cells = []
                    for run in ("first", "second"):
                        cells.append(ratio(p[run], hg[run], 0))
                    for run in ("first", "second"):
                        cells.append(ratio(p[run], hg[run], e[run][0] if e else 0))
                    print("| %s | %s | %s / %s | %s |" % (tool, size, p["contender"], hg["contender"], " | ".join(cells)))
    print()
    sys.stdout.flush()


def ratio(p, h, base):
    pt, hp = p[0] - base, h[0] - base
    if h[1] is None or (p[1] is None and not p[0]):
        return "n/a (not run)"
    if hp <= 0.005:
        return "peer %+.2f s, hostguard below the noise (%+.2f s)" % (pt, hp)
    prefix = ">= " if p[1] is None else ""
    return "%s%.1fx" % (prefix, pt / hp)


def main():
    global TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["sysctl", "iptables"])
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--sizes", default="50,200,1000")
    ap.add_argument("--limit", type=float, default=300)
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender; the fastest counts")
    args = ap.parse_args()
    TMP = tempfile.mkdtemp(prefix="hostguard-bench-")
    try:
        print("# %s, %s, %s, load average at start %.1f" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                " ".join(os.uname()[i] for i in (0, 2, 4)),
                                "%d cores" % os.cpu_count(), os.getloadavg()[0]))
        print()
        if args.kind == "sysctl":
            bench_sysctl(args)
        else:
            bench_iptables(args)
    finally:
        for line in open("/proc/mounts").read().splitlines():
            mnt = line.split()[1]
            if mnt.startswith(TMP):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()

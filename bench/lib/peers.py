#!/usr/bin/env python3
"""Side-by-side benchmarks of hostguard's Salt and Puppet wrappers against the tools' own resources.

    peers.py sysctl [--keys 100] [--limit SECONDS]
    peers.py iptables [--sizes 200,1000] [--managed 100] [--others 4000] [--tools puppet,salt] [--limit SECONDS]

Run by bench/peers-sysctl and bench/peers-iptables, which put it in a private mount namespace
(each contender's --root has /proc bound into it) as root. Every contender converges its own fresh
network namespace, so net.* sysctls and iptables are private to it and start from the kernel's
defaults; files go under a temp directory. Per tool (Salt, Puppet) and size, each contender runs
twice: the first converge, and the no-op second run (iptables: also N managed rules converged on
an empty host, then --others kube-proxy rules of others loaded, then the no-op run); the tool's empty run (a state/manifest with one
no-op resource) is measured the same way, and marginal cost = run - empty run. A run still going
at --limit is stopped and reported with how far it got. Beside the wall time, each run's CPU time
(user + system of the tool and every process it waited for) and its marginal over the empty run's:
it hardly moves with the machine's load. Prints one table per kind to stdout.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTGUARD = os.environ.get("HOSTGUARD", os.path.join(REPO, "target/release/hostguard"))
SALT_VENV = os.environ.get("SALT_VENV", "/opt/hostguard-tests/salt-venv")
PUPPET_MODULES = "/usr/share/puppet/modules"
TMP = None
NS_COUNT = [0]
# The CPU seconds (user + system, of the run and every process it waited for) of the last timed()
# run: unlike the wall time it hardly moves with the machine's load, so it shows a wrapper's
# overhead over the tool's empty run on a busy machine too.
LAST_CPU = [None]


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


class Sandbox:
    """A fresh network namespace and a --root with /proc bound in, under TMP/NAME."""

    def __init__(self, name):
        NS_COUNT[0] += 1
        self.name = name
        self.ns = "hg-bench-%d-%d" % (os.getpid(), NS_COUNT[0])
        self.dir = os.path.join(TMP, "%s-%d" % (name, NS_COUNT[0]))
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
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, cwd=cwd)
    try:
        out, err = p.communicate(timeout=limit)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = None
    t = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return t, rc, out, err


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
            # Name what changed when it is only a few states (a false drift is then readable).
            ids = [r["__id__"] for r in ret.values() if r["changes"] and r["__id__"] != "hostguard"]
            if 0 < len(ids) <= 3:
                changed = "%d (%s)" % (changed, ", ".join(ids))
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


def run_pair(args, rows, tool, contender, size, setup, run, converged, before=None, between=None, complete=None, others=None):
    """Runs a contender `args.repeat` times, each in a fresh sandbox: setup, `before`, first run,
    `converged` (how many of `size` things are as wanted; None for an empty run), `between`, second
    run. A first run stopped at the cap is followed by no second run (it would go on converging,
    not be a no-op) unless `complete` puts the rest in place as the contender writes it; `others`
    counts, after the second run, the rules of others that must survive it."""
    if not wanted(args, contender):
        return
    firsts, seconds, conv, notes = [], [], None, []
    for rep in range(args.repeat):
        if any(r[1] is None and r[0] for r in firsts + seconds):
            # A contender stopped at the cap is not run again: its figure is a lower bound either
            # way, and another capped run costs the cap twice over for nothing.
            notes.append("1 run, not %d: stopped at the cap" % args.repeat)
            break
        box = Sandbox("%s-%s-%s-%d" % (tool, contender.split()[0], size, rep))
        try:
            ctx = setup(box)
            if before:
                before(box)
            firsts.append(run(box, ctx) + (LAST_CPU[0],))
            conv = converged(box) if converged else None
            stopped = firsts[-1][1] is None
            completed = complete(box) if stopped and complete else None
            if completed is not None:
                notes.append("stopped at the cap with %s of %s rules in; the other %s were then loaded as it writes "
                             "them (its last rule, port and name replaced), so its 2nd run is the no-op it would be"
                             % (num(completed), num(size), num(size - completed)))
            elif stopped:
                notes.append("stopped at the cap; no 2nd run (it would go on converging, not be a no-op)")
            if between:
                between(box)
            seconds.append(run(box, ctx) + (LAST_CPU[0],) if not stopped or completed is not None
                           else (0.0, None, "not run: 1st run stopped", None))
            if others:
                after = "after the 2nd run: %s" % others(box)
                if converged:
                    after += ", %s" % converged(box)
                notes.append(after)
        finally:
            box.close()
    if len(firsts) > 1:
        notes.append("%d runs, the median shown; 1st runs %s s, 2nd runs %s s" % (
            len(firsts), " / ".join(spell(r) for r in firsts), " / ".join(spell(r) for r in seconds)))
    rows.append(dict(tool=tool, contender=contender, size=size, first=median(firsts), second=median(seconds),
                     converged=conv, notes=sorted(set(notes)), load=os.getloadavg()[0]))
    r = rows[-1]
    print("  %s %s %s: %s, %s (load %.1f)" % (tool, contender, size, fmt_run(r["first"], r), fmt_run(r["second"], r), r["load"]),
          file=sys.stderr, flush=True)


def num(n):
    return "{:,}".format(n)


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


def iptables_converged(n):
    """How many of the n wanted INPUT rules are in place, in order. Each tool writes the rule its
    own way (puppetlabs-firewall: multiport and a comment), so a rule counts when it accepts the
    right port at the right place."""
    def converged(box):
        have = [re.search(r"--dports? (\d+) .*-j ACCEPT", r) for r in iptables_rules(box)]
        in_order = sum(1 for h, p in zip(have, ports(n)) if h and int(h.group(1)) == p)
        policy = "DROP" if ":INPUT DROP" in sh(box.argv(["iptables-save", "-t", "filter"])) else "ACCEPT"
        return Converged(in_order, n, "policy " + policy)
    return converged


def nft_converged(n, table):
    """The same for nft: `tcp dport N accept` in chain input of table ip TABLE."""
    def converged(box):
        r = subprocess.run(box.argv(["nft", "list", "chain", "ip", table, "input"]), capture_output=True, text=True)
        have = re.findall(r"^\s*tcp dport (\d+) accept$", r.stdout, re.M)
        in_order = sum(1 for h, p in zip(have, ports(n)) if int(h) == p)
        policy = "drop" if "policy drop;" in r.stdout else "accept" if r.returncode == 0 else "no chain"
        return Converged(in_order, n, "policy " + policy)
    return converged


class Converged:
    """What a run left in the kernel: `got` of `want` things in place, and a note."""

    def __init__(self, got, want, note=""):
        self.got, self.want, self.note = got, want, note

    def __str__(self):
        return "%d/%d rules%s" % (self.got, self.want, ", " + self.note if self.note else "")


# Salt's nftables states use their default table, ip filter; hostguard leaves ip filter to
# iptables-nft, so its document names a table of its own. The rules are the same. Salt 3008.4's
# nftables.set_policy reports a change on every run: its get_policy indexes the list that
# get_rules_json returns as if it were nft's whole JSON document, so it never finds a policy.
SALT_NFT_TABLE = "filter"
HG_NFT_TABLE = "hgbench"


def iptables_doc(n):
    return {"version": 1, "iptables": {"ipv4": {"filter": {"INPUT": {
        "policy": "DROP", "purge": True, "rules": ["-p tcp -m tcp --dport %d -j ACCEPT" % p for p in ports(n)]}}}}}


def nft_doc(n):
    return {"version": 1, "nftables": {"tables": {"ip " + HG_NFT_TABLE: {"chains": {"input": {
        "type": "filter", "hook": "input", "priority": 0, "policy": "drop",
        "rules": ["tcp dport %d accept" % p for p in ports(n)]}}}}}}


def salt_iptables_sls(n):
    sls = "INPUT-policy:\n  iptables.set_policy:\n    - table: filter\n    - chain: INPUT\n    - policy: DROP\n"
    return sls + "".join("accept-%d:\n  iptables.append:\n    - table: filter\n    - chain: INPUT\n    - proto: tcp\n"
                         "    - match: tcp\n    - dport: %d\n    - jump: ACCEPT\n    - save: False\n" % (p, p) for p in ports(n))


def salt_nftables_sls(n):
    """Salt's nftables states for the same rules, in its default table ip filter: the table, its
    input base chain, its policy, then one nftables.append per rule."""
    sls = ("table:\n  nftables.table_present:\n    - name: %s\n"
           "input-chain:\n  nftables.chain_present:\n    - name: input\n    - table: %s\n"
           "    - table_type: filter\n    - hook: input\n    - priority: 0\n"
           "input-policy:\n  nftables.set_policy:\n    - table: %s\n    - chain: input\n    - policy: drop\n"
           % ((SALT_NFT_TABLE,) * 3))
    return sls + "".join("accept-%d:\n  nftables.append:\n    - table: %s\n    - chain: input\n    - proto: tcp\n"
                         "    - dport: %d\n    - jump: accept\n" % (p, SALT_NFT_TABLE, p) for p in ports(n))


def firewall_major():
    """puppetlabs-firewall's major version, from the installed module's metadata."""
    try:
        return int(json.load(open(os.path.join(PUPPET_MODULES, "firewall", "metadata.json")))["version"].split(".")[0])
    except (OSError, ValueError, KeyError):
        return 0


def puppet_firewall_pp(n, major):
    """puppetlabs-firewall's resources for the rules: 8.x takes `jump` and `protocol => 'IPv4'`
    (`action` and `provider` are gone), older majors `action`."""
    pp = "firewallchain { 'INPUT:filter:IPv4': policy => drop }\n"
    verdict = "jump => 'accept', protocol => 'IPv4'" if major >= 8 else "action => 'accept'"
    return pp + "".join("firewall { '%05d accept %d': chain => 'INPUT', proto => 'tcp', dport => %d, %s }\n"
                        % (i + 100, p, p, verdict) for i, p in enumerate(ports(n)))


def complete_as_the_peer_writes(box, n):
    """After a run stopped at the cap with K of n rules in: appends the other n - K rules to INPUT
    spelled as the peer wrote its last one (its port and its resource name replaced), so that its
    second run is the no-op it would be after a finished first run. Returns K, or None when the
    rules it wrote are not in order (then nothing is added)."""
    have = iptables_rules(box)
    k = iptables_converged(n)(box).got
    if k == 0 or k != len(have) or k == n:
        return k if k == n else None
    last, port = have[-1], ports(n)[k - 1]
    name = "%05d accept %d" % (k - 1 + 100, port)
    at_port = re.compile(r"(--dports? )%d(?= )" % port)
    if name not in last or len(at_port.findall(last)) != 1:
        return None
    lines = [at_port.sub(r"\g<1>%d" % p, last.replace(name, "%05d accept %d" % (i + 100, p)))
             for i, p in enumerate(ports(n)) if i >= k]
    restore(box, "*filter\n" + "\n".join(lines) + "\nCOMMIT\n")
    return k


def restore(box, text):
    subprocess.run(box.argv(["iptables-restore", "--noflush"]), input=text, text=True, check=True, capture_output=True)


def load_others(n_others):
    """Loads about n_others kube-proxy rules (bench/lib/cases.py) into the sandbox's nat table:
    rules of others that no contender owns. Returns a counter of them for the check after."""
    text, count, _ = cases.kube(n_others)

    def load(box):
        restore(box, text)

    def kept(box):
        got = sum(1 for l in sh(box.argv(["iptables-save", "-t", "nat"])).splitlines() if l.startswith("-A "))
        return "%d/%d others kept" % (got, count)
    return load, kept, count


def bench_iptables(args):
    rows, foreign_rows = [], []
    salt = salt_runner(args)
    none = lambda b: None
    tools = args.tools.split(",")
    major = firewall_major()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    for n in sizes:
        ipt_doc, nft = iptables_doc(n), nft_doc(n)
        # Each size has its own empty runs, measured next to it: the machine's load drifts.
        if "puppet" in tools:
            run_pair(args, rows, "puppet", "empty run", n, none, puppet_runner(args, lambda b: PUPPET_EMPTY), None)
            run_pair(args, rows, "puppet", "puppetlabs-firewall", n, none,
                     puppet_runner(args, lambda b, m=puppet_firewall_pp(n, major): m), iptables_converged(n),
                     complete=lambda b, n=n: complete_as_the_peer_writes(b, n))
            run_pair(args, rows, "puppet", "hostguard class", n, none,
                     puppet_runner(args, lambda b, d=ipt_doc: puppet_hostguard(b, "iptables", d["iptables"])), iptables_converged(n))
        if "salt" in tools:
            run_pair(args, rows, "salt", "empty run", n, salt_setup(lambda b: SALT_EMPTY), salt, None)
            run_pair(args, rows, "salt", "iptables.append", n, salt_setup(lambda b, s=salt_iptables_sls(n): s), salt,
                     iptables_converged(n))
            run_pair(args, rows, "salt", "hostguard.converged", n, salt_setup(lambda b, d=ipt_doc: salt_hostguard_sls(b, d)),
                     salt, iptables_converged(n))
            run_pair(args, rows, "salt", "nftables.append", n, salt_setup(lambda b, s=salt_nftables_sls(n): s), salt,
                     nft_converged(n, SALT_NFT_TABLE))
            run_pair(args, rows, "salt", "hostguard.converged (nftables)", n,
                     salt_setup(lambda b, d=nft: salt_hostguard_sls(b, d)), salt, nft_converged(n, HG_NFT_TABLE))
        run_pair(args, rows, "-", "hostguard apply (bare)", n, bare_setup(ipt_doc), bare_runner(args), iptables_converged(n))
        run_pair(args, rows, "-", "hostguard apply (bare, nftables)", n, bare_setup(nft), bare_runner(args), nft_converged(n, HG_NFT_TABLE))
    if rows:
        print_table("iptables and nftables, %s INPUT rules" % " / ".join("{:,}".format(n) for n in sizes), rows, args.limit)

    if args.others:
        # The case users complain of: a few managed rules on a host full of others' rules. Each
        # contender converges its rules on the empty host, then the others are loaded and the
        # second run, a no-op, is timed.
        n = args.managed
        load, kept, count = load_others(args.others)
        ipt_doc, nft = iptables_doc(n), nft_doc(n)
        f = foreign_rows
        if "puppet" in tools:
            run_pair(args, f, "puppet", "empty run", n, none, puppet_runner(args, lambda b: PUPPET_EMPTY), None, before=load, others=kept)
            run_pair(args, f, "puppet", "puppetlabs-firewall", n, none,
                     puppet_runner(args, lambda b, m=puppet_firewall_pp(n, major): m), iptables_converged(n), between=load, others=kept)
            run_pair(args, f, "puppet", "hostguard class", n, none,
                     puppet_runner(args, lambda b, d=ipt_doc: puppet_hostguard(b, "iptables", d["iptables"])), iptables_converged(n),
                     between=load, others=kept)
        if "salt" in tools:
            run_pair(args, f, "salt", "empty run", n, salt_setup(lambda b: SALT_EMPTY), salt, None, before=load, others=kept)
            run_pair(args, f, "salt", "iptables.append", n, salt_setup(lambda b, s=salt_iptables_sls(n): s), salt,
                     iptables_converged(n), between=load, others=kept)
            run_pair(args, f, "salt", "hostguard.converged", n, salt_setup(lambda b, d=ipt_doc: salt_hostguard_sls(b, d)),
                     salt, iptables_converged(n), between=load, others=kept)
            run_pair(args, f, "salt", "nftables.append", n, salt_setup(lambda b, s=salt_nftables_sls(n): s), salt,
                     nft_converged(n, SALT_NFT_TABLE), between=load, others=kept)
            run_pair(args, f, "salt", "hostguard.converged (nftables)", n,
                     salt_setup(lambda b, d=nft: salt_hostguard_sls(b, d)), salt, nft_converged(n, HG_NFT_TABLE), between=load, others=kept)
        run_pair(args, f, "-", "hostguard apply (bare)", n, bare_setup(ipt_doc), bare_runner(args), iptables_converged(n),
                 between=load, others=kept)
        print_table("%d managed INPUT rules on a host holding %s other rules (kube-proxy's, in nat); "
                    "1st run: the converge on the empty host, 2nd run: the no-op run once the others are in"
                    % (n, "{:,}".format(count)), foreign_rows, args.limit)


# ---------------------------------------------------------------- table

def median(runs):
    """The median of repeated runs (the machine is shared: the fastest run would flatter whichever
    contender had the quietest minute), keeping the last run's counts. A run stopped at the cap is
    shown instead when there is one: the figure is then a lower bound."""
    stopped = [r for r in runs if r[1] is None]
    if stopped:
        best = max(stopped, key=lambda r: r[0])
    else:
        best = sorted(runs, key=lambda r: r[0])[(len(runs) - 1) // 2]
    cpus = sorted(r[3] for r in runs if r[3] is not None and r[1] is not None)
    return (best[0], best[1], runs[-1][2], cpus[(len(cpus) - 1) // 2] if cpus and not stopped else None)


def spell(r):
    if r[1] is None:
        return ">= %.0f" % r[0] if r[0] else "-"
    return "%.2f" % r[0] + (" (CPU %.2f)" % r[3] if r[3] is not None else "")


def wanted(args, contender):
    """--contenders: a comma-separated list of substrings; a contender runs when its name holds one."""
    return not args.contenders or any(w and w in contender for w in args.contenders.split(","))


def fmt_run(r, row):
    t, rc, changed = r[:3]
    if rc is None:
        if not t:
            return "not run"
        conv = row["converged"]
        if r is row["first"] and isinstance(conv, Converged):
            return ">= %.0f s (stopped at the cap, %s of %s rules in)" % (t, num(conv.got), num(conv.want))
        return ">= %.0f s (stopped at the cap)" % t
    return "%.2f" % t


def print_table(title, rows, limit):
    print("## %s" % title)
    print()
    print("| tool | contender | size | 1st run s | 2nd run s | marginal 1st s | marginal 2nd s | CPU 1st / 2nd s "
          "| marginal CPU 1st / 2nd s | converged after 1st | changes reported on 2nd (false drift) | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    empty = {(r["tool"], r["size"]): r for r in rows if r["contender"] == "empty run"}
    for r in rows:
        e = empty.get((r["tool"], r["size"]))
        m1 = m2 = mc = "-"
        if e and r is not e:
            m1, m2 = marginal(r["first"], e["first"]), marginal(r["second"], e["second"])
            mc = "%s / %s" % (cpu_marginal(r["first"], e["first"]), cpu_marginal(r["second"], e["second"]))
        cpu = "%s / %s" % (cpu_of(r["first"]), cpu_of(r["second"]))
        conv = "-" if r["converged"] is None else str(r["converged"]) if not isinstance(r["converged"], int) else "%s/%s" % (r["converged"], r["size"])
        ch2 = r["second"][2]
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f |" % (
            r["tool"], r["contender"], num(r["size"]), fmt_run(r["first"], r), fmt_run(r["second"], r),
            m1, m2, cpu, mc, conv, "-" if ch2 is None else ch2, r["load"]))
    print()
    notes = [(r, n) for r in rows for n in r.get("notes", [])]
    for r, n in notes:
        print("- %s %s, %s: %s" % (r["tool"], r["contender"], num(r["size"]), n))
    if notes:
        print()
    # Ratios peer / hostguard per tool and size: each peer against the hostguard contender of the
    # same layer (iptables or nftables).
    print("| tool | size | peer | whole 1st | whole 2nd | marginal 1st | marginal 2nd |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for tool in ("salt", "puppet"):
        for size in sorted({r["size"] for r in rows if r["tool"] == tool}):
            e = empty.get((tool, size))
            here = [r for r in rows if r["tool"] == tool and r["size"] == size]
            for p in here:
                if "hostguard" in p["contender"] or p["contender"] == "empty run":
                    continue
                nft = p["contender"].startswith("nftables")
                for hg in (r for r in here if "hostguard" in r["contender"] and ("nftables" in r["contender"]) == nft):
                    cells = [ratio(p[run], hg[run], 0) for run in ("first", "second")]
                    cells += [ratio(p[run], hg[run], e[run][0] if e else 0) for run in ("first", "second")]
                    print("| %s | %s | %s / %s | %s |" % (tool, num(size), p["contender"], hg["contender"], " | ".join(cells)))
    print()
    sys.stdout.flush()


def cpu_of(r):
    """A run's CPU seconds; none for a run stopped at the cap (killed: its children's time is lost)."""
    return "-" if len(r) < 4 or r[3] is None else "%.2f" % r[3]


def cpu_marginal(r, e):
    if len(r) < 4 or r[3] is None or e[3] is None:
        return "-"
    return "%+.2f" % (r[3] - e[3])


def marginal(r, e):
    """A run minus the tool's empty run; a stopped run's is a lower bound."""
    if r[1] is None:
        return ">= %.0f" % (r[0] - e[0]) if r[0] else "-"
    return "%.2f" % (r[0] - e[0])


def ratio(p, h, base):
    pt, hp = p[0] - base, h[0] - base
    if h[1] is None or (p[1] is None and not p[0]):
        return "n/a (not run)"
    if hp <= 0.005:
        return "peer %+.2f s, hostguard below the noise (%+.2f s)" % (pt, hp)
    prefix = ">= " if p[1] is None else ""
    return "%s%.1fx" % (prefix, pt / hp)


def versions():
    """The userspace and the tools the contenders ran with, as one line."""
    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "none"

    def module(name):
        try:
            return json.load(open(os.path.join(PUPPET_MODULES, name, "metadata.json")))["version"]
        except (OSError, ValueError, KeyError):
            return "none"
    release = dict(l.split("=", 1) for l in open("/etc/os-release").read().splitlines() if "=" in l)
    return ("%s (%s); %s; Puppet %s, puppetlabs-firewall %s, puppetlabs-stdlib %s; %s; %s; %s; %s"
            % (first_line([HOSTGUARD, "--version"]), os.environ.get("HOSTGUARD_COMMIT", "commit not given"),
               release.get("PRETTY_NAME", "?").strip('"'), first_line(["puppet", "--version"]), module("firewall"),
               module("stdlib"), first_line([os.path.join(SALT_VENV, "bin/salt-call"), "--version"]),
               first_line([os.path.join(SALT_VENV, "bin/python"), "--version"]), first_line(["iptables", "--version"]),
               first_line(["nft", "--version"])))


def main():
    global TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["sysctl", "iptables"])
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--sizes", default="200,1000", help="iptables: rule counts (empty: none)")
    ap.add_argument("--managed", type=int, default=100, help="iptables: managed rules of the no-op case")
    ap.add_argument("--others", type=int, default=4000, help="iptables: others' rules of the no-op case (0: no such case)")
    ap.add_argument("--tools", default="puppet,salt", help="iptables: which tools' contenders run")
    ap.add_argument("--limit", type=float, default=300, help="per-run time cap in seconds")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per contender, the median counts; one run for a contender stopped at the cap")
    ap.add_argument("--contenders", default="",
                    help="run only the contenders whose name holds one of these comma-separated substrings, "
                         "e.g. 'empty run,hostguard' (default: all)")
    args = ap.parse_args()
    TMP = tempfile.mkdtemp(prefix="hostguard-bench-")
    try:
        print("# %s, %s, %s, load average at start %.1f" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                " ".join(os.uname()[i] for i in (0, 2, 4)),
                                "%d cores" % os.cpu_count(), os.getloadavg()[0]))
        print()
        print(versions())
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

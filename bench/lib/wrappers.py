"""bench/wrappers: per tool, the wrapper's overhead over the tool's empty run plus the binary's own
time (SPEC section 7 wrappers; issue 18's measure). See bench/wrappers for the method."""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTGUARD = os.environ["HOSTGUARD"]
SALT = os.environ.get("SALT_VENV", "/opt/hostguard-tests/salt-venv") + "/bin/salt-call"


def timed(argv, env=None):
    """Wall seconds and CPU seconds (user + system of the command and every process it waited
    for: facter's, hostguard's) of one run. CPU time moves far less than wall time when other
    work shares the cores, so it is the figure that says something on a loaded machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    took = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in (0, 2):
        raise SystemExit("bench/wrappers: {} exited {}:\n{}".format(argv[:4], p.returncode, p.stderr.decode()[-2000:]))
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def version(argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # "5.5.0", "salt-call 3008.4 (Argon)", "3.1.2": the first word that starts with a digit.
    words = [w for w in p.stdout.decode().split() if w[:1].isdigit()]
    return words[0] if p.returncode == 0 and words else "?"


def host(tmp, n):
    """A --root holding n sysctl keys as plain files, and the document that keeps them as they are."""
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, "proc/sys/vm"), exist_ok=True)
    values = {}
    for i in range(n):
        key = "vm.hg_bench_{}".format(i)
        with open(os.path.join(root, "proc/sys/vm", key.split(".")[1]), "w") as f:
            f.write("1\n")
        values[key] = 1
    doc = {"version": 1, "sysctl": {"values": values}}
    path = os.path.join(tmp, "doc.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return root, doc, path


def puppet(tmp, root, doc_path):
    p = os.path.join(tmp, "puppet")
    for d in ("conf", "var", "code", "log", "run", "public"):
        os.makedirs(os.path.join(p, d), exist_ok=True)
    mods = os.path.join(tmp, "modules")
    os.makedirs(mods, exist_ok=True)
    if not os.path.exists(os.path.join(mods, "hostguard")):
        os.symlink(os.path.join(REPO, "puppet-module"), os.path.join(mods, "hostguard"))
    empty = os.path.join(tmp, "empty.pp")
    with open(empty, "w") as f:
        f.write("notify { 'empty': loglevel => debug }\n")
    site = os.path.join(tmp, "site.pp")
    with open(site, "w") as f:
        f.write("hostguard_state {{ 'bench': document => file('{}'), binary => '{}', root => '{}' }}\n".format(doc_path, HOSTGUARD, root))
    base = ["puppet", "apply", "--detailed-exitcodes"] + ["--{}dir={}/{}".format(d, p, d) for d in ("conf", "var", "code", "log", "run", "public")] + ["--modulepath", mods]
    return base + [empty], base + [site]


def salt(tmp, root, doc):
    s = os.path.join(tmp, "salt")
    os.makedirs(s, exist_ok=True)
    with open(os.path.join(s, "minion"), "w") as f:
        f.write("id: bench\nroot_dir: {0}/root\nfile_client: local\nfile_roots:\n  base: [{1}]\nlog_file: {0}/minion.log\n".format(s, os.path.join(REPO, "salt-states")))
    base = [SALT, "--local", "-c", s, "--out=json"]
    subprocess.run(base + ["saltutil.sync_all"], check=True, stdout=subprocess.DEVNULL)
    empty = base + ["state.single", "test.nop", "name=empty"]
    run = base + ["state.single", "hostguard.converged", "name=bench", "binary=" + HOSTGUARD, "root=" + root,
                  "document=" + json.dumps({k: v for k, v in doc.items() if k != "version"})]
    return empty, run


def chef(root, doc_path):
    # No Chef client is installable here: the cookbook's library (what the resource calls) against
    # a bare ruby start.
    lib = os.path.join(REPO, "chef-cookbook/libraries/hostguard.rb")
    empty = ["ruby", "-e", "require 'json'; require 'mixlib/shellout'"]
    run = ["ruby", "-e", "require ARGV[0]; r = Hostguard::Runner.new(binary: ARGV[1], root: ARGV[2]).plan(Hostguard.document(JSON.parse(File.read(ARGV[3])))); exit r.exitstatus",
           lib, HOSTGUARD, root, doc_path]
    return empty, run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,1000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tools", default="puppet,salt,chef", help="a comma-separated subset of puppet,salt,chef")
    args = ap.parse_args()
    wanted = args.tools.split(",")
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        tmp = tempfile.mkdtemp(prefix="hostguard-bench-wrappers.")
        try:
            root, doc, doc_path = host(tmp, n)
            binary = [HOSTGUARD, "plan", "--format", "json", "--root", root, doc_path]
            tools = {}
            if "puppet" in wanted:
                tools["Puppet {} (puppet apply)".format(version(["puppet", "--version"]))] = puppet(tmp, root, doc_path)
            if "salt" in wanted:
                tools["Salt {} (salt-call --local)".format(version([SALT, "--version"]))] = salt(tmp, root, doc)
            if "chef" in wanted:
                tools["Chef library (Ruby {}, no Chef client)".format(version(["ruby", "-e", "puts RUBY_VERSION"]))] = chef(root, doc_path)
            for name, (empty, run) in tools.items():
                timed(run)  # warm: caches, compiled catalogs, the first plan
                t = {"empty": [], "run": [], "binary": []}
                for _ in range(args.runs):
                    t["empty"].append(timed(empty))
                    t["binary"].append(timed(binary))
                    t["run"].append(timed(run))
                row = [name, n]
                for i in (0, 1):  # wall, then CPU
                    med = {k: statistics.median(x[i] for x in v) for k, v in t.items()}
                    over = med["run"] - med["empty"] - med["binary"]
                    row += [med["empty"], med["binary"], med["run"], over, 100 * over / (med["empty"] + med["binary"])]
                rows.append(row)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("Median of {} runs each, interleaved. Wall seconds, then CPU seconds (user + system, child processes included).".format(args.runs))
    print()
    print("| tool | keys | empty run | hostguard plan | wrapper run | overhead | / (empty + plan) "
          "| CPU: empty | plan | wrapper | overhead | / (empty + plan) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print("| {} | {} | {:.2f} s | {:.3f} s | {:.2f} s | {:+.2f} s | {:+.0f}% | {:.2f} s | {:.3f} s | {:.2f} s | {:+.2f} s | {:+.0f}% |".format(*r))


if __name__ == "__main__":
    main()

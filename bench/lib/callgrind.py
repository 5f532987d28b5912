"""bench/callgrind: hostguard's own instructions (valgrind --tool=callgrind, the hostguard process
only: iptables-save/-restore and other children are not counted) for issue 20's three cases.
Instruction counts do not depend on the machine's load, so two builds can be compared on a busy
machine. Run inside a private network namespace by bench/callgrind."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402


def sh(argv, stdin=None, ok=(0,)):
    r = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode not in ok:
        sys.exit(f"bench/callgrind: {argv[:4]} exited {r.returncode}: {r.stderr[-800:]}")
    return r.stdout


def counted(args, argv, name, ok):
    """Instructions hostguard executes for argv; keeps the profile when --keep is given."""
    out = os.path.join(args.keep or args.tmp, f"callgrind.{name}")
    sh(["valgrind", "--tool=callgrind", "--trace-children=no", f"--callgrind-out-file={out}", "-q"] + argv, ok=ok)
    total = None
    with open(out) as f:
        for line in f:
            m = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if m:
                total = int(m.group(1))
    if total is None:
        sys.exit(f"bench/callgrind: no total in {out}")
    return total


def row(case, size, unit, plan, apply, again=None):
    cells = [case, f"{size:,}", f"{plan / 1e6:.1f}", f"{plan / size:,.0f}", f"{apply / 1e6:.1f}", f"{apply / size:,.0f}"]
    cells.append("-" if again is None else f"{again / size:,.0f}")
    print("| " + " | ".join(cells) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--sizes", default="1000,5000,10000", help="owned rules of the iptables case")
    ap.add_argument("--foreign", type=int, default=50000, help="kube-proxy rules of the foreign case (0: skip)")
    ap.add_argument("--containers", type=int, default=1000, help="configs of the lxc case (0: skip)")
    ap.add_argument("--backends", default="legacy,nft")
    ap.add_argument("--keep", help="directory to keep the callgrind.* profiles in (for callgrind_annotate)")
    args = ap.parse_args()
    args.tmp = tempfile.mkdtemp(prefix="hg-callgrind-")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    hg = args.binary
    try:
        print("| case | size | plan Mi | plan instr. / unit | apply Mi | apply instr. / unit | apply again instr. / unit |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for backend in args.backends.split(","):
            restore = f"iptables-{backend}-restore"
            for n in [int(x) for x in args.sizes.split(",") if x]:
                rules, floor = cases.owned(n)
                doc = cases.write_json(os.path.join(args.tmp, f"own-{backend}-{n}.json"), cases.owned_doc(backend, rules))
                base = [hg, "--root", args.tmp, "--format", "json"]
                sh([restore], cases.EMPTY["filter"])
                apply = counted(args, base + ["apply", doc], f"{backend}-{n}-apply", (2,))
                plan = counted(args, base + ["plan", doc], f"{backend}-{n}-plan", (0,))
                sh([restore], cases.EMPTY["filter"])
                row(f"iptables {backend}, rules (per rule)", n, "rule", plan, apply)
            if args.foreign:
                text, count, _ = cases.kube(args.foreign)
                sh([restore], cases.EMPTY["nat"])
                sh([restore, "--noflush"], text)
                rules, floor = cases.kube_owned(100)
                doc = cases.write_json(os.path.join(args.tmp, f"kube-{backend}.json"), cases.kube_doc(backend, rules))
                base = [hg, "--root", args.tmp, "--format", "json"]
                apply = counted(args, base + ["apply", doc], f"{backend}-kube-apply", (2,))
                plan = counted(args, base + ["plan", doc], f"{backend}-kube-plan", (0,))
                sh([restore], cases.EMPTY["nat"])
                # Per rule read: the foreign rules are what the plan has to parse.
                row(f"iptables {backend}, 100 owned + {count:,} foreign (per table rule)", count + 100, "rule", plan, apply)
        if args.containers:
            n = args.containers
            root = os.path.join(args.tmp, "lxc")
            doc = cases.write_json(os.path.join(args.tmp, "lxc.json"), cases.lxc_root(root, n))
            base = [hg, "--root", root, "--format", "json"]
            plan = counted(args, base + ["plan", doc], "lxc-plan", (2,))
            apply = counted(args, base + ["apply", doc], "lxc-apply", (2,))
            again = counted(args, base + ["apply", doc], "lxc-again", (0,))
            row("lxc configs, all drifting (per config)", n, "config", plan, apply, again)
    finally:
        shutil.rmtree(args.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

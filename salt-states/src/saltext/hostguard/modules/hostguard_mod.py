"""
Execution module for hostguard: runs the binary as an argument vector and returns its JSON report.

    salt-call hostguard.plan
    salt-call hostguard.apply document='{"sysctl": {"values": {"net.ipv4.ip_forward": 1}}}'
    salt-call hostguard.audit
    salt-call hostguard.show sysctl='[net.ipv4]'

Defaults come from the minion config or pillar: ``hostguard:binary`` (``/usr/local/bin/hostguard``),
``hostguard:root``, ``hostguard:extra_args`` (options of every command), ``hostguard:apply_args``
(options of apply only, such as ``--backup-dir``), ``hostguard:confirm_probe`` and ``hostguard:confirm``
(see ``confirm_args``), and ``hostguard:document`` for the document when none is given. A ``document`` argument may also be a path or an https:// URL that hostguard reads itself.

No value is compared here: hostguard decides; this module only runs it and maps exit codes
(0 in sync, 2 drift/changed, 4 failed, 6 changed and failed, 1 unreadable document or host).

Part of the ``saltext.hostguard`` Salt extension (``pip install ./salt-states``); the formula's
``_modules/hostguard.py`` is this same file, for file_roots users.
"""

import json
import os

from salt.exceptions import CommandExecutionError

__virtualname__ = "hostguard"

DEFAULT_BINARY = "/usr/local/bin/hostguard"


def __virtual__():
    return __virtualname__


def default_state_file(root=None):
    """Where a real run saves the document: ``/etc/hostguard/state.json`` under ``root``, so a lab
    run with a root never writes the machine's own /etc."""
    return os.path.join(str(root) if root else "/", "etc/hostguard/state.json")


def _conf(key, value, default=None):
    if value is not None:
        return value
    return __salt__["config.get"]("hostguard:" + key, default)


def run(command, document=None, binary=None, root=None, extra_args=None, state_file=None, args=None):
    """
    Run ``hostguard COMMAND`` and return ``{"retcode", "report", "stderr", "argv"}`` without judging
    the exit code. The states use this; on the command line prefer plan/apply/audit/show.

    document
        The state document as a dict (sent on standard input; ``apply`` also saves it to
        ``state_file`` when that is given, with ``--save-state``), or a path/URL string
        hostguard reads itself.
        Defaults to pillar/config ``hostguard:document``.
    args
        Arguments of this command (``--fail-on high``) placed before the global ones.
    """
    binary = _conf("binary", binary, DEFAULT_BINARY)
    root = _conf("root", root)
    extra_args = [str(a) for a in _conf("extra_args", extra_args, [])]
    argv = [binary, command, "--format", "json"]
    if root:
        argv += ["--root", str(root)]
    argv += [str(a) for a in (args or [])] + extra_args

    stdin = None
    if command in ("plan", "apply", "validate", "audit"):
        if document is None:
            document = __salt__["config.get"]("hostguard:document", None)
        if document is not None and not isinstance(document, (dict, str)):
            raise CommandExecutionError(
                "hostguard {}: document must be a mapping (or a path or URL string), not {}".format(
                    command, type(document).__name__
                )
            )
        if isinstance(document, dict):
            text = json.dumps(dict({"version": 1}, **document), indent=2, sort_keys=True) + "\n"
            stdin = text
            if state_file and command == "apply":
                # The binary saves it there once valid, and only when it changed.
                argv += ["--save-state", str(state_file)]
            argv.append("-")
        elif document:
            argv.append(str(document))
        elif command != "audit":
            raise CommandExecutionError("hostguard {}: no document (give document= or pillar hostguard:document)".format(command))

    argv[4:4] = _ca_args(argv)
    if not os.access(binary, os.X_OK):
        raise CommandExecutionError("hostguard binary {} is missing or not executable".format(binary))
    out = __salt__["cmd.run_all"](
        argv, python_shell=False, stdin=stdin, ignore_retcode=True, output_loglevel="quiet", rstrip=False
    )
    report = None
    if out.get("stdout", "").strip():
        try:
            report = json.loads(out["stdout"])
        except ValueError:
            report = None
    return {"retcode": out["retcode"], "report": report, "stderr": out.get("stderr", ""), "argv": argv}


def error_message(result):
    """hostguard's own words for a run that did not succeed."""
    report = result.get("report") or {}
    failed = [r for r in report.get("resources", []) if r.get("status") == "failed"]
    if failed:
        detail = "; ".join("{}: {}".format(r["id"], r.get("message", "")) for r in failed)
    else:
        detail = (result.get("stderr") or "").strip() or "no report on standard output"
    return "hostguard exited {}: {}".format(result["retcode"], detail)


def _checked(result, ok=(0, 2), fail=()):
    """The report, with salt-call's exit code set for 4 and 6 (some changes failed) and for the
    codes in ``fail`` (audit's 2 with ``fail_on``); any other failure raises with hostguard's words."""
    if result["retcode"] in fail and result["report"] is not None:
        __context__["retcode"] = result["retcode"]
        return result["report"]
    if result["retcode"] not in ok or result["report"] is None:
        if result["retcode"] in (4, 6) and result["report"] is not None:
            # The report says what changed and what failed; the exit code of salt-call says it failed.
            __context__["retcode"] = result["retcode"]
            return result["report"]
        raise CommandExecutionError(error_message(result))
    return result["report"]


def master_target():
    """The minion's own master as hostguard's ``--confirm-probe`` target: ``master`` (the first of
    a multi-master list) and ``master_port`` (the port minions return to, 4506 by default) from the
    minion config — the connection a firewall change could cut."""
    master = __opts__.get("master") or "salt"
    if isinstance(master, (list, tuple)):
        master = master[0]
    host = str(master)
    if ":" in host and not host.startswith("["):
        host = "[" + host + "]"
    return "{}:{}".format(host, __opts__.get("master_port") or 4506)


def confirm_args(confirm=None, confirm_probe=None):
    """
    The options of an unattended ``apply --confirm SECONDS --confirm-probe TARGET``: hostguard
    probes TARGET after changing the firewall and keeps the change on an answer, rolls its own
    edits back (the state fails) when none comes within SECONDS.

    confirm_probe
        ``True`` (or ``master``): this minion's master, ``master:master_port`` (4506); a string:
        ``HOST:PORT`` or an ``https://`` URL as hostguard takes it, its certificate checked
        against the system's CAs and the minion's ``ca_bundle`` when set (``run`` adds it as
        ``--ca-file`` unless the options have one); unset or ``False``: no probe.
    confirm
        SECONDS, 60 by default.
    """
    confirm_probe = _conf("confirm_probe", confirm_probe)
    if confirm_probe is None or confirm_probe is False or confirm_probe == "":
        return []
    target = master_target() if confirm_probe is True or confirm_probe == "master" else str(confirm_probe)
    seconds = _conf("confirm", confirm, 60)
    try:
        seconds = int(seconds)
    except (TypeError, ValueError):
        raise CommandExecutionError("hostguard: confirm must be a number of seconds, not {!r}".format(seconds))
    return ["--confirm", str(seconds), "--confirm-probe", target]


def _ca_args(argv):
    """``--ca-file`` with the minion's own ``ca_bundle`` (the CA file Salt's own https requests
    trust) for an ``https://`` confirm_probe, so a target signed by a private CA the minion is
    set up for answers; nothing when ``ca_bundle`` is unset or argv already names a ``--ca-file``
    (hostguard takes it once)."""
    if "--confirm-probe" not in argv or "--ca-file" in argv:
        return []
    if not argv[argv.index("--confirm-probe") + 1].startswith("https://"):
        return []
    ca = __opts__.get("ca_bundle")
    return ["--ca-file", str(ca)] if ca and os.path.isfile(str(ca)) else []


def plan(document=None, binary=None, root=None, extra_args=None):
    """
    Show drift and change nothing: the report of ``hostguard plan``.

    CLI Example:

    .. code-block:: bash

        salt '*' hostguard.plan
    """
    return _checked(run("plan", document, binary, root, extra_args))


def apply(document=None, binary=None, root=None, extra_args=None, state_file=None, apply_args=None,
          confirm=None, confirm_probe=None):
    """
    Converge the host: the report of ``hostguard apply``. Exit 4 or 6 (some changes failed, or a
    firewall change whose ``confirm_probe`` did not answer was rolled back) returns the report and
    makes salt-call exit non-zero.

    CLI Example:

    .. code-block:: bash

        salt '*' hostguard.apply
        salt '*' hostguard.apply confirm_probe=True
    """
    args = [str(a) for a in _conf("apply_args", apply_args, [])] + confirm_args(confirm, confirm_probe)
    return _checked(run("apply", document, binary, root, extra_args, state_file, args=args))


def audit(document=None, fail_on=None, emit_state=False, binary=None, root=None, extra_args=None):
    """
    Hardening findings for the host (SPEC section 8), as hostguard prints them. With ``fail_on``,
    a finding at or above that severity makes salt-call exit non-zero (hostguard's exit code 2).

    CLI Example:

    .. code-block:: bash

        salt '*' hostguard.audit fail_on=high
    """
    args = []
    if fail_on:
        args += ["--fail-on", str(fail_on)]
    if emit_state:
        args.append("--emit-state")
    return _checked(run("audit", document, binary, root, extra_args, args=args), fail=(2,) if fail_on else ())


def show(sysctl=None, cgroup=None, lxcpath=None, binary=None, root=None, extra_args=None):
    """
    The host's current state as a state document.

    CLI Example:

    .. code-block:: bash

        salt '*' hostguard.show sysctl='[net.ipv4, vm]'
    """
    args = []
    for prefix in sysctl or []:
        args += ["--sysctl", str(prefix)]
    for prefix in cgroup or []:
        args += ["--cgroup", str(prefix)]
    if lxcpath:
        args += ["--lxcpath", str(lxcpath)]
    return _checked(run("show", None, binary, root, extra_args, args=args), ok=(0,))


def validate(document=None, binary=None):
    """
    Check a document and touch nothing.

    CLI Example:

    .. code-block:: bash

        salt '*' hostguard.validate
    """
    return _checked(run("validate", document, binary), ok=(0,))


def version(binary=None):
    """
    The version of the hostguard binary.

    CLI Example:

    .. code-block:: bash

        salt '*' hostguard.version
    """
    binary = _conf("binary", binary, DEFAULT_BINARY)
    out = __salt__["cmd.run_all"]([binary, "--version"], python_shell=False, ignore_retcode=True)
    if out["retcode"] != 0:
        raise CommandExecutionError("{} --version exited {}: {}".format(binary, out["retcode"], out["stderr"]))
    return out["stdout"].strip().replace("hostguard ", "", 1)

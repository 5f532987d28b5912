"""
State module for hostguard: ``hostguard.converged`` converges the host to a state document,
``hostguard.audited`` fails a highstate on hardening findings.

.. code-block:: yaml

    hostguard:
      hostguard.converged:
        - document:
            sysctl:
              values:
                net.ipv4.ip_forward: 1

It runs ``hostguard plan`` first, as Puppet and Chef wrappers do. With ``test=True`` it stops
there: result ``None`` and ``changes`` holding the drift, or ``False`` when the plan already says a
change would fail. Otherwise, when there is drift, it runs ``hostguard apply``: ``changes`` holds
what changed; exit codes 1, 4 and 6 make the result ``False`` with hostguard's message, and what
did change is still in ``changes``.

Part of the ``saltext.hostguard`` Salt extension; the formula's ``_states/hostguard.py`` is this
same file, for file_roots users.
"""

import os
import re

from salt.exceptions import CommandExecutionError

__virtualname__ = "hostguard"

SHA256 = re.compile(r"\A[0-9a-fA-F]{64}\Z")


def __virtual__():
    if "hostguard.run" in __salt__:
        return __virtualname__
    return (False, "the hostguard execution module is not loaded (install saltext.hostguard, or saltutil.sync_all)")


def _change(resource):
    """One entry of ``changes`` in Salt's own shapes: ``old``/``new`` when the resource has a value
    that differs, and a file's or a chain's line diff as one string, as ``file.managed`` gives.
    hostguard's apply report already holds a changed resource's value before the change as
    ``current``, so a plan's report and an apply's map the same way."""
    change = {}
    current = resource.get("current")
    desired = resource.get("desired")
    if current != desired:
        change["old"] = current
        change["new"] = desired
    if resource.get("diff"):
        change["diff"] = "\n".join(resource["diff"])
    if resource.get("message"):
        change["message"] = resource["message"]
    if resource.get("restart_required"):
        change["restart_required"] = True
    return change


def _failures(resources):
    return "; ".join("{}: {}".format(r["id"], r.get("message", "")) for r in resources if r["status"] == "failed")


def _install_pending(binary, download_url, download_sha256):
    """test=True on a minion where the formula would first download the binary: say so, as Chef's
    why-run does, instead of failing on a binary that is not there yet."""
    if not download_url or os.access(binary, os.X_OK):
        return None
    return {
        "hostguard-binary": {
            "old": None,
            "new": "hostguard from {} (sha256 {}) at {}".format(download_url, download_sha256, binary),
        }
    }


def converged(name, document=None, binary=None, root=None, extra_args=None, state_file=None,
              apply_args=None, download_url=None, download_sha256=None, confirm=None, confirm_probe=None):
    """
    Ensure the host matches a hostguard state document.

    name
        A label for this state.
    document
        The state document as a mapping (``version`` defaults to 1); pillar ``hostguard:document``
        when omitted.
    binary
        Path of the hostguard binary (``/usr/local/bin/hostguard``).
    root
        Passed as ``--root``: the prefix of every host path. Unset means /.
    extra_args
        Options for every hostguard command, e.g. ``['--lock-timeout', '120']``.
    apply_args
        Options of ``hostguard apply`` only, e.g. ``['--backup-dir', '/var/backups/hostguard']``.
    state_file
        Where a real run saves the document before applying it (``/etc/hostguard/state.json``
        under ``root``); ``test=True`` never writes it.
    confirm_probe, confirm
        Guard firewall changes the way ``hostguard confirm`` would, with nobody to type it:
        ``confirm_probe: True`` probes this minion's master (``master``:``master_port``, 4506) after
        the change, ``confirm_probe: 'HOST:PORT'`` or ``'https://...'`` another target (checked
        against the system's CAs and the minion's ``ca_bundle``); no answer
        within ``confirm`` seconds (60) rolls hostguard's own edits back and fails the state with
        hostguard's message. Pillar ``hostguard:confirm_probe`` / ``hostguard:confirm`` when omitted.
    download_url, download_sha256
        Where an earlier state (the formula's ``file.managed``) downloads the binary from; with
        ``test=True`` before that download, the result is ``None`` saying what would be installed.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if document is None:
        document = __salt__["pillar.get"]("hostguard:document", None)
    if not isinstance(document, dict):
        ret["result"] = False
        ret["comment"] = "hostguard: document must be a mapping, not {} (state argument or pillar hostguard:document)".format(
            type(document).__name__
        )
        return ret
    if download_sha256 is not None and not SHA256.match(str(download_sha256)):
        ret["result"] = False
        ret["comment"] = "hostguard: download_sha256 must be 64 hexadecimal digits, not {!r}".format(download_sha256)
        return ret
    binary = binary or __salt__["config.get"]("hostguard:binary", "/usr/local/bin/hostguard")
    root = root or __salt__["config.get"]("hostguard:root", None)
    state_file = state_file or __salt__["hostguard.default_state_file"](root)

    if __opts__["test"]:
        pending = _install_pending(binary, download_url, download_sha256)
        if pending:
            ret["changes"] = pending
            ret["result"] = None
            ret["comment"] = "would install hostguard from {} (sha256 {}), then apply the document".format(
                download_url, download_sha256
            )
            return ret

    try:
        res = __salt__["hostguard.run"]("plan", document, binary, root, extra_args)
    except CommandExecutionError as e:
        ret["result"] = False
        ret["comment"] = str(e)
        return ret
    if res["report"] is None or res["retcode"] not in (0, 2, 4, 6):
        ret["result"] = False
        ret["comment"] = __salt__["hostguard.error_message"](res)
        return ret
    planned = res["report"]["resources"]
    drift = [r for r in planned if r["status"] != "in_sync"]
    if not drift:
        ret["comment"] = "{} hostguard resource(s) in sync".format(len(planned))
        return ret
    if __opts__["test"]:
        ret["changes"] = {r["id"]: _change(r) for r in drift if r["status"] != "failed"}
        failures = _failures(drift)
        if failures:
            # A change hostguard already knows would fail is a failure of the dry run too.
            ret["result"] = False
            ret["comment"] = "hostguard: would fail: {}".format(failures)
        else:
            ret["result"] = None
            ret["comment"] = "{} hostguard resource(s) would change".format(len(drift))
        return ret

    try:
        args = [str(a) for a in apply_args or []] + __salt__["hostguard.confirm_args"](confirm, confirm_probe)
        res = __salt__["hostguard.run"]("apply", document, binary, root, extra_args, state_file, args=args)
    except CommandExecutionError as e:
        ret["result"] = False
        ret["comment"] = str(e)
        return ret
    report = res["report"] or {"resources": []}
    for r in report["resources"]:
        if r["status"] == "changed":
            ret["changes"][r["id"]] = _change(r)
    if res["retcode"] in (0, 2) and res["report"] is not None:
        ret["comment"] = "{} hostguard resource(s) changed".format(len(ret["changes"]))
    else:
        ret["result"] = False
        ret["comment"] = __salt__["hostguard.error_message"](res)
    return ret


def audited(name, fail_on="high", document=None, binary=None, root=None, extra_args=None):
    """
    Fail the state run when ``hostguard audit`` finds an issue at or above ``fail_on``
    (``low``, ``medium`` or ``high``). Read-only: it changes nothing, with or without ``test=True``.

    .. code-block:: yaml

        hostguard-audit:
          hostguard.audited:
            - fail_on: high

    document
        Optional: with a document, hostguard also tells whether applying it closes each finding.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if fail_on not in ("low", "medium", "high"):
        ret["result"] = False
        ret["comment"] = "hostguard: fail_on must be low, medium or high, not {!r}".format(fail_on)
        return ret
    if document is not None and not isinstance(document, dict):
        ret["result"] = False
        ret["comment"] = "hostguard: document must be a mapping, not {}".format(type(document).__name__)
        return ret
    try:
        res = __salt__["hostguard.run"]("audit", document or None, binary, root, extra_args, args=["--fail-on", fail_on])
    except CommandExecutionError as e:
        ret["result"] = False
        ret["comment"] = str(e)
        return ret
    if res["retcode"] not in (0, 2) or res["report"] is None:
        ret["result"] = False
        ret["comment"] = __salt__["hostguard.error_message"](res)
        return ret
    findings = res["report"].get("findings", [])
    lines = ["[{}] {} {}: {}".format(f.get("severity"), f.get("id"), f.get("subject"), f.get("title")) for f in findings]
    if res["retcode"] == 2:
        ret["result"] = False
        ret["comment"] = "hostguard audit: findings at or above {}:\n{}".format(fail_on, "\n".join(lines))
    else:
        ret["comment"] = "hostguard audit: nothing at or above {}".format(fail_on) + (
            " ({} below it:\n{})".format(len(lines), "\n".join(lines)) if lines else ""
        )
    return ret

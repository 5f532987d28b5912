"""
State module for hostguard: ``hostguard.converged`` converges the host to a state document.

.. code-block:: yaml

    hostguard:
      hostguard.converged:
        - document:
            sysctl:
              values:
                net.ipv4.ip_forward: 1

It runs ``hostguard plan`` first, as Puppet and Chef wrappers do. With ``test=True`` it stops
there: result ``None`` and ``changes`` holding the drift. Otherwise, when there is drift, it runs
``hostguard apply``: ``changes`` holds what changed (``old`` from the plan, ``new`` per hostguard
resource id); exit codes 1, 4 and 6 make the result ``False`` with hostguard's message.
"""

__virtualname__ = "hostguard"


def __virtual__():
    if "hostguard.run" in __salt__:
        return __virtualname__
    return (False, "the hostguard execution module is not loaded (saltutil.sync_all)")


def _change(resource):
    change = {"old": resource.get("current"), "new": resource.get("desired")}
    if resource.get("message"):
        change["message"] = resource["message"]
    if resource.get("diff"):
        change["diff"] = resource["diff"]
    if resource.get("restart_required"):
        change["restart_required"] = True
    return change


def converged(name, document=None, binary=None, root=None, extra_args=None, state_file="/etc/hostguard/state.json",
              apply_args=None):
    """
    Ensure the host matches a hostguard state document.

    name
        A label for this state.
    document
        The state document (``version`` defaults to 1); pillar ``hostguard:document`` when omitted.
    binary
        Path of the hostguard binary (``/usr/local/bin/hostguard``).
    root
        Passed as ``--root``: the prefix of every host path. Unset means /.
    extra_args
        Options for every hostguard command, e.g. ``['--lock-timeout', '120']``.
    apply_args
        Options of ``hostguard apply`` only, e.g. ``['--backup-dir', '/var/backups/hostguard']``.
    state_file
        Where a real run saves the document before applying it; ``test=True`` never writes it.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if document is None:
        document = __salt__["pillar.get"]("hostguard:document", None)
    if not isinstance(document, dict):
        ret["result"] = False
        ret["comment"] = "hostguard: document must be a mapping (state argument or pillar hostguard:document)"
        return ret

    res = __salt__["hostguard.run"]("plan", document, binary, root, extra_args)
    if res["retcode"] not in (0, 2) or res["report"] is None:
        ret["result"] = False
        ret["comment"] = __salt__["hostguard.error_message"](res)
        return ret
    planned = res["report"]["resources"]
    drift = [r for r in planned if r["status"] != "in_sync"]
    if not drift:
        ret["comment"] = "{} hostguard resource(s) in sync".format(len(planned))
        return ret
    if __opts__["test"]:
        ret["changes"] = {r["id"]: _change(r) for r in drift}
        ret["result"] = None
        ret["comment"] = "{} hostguard resource(s) would change".format(len(drift))
        return ret

    res = __salt__["hostguard.run"]("apply", document, binary, root, extra_args, state_file, args=apply_args or [])
    report = res["report"] or {"resources": []}
    old = {r["id"]: r.get("current") for r in planned}
    for r in report["resources"]:
        if r["status"] == "changed":
            change = _change(r)
            change["old"] = old.get(r["id"], r.get("current"))
            ret["changes"][r["id"]] = change
    if res["retcode"] in (0, 2) and res["report"] is not None:
        ret["comment"] = "{} hostguard resource(s) changed".format(len(ret["changes"]))
    else:
        ret["result"] = False
        ret["comment"] = __salt__["hostguard.error_message"](res)
    return ret

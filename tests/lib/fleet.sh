# Sourced by the fleet tests (tests/system/fleet-salt, fleet-puppet), after wrappers.sh and its
# sandbox_init: several hosts on one machine, each with its own network namespace and --root, the
# daemons the test starts (killed on exit, failure included), free ports on 127.0.0.1, and the
# report collector.
#
# A host's hostguard runs inside that host's namespace through a two-line wrapper script
# ($TMP/NAME/hostguard: `ip netns exec NS hostguard "$@"`), which the wrappers take as `binary`.
# The Salt minions and Puppet agents themselves stay in the machine's namespace, so they reach the
# master/server on 127.0.0.1 as a real fleet reaches it over the network; only the converged "host"
# is private.

FLEET_HOSTS=()
FLEET_PGIDS=()

# fleet_host NAME: creates host NAME: $TMP/NAME/root (with /proc bound in), namespace hg-NAME-PID,
# and the wrapper $TMP/NAME/hostguard.
fleet_host() {
  local dir=$TMP/$1 ns="hg-$1-$$"
  mkdir -p "$dir/root/etc" "$dir/root/proc" "$dir/state"
  mount --bind /proc "$dir/root/proc" || { echo "FAIL: cannot bind-mount /proc into $dir/root"; exit 1; }
  FLEET_HOSTS+=("$1")
  ip netns add "$ns" || { echo "FAIL: cannot create network namespace $ns"; exit 1; }
  printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$ns" "$HOSTGUARD" > "$dir/hostguard"
  chmod +x "$dir/hostguard"
}

host_ns() { echo "hg-$1-$$"; }
host_root() { echo "$TMP/$1/root"; }
# host_sysctl HOST KEY / host_sysctl_set HOST KEY VALUE: a net.* key in that host's namespace.
host_sysctl() { ip netns exec "$(host_ns "$1")" cat "/proc/sys/${2//.//}"; }
host_sysctl_set() { ip netns exec "$(host_ns "$1")" sh -c "echo '$3' > /proc/sys/${2//.//}"; }

# free_port: a TCP port of 127.0.0.1 that nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# daemon LOG CMD...: starts CMD in its own session (so its whole process group can be ended on
# exit), output to LOG.
daemon() {
  local log=$1; shift
  setsid "$@" > "$log" 2>&1 < /dev/null &
  FLEET_PGIDS+=("$!")
  disown "$!"   # ended by fleet_cleanup; no job-control notice when it has to be killed
}

# collector_start: starts the report collector (tests/lib/collector.py) on a Unix socket, and in
# each host's namespace a relay from 127.0.0.1 there to it; sets COLLECTED (its directory) and
# collector_url HOST prints the URL that HOST posts its reports to.
collector_start() {
  COLLECTED=$TMP/collected
  mkdir -p "$COLLECTED"
  daemon "$TMP/collector.log" python3 "$REPO/tests/lib/collector.py" serve "$COLLECTED" "$TMP/collector.sock"
  wait_for 10 "the collector listens on $TMP/collector.sock" test -S "$TMP/collector.sock"
  local h
  for h in "${FLEET_HOSTS[@]}"; do
    ip netns exec "$(host_ns "$h")" ip link set lo up
    daemon "$TMP/$h/relay.log" ip netns exec "$(host_ns "$h")" \
      python3 "$REPO/tests/lib/collector.py" relay "$TMP/collector.sock" "$TMP/$h/relay.port"
    wait_for 10 "the collector relay of $h listens" test -s "$TMP/$h/relay.port"
  done
}
collector_url() { echo "http://127.0.0.1:$(cat "$TMP/$1/relay.port")/reports/$1"; }

# wait_for SECONDS DESCRIPTION CMD...: retries CMD every second until it succeeds; fails the test
# (exit) when it never does.
wait_for() {
  local limit=$1 what=$2 i; shift 2
  for i in $(seq "$limit"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "FAIL: $what (not within ${limit}s)"
  exit 1
}

fleet_cleanup() {
  local g h i
  for g in "${FLEET_PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
  for i in $(seq 20); do
    local alive=""
    for g in "${FLEET_PGIDS[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.5
  done
  for g in "${FLEET_PGIDS[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
  for h in "${FLEET_HOSTS[@]}"; do
    ip netns del "$(host_ns "$h")" 2>/dev/null
    umount "$TMP/$h/root/proc" 2>/dev/null || umount -l "$TMP/$h/root/proc" 2>/dev/null
  done
  sandbox_cleanup
}

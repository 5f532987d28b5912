# Sourced by the wrapper system tests (tests/system/puppet, salt, chef-lib): a sandbox of a named
# network namespace (so net.* sysctls and iptables are private to the test) and a temp --root with
# /proc bind-mounted into it (hostguard resolves paths inside the root and follows no link out of
# it), so reads and writes of ROOT/proc/sys/net reach the namespace's own values. The test runs in
# a private mount namespace, so the bind mount is never visible to the machine. Everything is
# removed on exit, failure included.

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HOSTGUARD=${HOSTGUARD:-$REPO/target/debug/hostguard}
SALT_VENV=${SALT_VENV:-/opt/hostguard-tests/salt-venv}

failures=0
checks=0

# sandbox_init NAME: sets TMP, ROOT and NS, and the cleanup trap.
# The calling script re-runs itself once in a private mount namespace (it takes no arguments).
sandbox_init() {
  if [ -z "${HG_SANDBOX_MNTNS:-}" ]; then
    HG_SANDBOX_MNTNS=1 exec unshare --mount --propagation private -- "$0"
  fi
  [ -x "$HOSTGUARD" ] || { echo "FAIL: no hostguard binary at $HOSTGUARD (cargo build first)"; exit 1; }
  TMP=$(mktemp -d "/tmp/hostguard-$1.XXXXXX")
  NS="hg-$1-$$"
  ROOT=$TMP/root
  trap sandbox_cleanup EXIT
  mkdir -p "$ROOT/etc" "$ROOT/proc"
  mount --bind /proc "$ROOT/proc" || { echo "FAIL: cannot bind-mount /proc into $ROOT"; exit 1; }
  ip netns add "$NS" || { echo "FAIL: cannot create network namespace $NS"; exit 1; }
}

SANDBOX_PIDS=()

sandbox_cleanup() {
  for pid in "${SANDBOX_PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [ -n "${FAR:-}" ] && ip netns del "$FAR" 2>/dev/null
  ip netns del "$NS" 2>/dev/null || true
  umount "$ROOT/proc" 2>/dev/null || umount -l "$ROOT/proc" 2>/dev/null || true
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP"; else rm -rf --one-file-system "$TMP"; fi
}

# in_ns CMD...: runs CMD inside the test's network namespace.
in_ns() { ip netns exec "$NS" "$@"; }

# serve_dir DIR PORT: an HTTP server for DIR on 127.0.0.1:PORT inside the namespace (so only the
# test reaches it), stopped on exit.
serve_dir() {
  in_ns ip link set lo up
  # Not through in_ns: a backgrounded function is a subshell, and killing it would leave the
  # server running. `ip netns exec` execs in place, so $! is the server's own pid.
  ip netns exec "$NS" python3 -m http.server --bind 127.0.0.1 --directory "$1" "$2" >"$TMP/http.log" 2>&1 &
  SANDBOX_PIDS+=($!)
  wait_listening 127.0.0.1 "$2" "$TMP/http.log" "the test's HTTP server"
}

# wait_listening ADDR PORT LOG WHAT: until ADDR:PORT accepts a TCP connection from NS (5 s), or
# fail showing LOG.
wait_listening() {
  for _ in $(seq 50); do
    in_ns python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' "$1" "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "FAIL: $4 did not start"; cat "$3"; exit 1
}

# probe_far PORT: the server side of `--confirm-probe`, beyond the firewall the test changes: a
# second namespace FAR joined to NS by a veth (NS 10.79.0.1, FAR 10.79.0.2), with a TCP listener
# (python3's http.server) on 10.79.0.2:PORT. PROBE_CUT and PROBE_KEEP are IPv4 INPUT rule lists
# (policy DROP): CUT drops the replies of connections NS opens (the probe's path is cut), KEEP
# accepts them.
PROBE_CUT='["-i lo -j ACCEPT", "-p tcp --dport 22 -j ACCEPT"]'
PROBE_KEEP='["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-i lo -j ACCEPT", "-p tcp --dport 22 -j ACCEPT"]'
probe_far() {
  FAR=${NS}-far
  ip netns add "$FAR" || { echo "FAIL: cannot create $FAR"; exit 1; }
  ip link add "hgp$$" netns "$NS" type veth peer name "hgq$$" netns "$FAR" || { echo "FAIL: veth"; exit 1; }
  in_ns ip addr add 10.79.0.1/24 dev "hgp$$"; in_ns ip link set "hgp$$" up; in_ns ip link set lo up
  ip netns exec "$FAR" ip addr add 10.79.0.2/24 dev "hgq$$"; ip netns exec "$FAR" ip link set "hgq$$" up
  ip netns exec "$FAR" python3 -m http.server --bind 10.79.0.2 --directory "$TMP" "$1" >"$TMP/far.log" 2>&1 &
  SANDBOX_PIDS+=($!)
  wait_listening 10.79.0.2 "$1" "$TMP/far.log" "the probe target"
}

# serve_https PORT: an HTTPS server on 127.0.0.1:PORT inside the namespace, answering GET / with
# 200, whose certificate (for IP 127.0.0.1) is signed by a private CA made here and trusted by
# nothing on the machine: HTTPS_CA is that CA's PEM file. Stopped on exit.
serve_https() {
  local d=$TMP/https
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=hostguard test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>"$d/openssl.log" &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>>"$d/openssl.log" &&
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$d/ext" &&
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ext" -out "$d/server.pem" 2>>"$d/openssl.log" || { echo "FAIL: openssl"; cat "$d/openssl.log"; exit 1; }
  HTTPS_CA=$d/ca.pem
  in_ns ip link set lo up
  ip netns exec "$NS" python3 -c '
import http.server, ssl, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"ok\n")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()' "$1" "$d/server.pem" "$d/server.key" >"$d/server.log" 2>&1 &
  SANDBOX_PIDS+=($!)
  wait_listening 127.0.0.1 "$1" "$d/server.log" "the test's HTTPS server"
}

# ns_sysctl KEY: the namespace's value of a net.* key.
ns_sysctl() { in_ns cat "/proc/sys/${1//.//}"; }
ns_sysctl_set() { in_ns sh -c "echo '$2' > /proc/sys/${1//.//}"; }

check() { # check DESCRIPTION EXPECTED ACTUAL
  checks=$((checks+1))
  if [ "$2" == "$3" ]; then
    echo "ok: $1"
  else
    failures=$((failures+1))
    echo "FAIL: $1: expected [$2], got [$3]"
  fi
}

check_contains() { # check_contains DESCRIPTION NEEDLE FILE
  checks=$((checks+1))
  if grep -qF -- "$2" "$3"; then
    echo "ok: $1"
  else
    failures=$((failures+1))
    echo "FAIL: $1: [$2] not in $3:"; sed 's/^/    /' "$3" | tail -n 40
  fi
}

# check_noop DESCRIPTION RESOURCE CURRENT SHOULD FILE: FILE has a Puppet noop event for RESOURCE
# (e.g. `Hostguard_resource[hostguard:sysctl/vm.swappiness]/value`) from CURRENT to SHOULD, in
# either Puppet's wording: 7 prints `current_value 'CURRENT', should be 'SHOULD' (noop)`, 8 prints
# the property's own change text, `CURRENT -> SHOULD (noop)`. Each line is read back into its two
# values and those are compared, so a line that is neither wording, or names other values, fails.
check_noop() {
  checks=$((checks+1))
  local line event cur should seen=() re7="^current_value '(.*)', should be '(.*)'$" re8="^(.*) -> (.*)$"
  while IFS= read -r line; do
    event=${line#*"$2: "}
    [[ $event == *" (noop)" ]] || continue
    event=${event% (noop)}
    if [[ $event =~ $re7 ]] || [[ $event =~ $re8 ]]; then
      cur=${BASH_REMATCH[1]} should=${BASH_REMATCH[2]}
      if [ "$cur" == "$3" ] && [ "$should" == "$4" ]; then echo "ok: $1"; return 0; fi
      seen+=("[$cur] -> [$should]")
    else
      seen+=("unreadable: $event")
    fi
  done < <(grep -F -- "$2: " "$5")
  failures=$((failures+1))
  echo "FAIL: $1: no noop event of $2 from [$3] to [$4] in $5${seen:+; its noop events: ${seen[*]}}:"
  sed 's/^/    /' "$5" | tail -n 40
}

finish() {
  echo "$((checks-failures)) passed, $failures failed"
  [ "$failures" = 0 ]
}

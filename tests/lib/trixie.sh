#!/usr/bin/env bash
# A Debian 13 (trixie) userspace for tests: built once with debootstrap, cached, and entered as a
# fresh overlay each time, so no test can change the cache or the machine (tests/lib/debian.sh).
#
# Source this file, then:
#   trixie_ensure                 build the cached userspace when missing or when its package list
#                                 changed; prints its path. Fails loudly naming the step.
#   trixie_salt_venv [VERSION]   build the cached Salt virtualenv (default 3008.4) inside the
#                                 userspace with Debian 13's Python, when missing or half-built;
#                                 prints its path. Bind it in with TRIXIE_BIND to use it.
#   trixie_exec CMD [ARG...]      run CMD inside the userspace: a private mount namespace, an overlay
#                                 over the cache (writes go to a tmpfs and vanish at exit), /proc,
#                                 /sys (the machine's cgroups), /dev, a tmpfs /run and /tmp, and
#                                 $REPO bound at the same path, then pivot_root (not chroot, so
#                                 `ip netns exec` and `docker exec` work inside). The environment
#                                 passes through with Debian's PATH. Returns CMD's exit code.
#
# Options (environment):
#   TRIXIE_UPPER=DIR    keep the overlay's writes in DIR (created when missing) instead of a tmpfs,
#                       so several trixie_exec calls share one changed userspace (dpkg -i, then runs)
#   TRIXIE_BIND="SRC[:DST] ..."   more bind mounts (DST defaults to SRC)
#   TRIXIE_DIR          where the cache lives (default /var/cache/hostguard-tests/trixie)
#
# Nothing is started inside at build time: policy-rc.d refuses every daemon start.

TRIXIE_DIR=${TRIXIE_DIR:-/var/cache/hostguard-tests/trixie}
TRIXIE_MIRROR=${TRIXIE_MIRROR:-http://deb.debian.org/debian}
# What the tests use inside: add a package here and the cache is extended once.
TRIXIE_PACKAGES=(
  ca-certificates curl openssl procps kmod psmisc util-linux iproute2 iputils-ping netcat-openbsd
  iptables nftables lxc busybox-static uidmap
  python3 python3-venv ruby
  puppet-agent puppet-module-puppetlabs-stdlib puppet-module-puppetlabs-firewall
  docker.io docker-cli
  systemd man-db bash-completion e2fsprogs
  # tests/system/debian13: the Salt venv builds timelib (gcc, python3-dev); the Chef library's and
  # the Puppet module's tests
  gcc python3-dev ruby-minitest ruby-mixlib-shellout
  rake ruby-rspec-puppet ruby-puppetlabs-spec-helper puppet-strings puppet-lint metadata-json-lint
)

# shellcheck source=tests/lib/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

trixie_ensure() { debian_ensure trixie "$TRIXIE_DIR" trixie "$TRIXIE_MIRROR" "${TRIXIE_PACKAGES[@]}"; }

trixie_exec() { debian_exec trixie "$TRIXIE_DIR" "${TRIXIE_UPPER:-}" "${TRIXIE_BIND:-}" "$@"; }

# The machine's trust roots, for pip inside (the venv build, and pip install ./salt-states), when
# it has them (a proxy's CA may be among them).
TRIXIE_CA_BUNDLE=$([ -f /etc/ssl/certs/ca-certificates.crt ] && echo /etc/ssl/certs/ca-certificates.crt)

trixie_salt_venv() {
  local version=${1:-3008.4}
  local venv=/var/cache/hostguard-tests/trixie-salt-venv-$version
  (
    flock -w 1800 9 || { echo "trixie: another build of $venv held the lock for 30 minutes" >&2; exit 1; }
    [ -f "$venv/.hostguard-complete" ] && exit 0
    rm -rf "$venv" && mkdir -p "$venv" || exit 1
    TRIXIE_BIND="$venv $TRIXIE_CA_BUNDLE" trixie_exec sh -c \
      'python3 -m venv "$1" && "$1/bin/pip" install -q "salt==$2"' _ "$venv" "$version" \
      >"$venv.log" 2>&1 || { tail -n 20 "$venv.log" >&2
        echo "trixie: pip install salt==$version inside the userspace failed (log: $venv.log)" >&2; exit 1; }
    touch "$venv/.hostguard-complete"
  ) 9>"$venv.lock" || return 1
  echo "$venv"
}

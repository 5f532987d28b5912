#!/usr/bin/env bash
# A Debian 13 (trixie) userspace for tests: built once with debootstrap, cached, and entered as a
# fresh overlay each time, so no test can change the cache or the machine.
#
# Source this file, then:
#   trixie_ensure                 build the cached userspace when missing or when its package list
#                                 changed; prints its path. Fails loudly naming the step.
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
)

_trixie_die() { echo "trixie: $*" >&2; return 1; }

trixie_ensure() {
  local want stamp lock
  want=$(printf '%s\n' "${TRIXIE_PACKAGES[@]}" | sort -u)
  stamp="$TRIXIE_DIR/.hostguard-packages"
  mkdir -p "$(dirname "$TRIXIE_DIR")" || _trixie_die "cannot create $(dirname "$TRIXIE_DIR")" || return 1
  lock="$TRIXIE_DIR.lock"
  (
    flock -w 1800 9 || _trixie_die "another build of $TRIXIE_DIR held the lock for 30 minutes" || exit 1
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
    command -v debootstrap >/dev/null || { echo "trixie: installing debootstrap" >&2;
      DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=600 -y -qq \
        --no-install-recommends debootstrap >/dev/null || _trixie_die "apt-get install debootstrap failed" || exit 1; }
    # A half-built tree (killed build) is started again from scratch.
    if [ ! -f "$TRIXIE_DIR/.hostguard-base" ]; then
      rm -rf "$TRIXIE_DIR"
      echo "trixie: debootstrap trixie into $TRIXIE_DIR" >&2
      debootstrap --variant=minbase trixie "$TRIXIE_DIR" "$TRIXIE_MIRROR" >"$TRIXIE_DIR.log" 2>&1 \
        || { tail -n 20 "$TRIXIE_DIR.log" >&2; _trixie_die "step debootstrap failed (log: $TRIXIE_DIR.log)"; exit 1; }
      printf '#!/bin/sh\nexit 101\n' >"$TRIXIE_DIR/usr/sbin/policy-rc.d"
      chmod 755 "$TRIXIE_DIR/usr/sbin/policy-rc.d"
      touch "$TRIXIE_DIR/.hostguard-base"
    fi
    echo "trixie: installing ${TRIXIE_PACKAGES[*]}" >&2
    cp /etc/resolv.conf "$TRIXIE_DIR/etc/resolv.conf" 2>/dev/null || true
    # shellcheck disable=SC2016
    unshare --mount --propagation private -- bash -c '
      set -e
      r=$1; shift
      mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"; mount --rbind /sys "$r/sys"
      mount -t tmpfs tmpfs "$r/run"; mount -t tmpfs tmpfs "$r/tmp"
      chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        apt-get update -qq
      chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
      chroot "$r" apt-get clean' _ "$TRIXIE_DIR" "${TRIXIE_PACKAGES[@]}" >>"$TRIXIE_DIR.log" 2>&1 \
      || { tail -n 20 "$TRIXIE_DIR.log" >&2; _trixie_die "step apt-get install failed (log: $TRIXIE_DIR.log)"; exit 1; }
    printf '%s\n' "$want" >"$stamp"
  ) 9>"$lock" || return 1
  echo "$TRIXIE_DIR"
}

trixie_exec() {
  [ $# -gt 0 ] || _trixie_die "trixie_exec: no command" || return 1
  [ -f "$TRIXIE_DIR/.hostguard-packages" ] || _trixie_die "no userspace in $TRIXIE_DIR: call trixie_ensure first" || return 1
  local scratch rc upper=${TRIXIE_UPPER:-}
  scratch=$(mktemp -d /tmp/hostguard-trixie.XXXXXX) || return 1
  if [ -n "$upper" ]; then mkdir -p "$upper/upper" "$upper/work" || return 1; fi
  # shellcheck disable=SC2016
  unshare --mount --propagation private -- bash -c '
    set -e
    lower=$1 s=$2 upper=$3 repo=$4 binds=$5; shift 5
    mount -t tmpfs -o mode=755 tmpfs "$s"
    mkdir "$s/root"
    if [ -n "$upper" ]; then u=$upper/upper w=$upper/work; else mkdir "$s/u" "$s/w"; u=$s/u w=$s/w; fi
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$u,workdir=$w" "$s/root"
    r=$s/root
    mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"; mount --rbind /sys "$r/sys"
    mount -t tmpfs tmpfs "$r/run"; mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
    if [ -n "$repo" ]; then mkdir -p "$r$repo"; mount --bind "$repo" "$r$repo"; fi
    for b in $binds; do
      src=${b%%:*}; dst=${b#*:}; [ "$dst" = "$b" ] && dst=$src
      if [ -d "$src" ]; then mkdir -p "$r$dst"; else mkdir -p "$(dirname "$r$dst")"; touch "$r$dst"; fi
      mount --rbind "$src" "$r$dst"
    done
    cd "$r"; mkdir -p .oldroot; pivot_root . .oldroot; cd /
    umount -l /.oldroot
    exec env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  ' _ "$TRIXIE_DIR" "$scratch" "$upper" "${REPO:-}" "${TRIXIE_BIND:-}" "$@"
  rc=$?
  rmdir "$scratch" 2>/dev/null
  return $rc
}

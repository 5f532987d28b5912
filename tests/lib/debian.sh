#!/usr/bin/env bash
# A Debian userspace of a given suite for tests: built once with debootstrap, cached, and entered
# as a fresh overlay each time, so no test can change the cache or the machine. tests/lib/trixie.sh
# (Debian 13) and tests/lib/bookworm.sh (Debian 12) are this with their suite, directory and
# package list filled in; source one of those.
#
#   debian_ensure NAME DIR SUITE MIRROR PKG...
#                    build DIR when missing or when its package list changed; prints DIR.
#                    Fails loudly naming the step. NAME prefixes the messages.
#   debian_exec NAME DIR UPPER BINDS CMD [ARG...]
#                    run CMD inside DIR: a private mount namespace, an overlay over the cache
#                    (writes go to a tmpfs and vanish at exit, or to UPPER when it is not empty),
#                    /proc, /sys (the machine's cgroups), /dev, a tmpfs /run and /tmp, $REPO bound
#                    at the same path and BINDS ("SRC[:DST] ...") too, then pivot_root (not chroot,
#                    so `ip netns exec` and `docker exec` work inside). The environment passes
#                    through with Debian's PATH. Returns CMD's exit code.
#
# Nothing is started inside at build time: policy-rc.d refuses every daemon start.

_debian_die() { echo "$1: $2" >&2; return 1; }

debian_ensure() {
  local name=$1 dir=$2 suite=$3 mirror=$4; shift 4
  local want stamp lock
  want=$(printf '%s\n' "$@" | sort -u)
  stamp="$dir/.hostguard-packages"
  mkdir -p "$(dirname "$dir")" || _debian_die "$name" "cannot create $(dirname "$dir")" || return 1
  lock="$dir.lock"
  (
    flock -w 1800 9 || _debian_die "$name" "another build of $dir held the lock for 30 minutes" || exit 1
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
    command -v debootstrap >/dev/null || { echo "$name: installing debootstrap" >&2;
      DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=600 -y -qq \
        --no-install-recommends debootstrap >/dev/null || _debian_die "$name" "apt-get install debootstrap failed" || exit 1; }
    # A half-built tree (killed build) is started again from scratch.
    if [ ! -f "$dir/.hostguard-base" ]; then
      rm -rf "$dir"
      echo "$name: debootstrap $suite into $dir" >&2
      debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.log" 2>&1 \
        || { tail -n 20 "$dir.log" >&2; _debian_die "$name" "step debootstrap failed (log: $dir.log)"; exit 1; }
      printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
      chmod 755 "$dir/usr/sbin/policy-rc.d"
      touch "$dir/.hostguard-base"
    fi
    echo "$name: installing $*" >&2
    cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
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
      chroot "$r" apt-get clean' _ "$dir" "$@" >>"$dir.log" 2>&1 \
      || { tail -n 20 "$dir.log" >&2; _debian_die "$name" "step apt-get install failed (log: $dir.log)"; exit 1; }
    printf '%s\n' "$want" >"$stamp"
  ) 9>"$lock" || return 1
  echo "$dir"
}

debian_exec() {
  local name=$1 dir=$2 upper=$3 binds=$4; shift 4
  [ $# -gt 0 ] || _debian_die "$name" "${name}_exec: no command" || return 1
  [ -f "$dir/.hostguard-packages" ] || _debian_die "$name" "no userspace in $dir: call ${name}_ensure first" || return 1
  local scratch rc
  scratch=$(mktemp -d "/tmp/hostguard-$name.XXXXXX") || return 1
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
  ' _ "$dir" "$scratch" "$upper" "${REPO:-}" "$binds" "$@"
  rc=$?
  rmdir "$scratch" 2>/dev/null
  return $rc
}

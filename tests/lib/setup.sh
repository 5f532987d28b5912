#!/usr/bin/env bash
# Installs what the whole-system suite needs, only what is missing: Debian packages, and a Salt
# virtualenv. Safe to run again; prints what it installs.
set -euo pipefail

PACKAGES=(iptables nftables iproute2 lxc busybox-static uidmap ruby puppet puppetserver prometheus prometheus-node-exporter
          openssl cpio xz-utils zstd e2fsprogs kmod curl python3-venv debootstrap
          python3-jsonschema strace lintian time
          ruby-rspec-puppet ruby-puppetlabs-spec-helper puppet-strings puppet-lint metadata-json-lint ruby-mixlib-shellout
          puppet-module-puppetlabs-stdlib
          docker.io lxc-templates)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  # Another apt run (an engineer's, unattended-upgrades) holds the lock: wait for it, not fail.
  DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

# fail2ban and ufw for tests/system/neighbours, which runs them only inside namespaces of its own.
# Installing must not start fail2ban on the machine (its sshd jail would ban on the machine's own
# firewall): services are kept from starting by a policy-rc.d while they install.
neighbours=()
for p in fail2ban ufw; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || neighbours+=("$p")
done
if [ ${#neighbours[@]} -gt 0 ]; then
  echo "setup: installing ${neighbours[*]} (services not started)"
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; own_policy=1
  fi
  apt_install "${neighbours[@]}" || { [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

# qemu for the cgroup v2 kernel: this image ships qemu-utils from bookworm-backports, which
# conflicts with bookworm's own qemu-system-common, so take qemu-system-x86 from the same suite.
if ! command -v qemu-system-x86_64 >/dev/null; then
  if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo; then
    . /etc/os-release
    if ! grep -rqs "${VERSION_CODENAME}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deb http://deb.debian.org/debian ${VERSION_CODENAME}-backports main" > /etc/apt/sources.list.d/hostguard-tests-backports.list
      apt_updated=""
    fi
    echo "setup: installing qemu-system-x86 from ${VERSION_CODENAME}-backports"
    apt_install -t "${VERSION_CODENAME}-backports" qemu-system-x86
  else
    echo "setup: installing qemu-system-x86"
    apt_install qemu-system-x86
  fi
fi

# cargo-fuzz for tests/system/fuzz-smoke (the targets build with the nightly toolchain).
if ! command -v cargo-fuzz >/dev/null; then
  echo "setup: installing cargo-fuzz"
  cargo install --locked cargo-fuzz >/dev/null 2>&1 || { echo "setup: cargo install cargo-fuzz failed" >&2; exit 1; }
fi

# cargo-deb for packaging/build-deb and tests/system/deb.
if ! command -v cargo-deb >/dev/null; then
  echo "setup: installing cargo-deb"
  cargo install --locked cargo-deb >/dev/null 2>&1 || { echo "setup: cargo install cargo-deb failed" >&2; exit 1; }
fi

# salt_venv DIR VERSION: a virtualenv in DIR with Salt VERSION, unless DIR has salt-call.
salt_venv() {
  [ -x "$1/bin/salt-call" ] && return 0
  echo "setup: creating the Salt $2 virtualenv in $1"
  mkdir -p "$(dirname "$1")"
  python3 -m venv "$1"
  "$1/bin/pip" install -q "salt==$2"
}
# Salt, pinned: 3008.5 does not install here (certifi), 3008.4 does. Salt 3006 LTS for
# tests/system/salt-3006, pinned likewise: 3006.30 asks for a certifi newer than PyPI offers.
salt_venv "${SALT_VENV:-/opt/hostguard-tests/salt-venv}" 3008.4
salt_venv "${SALT3006_VENV:-/opt/hostguard-tests/salt3006-venv}" 3006.29

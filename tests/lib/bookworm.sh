#!/usr/bin/env bash
# A fresh Debian 12 (bookworm) userspace for tests, as tests/lib/trixie.sh is for Debian 13 (both
# are tests/lib/debian.sh): bookworm_ensure builds it once under $BOOKWORM_DIR (default
# /var/cache/hostguard-tests/bookworm), bookworm_exec CMD runs CMD in a throwaway overlay of it.
# BOOKWORM_UPPER and BOOKWORM_BIND work as TRIXIE_UPPER and TRIXIE_BIND do.

BOOKWORM_DIR=${BOOKWORM_DIR:-/var/cache/hostguard-tests/bookworm}
BOOKWORM_MIRROR=${BOOKWORM_MIRROR:-http://deb.debian.org/debian}
# What the tests use inside: add a package here and the cache is extended once.
BOOKWORM_PACKAGES=(procps kmod util-linux iproute2 iptables nftables lxc)

# shellcheck source=tests/lib/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

bookworm_ensure() { debian_ensure bookworm "$BOOKWORM_DIR" bookworm "$BOOKWORM_MIRROR" "${BOOKWORM_PACKAGES[@]}"; }

bookworm_exec() { debian_exec bookworm "$BOOKWORM_DIR" "${BOOKWORM_UPPER:-}" "${BOOKWORM_BIND:-}" "$@"; }

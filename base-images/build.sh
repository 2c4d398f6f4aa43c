#!/usr/bin/env bash
# Build the offline base images from Debian's packages, for hosts where `docker pull` cannot
# reach a registry (air-gapped hosts, locked-down CI). The service and proxy Dockerfiles use
# them unchanged through their BASE_IMAGE build argument.
#
#   base-images/build.sh            build the images that are missing (fast when both exist)
#   base-images/build.sh --rebuild  build both again
#
# Environment: DEBIAN_MIRROR (your own Debian mirror, default: debootstrap's), CA_BUNDLE (the
# CA bundle to trust inside the images, default: this host's, so that pip works behind a
# TLS-intercepting proxy that the host already trusts).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=images.env
source "$here/images.env"

ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
rebuild=false
case "${1:-}" in
  "") ;;
  --rebuild) rebuild=true ;;
  *) echo "usage: $0 [--rebuild]" >&2; exit 2 ;;
esac

need() { command -v "$1" >/dev/null || { echo "error: '$1' is required: $2" >&2; exit 1; }; }
need docker "install Docker (Debian: apt-get install docker.io)"
[ -r "$ca_bundle" ] || { echo "error: CA bundle '$ca_bundle' not readable (set CA_BUNDLE)" >&2; exit 1; }

# build NAME SUITE PACKAGES NEWER ENV...: debootstrap a minimal root filesystem of Debian SUITE
# with PACKAGES, add NEWER (packages, may be "") from Debian testing, make it trust the CA
# bundle, strip what an image never needs and import it as NAME.
build() {
  local name=$1 suite=$2 packages=$3 newer=$4; shift 4
  if ! $rebuild && docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name exists (pass --rebuild to build it again)"
    return
  fi
  need debootstrap "apt-get install debootstrap"
  local root
  root=$(mktemp -d "${TMPDIR:-/tmp}/base-image.XXXXXX")
  # Remove the half-made root filesystem whatever happens.
  trap 'rm -rf "$root"' RETURN
  echo "building $name from Debian $suite: $packages"
  debootstrap --variant=minbase --include="ca-certificates${packages:+,$packages}" \
    "$suite" "$root" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log"
  [ -z "$newer" ] || from_testing "$root" "$suite" "$newer"
  if [ -x "$root/usr/sbin/nginx" ]; then
    # The proxy follows the API's containers by name with `resolve` on upstream servers.
    local version
    version=$(chroot "$root" nginx -v 2>&1 | sed 's|.*nginx/||')
    printf '%s\n' 1.27.3 "$version" | sort -V -C \
      || { echo "error: Debian $suite has nginx $version; the proxy needs 1.27.3 or later" >&2; return 1; }
  fi
  # Trust the host's CAs (a TLS-intercepting proxy's root CA included) for pip and apt.
  install -m 0644 "$ca_bundle" "$root/usr/local/share/ca-certificates/host-ca-bundle.crt"
  # (its rehash step warns about bundle files; the bundle itself is what pip and apt read)
  chroot "$root" update-ca-certificates >/dev/null 2>&1
  # Package lists, caches and docs are dead weight in a base image.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/*
  local changes=()
  for env in "$@"; do changes+=(--change "ENV $env"); done
  tar -C "$root" -c . | docker import "${changes[@]}" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "Debian $suite minbase + $packages${newer:+ + $newer from testing}, built by base-images/build.sh" \
    - "$name" >/dev/null
  echo "built $name"
}

# from_testing ROOT SUITE PACKAGES: install PACKAGES from Debian testing into ROOT (a SUITE root),
# with the newer libraries they need and nothing else: the rest of the system stays SUITE's.
from_testing() {
  local root=$1 suite=$2 packages=$3
  sed "s/ $suite / testing /" "$root/etc/apt/sources.list" >"$root/etc/apt/sources.list.d/testing.list"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # No service is started inside the build.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  local selected=()
  for package in ${packages//,/ }; do selected+=("$package/testing"); done
  # A mirror's testing lists expire within days of a sync (Valid-Until): a mirror that is a
  # snapshot (air-gapped sites keep those) would be refused. Signatures are still checked.
  { chroot "$root" apt-get -o Acquire::Check-Valid-Until=false update -qq \
      && DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq \
        --no-install-recommends "${selected[@]}"; } >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log" "$root/etc/apt/sources.list.d/testing.list" "$root/usr/sbin/policy-rc.d"
}

# Debian's python3-venv brings its own CA list to pip: PIP_CERT points it at the system bundle.
# Debian 13 "trixie" is what the official images (the Dockerfiles' defaults) are built on.
build "$API_BASE_IMAGE" trixie "python3,python3-venv" "" "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
# The same for the API's PyPy runtime: Debian's PyPy 3.11 and its venv module.
build "$PYPY_BASE_IMAGE" trixie "pypy3,pypy3-venv" "" "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
# trixie's own nginx is 1.26, older than 1.27.3; testing has the current stable nginx, the
# release the official nginx:1.30-trixie image has. Like that image: nginx 1.30 on trixie.
build "$PROXY_BASE_IMAGE" trixie "" "nginx"

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

# build NAME SUITE PACKAGES ENV...: debootstrap a minimal root filesystem of Debian SUITE with
# PACKAGES, make it trust the CA bundle, strip what an image never needs and import it as NAME.
build() {
  local name=$1 suite=$2 packages=$3; shift 3
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
  debootstrap --variant=minbase --include="ca-certificates,$packages" \
    "$suite" "$root" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log"
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
    --message "Debian $suite minbase + $packages, built by base-images/build.sh" \
    - "$name" >/dev/null
  echo "built $name"
}

# Debian's python3-venv brings its own CA list to pip: PIP_CERT points it at the system bundle.
build "$API_BASE_IMAGE" bookworm "python3,python3-venv" "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
# Debian's stable releases have nginx 1.22 (bookworm) and 1.26 (trixie), older than 1.27.3;
# testing has the current stable nginx, the same as the official image.
build "$PROXY_BASE_IMAGE" testing "nginx"

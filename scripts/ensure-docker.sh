#!/usr/bin/env bash
# Make sure a Docker engine answers. If none does, install Debian's docker.io (as root) and
# start dockerd in the background, then wait until it answers (bounded).
set -euo pipefail

answers() { docker info >/dev/null 2>&1; }

if answers; then exit 0; fi
if ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: no Docker engine answers and dockerd is not installed; install Docker" >&2
    exit 1
  fi
  echo "installing Debian's docker.io ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq docker.io >/dev/null
fi
if ! answers; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: dockerd is installed but not running; start it (e.g. sudo systemctl start docker)" >&2
    exit 1
  fi
  echo "starting dockerd (log: /tmp/dockerd.log) ..."
  setsid dockerd >/tmp/dockerd.log 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
  if answers; then echo "Docker engine ready: $(docker version -f '{{.Server.Version}}')"; exit 0; fi
  sleep 1
done
echo "error: the Docker engine did not answer within 60 s; last lines of /tmp/dockerd.log:" >&2
tail -n 20 /tmp/dockerd.log >&2 || true
exit 1

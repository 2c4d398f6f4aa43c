#!/bin/bash
# Container health check: exits 0 when nginx answers its own /healthz. Uses bash's /dev/tcp,
# so the image needs no curl.
set -eu
exec 3<>/dev/tcp/127.0.0.1/8080
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 3 _ status _ <&3
[ "$status" = 200 ]

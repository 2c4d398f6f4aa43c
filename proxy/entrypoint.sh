#!/bin/sh
# Writes the runtime part of nginx's configuration from the environment, then runs nginx in the
# foreground as PID 1. Everything written goes to /tmp/nginx (a tmpfs in the stack).
#
#   API_UPSTREAM      the API's host:port on the Docker network, comma-separated (required),
#                     e.g. api:8000. A name is followed as its addresses change (every
#                     container with the network alias `api`, a Swarm service's tasks.api):
#                     nginx asks the container's DNS server again every second, with no reload,
#                     keeping its kept-alive connections. Needs nginx 1.27.3 or later.
#   PUBLIC_HOST       host[:port] clients reach the proxy at, sent to the API as Host instead of
#                     the client's own (default localhost:8080), e.g. 127.0.0.1:8080
#   RATE_LIMIT_RPS    requests per second allowed per client address; 0 disables (default 0)
#   RATE_LIMIT_BURST  requests above the rate accepted at once before 429 (default 2x rate)
#   LOAD_BALANCER_ADDRESSES  addresses or networks (CIDR) of a load balancer in front,
#                     comma-separated: from these peers alone X-Forwarded-For gives the client's
#                     address (rate limit, access log, the API's X-Forwarded-For) and
#                     X-Forwarded-Proto the scheme. Anyone else's are overwritten. Default: none
#   TLS_CERTIFICATE   PEM certificate chain (leaf first) and private key: HTTPS on 8443 (HTTP/2,
#   TLS_PRIVATE_KEY   TLS 1.2 and 1.3), and on 8080 a plain-HTTP server that answers /healthz
#                     and redirects the rest to HTTPS. Written to /tmp/nginx/tls (readable by
#                     nginx's user alone) and removed from nginx's environment. Neither: plain
#                     HTTP on 8080.
#   TLS_CERTIFICATE_FILE  the same as files, e.g. Docker secrets in /run/secrets (a Swarm
#   TLS_PRIVATE_KEY_FILE  service's): nginx reads them where they are, nothing is copied.
#   HSTS              on: Strict-Transport-Security on every HTTPS response (default off; only
#                     with a certificate browsers trust)
#   HSTS_INCLUDE_SUBDOMAINS  on: the HSTS policy covers every subdomain of the host too
#                     (default off: browsers would refuse plain HTTP on all of them; needs HSTS=on)
#   PROCESS_LIMIT     processes and threads nginx's user may run (RLIMIT_NPROC, counted per uid
#                     over the host: the stack gives its proxy a uid of its own), a fork-bomb
#                     bound set here rather than as a container ulimit (Docker merges a host's
#                     defaults into those); never above what the container has. 0: unchanged
set -eu

fail() {
    echo "proxy: $*" >&2
    exit 64
}

# The TLS key exchange groups, most preferred first: X25519MLKEM768, a post-quantum hybrid
# (OpenSSL 3.5 and later), for the clients that offer it; then the classic ones of Mozilla's
# "intermediate" configuration.
TLS_GROUPS="X25519MLKEM768 X25519 prime256v1 secp384r1"

# nginx_takes_groups G[:G...]: whether this nginx, with the OpenSSL it runs with, accepts the
# groups (it refuses to start on one its OpenSSL lacks). Tried on a server of its own: no
# certificate, no upstream, temporary files under /tmp.
nginx_takes_groups() {
    mkdir -p /tmp/nginx/groups-probe
    cat >/tmp/nginx/groups-probe/nginx.conf <<EOF
pid /tmp/nginx/groups-probe/nginx.pid;
events {}
http {
    access_log off;
    client_body_temp_path /tmp/nginx/groups-probe/temp;
    proxy_temp_path /tmp/nginx/groups-probe/temp;
    fastcgi_temp_path /tmp/nginx/groups-probe/temp;
    uwsgi_temp_path /tmp/nginx/groups-probe/temp;
    scgi_temp_path /tmp/nginx/groups-probe/temp;
    server {
        listen 127.0.0.1:8443 ssl;
        ssl_reject_handshake on;
        ssl_ecdh_curve $1;
    }
}
EOF
    nginx -t -q -e /dev/null -c /tmp/nginx/groups-probe/nginx.conf >/dev/null 2>&1
}

# Writes tls.conf's ssl_ecdh_curve: the groups of TLS_GROUPS that this nginx's OpenSSL offers,
# in their order; says on stderr which ones, and which are left out.
choose_tls_groups() {
    library=$(nginx -V 2>&1 | sed -n -e 's/.*running with \([A-Za-z]*SSL [^ )]*\).*/\1/p' -e t \
        -e 's/^built with \([A-Za-z]*SSL [^ )]*\).*/\1/p')
    library=${library:-its TLS library}
    chosen=""
    missing=""
    for group in $TLS_GROUPS; do
        if nginx_takes_groups "$group"; then
            chosen="${chosen:+$chosen:}$group"
        else
            missing="${missing:+$missing, }$group"
        fi
    done
    rm -rf /tmp/nginx/groups-probe
    [ -n "$chosen" ] || fail "nginx with $library takes none of the TLS key exchange groups $TLS_GROUPS"
    printf 'ssl_ecdh_curve %s;\n' "$chosen" >/tmp/nginx/tls-groups.conf
    if [ -z "$missing" ]; then
        echo "proxy: TLS key exchange groups $chosen: all the proxy prefers (nginx with $library)" >&2
    else
        echo "proxy: TLS key exchange groups $chosen; left out, as nginx with $library lacks them: $missing (X25519MLKEM768 needs OpenSSL 3.5 or later)" >&2
    fi
}

upstreams=${API_UPSTREAM:-}
[ -n "$upstreams" ] || fail "API_UPSTREAM is not set: give the API's host:port on the Docker network, comma-separated, e.g. api:8000"
servers=""
for upstream in $(echo "$upstreams" | tr ',' ' '); do
    # Only a host name or address and a port: the value lands inside nginx's configuration.
    echo "$upstream" | grep -Eq '^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$' \
        || fail "API_UPSTREAM: '$upstream' is not host:port (letters, digits, dots, hyphens; port 1-65535)"
    port=${upstream##*:}
    [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
        || fail "API_UPSTREAM: '$upstream' is not host:port (letters, digits, dots, hyphens; port 1-65535)"
    # A name is resolved again and again (an address needs no resolving). A failed attempt
    # rests an address 2 s while the others answer: long enough to cover the moment a stopped
    # API container's address is gone but still in nginx's last DNS answer (up to 1 s), short
    # enough that a new container, refused while its app loads (about 1 s), is back in turn
    # well before the health check's first pass (5 s) lets the deploy stop the old ones.
    resolve=" resolve"
    echo "$upstream" | grep -Eq '^[0-9.]+:' && resolve=""
    servers="${servers}server ${upstream}${resolve} max_fails=1 fail_timeout=2s;
"
done
[ -n "$servers" ] || fail "API_UPSTREAM='$upstreams' names no host:port"

# The DNS server of the container (Docker's own on a user-defined network): what makes the
# API's name follow its containers.
nameserver=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)
[ -n "$nameserver" ] || fail "no nameserver in /etc/resolv.conf: nginx can't resolve API_UPSTREAM"
case $nameserver in *:*) nameserver="[$nameserver]" ;; esac

public_host=${PUBLIC_HOST:-localhost:8080}
# A host name, IPv4 or [IPv6] address, and an optional port: the value lands inside nginx's configuration.
echo "$public_host" | grep -Eq '^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?$' \
    || fail "PUBLIC_HOST='$public_host' is not host[:port] (a name, an IPv4 address or an [IPv6] address)"

rps=${RATE_LIMIT_RPS:-0}
echo "$rps" | grep -Eq '^[0-9]{1,6}$' || fail "RATE_LIMIT_RPS='$rps' is not a whole number of requests per second (0 disables)"
burst=${RATE_LIMIT_BURST:-$((rps * 2))}
echo "$burst" | grep -Eq '^[0-9]{1,6}$' || fail "RATE_LIMIT_BURST='$burst' is not a whole number of requests"

limit=${PROCESS_LIMIT:-0}
echo "$limit" | grep -Eq '^[0-9]{1,7}$' || fail "PROCESS_LIMIT='$limit' is not a whole number of processes (0 keeps the container's)"
if [ "$limit" -gt 0 ]; then
    hard=$(ulimit -H -p)
    [ "$hard" = unlimited ] || [ "$limit" -le "$hard" ] || limit=$hard
    ulimit -p "$limit"  # dash: -p is the process limit, soft and hard
fi

balancers=""
for balancer in $(echo "${LOAD_BALANCER_ADDRESSES:-}" | tr ',' ' '); do
    # An IPv4 or IPv6 address and an optional prefix: the value lands inside nginx's configuration.
    echo "$balancer" | grep -Eq '^[0-9A-Fa-f:.]{2,45}(/[0-9]{1,3})?$' \
        || fail "LOAD_BALANCER_ADDRESSES: '$balancer' is not an IPv4 or IPv6 address or network (CIDR)"
    balancers="$balancers $balancer"
done

hsts=${HSTS:-off}
case $hsts in on | off) ;; *) fail "HSTS='$hsts' is not on or off" ;; esac
subdomains=${HSTS_INCLUDE_SUBDOMAINS:-off}
case $subdomains in on | off) ;; *) fail "HSTS_INCLUDE_SUBDOMAINS='$subdomains' is not on or off" ;; esac
[ "$subdomains" = off ] || [ "$hsts" = on ] || fail "HSTS_INCLUDE_SUBDOMAINS=on needs HSTS=on"

mkdir -p /tmp/nginx
tls=off
if [ -n "${TLS_CERTIFICATE_FILE:-}${TLS_PRIVATE_KEY_FILE:-}" ]; then
    [ -z "${TLS_CERTIFICATE:-}${TLS_PRIVATE_KEY:-}" ] \
        || fail "TLS_CERTIFICATE_FILE and TLS_CERTIFICATE (or the keys'): give the files or the values, not both"
    for file in "${TLS_CERTIFICATE_FILE:-}" "${TLS_PRIVATE_KEY_FILE:-}"; do
        [ -n "$file" ] || fail "TLS_CERTIFICATE_FILE and TLS_PRIVATE_KEY_FILE go together: set both (HTTPS) or neither"
        [ -r "$file" ] || fail "TLS file '$file' is not readable by uid $(id -u)"
    done
    tls=on
    mkdir -p /tmp/nginx/tls
    ln -sf "$TLS_CERTIFICATE_FILE" /tmp/nginx/tls/certificate.pem
    ln -sf "$TLS_PRIVATE_KEY_FILE" /tmp/nginx/tls/private-key.pem
elif [ -n "${TLS_CERTIFICATE:-}${TLS_PRIVATE_KEY:-}" ]; then
    [ -n "${TLS_CERTIFICATE:-}" ] && [ -n "${TLS_PRIVATE_KEY:-}" ] \
        || fail "TLS_CERTIFICATE and TLS_PRIVATE_KEY go together: set both (HTTPS) or neither"
    tls=on
    (
        umask 077  # the key: nginx's user alone
        mkdir -p /tmp/nginx/tls
        printf '%s\n' "$TLS_CERTIFICATE" >/tmp/nginx/tls/certificate.pem
        printf '%s\n' "$TLS_PRIVATE_KEY" >/tmp/nginx/tls/private-key.pem
    )
fi
if [ "$tls" = on ]; then
    choose_tls_groups
    printf 'listen 8443 ssl default_server;\ninclude /etc/nginx/tls.conf;\n'
else
    [ "$hsts" = off ] || fail "HSTS=on needs HTTPS (TLS_CERTIFICATE and TLS_PRIVATE_KEY, or their _FILE)"
    printf 'listen 8080 default_server;\n'
fi >/tmp/nginx/listen.conf
{
    echo "map \$host \$public_host { default \"$public_host\"; }"
    # Two years, as Mozilla's guidelines ask. includeSubDomains only when asked for: browsers
    # then refuse plain HTTP for two years on every subdomain of the name they reached (of
    # example.com: every other site under it).
    if [ "$hsts" = on ]; then
        policy="max-age=63072000"
        [ "$subdomains" = off ] || policy="$policy; includeSubDomains"
        echo "map \$host \$hsts { default \"$policy\"; }"
    else
        echo 'map $host $hsts { default ""; }'
    fi
    [ "$tls" = off ] || echo "include /etc/nginx/http-redirect.conf;"
    # Answers are used for 1 s at most: a new or removed API container counts within a second.
    echo "resolver $nameserver valid=1s ipv6=off;"
    if [ "$rps" -gt 0 ]; then
        echo "limit_req_zone \$binary_remote_addr zone=per_client:10m rate=${rps}r/s;"
    fi
    # $from_load_balancer: 1 for a connection from a load balancer's address. From one, the
    # client's address is the last one of X-Forwarded-For that is not a balancer's.
    echo "geo \$realip_remote_addr \$from_load_balancer {"
    echo "    default 0;"
    for balancer in $balancers; do
        echo "    $balancer 1;"
    done
    echo "}"
    for balancer in $balancers; do
        echo "set_real_ip_from $balancer;"
    done
    if [ -n "$balancers" ]; then
        echo "real_ip_header X-Forwarded-For;"
        echo "real_ip_recursive on;"
    fi
} >/tmp/nginx/runtime-http.conf
printf '%s' "$servers" >/tmp/nginx/upstream-servers.conf
if [ "$rps" -gt 0 ] && [ "$burst" -gt 0 ]; then
    printf 'limit_req zone=per_client burst=%s nodelay;\nlimit_req_status 429;\n' "$burst"
elif [ "$rps" -gt 0 ]; then
    # No burst at all: nginx takes no burst=0, and nodelay means nothing without a burst.
    printf 'limit_req zone=per_client;\nlimit_req_status 429;\n'
else
    : # rate limit disabled
fi >/tmp/nginx/runtime-location.conf

# -e: log to stderr from the start, before the config is read (no write to /var/log). The key
# stays in the file only, not in nginx's environment.
exec env -u TLS_CERTIFICATE -u TLS_PRIVATE_KEY nginx -e /dev/stderr -g 'daemon off;' "$@"

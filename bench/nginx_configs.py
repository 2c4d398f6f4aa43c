"""nginx configurations the bench writes for its comparison servers, and the variants of the
project's own proxy/nginx.conf it measures."""

from typing import Final

from bench.config import HELLO_BODY, REPO_ROOT

# The original post's proxy: nginx's defaults (one worker, HTTP/1.0 to the upstream, a new
# upstream connection per request, access log to a file) and one proxy_pass; nothing tuned.
BASELINE: Final = """\
events {}
http {
    server {
        listen 8080;
        location / {
            proxy_pass http://api:8000;
        }
    }
}
"""

# The ceiling: nginx answering the API's own response body itself, with no upstream and no log.
CEILING: Final = """\
worker_processes auto;
events {
    worker_connections 4096;
}
http {
    access_log off;
    server {
        listen 8080;
        location / {
            default_type application/json;
            return 200 'BODY';
        }
    }
}
""".replace("BODY", HELLO_BODY.replace("\n", "\\n"))


# The least a proxy can do here: proxy/nginx.conf's upstream pool and proxy_pass, and nothing
# else (no log, no headers, no checks). Run by the proxy image's entrypoint, which writes the
# upstream servers from API_UPSTREAM; the floor of nginx's cost per proxied request.
BARE_PROXY: Final = """\
worker_processes auto;
pid /tmp/nginx/nginx.pid;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path /tmp/nginx/client_body;
    proxy_temp_path /tmp/nginx/proxy;
    fastcgi_temp_path /tmp/nginx/fastcgi;
    uwsgi_temp_path /tmp/nginx/uwsgi;
    scgi_temp_path /tmp/nginx/scgi;
    upstream api_containers {
        include /tmp/nginx/upstream-servers.conf;
        keepalive 64;
        keepalive_timeout 4s;
    }
    server {
        listen 8080;
        location / {
            proxy_pass http://api_containers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""


def shipped() -> str:
    return (REPO_ROOT / "proxy" / "nginx.conf").read_text()


def variant(replacements: dict[str, str]) -> str:
    """proxy/nginx.conf with each `old` line replaced by `new`; every `old` must be there."""
    text = shipped()
    for old, new in replacements.items():
        if text.count(old) != 1:
            raise ValueError(f"proxy/nginx.conf has {text.count(old)} copies of {old!r}, not 1")
        text = text.replace(old, new)
    return text

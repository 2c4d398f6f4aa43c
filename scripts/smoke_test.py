#!/usr/bin/env python3
"""Smoke-test a deployed stack: `scripts/smoke_test.py [URL] [--ca-file PEM] [--redirect-url URL]`.

Without a URL, the stack's outputs give it (`pulumi stack output`): the URL, the stack's CA
(tlsMode self-signed) and the plain-HTTP redirect's URL (httpRedirectPort). HTTPS is always
verified: with the given CA, else the system's trust store. Waits (bounded) until the proxy
answers, then checks the API, the proxy, HTTP/2 and the redirect. Prints one line per check
with PASS/FAIL and its time; exits 1 if any check fails, 2 if nothing answers.
"""

import argparse
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

EXPECTED_ROOT = {"message": "Hello, Being!"}
REQUEST_TIMEOUT = 5.0


class Session(requests.Session):
    """A session whose `verify` (the CA file given) wins over REQUESTS_CA_BUNDLE and
    CURL_CA_BUNDLE, which requests otherwise prefers to a session's own setting."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        verify = self.verify if verify is None else verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


def session() -> requests.Session:
    """A session that retries refused connections and 502/503/504 briefly (a stack settling)."""
    retry = Retry(total=3, connect=3, backoff_factor=0.2, status_forcelist=[502, 503, 504])
    http = Session()
    http.mount("http://", HTTPAdapter(max_retries=retry))
    http.mount("https://", HTTPAdapter(max_retries=retry))
    return http


def wait_until_up(http: requests.Session, url: str, timeout: float) -> str | None:
    """None once /healthz answers 200; else what was last seen when the deadline passed."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            response = http.get(f"{url}/healthz", timeout=REQUEST_TIMEOUT)
            if response.status_code == 200:
                return None
            last = f"HTTP {response.status_code}"
        except requests.RequestException as error:
            last = str(error)
        time.sleep(0.5)
    return last


def json_body(response: requests.Response) -> object:
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        raise AssertionError(f"Content-Type {response.headers.get('Content-Type')!r}, not JSON")
    return response.json()


def check_root(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}/", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, f"HTTP {response.status_code}"
    body = json_body(response)
    assert body == EXPECTED_ROOT, f"body {body!r}"


def check_swagger(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}/swagger", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, f"HTTP {response.status_code}"
    spec = json_body(response)
    assert isinstance(spec, dict), "spec is not an object"
    assert spec.get("swagger") == "2.0", f"swagger version {spec.get('swagger')!r}"
    assert "get" in spec.get("paths", {}).get("/", {}), "GET / missing from the spec"


def check_unknown_path(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}/no-such-path", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 404, f"HTTP {response.status_code}"
    body = json_body(response)
    assert isinstance(body, dict) and "message" in body, f"body {body!r}"


def check_healthz(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}/healthz", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, f"HTTP {response.status_code}"
    assert json_body(response) == {"status": "ok"}


def check_http2(http: requests.Session, url: str) -> None:
    """HTTPS offers HTTP/2 (ALPN), with the certificate verified as for every request."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return
    context = ssl.create_default_context(
        cafile=http.verify if isinstance(http.verify, str) else None
    )
    context.set_alpn_protocols(["h2", "http/1.1"])
    host = parts.hostname or ""
    with (
        socket.create_connection((host, parts.port or 443), timeout=REQUEST_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        chosen = tls.selected_alpn_protocol()
    assert chosen == "h2", f"ALPN chose {chosen!r}, not h2"


def redirect_check(redirect_url: str) -> Callable[[requests.Session, str], None]:
    def check_redirect(http: requests.Session, url: str) -> None:
        response = http.get(
            f"{redirect_url}/swagger?x=1", timeout=REQUEST_TIMEOUT, allow_redirects=False
        )
        assert response.status_code == 308, f"HTTP {response.status_code}"
        location = response.headers.get("Location")
        assert location == f"{url}/swagger?x=1", f"Location {location!r}"

    return check_redirect


CHECKS: list[tuple[str, Callable[[requests.Session, str], None]]] = [
    ("GET / answers the greeting", check_root),
    ("GET /swagger serves a valid spec", check_swagger),
    ("unknown path is a JSON 404", check_unknown_path),
    ("GET /healthz answers", check_healthz),
    ("HTTPS offers HTTP/2", check_http2),
]


def stack_output(name: str, required: bool) -> str | None:
    """`pulumi stack output NAME`, or None when the stack has no such output."""
    try:
        result = subprocess.run(  # noqa: S603 (a fixed command)
            ["pulumi", "stack", "output", name],  # noqa: S607 (the user's pulumi on PATH)
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as error:
        if not required:
            return None
        message = f"error: no URL given and `pulumi stack output {name}` failed: {error}"
        raise SystemExit(message) from None
    return result.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?", help="the stack's URL (default: pulumi's url output)")
    parser.add_argument("--ca-file", help="the CA to verify HTTPS by (default: the stack's)")
    parser.add_argument("--redirect-url", help="the plain-HTTP redirect's URL, to check it")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the stack")
    args = parser.parse_args(argv)
    ca_file, redirect_url = args.ca_file, args.redirect_url
    if args.url is None:
        url = str(stack_output("url", required=True))
        redirect_url = redirect_url or stack_output("httpRedirectUrl", required=False)
        ca = None if ca_file else stack_output("caCertificate", required=False)
        if ca:
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as file:
                file.write(ca)
            ca_file = file.name
    else:
        url = args.url
    url = url.rstrip("/")
    http = session()
    if ca_file:
        http.verify = ca_file
    checks = CHECKS + (
        [("plain HTTP redirects to HTTPS (308)", redirect_check(redirect_url.rstrip("/")))]
        if redirect_url
        else []
    )
    problem = wait_until_up(http, url, args.wait)
    if problem is not None:
        print(f"FAIL nothing answers at {url}/healthz after {args.wait:.0f}s: {problem}")
        print("     is the stack up (`pulumi stack output url`, `docker ps`)?")
        return 2
    failures = 0
    for title, check in checks:
        started = time.monotonic()
        try:
            check(http, url)
            outcome = "PASS"
            detail = ""
        except (AssertionError, requests.RequestException, json.JSONDecodeError, OSError) as error:
            outcome, detail = "FAIL", f": {error}"
            failures += 1
        elapsed_ms = (time.monotonic() - started) * 1000
        print(f"{outcome} {title} ({elapsed_ms:.0f} ms){detail}")
    print(f"{len(checks) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
